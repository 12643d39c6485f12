// Softmax + cross-entropy over the vocabulary and the temperature softmax for sampling. One block
// per row (V = 50257 floats, 200 KB); the forward makes a single pass over the row keeping a
// running (max, sum of exp(x - max), argmax) per thread, merged across the block at the end.
#include "common.cuh"

namespace gptune::cuda {

namespace {

constexpr int kThreads = 512;

// Running log-sum-exp state; max = -inf means "no element seen".
struct LseState {
  float max;
  float sum;
  int argmax;
};

__device__ __forceinline__ void lse_add(LseState& s, float x, int index) {
  if (x > s.max) {  // strict: within a thread indices increase, so the first maximum wins ties
    s.sum = s.sum * __expf(s.max - x) + 1.0f;  // exp(-inf) = 0 when this is the first element
    s.max = x;
    s.argmax = index;
  } else if (x != -INFINITY) {  // a -inf logit (masked token) adds nothing; skip exp(-inf + inf)
    s.sum += __expf(x - s.max);
  }
}

__device__ __forceinline__ LseState lse_merge(LseState a, LseState b) {
  if (b.max == -INFINITY) return a;
  if (a.max == -INFINITY) return b;
  LseState r;
  r.max = fmaxf(a.max, b.max);
  r.sum = a.sum * __expf(a.max - r.max) + b.sum * __expf(b.max - r.max);
  // torch.argmax: the lowest index among equal maxima.
  r.argmax = a.max > b.max ? a.argmax : b.max > a.max ? b.argmax : imin(a.argmax, b.argmax);
  return r;
}

// The (max, sum, argmax) of scale * row over the whole block; every thread gets the result.
__device__ LseState row_lse(const float* row, int V, float scale) {
  __shared__ LseState shared[kThreads / 32];
  LseState s{-INFINITY, 0.0f, 0};
  for (int i = threadIdx.x; i < V; i += kThreads) lse_add(s, row[i] * scale, i);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    LseState other;
    other.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    other.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    other.argmax = __shfl_xor_sync(0xffffffffu, s.argmax, offset);
    s = lse_merge(s, other);
  }
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = s;
  __syncthreads();
  LseState total = shared[0];
  for (int w = 1; w < kThreads / 32; ++w) total = lse_merge(total, shared[w]);
  return total;
}

__global__ void crossentropy_forward_kernel(float* losses, float* lse, int* predictions, const float* logits,
                                            const int* targets, int V, int ignore_index) {
  const long long row = blockIdx.x;
  const float* x = logits + row * V;  // (V)
  const LseState s = row_lse(x, V, 1.0f);
  if (threadIdx.x != 0) return;
  const float row_lse_value = s.max + __logf(s.sum);
  if (lse) lse[row] = row_lse_value;
  if (predictions) predictions[row] = s.argmax;
  if (losses) {
    const int target = targets[row];
    // Targets outside [0, V) other than ignore_index are rejected by the binding; never read them.
    losses[row] = (target == ignore_index || target < 0 || target >= V) ? 0.0f : row_lse_value - x[target];
  }
}

// dlogits = scale * w[row] * (softmax - onehot(target)) (w = 1 without row_weights); each element is
// read and written by one thread, so dlogits may alias logits.
__global__ void crossentropy_backward_kernel(float* dlogits, const float* logits, const float* lse, const int* targets,
                                             const float* row_weights, float scale, int V, int ignore_index) {
  const long long row = blockIdx.x;
  const int target = targets[row];
  float* d = dlogits + row * V;
  const float* x = logits + row * V;
  if (target == ignore_index) {
    for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = 0.0f;
    return;
  }
  const float row_lse_value = lse[row];
  const float row_scale = row_weights ? scale * row_weights[row] : scale;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float p = __expf(x[i] - row_lse_value);
    d[i] = row_scale * (i == target ? p - 1.0f : p);
  }
}

__global__ void softmax_forward_kernel(float* probs, const float* logits, float inv_temperature, int V) {
  const long long row = blockIdx.x;
  const float* x = logits + row * V;
  const LseState s = row_lse(x, V, inv_temperature);
  const float inv_sum = 1.0f / s.sum;
  // row_lse ends with every thread past a barrier after all reads of x, so probs may alias logits.
  __syncthreads();
  for (int i = threadIdx.x; i < V; i += kThreads) probs[row * V + i] = __expf(x[i] * inv_temperature - s.max) * inv_sum;
}

}  // namespace

void crossentropy_forward(float* losses, float* lse, int* predictions, const float* logits, const int* targets, int N,
                          int V, int ignore_index) {
  if (N <= 0 || V <= 0) return;
  launch(crossentropy_forward_kernel, dim3(N), dim3(kThreads), 0, losses, lse, predictions, logits, targets, V,
         ignore_index);
}

void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets,
                           const float* row_weights, float scale, int N, int V, int ignore_index) {
  if (N <= 0 || V <= 0 || !dlogits) return;
  launch(crossentropy_backward_kernel, dim3(N), dim3(kThreads), 0, dlogits, logits, lse, targets, row_weights, scale,
         V, ignore_index);
}

void softmax_forward(float* probs, const float* logits, float inv_temperature, int N, int V) {
  if (N <= 0 || V <= 0) return;
  launch(softmax_forward_kernel, dim3(N), dim3(kThreads), 0, probs, logits, inv_temperature, V);
}

}  // namespace gptune::cuda
