// cuBLASLt as the second implementation of the bf16 matrix products (cublaslt.cu). matmul.cu asks
// matmul_uses_cublaslt() per call and, when it says yes, hands its bf16 operand copies to
// cublaslt_gemm_bf16 instead of its own tensor-core kernel.
#pragma once
#include "common.cuh"

namespace gptune::cuda {

// True when the current backend setting sends bf16 matmuls to cuBLASLt: Auto and the library
// loaded, or CublasLt (which throws gptune::Error with the load failure's reason when it did not).
bool matmul_uses_cublaslt();

// Row-major C (M,N) = alpha * op(A) op(B) + beta * C (+ bias (N) on every row), with the operand
// conventions of matmul.cu's gemm_bf16: A is K-contiguous (stored (M,K), ld lda) or not (stored
// (K,M)); B is K-contiguous (stored (N,K), nn.Linear's weight) or not (stored (K,N)); bf16 operands,
// fp32 C, fp32 accumulation. Enqueued on the backend's stream. Returns false, having done nothing,
// when cuBLASLt offers no algorithm for this problem and the setting is Auto (the caller then runs
// its own kernel); with the setting CublasLt that throws instead.
bool cublaslt_gemm_bf16(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const __nv_bfloat16* A,
                        int lda, const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc, const float* bias);

}  // namespace gptune::cuda
