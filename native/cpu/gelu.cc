// GELU with GPT-2's tanh approximation ("gelu_new", nn.GELU(approximate='tanh')):
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3).
// Both paths evaluate it through the identity 0.5 (1 + tanh(u)) = s = 1 / (1 + exp(-2u)), which
// keeps full relative accuracy where 1 + tanh(u) cancels (x < -1; the textbook form loses 1e-5
// relative at x = -3 in float):
//   gelu(x)  = x s
//   gelu'(x) = s + 2 x s (1 - s) du/dx,   since 0.5 (1 - tanh^2(u)) = 2 s (1 - s),
// with 1 - s = exp(-2u) s formed without cancellation. The float64 textbook formula is the
// reference in the tests.
#include <algorithm>
#include <cmath>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {
namespace {

// Returns s = 1 / (1 + exp(-2u)) and sets *one_minus_s = exp(-2u) s.
inline float gelu_sigmoid(float x, float* one_minus_s) {
  float minus_2u = -2.0f * kGeluScale * x * (1.0f + kGeluCubic * x * x);
  // Beyond 88, exp overflows and 1 - s would be inf * 0; s is below 1e-38 there anyway.
  float e = std::exp(std::min(minus_2u, 88.0f));
  float s = 1.0f / (1.0f + e);
  *one_minus_s = e * s;
  return s;
}

}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float one_minus_s;
    out[i] = inp[i] * gelu_sigmoid(inp[i], &one_minus_s);
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    float one_minus_s;
    const float s = gelu_sigmoid(x, &one_minus_s);
    const float du_dx = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] += (s + 2.0f * x * s * one_minus_s * du_dx) * dout[i];
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
