// GELU (tanh approximation), residual add, in-place add/scale, fill and the sum of squares used for
// gradient-norm clipping. All are memory-bound: one grid-stride pass, 16-byte accesses when every
// pointer involved is 16-byte aligned (arena views may start anywhere), scalar otherwise.
#include "common.cuh"

namespace gptune::cuda {

namespace {

// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Written as x * sigmoid(2u)
// (0.5 (1 + tanh u) = 1 / (1 + exp(-2u))): one exp and no cancellation for negative x, where
// 1 + tanh(u) would lose its digits. The exponent is capped so the fast division stays in range.
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

__device__ __forceinline__ float gelu_sigmoid(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return __fdividef(1.0f, 1.0f + __expf(fminf(-2.0f * u, 80.0f)));
}

struct GeluForward {
  static constexpr bool kReadsOut = false, kReadsX = true, kReadsY = false;
  __device__ static float apply(float, float x, float, float) { return x * gelu_sigmoid(x); }
};
// d/dx [x s(2u)] = s + x * 2 s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
struct GeluBackward {  // out = dinp (accumulated), x = inp, y = dout
  static constexpr bool kReadsOut = true, kReadsX = true, kReadsY = true;
  __device__ static float apply(float dinp, float x, float dout, float) {
    const float s = gelu_sigmoid(x);
    const float du_dx = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    return dinp + dout * (s + 2.0f * x * s * (1.0f - s) * du_dx);
  }
};
struct Add {  // out = x + y
  static constexpr bool kReadsOut = false, kReadsX = true, kReadsY = true;
  __device__ static float apply(float, float x, float y, float) { return x + y; }
};
struct AddInPlace {  // out += x
  static constexpr bool kReadsOut = true, kReadsX = true, kReadsY = false;
  __device__ static float apply(float out, float x, float, float) { return out + x; }
};
struct Scale {  // out *= s
  static constexpr bool kReadsOut = true, kReadsX = false, kReadsY = false;
  __device__ static float apply(float out, float, float, float s) { return out * s; }
};
struct Fill {  // out = s
  static constexpr bool kReadsOut = false, kReadsX = false, kReadsY = false;
  __device__ static float apply(float, float, float, float s) { return s; }
};

// out[i] = Op::apply(out[i], x[i], y[i], s) for i < n; unused operands may be null.
template <typename Op>
__global__ void elementwise_kernel(float* out, const float* x, const float* y, float s, long long n, bool vectorized) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  long long scalar_begin = 0;
  if (vectorized) {
    const long long n4 = n / 4;
    for (long long i = first; i < n4; i += stride) {
      float4 o = Op::kReadsOut ? reinterpret_cast<const float4*>(out)[i] : make_float4(0, 0, 0, 0);
      const float4 a = Op::kReadsX ? reinterpret_cast<const float4*>(x)[i] : make_float4(0, 0, 0, 0);
      const float4 b = Op::kReadsY ? reinterpret_cast<const float4*>(y)[i] : make_float4(0, 0, 0, 0);
      o.x = Op::apply(o.x, a.x, b.x, s);
      o.y = Op::apply(o.y, a.y, b.y, s);
      o.z = Op::apply(o.z, a.z, b.z, s);
      o.w = Op::apply(o.w, a.w, b.w, s);
      reinterpret_cast<float4*>(out)[i] = o;
    }
    scalar_begin = n4 * 4;
  }
  for (long long i = scalar_begin + first; i < n; i += stride)
    out[i] = Op::apply(Op::kReadsOut ? out[i] : 0.0f, Op::kReadsX ? x[i] : 0.0f, Op::kReadsY ? y[i] : 0.0f, s);
}

template <typename Op>
void elementwise(float* out, const float* x, const float* y, float s, long long n) {
  if (n <= 0 || !out) return;
  const bool vectorized = aligned16(out) && (!Op::kReadsX || aligned16(x)) && (!Op::kReadsY || aligned16(y));
  const int threads = 256;
  launch(elementwise_kernel<Op>, dim3(grid_for(vectorized ? (n + 3) / 4 : n, threads)), dim3(threads), 0, out, x, y, s, n,
         vectorized);
}

// Partial sums of x^2 in double, one per block, in a fixed order (deterministic for a given grid).
__global__ void sum_squares_partial_kernel(double* partials, const float* x, long long n) {
  __shared__ double shared[32];
  double sum = 0.0;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    sum += v * v;
  }
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void sum_partials_kernel(double* result, const double* partials, int count) {
  __shared__ double shared[32];
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) *result = sum;
}

}  // namespace

void gelu_forward(float* out, const float* inp, long long n) { elementwise<GeluForward>(out, inp, nullptr, 0.0f, n); }
void gelu_backward(float* dinp, const float* inp, const float* dout, long long n) {
  elementwise<GeluBackward>(dinp, inp, dout, 0.0f, n);
}
void residual_forward(float* out, const float* a, const float* b, long long n) { elementwise<Add>(out, a, b, 0.0f, n); }
void add_inplace(float* dst, const float* src, long long n) { elementwise<AddInPlace>(dst, src, nullptr, 0.0f, n); }
void scale_inplace(float* x, float s, long long n) { elementwise<Scale>(x, nullptr, nullptr, s, n); }
void fill(float* x, float value, long long n) { elementwise<Fill>(x, nullptr, nullptr, value, n); }

double sum_squares(const float* x, long long n) {
  if (n <= 0) return 0.0;
  const int threads = 256;
  const unsigned blocks = grid_for(n, threads) < 1024 ? grid_for(n, threads) : 1024;
  double* partials = static_cast<double*>(scratch(Scratch::Reduction, (blocks + 1) * sizeof(double)));
  launch(sum_squares_partial_kernel, dim3(blocks), dim3(threads), 0, partials + 1, x, n);
  launch(sum_partials_kernel, dim3(1), dim3(1024), 0, partials, partials + 1, static_cast<int>(blocks));
  double result = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&result, partials, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  return result;
}

}  // namespace gptune::cuda
