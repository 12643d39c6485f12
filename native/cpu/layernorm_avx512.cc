// LayerNorm rows, 16 channels at a time; the same arithmetic as portable::layernorm_* in
// layernorm.cc (two-pass variance), with the reductions spread over 16 lanes.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include <cmath>

#include "row_kernels.h"

namespace gptune::cpu::avx512 {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t rows, int C, float eps) {
  const int full = C / 16 * 16;
  const __mmask16 tail = first_lanes(C - full);
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    float* y = out + row * C;
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < full; c += 16) sum = _mm512_add_ps(sum, _mm512_loadu_ps(x + c));
    if (tail) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(tail, x + full));
    const float row_mean = _mm512_reduce_add_ps(sum) / C;
    const __m512 mean_v = _mm512_set1_ps(row_mean);
    __m512 sum_sq = _mm512_setzero_ps();
    for (int c = 0; c < full; c += 16) {
      __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + c), mean_v);
      sum_sq = _mm512_fmadd_ps(d, d, sum_sq);
    }
    if (tail) {
      __m512 d = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, x + full), mean_v);
      sum_sq = _mm512_fmadd_ps(d, d, sum_sq);
    }
    const float row_rstd = 1.0f / std::sqrt(_mm512_reduce_add_ps(sum_sq) / C + eps);
    const __m512 rstd_v = _mm512_set1_ps(row_rstd);
    for (int c = 0; c < full; c += 16) {
      __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + c), mean_v), rstd_v);
      _mm512_storeu_ps(y + c, _mm512_fmadd_ps(xhat, _mm512_loadu_ps(weight + c), _mm512_loadu_ps(bias + c)));
    }
    if (tail) {
      __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + full), mean_v), rstd_v);
      _mm512_mask_storeu_ps(y + full, tail, _mm512_fmadd_ps(xhat, _mm512_maskz_loadu_ps(tail, weight + full),
                                                            _mm512_maskz_loadu_ps(tail, bias + full)));
    }
    if (mean) mean[row] = row_mean;
    if (rstd) rstd[row] = row_rstd;
  }
}

void layernorm_backward(float* dinp, float* dweight_sum, float* dbias_sum, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t rows, int C) {
  const int full = C / 16 * 16;
  const __mmask16 tail = first_lanes(C - full);
  // Lanes past C load as zeros: their g = dout * weight is 0, so they add nothing to the sums, and
  // their stores are masked off.
  auto load = [&](const float* p, int c) {
    return c < full ? _mm512_loadu_ps(p + c) : _mm512_maskz_loadu_ps(tail, p + c);
  };
  auto store = [&](float* p, int c, __m512 v) {
    if (c < full) _mm512_storeu_ps(p + c, v);
    else _mm512_mask_storeu_ps(p + c, tail, v);
  };
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    const __m512 mean_v = _mm512_set1_ps(mean[row]), rstd_v = _mm512_set1_ps(rstd[row]);
    __m512 g_sum = _mm512_setzero_ps(), g_xhat_sum = _mm512_setzero_ps();
    for (int c = 0; c < C; c += 16) {
      __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(load(x, c), mean_v), rstd_v);
      __m512 dy_v = load(dy, c);
      __m512 g = _mm512_mul_ps(dy_v, load(weight, c));
      g_sum = _mm512_add_ps(g_sum, g);
      g_xhat_sum = _mm512_fmadd_ps(g, xhat, g_xhat_sum);
      if (dweight_sum) store(dweight_sum, c, _mm512_fmadd_ps(dy_v, xhat, load(dweight_sum, c)));
      if (dbias_sum) store(dbias_sum, c, _mm512_add_ps(load(dbias_sum, c), dy_v));
    }
    if (!dinp) continue;
    const __m512 g_mean = _mm512_set1_ps(_mm512_reduce_add_ps(g_sum) / C);
    const __m512 g_xhat_mean = _mm512_set1_ps(_mm512_reduce_add_ps(g_xhat_sum) / C);
    float* dx = dinp + row * C;
    for (int c = 0; c < C; c += 16) {
      __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(load(x, c), mean_v), rstd_v);
      __m512 g = _mm512_mul_ps(load(dy, c), load(weight, c));
      // rstd * (g - mean(g) - xhat * mean(g xhat))
      __m512 centred = _mm512_sub_ps(_mm512_fnmadd_ps(xhat, g_xhat_mean, g), g_mean);
      store(dx, c, _mm512_fmadd_ps(centred, rstd_v, load(dx, c)));
    }
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
