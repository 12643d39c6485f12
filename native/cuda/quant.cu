// Quantized (int8 per output channel, NF4 with double-quantized block scales) and bf16 frozen
// weights on CUDA. Quantizing and dequantizing apply the float32 steps of gptune/quant_format.h, the
// helpers the CPU backend calls, so codes, scales and dequantized weights equal the CPU's bit for bit
// (normal floats: --use_fast_math flushes subnormals to zero here). The matmuls never hold a
// full-size fp32 copy of W:
//   - forward with at most kGemvRows input rows (decoding): one warp per output channel reads the
//     quantized row directly and dequantizes each element in registers;
//   - otherwise a slab of whole rows of W (at most kSlabFloats floats, backend scratch) is
//     dequantized at a time and multiplied on the fp32 SIMT GEMM, whatever the matmul precision.
#include <vector>

#include "common.cuh"
#include "gptune/device.h"
#include "gptune/quant_format.h"

namespace gptune::cuda {
namespace {

using quant::kNf4Block;
using quant::kStatsBlock;

// The format tables, passed to kernels by value and copied into shared memory by each block.
struct Nf4Tables {
  float code[16];       // NF4 values
  float midpoints[15];  // quantization thresholds
  float code8[256];     // the dynamic 8-bit code of the double-quantized absmax
};

const Nf4Tables& nf4_tables() {
  static const Nf4Tables tables = [] {
    Nf4Tables t{};
    const auto midpoints = quant::nf4_midpoints();
    const auto code8 = quant::make_dynamic_code();
    for (int i = 0; i < 16; ++i) t.code[i] = quant::kNf4[i];
    for (int i = 0; i < 15; ++i) t.midpoints[i] = midpoints[i];
    for (int i = 0; i < 256; ++i) t.code8[i] = code8[i];
    return t;
  }();
  return tables;
}

__device__ __forceinline__ void load_tables(Nf4Tables* shared, const Nf4Tables& tables) {
  for (int i = threadIdx.x; i < 16; i += blockDim.x) shared->code[i] = tables.code[i];
  for (int i = threadIdx.x; i < 15; i += blockDim.x) shared->midpoints[i] = tables.midpoints[i];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) shared->code8[i] = tables.code8[i];
  __syncthreads();
}

// ---- element readers: element i of the flattened (OC,C) weight, dequantized ----
struct Int8Reader {
  const int8_t* q;
  const float* scale;  // (OC)
  int C;
  __device__ __forceinline__ void prepare(Nf4Tables*) const {}
  __device__ __forceinline__ float operator()(long long i) const {
    // The row of element i; 32-bit division where it fits (64-bit division is a long software loop).
    const long long row = i < (1LL << 32) ? static_cast<long long>(static_cast<unsigned>(i) / static_cast<unsigned>(C)) : i / C;
    return quant::int8_value(q[i], scale[row]);
  }
};

struct Nf4Reader {
  const uint8_t* packed;
  const uint8_t* qabsmax;
  const float* absmax2;
  const float* offset;  // (1), on the device
  Nf4Tables tables;
  __device__ __forceinline__ void prepare(Nf4Tables* shared) const { load_tables(shared, tables); }
  __device__ __forceinline__ float value(const Nf4Tables& t, long long i) const {
    const long long block = i / kNf4Block;
    const float absmax = quant::nf4_block_absmax(t.code8[qabsmax[block]], absmax2[block / kStatsBlock], *offset);
    const uint8_t byte = packed[i >> 1];
    return quant::mul_rn(t.code[(i & 1) ? (byte & 15) : (byte >> 4)], absmax);
  }
};

struct Bf16Reader {
  const uint16_t* w;
  __device__ __forceinline__ void prepare(Nf4Tables*) const {}
  __device__ __forceinline__ float operator()(long long i) const { return quant::bf16_to_float(w[i]); }
};

// Element i through a reader; the NF4 reader needs the block's shared tables.
__device__ __forceinline__ float read(const Int8Reader& r, const Nf4Tables&, long long i) { return r(i); }
__device__ __forceinline__ float read(const Bf16Reader& r, const Nf4Tables&, long long i) { return r(i); }
__device__ __forceinline__ float read(const Nf4Reader& r, const Nf4Tables& t, long long i) { return r.value(t, i); }

// dst (count) = elements [first, first+count) of the weight, dequantized.
template <class Reader>
__global__ void dequantize_kernel(float* dst, Reader reader, long long first, long long count) {
  __shared__ Nf4Tables tables;
  reader.prepare(&tables);
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < count;
       j += static_cast<long long>(gridDim.x) * blockDim.x)
    dst[j] = read(reader, tables, first + j);
}

template <class Reader>
void dequantize(float* dst, const Reader& reader, long long first, long long count) {
  const int threads = 256;
  launch(dequantize_kernel<Reader>, dim3(grid_for(count, threads)), dim3(threads), 0, dst, reader, first, count);
}

// ---- matmuls ----
constexpr int kGemvRows = 8;                        // forward rows handled by the direct kernel
constexpr long long kSlabFloats = 1LL << 22;        // 16 MiB of dequantized rows at a time
constexpr int kGemvWarps = 8;                       // output channels per block of the direct kernel

// out (N,OC) = inp (N,C) @ W^T + bias for N <= kGemvRows: warp w of the grid owns output channel
// o = w, its lanes stride over C reading W's row once; the N sums are reduced across the warp.
template <class Reader>
__global__ void gemv_forward_kernel(float* out, const float* inp, Reader reader, const float* bias, int N, int C,
                                    int OC) {
  __shared__ Nf4Tables tables;
  reader.prepare(&tables);
  const int lane = threadIdx.x % 32;
  const long long o = static_cast<long long>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  if (o >= OC) return;  // whole warps leave, after the block's only barrier
  float acc[kGemvRows];
#pragma unroll
  for (int n = 0; n < kGemvRows; ++n) acc[n] = 0.0f;
  const long long row = o * C;
  for (int c = lane; c < C; c += 32) {
    const float w = read(reader, tables, row + c);
#pragma unroll
    for (int n = 0; n < kGemvRows; ++n)
      if (n < N) acc[n] = fmaf(inp[static_cast<long long>(n) * C + c], w, acc[n]);
  }
#pragma unroll
  for (int n = 0; n < kGemvRows; ++n) {
    if (n >= N) break;
    const float s = warp_sum(acc[n]);
    if (lane == 0) out[static_cast<long long>(n) * OC + o] = s + (bias ? bias[o] : 0.0f);
  }
}

template <class Reader>
void quant_matmul_forward(float* out, const float* inp, const Reader& reader, const float* bias, int N, int C, int OC) {
  if (N <= kGemvRows) {
    launch(gemv_forward_kernel<Reader>, dim3(static_cast<unsigned>(ceil_div(OC, kGemvWarps))), dim3(32 * kGemvWarps), 0, out,
           inp, reader, bias, N, C, OC);
    return;
  }
  quant_slab_forward(out, OC, inp, bias, N, C, OC, [&](float* slab, int o0, int rows) {
    dequantize(slab, reader, static_cast<long long>(o0) * C, static_cast<long long>(rows) * C);
  });
}

template <class Reader>
void quant_matmul_backward(float* dinp, const float* dout, const Reader& reader, int N, int C, int OC) {
  if (!dinp) return;
  quant_slab_backward(dinp, dout, OC, N, C, OC, [&](float* slab, int o0, int rows) {
    dequantize(slab, reader, static_cast<long long>(o0) * C, static_cast<long long>(rows) * C);
  });
}

int slab_rows(int C, int OC) {
  const long long rows = kSlabFloats / C;
  return static_cast<int>(rows < 1 ? 1 : rows < OC ? rows : OC);
}

// ---- quantization ----
// One block per output channel: the row's absmax, its scale, then its codes.
__global__ void quantize_int8_kernel(int8_t* q, float* scale, const float* weight, int C) {
  __shared__ float partial[32];
  const long long row = static_cast<long long>(blockIdx.x) * C;
  float m = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, fabsf(weight[row + c]));
  m = block_max(m, partial);
  if (threadIdx.x == 0) scale[blockIdx.x] = quant::int8_scale(m);
  const float factor = quant::int8_factor(m);
  for (int c = threadIdx.x; c < C; c += blockDim.x) q[row + c] = quant::int8_code(weight[row + c], factor);
}

// One warp per block of 64 weights, two a lane (one packed byte): the block's absmax into
// absmax (scratch) and its codes, the earlier element in the high nibble.
__global__ void quantize_nf4_blocks_kernel(uint8_t* packed, float* absmax, const float* weight, long long n,
                                           long long blocks, Nf4Tables tables_in) {
  __shared__ Nf4Tables tables;
  load_tables(&tables, tables_in);
  const int lane = threadIdx.x % 32;
  const long long block = static_cast<long long>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (block >= blocks) return;  // whole warps, after the barrier
  const long long i = block * kNf4Block + 2 * lane;
  const float w0 = i < n ? weight[i] : 0.0f, w1 = i + 1 < n ? weight[i + 1] : 0.0f;
  const float m = warp_max(fmaxf(fabsf(w0), fabsf(w1)));
  if (lane == 0) absmax[block] = m;
  const float inverse = quant::nf4_inverse(m);
  if (i < n) {
    const int hi = quant::nf4_code(w0, inverse, tables.midpoints);
    const int lo = i + 1 < n ? quant::nf4_code(w1, inverse, tables.midpoints) : 0;
    packed[i >> 1] = static_cast<uint8_t>((hi << 4) | lo);
  }
}

// One block of kStatsBlock threads per second-level block: absmax2 = the largest |absmax - mean|,
// and each absmax coded as the nearest dynamic-code value of (absmax - mean) / absmax2.
__global__ void quantize_nf4_stats_kernel(uint8_t* qabsmax, float* absmax2, const float* absmax, float mean,
                                          long long blocks, Nf4Tables tables_in) {
  __shared__ Nf4Tables tables;
  __shared__ float partial[32];
  load_tables(&tables, tables_in);
  const long long b = static_cast<long long>(blockIdx.x) * kStatsBlock + threadIdx.x;
  const float deviation = b < blocks ? fabsf(quant::sub_rn(absmax[b], mean)) : 0.0f;
  const float m = block_max(deviation, partial);
  if (threadIdx.x == 0) absmax2[blockIdx.x] = m;
  if (b < blocks)
    qabsmax[b] = static_cast<uint8_t>(
        quant::nearest_dynamic(quant::nf4_stat_normalised(absmax[b], mean, quant::nf4_inverse(m)), tables.code8));
}

// ---- bf16 ----
__global__ void convert_f32_to_bf16_kernel(uint16_t* w_out, const float* inp, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    w_out[i] = quant::float_to_bf16(inp[i]);
}

Nf4Reader nf4_reader(const uint8_t* packed, const uint8_t* qabsmax, const float* absmax2, const float* offset) {
  return Nf4Reader{packed, qabsmax, absmax2, offset, nf4_tables()};
}

}  // namespace

namespace {
// Dequantizes W (OC,C) slab by slab into Scratch::QuantSlab and hands each slab (rows,C), holding
// rows o0 .. o0+rows-1, to multiply(slab, o0, rows).
void for_each_slab(int C, int OC, const DequantizeRows& dequantize_rows,
                   const std::function<void(const float* slab, int o0, int rows)>& multiply) {
  const int S = slab_rows(C, OC);
  auto* slab = static_cast<float*>(scratch(Scratch::QuantSlab, static_cast<size_t>(S) * C * sizeof(float)));
  for (int o0 = 0; o0 < OC; o0 += S) {
    const int rows = OC - o0 < S ? OC - o0 : S;
    dequantize_rows(slab, o0, rows);
    multiply(slab, o0, rows);
  }
}
}  // namespace

void quant_slab_forward(float* out, int out_stride, const float* inp, const float* bias, int N, int C, int OC,
                        const DequantizeRows& dequantize_rows) {
  for_each_slab(C, OC, dequantize_rows, [&](const float* slab, int o0, int rows) {
    // out[:, o0:o0+rows] (N,rows) = inp (N,C) @ slab (rows,C)^T + bias[o0:o0+rows]
    gemm_fp32(true, true, N, rows, C, 1.0f, inp, C, slab, C, 0.0f, out + o0, out_stride, bias ? bias + o0 : nullptr);
  });
}

void quant_slab_backward(float* dinp, const float* dout, int dout_stride, int N, int C, int OC,
                         const DequantizeRows& dequantize_rows) {
  for_each_slab(C, OC, dequantize_rows, [&](const float* slab, int o0, int rows) {
    // dinp (N,C) += dout[:, o0:o0+rows] (N,rows) @ slab (rows,C)
    gemm_fp32(true, false, N, C, rows, 1.0f, dout + o0, dout_stride, slab, C, 1.0f, dinp, C, nullptr);
  });
}

void quantize_int8(int8_t* q, float* scale, const float* weight, int OC, int C) {
  launch(quantize_int8_kernel, dim3(static_cast<unsigned>(OC)), dim3(256), 0, q, scale, weight, C);
}

void dequantize_int8(float* weight, const int8_t* q, const float* scale, int OC, int C) {
  dequantize(weight, Int8Reader{q, scale, C}, 0, static_cast<long long>(OC) * C);
}

void matmul_int8_forward(float* out, const float* inp, const int8_t* q, const float* scale, const float* bias, int N, int C,
                         int OC) {
  quant_matmul_forward(out, inp, Int8Reader{q, scale, C}, bias, N, C, OC);
}

void matmul_int8_backward(float* dinp, const float* dout, const int8_t* q, const float* scale, int N, int C, int OC) {
  quant_matmul_backward(dinp, dout, Int8Reader{q, scale, C}, N, C, OC);
}

void quantize_nf4(uint8_t* packed, uint8_t* qabsmax, float* absmax2, float* offset, const float* weight, long long n) {
  const long long blocks = ceil_div(n, kNf4Block);
  auto* absmax = static_cast<float*>(scratch(Scratch::QuantStats, static_cast<size_t>(blocks) * sizeof(float)));
  const int warps = 8;
  launch(quantize_nf4_blocks_kernel, dim3(static_cast<unsigned>(ceil_div(blocks, warps))), dim3(32 * warps), 0, packed,
         absmax, weight, n, blocks, nf4_tables());
  // The mean is summed on the host in the CPU backend's order (quant::absmax_mean), so the offset
  // and everything coded from it are the same bits; the host holds 1/64 of W's floats meanwhile.
  // (copy_to_device returns once the pageable source is staged, so `mean` may go out of scope.)
  std::vector<float> host(static_cast<size_t>(blocks));
  copy_to_host(host.data(), absmax, host.size() * sizeof(float));
  const float mean = quant::absmax_mean(host.data(), blocks);
  copy_to_device(offset, &mean, sizeof mean);
  launch(quantize_nf4_stats_kernel, dim3(static_cast<unsigned>(ceil_div(blocks, kStatsBlock))), dim3(kStatsBlock), 0, qabsmax,
         absmax2, absmax, mean, blocks, nf4_tables());
}

void dequantize_nf4(float* weight, const uint8_t* packed, const uint8_t* qabsmax, const float* absmax2, const float* offset,
                    long long n) {
  dequantize(weight, nf4_reader(packed, qabsmax, absmax2, offset), 0, n);
}

void matmul_nf4_forward(float* out, const float* inp, const uint8_t* packed, const uint8_t* qabsmax, const float* absmax2,
                        const float* offset, const float* bias, int N, int C, int OC) {
  quant_matmul_forward(out, inp, nf4_reader(packed, qabsmax, absmax2, offset), bias, N, C, OC);
}

void matmul_nf4_backward(float* dinp, const float* dout, const uint8_t* packed, const uint8_t* qabsmax, const float* absmax2,
                         const float* offset, int N, int C, int OC) {
  quant_matmul_backward(dinp, dout, nf4_reader(packed, qabsmax, absmax2, offset), N, C, OC);
}

void matmul_bf16_forward(float* out, const float* inp, const uint16_t* w, const float* bias, int N, int C, int OC) {
  quant_matmul_forward(out, inp, Bf16Reader{w}, bias, N, C, OC);
}

void matmul_bf16_backward(float* dinp, const float* dout, const uint16_t* w, int N, int C, int OC) {
  quant_matmul_backward(dinp, dout, Bf16Reader{w}, N, C, OC);
}

void convert_f32_to_bf16(uint16_t* w_out, const float* inp, long long n) {
  const int threads = 256;
  launch(convert_f32_to_bf16_kernel, dim3(grid_for(n, threads)), dim3(threads), 0, w_out, inp, n);
}

}  // namespace gptune::cuda
