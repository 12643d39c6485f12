// Rotary position embedding in place on the q and k heads of packed qkv (B,T,(NH+2*NKV)*HS), rotate-half
// layout (see kernels.inc): one thread per (row, head, pair i < HS/2), so a warp reads consecutive
// channels of a head's two halves and of the position's cos/sin rows. The backward is the same
// rotation with sin negated.
#include "common.cuh"

namespace gptune::cuda {

namespace {

__global__ void rope_kernel(float* qkv, const float* cos, const float* sin, const int* positions, int T, int heads,
                            int HS, long long W, int pos_offset, float sin_sign, long long total) {
  const int half = HS / 2;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int pair = static_cast<int>(i % half);
    const long long head_row = i / half;  // row * heads + head
    const long long row = head_row / heads;
    const int head = static_cast<int>(head_row % heads);
    const long long p = positions ? positions[row] : pos_offset + row % T;
    float* x = qkv + row * W + static_cast<long long>(head) * HS;
    const float c = cos[p * half + pair], s = sin_sign * sin[p * half + pair];
    const float a = x[pair], b = x[pair + half];
    x[pair] = a * c - b * s;
    x[pair + half] = b * c + a * s;
  }
}

void rope_apply(float* qkv, const float* cos, const float* sin, const int* positions, int B, int T, int NH, int NKV,
                int HS, int pos_offset, float sin_sign) {
  if (B <= 0 || T <= 0 || HS < 2) return;
  const long long total = static_cast<long long>(B) * T * (NH + NKV) * (HS / 2);
  launch(rope_kernel, dim3(grid_for(total, 256)), dim3(256), 0, qkv, cos, sin, positions, T, NH + NKV, HS,
         static_cast<long long>(NH + 2 * NKV) * HS, pos_offset, sin_sign, total);
}

}  // namespace

void rope_forward(float* qkv, const float* cos, const float* sin, const int* positions, int B, int T, int NH, int NKV,
                  int HS, int max_pos, int pos_offset) {
  rope_apply(qkv, cos, sin, positions, B, T, NH, NKV, HS, pos_offset, 1.0f);
}

void rope_backward(float* dqkv, const float* cos, const float* sin, const int* positions, int B, int T, int NH, int NKV,
                   int HS, int max_pos, int pos_offset) {
  if (!dqkv) return;
  rope_apply(dqkv, cos, sin, positions, B, T, NH, NKV, HS, pos_offset, -1.0f);
}

}  // namespace gptune::cuda
