// AdamW with PyTorch's semantics (torch.optim.AdamW, foreach=False):
//   g = grad * grad_scale
//   param *= 1 - lr * weight_decay
//   m = m + (1 - beta1) (g - m)                  (torch's lerp)
//   v = beta2 v + (1 - beta2) g^2
//   param -= (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// The bias corrections are computed once on the host in double. adamw_update_multi runs the same
// update over many tensors in one launch: a host-built table of fixed-size chunks, one per block.
#include <cmath>
#include <vector>

#include "common.cuh"
#include "gptune/cuda_options.h"

namespace gptune::cuda {

namespace {

struct AdamWScalars {
  float lr, beta1, beta2, eps, grad_scale;
  float step_size;            // lr / (1 - beta1^step)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
};

AdamWScalars scalars(float lr, float beta1, float beta2, float eps, float grad_scale, int step) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), step);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), step);
  return {lr, beta1, beta2, eps, grad_scale, static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2))};
}

__device__ __forceinline__ void adamw_element(float& p, float& m, float& v, float grad, float weight_decay,
                                              const AdamWScalars& s) {
  const float g = grad * s.grad_scale;
  p *= 1.0f - s.lr * weight_decay;
  m += (1.0f - s.beta1) * (g - m);
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  p -= s.step_size * m / (sqrtf(v) / s.bias_correction2_sqrt + s.eps);
}

__global__ void adamw_kernel(float* params, float* m, float* v, const float* grads, long long n, float weight_decay,
                             AdamWScalars s) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    adamw_element(params[i], m[i], v[i], grads[i], weight_decay, s);
}

constexpr long long kChunk = 32768;  // floats per block in the multi-tensor kernel

struct AdamWChunk {
  int tensor;
  long long begin;  // first element of the chunk within its tensor
};

__global__ void adamw_multi_kernel(const AdamWTensor* tensors, const AdamWChunk* chunks, AdamWScalars s) {
  const AdamWChunk chunk = chunks[blockIdx.x];
  const AdamWTensor t = tensors[chunk.tensor];
  const long long end = chunk.begin + kChunk < t.n ? chunk.begin + kChunk : t.n;
  for (long long i = chunk.begin + threadIdx.x; i < end; i += blockDim.x)
    adamw_element(t.params[i], t.m[i], t.v[i], t.grads[i], t.weight_decay, s);
}

}  // namespace

void adamw_update(float* params, float* m, float* v, const float* grads, long long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int step) {
  if (n <= 0) return;
  const int threads = 256;
  launch(adamw_kernel, dim3(grid_for(n, threads)), dim3(threads), 0, params, m, v, grads, n, weight_decay,
         scalars(lr, beta1, beta2, eps, grad_scale, step));
}

void adamw_update_multi(const AdamWTensor* tensors, int count, float lr, float beta1, float beta2, float eps,
                        float grad_scale, int step) {
  if (count <= 0) return;
  std::vector<AdamWChunk> chunks;
  for (int t = 0; t < count; ++t)
    for (long long begin = 0; begin < tensors[t].n; begin += kChunk) chunks.push_back({t, begin});
  if (chunks.empty()) return;
  if (chunks.size() > 0x7fffffffu) throw Error("adamw_update_multi: too many parameters for one launch");
  // One scratch buffer holds the tensor table, then the chunk table (16-byte aligned).
  const size_t tensor_bytes = (count * sizeof(AdamWTensor) + 15) / 16 * 16;
  const size_t chunk_bytes = chunks.size() * sizeof(AdamWChunk);
  char* table = static_cast<char*>(scratch(Scratch::OptimizerTable, tensor_bytes + chunk_bytes));
  // Ordered on the stream after any earlier kernel that read the previous table.
  CUDA_CHECK(cudaMemcpyAsync(table, tensors, count * sizeof(AdamWTensor), cudaMemcpyHostToDevice, stream()));
  CUDA_CHECK(cudaMemcpyAsync(table + tensor_bytes, chunks.data(), chunk_bytes, cudaMemcpyHostToDevice, stream()));
  launch(adamw_multi_kernel, dim3(static_cast<unsigned>(chunks.size())), dim3(512), 0,
         reinterpret_cast<const AdamWTensor*>(table), reinterpret_cast<const AdamWChunk*>(table + tensor_bytes),
         scalars(lr, beta1, beta2, eps, grad_scale, step));
}

}  // namespace gptune::cuda
