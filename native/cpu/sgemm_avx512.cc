// AVX-512 sgemm, single-threaded pieces (native/cpu/sgemm.cc splits the work between threads).
//
// The blocked path follows the GotoBLAS/BLIS scheme, arranged for row-major C with its columns in
// vector lanes:
//   for each block of NC columns of C:
//     for each block of KC steps of the reduction:
//       pack op(B) (KC,NC) into panels of NR=32 columns          -> stays in this core's L2
//       for each MR rows of C:
//         pack op(A) (MR,KC) into one panel                       -> stays in L1
//         for each NR columns: micro-kernel, C tile (MR,NR) += A panel @ B panel
// The micro-kernel keeps the (MR,32) tile of C in 2*MR zmm registers; each reduction step loads
// two vectors of B and broadcasts MR scalars of A, so it does 2*MR FMAs for MR+2 loads.
// Packing copies every element of A once per NC block and of B once overall, zero-pads ragged
// edges (so the micro-kernel never branches on size) and turns all four transpose combinations
// into the same two panel layouts; only the final store into C is masked.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sgemm.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

// GCC 12 reports its own _mm512_undefined_ps() placeholders inside shuffle/extract intrinsics as
// "may be used uninitialized", or once inlined into few_rows_dot "is used uninitialized" (false
// positives of the header's self-initialisation idiom).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// Block sizes, overridable at compile time for tuning (bench/kernels/sgemm_harness.cc). On the dev
// machine (Xeon, 48 KiB L1d, 2 MiB L2 per core) MR 12 or 14, KC 256-512 and NC 768-1536 all came
// within noise (a few percent) of each other at the GPT-2 shapes; these are the middle of that range.
// MR=12 uses 24 accumulators + 2 B vectors + a broadcast (27 of 32 zmm registers).
#ifndef GPTUNE_SGEMM_MR
#define GPTUNE_SGEMM_MR 12
#endif
// A panel (MR,KC) is 18 KiB at KC=384: well inside the 48 KiB L1d, next to the B rows streaming by.
#ifndef GPTUNE_SGEMM_KC
#define GPTUNE_SGEMM_KC 384
#endif
// B block (KC,NC) is 1.5 MiB at KC=384, NC=1024: most of the 2 MiB L2, reused by every MR rows.
#ifndef GPTUNE_SGEMM_NC
#define GPTUNE_SGEMM_NC 1024
#endif

namespace gptune::cpu {
namespace {

constexpr int MR = GPTUNE_SGEMM_MR;
constexpr int NR = 32;
constexpr int KC = GPTUNE_SGEMM_KC;
constexpr int NC = GPTUNE_SGEMM_NC;
static_assert(MR >= 1 && MR <= 14, "MR rows need 2*MR accumulators + 3 more zmm registers");
static_assert(NC % NR == 0, "NC must be a multiple of the 32-column panel width");

// Packing buffers, one set per thread, allocated on the thread's first call and kept (the thread
// pool's workers live as long as the process, so steady-state calls never allocate). If the
// allocation fails the pointers stay null and the caller falls back to sgemm_unpacked: a worker
// thread has no way to report an exception, and the process must not abort.
inline float* page_aligned_floats(size_t n) {  // aligned_alloc wants a multiple of the alignment
  return static_cast<float*>(std::aligned_alloc(4096, (n * sizeof(float) + 4095) / 4096 * 4096));
}

struct PackBuffers {
  float* b_block = page_aligned_floats(static_cast<size_t>(KC) * NC);  // (NC/NR) panels of (KC,NR)
  float* a_panel = page_aligned_floats(static_cast<size_t>(KC) * MR);  // (KC,MR)
  ~PackBuffers() {
    std::free(b_block);
    std::free(a_panel);
  }
  bool ok() const { return b_block && a_panel; }
  PackBuffers() = default;
  PackBuffers(const PackBuffers&) = delete;
  PackBuffers& operator=(const PackBuffers&) = delete;
};

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

inline __mmask16 first_lanes(int n) {  // mask of the first n (clamped to 0..16) lanes
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// In-register transpose: on return r[c] holds column c of the 16x16 block whose rows were r[0..15].
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved, within each 128-bit lane.
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i+j], lane l: column 4l+j of rows 4i..4i+3.
  __m512 u[16];
  for (int i = 0; i < 4; ++i) {
    __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // Gather lane l of u[j], u[4+j], u[8+j], u[12+j] into column 4l+j.
  for (int j = 0; j < 4; ++j) {
    __m512 even_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);  // lanes 0,2 of each
    __m512 odd_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);   // lanes 1,3 of each
    __m512 even_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc/NR) panels; panel q holds columns j0+q*NR.. as
// (kc,NR) rows, zero beyond column nc.
void pack_b_block(const GemmProblem& p, int k0, int kc, int j0, int nc, float* dst) {
  for (int jp = 0; jp < nc; jp += NR, dst += static_cast<size_t>(kc) * NR) {
    const int cols = std::min(NR, nc - jp);
    if (!p.trans_b) {
      // op(B)[k][j] = B[k*ldb + j]: rows of the panel are contiguous in B.
      const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
      const float* src = p.B + static_cast<int64_t>(k0) * p.ldb + j0 + jp;
      for (int k = 0; k < kc; ++k, src += p.ldb) {
        _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    } else {
      // op(B)[k][j] = B[j*ldb + k]: transpose 16 columns x 16 steps at a time.
      for (int kb = 0; kb < kc; kb += 16) {
        const int steps = std::min(16, kc - kb);
        const __mmask16 mk = first_lanes(steps);
        for (int half = 0; half < 2; ++half) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) {
            const int col = half * 16 + i;
            r[i] = col < cols ? _mm512_maskz_loadu_ps(mk, p.B + static_cast<int64_t>(j0 + jp + col) * p.ldb + k0 + kb)
                              : _mm512_setzero_ps();
          }
          transpose16x16(r);
          for (int s = 0; s < steps; ++s) _mm512_store_ps(dst + (kb + s) * NR + half * 16, r[s]);
        }
      }
    }
  }
}

// Packs op(A)[i0:i0+rows, k0:k0+kc] as (kc,MR): dst[k*MR + r], zero for r >= rows.
void pack_a_panel(const GemmProblem& p, int i0, int rows, int k0, int kc, float* dst) {
  const __mmask16 row_mask = first_lanes(rows), panel_mask = first_lanes(MR);
  if (p.trans_a) {
    // op(A)[i][k] = A[k*lda + i]: the MR values of one step are contiguous in A.
    const float* src = p.A + static_cast<int64_t>(k0) * p.lda + i0;
    for (int k = 0; k < kc; ++k, src += p.lda)
      _mm512_mask_storeu_ps(dst + k * MR, panel_mask, _mm512_maskz_loadu_ps(row_mask, src));
  } else {
    // op(A)[i][k] = A[i*lda + k]: transpose MR rows x 16 steps at a time.
    for (int kb = 0; kb < kc; kb += 16) {
      const int steps = std::min(16, kc - kb);
      const __mmask16 mk = first_lanes(steps);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(mk, p.A + static_cast<int64_t>(i0 + i) * p.lda + k0 + kb)
                        : _mm512_setzero_ps();
      transpose16x16(r);
      for (int s = 0; s < steps; ++s) _mm512_mask_storeu_ps(dst + (kb + s) * MR, panel_mask, r[s]);
    }
  }
}

// C tile (rows,cols) = alpha * A panel (kc,MR)^T @ B panel (kc,NR) + beta * C tile (+ bias (cols) on
// each row when non-null), where rows <= MR and cols <= NR; beta == 0 never reads C.
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                  int rows, int cols, float alpha, float beta, const float* bias) {
  __m512 acc0[MR], acc1[MR];  // columns 0..15 and 16..31 of each row
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  // The C tile's rows (128 bytes each, up to 3 cache lines when unaligned) are needed only after
  // the kc-step loop; fetching them now hides a DRAM miss when C is large (the lm head's logits).
  for (int r = 0; r < rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    // The B panel streams from L2 (the A panel is what stays in L1); fetching 8 steps (1 KiB)
    // ahead hides L2 latency: 159 -> 170 GFLOP/s per core for this loop alone on the dev machine.
    // Past the panel's end it runs into the next panel, which is the next one used.
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
    }
    a += MR;
    b += NR;
  }
  const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* cr = c + r * ldc;
    __m512 v0 = _mm512_fmadd_ps(va, acc0[r], bias0), v1 = _mm512_fmadd_ps(va, acc1[r], bias1);
    if (beta != 0.0f) {  // beta == 0: C may be uninitialised, so it must not be read
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

// Sum of the 16 lanes (folding halves; GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized).
inline float horizontal_sum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // + the other 256-bit half
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // + the neighbouring 128-bit lane
  __m128 x = _mm512_castps512_ps128(v);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
  return _mm_cvtss_f32(x);
}

// ---- few rows of C: dot products / row updates straight from op(B), no packing of B ----

// Columns of C per pass of few_rows_dot: its weight rows stream from memory side by side, and one
// core keeps more of its memory requests in flight with more streams (decoding SmolLM2's 576-wide
// layers on the dev machine: 4 rows ~9, 8 rows ~16 GB/s on one core), within the 32 zmm registers:
// kRows * kCols accumulators, kRows input vectors and the weight vector being used.
template <int kRows>
constexpr int kDotCols = kRows <= 2 ? 8 : 4;

// C[m][j0 + q] (q < kCols) = alpha * dot(a_m, B[j0 + q,:]) + beta * C[m][j0 + q] (+ bias) for B stored
// (N,K) (trans_b); a rows are contiguous with stride a_stride. Every element is one 16-lane
// accumulator summed over k in order, then folded: the same sum whatever kCols or the split of C.
template <int kRows, int kCols>
void dot_columns(const GemmProblem& p, const float* a, int64_t a_stride, int j0) {
  const int K = p.K;
  __m512 acc[kRows][kCols];
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kCols; ++q) acc[r][q] = _mm512_setzero_ps();
  const float* b0 = p.B + static_cast<int64_t>(j0) * p.ldb;
  int k = 0;
  for (; k + 16 <= K; k += 16) {  // whole vectors: plain loads (a mask on every load cost ~30% here)
    __m512 av[kRows];
    for (int r = 0; r < kRows; ++r) av[r] = _mm512_loadu_ps(a + r * a_stride + k);
    for (int q = 0; q < kCols; ++q) {
      const __m512 bv = _mm512_loadu_ps(b0 + q * static_cast<int64_t>(p.ldb) + k);
      for (int r = 0; r < kRows; ++r) acc[r][q] = _mm512_fmadd_ps(av[r], bv, acc[r][q]);
    }
  }
  if (k < K) {  // the ragged end: lanes past K load 0 and add 0 * 0
    const __mmask16 mk = first_lanes(K - k);
    __m512 av[kRows];
    for (int r = 0; r < kRows; ++r) av[r] = _mm512_maskz_loadu_ps(mk, a + r * a_stride + k);
    for (int q = 0; q < kCols; ++q) {
      const __m512 bv = _mm512_maskz_loadu_ps(mk, b0 + q * static_cast<int64_t>(p.ldb) + k);
      for (int r = 0; r < kRows; ++r) acc[r][q] = _mm512_fmadd_ps(av[r], bv, acc[r][q]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kCols; ++q) {
      const int col = j0 + q;
      const float v = p.alpha * horizontal_sum(acc[r][q]) + (p.bias ? p.bias[col] : 0.0f);
      float* cp = p.C + static_cast<int64_t>(r) * p.ldc + col;
      *cp = p.beta == 0.0f ? v : v + p.beta * *cp;
    }
}

// C[m][j] = alpha * dot(a_m, B[j,:]) + beta * C[m][j] for B stored (N,K) (trans_b); a rows are
// contiguous with stride a_stride. kRows <= 4; kDotCols<kRows> columns per pass, then one at a time.
template <int kRows>
void few_rows_dot(const GemmProblem& p, const float* a, int64_t a_stride) {
  constexpr int kCols = kDotCols<kRows>;
  int j = 0;
  for (; j + kCols <= p.N; j += kCols) dot_columns<kRows, kCols>(p, a, a_stride, j);
  for (; j < p.N; ++j) dot_columns<kRows, 1>(p, a, a_stride, j);
}

// C rows += op(A) rows @ B for B stored (K,N) (not trans_b): sums over 4 reduction steps per pass
// into an L1-resident strip of kStrip columns, so B streams row by row.
template <int kRows>
void few_rows_axpy(const GemmProblem& p) {
  constexpr int kStrip = 512;
  alignas(64) float acc[kRows][kStrip];
  auto a_at = [&](int r, int k) {
    return p.trans_a ? p.A[static_cast<int64_t>(k) * p.lda + r] : p.A[static_cast<int64_t>(r) * p.lda + k];
  };
  for (int j0 = 0; j0 < p.N; j0 += kStrip) {
    const int width = std::min(kStrip, p.N - j0);
    for (int r = 0; r < kRows; ++r) std::fill(acc[r], acc[r] + kStrip, 0.0f);
    for (int k = 0; k < p.K; k += 4) {
      const int steps = std::min(4, p.K - k);
      __m512 av[kRows][4];
      for (int r = 0; r < kRows; ++r)
        for (int s = 0; s < 4; ++s) av[r][s] = _mm512_set1_ps(s < steps ? a_at(r, k + s) : 0.0f);
      const float* brow[4];
      __mmask16 live[4];  // steps past K read nothing and contribute 0 * 0
      for (int s = 0; s < 4; ++s) {
        brow[s] = p.B + static_cast<int64_t>(k + std::min(s, steps - 1)) * p.ldb + j0;
        live[s] = s < steps ? __mmask16(0xFFFF) : __mmask16(0);
      }
      for (int jj = 0; jj < width; jj += 16) {
        const __mmask16 mj = first_lanes(width - jj);
        __m512 bv[4];
        for (int s = 0; s < 4; ++s) bv[s] = _mm512_maskz_loadu_ps(mj & live[s], brow[s] + jj);
        for (int r = 0; r < kRows; ++r) {
          __m512 sum = _mm512_load_ps(&acc[r][jj]);
          for (int s = 0; s < 4; ++s) sum = _mm512_fmadd_ps(av[r][s], bv[s], sum);
          _mm512_store_ps(&acc[r][jj], sum);
        }
      }
    }
    const __m512 va = _mm512_set1_ps(p.alpha), vb = _mm512_set1_ps(p.beta);
    for (int r = 0; r < kRows; ++r) {
      float* cr = p.C + static_cast<int64_t>(r) * p.ldc + j0;
      for (int jj = 0; jj < width; jj += 16) {
        const __mmask16 mj = first_lanes(width - jj);
        const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mj, p.bias + j0 + jj) : _mm512_setzero_ps();
        __m512 v = _mm512_fmadd_ps(va, _mm512_load_ps(&acc[r][jj]), bias);
        if (p.beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mj, cr + jj), v);
        _mm512_mask_storeu_ps(cr + jj, mj, v);
      }
    }
  }
}

template <int kRows>
void few_rows(const GemmProblem& p) {
  if (!p.trans_b) return few_rows_axpy<kRows>(p);
  if (!p.trans_a) return few_rows_dot<kRows>(p, p.A, p.lda);
  // A stored (K,M): gather op(A)'s rows a chunk of the reduction at a time into a stack buffer
  // (few_rows_dot wants them contiguous); later chunks add onto the first (beta 1, no bias).
  constexpr int kChunk = 1024;  // 16 KiB of stack at 4 rows
  alignas(64) float rows[kRows * kChunk];
  for (int k0 = 0; k0 < p.K; k0 += kChunk) {
    GemmProblem chunk = p;
    chunk.K = std::min(kChunk, p.K - k0);
    chunk.B = p.B + k0;
    if (k0 > 0) {
      chunk.beta = 1.0f;
      chunk.bias = nullptr;
    }
    for (int k = 0; k < chunk.K; ++k)
      for (int r = 0; r < kRows; ++r) rows[r * kChunk + k] = p.A[static_cast<int64_t>(k0 + k) * p.lda + r];
    few_rows_dot<kRows>(chunk, rows, kChunk);
  }
}

}  // namespace

int sgemm_avx512_tile_rows() { return MR; }
int sgemm_avx512_tile_cols() { return NR; }

void sgemm_blocked_avx512(const GemmProblem& p) {
  PackBuffers& buffers = pack_buffers();
  if (!buffers.ok()) return sgemm_unpacked(p);
  for (int jc = 0; jc < p.N; jc += NC) {
    const int nc = std::min(NC, p.N - jc);
    for (int pc = 0; pc < p.K; pc += KC) {
      const int kc = std::min(KC, p.K - pc);
      pack_b_block(p, pc, kc, jc, nc, buffers.b_block);
      const float beta = pc == 0 ? p.beta : 1.0f;  // later reduction blocks add to the first
      const float* bias = pc == 0 && p.bias ? p.bias + jc : nullptr;
      for (int ic = 0; ic < p.M; ic += MR) {
        const int rows = std::min(MR, p.M - ic);
        pack_a_panel(p, ic, rows, pc, kc, buffers.a_panel);
        float* c_row = p.C + static_cast<int64_t>(ic) * p.ldc + jc;
        for (int jr = 0; jr < nc; jr += NR)
          micro_kernel(kc, buffers.a_panel, buffers.b_block + static_cast<size_t>(jr) * kc, c_row + jr, p.ldc,
                       rows, std::min(NR, nc - jr), p.alpha, beta, bias ? bias + jr : nullptr);
      }
    }
  }
}

void sgemm_few_rows_avx512(const GemmProblem& p) {
  switch (p.M) {
    case 1: return few_rows<1>(p);
    case 2: return few_rows<2>(p);
    case 3: return few_rows<3>(p);
    case 4: return few_rows<4>(p);
    default: return sgemm_blocked_avx512(p);
  }
}

}  // namespace gptune::cpu

#else  // built without AVX-512 flags (not x86-64): cpu_has_avx512() is false, so these never run

namespace gptune::cpu {
int sgemm_avx512_tile_rows() { return 1; }
int sgemm_avx512_tile_cols() { return 1; }
void sgemm_blocked_avx512(const GemmProblem&) {}
void sgemm_few_rows_avx512(const GemmProblem&) {}
}  // namespace gptune::cpu

#endif
