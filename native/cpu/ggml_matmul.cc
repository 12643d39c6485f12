// The fast CPU linear layer over GGML block-format weights (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K; weight-only:
// the inputs stay float32). Few input rows (decoding): threads own output channels and multiply each
// weight row, decoded in registers, into up to kGgmlDotRows input rows at a time, so the 4.5 to 8.5
// bits a weight are read once per group of rows instead of 32. Many rows (prompts, evaluation,
// QLoRA's input gradient): panels of W dequantized into float32 and the sgemm (quant_matmul.h).
#include "ggml_matmul.h"

#include <algorithm>
#include <cstdint>

#include "cpu_features.h"
#include "gptune/ggml_blocks.h"
#include "parallel.h"
#include "quant_matmul.h"

#if defined(GPTUNE_X86)  // the SIMD translation units are compiled for x86-64 only

namespace gptune::cpu {
namespace {

// The widest version of a GGML kernel this CPU runs (callers have checked cpu_has_avx2()).
#define GPTUNE_GGML_KERNEL(name) (cpu_has_avx512() ? avx512::name : avx2::name)

static_assert(quant_matmul::kTileCols % 256 == 0, "backward column tiles must hold whole super-blocks");

// A (OC,C) weight of `type` blocks, rows back to back; tile() for quant_matmul.h.
struct GgmlWeight {
  const uint8_t* blocks;
  int type, block, block_bytes;
  int64_t row_bytes;
  GgmlWeight(const uint8_t* blocks, int type, int C)
      : blocks(blocks), type(type), block(ggml::block_size(type)), block_bytes(ggml::block_bytes(type)),
        row_bytes(ggml::row_bytes(type, C)) {}
  const uint8_t* row(int o) const { return blocks + int64_t{o} * row_bytes; }
  // c0 and cols are multiples of the block (quant_matmul.h asks for whole 256-column tiles or rows).
  void tile(float* dst, int o0, int rows, int c0, int cols) const {
    for (int r = 0; r < rows; ++r)
      GPTUNE_GGML_KERNEL(ggml_decode)(dst + int64_t{r} * cols, row(o0 + r) + int64_t{c0 / block} * block_bytes, type, cols / block);
  }
};

}  // namespace

void ggml_matmul_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C,
                         int OC, int out_stride) {
  const GgmlWeight weight(w, type, C);
  if (N >= quant_matmul::kSlabMinRows) return quant_matmul::panel_forward(out, out_stride, inp, weight, bias, N, C, OC);
  // Threads over output channels, at least ~kMinFloatsPerThread weights each.
  parallel_for(OC, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* row = weight.row(static_cast<int>(o));
      const float b = bias ? bias[o] : 0.0f;
      for (int n0 = 0; n0 < N; n0 += kGgmlDotRows) {
        const int rows = std::min(kGgmlDotRows, N - n0);
        float y[kGgmlDotRows];
        GPTUNE_GGML_KERNEL(ggml_dot)(y, inp + int64_t{n0} * C, C, rows, row, type, C);
        for (int r = 0; r < rows; ++r) out[int64_t{n0 + r} * out_stride + o] = y[r] + b;
      }
    }
  });
}

void ggml_matmul_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                          int dout_stride) {
  quant_matmul::backward(dinp, dout, dout_stride, GgmlWeight(w, type, C), N, C, OC);
}

}  // namespace gptune::cpu

#endif  // GPTUNE_X86
