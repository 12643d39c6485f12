// LayerNorm over the last dimension, as nn.LayerNorm: biased variance (divide by C), eps inside the
// square root:  out = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps).
#include <cmath>
#include <vector>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t rows, int C, float eps) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    float* y = out + row * C;
    // Sums in double: a scalar loop is no faster in float, and one float accumulator over 768
    // terms would lose ~1e-5 of the mean. Two passes (mean first) rather than E[x^2] - mean^2,
    // which cancels on the residual stream's large-offset channels.
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += x[c];
    const float row_mean = static_cast<float>(sum / C);
    double sum_sq = 0.0;
    for (int c = 0; c < C; ++c) sum_sq += (x[c] - row_mean) * (x[c] - row_mean);
    const float row_rstd = 1.0f / std::sqrt(static_cast<float>(sum_sq / C) + eps);
    for (int c = 0; c < C; ++c) y[c] = (x[c] - row_mean) * row_rstd * weight[c] + bias[c];
    if (mean) mean[row] = row_mean;
    if (rstd) rstd[row] = row_rstd;
  }
}

// With xhat = (x - mean) rstd and g = dout * weight (the gradient w.r.t. xhat):
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight += dout * xhat,  dbias += dout.
void layernorm_backward(float* dinp, float* dweight_sum, float* dbias_sum, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t rows, int C) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    const float row_mean = mean[row], row_rstd = rstd[row];
    double g_sum = 0.0, g_xhat_sum = 0.0;
    for (int c = 0; c < C; ++c) {
      float xhat = (x[c] - row_mean) * row_rstd;
      float g = dy[c] * weight[c];
      g_sum += g;
      g_xhat_sum += g * xhat;
      if (dweight_sum) dweight_sum[c] += dy[c] * xhat;
      if (dbias_sum) dbias_sum[c] += dy[c];
    }
    if (!dinp) continue;
    const float g_mean = static_cast<float>(g_sum / C), g_xhat_mean = static_cast<float>(g_xhat_sum / C);
    float* dx = dinp + row * C;
    for (int c = 0; c < C; ++c) {
      float xhat = (x[c] - row_mean) * row_rstd;
      float g = dy[c] * weight[c];
      dx[c] += row_rstd * (g - g_mean - xhat * g_xhat_mean);
    }
  }
}

}  // namespace portable

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps) {
  parallel_for(N, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(layernorm_forward)(out + begin * C, mean ? mean + begin : nullptr,
                                         rstd ? rstd + begin : nullptr, inp + begin * C, weight,
                                         bias, end - begin, C, eps);
  });
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
  if (!dinp && !dweight && !dbias) return;
  // Every row adds into all of dweight and dbias, so threads accumulate private (C) partial sums
  // (dweight's in [0, C), dbias's in [C, 2C) of their slot) that are added in thread order after:
  // race-free and the same result for the same thread count.
  const int threads = num_threads();
  const bool need_partials = dweight || dbias;
  std::vector<float> partials(need_partials ? static_cast<size_t>(threads) * 2 * C : 0, 0.0f);
  std::vector<char> used(threads, 0);
  parallel_for(N, min_items_per_thread(2 * static_cast<int64_t>(C)), [&](int64_t begin, int64_t end, int thread) {
    float* slot = need_partials ? partials.data() + static_cast<size_t>(thread) * 2 * C : nullptr;
    used[thread] = 1;
    GPTUNE_ROW_KERNEL(layernorm_backward)(dinp ? dinp + begin * C : nullptr, dweight ? slot : nullptr,
                                          dbias ? slot + C : nullptr, dout + begin * C,
                                          inp + begin * C, weight, mean + begin, rstd + begin,
                                          end - begin, C);
  });
  if (!need_partials) return;
  for (int thread = 0; thread < threads; ++thread) {
    if (!used[thread]) continue;
    const float* slot = partials.data() + static_cast<size_t>(thread) * 2 * C;
    if (dweight) add_inplace(dweight, slot, C);
    if (dbias) add_inplace(dbias, slot + C, C);
  }
}

}  // namespace gptune::cpu
