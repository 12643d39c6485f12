// CUDA-only entry points beyond kernels.inc: backend options and fused variants that only pay off
// on a GPU. Declared unconditionally; implemented in native/cuda/ when the addon is built with CUDA.
#pragma once

namespace gptune::cuda {

// Matrix products (matmul_forward/backward) on tensor cores with bf16 operands and fp32
// accumulation (true, the default: ~1e-3 relative error, what mixed-precision training uses) or
// on the fp32 SIMT path (false: float32 throughout, for checking and for `precision: fp32`).
void set_matmul_precision(bool bf16);
bool matmul_precision_bf16();

// Attention likewise: bf16 tensor-core flash attention for head sizes 64 (true), or the fp32 SIMT
// kernels (false, the default until the bf16 kernels have been validated on a device). Head sizes
// other than 64 always take the fp32 path.
void set_attention_precision(bool bf16);
bool attention_precision_bf16();

// One tensor for adamw_update_multi: params, m, v are updated in place from grads (all n floats,
// device pointers); weight_decay 0 for tensors that don't decay.
struct AdamWTensor {
  float* params;
  float* m;
  float* v;
  const float* grads;
  long long n;
  float weight_decay;
};

// adamw_update (same formula, same arguments) over `count` tensors in one kernel launch.
// `tensors` is a host array; it is copied to the device before the call returns.
void adamw_update_multi(const AdamWTensor* tensors, int count, float lr, float beta1, float beta2, float eps,
                        float grad_scale, int step);

// C (M,N) = alpha * op(A) op(B) + beta * C on device pointers, row-major, through the same kernels as
// matmul_forward/backward (and the current precision); exposed for benchmarks and tests.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);

}  // namespace gptune::cuda
