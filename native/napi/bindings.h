#pragma once
#include <napi.h>

namespace gptune::napi {
Napi::Object KernelBindings(Napi::Env env);  // kernels.cc
Napi::Function SgemmBinding(Napi::Env env);  // kernels.cc
// The CPU scalar references of matmul_ggml_forward/backward (cpu/ggml_quant.h), for tests.
Napi::Object GgmlReferenceBindings(Napi::Env env);  // kernels.cc
Napi::Object CudaBindings(Napi::Env env);    // addon.cc
}  // namespace gptune::napi
