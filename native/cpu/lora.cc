// LoRA adapter on a linear layer (kernels.inc): u (N,R) = dropout(inp) @ A^T, out slice += scaling *
// u @ B^T, and the backward. The products go through sgemm; the dropout mask (gptune/dropout_mask.h)
// is applied tile by tile, so no dropped copy of the whole (N,C) input is ever made:
//   forward    threads own rows of inp; each drops a tile of rows into its buffer, multiplies it
//              into u, then adds its rows' u @ B^T into out;
//   dA, dinp   threads own column panels of both and walk all rows, drawing the mask of a (rows,
//              panel) tile once for dA's dropped input and dinp's masked gradient.
// With p == 0 there is no mask: the forward multiplies inp itself, and each backward product is one
// threaded sgemm.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"
#include "sgemm.h"

namespace gptune::cpu {

namespace {

// A dropout tile of at most this many floats (256 KiB, or one row when C is larger), so the tile
// and sgemm's packed panels of it stay in L2.
constexpr int64_t kTileFloats = int64_t{1} << 16;
// Below this many multiply-adds a second thread costs more than it saves (sgemm's threshold).
constexpr double kMinFlopsPerThread = 2.0 * 96 * 96 * 96;

// Rows of width `width` in one tile, and the floats a thread's tile buffer needs for them.
int64_t tile_rows(int width) { return std::max<int64_t>(1, kTileFloats / width); }
int64_t tile_floats(int width) { return tile_rows(width) * width; }

// parallel_for's min_chunk for items costing `flops` each.
int64_t min_items(double flops) { return std::max<int64_t>(1, static_cast<int64_t>(kMinFlopsPerThread / std::max(flops, 1.0))); }

// Tile buffers for every pool thread, `count` per thread, kept by the calling thread between calls
// (a fresh allocation per call cost page faults worth ~20% of a backward). They grow on the calling
// thread, so a failed allocation throws std::bad_alloc there (the binding reports it), never inside
// a pool worker, which cannot; each calling thread (a JS worker) has its own.
class ThreadTiles {
 public:
  ThreadTiles(int64_t floats_per_tile, int count) : per_tile_(floats_per_tile), count_(count) {
    thread_local std::vector<float> storage;
    const size_t needed = static_cast<size_t>(floats_per_tile) * count * num_threads();
    if (storage.size() < needed) {
      storage.clear();
      storage.shrink_to_fit();
      storage.resize(needed);
    }
    data_ = storage.data();
  }
  // Tile `which` (< count) of pool thread `thread`.
  float* get(int thread, int which) const { return data_ + per_tile_ * (static_cast<int64_t>(thread) * count_ + which); }

 private:
  int64_t per_tile_;
  int count_;
  float* data_;
};

// dA (R,C) += du^T (R,N) @ dropout(inp) (N,C) and dinp (N,C) += dropout'(du (N,R) @ A (R,C)), either
// may be null, drawing the mask once for both: threads own column panels of dA and dinp and walk all
// rows, a block at a time. For each (rows, width) tile a thread draws the multipliers m (scale or 0)
// once, then multiplies m * inp into dA and adds m * (du @ A) into dinp. Threads write disjoint
// columns, so no partial sums of dA need combining.
void lora_backward_dropout(float* dinp, float* dA, const float* du, const float* inp, const float* A, int N, int C,
                           int R, const DropoutMask& drop) {
  constexpr int kPanel = 32;  // columns; threads own whole panels
  const int64_t panels = (C + kPanel - 1) / kPanel;
  // A thread's share is 1 to C columns wide, and tile_floats(width) <= max(kTileFloats, C).
  const int64_t per_thread = std::max<int64_t>(kTileFloats, C);
  const ThreadTiles tiles(per_thread, 2);  // the multipliers and a work tile
  const std::vector<float> ones(C, 1.0f);
  const double products = (dA ? 1 : 0) + (dinp ? 1 : 0);
  parallel_for(panels, min_items(products * 2.0 * R * kPanel * N), [&](int64_t begin, int64_t end, int t) {
    const int c0 = static_cast<int>(begin * kPanel), width = static_cast<int>(std::min<int64_t>(C, end * kPanel)) - c0;
    const int64_t block = tile_rows(width);
    float* m = tiles.get(t, 0);
    float* w = tiles.get(t, 1);
    for (int64_t r0 = 0; r0 < N; r0 += block) {
      const int rows = static_cast<int>(std::min<int64_t>(block, N - r0));
      // m (rows, width): the mask of inp[r0 .., c0 ..] applied to ones (a row read rows times: ld 0)
      GPTUNE_ROW_KERNEL(dropout_tile)(m, width, ones.data(), 0, rows, width, r0, c0, C, drop, false);
      if (dA) {  // w = m * inp tile; dA[:, c0 ..] += du rows^T @ w
        for (int i = 0; i < rows; ++i)
          GPTUNE_ROW_KERNEL(apply_multipliers)(w + i * width, inp + (r0 + i) * C + c0, m + i * width, width, false);
        sgemm_serial(true, false, R, width, rows, 1.0f, du + r0 * R, R, w, width, 1.0f, dA + c0, C);
      }
      if (dinp) {  // w = du rows @ A[:, c0 ..]; dinp tile += m * w
        sgemm_serial(false, false, rows, width, R, 1.0f, du + r0 * R, R, A + c0, C, 0.0f, w, width);
        for (int i = 0; i < rows; ++i)
          GPTUNE_ROW_KERNEL(apply_multipliers)(dinp + (r0 + i) * C + c0, w + i * width, m + i * width, width, true);
      }
    }
  });
}

}  // namespace

void lora_forward(float* out, float* u, const float* inp, const float* A, const float* B, int N, int C, int R,
                  int OC, int ld, int offset, float scaling, float dropout, uint64_t seed) {
  if (N <= 0 || R <= 0) return;
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  const int64_t block = drop.active ? tile_rows(C) : N;
  const ThreadTiles tiles(drop.active ? tile_floats(C) : 0, 1);
  parallel_for(N, min_items(2.0 * R * (int64_t{C} + OC)), [&](int64_t begin, int64_t end, int t) {
    for (int64_t r0 = begin; r0 < end; r0 += block) {
      const int rows = static_cast<int>(std::min<int64_t>(block, end - r0));
      const float* x = inp + r0 * C;
      if (drop.active) {
        float* tile = tiles.get(t, 0);
        GPTUNE_ROW_KERNEL(dropout_tile)(tile, C, x, C, rows, C, r0, 0, C, drop, false);
        x = tile;
      }
      sgemm_serial(false, true, rows, R, C, 1.0f, x, C, A, C, 0.0f, u + r0 * R, R);  // u rows (rows,R)
    }
    // out rows [begin, end), columns [offset, offset + OC) += scaling * u rows @ B^T
    sgemm_serial(false, true, static_cast<int>(end - begin), OC, R, scaling, u + begin * R, R, B, R, 1.0f,
                 out + begin * ld + offset, ld);
  });
}

void lora_backward(float* dinp, float* dA, float* dB, float* du, const float* dout, const float* u, const float* inp,
                   const float* A, const float* B, int N, int C, int R, int OC, int ld, int offset, float scaling,
                   float dropout, uint64_t seed) {
  if (N <= 0 || R <= 0) return;
  const float* dout_slice = dout + offset;  // (N,OC) with row stride ld
  // du (N,R) = scaling * dout_slice @ B (OC,R);  dB (OC,R) += scaling * dout_slice^T @ u (N,R)
  sgemm(false, false, N, R, OC, scaling, dout_slice, ld, B, R, 0.0f, du, R);
  if (dB) sgemm(true, false, OC, R, N, scaling, dout_slice, ld, u, R, 1.0f, dB, R);
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  if (drop.active) {
    if (dA || dinp) lora_backward_dropout(dinp, dA, du, inp, A, N, C, R, drop);
    return;
  }
  // dA (R,C) += du^T @ inp;  dinp (N,C) += du @ A
  if (dA) sgemm(true, false, R, C, N, 1.0f, du, R, inp, C, 1.0f, dA, C);
  if (dinp) sgemm(false, false, N, C, R, 1.0f, du, R, A, C, 1.0f, dinp, C);
}

}  // namespace gptune::cpu
