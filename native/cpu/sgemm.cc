// sgemm: C (M,N) = alpha * op(A) op(B) + beta * C, row-major. This file holds the entry point
// (argument edge cases, thread split, SIMD dispatch), the portable blocked path used when the CPU
// lacks AVX-512, and the naive reference. The AVX-512 path is native/cpu/sgemm_avx512.cc.
#include <algorithm>
#include <cstdint>
#include <memory>

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

// ---- portable path: the same blocking as the AVX-512 path with a (4,16) register tile in plain
// C++, which the compiler vectorises with whatever the baseline ISA offers ----
namespace {

constexpr int kPortableMR = 4, kPortableNR = 16, kPortableKC = 256, kPortableNC = 1024;

struct PortableBuffers {
  std::unique_ptr<float[]> b_block{new float[kPortableKC * kPortableNC]};  // panels of (KC,NR)
  std::unique_ptr<float[]> a_panel{new float[kPortableKC * kPortableMR]};  // (KC,MR)
};

inline float op_a(const GemmProblem& p, int i, int k) {
  return p.trans_a ? p.A[static_cast<int64_t>(k) * p.lda + i] : p.A[static_cast<int64_t>(i) * p.lda + k];
}
inline float op_b(const GemmProblem& p, int k, int j) {
  return p.trans_b ? p.B[static_cast<int64_t>(j) * p.ldb + k] : p.B[static_cast<int64_t>(k) * p.ldb + j];
}

}  // namespace

void sgemm_blocked_portable(const GemmProblem& p) {
  constexpr int MR = kPortableMR, NR = kPortableNR;
  thread_local PortableBuffers buffers;
  float* b_block = buffers.b_block.get();
  float* a_panel = buffers.a_panel.get();
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
          const float* b = b_block + static_cast<int64_t>(jr) * kc;
          float acc[MR][NR] = {};
          for (int k = 0; k < kc; ++k)
            for (int r = 0; r < MR; ++r)
              for (int j = 0; j < NR; ++j) acc[r][j] += a_panel[k * MR + r] * b[k * NR + j];
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

// [begin, end) of part t of n items split into `parts` near-equal runs of whole `tile`s.
inline void split_tiles(int n, int tile, int parts, int t, int* begin, int* end) {
  const int64_t tiles = (n + tile - 1) / tile;
  *begin = static_cast<int>(std::min<int64_t>(n, tiles * t / parts * tile));
  *end = static_cast<int>(std::min<int64_t>(n, tiles * (t + 1) / parts * tile));
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C, ldc);
}

void sgemm_bias(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, const float* bias, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {  // no product: C = beta * C (+ bias); beta == 0 never reads C
    for (int i = 0; i < M; ++i) {
      float* c = C + static_cast<int64_t>(i) * ldc;
      for (int j = 0; j < N; ++j) c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + (bias ? bias[j] : 0.0f);
    }
    return;
  }
  const GemmProblem p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias};
  const bool avx512 = cpu_has_avx512();
  const bool few_rows = avx512 && M <= kSmallRowsAvx512;
  const int tile_rows = avx512 ? sgemm_avx512_tile_rows() : kPortableMR;
  const int tile_cols = avx512 ? sgemm_avx512_tile_cols() : kPortableNR;
  auto solve = [&](const GemmProblem& sub) {
    if (few_rows) sgemm_few_rows_avx512(sub);
    else if (avx512) sgemm_blocked_avx512(sub);
    else sgemm_blocked_portable(sub);
  };

  // Threads take disjoint blocks of C and pack their own operands, so they never wait on each
  // other. The split is along the longer side of C (rows for tall-skinny, columns for short-wide
  // and always columns for a few rows); each thread re-packs the operand it shares, which costs
  // about 1/(2 * its share of the other side) of the arithmetic.
  const int threads = static_cast<int>(std::min<double>(num_threads(), std::max(1.0, 2.0 * M * N * K / kMinFlopsPerExtraThread)));
  const bool split_rows = !few_rows && (M >= N) && (M + tile_rows - 1) / tile_rows >= threads;
  const int parts = split_rows ? std::min(threads, (M + tile_rows - 1) / tile_rows)
                               : std::min(threads, (N + 15) / 16);
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
      split_tiles(N, few_rows ? 16 : tile_cols, parts, t, &begin, &end);
      if (begin < end) solve(gemm_subproblem(p, 0, M, begin, end));
    }
  });
}

}  // namespace gptune::cpu
