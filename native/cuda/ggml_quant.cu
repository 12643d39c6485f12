// GGML block formats (GGUF's Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) on CUDA, weight-only: activations stay
// float32 and every matmul computes in float32 with the values dequantize_ggml gives.
//   - quantize / dequantize: one thread per block runs the per-block functions of
//     gptune/ggml_blocks.h, the ones the CPU backend runs, so bytes and floats equal the CPU's (and
//     ggml's) bit for bit. This file is compiled without fast math (CMakeLists.txt: no FMA
//     contraction, IEEE division and square root, no flush to zero): ggml's reference quantizers
//     round every product and sum on its own, and so must we.
//   - forward with at most kGemvRows input rows (decoding): one warp per output row; each lane
//     dequantizes 8 consecutive values of the row in registers (a warp covers 256 values, one
//     K-quant super-block or eight 32-value blocks, reading them as one contiguous span) and
//     multiplies them into up to kGemvRows sums, reduced across the warp by shuffles;
//   - otherwise slabs of whole rows are dequantized to scratch and multiplied on the fp32 SIMT GEMM,
//     as the int8 / NF4 / bf16 frozen weights are (quant.cu, quant_slab_forward/backward).
#include <cstddef>
#include <type_traits>

#include "common.cuh"
#include "gptune/ggml_blocks.h"

namespace gptune::cuda {
namespace {

namespace g = gptune::ggml;

// ---- 8 consecutive values of one block, dequantized exactly as dequantize_row_* does ----
// values8(v, block, first): v = values first .. first+7 of the block at `block` (its first byte;
// fields are read byte by byte at ggml_blocks.h's offsets, blocks being 2-byte aligned at best);
// `first` is a multiple of 8. test/gpu checks them against ggml's dequantized weights exactly.
struct Q4_0 {
  using Block = g::BlockQ4_0;
  static constexpr int kType = g::kQ4_0, kValues = g::kQK, kBytes = sizeof(Block);
  // value j < 16 is the low nibble of qs[j], value j >= 16 the high nibble of qs[j - 16];
  // value = (nibble - 8) * d.
  __device__ __forceinline__ static void values8(float v[8], const uint8_t* block, int first) {
    const float d = g::load_half(block + offsetof(Block, d));
    const uint8_t* qs = block + offsetof(Block, qs) + first % 16;
    const int shift = first < 16 ? 0 : 4;
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = static_cast<float>(((qs[j] >> shift) & 15) - 8) * d;
  }
};

struct Q5_0 {
  using Block = g::BlockQ5_0;
  static constexpr int kType = g::kQ5_0, kValues = g::kQK, kBytes = sizeof(Block);
  // value j's low 4 bits are the nibble of qs as in Q4_0, its fifth bit is bit j of qh (little
  // endian: bit j % 8 of byte j / 8); value = (q - 16) * d.
  __device__ __forceinline__ static void values8(float v[8], const uint8_t* block, int first) {
    const float d = g::load_half(block + offsetof(Block, d));
    const unsigned high = block[offsetof(Block, qh) + first / 8];
    const uint8_t* qs = block + offsetof(Block, qs) + first % 16;
    const int shift = first < 16 ? 0 : 4;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int q = ((qs[j] >> shift) & 15) | (((high >> j) & 1) << 4);
      v[j] = static_cast<float>(q - 16) * d;
    }
  }
};

struct Q8_0 {
  using Block = g::BlockQ8_0;
  static constexpr int kType = g::kQ8_0, kValues = g::kQK, kBytes = sizeof(Block);
  // value = qs[j] * d.
  __device__ __forceinline__ static void values8(float v[8], const uint8_t* block, int first) {
    const float d = g::load_half(block + offsetof(Block, d));
    const uint8_t* qs = block + offsetof(Block, qs) + first;
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
  }
};

// Q4_K and Q5_K: eight sub-blocks of 32, each with a 6-bit scale and min; sub-blocks 2p and 2p+1 are
// the low and high nibbles of qs[32p .. 32p+31]; Q5_K adds 16 where the value's fifth bit, bit `sub`
// of qh[l] (l its index among the sub-block's 32), is set; value = (d * scale) * q - (dmin * min).
template <int kTypeId>
struct ScaleMinK {
  static constexpr bool kFifthBit = kTypeId == g::kQ5_K;
  using Block = std::conditional_t<kFifthBit, g::BlockQ5_K, g::BlockQ4_K>;
  static constexpr int kType = kTypeId, kValues = g::kQK_K, kBytes = sizeof(Block);
  __device__ __forceinline__ static void values8(float v[8], const uint8_t* block, int first) {
    const int sub = first / 32;
    uint8_t scale, min;
    g::q4_k_scale_min(sub, block + offsetof(Block, scales), &scale, &min);
    const float d = g::load_half(block + offsetof(Block, d)) * static_cast<float>(scale);
    const float m = g::load_half(block + offsetof(Block, dmin)) * static_cast<float>(min);
    const uint8_t* qs = block + offsetof(Block, qs) + 32 * (sub / 2) + first % 32;
    const int shift = sub % 2 ? 4 : 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int q = (qs[j] >> shift) & 15;
      if constexpr (kFifthBit) q |= ((block[offsetof(Block, qh) + first % 32 + j] >> sub) & 1) << 4;
      v[j] = d * static_cast<float>(q) - m;
    }
  }
};
using Q4_K = ScaleMinK<g::kQ4_K>;
using Q5_K = ScaleMinK<g::kQ5_K>;

struct Q6_K {
  using Block = g::BlockQ6_K;
  static constexpr int kType = g::kQ6_K, kValues = g::kQK_K, kBytes = sizeof(Block);
  // Two halves of 128 values; in half h, quarter k (values l = 0..31) takes its low 4 bits from
  // ql[64h + 32(k%2) + l] (the low nibble for k < 2, the high one for k >= 2), its top 2 bits from
  // bits 2k, 2k+1 of qh[32h + l], and the scale scales[8h + 2k + l/16]; value = (d * scale) * (q - 32).
  __device__ __forceinline__ static void values8(float v[8], const uint8_t* block, int first) {
    const int half = first / 128, quarter = first % 128 / 32, l = first % 32;
    const uint8_t* ql = block + offsetof(Block, ql) + 64 * half + 32 * (quarter % 2) + l;
    const uint8_t* qh = block + offsetof(Block, qh) + 32 * half + l;
    const int8_t scale = static_cast<int8_t>(block[offsetof(Block, scales) + 8 * half + 2 * quarter + l / 16]);
    const float d = g::load_half(block + offsetof(Block, d)) * static_cast<float>(scale);
    const int low_shift = quarter < 2 ? 0 : 4, high_shift = 2 * quarter;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int q = ((ql[j] >> low_shift) & 15) | (((qh[j] >> high_shift) & 3) << 4);
      v[j] = d * static_cast<float>(q - 32);
    }
  }
};

// ---- quantize / dequantize: one thread per block ----
template <class F>
__global__ void quantize_blocks_kernel(uint8_t* blocks, const float* weight, long long count) {
  for (long long b = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; b < count;
       b += static_cast<long long>(gridDim.x) * blockDim.x)
    g::quantize_block(F::kType, blocks + b * F::kBytes, weight + b * F::kValues);
}

template <class F>
__global__ void dequantize_blocks_kernel(float* weight, const uint8_t* blocks, long long count) {
  for (long long b = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; b < count;
       b += static_cast<long long>(gridDim.x) * blockDim.x)
    g::dequantize_block(F::kType, weight + b * F::kValues, blocks + b * F::kBytes);
}

constexpr int kBlockThreads = 128;

template <class F>
void quantize_rows(uint8_t* blocks, const float* weight, long long values) {
  const long long count = values / F::kValues;
  launch(quantize_blocks_kernel<F>, dim3(grid_for(count, kBlockThreads)), dim3(kBlockThreads), 0, blocks, weight, count);
}

template <class F>
void dequantize_rows(float* weight, const uint8_t* blocks, long long values) {
  const long long count = values / F::kValues;
  launch(dequantize_blocks_kernel<F>, dim3(grid_for(count, kBlockThreads)), dim3(kBlockThreads), 0, weight, blocks, count);
}

// ---- matmuls ----
constexpr int kGemvRows = 8;   // forward input rows handled by the direct kernel
constexpr int kGemvWarps = 8;  // output rows per block of the direct kernel
constexpr int kLaneValues = 8;

// x = src[0..7]; two 16-byte loads when src is 16-byte aligned (a warp then reads 1 KiB in one go).
__device__ __forceinline__ void load8(float x[8], const float* src, bool aligned) {
  if (aligned) {
    const float4 lo = reinterpret_cast<const float4*>(src)[0], hi = reinterpret_cast<const float4*>(src)[1];
    x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j] = src[j];
  }
}

// out[n*out_stride + o] = sum_c inp[n*C + c] * W[o][c] + bias[o] for n < N <= kGemvRows: warp w of
// the grid owns output row o = w; lane l dequantizes values 256i + 8l .. +7 of the row in round i
// (C is a multiple of 32, so every lane's 8 values lie in one block).
template <class F>
__global__ void gemv_forward_kernel(float* out, const float* inp, const uint8_t* w, const float* bias, int N, int C,
                                    int OC, int out_stride) {
  const int lane = threadIdx.x % 32;
  const long long o = static_cast<long long>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  if (o >= OC) return;  // whole warps leave; the kernel has no barrier
  const bool inp_aligned = aligned16(inp);  // then every row n*C + c0 is too (C and c0 are multiples of 8)
  const uint8_t* row = w + o * (C / F::kValues) * F::kBytes;
  float acc[kGemvRows];
#pragma unroll
  for (int n = 0; n < kGemvRows; ++n) acc[n] = 0.0f;
  for (int c0 = lane * kLaneValues; c0 < C; c0 += 32 * kLaneValues) {
    float v[kLaneValues];
    F::values8(v, row + (c0 / F::kValues) * F::kBytes, c0 % F::kValues);
#pragma unroll
    for (int n = 0; n < kGemvRows; ++n) {
      if (n >= N) break;
      float x[kLaneValues];
      load8(x, inp + static_cast<long long>(n) * C + c0, inp_aligned);
#pragma unroll
      for (int j = 0; j < kLaneValues; ++j) acc[n] = fmaf(x[j], v[j], acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < kGemvRows; ++n) {
    if (n >= N) break;
    const float s = warp_sum(acc[n]);
    if (lane == 0) out[static_cast<long long>(n) * out_stride + o] = bias ? s + bias[o] : s;
  }
}

template <class F>
void forward(float* out, const float* inp, const uint8_t* w, const float* bias, int N, int C, int OC, int out_stride) {
  if (N <= kGemvRows) {
    launch(gemv_forward_kernel<F>, dim3(static_cast<unsigned>(ceil_div(OC, kGemvWarps))), dim3(32 * kGemvWarps), 0, out, inp, w,
           bias, N, C, OC, out_stride);
    return;
  }
  const long long row_bytes = static_cast<long long>(C / F::kValues) * F::kBytes;
  quant_slab_forward(out, out_stride, inp, bias, N, C, OC, [&](float* slab, int o0, int rows) {
    dequantize_rows<F>(slab, w + o0 * row_bytes, static_cast<long long>(rows) * C);
  });
}

template <class F>
void backward(float* dinp, const float* dout, const uint8_t* w, int N, int C, int OC, int dout_stride) {
  if (!dinp) return;
  const long long row_bytes = static_cast<long long>(C / F::kValues) * F::kBytes;
  quant_slab_backward(dinp, dout, dout_stride, N, C, OC, [&](float* slab, int o0, int rows) {
    dequantize_rows<F>(slab, w + o0 * row_bytes, static_cast<long long>(rows) * C);
  });
}

// Calls body(F{}) with F the format of ggml type id `type`.
template <class Body>
void with_format(int type, const char* kernel, Body&& body) {
  switch (type) {
    case Q4_0::kType: return body(Q4_0{});
    case Q5_0::kType: return body(Q5_0{});
    case Q8_0::kType: return body(Q8_0{});
    case Q4_K::kType: return body(Q4_K{});
    case Q5_K::kType: return body(Q5_K{});
    case Q6_K::kType: return body(Q6_K{});
  }
  throw Error(std::string(kernel) + ": expected a GGML type id 2 (Q4_0), 6 (Q5_0), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K) or 14 (Q6_K) but received " +
              std::to_string(type));
}

}  // namespace

void quantize_ggml(uint8_t* blocks, const float* weight, int type, int rows, int C) {
  with_format(type, "quantize_ggml", [&](auto format) {
    using F = decltype(format);
    quantize_rows<F>(blocks, weight, static_cast<long long>(rows) * C);
  });
}

void dequantize_ggml(float* weight, const uint8_t* blocks, int type, int rows, int C) {
  with_format(type, "dequantize_ggml", [&](auto format) {
    using F = decltype(format);
    dequantize_rows<F>(weight, blocks, static_cast<long long>(rows) * C);
  });
}

void matmul_ggml_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C, int OC,
                         int out_stride) {
  with_format(type, "matmul_ggml_forward", [&](auto format) {
    using F = decltype(format);
    forward<F>(out, inp, w, bias, N, C, OC, out_stride);
  });
}

void matmul_ggml_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC, int dout_stride) {
  with_format(type, "matmul_ggml_backward", [&](auto format) {
    using F = decltype(format);
    backward<F>(dinp, dout, w, N, C, OC, dout_stride);
  });
}

}  // namespace gptune::cuda
