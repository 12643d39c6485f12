// The GGML block formats on 8 values at a time (AVX2 + FMA + F16C): the same decoding as
// ggml_matmul_avx512.cc in 8-lane vectors, for CPUs without AVX-512. Layouts and the float32
// operations: gptune/ggml_blocks.h.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "ggml_matmul.h"
#include "gptune/ggml_blocks.h"

namespace gptune::cpu::avx2 {
namespace {

// The little-endian fp16 at p, exactly converted and broadcast to every lane.
inline __m256 half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(bits)));
}
// a * float(b) for a broadcast a and a small integer b: ggml's `d * sc`, one float32 rounding.
inline __m256 times(__m256 a, int b) { return _mm256_mul_ps(a, _mm256_set1_ps(static_cast<float>(b))); }

// An optimisation barrier: the product is rounded to float32 before anything is added to it (ggml's
// d1 * q - m1 is two roundings; without this the compiler may contract it into one FMA).
inline __m256 rounded(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

inline __m128i load8(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
inline __m256i widen_u8(const uint8_t* p) { return _mm256_cvtepu8_epi32(load8(p)); }
inline __m256 scaled(__m256i codes, __m256 d) { return _mm256_mul_ps(_mm256_cvtepi32_ps(codes), d); }

// Calls emit(v, w) once for each v in [0, values/8): w holds the block's values 8v..8v+7.
template <int T, class Emit>
inline void decode_block(const uint8_t* b, Emit&& emit) {
  const __m256i low4 = _mm256_set1_epi32(15);
  if constexpr (T == ggml::kQ8_0) {
    const __m256 d = half_at(b);
    #pragma GCC unroll 16
    for (int v = 0; v < 4; ++v) emit(v, scaled(_mm256_cvtepi8_epi32(load8(b + offsetof(ggml::BlockQ8_0, qs) + 8 * v)), d));
  } else if constexpr (T == ggml::kQ4_0) {
    const __m256 d = half_at(b);
    const __m256i eight = _mm256_set1_epi32(8);
    #pragma GCC unroll 16
    for (int part = 0; part < 2; ++part) {
      const __m256i q = widen_u8(b + offsetof(ggml::BlockQ4_0, qs) + 8 * part);
      emit(part, scaled(_mm256_sub_epi32(_mm256_and_si256(q, low4), eight), d));
      emit(2 + part, scaled(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight), d));
    }
  } else if constexpr (T == ggml::kQ5_0) {
    const __m256 d = half_at(b);
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(ggml::BlockQ5_0, qh), 4);
    const __m256i sixteen = _mm256_set1_epi32(16), lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // 16 * (bit `first + lane` of qh): the fifth bits of 8 consecutive values
    auto fifth_bits = [&](int first) {
      return _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(qh >> first)), lanes), _mm256_set1_epi32(1)), 4);
    };
    #pragma GCC unroll 16
    for (int part = 0; part < 2; ++part) {
      const __m256i q = widen_u8(b + offsetof(ggml::BlockQ5_0, qs) + 8 * part);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low4), fifth_bits(8 * part));
      const __m256i hi = _mm256_or_si256(_mm256_srli_epi32(q, 4), fifth_bits(16 + 8 * part));
      emit(part, scaled(_mm256_sub_epi32(lo, sixteen), d));
      emit(2 + part, scaled(_mm256_sub_epi32(hi, sixteen), d));
    }
  } else if constexpr (T == ggml::kQ4_K || T == ggml::kQ5_K) {
    // Q5_K adds 16 to a code whose fifth bit (bit `sub` of qh[l] for value l of sub-block sub's 32) is set.
    constexpr bool kFifthBit = T == ggml::kQ5_K;
    using Block = std::conditional_t<kFifthBit, ggml::BlockQ5_K, ggml::BlockQ4_K>;
    const __m256 d = half_at(b + offsetof(Block, d)), dmin = half_at(b + offsetof(Block, dmin));
    const uint8_t* scales = b + offsetof(Block, scales);
    const uint8_t* qs = b + offsetof(Block, qs);
    const __m256i one = _mm256_set1_epi32(1);
    #pragma GCC unroll 16
    for (int pair = 0; pair < 4; ++pair) {  // sub-blocks 2*pair (low nibbles) and 2*pair+1 (high) share 32 bytes
      uint8_t sc_lo, m_lo, sc_hi, m_hi;
      ggml::q4_k_scale_min(2 * pair, scales, &sc_lo, &m_lo);
      ggml::q4_k_scale_min(2 * pair + 1, scales, &sc_hi, &m_hi);
      const __m256 d_lo = times(d, sc_lo), min_lo = times(dmin, m_lo);
      const __m256 d_hi = times(d, sc_hi), min_hi = times(dmin, m_hi);
      #pragma GCC unroll 16
      for (int part = 0; part < 4; ++part) {
        const __m256i q = widen_u8(qs + 32 * pair + 8 * part);
        __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_srli_epi32(q, 4);
        if constexpr (kFifthBit) {
          const __m256i h = widen_u8(b + offsetof(Block, qh) + 8 * part);
          lo = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * pair), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * pair + 1), one), 4));
        }
        emit(8 * pair + part, _mm256_sub_ps(rounded(_mm256_mul_ps(d_lo, _mm256_cvtepi32_ps(lo))), min_lo));
        emit(8 * pair + 4 + part, _mm256_sub_ps(rounded(_mm256_mul_ps(d_hi, _mm256_cvtepi32_ps(hi))), min_hi));
      }
    }
  } else if constexpr (T == ggml::kQ6_K) {
    const __m256 d = half_at(b + offsetof(ggml::BlockQ6_K, d));
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + offsetof(ggml::BlockQ6_K, scales));
    const __m256i three = _mm256_set1_epi32(3), bias = _mm256_set1_epi32(32);
    // code = low nibble | two high bits << 4, minus 32
    auto code = [&](__m256i nibble, __m256i two_bits) {
      return _mm256_sub_epi32(_mm256_or_si256(nibble, _mm256_slli_epi32(_mm256_and_si256(two_bits, three), 4)), bias);
    };
    #pragma GCC unroll 16
    for (int half = 0; half < 2; ++half) {  // 128 values: ql[64*half..], qh[32*half..], scales[8*half..]
      const uint8_t* ql = b + offsetof(ggml::BlockQ6_K, ql) + 64 * half;
      const uint8_t* qh = b + offsetof(ggml::BlockQ6_K, qh) + 32 * half;
      const int8_t* s = sc + 8 * half;
      #pragma GCC unroll 16
      for (int part = 0; part < 4; ++part) {  // values l = 8*part.. of each 32-value quarter; scale index part/2
        const __m256i l0 = widen_u8(ql + 8 * part), l1 = widen_u8(ql + 32 + 8 * part), h = widen_u8(qh + 8 * part);
        const int is = part / 2;
        emit(16 * half + part, scaled(code(_mm256_and_si256(l0, low4), h), times(d, s[is])));
        emit(16 * half + 4 + part, scaled(code(_mm256_and_si256(l1, low4), _mm256_srli_epi32(h, 2)), times(d, s[is + 2])));
        emit(16 * half + 8 + part, scaled(code(_mm256_srli_epi32(l0, 4), _mm256_srli_epi32(h, 4)), times(d, s[is + 4])));
        emit(16 * half + 12 + part, scaled(code(_mm256_srli_epi32(l1, 4), _mm256_srli_epi32(h, 6)), times(d, s[is + 6])));
      }
    }
  }
}

using Vec = __m256;
constexpr int kLanes = 8;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vfmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline float vsum(Vec v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

}  // namespace

#include "ggml_matmul_simd.inc"

}  // namespace gptune::cpu::avx2
#endif  // __AVX2__ && __FMA__ && __F16C__
