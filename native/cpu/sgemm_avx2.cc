// AVX2 + FMA sgemm for CPUs without AVX-512 (most AMD Zen 2/3 and Intel client parts): the same
// blocked, packed scheme as native/cpu/sgemm_avx512.cc, with a (6,16) register tile in ymm
// registers: 12 accumulators + 2 B vectors + a broadcast = 15 of the 16 ymm registers, 12 FMAs
// for 8 loads per reduction step. Single-threaded; native/cpu/sgemm.cc splits work between threads.
//
// Block sizes are for typical AVX2 parts (32 KiB L1d, 512 KiB or more of L2): the A panel (KC,MR)
// is 6 KiB, the B block (KC,NC) 384 KiB. Unlike the AVX-512 ones they were not tuned on a real
// AVX2-only machine (the dev machine has AVX-512; the harness validates this path there).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sgemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace gptune::cpu {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int KC = 256;
constexpr int NC = 384;
static_assert(NC % NR == 0, "NC must be a multiple of the 16-column panel width");

// Per-thread packing buffers, kept for the thread's lifetime; null if allocation failed (the caller
// then falls back to sgemm_unpacked rather than throwing from a pool worker).
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

// Mask with the first n (clamped to 0..8) lanes set, for maskload/maskstore.
inline __m256i first_lanes(int n) {
  alignas(32) static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  n = std::max(0, std::min(8, n));
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - n));
}

// In-register transpose: on return r[c] holds column c of the 8x8 block whose rows were r[0..7].
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {  // rows 2i, 2i+1 interleaved within each 128-bit lane
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // s[4h+j], lane l: column 4l+j of rows 4h..4h+3
    s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc/NR) panels of (kc,NR), zero past column nc.
void pack_b_block(const GemmProblem& p, int k0, int kc, int j0, int nc, float* dst) {
  for (int jp = 0; jp < nc; jp += NR, dst += static_cast<size_t>(kc) * NR) {
    const int cols = std::min(NR, nc - jp);
    if (!p.trans_b) {  // op(B)[k][j] = B[k*ldb + j]
      const __m256i m0 = first_lanes(cols), m1 = first_lanes(cols - 8);
      const float* src = p.B + static_cast<int64_t>(k0) * p.ldb + j0 + jp;
      for (int k = 0; k < kc; ++k, src += p.ldb) {
        _mm256_store_ps(dst + k * NR, _mm256_maskload_ps(src, m0));
        _mm256_store_ps(dst + k * NR + 8, _mm256_maskload_ps(src + 8, m1));
      }
    } else {  // op(B)[k][j] = B[j*ldb + k]: transpose 8 columns x 8 steps at a time
      for (int kb = 0; kb < kc; kb += 8) {
        const int steps = std::min(8, kc - kb);
        const __m256i mk = first_lanes(steps);
        for (int half = 0; half < 2; ++half) {
          __m256 r[8];
          for (int i = 0; i < 8; ++i) {
            const int col = half * 8 + i;
            r[i] = col < cols ? _mm256_maskload_ps(p.B + static_cast<int64_t>(j0 + jp + col) * p.ldb + k0 + kb, mk)
                              : _mm256_setzero_ps();
          }
          transpose8x8(r);
          for (int s = 0; s < steps; ++s) _mm256_store_ps(dst + (kb + s) * NR + half * 8, r[s]);
        }
      }
    }
  }
}

// Packs op(A)[i0:i0+rows, k0:k0+kc] as (kc,MR): dst[k*MR + r], zero for r >= rows.
void pack_a_panel(const GemmProblem& p, int i0, int rows, int k0, int kc, float* dst) {
  const __m256i row_mask = first_lanes(rows), panel_mask = first_lanes(MR);
  if (p.trans_a) {  // op(A)[i][k] = A[k*lda + i]
    const float* src = p.A + static_cast<int64_t>(k0) * p.lda + i0;
    for (int k = 0; k < kc; ++k, src += p.lda) _mm256_maskstore_ps(dst + k * MR, panel_mask, _mm256_maskload_ps(src, row_mask));
  } else {  // op(A)[i][k] = A[i*lda + k]: transpose MR rows x 8 steps at a time
    for (int kb = 0; kb < kc; kb += 8) {
      const int steps = std::min(8, kc - kb);
      const __m256i mk = first_lanes(steps);
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = i < rows ? _mm256_maskload_ps(p.A + static_cast<int64_t>(i0 + i) * p.lda + k0 + kb, mk) : _mm256_setzero_ps();
      transpose8x8(r);
      for (int s = 0; s < steps; ++s) _mm256_maskstore_ps(dst + (kb + s) * MR, panel_mask, r[s]);
    }
  }
}

// C tile (rows,cols) = alpha * A panel^T @ B panel + beta * C tile (+ bias (cols) when non-null);
// beta == 0 never reads C.
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, int rows,
                  int cols, float alpha, float beta, const float* bias) {
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int r = 0; r < rows; ++r) {  // C rows are needed after the loop: hide the misses meanwhile
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
// Unrolled by 2, not 4: at 4 GCC 12 spills one accumulator to the stack (store-forwarding on every
// step, 55 instead of 74 GFLOP/s per core on the dev machine, whose AVX2 peak is ~86).
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);  // the B panel streams from L2
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
    }
    a += MR;
    b += NR;
  }
  const __m256i m0 = first_lanes(cols), m1 = first_lanes(cols - 8);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const __m256 bias0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
  const __m256 bias1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {  // constant trip count keeps acc0/acc1 in registers
    if (r >= rows) break;
    float* cr = c + r * ldc;
    __m256 v0 = _mm256_fmadd_ps(va, acc0[r], bias0), v1 = _mm256_fmadd_ps(va, acc1[r], bias1);
    if (beta != 0.0f) {
      v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
      v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
    }
    _mm256_maskstore_ps(cr, m0, v0);
    _mm256_maskstore_ps(cr + 8, m1, v1);
  }
}

}  // namespace

int sgemm_avx2_tile_rows() { return MR; }
int sgemm_avx2_tile_cols() { return NR; }

void sgemm_blocked_avx2(const GemmProblem& p) {
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
          micro_kernel(kc, buffers.a_panel, buffers.b_block + static_cast<size_t>(jr) * kc, c_row + jr, p.ldc, rows,
                       std::min(NR, nc - jr), p.alpha, beta, bias ? bias + jr : nullptr);
      }
    }
  }
}

}  // namespace gptune::cpu

#else  // built without AVX2 flags (not x86-64): cpu_has_avx2() is false, so these never run

namespace gptune::cpu {
int sgemm_avx2_tile_rows() { return 1; }
int sgemm_avx2_tile_cols() { return 1; }
void sgemm_blocked_avx2(const GemmProblem&) {}
}  // namespace gptune::cpu

#endif
