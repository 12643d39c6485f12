// Softmax + cross-entropy over the vocabulary (nn.CrossEntropyLoss(reduction='none',
// ignore_index=...)), and the temperature softmax used for sampling. Rows are independent, so each
// kernel splits rows across threads; within a row the AVX-512 path (crossentropy_avx512.cc) does
// the max/argmax pass and the exp pass while the row (200 KB at V = 50257) is still in L2.
#include <algorithm>
#include <cmath>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

float logsumexp(const float* logits, int V, int* argmax) {
  float max_logit = -INFINITY;
  int max_index = 0;
  for (int i = 0; i < V; ++i) {
    if (logits[i] > max_logit) {  // strict: the first maximum wins ties, as torch.argmax
      max_logit = logits[i];
      max_index = i;
    }
  }
  double sum = 0.0;
  for (int i = 0; i < V; ++i) sum += std::exp(logits[i] - max_logit);
  if (argmax) *argmax = max_index;
  return max_logit + static_cast<float>(std::log(sum));
}

void scaled_exp(float* out, const float* logits, float shift, float scale, int V) {
  for (int i = 0; i < V; ++i) out[i] = scale * std::exp(logits[i] - shift);
}

void softmax(float* probs, const float* logits, float inv_temperature, int V) {
  float max_scaled = -INFINITY;
  for (int i = 0; i < V; ++i) max_scaled = std::max(max_scaled, logits[i] * inv_temperature);
  double sum = 0.0;
  for (int i = 0; i < V; ++i) {
    probs[i] = std::exp(logits[i] * inv_temperature - max_scaled);
    sum += probs[i];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int i = 0; i < V; ++i) probs[i] *= inv_sum;
}

}  // namespace portable

void crossentropy_forward(float* losses, float* lse, int* predictions, const float* logits,
                          const int* targets, int N, int V, int ignore_index) {
  // lse and predictions are filled for every row, ignored ones included (a caller may score
  // predictions under its own mask); only an ignored row's loss is 0.
  parallel_for(N, min_items_per_thread(V), [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {
      const float* row_logits = logits + row * V;  // (V)
      float row_lse = GPTUNE_ROW_KERNEL(logsumexp)(row_logits, V, predictions ? predictions + row : nullptr);
      if (lse) lse[row] = row_lse;
      const int target = targets[row];
      if (losses) losses[row] = target == ignore_index ? 0.0f : row_lse - row_logits[target];
    }
  });
}

void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                           const int* targets, const float* row_weights, float scale, int N, int V,
                           int ignore_index) {
  if (!dlogits) return;
  parallel_for(N, min_items_per_thread(V), [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {
      float* row_dlogits = dlogits + row * V;       // (V), may be the same memory as row_logits
      const float* row_logits = logits + row * V;   // (V)
      const int target = targets[row];
      if (target == ignore_index) {
        std::fill_n(row_dlogits, V, 0.0f);
        continue;
      }
      // Read the target's logit before the row is overwritten in place.
      const float row_scale = row_weights ? scale * row_weights[row] : scale;
      const float p_target = std::exp(row_logits[target] - lse[row]);
      GPTUNE_ROW_KERNEL(scaled_exp)(row_dlogits, row_logits, lse[row], row_scale, V);
      row_dlogits[target] = row_scale * (p_target - 1.0f);
    }
  });
}

void softmax_forward(float* probs, const float* logits, float inv_temperature, int N, int V) {
  parallel_for(N, min_items_per_thread(V), [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row)
      GPTUNE_ROW_KERNEL(softmax)(probs + row * V, logits + row * V, inv_temperature, V);
  });
}

}  // namespace gptune::cpu
