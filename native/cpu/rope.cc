// Rotary position embedding in Hugging Face's rotate-half layout (Llama, Mistral, Qwen): a head
// vector x (HS) at position p is rotated pairwise, pair i in [0, HS/2) being (x[i], x[i+HS/2]) at
// angle theta[p,i] whose cos and sin come from the caller's (max_pos, HS/2) tables:
//   x'[i] = x[i] cos - x[i+HS/2] sin,   x'[i+HS/2] = x[i+HS/2] cos + x[i] sin.
// The backward is the transposed rotation, i.e. the same with sin negated. Both run in place on
// the q and k heads of a packed qkv row; the v heads are untouched.
#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

void rope_rotate(float* x, const float* cos, const float* sin, int heads, int HS, bool inverse) {
  const int half = HS / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  for (int head = 0; head < heads; ++head) {
    float* __restrict lo = x + int64_t(head) * HS;
    float* __restrict hi = lo + half;
    for (int i = 0; i < half; ++i) {
      const float a = lo[i], b = hi[i], s = sign * sin[i];
      lo[i] = a * cos[i] - b * s;
      hi[i] = b * cos[i] + a * s;
    }
  }
}

}  // namespace portable

namespace {

// Rotates the NH+NKV q and k heads of every row of qkv (B,T,(NH+2*NKV)*HS).
void rope_apply(float* qkv, const float* cos, const float* sin, const int* positions, int B, int T,
                int NH, int NKV, int HS, int pos_offset, bool inverse) {
  const int64_t W = int64_t(NH + 2 * NKV) * HS;
  const int half = HS / 2;
  parallel_for(int64_t(B) * T, min_items_per_thread(int64_t(NH + NKV) * HS), [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t p = positions ? positions[row] : pos_offset + row % T;
      GPTUNE_ROW_KERNEL(rope_rotate)(qkv + row * W, cos + p * half, sin + p * half, NH + NKV, HS, inverse);
    }
  });
}

}  // namespace

void rope_forward(float* qkv, const float* cos, const float* sin, const int* positions, int B, int T,
                  int NH, int NKV, int HS, int max_pos, int pos_offset) {
  rope_apply(qkv, cos, sin, positions, B, T, NH, NKV, HS, pos_offset, false);
}

void rope_backward(float* dqkv, const float* cos, const float* sin, const int* positions, int B,
                   int T, int NH, int NKV, int HS, int max_pos, int pos_offset) {
  if (!dqkv) return;
  rope_apply(dqkv, cos, sin, positions, B, T, NH, NKV, HS, pos_offset, true);
}

}  // namespace gptune::cpu
