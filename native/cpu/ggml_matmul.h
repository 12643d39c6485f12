// Internals of the fast GGML block-format matmuls (ggml_matmul.cc drives; ggml_matmul_avx512.cc and
// ggml_matmul_avx2.cc compute): the two single-threaded building blocks, in an AVX2 and an AVX-512
// version (CPUs with neither run ggml_quant.cc's scalar reference). Declarations only: see
// row_kernels.h for why no inline code is shared with the SIMD translation units. Layouts and the
// float32 operations of each format: gptune/ggml_blocks.h. Every value the SIMD code dequantizes is
// computed with the same float32 operations, in the same order, as ggml's dequantize_row_* (never
// contracted into an FMA), so the matmuls multiply the inputs by exactly the values dequantize_ggml
// gives.
#pragma once
#include <cstdint>

namespace gptune::cpu {

// matmul_ggml_forward / matmul_ggml_backward (kernels.inc) through the widest SIMD level this CPU
// runs; call only when cpu_has_avx2(), with a valid type and C a multiple of its block.
void ggml_matmul_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C,
                         int OC, int out_stride);
void ggml_matmul_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                          int dout_stride);

// Rows of input the fused dot kernel takes at once (each decoded weight vector is used this many times).
constexpr int kGgmlDotRows = 4;

#define GPTUNE_GGML_KERNELS                                                                          \
  /* dst (count * block values) = `count` consecutive blocks of `type` dequantized, as ggml does */  \
  void ggml_decode(float* dst, const uint8_t* blocks, int type, int64_t count);                      \
  /* y[r] = sum_c x[r*ldx + c] * w[c] for r < rows (1..kGgmlDotRows), c < C: w is one weight row */  \
  /* of C values (C/block blocks of `type`), dequantized in registers; float32 accumulation */       \
  void ggml_dot(float* y, const float* x, int64_t ldx, int rows, const uint8_t* w, int type, int C);

namespace avx2 {
GPTUNE_GGML_KERNELS
}  // namespace avx2
namespace avx512 {
GPTUNE_GGML_KERNELS
}  // namespace avx512

#undef GPTUNE_GGML_KERNELS

}  // namespace gptune::cpu
