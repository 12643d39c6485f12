// RoPE rotations 16 pairs at a time; the same arithmetic as portable::rope_rotate in rope.cc.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "row_kernels.h"

namespace gptune::cpu::avx512 {

void rope_rotate(float* x, const float* cos, const float* sin, int heads, int HS, bool inverse) {
  const int half = HS / 2;
  // The backward rotates by -angle: the same formulas with sin negated (sign bit flipped).
  const __m512 sign = _mm512_set1_ps(inverse ? -0.0f : 0.0f);
  for (int head = 0; head < heads; ++head) {
    float* lo = x + int64_t(head) * HS;
    float* hi = lo + half;
    for (int i = 0; i < half; i += 16) {
      const __mmask16 lanes = half - i >= 16 ? __mmask16(0xffff) : first_lanes(half - i);
      const __m512 c = _mm512_maskz_loadu_ps(lanes, cos + i);
      const __m512 s = _mm512_xor_ps(_mm512_maskz_loadu_ps(lanes, sin + i), sign);
      const __m512 a = _mm512_maskz_loadu_ps(lanes, lo + i);
      const __m512 b = _mm512_maskz_loadu_ps(lanes, hi + i);
      _mm512_mask_storeu_ps(lo + i, lanes, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
      _mm512_mask_storeu_ps(hi + i, lanes, _mm512_fmadd_ps(b, c, _mm512_mul_ps(a, s)));
    }
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
