// The quantized-weight kernels of kernels.inc are not implemented on CUDA yet (the CPU backend,
// native/cpu/quant.cc, is): each CUDA entry point throws a gptune::Error naming the kernel, which the
// N-API layer turns into a JavaScript Error, so a CUDA caller learns it at the first call.
#include "common.cuh"

namespace gptune::cuda {

namespace {
[[noreturn]] void not_implemented(const char* kernel) {
  throw Error(std::string(kernel) + " is not implemented on CUDA yet; use CPU tensors for quantized weights");
}
}  // namespace

void quantize_int8(int8_t*, float*, const float*, int, int) { not_implemented("quantize_int8"); }
void dequantize_int8(float*, const int8_t*, const float*, int, int) { not_implemented("dequantize_int8"); }
void matmul_int8_forward(float*, const float*, const int8_t*, const float*, const float*, int, int, int) {
  not_implemented("matmul_int8_forward");
}
void matmul_int8_backward(float*, const float*, const int8_t*, const float*, int, int, int) {
  not_implemented("matmul_int8_backward");
}
void quantize_nf4(uint8_t*, uint8_t*, float*, float*, const float*, long long) { not_implemented("quantize_nf4"); }
void dequantize_nf4(float*, const uint8_t*, const uint8_t*, const float*, const float*, long long) {
  not_implemented("dequantize_nf4");
}
void matmul_nf4_forward(float*, const float*, const uint8_t*, const uint8_t*, const float*, const float*, const float*, int,
                        int, int) {
  not_implemented("matmul_nf4_forward");
}
void matmul_nf4_backward(float*, const float*, const uint8_t*, const uint8_t*, const float*, const float*, int, int, int) {
  not_implemented("matmul_nf4_backward");
}

}  // namespace gptune::cuda
