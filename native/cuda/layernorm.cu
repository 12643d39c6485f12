// LayerNorm over the last dimension, and the deterministic column sums its backward (dweight,
// dbias) and the matmul backward (dbias) need.
//   forward:  one warp per row: mean, biased variance, out = (x - mean) * rstd * w + b.
//   backward: one warp per row for dinp (only row-local sums); dweight/dbias are column sums over
//             all N rows, done by column_sums() in two fixed-order passes (no atomics), so the
//             result is bit-identical from run to run.
#include "common.cuh"

namespace gptune::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block in the row kernels

template <bool kVec4>
__device__ __forceinline__ float row_sum(const float* x, int C, int lane) {
  float s = 0.0f;
  if (kVec4) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 v = reinterpret_cast<const float4*>(x)[c];
      s += (v.x + v.y) + (v.z + v.w);
    }
  } else {
    for (int c = lane; c < C; c += 32) s += x[c];
  }
  return warp_sum(s);
}

template <bool kVec4>
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int N, int C, float eps) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;  // whole warps leave together; no block-wide barrier follows
  const float* x = inp + static_cast<long long>(row) * C;  // (C)
  float* y = out + static_cast<long long>(row) * C;        // (C)
  const float m = row_sum<kVec4>(x, C, lane) / C;
  // Second pass over (x - mean)^2 rather than E[x^2] - mean^2, which cancels badly for large means.
  float v = 0.0f;
  if (kVec4) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 a = reinterpret_cast<const float4*>(x)[c];
      v += (a.x - m) * (a.x - m) + (a.y - m) * (a.y - m) + (a.z - m) * (a.z - m) + (a.w - m) * (a.w - m);
    }
  } else {
    for (int c = lane; c < C; c += 32) v += (x[c] - m) * (x[c] - m);
  }
  const float r = rsqrtf(warp_sum(v) / C + eps);
  if (kVec4) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 a = reinterpret_cast<const float4*>(x)[c];
      const float4 w = reinterpret_cast<const float4*>(weight)[c];
      const float4 b = reinterpret_cast<const float4*>(bias)[c];
      reinterpret_cast<float4*>(y)[c] = make_float4((a.x - m) * r * w.x + b.x, (a.y - m) * r * w.y + b.y,
                                                    (a.z - m) * r * w.z + b.z, (a.w - m) * r * w.w + b.w);
    }
  } else {
    for (int c = lane; c < C; c += 32) y[c] = (x[c] - m) * r * weight[c] + bias[c];
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

// dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = weight * dout, xhat = (x - mean) * rstd.
__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                                const float* mean, const float* rstd, int N, int C) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const long long base = static_cast<long long>(row) * C;
  const float m = mean[row], r = rstd[row];
  float sum_g = 0.0f, sum_g_xhat = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float g = weight[c] * dout[base + c];
    sum_g += g;
    sum_g_xhat += g * (inp[base + c] - m) * r;
  }
  const float mean_g = warp_sum(sum_g) / C;
  const float mean_g_xhat = warp_sum(sum_g_xhat) / C;
  for (int c = lane; c < C; c += 32) {
    const float g = weight[c] * dout[base + c];
    const float xhat = (inp[base + c] - m) * r;
    dinp[base + c] += r * (g - mean_g - xhat * mean_g_xhat);
  }
}

// Column sums over a chunk of rows: block (32 columns) x (8 row lanes); partials (chunks, 2, C) hold
// sum(values) and sum(values * xhat) (the second only when inp is given).
__global__ void column_partials_kernel(float* partials, const float* values, const float* inp, const float* mean,
                                       const float* rstd, int N, int C, int rows_per_chunk) {
  __shared__ float shared[2][8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int chunk = blockIdx.y;
  const int row_end = imin(N, (chunk + 1) * rows_per_chunk);
  float sum = 0.0f, weighted = 0.0f;
  if (c < C) {
    for (int row = chunk * rows_per_chunk + threadIdx.y; row < row_end; row += 8) {
      const long long i = static_cast<long long>(row) * C + c;
      const float v = values[i];
      sum += v;
      if (inp) weighted += v * (inp[i] - mean[row]) * rstd[row];
    }
  }
  shared[0][threadIdx.y][threadIdx.x] = sum;
  shared[1][threadIdx.y][threadIdx.x] = weighted;
  __syncthreads();
  if (threadIdx.y < 2 && c < C) {
    float total = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) total += shared[threadIdx.y][k][threadIdx.x];
    partials[(static_cast<long long>(chunk) * 2 + threadIdx.y) * C + c] = total;
  }
}

__global__ void column_finish_kernel(float* sums, float* weighted_sums, const float* partials, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f, weighted = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    sum += partials[(static_cast<long long>(k) * 2) * C + c];
    weighted += partials[(static_cast<long long>(k) * 2 + 1) * C + c];
  }
  if (sums) sums[c] += sum;
  if (weighted_sums) weighted_sums[c] += weighted;
}

}  // namespace

void column_sums(float* sums, float* weighted_sums, const float* values, const float* inp, const float* mean,
                 const float* rstd, int N, int C) {
  if (N <= 0 || C <= 0 || (!sums && !weighted_sums)) return;
  const int column_blocks = static_cast<int>(ceil_div(C, 32));
  // Enough row chunks for ~8 blocks per multiprocessor, each chunk at least 64 rows.
  long long chunks = ceil_div(static_cast<long long>(multiprocessor_count()) * 8, column_blocks);
  chunks = chunks < ceil_div(N, 64) ? chunks : ceil_div(N, 64);
  if (chunks > 65535) chunks = 65535;
  const int rows_per_chunk = static_cast<int>(ceil_div(N, chunks));
  chunks = ceil_div(N, rows_per_chunk);
  float* partials = static_cast<float*>(scratch(Scratch::Reduction, static_cast<size_t>(chunks) * 2 * C * sizeof(float)));
  launch(column_partials_kernel, dim3(column_blocks, static_cast<unsigned>(chunks)), dim3(32, 8), 0, partials, values,
         weighted_sums ? inp : nullptr, mean, rstd, N, C, rows_per_chunk);
  launch(column_finish_kernel, dim3(static_cast<unsigned>(ceil_div(C, 256))), dim3(256), 0, sums, weighted_sums,
         partials, static_cast<int>(chunks), C);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, float eps) {
  if (N <= 0 || C <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kRowsPerBlock))), block(32 * kRowsPerBlock);
  if (C % 4 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) && aligned16(bias))
    launch(layernorm_forward_kernel<true>, grid, block, 0, out, mean, rstd, inp, weight, bias, N, C, eps);
  else
    launch(layernorm_forward_kernel<false>, grid, block, 0, out, mean, rstd, inp, weight, bias, N, C, eps);
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  if (dinp)
    launch(layernorm_backward_input_kernel, dim3(static_cast<unsigned>(ceil_div(N, kRowsPerBlock))),
           dim3(32 * kRowsPerBlock), 0, dinp, dout, inp, weight, mean, rstd, N, C);
  column_sums(dbias, dweight, dout, inp, mean, rstd, N, C);
}

}  // namespace gptune::cuda
