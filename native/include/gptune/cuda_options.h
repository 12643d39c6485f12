// CUDA-only entry points beyond kernels.inc: backend options and fused variants that only pay off
// on a GPU. Declared unconditionally; implemented in native/cuda/ when the addon is built with CUDA.
#pragma once
#include <string>

namespace gptune::cuda {

// Matrix products (matmul_forward/backward) on tensor cores with bf16 operands and fp32
// accumulation (true, the default: ~1e-3 relative error, what mixed-precision training uses) or
// on the fp32 SIMT path (false: float32 throughout, for checking and for `precision: fp32`).
void set_matmul_precision(bool bf16);
bool matmul_precision_bf16();

// Which implementation runs the bf16 matrix products (the fp32 path is always our SIMT kernel):
//   Auto (the default): cuBLASLt when it could be loaded, else our tensor-core kernel;
//   Native: always our kernel;
//   CublasLt: always cuBLASLt; throws gptune::Error naming why when it cannot be loaded.
// cuBLASLt is never linked: it is dlopen()ed on first use ($GPTUNE_CUBLASLT, a full path, then
// libcublasLt.so.13, .so.12, .so). The initial choice comes from the environment variable
// GPTUNE_CUDA_MATMUL=auto|native|cublaslt (read on first use).
enum class MatmulBackend : int { Auto = 0, Native = 1, CublasLt = 2 };
void set_matmul_backend(int backend);  // a MatmulBackend value; others throw gptune::Error
// "cublaslt" or "native": what the next bf16 matmul will use (Auto resolved).
const char* matmul_backend_name();
// "auto", "native" or "cublaslt": the setting itself.
const char* matmul_backend_setting();
// Whether cuBLASLt loaded (tries once, on the first call), from where, its version, and when it
// did not load, why (every path tried, with dlopen's message).
struct CublasLtInfo {
  bool loaded;
  std::string path;
  long long version;  // cublasLtGetVersion(), e.g. 130000 for 13.0.0; 0 when not loaded
  std::string reason;
};
CublasLtInfo cublaslt_info();

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
