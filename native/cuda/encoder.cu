// Token + position embedding. The backward scatters rows of dout into dwte/dwpe with atomics:
// repeated tokens (and every batch row at one position) add into the same row, and a sort-based
// race-free scheme costs more than the whole embedding backward is worth at GPT-2 sizes.
#include "common.cuh"

namespace gptune::cuda {

namespace {

__device__ __forceinline__ int position_of(const int* positions, int pos_offset, long long row, int T) {
  return positions ? positions[row] : pos_offset + static_cast<int>(row % T);
}

// out (B,T,C) = wte[tokens] + wpe[positions]; `vectorized` handles 4 channels per step (C % 4 == 0
// and all pointers 16-byte aligned).
__global__ void encoder_forward_kernel(float* out, const int* tokens, const int* positions, const float* wte,
                                       const float* wpe, long long rows, int T, int C, int pos_offset, bool vectorized) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vectorized) {
    const int C4 = C / 4;
    for (long long i = first; i < rows * C4; i += stride) {
      const long long row = i / C4;
      const int c4 = static_cast<int>(i % C4);
      const float4 a = reinterpret_cast<const float4*>(wte + static_cast<long long>(tokens[row]) * C)[c4];
      const float4 b = reinterpret_cast<const float4*>(wpe + static_cast<long long>(position_of(positions, pos_offset, row, T)) * C)[c4];
      reinterpret_cast<float4*>(out + row * C)[c4] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
  } else {
    for (long long i = first; i < rows * C; i += stride) {
      const long long row = i / C;
      const int c = static_cast<int>(i % C);
      out[i] = wte[static_cast<long long>(tokens[row]) * C + c] +
               wpe[static_cast<long long>(position_of(positions, pos_offset, row, T)) * C + c];
    }
  }
}

__global__ void encoder_backward_kernel(float* dwte, float* dwpe, const float* dout, const int* tokens,
                                        const int* positions, long long rows, int T, int C, int pos_offset) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * C; i += stride) {
    const long long row = i / C;
    const int c = static_cast<int>(i % C);
    const float g = dout[i];
    if (dwte) atomicAdd(dwte + static_cast<long long>(tokens[row]) * C + c, g);
    if (dwpe) atomicAdd(dwpe + static_cast<long long>(position_of(positions, pos_offset, row, T)) * C + c, g);
  }
}

}  // namespace

void encoder_forward(float* out, const int* tokens, const int* positions, const float* wte, const float* wpe, int B,
                     int T, int C, int pos_offset) {
  const long long rows = static_cast<long long>(B) * T;
  if (rows == 0 || C == 0) return;
  const bool vectorized = C % 4 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
  const int threads = 256;
  launch(encoder_forward_kernel, dim3(grid_for(rows * (vectorized ? C / 4 : C), threads)), dim3(threads), 0, out,
         tokens, positions, wte, wpe, rows, T, C, pos_offset, vectorized);
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens, const int* positions, int B,
                      int T, int C, int pos_offset) {
  const long long rows = static_cast<long long>(B) * T;
  if (rows == 0 || C == 0 || (!dwte && !dwpe)) return;
  const int threads = 256;
  launch(encoder_backward_kernel, dim3(grid_for(rows * C, threads)), dim3(threads), 0, dwte, dwpe, dout, tokens,
         positions, rows, T, C, pos_offset);
}

}  // namespace gptune::cuda
