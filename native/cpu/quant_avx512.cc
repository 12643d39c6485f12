// The frozen-weight building blocks of quant.cc on 16 values at a time (the scalar definitions are
// in gptune/quant_format.h and quant.cc's portable namespace):
//   - bf16 <-> float32: widening is a zero-extension and a 16-bit shift; rounding adds 0x7fff plus
//     the lowest kept bit (ties to even) and keeps the top half, NaNs quieted instead;
//   - int8 and NF4 decoding: codes widened (NF4: nibbles split and interleaved, then looked up in
//     the 16-value table with one permute) and multiplied by the scale, the same single float32
//     product as the scalar code;
//   - the dot product and axpy of the few-row (decoding) matmul paths.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "gptune/quant_format.h"
#include "row_kernels.h"

namespace gptune::cpu::avx512 {

void widen_bf16(float* dst, const uint16_t* src, int64_t n) {
  auto widen = [](__m256i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)); };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 lanes = first_lanes(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(dst + i, lanes, widen(_mm256_maskz_loadu_epi16(lanes, src + i)));
  }
}

void round_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  auto round = [](__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i top = _mm512_srli_epi32(u, 16);
    const __m512i lsb = _mm512_and_si512(top, _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_or_epi32(rounded, nan, top, _mm512_set1_epi32(0x40)));
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), round(_mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 lanes = first_lanes(static_cast<int>(n - i));
    _mm256_mask_storeu_epi16(dst + i, lanes, round(_mm512_maskz_loadu_ps(lanes, src + i)));
  }
}

void int8_decode(float* dst, const int8_t* q, int64_t n, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  auto decode = [&](__m128i codes) { return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)), s); };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, decode(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i))));
  if (i < n) {
    const __mmask16 lanes = first_lanes(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(dst + i, lanes, decode(_mm_maskz_loadu_epi8(lanes, q + i)));
  }
}

void nf4_decode(float* dst, const uint8_t* packed, int64_t bytes, float absmax) {
  const __m512 table = _mm512_loadu_ps(quant::kNf4), scale = _mm512_set1_ps(absmax);
  // Output element 2k is byte k's high nibble, 2k+1 its low one: interleave (hi, lo) lane by lane.
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i low_nibble = _mm512_set1_epi32(15);
  // 16 bytes -> 32 values into dst, the first `count` of them stored.
  auto decode = [&](__m128i b, float* out, int count) {
    const __m512i v = _mm512_cvtepu8_epi32(b);
    const __m512i hi = _mm512_srli_epi32(v, 4), lo = _mm512_and_si512(v, low_nibble);
    const __m512 a = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_permutex2var_epi32(hi, first, lo), table), scale);
    const __m512 c = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_permutex2var_epi32(hi, second, lo), table), scale);
    _mm512_mask_storeu_ps(out, first_lanes(count < 16 ? count : 16), a);
    if (count > 16) _mm512_mask_storeu_ps(out + 16, first_lanes(count - 16), c);
  };
  int64_t k = 0;
  for (; k + 16 <= bytes; k += 16) decode(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + k)), dst + 2 * k, 32);
  if (k < bytes) {
    const int rest = static_cast<int>(bytes - k);
    decode(_mm_maskz_loadu_epi8(first_lanes(rest), packed + k), dst + 2 * k, 2 * rest);
  }
}

float dot(const float* a, const float* b, int64_t n) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16 * k), _mm512_loadu_ps(b + i + 16 * k), acc[k]);
  for (; i + 16 <= n; i += 16) acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc[0]);
  if (i < n) {
    const __mmask16 lanes = first_lanes(static_cast<int>(n - i));
    acc[1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, a + i), _mm512_maskz_loadu_ps(lanes, b + i), acc[1]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

void axpy(float* y, float alpha, const float* x, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 lanes = first_lanes(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(y + i, lanes, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(lanes, x + i), _mm512_maskz_loadu_ps(lanes, y + i)));
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
