// sgemm: C (M,N) = alpha * op(A) op(B) + beta * C, row-major. This file holds the entry point
// (argument edge cases, thread split, SIMD dispatch), the portable blocked path used when the CPU
// has neither AVX-512 nor AVX2, and the naive reference. The SIMD paths are
// native/cpu/sgemm_avx512.cc and native/cpu/sgemm_avx2.cc.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "cpu_features.h"
#include "gptune/kernels.h"
#include "parallel.h"
#include "sgemm.h"

namespace gptune::cpu {

GemmProblem gemm_subproblem(const GemmProblem& p, int m_begin, int m_end, int n_begin, int n_end) {
  GemmProblem sub = p;
  sub.M = m_end - m_begin;
  sub.N = n_end - n_begin;
  sub.A = p.trans_a ? p.A + m_begin : p.A + static_cast<int64_t>(m_begin) * p.lda;
  sub.B = p.trans_b ? p.B + static_cast<int64_t>(n_begin) * p.ldb : p.B + n_begin;
  sub.C = p.C + static_cast<int64_t>(m_begin) * p.ldc + n_begin;
  if (p.bias) sub.bias = p.bias + n_begin;
  return sub;
}

void sgemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double sum = 0.0;
      for (int k = 0; k < K; ++k) {
        const double a = trans_a ? A[static_cast<int64_t>(k) * lda + i] : A[static_cast<int64_t>(i) * lda + k];
        const double b = trans_b ? B[static_cast<int64_t>(j) * ldb + k] : B[static_cast<int64_t>(k) * ldb + j];
        sum += a * b;
      }
      float& c = C[static_cast<int64_t>(i) * ldc + j];
      c = static_cast<float>(alpha * sum + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

// ---- portable path: the same blocking as the AVX-512 path with a (4,12) register tile of
// four-float vectors, which compile to whatever the baseline ISA offers (25 GFLOP/s per core with
// SSE2 on the dev machine, against ~150 for AVX-512) ----
namespace {

constexpr int kPortableMR = 4, kPortableNR = 12, kPortableKC = 256, kPortableNC = 1020;

// Per-thread packing buffers; null when allocation failed (sgemm_unpacked then does the work,
// since a pool worker cannot report an exception and the process must not abort).
struct PortableBuffers {
  std::unique_ptr<float[]> b_block{new (std::nothrow) float[kPortableKC * kPortableNC]};  // panels of (KC,NR)
  std::unique_ptr<float[]> a_panel{new (std::nothrow) float[kPortableKC * kPortableMR]};  // (KC,MR)
};

inline float op_a(const GemmProblem& p, int i, int k) {
  return p.trans_a ? p.A[static_cast<int64_t>(k) * p.lda + i] : p.A[static_cast<int64_t>(i) * p.lda + k];
}
inline float op_b(const GemmProblem& p, int k, int j) {
  return p.trans_b ? p.B[static_cast<int64_t>(j) * p.ldb + k] : p.B[static_cast<int64_t>(k) * p.ldb + j];
}

// acc (MR,NR) = A panel (kc,MR)^T @ B panel (kc,NR). The tile is held as MR*NR/4 four-float vectors
// (GCC/Clang vector extensions: SSE2 at the x86-64 baseline, NEON on ARM), which stay in registers;
// written as plain scalar loops GCC vectorised across k instead and spilled (2 GFLOP/s).
void portable_tile(int kc, const float* __restrict a, const float* __restrict b, float (&acc)[kPortableMR][kPortableNR]) {
  typedef float float4 __attribute__((vector_size(16)));
  constexpr int MR = kPortableMR, NV = kPortableNR / 4;
  float4 tile[MR][NV] = {};
  for (int k = 0; k < kc; ++k, a += MR, b += kPortableNR) {
    float4 bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + 4 * v, sizeof(float4));
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) tile[r][v] += a[r] * bv[v];
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) std::memcpy(&acc[r][4 * v], &tile[r][v], sizeof(float4));
}

}  // namespace

void sgemm_unpacked(const GemmProblem& p) {
  for (int i = 0; i < p.M; ++i) {
    float* c = p.C + static_cast<int64_t>(i) * p.ldc;
    for (int j = 0; j < p.N; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < p.K; ++k) sum += op_a(p, i, k) * op_b(p, k, j);
      const float v = p.beta == 0.0f ? p.alpha * sum : p.alpha * sum + p.beta * c[j];
      c[j] = p.bias ? v + p.bias[j] : v;
    }
  }
}

void sgemm_blocked_portable(const GemmProblem& p) {
  constexpr int MR = kPortableMR, NR = kPortableNR;
  thread_local PortableBuffers buffers;
  float* b_block = buffers.b_block.get();
  float* a_panel = buffers.a_panel.get();
  if (!b_block || !a_panel) return sgemm_unpacked(p);
  for (int jc = 0; jc < p.N; jc += kPortableNC) {
    const int nc = std::min(kPortableNC, p.N - jc);
    for (int pc = 0; pc < p.K; pc += kPortableKC) {
      const int kc = std::min(kPortableKC, p.K - pc);
      for (int jp = 0; jp < nc; jp += NR) {  // B panels (kc,NR), zero past column nc
        float* panel = b_block + static_cast<int64_t>(jp) * kc;
        for (int k = 0; k < kc; ++k)
          for (int j = 0; j < NR; ++j) panel[k * NR + j] = jp + j < nc ? op_b(p, pc + k, jc + jp + j) : 0.0f;
      }
      const float beta = pc == 0 ? p.beta : 1.0f;
      for (int ic = 0; ic < p.M; ic += MR) {
        const int rows = std::min(MR, p.M - ic);
        for (int k = 0; k < kc; ++k)
          for (int r = 0; r < MR; ++r) a_panel[k * MR + r] = r < rows ? op_a(p, ic + r, pc + k) : 0.0f;
        for (int jr = 0; jr < nc; jr += NR) {
          float acc[MR][NR];
          portable_tile(kc, a_panel, b_block + static_cast<int64_t>(jr) * kc, acc);
          const int cols = std::min(NR, nc - jr);
          const float* bias = pc == 0 && p.bias ? p.bias + jc + jr : nullptr;
          for (int r = 0; r < rows; ++r) {
            float* c = p.C + static_cast<int64_t>(ic + r) * p.ldc + jc + jr;
            for (int j = 0; j < cols; ++j) {
              float v = beta == 0.0f ? p.alpha * acc[r][j] : p.alpha * acc[r][j] + beta * c[j];
              c[j] = bias ? v + bias[j] : v;
            }
          }
        }
      }
    }
  }
}

namespace {

// Below this many multiply-adds, waking a second thread costs more than it saves.
constexpr double kMinFlopsPerExtraThread = 2.0 * 96 * 96 * 96;

// A product of a few rows of C (M <= kSmallRowsAvx512: decoding) does 2*M flops per element of
// op(B) it reads, so its time is op(B)'s bytes coming from memory (each weight is read once a
// token), not its flops. It is split into column runs of about this many bytes of op(B), which the
// threads take in turn: ~5 us of streaming each at the 10-15 GB/s one core reads here, against
// ~0.1 us to hand one out. Counting flops instead kept SmolLM2-135M's 576-wide layers (0.4-3.5 MB
// of weights each) on one core.
constexpr int64_t kFewRowsChunkBytes = 64 << 10;

// [begin, end) of part t of n items split into `parts` near-equal runs of whole `tile`s.
inline void split_tiles(int n, int tile, int parts, int t, int* begin, int* end) {
  const int64_t tiles = (n + tile - 1) / tile;
  *begin = static_cast<int>(std::min<int64_t>(n, tiles * t / parts * tile));
  *end = static_cast<int>(std::min<int64_t>(n, tiles * (t + 1) / parts * tile));
}

}  // namespace

namespace {

// C = beta * C (+ bias) when op(A) op(B) is empty (K <= 0) or scaled away (alpha == 0): returns
// whether it handled the problem. beta == 0 never reads C.
bool no_product(int M, int N, int K, float alpha, float beta, const float* bias, float* C, int ldc) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0 && alpha != 0.0f) return false;
  for (int i = 0; i < M; ++i) {
    float* c = C + static_cast<int64_t>(i) * ldc;
    for (int j = 0; j < N; ++j) c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + (bias ? bias[j] : 0.0f);
  }
  return true;
}

// The widest SIMD path this CPU has, on the calling thread. few_rows (AVX-512 only) picks the
// unpacked path for problems of at most kSmallRowsAvx512 rows; it is decided once for the whole
// problem, so every sub-problem of a split takes the same path.
void solve_serial(const GemmProblem& p, bool few_rows) {
  if (few_rows) sgemm_few_rows_avx512(p);
  else if (cpu_has_avx512()) sgemm_blocked_avx512(p);
  else if (cpu_has_avx2()) sgemm_blocked_avx2(p);
  else sgemm_blocked_portable(p);
}

bool few_rows_path(int M) { return cpu_has_avx512() && M <= kSmallRowsAvx512; }

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C, ldc);
}

void sgemm_serial(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc) {
  if (no_product(M, N, K, alpha, beta, nullptr, C, ldc)) return;
  solve_serial(GemmProblem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr}, few_rows_path(M));
}

void sgemm_bias(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, const float* bias, float* C, int ldc) {
  if (no_product(M, N, K, alpha, beta, bias, C, ldc)) return;
  const GemmProblem p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias};
  const bool avx512 = cpu_has_avx512(), avx2 = !avx512 && cpu_has_avx2();
  const bool few_rows = few_rows_path(M);
  const int tile_rows = avx512 ? sgemm_avx512_tile_rows() : avx2 ? sgemm_avx2_tile_rows() : kPortableMR;
  const int tile_cols = avx512 ? sgemm_avx512_tile_cols() : avx2 ? sgemm_avx2_tile_cols() : kPortableNR;
  auto solve = [&](const GemmProblem& sub) { solve_serial(sub, few_rows); };

  // Threads take disjoint blocks of C and pack their own operands, so they never wait on each
  // other and every element's sum runs in the same order whatever the thread count or the split.
  if (M <= kSmallRowsAvx512) {
    // Column runs of whole 16-column groups (few_rows_dot's passes of 8 or 4) or register tiles.
    const int64_t align = few_rows ? 16 : tile_cols;
    const int64_t cols = std::max<int64_t>(1, kFewRowsChunkBytes / (int64_t{K} * sizeof(float)));
    parallel_chunks(N, (cols + align - 1) / align * align, [&](int64_t begin, int64_t end) {
      solve(gemm_subproblem(p, 0, M, static_cast<int>(begin), static_cast<int>(end)));
    });
    return;
  }
  // Otherwise the split is along the longer side of C (rows when tall-skinny, columns when
  // short-wide): each thread then re-packs only the operand it shares, whose elements it reuses
  // (its share of the other side) times, so the duplicated packing stays a few percent at most.
  const int threads = static_cast<int>(
      std::min<double>(num_threads(), std::max(1.0, 2.0 * M * N * K / kMinFlopsPerExtraThread)));
  const int row_tiles = (M + tile_rows - 1) / tile_rows, col_tiles = (N + tile_cols - 1) / tile_cols;
  const bool split_rows = M >= N && row_tiles >= threads;
  const int parts = std::min(threads, split_rows ? row_tiles : col_tiles);
  if (parts <= 1) {
    solve(p);
    return;
  }
  parallel_run([&](int t) {
    if (t >= parts) return;
    int begin, end;
    if (split_rows) {
      split_tiles(M, tile_rows, parts, t, &begin, &end);
      if (begin < end) solve(gemm_subproblem(p, begin, end, 0, N));
    } else {
      split_tiles(N, tile_cols, parts, t, &begin, &end);
      if (begin < end) solve(gemm_subproblem(p, 0, M, begin, end));
    }
  });
}

}  // namespace gptune::cpu
