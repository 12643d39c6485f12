// bf16 <-> float32 on 16 values at a time: widening is a zero-extension and a 16-bit shift; rounding
// adds 0x7fff plus the lowest kept bit (ties to even) and keeps the top half, NaNs quieted instead
// (the scalar definitions are quant::bf16_to_float / float_to_bf16 in gptune/quant_format.h).
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

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

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
