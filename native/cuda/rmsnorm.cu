// RMSNorm and Qwen3's per-head QK-norm. Both normalise "head rows" of HS floats with a weight (HS):
// RMSNorm's rows are the N rows of (N,C) (HS = C, one head per row); QK-norm's are the NH q heads
// and the NKV k heads of each packed qkv row. One set of kernels serves both:
//   forward:        one warp per head row: rstd = rsqrt(mean(x^2) + eps), out = x * rstd * w.
//   backward input: one warp per head row: dx += rstd * (g - xhat * mean(g * xhat)), g = dout * w.
//   weight grad:    dw (HS) += sum over head rows of dout * xhat, in two fixed-order passes (per
//                   chunk of rows, then over chunks), so the result is bit-identical run to run.
#include "common.cuh"

namespace gptune::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block in the row kernels

// Head row r of a tensor of N rows of width W holding `heads` heads of HS floats from channel
// `first` on: n = r / heads, head = r % heads. Its rstd sits at rstd[n * stats + stat0 + head].
struct HeadRows {
  long long W;
  int first, heads, HS, stats, stat0;
  __host__ __device__ long long count(int N) const { return static_cast<long long>(N) * heads; }
  __device__ long long at(long long r) const { return (r / heads) * W + first + (r % heads) * static_cast<long long>(HS); }
  __device__ long long stat(long long r) const { return (r / heads) * stats + stat0 + r % heads; }
};

__global__ void rms_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, HeadRows L,
                                   long long rows, float eps) {
  const int lane = threadIdx.x % 32;
  const long long r = static_cast<long long>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;  // whole warps leave together; no block-wide barrier follows
  const float* x = inp + L.at(r);
  float* y = out + L.at(r);
  float sum_sq = 0.0f;
  for (int c = lane; c < L.HS; c += 32) sum_sq += x[c] * x[c];
  const float s = rsqrtf(warp_sum(sum_sq) / L.HS + eps);
  for (int c = lane; c < L.HS; c += 32) y[c] = x[c] * s * weight[c];
  if (rstd && lane == 0) rstd[L.stat(r)] = s;
}

__global__ void rms_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                          const float* rstd, HeadRows L, long long rows) {
  const int lane = threadIdx.x % 32;
  const long long r = static_cast<long long>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;
  const long long base = L.at(r);
  const float s = rstd[L.stat(r)];
  float sum_g_xhat = 0.0f;
  for (int c = lane; c < L.HS; c += 32) sum_g_xhat += dout[base + c] * weight[c] * inp[base + c] * s;
  const float mean_g_xhat = warp_sum(sum_g_xhat) / L.HS;
  for (int c = lane; c < L.HS; c += 32)
    dinp[base + c] += s * (dout[base + c] * weight[c] - inp[base + c] * s * mean_g_xhat);
}

// partials (chunks, HS): column c of chunk k sums dout * x * rstd over head rows
// [k * rows_per_chunk, (k+1) * rows_per_chunk) in order.
__global__ void rms_weight_partials_kernel(float* partials, const float* dout, const float* inp, const float* rstd,
                                           HeadRows L, long long rows, long long rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= L.HS) return;
  const long long begin = blockIdx.y * rows_per_chunk;
  const long long end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
  float sum = 0.0f;
  for (long long r = begin; r < end; ++r) {
    const long long i = L.at(r) + c;
    sum += dout[i] * inp[i] * rstd[L.stat(r)];
  }
  partials[static_cast<long long>(blockIdx.y) * L.HS + c] = sum;
}

__global__ void rms_weight_finish_kernel(float* dweight, const float* partials, int chunks, int HS) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= HS) return;
  float sum = 0.0f;
  for (int k = 0; k < chunks; ++k) sum += partials[static_cast<long long>(k) * HS + c];
  dweight[c] += sum;
}

// dst (N, W) channels [first, first + width) = src's (or += with accumulate): QK-norm's v heads.
__global__ void copy_columns_kernel(float* dst, const float* src, long long W, long long first, int width, long long total,
                                    bool accumulate) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const long long at = (i / width) * W + first + i % width;
    dst[at] = accumulate ? dst[at] + src[at] : src[at];
  }
}

void rms_forward(float* out, float* rstd, const float* inp, const float* weight, const HeadRows& L, int N, float eps) {
  const long long rows = L.count(N);
  if (rows <= 0) return;
  launch(rms_forward_kernel, dim3(static_cast<unsigned>(ceil_div(rows, kRowsPerBlock))), dim3(32 * kRowsPerBlock), 0,
         out, rstd, inp, weight, L, rows, eps);
}

void rms_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                  const float* rstd, const HeadRows& L, int N) {
  const long long rows = L.count(N);
  if (rows <= 0) return;
  if (dinp)
    launch(rms_backward_input_kernel, dim3(static_cast<unsigned>(ceil_div(rows, kRowsPerBlock))),
           dim3(32 * kRowsPerBlock), 0, dinp, dout, inp, weight, rstd, L, rows);
  if (!dweight) return;
  const int threads = 128;
  const int column_blocks = static_cast<int>(ceil_div(L.HS, threads));
  // Enough row chunks for ~8 blocks per multiprocessor, each at least 64 rows.
  long long chunks = ceil_div(static_cast<long long>(multiprocessor_count()) * 8, column_blocks);
  chunks = chunks < ceil_div(rows, 64) ? chunks : ceil_div(rows, 64);
  if (chunks > 65535) chunks = 65535;
  const long long rows_per_chunk = ceil_div(rows, chunks);
  chunks = ceil_div(rows, rows_per_chunk);
  float* partials = static_cast<float*>(scratch(Scratch::Reduction, static_cast<size_t>(chunks) * L.HS * sizeof(float)));
  launch(rms_weight_partials_kernel, dim3(column_blocks, static_cast<unsigned>(chunks)), dim3(threads), 0, partials, dout,
         inp, rstd, L, rows, rows_per_chunk);
  launch(rms_weight_finish_kernel, dim3(column_blocks), dim3(threads), 0, dweight, partials, static_cast<int>(chunks),
         L.HS);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps) {
  if (N <= 0 || C <= 0) return;
  rms_forward(out, rstd, inp, weight, HeadRows{C, 0, 1, C, 1, 0}, N, eps);
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  rms_backward(dinp, dweight, dout, inp, weight, rstd, HeadRows{C, 0, 1, C, 1, 0}, N);
}

void qknorm_forward(float* out, float* rstd, const float* inp, const float* q_weight, const float* k_weight, int N,
                    int NH, int NKV, int HS, float eps) {
  if (N <= 0 || HS <= 0) return;
  const long long W = static_cast<long long>(NH + 2 * NKV) * HS;
  rms_forward(out, rstd, inp, q_weight, HeadRows{W, 0, NH, HS, NH + NKV, 0}, N, eps);
  rms_forward(out, rstd, inp, k_weight, HeadRows{W, NH * HS, NKV, HS, NH + NKV, NH}, N, eps);
  const long long total = static_cast<long long>(N) * NKV * HS;
  if (out != inp)
    launch(copy_columns_kernel, dim3(grid_for(total, 256)), dim3(256), 0, out, inp, W,
           static_cast<long long>(NH + NKV) * HS, NKV * HS, total, false);
}

void qknorm_backward(float* dinp, float* dq_weight, float* dk_weight, const float* dout, const float* inp,
                     const float* q_weight, const float* k_weight, const float* rstd, int N, int NH, int NKV, int HS) {
  if (N <= 0 || HS <= 0) return;
  const long long W = static_cast<long long>(NH + 2 * NKV) * HS;
  rms_backward(dinp, dq_weight, dout, inp, q_weight, rstd, HeadRows{W, 0, NH, HS, NH + NKV, 0}, N);
  rms_backward(dinp, dk_weight, dout, inp, k_weight, rstd, HeadRows{W, NH * HS, NKV, HS, NH + NKV, NH}, N);
  const long long total = static_cast<long long>(N) * NKV * HS;
  if (dinp)
    launch(copy_columns_kernel, dim3(grid_for(total, 256)), dim3(256), 0, dinp, dout, W,
           static_cast<long long>(NH + NKV) * HS, NKV * HS, total, true);
}

}  // namespace gptune::cuda
