// Shared plumbing for the CUDA backend: error checking that throws gptune::Error (never exits), the
// backend's stream, backend-owned scratch buffers, the kernel launcher, and warp/block reductions.
// With -DGPTUNE_CUDA_EMULATE the same kernels compile for the CPU emulator (emulator.cuh).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "gptune/dropout_mask.h"
#include "gptune/kernels.h"

#ifdef GPTUNE_CUDA_EMULATE
#include "emulator.cuh"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

namespace gptune::cuda {

// Throws gptune::Error naming the failed call, its location and CUDA's description.
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line);

#define CUDA_CHECK(expression)                                                                  \
  do {                                                                                          \
    cudaError_t cuda_check_error_ = (expression);                                               \
    if (cuda_check_error_ != cudaSuccess)                                                       \
      ::gptune::cuda::throw_cuda_error(cuda_check_error_, #expression, __FILE__, __LINE__);     \
  } while (0)

// The backend's one stream on the current device (non-blocking, created on first use). Every
// kernel and copy of the backend is issued on it, so they run in call order.
cudaStream_t stream();
int multiprocessor_count();

// Backend-owned device buffers that grow on demand and are reused across calls: one per purpose,
// so buffers needed by the same kernel call never alias. Contents are not preserved on growth.
enum class Scratch : int {
  MatmulOperandA,   // bf16 copies of GEMM operands
  MatmulOperandB,
  MatmulOperandC,
  MatmulWorkspace,  // cuBLASLt's workspace (cublaslt.cu)
  Reduction,        // per-block partial sums (sum_squares, column sums)
  Attention,        // per-row dot(dout, out) for the attention backward
  AttentionQKV,     // bf16 copies of the attention's inputs
  AttentionDout,
  OptimizerTable,   // AdamW multi-tensor descriptors
  EncoderSort,      // encoder backward: sorted (id, row) keys, then per-chunk partial sums
  QuantSlab,        // quantized / bf16 matmuls: a bounded slab of dequantized weight rows (quant.cu)
  QuantStats,       // quantize_nf4: the block absmax values before double quantization
  LoraTile,         // LoRA: a chunk of rows of the dropped input, or of du @ A before its mask (lora.cu)
  Count
};
void* scratch(Scratch which, size_t bytes);

// Launches kernel<<<grid, block, smem, stream()>>>(args...) and checks the launch; an empty grid is
// a no-op (CUDA rejects it).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
#ifdef GPTUNE_CUDA_EMULATE
  std::function<void()> body = [&] { kernel(static_cast<Params>(args)...); };
  emu::run_grid(grid, block, smem_bytes, body);
#else
  kernel<<<grid, block, smem_bytes, stream()>>>(static_cast<Params>(args)...);
  CUDA_CHECK(cudaGetLastError());
#endif
}

// Kernels that need more than 48 KiB of dynamic shared memory must opt in once per kernel.
template <typename... Params>
void allow_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
  if (bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// sums (C) += column sums of values (N,C); weighted_sums (C) += column sums of values * xhat, where
// xhat = (inp - mean[row]) * rstd[row] (LayerNorm's dweight). Deterministic; either output may be
// null. Implemented in layernorm.cu.
void column_sums(float* sums, float* weighted_sums, const float* values, const float* inp, const float* mean,
                 const float* rstd, int N, int C);

// A bf16 copy of src (rows, cols; leading dimension ld_src) in a scratch slot, each row padded
// with zeros to padded8(cols) elements (its leading dimension), so every 16-byte chunk of it is
// wholly inside or outside the matrix. Implemented in matmul.cu.
const __nv_bfloat16* cast_to_bf16(Scratch slot, const float* src, int rows, int cols, long long ld_src);
inline int padded8(int n) { return (n + 7) / 8 * 8; }

// C (M,N) = alpha * op(A) op(B) + beta * C + bias on the fp32 SIMT kernel whatever the matmul
// precision (the quantized-weight matmuls promise float32 sums). op(A) is (M,K): A is stored (M,K)
// when a_k_contig, else (K,M); op(B) is (K,N): B is stored (N,K) when b_k_contig, else (K,N).
// bias (N) may be null. Implemented in matmul.cu.
void gemm_fp32(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc, const float* bias);

// Matmuls with a weight stored in a quantized or 16-bit format, through the fp32 SIMT GEMM: slabs
// of whole rows of W (OC,C) (at most 16 MiB of floats at a time, in Scratch::QuantSlab) are
// dequantized by dequantize_rows(slab, o0, rows), which fills slab (rows,C) with rows o0..o0+rows-1
// of W, and multiplied. Implemented in quant.cu.
//   forward:  out[n*out_stride + o] = inp (N,C) @ W^T + bias (OC, may be null), for o < OC;
//   backward: dinp (N,C) += dout[n*dout_stride + o] (columns o < OC) @ W.
using DequantizeRows = std::function<void(float* slab, int o0, int rows)>;
void quant_slab_forward(float* out, int out_stride, const float* inp, const float* bias, int N, int C, int OC,
                        const DequantizeRows& dequantize_rows);
void quant_slab_backward(float* dinp, const float* dout, int dout_stride, int N, int C, int OC,
                         const DequantizeRows& dequantize_rows);

// The dropout mask of gptune/dropout_mask.h on elements first .. first + total - 1 of a tensor:
// dst[i] = m * src[i], residual[i] + m * src[i] (residual non-null), or dst[i] += m * src[i]
// (accumulate), m being element first + i's multiplier; d inactive (p == 0) means m = 1. dst may be
// src or residual. Implemented in dropout.cu.
void apply_dropout_mask(float* dst, const float* src, const float* residual, uint64_t first, long long total,
                        const DropoutMask& d, bool accumulate);

// bf16 tensor-core attention for head size 64 (attention_bf16.cu); same contract as the kernels.inc
// functions with HS = 64, called by them when set_attention_precision(true) and HS == 64.
void attention_forward_bf16(float* out, float* lse, const float* qkv, const int* segment_ids, int B, int T, int NH,
                            int NKV);
void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* row_dot,
                             const int* segment_ids, int B, int T, int NH, int NKV);

inline long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }
// Grid size for a grid-stride loop over n items with `threads` per block: enough blocks to fill
// the GPU a few times over, never more than the work needs.
inline unsigned grid_for(long long n, int threads) {
  long long wanted = ceil_div(n, threads);
  long long cap = static_cast<long long>(multiprocessor_count()) * 16;
  return static_cast<unsigned>(wanted < cap ? wanted : cap);
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__host__ __device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `shared` holds 32 values; the function may be called repeatedly with the same buffer.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}

// Maximum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it. NaN
// inputs are ignored (fmaxf), as std::max(m, NaN) ignores them on the CPU.
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? shared[lane] : -INFINITY);
}

}  // namespace gptune::cuda
