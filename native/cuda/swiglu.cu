// SwiGLU: inp (N,2H) rows are [gate | up]; out (N,H) = silu(gate) * up. One thread per output
// element (grid-stride); the formulas and the exp cap are those of native/cpu/swiglu.cc.
#include "common.cuh"

namespace gptune::cuda {

namespace {

// Returns s = sigmoid(g) and sets one_minus_s = 1 - s, formed as exp(-g) s without cancellation;
// exp(-g) is capped at exp(88) so inf * 0 never makes a NaN.
__device__ __forceinline__ float sigmoid(float g, float& one_minus_s) {
  const float e = expf(fminf(-g, 88.0f));
  const float s = 1.0f / (1.0f + e);
  one_minus_s = e * s;
  return s;
}

__global__ void swiglu_forward_kernel(float* out, const float* inp, int H, long long total) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const long long gate_at = (i / H) * 2 * H + i % H;
    const float g = inp[gate_at];
    float one_minus_s;
    out[i] = g * sigmoid(g, one_minus_s) * inp[gate_at + H];
  }
}

__global__ void swiglu_backward_kernel(float* dinp, const float* dout, const float* inp, int H, long long total) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const long long gate_at = (i / H) * 2 * H + i % H;
    const float g = inp[gate_at], up = inp[gate_at + H], dy = dout[i];
    float one_minus_s;
    const float s = sigmoid(g, one_minus_s);
    dinp[gate_at + H] += dy * g * s;
    dinp[gate_at] += dy * up * s * (1.0f + g * one_minus_s);
  }
}

}  // namespace

void swiglu_forward(float* out, const float* inp, int N, int H) {
  const long long total = static_cast<long long>(N) * H;
  if (total <= 0) return;
  launch(swiglu_forward_kernel, dim3(grid_for(total, 256)), dim3(256), 0, out, inp, H, total);
}

void swiglu_backward(float* dinp, const float* dout, const float* inp, int N, int H) {
  const long long total = static_cast<long long>(N) * H;
  if (total <= 0 || !dinp) return;
  launch(swiglu_backward_kernel, dim3(grid_for(total, 256)), dim3(256), 0, dinp, dout, inp, H, total);
}

}  // namespace gptune::cuda
