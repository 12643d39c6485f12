// Internals of the elementwise, LayerNorm, RMSNorm, RoPE, SwiGLU, GELU, dropout, cross-entropy
// and bf16 conversion kernels: the single-threaded building blocks that encoder.cc, layernorm.cc,
// rmsnorm.cc, rope.cc, swiglu.cc, gelu.cc, dropout.cc, lora.cc, attention.cc, elementwise.cc,
// crossentropy.cc and quant.cc split across threads. Each comes twice:
// a plain scalar loop (namespace portable: the readable version, and the fallback on CPUs without
// AVX-512) and an AVX-512 version (namespace avx512, *_avx512.cc; call only when
// cpu_has_avx512()). test/native/kernels_harness.cc checks both against
// float64 references. Only declarations live here, so no inline code compiled with AVX-512 flags
// can leak into a baseline translation unit.
#pragma once
#include <cstdint>

#include "cpu_features.h"
#include "gptune/dropout_mask.h"

namespace gptune::cpu {

// Below this many floats of work a kernel runs on the calling thread: waking the pool costs a few
// microseconds, about what streaming 32K floats through one core costs.
constexpr int64_t kMinFloatsPerThread = int64_t{1} << 15;

// min_chunk for parallel_for over items that each cost `floats_per_item` floats of work.
inline int64_t min_items_per_thread(int64_t floats_per_item) {
  int64_t per_item = floats_per_item < 1 ? 1 : floats_per_item;
  int64_t items = kMinFloatsPerThread / per_item;
  return items < 1 ? 1 : items;
}

// sqrt(2/pi) and the cubic coefficient of GPT-2's tanh-approximated GELU.
constexpr float kGeluScale = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

#define GPTUNE_ROW_KERNELS                                                                        \
  /* out[i] = gelu(inp[i]), i < n */                                                              \
  void gelu_forward(float* out, const float* inp, int64_t n);                                     \
  /* dinp[i] += dout[i] * gelu'(inp[i]) */                                                        \
  void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);                \
  /* rows consecutive rows of width C; mean, rstd (rows) may be null */                           \
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,                  \
                         const float* weight, const float* bias, int64_t rows, int C, float eps); \
  /* dinp (rows,C) += ...; dweight_sum, dbias_sum (C) += this block's contributions; */           \
  /* any of dinp, dweight_sum, dbias_sum may be null */                                           \
  void layernorm_backward(float* dinp, float* dweight_sum, float* dbias_sum, const float* dout,   \
                          const float* inp, const float* weight, const float* mean,               \
                          const float* rstd, int64_t rows, int C);                                \
  /* log-sum-exp of logits (V); *argmax (may be null) = index of the first maximum */             \
  float logsumexp(const float* logits, int V, int* argmax);                                       \
  /* out[i] = scale * exp(logits[i] - shift); out may alias logits */                             \
  void scaled_exp(float* out, const float* logits, float shift, float scale, int V);              \
  /* probs (V) = softmax(logits * inv_temperature); probs may alias logits */                     \
  void softmax(float* probs, const float* logits, float inv_temperature, int V);                  \
  /* sum of x[i]^2 for i < n, in double */                                                        \
  double sum_squares(const float* x, int64_t n);                                                  \
  /* rows consecutive rows of width C, each scaled by the same weight (C); rstd (rows) may be */  \
  /* null */                                                                                      \
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,            \
                       int64_t rows, int C, float eps);                                           \
  /* dinp (rows,C) += ...; dweight_sum (C) += this block's contributions; either may be null */   \
  void rmsnorm_backward(float* dinp, float* dweight_sum, const float* dout, const float* inp,     \
                        const float* weight, const float* rstd, int64_t rows, int C);             \
  /* heads consecutive head vectors x (heads,HS) rotated in place by one position's angles, */    \
  /* cos, sin (HS/2), in the rotate-half layout; inverse rotates by -angle (the backward) */      \
  void rope_rotate(float* x, const float* cos, const float* sin, int heads, int HS, bool inverse); \
  /* rows of inp (rows,2H) = [gate | up]: out (rows,H) = silu(gate) * up */                       \
  void swiglu_forward(float* out, const float* inp, int64_t rows, int H);                         \
  /* dinp (rows,2H) += the gradient of sum(out * dout), dout (rows,H) */                          \
  void swiglu_backward(float* dinp, const float* dout, const float* inp, int64_t rows, int H);     \
  /* Dropout on a tile of an input (., C): with m = d's multiplier (scale or 0) of element */     \
  /* (row0 + i, col0 + j), dst[i,j] = m * src[i,j] (accumulate: dst[i,j] += m * src[i,j]) for */  \
  /* i < rows, j < cols; dst and src have leading dimensions ld_dst, ld_src and may be the same */ \
  /* tile (in place). A dropped element contributes exactly 0 (dst = 0, or dst unchanged), */     \
  /* whatever src holds. */                                                                       \
  void dropout_tile(float* dst, int64_t ld_dst, const float* src, int64_t ld_src, int64_t rows,  \
                    int cols, int64_t row0, int col0, int C, const DropoutMask& d,                \
                    bool accumulate);                                                             \
  /* The same with the multipliers m (n, contiguous) already drawn (dropout_tile of ones): */     \
  /* dst[i] = m[i] * src[i], or dst[i] += m[i] * src[i]; where m[i] == 0 the result is dst = 0, */ \
  /* or dst unchanged, whatever src holds. */                                                     \
  void apply_multipliers(float* dst, const float* src, const float* m, int64_t n,                 \
                         bool accumulate);                                                        \
  /* dst (n) = the float32 values of the bf16 bit patterns src (n), exactly */                    \
  void widen_bf16(float* dst, const uint16_t* src, int64_t n);                                    \
  /* dst (n) = src (n) rounded to bf16, ties to even; NaN stays NaN (quant_format.h) */           \
  void round_to_bf16(uint16_t* dst, const float* src, int64_t n);                                 \
  /* dst (n) = q (n) * scale: int8 codes dequantized (quant::int8_value) */                      \
  void int8_decode(float* dst, const int8_t* q, int64_t n, float scale);                          \
  /* dst (2 bytes) = NF4 values of packed (bytes), high nibble first, times absmax */             \
  void nf4_decode(float* dst, const uint8_t* packed, int64_t bytes, float absmax);                \
  /* sum of a[i] * b[i], i < n, float32 (any summation order) */                                  \
  float dot(const float* a, const float* b, int64_t n);                                           \
  /* y (n) += alpha * x (n) */                                                                    \
  void axpy(float* y, float alpha, const float* x, int64_t n);

namespace portable {
GPTUNE_ROW_KERNELS
}  // namespace portable

namespace avx512 {
GPTUNE_ROW_KERNELS
}  // namespace avx512

#undef GPTUNE_ROW_KERNELS

// The row kernel to call: the AVX-512 one when it is compiled in (x86-64 builds) and this CPU
// supports it, else the portable one. Usage: GPTUNE_ROW_KERNEL(gelu_forward)(out, inp, n).
#if defined(GPTUNE_X86)
#define GPTUNE_ROW_KERNEL(name) (cpu_has_avx512() ? avx512::name : portable::name)
#else
#define GPTUNE_ROW_KERNEL(name) portable::name
#endif

}  // namespace gptune::cpu
