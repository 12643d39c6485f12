// Internals of the GGML block-format matmuls (ggml_matmul.cc drives; ggml_matmul_avx512.cc and
// ggml_matmul_avx2.cc compute): block geometry and the two single-threaded building blocks, each
// in a portable, an AVX2 and an AVX-512 version. Besides declarations only constants and static
// (per translation unit) helpers live here: see row_kernels.h for why no inline function may be
// shared with the SIMD translation units.
//
// Block layouts are ggml-common.h's block_* structs (little-endian, no padding):
//   Q4_0 (32 values, 18 bytes): fp16 d, qs[16]; value j = ((qs[j] & 15) - 8) * d, j+16 = ((qs[j] >> 4) - 8) * d.
//   Q5_0 (32, 22): fp16 d, qh[4] (a uint32, bit j = fifth bit of value j), qs[16] as Q4_0, codes - 16.
//   Q8_0 (32, 34): fp16 d, int8 qs[32]; value j = qs[j] * d.
//   Q4_K (256, 144): fp16 d, fp16 dmin, scales[12] (eight 6-bit scales and mins), qs[128]; sub-block s
//     (32 values) = d*sc[s] * code - dmin*m[s], codes the low nibbles of qs[32(s/2)..] for even s, the high ones
//     for odd s.
//   Q6_K (256, 210): ql[128], qh[64], int8 scales[16], fp16 d; value = (d * scales[i/16]) * (6-bit code - 32).
// Every dequantized value is computed with the same float32 operations, in the same order, as ggml's
// dequantize_row_* (never contracted into an FMA), so the matmuls multiply the inputs by exactly the
// values dequantize_ggml gives.
#pragma once
#include <cstdint>

namespace gptune::cpu {

namespace ggml {
constexpr int kQ4_0 = 2, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kQ6_K = 14;  // ggml's type ids

struct Geometry {
  int values;  // per block
  int bytes;   // per block
};
// {0, 0} for an unsupported type.
constexpr Geometry geometry(int type) {
  return type == kQ4_0 ? Geometry{32, 18} : type == kQ5_0 ? Geometry{32, 22} : type == kQ8_0 ? Geometry{32, 34}
       : type == kQ4_K ? Geometry{256, 144} : type == kQ6_K ? Geometry{256, 210} : Geometry{0, 0};
}

// IEEE binary16 bits -> float32, exactly (ggml's GGML_FP16_TO_FP32). static: each translation unit,
// SIMD ones included, keeps its own copy (see above).
static inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exponent = (h >> 10) & 31, mantissa = h & 1023;
  uint32_t bits;
  if (exponent == 0) {
    // zero or subnormal: mantissa * 2^-24, exact in float32
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    __builtin_memcpy(&bits, &magnitude, 4);
    bits |= sign;
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// The little-endian fp16 at p.
static inline float half_at(const uint8_t* p) { return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// Q4_K's scale and min of sub-block s (0..7) from its 12-byte scales field (ggml's get_scale_min_k4).
static inline void q4k_scale_min(const uint8_t* scales, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = scales[s] & 63;
    *min = scales[s + 4] & 63;
  } else {
    *scale = (scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4);
    *min = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  }
}
}  // namespace ggml

// matmul_ggml_forward / matmul_ggml_backward (kernels.inc) on the widest SIMD level this CPU runs.
void ggml_matmul_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C,
                         int OC, int out_stride);
void ggml_matmul_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                          int dout_stride);

// Rows of input the fused dot kernel takes at once (each decoded weight vector is used this many times).
constexpr int kGgmlDotRows = 4;

#define GPTUNE_GGML_KERNELS                                                                          \
  /* dst (count * values) = `count` consecutive blocks of `type` dequantized, bit for bit as ggml */ \
  void ggml_decode(float* dst, const uint8_t* blocks, int type, int64_t count);                      \
  /* y[r] = sum_c x[r*ldx + c] * w[c] for r < rows (1..kGgmlDotRows), c < C: w is one weight row */  \
  /* of C values (C/values blocks of `type`), dequantized in registers; float32 accumulation */      \
  void ggml_dot(float* y, const float* x, int64_t ldx, int rows, const uint8_t* w, int type, int C);

namespace portable {
GPTUNE_GGML_KERNELS
}  // namespace portable
namespace avx2 {
GPTUNE_GGML_KERNELS
}  // namespace avx2
namespace avx512 {
GPTUNE_GGML_KERNELS
}  // namespace avx512

#undef GPTUNE_GGML_KERNELS

}  // namespace gptune::cpu
