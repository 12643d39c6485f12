// AdamW exactly as torch.optim.AdamW (PyTorch 1.13 / 2.x, foreach=False, fused=False,
// amsgrad=False, maximize=False), for one tensor:
//   g = grad * grad_scale
//   p *= 1 - lr * weight_decay                       (decoupled decay, before the Adam step)
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p -= (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// The step-dependent scalars are computed in double, as Python does, and rounded to float once;
// torch then applies them in float, and so does this loop.
#include <cmath>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

void adamw_update(float* params, float* m, float* v, const float* grads, long long n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                  int step) {
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(beta1), step);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(beta2), step);
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
  const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  const float one_minus_beta1 = static_cast<float>(1.0 - beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - beta2);
  // Seven floats of traffic per element; split like the elementwise kernels.
  parallel_for(n, kMinFloatsPerThread / 4, [&](int64_t begin, int64_t end, int) {
    float* __restrict p = params;
    float* __restrict m1 = m;
    float* __restrict m2 = v;
    const float* __restrict gr = grads;
    for (int64_t i = begin; i < end; ++i) {
      const float g = gr[i] * grad_scale;
      const float mi = beta1 * m1[i] + one_minus_beta1 * g;
      const float vi = beta2 * m2[i] + one_minus_beta2 * g * g;
      m1[i] = mi;
      m2[i] = vi;
      // Same operation order as torch: denom = sqrt(v) / sqrt(bc2) + eps; p += (-step_size * m) / denom.
      const float denom = std::sqrt(vi) / sqrt_bias_correction2 + eps;
      p[i] = p[i] * decay - step_size * mi / denom;
    }
  });
}

}  // namespace gptune::cpu
