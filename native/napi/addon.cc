// Module entry: the Arena class, the kernels, backend information and CUDA device discovery.
#include <napi.h>

#include <string>
#include <vector>

#include "gptune/device.h"
#ifdef GPTUNE_WITH_CUDA
#include "gptune/cuda_options.h"
#endif
#include "cpu/cpu_features.h"
#include "gptune/kernels.h"
#include "napi/arena.h"
#include "napi/args.h"
#include "napi/binding.h"
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

// Caps the SIMD level the CPU kernels dispatch on (tests and benchmarks run the AVX2 and portable paths on an
// AVX-512 machine); 'avx512' restores the widest level the CPU has. Returns simd_level() afterwards.
Napi::Value SetSimdLimit(const Napi::CallbackInfo& info) {
  Args a(info, "setSimdLimit", 1);
  const std::string level = a.choice(0, "level", {"avx512", "avx2", "portable"});
  cpu::set_simd_limit(level == "avx512" ? cpu::Simd::avx512 : level == "avx2" ? cpu::Simd::avx2 : cpu::Simd::portable);
  return Napi::String::New(info.Env(), cpu::simd_level());
}

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
  return out;
}
Napi::Value CudaSetDevice(const Napi::CallbackInfo& info) {
  Args a(info, "cuda.setDevice", 1);
  cuda::set_device(a.dim(0, "index", 0));
  return info.Env().Undefined();
}
// 'bf16' (tensor cores, fp32 accumulation) or 'fp32' for matmuls / attention.
bool precision_arg(const Napi::CallbackInfo& info, const char* what) {
  Args a(info, what, 1);
  return a.choice(0, "precision", {"bf16", "fp32"}) == "bf16";
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
  Args a(info, "cuda.setMatmulBackend", 1);
  const std::string b = a.choice(0, "backend", {"auto", "native", "cublaslt"});
  cuda::set_matmul_backend(b == "auto" ? 0 : b == "native" ? 1 : 2);
  return info.Env().Undefined();
}
// matmulBackend() -> {setting, active, cublasLt: {loaded, path, version, reason}}
Napi::Value CudaMatmulBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("setting", cuda::matmul_backend_setting());
  o.Set("active", cuda::matmul_backend_name());
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
// Phase 1 (napi/args.h) covers the whole list: every entry and every view is read before any
// pointer is taken, so a getter in entry 7 cannot free the arena of entry 2.
Napi::Value CudaAdamwUpdateMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "cuda.adamwUpdateMulti", 7);
  std::vector<Args> entries = list_args(info, a, 0, "tensors", "an Array of {params, m, v, grads, weightDecay}", [&](Napi::Value item, const std::string& name) {
    if (!item.IsObject()) throw Napi::TypeError::New(env, name + ": expected an object but received " + describe(item));
    Napi::Object o = item.As<Napi::Object>();
    return std::vector<Napi::Value>{o.Get("params"), o.Get("m"), o.Get("v"), o.Get("grads"), o.Get("weightDecay")};
  });
  // Phase 2: no JavaScript runs from here to the launch.
  double lr = a.number(1, "lr"), beta1 = a.number(2, "beta1"), beta2 = a.number(3, "beta2"), eps = a.number(4, "eps");
  double grad_scale = a.number(5, "gradScale");
  int step = a.dim(6, "step", 1);
  std::vector<cuda::AdamWTensor> tensors;
  tensors.reserve(entries.size());
  for (Args& e : entries) {
    auto p = e.floats(0, "params", 0);
    auto m = e.floats(1, "m", p.numel);
    auto v = e.floats(2, "v", p.numel);
    auto g = e.floats(3, "grads", p.numel);
    double wd = e.number(4, "weightDecay");
    if (e.device() != Device::Cuda) e.fail_range("every tensor must be a CUDA view");
    tensors.push_back({p.ptr, m.ptr, v.ptr, g.ptr, static_cast<long long>(p.numel), static_cast<float>(wd)});
  }
  cuda::adamw_update_multi(tensors.data(), static_cast<int>(tensors.size()), static_cast<float>(lr), static_cast<float>(beta1),
                           static_cast<float>(beta2), static_cast<float>(eps), static_cast<float>(grad_scale), step);
  return env.Undefined();
}

Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  cuda::synchronize();
  return info.Env().Undefined();
}
#endif

}  // namespace

Napi::Object CudaBindings(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#ifdef GPTUNE_WITH_CUDA
  o.Set("compiled", true);
  o.Set("deviceCount", function<CudaDeviceCount>(env, "cuda.deviceCount"));
  o.Set("unavailableReason", function<CudaUnavailableReason>(env, "cuda.unavailableReason"));
  o.Set("devices", function<CudaDevices>(env, "cuda.devices"));
  o.Set("setDevice", function<CudaSetDevice>(env, "cuda.setDevice"));
  o.Set("synchronize", function<CudaSynchronize>(env, "cuda.synchronize"));
  o.Set("setMatmulPrecision", function<CudaSetMatmulPrecision>(env, "cuda.setMatmulPrecision"));
  o.Set("setAttentionPrecision", function<CudaSetAttentionPrecision>(env, "cuda.setAttentionPrecision"));
  o.Set("precision", function<CudaPrecision>(env, "cuda.precision"));
  o.Set("setMatmulBackend", function<CudaSetMatmulBackend>(env, "cuda.setMatmulBackend"));
  o.Set("matmulBackend", function<CudaMatmulBackend>(env, "cuda.matmulBackend"));
  o.Set("adamwUpdateMulti", function<CudaAdamwUpdateMulti>(env, "cuda.adamwUpdateMulti"));
#else
  o.Set("compiled", false);
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_buffer_checks(env);
  exports.Set("Arena", Arena::define_class(env));
  exports.Set("kernels", KernelBindings(env));
  exports.Set("sgemm", SgemmBinding(env));
  exports.Set("ggmlReference", GgmlReferenceBindings(env));
  exports.Set("cuda", CudaBindings(env));
  exports.Set("mpi", MpiBindings(env));
  exports.Set("nccl", NcclBindings(env));
  exports.Set("version", Napi::String::New(env, GPTUNE_VERSION));
  Napi::Array backends = Napi::Array::New(env);
  backends.Set(0u, "cpu");
#ifdef GPTUNE_WITH_CUDA
  backends.Set(1u, "cuda");
#endif
  exports.Set("backends", backends);
  exports.Set("setNumThreads", function<SetNumThreads>(env, "setNumThreads"));
  exports.Set("numThreads", function<NumThreads>(env, "numThreads"));
  exports.Set("simdLevel", function<SimdLevel>(env, "simdLevel"));
  exports.Set("setSimdLimit", function<SetSimdLimit>(env, "setSimdLimit"));
  exports.Set("memory", function<Memory>(env, "memory"));
  return exports;
}

}  // namespace gptune::napi

static Napi::Object InitGptune(Napi::Env env, Napi::Object exports) { return gptune::napi::Init(env, exports); }
NODE_API_MODULE(gptune, InitGptune)
