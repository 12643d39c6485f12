#pragma once
#include <napi.h>

namespace gptune::napi {
Napi::Object KernelBindings(Napi::Env env);  // kernels.cc
Napi::Function SgemmBinding(Napi::Env env);  // kernels.cc
// The CPU scalar references of matmul_ggml_forward/backward (cpu/ggml_quant.h), for tests.
Napi::Object GgmlReferenceBindings(Napi::Env env);  // kernels.cc
Napi::Object CudaBindings(Napi::Env env);    // addon.cc
Napi::Object MpiBindings(Napi::Env env);     // mpi.cc: data-parallel collectives (throwing when built without MPI)
Napi::Object NcclBindings(Napi::Env env);    // nccl.cc: NCCL loaded at run time (GPU ranks)
}  // namespace gptune::napi
