// Internals of the CPU sgemm (native/cpu/sgemm.cc drives, native/cpu/sgemm_avx512.cc computes).
// Only declarations live here: sgemm_avx512.cc is compiled with AVX-512 flags and sgemm.cc at
// baseline, so an inline function shared through this header could be emitted with AVX-512
// instructions and picked by the linker for the baseline caller.
#pragma once

namespace gptune::cpu {

// C (M,N) = alpha * op(A) op(B) + beta * C (+ bias[j] on every row when bias is set), row-major, one
// sub-problem of sgemm(). op(A) is (M,K), op(B) is (K,N); trans_a means A is stored (K,M), trans_b
// means B is stored (N,K).
struct GemmProblem {
  bool trans_a, trans_b;
  int M, N, K;
  float alpha;
  const float* A;
  int lda;
  const float* B;
  int ldb;
  float beta;  // 0 means C is write-only (never read, so it may hold NaN)
  float* C;
  int ldc;
  const float* bias;  // (N) or null; added in the same pass that stores C, saving a sweep over C
};

// sgemm() with a per-column bias fused into the store of C (matmul_forward's linear layer):
// C = alpha * op(A) op(B) + beta * C + bias. bias may be null.
void sgemm_bias(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, const float* bias, float* C, int ldc);

// sgemm() on the calling thread only, through the same SIMD paths: for kernels that split their own
// work with parallel_for and call a GEMM per thread (the pool is not re-entrant).
void sgemm_serial(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc);

// The rows [m_begin, m_end) and columns [n_begin, n_end) of C as a problem of their own.
GemmProblem gemm_subproblem(const GemmProblem& p, int m_begin, int m_end, int n_begin, int n_end);

// Naive triple loop accumulating in double: the reference the fast paths are tested against.
void sgemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc);

// Plain loops with no scratch memory: the fallback when a thread's packing buffers cannot be
// allocated. M, N, K >= 1.
void sgemm_unpacked(const GemmProblem& p);

// Portable path, single-threaded: the same blocking with a (4,12) tile in portable C++ (used when the
// CPU has neither AVX-512 nor AVX2; exposed so the harness can validate it anywhere). M, N, K >= 1.
void sgemm_blocked_portable(const GemmProblem& p);

// AVX2 + FMA blocked path with a (6,16) tile, single-threaded; call only when cpu_has_avx2().
void sgemm_blocked_avx2(const GemmProblem& p);
int sgemm_avx2_tile_rows();
int sgemm_avx2_tile_cols();

// AVX-512 paths, single-threaded; call only when cpu_has_avx512(). Requires M, N, K >= 1.
// Blocked, packed, register-tiled GEMM for any shape.
void sgemm_blocked_avx512(const GemmProblem& p);
// Unpacked path for a few rows of C (decoding, M <= kSmallRowsAvx512): streams op(B) once.
constexpr int kSmallRowsAvx512 = 4;
void sgemm_few_rows_avx512(const GemmProblem& p);
// Rows of C per register tile (MR) and columns (NR) of the AVX-512 micro-kernel, so the caller can
// split work between threads on tile boundaries.
int sgemm_avx512_tile_rows();
int sgemm_avx512_tile_cols();

}  // namespace gptune::cpu
