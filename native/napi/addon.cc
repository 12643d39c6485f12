// Module entry: the Arena class, the kernels, backend information and CUDA device discovery.
#include <napi.h>

#include <string>
#include <vector>

#include "gptune/device.h"
#ifdef GPTUNE_WITH_CUDA
#include "gptune/cuda_options.h"
#endif
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
// 'bf16' (tensor cores, fp32 accumulation) or 'fp32' for matmuls / attention.
bool precision_arg(const Napi::CallbackInfo& info, const char* what) {
  std::string p = info.Length() == 1 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (p != "bf16" && p != "fp32")
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": expected 'bf16' or 'fp32' but received " +
                                               (info.Length() ? describe(info[0]) : std::string("nothing")));
  return p == "bf16";
}
Napi::Value CudaSetMatmulPrecision(const Napi::CallbackInfo& info) {
  cuda::set_matmul_precision(precision_arg(info, "cuda.setMatmulPrecision"));
  return info.Env().Undefined();
}
Napi::Value CudaSetAttentionPrecision(const Napi::CallbackInfo& info) {
  cuda::set_attention_precision(precision_arg(info, "cuda.setAttentionPrecision"));
  return info.Env().Undefined();
}
Napi::Value CudaPrecision(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("matmul", cuda::matmul_precision_bf16() ? "bf16" : "fp32");
  o.Set("attention", cuda::attention_precision_bf16() ? "bf16" : "fp32");
  return o;
}

// setMatmulBackend('auto' | 'native' | 'cublaslt'): who runs the bf16 matmuls (cuda_options.h).
Napi::Value CudaSetMatmulBackend(const Napi::CallbackInfo& info) {
  std::string b = info.Length() == 1 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const int value = b == "auto" ? 0 : b == "native" ? 1 : b == "cublaslt" ? 2 : -1;
  if (value < 0)
    throw Napi::TypeError::New(info.Env(), "cuda.setMatmulBackend: expected 'auto', 'native' or 'cublaslt' but received " +
                                               (info.Length() ? describe(info[0]) : std::string("nothing")));
  try {
    cuda::set_matmul_backend(value);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}
// matmulBackend() -> {setting, active, cublasLt: {loaded, path, version, reason}}
Napi::Value CudaMatmulBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  try {
    o.Set("setting", cuda::matmul_backend_setting());
    o.Set("active", cuda::matmul_backend_name());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  const cuda::CublasLtInfo lt = cuda::cublaslt_info();
  Napi::Object l = Napi::Object::New(env);
  l.Set("loaded", lt.loaded);
  l.Set("path", lt.path);
  l.Set("version", static_cast<double>(lt.version));
  l.Set("reason", lt.reason);
  o.Set("cublasLt", l);
  return o;
}

// adamwUpdateMulti([{params, m, v, grads, weightDecay}], lr, beta1, beta2, eps, gradScale, step):
// every tensor of a model in one launch. All views must be CUDA views of equal length per entry.
Napi::Value CudaAdamwUpdateMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[0].IsArray())
    throw Napi::TypeError::New(env, "cuda.adamwUpdateMulti: expected (tensors[], lr, beta1, beta2, eps, gradScale, step)");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<cuda::AdamWTensor> tensors;
  tensors.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, "cuda.adamwUpdateMulti: tensors[" + std::to_string(i) + "] is not an object");
    Napi::Object o = item.As<Napi::Object>();
    // Reuse the kernel-argument checks by validating each entry as a 5-argument call.
    std::vector<napi_value> argv = {o.Get("params"), o.Get("m"), o.Get("v"), o.Get("grads"), o.Get("weightDecay")};
    Napi::Function check = Napi::Function::New(env, [&tensors, i](const Napi::CallbackInfo& ci) -> Napi::Value {
      std::string name = "cuda.adamwUpdateMulti tensors[" + std::to_string(i) + "]";
      Args a(ci, name.c_str(), 5);
      auto p = a.floats(0, "params", 0);
      auto m = a.floats(1, "m", p.numel);
      auto v = a.floats(2, "v", p.numel);
      auto g = a.floats(3, "grads", p.numel);
      double wd = a.number(4, "weightDecay");
      if (a.device() != Device::Cuda) a.fail_range("every tensor must be a CUDA view");
      tensors.push_back({p.ptr, m.ptr, v.ptr, g.ptr, static_cast<long long>(p.numel), static_cast<float>(wd)});
      return ci.Env().Undefined();
    });
    check.Call(argv);
  }
  Args a(info, "cuda.adamwUpdateMulti", 7);
  double lr = a.number(1, "lr"), beta1 = a.number(2, "beta1"), beta2 = a.number(3, "beta2"), eps = a.number(4, "eps");
  double grad_scale = a.number(5, "gradScale");
  int step = a.dim(6, "step", 1);
  try {
    cuda::adamw_update_multi(tensors.data(), static_cast<int>(tensors.size()), static_cast<float>(lr), static_cast<float>(beta1),
                             static_cast<float>(beta2), static_cast<float>(eps), static_cast<float>(grad_scale), step);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
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
  o.Set("setMatmulPrecision", Napi::Function::New<CudaSetMatmulPrecision>(env, "setMatmulPrecision"));
  o.Set("setAttentionPrecision", Napi::Function::New<CudaSetAttentionPrecision>(env, "setAttentionPrecision"));
  o.Set("precision", Napi::Function::New<CudaPrecision>(env, "precision"));
  o.Set("setMatmulBackend", Napi::Function::New<CudaSetMatmulBackend>(env, "setMatmulBackend"));
  o.Set("matmulBackend", Napi::Function::New<CudaMatmulBackend>(env, "matmulBackend"));
  o.Set("adamwUpdateMulti", Napi::Function::New<CudaAdamwUpdateMulti>(env, "adamwUpdateMulti"));
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
