// RMSNorm rows, 16 channels at a time; the same arithmetic as portable::rmsnorm_* in rmsnorm.cc,
// with the sums spread over 16 float lanes (C/16 terms each, a few per lane for head-sized rows).
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include <cmath>

#include "row_kernels.h"

namespace gptune::cpu::avx512 {
namespace {

// Lanes past C load as zeros (they add nothing to the sums) and their stores are masked off.
struct RowLanes {
  explicit RowLanes(int C) : full(C / 16 * 16), tail(first_lanes(C - full)) {}
  __m512 load(const float* p, int c) const {
    return c < full ? _mm512_loadu_ps(p + c) : _mm512_maskz_loadu_ps(tail, p + c);
  }
  void store(float* p, int c, __m512 v) const {
    if (c < full) _mm512_storeu_ps(p + c, v);
    else _mm512_mask_storeu_ps(p + c, tail, v);
  }
  int full;
  __mmask16 tail;
};

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t rows,
                     int C, float eps) {
  const RowLanes lanes(C);
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    float* y = out + row * C;
    __m512 sum_sq = _mm512_setzero_ps();
    for (int c = 0; c < C; c += 16) {
      const __m512 v = lanes.load(x, c);
      sum_sq = _mm512_fmadd_ps(v, v, sum_sq);
    }
    const float row_rstd = 1.0f / std::sqrt(_mm512_reduce_add_ps(sum_sq) / C + eps);
    const __m512 rstd_v = _mm512_set1_ps(row_rstd);
    for (int c = 0; c < C; c += 16)
      lanes.store(y, c, _mm512_mul_ps(_mm512_mul_ps(lanes.load(x, c), rstd_v), lanes.load(weight, c)));
    if (rstd) rstd[row] = row_rstd;
  }
}

void rmsnorm_backward(float* dinp, float* dweight_sum, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t rows, int C) {
  const RowLanes lanes(C);
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    const __m512 rstd_v = _mm512_set1_ps(rstd[row]);
    __m512 g_xhat_sum = _mm512_setzero_ps();
    for (int c = 0; c < C; c += 16) {
      const __m512 xhat = _mm512_mul_ps(lanes.load(x, c), rstd_v);
      const __m512 dy_v = lanes.load(dy, c);
      g_xhat_sum = _mm512_fmadd_ps(_mm512_mul_ps(dy_v, lanes.load(weight, c)), xhat, g_xhat_sum);
      if (dweight_sum) lanes.store(dweight_sum, c, _mm512_fmadd_ps(dy_v, xhat, lanes.load(dweight_sum, c)));
    }
    if (!dinp) continue;
    const __m512 g_xhat_mean = _mm512_set1_ps(_mm512_reduce_add_ps(g_xhat_sum) / C);
    float* dx = dinp + row * C;
    for (int c = 0; c < C; c += 16) {
      const __m512 xhat = _mm512_mul_ps(lanes.load(x, c), rstd_v);
      const __m512 g = _mm512_mul_ps(lanes.load(dy, c), lanes.load(weight, c));
      // rstd * (g - xhat * mean(g xhat))
      lanes.store(dx, c, _mm512_fmadd_ps(_mm512_fnmadd_ps(xhat, g_xhat_mean, g), rstd_v, lanes.load(dx, c)));
    }
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
