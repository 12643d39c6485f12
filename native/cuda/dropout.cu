// Dropout on activations (kernels.inc dropout_forward / dropout_backward) on CUDA, and the masked
// copy LoRA's dropout (lora.cu) uses: the mask of gptune/dropout_mask.h, the same definition the CPU
// backend draws. One thread per element computes its SplitMix64 hash; memory-bound like the other
// elementwise kernels.
#include "common.cuh"
#include "gptune/dropout_mask.h"

namespace gptune::cuda {

namespace {

// For i < total, with m the multiplier of element first + i: dst[i] = m * src[i]; with residual,
// dst[i] = residual[i] + m * src[i]; with accumulate, dst[i] += m * src[i]. A dropped element adds
// exactly nothing (dst = 0, residual[i], or unchanged), whatever src holds.
__global__ void dropout_kernel(float* dst, const float* src, const float* residual, uint64_t first, long long total,
                               DropoutMask d, bool accumulate) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const bool keep = !d.active || dropout_keep_state(d, dropout_state(d, first + static_cast<uint64_t>(i)));
    const float kept = d.active ? d.scale * src[i] : src[i];
    if (accumulate) {
      if (keep) dst[i] += kept;
    } else if (residual) {
      dst[i] = keep ? residual[i] + kept : residual[i];
    } else {
      dst[i] = keep ? kept : 0.0f;
    }
  }
}

}  // namespace

void apply_dropout_mask(float* dst, const float* src, const float* residual, uint64_t first, long long total,
                        const DropoutMask& d, bool accumulate) {
  if (total <= 0) return;
  launch(dropout_kernel, dim3(grid_for(total, 256)), dim3(256), 0, dst, src, residual, first, total, d, accumulate);
}

void dropout_forward(float* out, const float* inp, const float* residual, long long n, float p, uint64_t seed) {
  apply_dropout_mask(out, inp, residual, 0, n, dropout_mask_params(p, seed), false);
}

void dropout_backward(float* dinp, const float* dout, long long n, float p, uint64_t seed) {
  apply_dropout_mask(dinp, dout, nullptr, 0, n, dropout_mask_params(p, seed), true);
}

}  // namespace gptune::cuda
