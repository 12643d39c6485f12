// RMSNorm over the last dimension, as Llama's LlamaRMSNorm (no mean subtraction, no bias):
//   out = x * rstd * weight,  rstd = 1 / sqrt(mean(x^2) + eps).
// qknorm (Qwen3's q_norm / k_norm) is the same normalisation applied to each q and k head of a
// packed qkv row, so both use the same row kernels: a head is a row of HS floats.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t rows,
                     int C, float eps) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    float* y = out + row * C;
    // In double, like layernorm: one float accumulator over C terms would lose ~1e-5 relative.
    double sum_sq = 0.0;
    for (int c = 0; c < C; ++c) sum_sq += double(x[c]) * x[c];
    const float row_rstd = 1.0f / std::sqrt(static_cast<float>(sum_sq / C) + eps);
    for (int c = 0; c < C; ++c) y[c] = x[c] * row_rstd * weight[c];
    if (rstd) rstd[row] = row_rstd;
  }
}

// With xhat = x rstd and g = dout * weight (the gradient w.r.t. xhat), since d rstd / dx = -rstd^3 x / C:
//   dx = rstd * (g - xhat * mean(g * xhat)),  dweight += dout * xhat.
void rmsnorm_backward(float* dinp, float* dweight_sum, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t rows, int C) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    const float row_rstd = rstd[row];
    double g_xhat_sum = 0.0;
    for (int c = 0; c < C; ++c) {
      const float xhat = x[c] * row_rstd;
      g_xhat_sum += dy[c] * weight[c] * xhat;
      if (dweight_sum) dweight_sum[c] += dy[c] * xhat;
    }
    if (!dinp) continue;
    const float g_xhat_mean = static_cast<float>(g_xhat_sum / C);
    float* dx = dinp + row * C;
    for (int c = 0; c < C; ++c) dx[c] += row_rstd * (dy[c] * weight[c] - x[c] * row_rstd * g_xhat_mean);
  }
}

}  // namespace portable

namespace {

// Runs body(begin, end, partial) over rows [0, N) split between threads, where partial is the
// thread's private (width) float accumulator (null when !need_partials), then adds the partials
// into the weight gradients in thread order: race-free, and the same result for the same thread
// count. add_partials(partial) receives each used thread's accumulator.
template <typename Body, typename AddPartials>
void rows_with_weight_partials(int64_t N, int64_t floats_per_row, int width, bool need_partials,
                               Body&& body, AddPartials&& add_partials) {
  const int threads = num_threads();
  std::vector<float> partials(need_partials ? static_cast<size_t>(threads) * width : 0, 0.0f);
  std::vector<char> used(threads, 0);
  parallel_for(N, min_items_per_thread(floats_per_row), [&](int64_t begin, int64_t end, int thread) {
    used[thread] = 1;
    body(begin, end, need_partials ? partials.data() + static_cast<size_t>(thread) * width : nullptr);
  });
  if (!need_partials) return;
  for (int thread = 0; thread < threads; ++thread)
    if (used[thread]) add_partials(partials.data() + static_cast<size_t>(thread) * width);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
  parallel_for(N, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(rmsnorm_forward)(out + begin * C, rstd ? rstd + begin : nullptr, inp + begin * C,
                                       weight, end - begin, C, eps);
  });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
  if (!dinp && !dweight) return;
  rows_with_weight_partials(
      N, 2 * int64_t{C}, C, dweight != nullptr,
      [&](int64_t begin, int64_t end, float* partial) {
        GPTUNE_ROW_KERNEL(rmsnorm_backward)(dinp ? dinp + begin * C : nullptr, partial, dout + begin * C,
                                            inp + begin * C, weight, rstd + begin, end - begin, C);
      },
      [&](const float* partial) { add_inplace(dweight, partial, C); });
}

// Row n of qkv (N,W), W = (NH+2*NKV)*HS: NH q heads, then NKV k heads, then NKV v heads; rstd row n
// (NH+NKV) holds the q heads' then the k heads' statistics.
void qknorm_forward(float* out, float* rstd, const float* inp, const float* q_weight,
                    const float* k_weight, int N, int NH, int NKV, int HS, float eps) {
  const int64_t W = int64_t(NH + 2 * NKV) * HS, q_size = int64_t(NH) * HS, kv_size = int64_t(NKV) * HS;
  const int stats = NH + NKV;
  parallel_for(N, min_items_per_thread(W), [&](int64_t begin, int64_t end, int) {
    for (int64_t n = begin; n < end; ++n) {
      const float* x = inp + n * W;
      float* y = out + n * W;
      float* r = rstd ? rstd + n * stats : nullptr;
      GPTUNE_ROW_KERNEL(rmsnorm_forward)(y, r, x, q_weight, NH, HS, eps);
      GPTUNE_ROW_KERNEL(rmsnorm_forward)(y + q_size, r ? r + NH : nullptr, x + q_size, k_weight, NKV, HS, eps);
      if (y != x) std::memcpy(y + q_size + kv_size, x + q_size + kv_size, sizeof(float) * kv_size);
    }
  });
}

void qknorm_backward(float* dinp, float* dq_weight, float* dk_weight, const float* dout,
                     const float* inp, const float* q_weight, const float* k_weight,
                     const float* rstd, int N, int NH, int NKV, int HS) {
  if (!dinp && !dq_weight && !dk_weight) return;
  const int64_t W = int64_t(NH + 2 * NKV) * HS, q_size = int64_t(NH) * HS, kv_size = int64_t(NKV) * HS;
  const int stats = NH + NKV;
  // A thread's partial holds its dq_weight sums in [0, HS) and its dk_weight sums in [HS, 2HS).
  rows_with_weight_partials(
      N, 2 * W, 2 * HS, dq_weight || dk_weight,
      [&](int64_t begin, int64_t end, float* partial) {
        for (int64_t n = begin; n < end; ++n) {
          const float *x = inp + n * W, *dy = dout + n * W, *r = rstd + n * stats;
          float* dx = dinp ? dinp + n * W : nullptr;
          if (dx || dq_weight)
            GPTUNE_ROW_KERNEL(rmsnorm_backward)(dx, dq_weight ? partial : nullptr, dy, x, q_weight, r, NH, HS);
          if (dx || dk_weight)
            GPTUNE_ROW_KERNEL(rmsnorm_backward)(dx ? dx + q_size : nullptr, dk_weight ? partial + HS : nullptr,
                                                dy + q_size, x + q_size, k_weight, r + NH, NKV, HS);
          if (!dx) continue;
          float* __restrict dv = dx + q_size + kv_size;  // (NKV*HS) v heads pass straight through
          const float* __restrict dv_out = dy + q_size + kv_size;
          for (int64_t i = 0; i < kv_size; ++i) dv[i] += dv_out[i];
        }
      },
      [&](const float* partial) {
        if (dq_weight) add_inplace(dq_weight, partial, HS);
        if (dk_weight) add_inplace(dk_weight, partial + HS, HS);
      });
}

}  // namespace gptune::cpu
