// GGML's block formats (the quantized tensor types of GGUF files), written once for every backend:
// the byte layouts of ggml-common.h's block_q4_0, block_q5_0, block_q8_0, block_q4_K, block_q5_K and
// block_q6_K, ggml-quants.c's reference quantizers (quantize_row_*_ref, with make_qkx2_quants'
// scale-and-min search for Q4_K and Q5_K and make_qx_quants' scale search for Q6_K) and its
// dequantizers (dequantize_row_*), each float32 operation in ggml's order, so the bytes and floats
// equal ggml's bit for bit
// (test/kernels/ggml_blocks.test.ts compares them with libggml-base.so itself).
//
// Every step that rounds goes through quant_format.h's *_rn helpers: under nvcc's --use_fast_math
// they keep divisions and square roots correctly rounded and products and sums unfused. On the host
// they are plain operators, so a translation unit that includes this header and is compiled with
// FMA available (-mfma, -march=native, aarch64) must also pass -ffp-contract=off, or the compiler may
// fuse a product and a sum that ggml's generic build rounds twice (CMakeLists.txt does this for
// native/cpu/ggml_quant.cc). On the GPU, --use_fast_math also means -ftz=true: every add/mul/div/sqrt and
// comparison then flushes subnormal operands and results (PTX .ftz), so blocks of values or partial sums
// below 2^-126 (ggml_blocks.test.ts's 1e-30 rows) differ from ggml unless the .cu that calls these is
// compiled with -ftz=false as well (nvcc then emits the same correctly rounded, unfused operations
// without .ftz; checked on this header's PTX).
//
// Blocks are addressed as bytes (a block's fp16 scale sits at an even offset only when the buffer
// does), and fp16 values are read and written little-endian, as GGUF stores them.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gptune/host_device.h"
#include "gptune/quant_format.h"

namespace gptune::ggml {

// ggml_type ids (ggml.h enum ggml_type, GGUF's tensor type field).
enum Type : int { kQ4_0 = 2, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14 };

constexpr int kQK = 32;    // values per block of Q4_0, Q5_0, Q8_0
constexpr int kQK_K = 256;  // values per super-block of Q4_K, Q5_K, Q6_K

// The layouts, field for field as ggml-common.h declares them (ggml_half = uint16_t fp16 bits). The
// code below reads and writes blocks through the offsets of these fields; the structs themselves are
// never overlaid on a buffer.
struct BlockQ4_0 {
  uint16_t d;              // scale
  uint8_t qs[kQK / 2];     // value j in the low nibble of qs[j], value j+16 in the high nibble
};
struct BlockQ5_0 {
  uint16_t d;              // scale
  uint8_t qh[4];           // bit 4 of value j at bit j of the little-endian uint32
  uint8_t qs[kQK / 2];     // low 4 bits, nibbles as Q4_0
};
struct BlockQ8_0 {
  uint16_t d;              // scale
  int8_t qs[kQK];
};
struct BlockQ4_K {
  uint16_t d;              // super-scale of the 8 sub-block scales
  uint16_t dmin;           // super-scale of the 8 sub-block mins
  uint8_t scales[12];      // 8 scales and 8 mins of 6 bits (get_scale_min)
  uint8_t qs[kQK_K / 2];   // 4 chunks of 64 values: value l low nibble, value l+32 high nibble of qs[l]
};
struct BlockQ5_K {
  uint16_t d;              // super-scale of the 8 sub-block scales
  uint16_t dmin;           // super-scale of the 8 sub-block mins
  uint8_t scales[12];      // as Q4_K's
  uint8_t qh[kQK_K / 8];   // fifth bits: value l + 64c (low nibble) at bit 2c of qh[l], value l + 64c + 32 at bit 2c+1
  uint8_t qs[kQK_K / 2];   // low 4 bits, nibbles as Q4_K
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];   // low 4 bits
  uint8_t qh[kQK_K / 4];   // high 2 bits
  int8_t scales[kQK_K / 16];  // 16 sub-block scales
  uint16_t d;              // super-scale
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 is 22 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K is 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K is 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K is 210 bytes");
static_assert(offsetof(BlockQ5_0, qs) == 6 && offsetof(BlockQ4_K, qs) == 16 && offsetof(BlockQ6_K, d) == 208,
              "ggml-common.h's field order, no padding");
// Q4_K and Q5_K share their scale head (quantize_k_scales_mins, dequantize_k_block below).
static_assert(offsetof(BlockQ5_K, d) == offsetof(BlockQ4_K, d) && offsetof(BlockQ5_K, dmin) == offsetof(BlockQ4_K, dmin) &&
                  offsetof(BlockQ5_K, scales) == offsetof(BlockQ4_K, scales) && offsetof(BlockQ5_K, qh) == 16 &&
                  offsetof(BlockQ5_K, qs) == 48,
              "block_q5_K: Q4_K's d, dmin and scales, then qh and qs");

// Values per block (0 for a type that is not one of the six).
GPTUNE_HOST_DEVICE constexpr int block_size(int type) {
  switch (type) {
    case kQ4_0: case kQ5_0: case kQ8_0: return kQK;
    case kQ4_K: case kQ5_K: case kQ6_K: return kQK_K;
    default: return 0;
  }
}
// Bytes per block (0 for a type that is not one of the six).
GPTUNE_HOST_DEVICE constexpr int block_bytes(int type) {
  switch (type) {
    case kQ4_0: return static_cast<int>(sizeof(BlockQ4_0));
    case kQ5_0: return static_cast<int>(sizeof(BlockQ5_0));
    case kQ8_0: return static_cast<int>(sizeof(BlockQ8_0));
    case kQ4_K: return static_cast<int>(sizeof(BlockQ4_K));
    case kQ5_K: return static_cast<int>(sizeof(BlockQ5_K));
    case kQ6_K: return static_cast<int>(sizeof(BlockQ6_K));
    default: return 0;
  }
}
GPTUNE_HOST_DEVICE inline bool is_block_type(int type) { return block_size(type) != 0; }
inline const char* type_name(int type) {
  switch (type) {
    case kQ4_0: return "Q4_0";
    case kQ5_0: return "Q5_0";
    case kQ8_0: return "Q8_0";
    case kQ4_K: return "Q4_K";
    case kQ5_K: return "Q5_K";
    case kQ6_K: return "Q6_K";
    default: return "unknown";
  }
}
// Bytes of one row of C values (C a multiple of block_size(type)).
GPTUNE_HOST_DEVICE inline int64_t row_bytes(int type, int64_t C) {
  const int bs = block_size(type);
  return bs ? C / bs * block_bytes(type) : 0;
}

// ---- fp16 and the float steps ggml's reference code relies on ----

// fp16 -> float32, exact (ggml_compute_fp16_to_fp32; a NaN comes back quiet, as its float product does).
GPTUNE_HOST_DEVICE inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return quant::float_from_bits(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u));
  if (exponent != 0) return quant::float_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return quant::float_from_bits(sign);
  // Subnormal: mantissa * 2^-24, renormalised so its leading bit becomes the implicit one.
  uint32_t biased = 113;
  while (!(mantissa & 0x400u)) {
    mantissa <<= 1;
    --biased;
  }
  return quant::float_from_bits(sign | (biased << 23) | ((mantissa & 0x3ffu) << 13));
}

// float32 -> fp16, to nearest with ties to even (ggml_compute_fp32_to_fp16): past 65504 + half an
// ulp an infinity, below 2^-25 a signed zero, a NaN 0x7e00 with its sign. Integer steps only, so the
// GPU's flush of denormals cannot touch it.
GPTUNE_HOST_DEVICE inline uint16_t float_to_half(float f) {
  const uint32_t u = quant::float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // 65520 and up (and infinity)
  if (a >= 0x38800000u) {                         // a normal half: rebias, round at bit 13
    uint32_t t = a - 0x38000000u;
    t += 0xfffu + ((t >> 13) & 1u);
    return sign | static_cast<uint16_t>(t >> 13);
  }
  const uint32_t exponent = a >> 23;
  if (exponent < 102) return sign;  // below 2^-25
  // A subnormal half, in units of 2^-24: the 24-bit significand shifted right by 126 - exponent.
  const uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;  // 14..24
  uint32_t half = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1), halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

GPTUNE_HOST_DEVICE inline float load_half(const uint8_t* p) {
  return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
GPTUNE_HOST_DEVICE inline void store_half(uint8_t* p, float x) {
  const uint16_t h = float_to_half(x);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// ggml-quants.c nearest_int: round to nearest (ties to even) by adding 1.5 * 2^23 and reading the low
// mantissa bits; exact for |x| < 2^22, and for larger x the same bits ggml reads (its assert is off
// in release builds).
GPTUNE_HOST_DEVICE inline int nearest_int(float x) {
  const int32_t bits = static_cast<int32_t>(quant::float_bits(quant::add_rn(x, 12582912.0f)));
  return (bits & 0x007fffff) - 0x00400000;
}

// C's float -> int8_t conversion as ggml's x86-64 build performs it: truncation to a 32-bit integer
// (cvttss2si: INT32_MIN for a NaN or a value out of range), then the low byte. Only non-finite
// weights ever reach the out-of-range cases.
GPTUNE_HOST_DEVICE inline int8_t float_to_int8(float v) {
  const int32_t t = v > -2147483648.0f && v < 2147483648.0f ? static_cast<int32_t>(v) : INT32_MIN;
  return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(t) & 0xffu));
}

GPTUNE_HOST_DEVICE inline float fabs_f(float x) {
#if defined(__CUDA_ARCH__)
  return fabsf(x);
#else
  return std::fabs(x);
#endif
}

// C's roundf (halves away from zero); exact, so the same on both backends.
GPTUNE_HOST_DEVICE inline float round_away(float x) {
#if defined(__CUDA_ARCH__)
  return roundf(x);
#else
  return std::round(x);
#endif
}

constexpr float kGroupMaxEps = 1e-15f;  // ggml-quants.c GROUP_MAX_EPS: a group below it is all zero

// ---- Q4_0 and Q5_0: one scale d = max / -8 (-16), where max is the value of largest magnitude ----

// ggml's absmax scan: the first value of the largest magnitude, with its sign.
GPTUNE_HOST_DEVICE inline float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float a = fabs_f(x[j]);
    if (amax < a) {
      amax = a;
      max = x[j];
    }
  }
  return max;
}

GPTUNE_HOST_DEVICE inline void quantize_block_q4_0(uint8_t* block, const float* x) {
  const float d = quant::div_rn(signed_absmax(x, kQK), -8.0f);
  const float id = d != 0.0f ? quant::div_rn(1.0f, d) : 0.0f;
  store_half(block, d);
  uint8_t* qs = block + offsetof(BlockQ4_0, qs);
  for (int j = 0; j < kQK / 2; ++j) {
    const int v0 = float_to_int8(quant::add_rn(quant::mul_rn(x[j], id), 8.5f));
    const int v1 = float_to_int8(quant::add_rn(quant::mul_rn(x[j + kQK / 2], id), 8.5f));
    const uint8_t lo = static_cast<uint8_t>(v0 < 15 ? v0 : 15), hi = static_cast<uint8_t>(v1 < 15 ? v1 : 15);
    qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

GPTUNE_HOST_DEVICE inline void dequantize_block_q4_0(float* y, const uint8_t* block) {
  const float d = load_half(block);
  const uint8_t* qs = block + offsetof(BlockQ4_0, qs);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = quant::mul_rn(static_cast<float>((qs[j] & 0x0f) - 8), d);
    y[j + kQK / 2] = quant::mul_rn(static_cast<float>((qs[j] >> 4) - 8), d);
  }
}

GPTUNE_HOST_DEVICE inline void quantize_block_q5_0(uint8_t* block, const float* x) {
  const float d = quant::div_rn(signed_absmax(x, kQK), -16.0f);
  const float id = d != 0.0f ? quant::div_rn(1.0f, d) : 0.0f;
  store_half(block, d);
  uint8_t* qs = block + offsetof(BlockQ5_0, qs);
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const int v0 = float_to_int8(quant::add_rn(quant::mul_rn(x[j], id), 16.5f));
    const int v1 = float_to_int8(quant::add_rn(quant::mul_rn(x[j + kQK / 2], id), 16.5f));
    const uint8_t lo = static_cast<uint8_t>(v0 < 31 ? v0 : 31), hi = static_cast<uint8_t>(v1 < 31 ? v1 : 31);
    qs[j] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
    qh |= static_cast<uint32_t>((lo & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((hi & 0x10u) >> 4) << (j + kQK / 2);
  }
  uint8_t* qh_bytes = block + offsetof(BlockQ5_0, qh);
  for (int b = 0; b < 4; ++b) qh_bytes[b] = static_cast<uint8_t>(qh >> (8 * b));
}

GPTUNE_HOST_DEVICE inline void dequantize_block_q5_0(float* y, const uint8_t* block) {
  const float d = load_half(block);
  const uint8_t* h = block + offsetof(BlockQ5_0, qh);
  const uint32_t qh = h[0] | (h[1] << 8) | (h[2] << 16) | (static_cast<uint32_t>(h[3]) << 24);
  const uint8_t* qs = block + offsetof(BlockQ5_0, qs);
  for (int j = 0; j < kQK / 2; ++j) {
    const int high0 = ((qh >> j) << 4) & 0x10, high1 = (qh >> (j + 12)) & 0x10;
    y[j] = quant::mul_rn(static_cast<float>(((qs[j] & 0x0f) | high0) - 16), d);
    y[j + kQK / 2] = quant::mul_rn(static_cast<float>(((qs[j] >> 4) | high1) - 16), d);
  }
}

// ---- Q8_0: d = absmax / 127, q = roundf(x / d) ----

GPTUNE_HOST_DEVICE inline void quantize_block_q8_0(uint8_t* block, const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    const float a = fabs_f(x[j]);
    amax = amax > a ? amax : a;  // ggml's MAX(amax, fabsf(v))
  }
  const float d = quant::div_rn(amax, 127.0f);
  const float id = d != 0.0f ? quant::div_rn(1.0f, d) : 0.0f;
  store_half(block, d);
  uint8_t* qs = block + offsetof(BlockQ8_0, qs);
  for (int j = 0; j < kQK; ++j) qs[j] = static_cast<uint8_t>(float_to_int8(round_away(quant::mul_rn(x[j], id))));
}

GPTUNE_HOST_DEVICE inline void dequantize_block_q8_0(float* y, const uint8_t* block) {
  const float d = load_half(block);
  const uint8_t* qs = block + offsetof(BlockQ8_0, qs);
  for (int j = 0; j < kQK; ++j) y[j] = quant::mul_rn(static_cast<float>(static_cast<int8_t>(qs[j])), d);
}

// ---- Q4_K and Q5_K: 8 sub-blocks of 32, x = d * sc * q - dmin * m with 6-bit sc, m and a 4-bit
// (Q4_K) or 5-bit (Q5_K) q ----

// ggml-quants.c make_qkx2_quants: codes L (n) in [0, nmax] for x ~ scale * L - the_min, searching
// nstep + 1 candidate inverse scales (rmin + rdelta * is + nmax) / (max - min) for the least
// weighted squared error, each candidate's scale and min fitted by weighted least squares. Laux (n)
// is scratch. Returns the scale; the_min >= 0.
GPTUNE_HOST_DEVICE inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                                                 float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  using quant::add_rn;
  using quant::div_rn;
  using quant::mul_rn;
  using quant::sub_rn;
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = mul_rn(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w = add_rn(sum_w, weights[i]);
    sum_x = add_rn(sum_x, mul_rn(weights[i], x[i]));
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  const float fmax_code = static_cast<float>(nmax);
  float iscale = div_rn(fmax_code, sub_rn(max, min));
  float scale = div_rn(1.0f, iscale);
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(mul_rn(iscale, sub_rn(x[i], min)));
    L[i] = static_cast<uint8_t>(l < 0 ? 0 : l > nmax ? nmax : l);
    const float diff = sub_rn(add_rn(mul_rn(scale, static_cast<float>(L[i])), min), x[i]);
    best_error = add_rn(best_error, mul_rn(weights[i], mul_rn(diff, diff)));
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = div_rn(add_rn(add_rn(rmin, mul_rn(rdelta, static_cast<float>(is))), fmax_code), sub_rn(max, min));
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(mul_rn(iscale, sub_rn(x[i], min)));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      Laux[i] = static_cast<uint8_t>(l);
      const float wl = mul_rn(weights[i], static_cast<float>(l));
      sum_l = add_rn(sum_l, wl);
      sum_l2 = add_rn(sum_l2, mul_rn(wl, static_cast<float>(l)));
      sum_xl = add_rn(sum_xl, mul_rn(wl, x[i]));
    }
    const float D = sub_rn(mul_rn(sum_w, sum_l2), mul_rn(sum_l, sum_l));
    if (D > 0.0f) {
      float this_scale = div_rn(sub_rn(mul_rn(sum_w, sum_xl), mul_rn(sum_x, sum_l)), D);
      float this_min = div_rn(sub_rn(mul_rn(sum_l2, sum_x), mul_rn(sum_l, sum_xl)), D);
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = div_rn(sum_xl, sum_l2);
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        const float diff = sub_rn(add_rn(mul_rn(this_scale, static_cast<float>(Laux[i])), this_min), x[i]);
        cur_error = add_rn(cur_error, mul_rn(weights[i], mul_rn(diff, diff)));
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The 6-bit scale sc and min m of sub-block j (0..7) from a Q4_K or Q5_K block's 12 scale bytes
// (ggml-quants.c get_scale_min_k4): j < 4 in the low 6 bits of bytes j and j+4, j >= 4 split into a
// nibble of byte j+4 and the top 2 bits of bytes j-4 and j.
GPTUNE_HOST_DEVICE inline void q4_k_scale_min(int j, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// The part of quantize_row_q4_K_ref and quantize_row_q5_K_ref that the two share: each sub-block of 32
// fitted by make_qkx2_quants (codes 0..nmax, weights av_x + |x|, inverse scales rmin + 0.1 is +
// nmax for is <= nstep; Q4_K: 15, -1, 20; Q5_K: 31, -0.5, 15), its scale and min quantized to 6 bits
// against d = max scale / 63 and dmin = max min / 63, all three written to the block (the same
// offsets in both layouts); then L (256) receives the codes against the scales and mins as stored
// (a sub-block whose scale rounds to 0 keeps the search's codes).
GPTUNE_HOST_DEVICE inline void quantize_k_scales_mins(uint8_t* block, uint8_t* L, const float* x, int nmax, float rmin,
                                                      int nstep) {
  using quant::add_rn;
  using quant::div_rn;
  using quant::mul_rn;
  uint8_t Laux[32];
  float weights[32];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < kQK_K / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 = add_rn(sum_x2, mul_rn(xs[l], xs[l]));
    const float av_x = quant::sqrt_rn(div_rn(sum_x2, 32.0f));
    for (int l = 0; l < 32; ++l) weights[l] = add_rn(av_x, fabs_f(xs[l]));
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? div_rn(63.0f, max_scale) : 0.0f;
  const float inv_min = max_min > 0.0f ? div_rn(63.0f, max_min) : 0.0f;
  uint8_t* sm = block + offsetof(BlockQ4_K, scales);
  for (int j = 0; j < kQK_K / 32; ++j) {
    // ggml stores nearest_int's result in a uint8_t (wrapping a negative one) before clamping to 63.
    uint8_t ls = static_cast<uint8_t>(nearest_int(mul_rn(inv_scale, scales[j])));
    uint8_t lm = static_cast<uint8_t>(nearest_int(mul_rn(inv_min, mins[j])));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    if (j < 4) {
      sm[j] = ls;
      sm[j + 4] = lm;
    } else {
      sm[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      sm[j - 4] = static_cast<uint8_t>(sm[j - 4] | ((ls >> 4) << 6));
      sm[j] = static_cast<uint8_t>(sm[j] | ((lm >> 4) << 6));
    }
  }
  store_half(block + offsetof(BlockQ4_K, d), div_rn(max_scale, 63.0f));
  store_half(block + offsetof(BlockQ4_K, dmin), div_rn(max_min, 63.0f));
  const float d_all = load_half(block + offsetof(BlockQ4_K, d));
  const float dmin_all = load_half(block + offsetof(BlockQ4_K, dmin));
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    q4_k_scale_min(j, sm, &sc, &m);
    const float d = mul_rn(d_all, static_cast<float>(sc));
    if (d == 0.0f) continue;
    const float dm = mul_rn(dmin_all, static_cast<float>(m));
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int(div_rn(add_rn(x[32 * j + ii], dm), d));
      L[32 * j + ii] = static_cast<uint8_t>(l < 0 ? 0 : l > nmax ? nmax : l);
    }
  }
}

GPTUNE_HOST_DEVICE inline void quantize_block_q4_k(uint8_t* block, const float* x) {
  uint8_t L[kQK_K];
  quantize_k_scales_mins(block, L, x, 15, -1.0f, 20);
  uint8_t* q = block + offsetof(BlockQ4_K, qs);
  for (int j = 0; j < kQK_K; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// Codes 0..31: the low 4 bits packed as Q4_K's, the fifth bit of value l + 64c (l < 32) at bit 2c of
// qh[l] and of value l + 64c + 32 at bit 2c + 1.
GPTUNE_HOST_DEVICE inline void quantize_block_q5_k(uint8_t* block, const float* x) {
  uint8_t L[kQK_K];
  quantize_k_scales_mins(block, L, x, 31, -0.5f, 15);
  uint8_t* qh = block + offsetof(BlockQ5_K, qh);
  uint8_t* q = block + offsetof(BlockQ5_K, qs);
  for (int l = 0; l < kQK_K / 8; ++l) qh[l] = 0;
  for (int c = 0; c < kQK_K / 64; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int lo = L[64 * c + l], hi = L[64 * c + l + 32];
      qh[l] = static_cast<uint8_t>(qh[l] | ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      q[l] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
    }
    q += 32;
  }
}

// dequantize_row_q4_K (qh null) and dequantize_row_q5_K: chunk c of 64 values is sub-blocks 2c (the
// low nibbles of qs[32c..32c+31]) and 2c+1 (the high nibbles), plus 16 where Q5_K's fifth bit is set.
GPTUNE_HOST_DEVICE inline void dequantize_k_block(float* y, const uint8_t* block, const uint8_t* q, const uint8_t* qh) {
  using quant::mul_rn;
  using quant::sub_rn;
  const float d = load_half(block + offsetof(BlockQ4_K, d));
  const float dmin = load_half(block + offsetof(BlockQ4_K, dmin));
  const uint8_t* sm = block + offsetof(BlockQ4_K, scales);
  for (int c = 0; c < kQK_K / 64; ++c) {
    uint8_t sc, m;
    q4_k_scale_min(2 * c, sm, &sc, &m);
    const float d1 = mul_rn(d, static_cast<float>(sc)), m1 = mul_rn(dmin, static_cast<float>(m));
    q4_k_scale_min(2 * c + 1, sm, &sc, &m);
    const float d2 = mul_rn(d, static_cast<float>(sc)), m2 = mul_rn(dmin, static_cast<float>(m));
    for (int l = 0; l < 32; ++l) {
      const int high = qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0;
      y[l] = sub_rn(mul_rn(d1, static_cast<float>((q[l] & 0x0f) + high)), m1);
    }
    for (int l = 0; l < 32; ++l) {
      const int high = qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
      y[l + 32] = sub_rn(mul_rn(d2, static_cast<float>((q[l] >> 4) + high)), m2);
    }
    y += 64;
    q += 32;
  }
}

GPTUNE_HOST_DEVICE inline void dequantize_block_q4_k(float* y, const uint8_t* block) {
  dequantize_k_block(y, block, block + offsetof(BlockQ4_K, qs), nullptr);
}
GPTUNE_HOST_DEVICE inline void dequantize_block_q5_k(float* y, const uint8_t* block) {
  dequantize_k_block(y, block, block + offsetof(BlockQ5_K, qs), block + offsetof(BlockQ5_K, qh));
}

// ---- Q6_K: 16 sub-blocks of 16, x = d * sc * (q - 32) with int8 sc and 6-bit q ----

// ggml-quants.c make_qx_quants with rmse_type 1 and no importance weights: codes L (n) in
// [0, 2 nmax) for x ~ scale * (L - nmax), trying the inverse scales -(nmax + 0.1 is) / max for is in
// [-9, 9] and keeping the one with the best x^2-weighted fit. Returns the scale.
GPTUNE_HOST_DEVICE inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  using quant::add_rn;
  using quant::div_rn;
  using quant::mul_rn;
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = fabs_f(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  auto clamp = [nmax](int l) { return l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l; };
  // The fit of codes round(iscale * x): sums of w x l and w l l with w = x^2.
  auto fit = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = 0.0f;
    *suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float l = static_cast<float>(clamp(nearest_int(mul_rn(iscale, x[i]))));
      const float w = mul_rn(x[i], x[i]);
      *sumlx = add_rn(*sumlx, mul_rn(mul_rn(w, x[i]), l));
      *suml2 = add_rn(*suml2, mul_rn(mul_rn(w, l), l));
    }
  };
  auto codes = [&](float iscale) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(mul_rn(iscale, x[i]))));
  };
  float iscale = div_rn(static_cast<float>(-nmax), max);
  float sumlx, suml2;
  fit(iscale, &sumlx, &suml2);
  codes(iscale);
  float scale = suml2 != 0.0f ? div_rn(sumlx, suml2) : 0.0f;
  float best = mul_rn(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = div_rn(-add_rn(static_cast<float>(nmax), mul_rn(0.1f, static_cast<float>(is))), max);
    fit(iscale, &sumlx, &suml2);
    if (suml2 > 0.0f && mul_rn(sumlx, sumlx) > mul_rn(best, suml2)) {
      codes(iscale);
      scale = div_rn(sumlx, suml2);
      best = mul_rn(scale, sumlx);
    }
  }
  return scale;
}

GPTUNE_HOST_DEVICE inline void quantize_block_q6_k(uint8_t* block, const float* x) {
  using quant::div_rn;
  using quant::mul_rn;
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    const float abs_scale = fabs_f(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    for (int b = 0; b < static_cast<int>(sizeof(BlockQ6_K)); ++b) block[b] = 0;
    return;
  }
  const float iscale = div_rn(-128.0f, max_scale);
  store_half(block + offsetof(BlockQ6_K, d), div_rn(1.0f, iscale));
  int8_t* sc = reinterpret_cast<int8_t*>(block + offsetof(BlockQ6_K, scales));
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    const int s = nearest_int(mul_rn(iscale, scales[ib]));
    sc[ib] = static_cast<int8_t>(static_cast<uint8_t>(s < 127 ? s : 127));
  }
  // The codes again against the scales as stored (a sub-block whose scale is 0 keeps the search's).
  const float d_all = load_half(block + offsetof(BlockQ6_K, d));
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = mul_rn(d_all, static_cast<float>(sc[j]));
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(div_rn(x[16 * j + ii], d));
      L[16 * j + ii] = static_cast<int8_t>((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
    }
  }
  uint8_t* ql = block + offsetof(BlockQ6_K, ql);
  uint8_t* qh = block + offsetof(BlockQ6_K, qh);
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l] = static_cast<uint8_t>((q1 & 0x0f) | ((q3 & 0x0f) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0x0f) | ((q4 & 0x0f) << 4));
      qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

GPTUNE_HOST_DEVICE inline void dequantize_block_q6_k(float* y, const uint8_t* block) {
  using quant::mul_rn;
  const float d = load_half(block + offsetof(BlockQ6_K, d));
  const uint8_t* ql = block + offsetof(BlockQ6_K, ql);
  const uint8_t* qh = block + offsetof(BlockQ6_K, qh);
  const int8_t* sc = reinterpret_cast<const int8_t*>(block + offsetof(BlockQ6_K, scales));
  for (int n = 0; n < kQK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = mul_rn(mul_rn(d, static_cast<float>(sc[is])), static_cast<float>(q1));
      y[l + 32] = mul_rn(mul_rn(d, static_cast<float>(sc[is + 2])), static_cast<float>(q2));
      y[l + 64] = mul_rn(mul_rn(d, static_cast<float>(sc[is + 4])), static_cast<float>(q3));
      y[l + 96] = mul_rn(mul_rn(d, static_cast<float>(sc[is + 6])), static_cast<float>(q4));
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// ---- by type id ----

// One block of block_size(type) values x into block_bytes(type) bytes; an unknown type writes nothing.
GPTUNE_HOST_DEVICE inline void quantize_block(int type, uint8_t* block, const float* x) {
  switch (type) {
    case kQ4_0: quantize_block_q4_0(block, x); break;
    case kQ5_0: quantize_block_q5_0(block, x); break;
    case kQ8_0: quantize_block_q8_0(block, x); break;
    case kQ4_K: quantize_block_q4_k(block, x); break;
    case kQ5_K: quantize_block_q5_k(block, x); break;
    case kQ6_K: quantize_block_q6_k(block, x); break;
    default: break;
  }
}
// One block back to block_size(type) floats; an unknown type writes nothing.
GPTUNE_HOST_DEVICE inline void dequantize_block(int type, float* y, const uint8_t* block) {
  switch (type) {
    case kQ4_0: dequantize_block_q4_0(y, block); break;
    case kQ5_0: dequantize_block_q5_0(y, block); break;
    case kQ8_0: dequantize_block_q8_0(y, block); break;
    case kQ4_K: dequantize_block_q4_k(y, block); break;
    case kQ5_K: dequantize_block_q5_k(y, block); break;
    case kQ6_K: dequantize_block_q6_k(y, block); break;
    default: break;
  }
}

// A row of C values (a multiple of block_size(type)) into row_bytes(type, C) bytes, and back.
GPTUNE_HOST_DEVICE inline void quantize_row(int type, uint8_t* dst, const float* x, int64_t C) {
  const int bs = block_size(type), bytes = block_bytes(type);
  for (int64_t b = 0; bs && b < C / bs; ++b) quantize_block(type, dst + b * bytes, x + b * bs);
}
GPTUNE_HOST_DEVICE inline void dequantize_row(int type, float* y, const uint8_t* src, int64_t C) {
  const int bs = block_size(type), bytes = block_bytes(type);
  for (int64_t b = 0; bs && b < C / bs; ++b) dequantize_block(type, y + b * bs, src + b * bytes);
}

}  // namespace gptune::ggml
