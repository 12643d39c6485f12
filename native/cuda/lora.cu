// LoRA adapter on a linear layer (kernels.inc lora_forward / lora_backward) on CUDA. The products go
// through the backend's gemm (matmul.cu: bf16 tensor cores or fp32 SIMT, set_matmul_precision), with
// leading dimensions, so the adapter adds straight into its column slice of a packed output. The
// dropout mask is gptune/dropout_mask.h's, the same definition the CPU backend draws (one thread per
// element computes its SplitMix64 hash); it is applied to chunks of rows in a scratch tile of at most
// kChunkFloats floats, never to a dropped copy of the whole (N,C) input:
//   forward   tile = dropout(inp rows); u rows = tile @ A^T; then out slice += scaling * u @ B^T;
//   backward  du = scaling * dout slice @ B; dB += scaling * dout slice^T @ u; per chunk of rows:
//             tile = dropout(inp rows), dA += du rows^T @ tile; tile = du rows @ A, dinp rows += mask(tile).
// With p == 0 every product is one gemm on the tensors themselves.
#include <algorithm>

#include "common.cuh"
#include "gptune/cuda_options.h"
#include "gptune/dropout_mask.h"

namespace gptune::cuda {

namespace {

long long g_chunk_floats = 1LL << 22;  // 16 MiB of fp32 per chunk of rows

// dst rows = mask(src rows) of rows [row0, row0 + rows) of an (., C) input (accumulate: +=).
void apply_dropout(float* dst, const float* src, long long row0, int rows, int C, const DropoutMask& d, bool accumulate) {
  apply_dropout_mask(dst, src, nullptr, static_cast<uint64_t>(row0) * static_cast<uint64_t>(C),
                     static_cast<long long>(rows) * C, d, accumulate);
}

// Rows per chunk, and the chunk tile (chunk rows x C floats) in backend scratch.
int chunk_rows(int N, int C) { return static_cast<int>(std::max(1LL, std::min<long long>(N, g_chunk_floats / C))); }
float* chunk_tile(int rows, int C) {
  return static_cast<float*>(scratch(Scratch::LoraTile, static_cast<size_t>(rows) * C * sizeof(float)));
}

}  // namespace

// Test hook for test/gpu/emulated_kernels.cc: a smaller chunk, so small inputs take several chunks
// (0 restores the default). Not part of kernels.inc.
void lora_set_chunk_floats_for_tests(long long floats) { g_chunk_floats = floats > 0 ? floats : 1LL << 22; }

void lora_forward(float* out, float* u, const float* inp, const float* A, const float* B, int N, int C, int R, int OC,
                  int ld, int offset, float scaling, float dropout, uint64_t seed) {
  if (N <= 0 || R <= 0) return;
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  if (!drop.active) {
    gemm(false, true, N, R, C, 1.0f, inp, C, A, C, 0.0f, u, R);  // u (N,R) = inp @ A^T
  } else {
    const int chunk = chunk_rows(N, C);
    float* tile = chunk_tile(chunk, C);
    for (int n0 = 0; n0 < N; n0 += chunk) {
      const int rows = std::min(chunk, N - n0);
      apply_dropout(tile, inp + static_cast<long long>(n0) * C, n0, rows, C, drop, false);
      gemm(false, true, rows, R, C, 1.0f, tile, C, A, C, 0.0f, u + static_cast<long long>(n0) * R, R);
    }
  }
  // out[:, offset : offset + OC] (row stride ld) += scaling * u @ B^T
  gemm(false, true, N, OC, R, scaling, u, R, B, R, 1.0f, out + offset, ld);
}

void lora_backward(float* dinp, float* dA, float* dB, float* du, const float* dout, const float* u, const float* inp,
                   const float* A, const float* B, int N, int C, int R, int OC, int ld, int offset, float scaling,
                   float dropout, uint64_t seed) {
  if (N <= 0 || R <= 0) return;
  const float* dout_slice = dout + offset;  // (N,OC) with row stride ld
  gemm(false, false, N, R, OC, scaling, dout_slice, ld, B, R, 0.0f, du, R);              // du = s dout @ B
  if (dB) gemm(true, false, OC, R, N, scaling, dout_slice, ld, u, R, 1.0f, dB, R);       // dB += s dout^T @ u
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  if (!drop.active) {
    if (dA) gemm(true, false, R, C, N, 1.0f, du, R, inp, C, 1.0f, dA, C);     // dA += du^T @ inp
    if (dinp) gemm(false, false, N, C, R, 1.0f, du, R, A, C, 1.0f, dinp, C);  // dinp += du @ A
    return;
  }
  if (!dA && !dinp) return;
  const int chunk = chunk_rows(N, C);
  float* tile = chunk_tile(chunk, C);
  for (int n0 = 0; n0 < N; n0 += chunk) {
    const int rows = std::min(chunk, N - n0);
    const float* du_rows = du + static_cast<long long>(n0) * R;
    if (dA) {
      apply_dropout(tile, inp + static_cast<long long>(n0) * C, n0, rows, C, drop, false);
      gemm(true, false, R, C, rows, 1.0f, du_rows, R, tile, C, 1.0f, dA, C);
    }
    if (dinp) {
      gemm(false, false, rows, C, R, 1.0f, du_rows, R, A, C, 0.0f, tile, C);
      apply_dropout(dinp + static_cast<long long>(n0) * C, tile, n0, rows, C, drop, true);
    }
  }
}

}  // namespace gptune::cuda
