// The linear layer over a frozen weight stored in some compact format (int8, NF4, bf16 in quant.cc;
// the GGML block formats in ggml_matmul.cc), written once for any weight type W that can dequantize
// a tile of itself:
//   void W::tile(float* dst, int o0, int rows, int c0, int cols) const;
//     rows [o0, o0+rows) and columns [c0, c0+cols) of the (OC,C) weight into dst (rows,cols), row
//     stride cols. The matmuls ask for c0 a multiple of kTileCols and cols = kTileCols or C - c0,
//     or the whole row (c0 = 0, cols = C).
// The matmuls dequantize one tile of W at a time into a per-thread buffer (at most kTileRows rows,
// or kTileRows x kTileCols in the backward), or a panel or slab of whole rows for many input rows,
// never a full-size fp32 copy of W. Templates only, included by baseline translation units.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"
#include "sgemm.h"

namespace gptune::cpu::quant_matmul {

constexpr int kTileRows = 16;   // rows of W dequantized at once
constexpr int kTileCols = 256;  // backward: columns of W per tile (each thread owns a column range)

// From this many input rows on, the matmuls dequantize W a panel of whole rows at a time and run
// the fp32 sgemm on it: the dequantization is then paid once for all N rows, and the sgemm's
// packing and register tiling do the rest. Below it (decoding), the direct loops read the quantized
// bytes once (8 or 4 bits a weight instead of 32).
constexpr int kSlabMinRows = 16;

// Forward: each thread dequantizes panels of kPanelFloats floats at most (whole rows, a multiple of
// the sgemm's 32-column tile, at least 32 rows) into its own buffer, which stays in its L2 while
// sgemm_serial multiplies all N input rows by it. Panels are made small enough that every thread
// gets several (the split is by whole panels).
constexpr int64_t kPanelFloats = int64_t{1} << 17;  // 512 KiB
inline int panel_rows(int C, int OC) {
  const int64_t by_cache = kPanelFloats / C / 32 * 32;
  const int64_t by_threads = OC / (4 * int64_t{num_threads()}) / 32 * 32;
  return static_cast<int>(std::max<int64_t>(32, std::min(by_cache, by_threads)));
}

// Backward: slabs of W of kSlabRows whole rows (the reduction dimension of dinp += dout @ slab),
// dequantized by all threads, then one multithreaded sgemm each.
constexpr int kSlabRows = 384;

// Calls use(slab, o0, rows) for consecutive slabs of W: rows [o0, o0+rows) dequantized into slab
// (rows,C) by all threads.
template <class W, class Use>
void for_each_slab(const W& w, int C, int OC, Use&& use) {
  const int S = std::min(kSlabRows, OC);
  std::vector<float> slab(static_cast<size_t>(S) * C);
  for (int o0 = 0; o0 < OC; o0 += S) {
    const int rows = std::min(S, OC - o0);
    parallel_for(rows, 4, [&](int64_t begin, int64_t end, int) {
      w.tile(slab.data() + begin * C, o0 + static_cast<int>(begin), static_cast<int>(end - begin), 0, C);
    });
    use(slab.data(), o0, rows);
  }
}

// out[n*ldo + o] = inp (N,C) @ W^T + bias for o < OC (many rows): threads own panels of output
// channels (see kPanelFloats).
template <class W>
void panel_forward(float* out, int ldo, const float* inp, const W& w, const float* bias, int N, int C, int OC) {
  const int P = panel_rows(C, OC);
  const int64_t panels = (OC + P - 1) / P;
  parallel_for(panels, 1, [&](int64_t begin, int64_t end, int) {
    std::vector<float> panel(static_cast<size_t>(std::min(P, OC)) * C);
    for (int64_t p = begin; p < end; ++p) {
      const int o0 = static_cast<int>(p * P), rows = std::min(P, OC - o0);
      w.tile(panel.data(), o0, rows, 0, C);
      sgemm_serial(false, true, N, rows, C, 1.0f, inp, C, panel.data(), C, 0.0f, out + o0, ldo);
      if (!bias) continue;
      for (int n = 0; n < N; ++n)
        for (int r = 0; r < rows; ++r) out[int64_t{n} * ldo + o0 + r] += bias[o0 + r];
    }
  });
}

// out (N,OC) = inp (N,C) @ W^T + bias. Many rows: panel_forward. Few rows: threads own tiles of
// kTileRows output channels; each tile of W is dequantized once and used for every row.
template <class W>
void forward(float* out, const float* inp, const W& w, const float* bias, int N, int C, int OC) {
  if (N >= kSlabMinRows) return panel_forward(out, OC, inp, w, bias, N, C, OC);
  const int64_t tiles = (OC + kTileRows - 1) / kTileRows;
  parallel_for(tiles, 1, [&](int64_t begin, int64_t end, int) {
    std::vector<float> tile(static_cast<size_t>(kTileRows) * C);
    for (int64_t t = begin; t < end; ++t) {
      const int o0 = static_cast<int>(t * kTileRows);
      const int rows = std::min(kTileRows, OC - o0);
      w.tile(tile.data(), o0, rows, 0, C);
      for (int n = 0; n < N; ++n) {
        const float* x = inp + int64_t{n} * C;
        float* y = out + int64_t{n} * OC + o0;
        for (int r = 0; r < rows; ++r)
          y[r] = GPTUNE_ROW_KERNEL(dot)(x, tile.data() + int64_t{r} * C, C) + (bias ? bias[o0 + r] : 0.0f);
      }
    }
  });
}

// dinp (N,C) += dout[n*ldd + o] (columns o < OC) @ W. Many rows: slab by slab through sgemm. Few
// rows: threads own ranges of kTileCols input channels (so no two write the same dinp element); a
// (kTileRows, kTileCols) tile of W feeds contiguous axpys into dinp rows.
template <class W>
void backward(float* dinp, const float* dout, int ldd, const W& w, int N, int C, int OC) {
  if (N >= kSlabMinRows) {
    // dinp (N,C) += dout[:, o0:o0+rows] (N,rows) @ slab (rows,C), slab by slab.
    for_each_slab(w, C, OC, [&](const float* slab, int o0, int rows) {
      sgemm(false, false, N, C, rows, 1.0f, dout + o0, ldd, slab, C, 1.0f, dinp, C);
    });
    return;
  }
  const int64_t col_tiles = (C + kTileCols - 1) / kTileCols;
  parallel_for(col_tiles, 1, [&](int64_t begin, int64_t end, int) {
    float tile[kTileRows * kTileCols];
    for (int64_t t = begin; t < end; ++t) {
      const int c0 = static_cast<int>(t * kTileCols);
      const int cols = std::min(kTileCols, C - c0);
      for (int o0 = 0; o0 < OC; o0 += kTileRows) {
        const int rows = std::min(kTileRows, OC - o0);
        w.tile(tile, o0, rows, c0, cols);
        for (int n = 0; n < N; ++n) {
          float* dx = dinp + int64_t{n} * C + c0;
          const float* dy = dout + int64_t{n} * ldd + o0;
          for (int r = 0; r < rows; ++r) GPTUNE_ROW_KERNEL(axpy)(dx, dy[r], tile + r * cols, cols);
        }
      }
    }
  });
}

}  // namespace gptune::cpu::quant_matmul
