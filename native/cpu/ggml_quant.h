// The scalar reference of the GGML block-format matmuls (kernels.inc matmul_ggml_forward/backward):
// each row of W dequantized into float32 with gptune/ggml_blocks.h, then plain dot products (forward)
// and axpys (backward). It is the readable definition the fast paths are checked against and the
// fallback on CPUs without them; same arguments and semantics as the kernels.
#pragma once
#include <cstdint>

namespace gptune::cpu {

// out[n*out_stride + o] = inp (N,C) row n . dequant(W) row o + bias[o] (bias may be null), o < OC.
void matmul_ggml_forward_reference(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N,
                                   int C, int OC, int out_stride);
// dinp (N,C) += dout[n*dout_stride + o] (o < OC) @ dequant(W) (OC,C); dinp may be null (nothing to do).
void matmul_ggml_backward_reference(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                                    int dout_stride);

}  // namespace gptune::cpu
