// The GGML block formats on 16 values at a time: each block is decoded into float32 vectors in
// registers, which ggml_decode stores and ggml_dot multiplies into up to kGgmlDotRows input rows
// with FMAs. The 4- and 5-bit formats compute their 16 (32) possible values once per block or
// sub-block, exactly as ggml's dequantize_row_* would, and look each code up with one permute; Q8_0
// and Q6_K widen, convert and scale their codes. Layouts and the float32 operations: gptune/ggml_blocks.h.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include <cstring>
#include <type_traits>

#include "ggml_matmul.h"
#include "gptune/ggml_blocks.h"

namespace gptune::cpu::avx512 {
namespace {

// The little-endian fp16 at p, exactly converted and broadcast to every lane.
inline __m512 half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(bits)));
}
// a * float(b) for a broadcast a and a small integer b: ggml's `d * sc`, one float32 rounding.
inline __m512 times(__m512 a, int b) { return _mm512_mul_ps(a, _mm512_set1_ps(static_cast<float>(b))); }

// An optimisation barrier: the product is rounded to float32 before anything is added to it (ggml's
// d1 * q - m1 is two roundings; without this the compiler may contract it into one FMA).
inline __m512 rounded(__m512 v) {
  __asm__("" : "+v"(v));
  return v;
}

// 0, 1, ..., 15: the codes a nibble can hold.
const __m512i kCodes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

inline __m512i widen_u8(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m512 scaled(__m512i codes, __m512 d) { return _mm512_mul_ps(_mm512_cvtepi32_ps(codes), d); }

// Calls emit(v, w) once for each v in [0, values/16): w holds the block's values 16v..16v+15.
template <int T, class Emit>
inline void decode_block(const uint8_t* b, Emit&& emit) {
  const __m512i low4 = _mm512_set1_epi32(15);
  if constexpr (T == ggml::kQ8_0) {
    const __m512 d = half_at(b);
    #pragma GCC unroll 16
    for (int v = 0; v < 2; ++v)
      emit(v, scaled(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(ggml::BlockQ8_0, qs) + 16 * v))), d));
  } else if constexpr (T == ggml::kQ4_0) {
    // The 16 possible values (code - 8) * d in a table, looked up by nibble (permutexvar reads the
    // low 4 bits of each lane's index, so the low nibble needs no mask).
    const __m512 table = scaled(_mm512_sub_epi32(kCodes, _mm512_set1_epi32(8)), half_at(b));
    const __m512i q = widen_u8(b + offsetof(ggml::BlockQ4_0, qs));
    emit(0, _mm512_permutexvar_ps(q, table));
    emit(1, _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table));
  } else if constexpr (T == ggml::kQ5_0) {
    // Two tables: (nibble - 16) * d for values whose fifth bit (bit j of qh for value j) is clear,
    // nibble * d where it is set.
    const __m512 d = half_at(b);
    const __m512 clear = scaled(_mm512_sub_epi32(kCodes, _mm512_set1_epi32(16)), d), set = scaled(kCodes, d);
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(ggml::BlockQ5_0, qh), 4);
    const __m512i q = widen_u8(b + offsetof(ggml::BlockQ5_0, qs)), hi = _mm512_srli_epi32(q, 4);
    emit(0, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(q, clear), static_cast<__mmask16>(qh), q, set));
    emit(1, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(hi, clear), static_cast<__mmask16>(qh >> 16), hi, set));
  } else if constexpr (T == ggml::kQ4_K || T == ggml::kQ5_K) {
    // Per sub-block, the 16 possible values d*sc * code - dmin*m (rounded as ggml: product, then
    // difference) in a table looked up by nibble. Q5_K has a second table for codes 16..31, taken
    // where the value's fifth bit (bit `sub` of qh[l] for value l of sub-block sub's 32) is set.
    constexpr bool kFifthBit = T == ggml::kQ5_K;
    using Block = std::conditional_t<kFifthBit, ggml::BlockQ5_K, ggml::BlockQ4_K>;
    const __m512 d = half_at(b + offsetof(Block, d)), dmin = half_at(b + offsetof(Block, dmin));
    const uint8_t* scales = b + offsetof(Block, scales);
    const uint8_t* qs = b + offsetof(Block, qs);
    const __m512 codes = _mm512_cvtepi32_ps(kCodes), codes_with_fifth_bit = _mm512_add_ps(codes, _mm512_set1_ps(16.0f));
    auto table = [&](int sub, __m512 code_values) {
      uint8_t sc, m;
      ggml::q4_k_scale_min(sub, scales, &sc, &m);
      return _mm512_sub_ps(rounded(_mm512_mul_ps(times(d, sc), code_values)), times(dmin, m));
    };
    #pragma GCC unroll 16
    for (int pair = 0; pair < 4; ++pair) {  // sub-blocks 2*pair (low nibbles) and 2*pair+1 (high) share 32 bytes
      const __m512 lo = table(2 * pair, codes), hi = table(2 * pair + 1, codes);
      const __m512 lo_set = kFifthBit ? table(2 * pair, codes_with_fifth_bit) : lo;
      const __m512 hi_set = kFifthBit ? table(2 * pair + 1, codes_with_fifth_bit) : hi;
      #pragma GCC unroll 16
      for (int half = 0; half < 2; ++half) {
        const __m512i q = widen_u8(qs + 32 * pair + 16 * half), q_hi = _mm512_srli_epi32(q, 4);
        if constexpr (kFifthBit) {
          const __m512i h = widen_u8(b + offsetof(Block, qh) + 16 * half);
          const __mmask16 lo_mask = _mm512_test_epi32_mask(h, _mm512_set1_epi32(1 << (2 * pair)));
          const __mmask16 hi_mask = _mm512_test_epi32_mask(h, _mm512_set1_epi32(2 << (2 * pair)));
          emit(4 * pair + half, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(q, lo), lo_mask, q, lo_set));
          emit(4 * pair + 2 + half, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(q_hi, hi), hi_mask, q_hi, hi_set));
        } else {
          emit(4 * pair + half, _mm512_permutexvar_ps(q, lo));
          emit(4 * pair + 2 + half, _mm512_permutexvar_ps(q_hi, hi));
        }
      }
    }
  } else if constexpr (T == ggml::kQ6_K) {
    const __m512 d = half_at(b + offsetof(ggml::BlockQ6_K, d));
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + offsetof(ggml::BlockQ6_K, scales));
    const __m512i three = _mm512_set1_epi32(3), bias = _mm512_set1_epi32(32);
    // code = low nibble | two high bits << 4, minus 32
    auto code = [&](__m512i nibble, __m512i two_bits) {
      return _mm512_sub_epi32(_mm512_or_si512(nibble, _mm512_slli_epi32(_mm512_and_si512(two_bits, three), 4)), bias);
    };
    #pragma GCC unroll 16
    for (int half = 0; half < 2; ++half) {  // 128 values: ql[64*half..], qh[32*half..], scales[8*half..]
      const uint8_t* ql = b + offsetof(ggml::BlockQ6_K, ql) + 64 * half;
      const uint8_t* qh = b + offsetof(ggml::BlockQ6_K, qh) + 32 * half;
      const int8_t* s = sc + 8 * half;
      #pragma GCC unroll 16
      for (int c = 0; c < 2; ++c) {  // values l = 16c..16c+15 of each 32-value quarter; scale index c
        const __m512i l0 = widen_u8(ql + 16 * c), l1 = widen_u8(ql + 32 + 16 * c), h = widen_u8(qh + 16 * c);
        emit(8 * half + c, scaled(code(_mm512_and_si512(l0, low4), h), times(d, s[c])));
        emit(8 * half + 2 + c, scaled(code(_mm512_and_si512(l1, low4), _mm512_srli_epi32(h, 2)), times(d, s[c + 2])));
        emit(8 * half + 4 + c, scaled(code(_mm512_srli_epi32(l0, 4), _mm512_srli_epi32(h, 4)), times(d, s[c + 4])));
        emit(8 * half + 6 + c, scaled(code(_mm512_srli_epi32(l1, 4), _mm512_srli_epi32(h, 6)), times(d, s[c + 6])));
      }
    }
  }
}

using Vec = __m512;
constexpr int kLanes = 16;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vfmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }

}  // namespace

#include "ggml_matmul_simd.inc"

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
