// SwiGLU, the gated MLP of the Llama family: a row of inp (N,2H) is [gate | up] (gate_proj and
// up_proj fused into one matmul) and out (N,H) = silu(gate) * up with silu(g) = g s, s = sigmoid(g):
//   d up   = dout * silu(g)
//   d gate = dout * up * silu'(g),  silu'(g) = s (1 + g (1 - s)).
// 1 - s is formed as exp(-g) s, without cancellation; exp(-g) is capped at exp(88) so that it never
// overflows to inf, where inf * s = inf * 0 would be NaN (s < 1e-38 there anyway).
#include <algorithm>
#include <cmath>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {
namespace {

// Returns s = sigmoid(g) and sets *one_minus_s = 1 - s.
inline float sigmoid(float g, float* one_minus_s) {
  const float e = std::exp(std::min(-g, 88.0f));
  const float s = 1.0f / (1.0f + e);
  *one_minus_s = e * s;
  return s;
}

}  // namespace

void swiglu_forward(float* out, const float* inp, int64_t rows, int H) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* __restrict gate = inp + row * 2 * H;
    const float* __restrict up = gate + H;
    float* __restrict y = out + row * H;
    for (int i = 0; i < H; ++i) {
      float one_minus_s;
      y[i] = gate[i] * sigmoid(gate[i], &one_minus_s) * up[i];
    }
  }
}

void swiglu_backward(float* dinp, const float* dout, const float* inp, int64_t rows, int H) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* __restrict gate = inp + row * 2 * H;
    const float* __restrict up = gate + H;
    const float* __restrict dy = dout + row * H;
    float* __restrict dgate = dinp + row * 2 * H;
    float* __restrict dup = dgate + H;
    for (int i = 0; i < H; ++i) {
      const float g = gate[i];
      float one_minus_s;
      const float s = sigmoid(g, &one_minus_s);
      dup[i] += dy[i] * g * s;
      dgate[i] += dy[i] * up[i] * s * (1.0f + g * one_minus_s);
    }
  }
}

}  // namespace portable

// An element costs an exp and a division, like GELU, so chunks can be smaller than for the
// memory-bound kernels.
void swiglu_forward(float* out, const float* inp, int N, int H) {
  parallel_for(N, min_items_per_thread(H / 4), [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(swiglu_forward)(out + begin * H, inp + begin * 2 * H, end - begin, H);
  });
}

void swiglu_backward(float* dinp, const float* dout, const float* inp, int N, int H) {
  if (!dinp) return;
  parallel_for(N, min_items_per_thread(H / 4), [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(swiglu_backward)(dinp + begin * 2 * H, dout + begin * H, inp + begin * 2 * H,
                                       end - begin, H);
  });
}

}  // namespace gptune::cpu
