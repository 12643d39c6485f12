// The quantized and 16-bit weight formats of kernels.inc, written once for every backend: the
// tables (NF4 values and decision thresholds, bitsandbytes' dynamic 8-bit code) and each float32
// step of quantizing and dequantizing. The CPU kernels (native/cpu/quant.cc) and the CUDA kernels
// (native/cuda/quant.cu) both call these helpers, so both backends apply the same float32
// operations in the same order and give bit-identical codes, scales and dequantized weights. The
// *_rn helpers keep nvcc's --use_fast_math from replacing a division by an approximation or fusing
// a product and a sum into one rounding (denormal operands are still flushed to zero on the GPU).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gptune/host_device.h"

namespace gptune::quant {

constexpr int kNf4Block = 64;     // weights per NF4 absmax
constexpr int kStatsBlock = 256;  // absmax values per second-level scale (double quantization)

// The 16 NormalFloat4 values of QLoRA (Dettmers et al. 2023, appendix E) as bitsandbytes lists them
// (functional.py get_4bit_type("nf4") and the dDequantizeNF4 table of its CUDA kernels).
constexpr float kNf4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// The float midpoints of neighbouring NF4 values: the thresholds of bitsandbytes' dQuantizeNF4
// decision tree (the upper code wins strictly above a midpoint).
inline std::array<float, 15> nf4_midpoints() {
  std::array<float, 15> m{};
  for (int i = 0; i < 15; ++i) m[i] = static_cast<float>((double{kNf4[i]} + double{kNf4[i + 1]}) / 2.0);
  return m;
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i in 0..6,
// the midpoints of torch.linspace(0.1, 1, 2^i + 1) (float32, ATen's two-sided formula) times
// +-10^(i-6), plus 0 and 1, sorted: 256 increasing values in [-0.993, 1].
inline std::array<float, 256> make_dynamic_code() {
  static const double kPowers[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
  std::vector<float> values;
  for (int i = 0; i < 7; ++i) {
    const int items = (1 << i) + 1;
    const float start = 0.1f, end = 1.0f;
    const float step = (end - start) / static_cast<float>(items - 1);
    std::vector<float> bounds(items);
    for (int j = 0; j < items; ++j)
      bounds[j] = j < items / 2 ? start + step * static_cast<float>(j) : end - step * static_cast<float>(items - 1 - j);
    const float power = static_cast<float>(kPowers[i]);
    for (int j = 0; j + 1 < items; ++j) {
      const float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
      values.push_back(power * mean);
      values.push_back(-power * mean);
    }
  }
  values.push_back(0.0f);
  values.push_back(1.0f);
  std::sort(values.begin(), values.end());
  std::array<float, 256> code{};
  std::copy(values.begin(), values.end(), code.begin());
  return code;
}

// The double-quantization offset: the mean of the block absmax values, accumulated in double in
// index order and rounded once (a host loop on every backend, so the order never differs).
inline float absmax_mean(const float* absmax, int64_t blocks) {
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b) sum += absmax[b];
  return static_cast<float>(sum / static_cast<double>(blocks));
}

// ---- float32 steps, correctly rounded on both backends ----
GPTUNE_HOST_DEVICE inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
GPTUNE_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
GPTUNE_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
GPTUNE_HOST_DEVICE inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
GPTUNE_HOST_DEVICE inline float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// int8 per output channel (bitsandbytes' int8_vectorwise_quant): scale = absmax / 127, and a
// weight's code round(w * (127 / absmax)) with torch.round's half-to-even rounding (rint in the
// default rounding mode). An all-zero row has factor 0, so codes 0.
GPTUNE_HOST_DEVICE inline float int8_scale(float absmax) { return div_rn(absmax, 127.0f); }
GPTUNE_HOST_DEVICE inline float int8_factor(float absmax) { return absmax > 0.0f ? div_rn(127.0f, absmax) : 0.0f; }
GPTUNE_HOST_DEVICE inline int8_t int8_code(float w, float factor) {
#if defined(__CUDA_ARCH__)
  const float v = rintf(mul_rn(w, factor));
#else
  const float v = std::nearbyint(mul_rn(w, factor));
#endif
  // The clamp only matters for non-finite weights (NaN becomes 0), where the cast would be undefined.
  return static_cast<int8_t>(v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? static_cast<int>(v) : 0);
}
GPTUNE_HOST_DEVICE inline float int8_value(int8_t q, float scale) { return mul_rn(static_cast<float>(q), scale); }

// NF4: bitsandbytes multiplies by the reciprocal of the block absmax; an all-zero block (where it
// would form 0 * inf) maps every element to the code of 0.0.
GPTUNE_HOST_DEVICE inline float nf4_inverse(float absmax) { return absmax > 0.0f ? div_rn(1.0f, absmax) : 0.0f; }
GPTUNE_HOST_DEVICE inline int nf4_code(float w, float inverse, const float* midpoints) {
  const float x = mul_rn(w, inverse);
  int code = 0;
  while (code < 15 && x > midpoints[code]) ++code;
  return code;
}
// Index of the value of the sorted 256-entry dynamic code nearest x (ties to the lower value).
GPTUNE_HOST_DEVICE inline int nearest_dynamic(float x, const float* code) {
  int lo = 0, hi = 256;  // first index whose value is > x, by bisection
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (code[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  if (lo == 0) return 0;
  if (lo == 256) return 255;
  return sub_rn(code[lo], x) < sub_rn(x, code[lo - 1]) ? lo : lo - 1;
}
// The normalised deviation a block absmax is coded from, and the absmax the code reconstructs.
GPTUNE_HOST_DEVICE inline float nf4_stat_normalised(float absmax, float mean, float inverse) {
  return mul_rn(sub_rn(absmax, mean), inverse);
}
GPTUNE_HOST_DEVICE inline float nf4_block_absmax(float code8_value, float absmax2, float offset) {
  return add_rn(mul_rn(code8_value, absmax2), offset);
}

// ---- bfloat16 ----
GPTUNE_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
GPTUNE_HOST_DEVICE inline float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
// bf16 -> float32 is exact: the 16 bits are the top half of the float's.
GPTUNE_HOST_DEVICE inline float bf16_to_float(uint16_t b) { return float_from_bits(static_cast<uint32_t>(b) << 16); }
// float32 -> bf16, round to nearest, ties to even (finite values past the largest bf16 become
// infinities); a NaN stays a NaN (quiet, with its sign and top payload bits).
GPTUNE_HOST_DEVICE inline uint16_t float_to_bf16(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace gptune::quant
