// sum_squares on 16 floats at a time: each float is widened to double before squaring, so the
// squares are exact and only the double additions round.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "row_kernels.h"

namespace gptune::cpu::avx512 {

double sum_squares(const float* x, int64_t n) {
  __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
  auto add_squares = [&](__m512 v, int k) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    acc[k] = _mm512_fmadd_pd(lo, lo, acc[k]);
    acc[k + 1] = _mm512_fmadd_pd(hi, hi, acc[k + 1]);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    add_squares(_mm512_loadu_ps(x + i), 0);
    add_squares(_mm512_loadu_ps(x + i + 16), 2);
  }
  for (; i + 16 <= n; i += 16) add_squares(_mm512_loadu_ps(x + i), 0);
  if (i < n) add_squares(_mm512_maskz_loadu_ps(first_lanes(static_cast<int>(n - i)), x + i), 0);
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
