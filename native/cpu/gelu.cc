// GELU with GPT-2's tanh approximation ("gelu_new", nn.GELU(approximate='tanh')):
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3).
// The AVX-512 path (gelu_avx512.cc) evaluates the same function through the identity
// 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), which keeps full relative accuracy where 1 + tanh(u)
// cancels (x < -3); the portable loop below is the textbook formula, kept as the reference.
#include <cmath>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

void gelu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    out[i] = 0.5f * x * (1.0f + std::tanh(u));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    float tanh_u = std::tanh(u);
    float sech2_u = 1.0f - tanh_u * tanh_u;
    float du_dx = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    float local_grad = 0.5f * (1.0f + tanh_u) + 0.5f * x * sech2_u * du_dx;
    dinp[i] += local_grad * dout[i];
  }
}

}  // namespace portable

// A GELU element costs about one exp and a division, a few times a plain add, so chunks can be
// smaller than for the memory-bound kernels.
static const int64_t kGeluMinChunk = kMinFloatsPerThread / 4;

void gelu_forward(float* out, const float* inp, long long n) {
  parallel_for(n, kGeluMinChunk, [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(gelu_forward)(out + begin, inp + begin, end - begin);
  });
}

void gelu_backward(float* dinp, const float* inp, const float* dout, long long n) {
  if (!dinp) return;
  parallel_for(n, kGeluMinChunk, [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(gelu_backward)(dinp + begin, inp + begin, dout + begin, end - begin);
  });
}

}  // namespace gptune::cpu
