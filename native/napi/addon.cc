// Module entry: the Arena class, the kernels, backend information and CUDA device discovery.
#include <napi.h>

#include "gptune/device.h"
#include "gptune/kernels.h"
#include "napi/arena.h"
#include "napi/args.h"
#include "napi/bindings.h"

#ifndef GPTUNE_VERSION
#define GPTUNE_VERSION "0.1.0"
#endif

namespace gptune::napi {
namespace {

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setNumThreads", 1);
  int n = a.dim(0, "threads");
  if (n > 256) a.fail_range("threads must be between 1 and 256, got " + std::to_string(n));
  cpu::set_num_threads(n);
  return info.Env().Undefined();
}

Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cpu::num_threads()); }
Napi::Value SimdLevel(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu::simd_level()); }

Napi::Value Memory(const Napi::CallbackInfo& info) {
  auto& c = memory_counters();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cpuBytes", Napi::Number::New(info.Env(), static_cast<double>(c.cpu_bytes.load())));
  o.Set("cudaBytes", Napi::Number::New(info.Env(), static_cast<double>(c.cuda_bytes.load())));
  o.Set("blocks", Napi::Number::New(info.Env(), static_cast<double>(c.blocks.load())));
  return o;
}

#ifdef GPTUNE_WITH_CUDA
Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cuda::device_count()); }
Napi::Value CudaUnavailableReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), cuda::unavailable_reason());
}
Napi::Value CudaDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (cuda::device_count() == 0) return out;
  try {
    auto list = cuda::devices();
    for (size_t i = 0; i < list.size(); ++i) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", list[i].index);
      d.Set("name", list[i].name);
      d.Set("totalMemory", static_cast<double>(list[i].total_memory));
      d.Set("freeMemory", static_cast<double>(list[i].free_memory));
      d.Set("computeCapability", std::to_string(list[i].major) + "." + std::to_string(list[i].minor));
      out.Set(static_cast<uint32_t>(i), d);
    }
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return out;
}
Napi::Value CudaSetDevice(const Napi::CallbackInfo& info) {
  Args a(info, "cuda.setDevice", 1);
  int index = a.dim(0, "index", 0);
  try {
    cuda::set_device(index);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  try {
    cuda::synchronize();
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}
#endif

}  // namespace

Napi::Object CudaBindings(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#ifdef GPTUNE_WITH_CUDA
  o.Set("compiled", true);
  o.Set("deviceCount", Napi::Function::New<CudaDeviceCount>(env, "deviceCount"));
  o.Set("unavailableReason", Napi::Function::New<CudaUnavailableReason>(env, "unavailableReason"));
  o.Set("devices", Napi::Function::New<CudaDevices>(env, "devices"));
  o.Set("setDevice", Napi::Function::New<CudaSetDevice>(env, "setDevice"));
  o.Set("synchronize", Napi::Function::New<CudaSynchronize>(env, "synchronize"));
#else
  o.Set("compiled", false);
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function arena = Arena::Init(env);
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(arena)));
  exports.Set("Arena", arena);
  exports.Set("kernels", KernelBindings(env));
  exports.Set("sgemm", SgemmBinding(env));
  exports.Set("cuda", CudaBindings(env));
  exports.Set("version", Napi::String::New(env, GPTUNE_VERSION));
  Napi::Array backends = Napi::Array::New(env);
  backends.Set(0u, "cpu");
#ifdef GPTUNE_WITH_CUDA
  backends.Set(1u, "cuda");
#endif
  exports.Set("backends", backends);
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("numThreads", Napi::Function::New<NumThreads>(env, "numThreads"));
  exports.Set("simdLevel", Napi::Function::New<SimdLevel>(env, "simdLevel"));
  exports.Set("memory", Napi::Function::New<Memory>(env, "memory"));
  return exports;
}

}  // namespace gptune::napi

static Napi::Object InitGptune(Napi::Env env, Napi::Object exports) { return gptune::napi::Init(env, exports); }
NODE_API_MODULE(gptune, InitGptune)
