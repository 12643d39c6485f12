// One declaration per kernel (kernels.inc), one implementation per backend:
// native/cpu/*.cc implement gptune::cpu, native/cuda/*.cu implement gptune::cuda.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace gptune {

// Thrown by a backend on failures it cannot prevent by validation (device errors, out of memory).
// The N-API layer turns it into a JavaScript Error; nothing ever aborts the process.
struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace cpu {
#include "kernels.inc"
// Threads used by every CPU kernel (1..256). Defaults to the number of online cores.
void set_num_threads(int n);
int num_threads();
// "avx512", "avx2" or "portable": the widest SIMD path compiled in and supported by this CPU.
const char* simd_level();
// C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op(X) = X or X^T. The building block of
// matmul_forward/backward; exposed for tests and benchmarks.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
}  // namespace cpu

#ifdef GPTUNE_WITH_CUDA
namespace cuda {
#include "kernels.inc"
}  // namespace cuda
#endif

}  // namespace gptune
