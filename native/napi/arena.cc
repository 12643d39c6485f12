#include "napi/arena.h"

#include <cstdlib>
#include <cstring>

#include "gptune/device.h"
#include "gptune/kernels.h"
#include "napi/args.h"

namespace gptune::napi {

const char* device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

MemoryCounters& memory_counters() {
  static MemoryCounters counters;
  return counters;
}

Block::Block(Device device_, size_t bytes_) : device(device_), bytes(bytes_) {
  size_t alloc_bytes = bytes == 0 ? 64 : bytes;
  if (device == Device::Cpu) {
    // 64-byte alignment: every arena starts on a cache line / AVX-512 vector boundary.
    size_t rounded = (alloc_bytes + 63) / 64 * 64;
    ptr = std::aligned_alloc(64, rounded);
    if (!ptr) throw Error("out of memory: could not allocate " + std::to_string(bytes >> 20) + " MiB on the CPU");
    memory_counters().cpu_bytes += static_cast<int64_t>(bytes);
  } else {
#ifdef GPTUNE_WITH_CUDA
    ptr = cuda::malloc_device(alloc_bytes);
    memory_counters().cuda_bytes += static_cast<int64_t>(bytes);
#else
    throw Error("this gptune addon was built without CUDA (nvcc was not found at build time)");
#endif
  }
  memory_counters().blocks += 1;
}

Block::~Block() {
  if (!ptr) return;
  if (device == Device::Cpu) {
    std::free(ptr);
    memory_counters().cpu_bytes -= static_cast<int64_t>(bytes);
  } else {
#ifdef GPTUNE_WITH_CUDA
    try {
      cuda::free_device(ptr);
    } catch (...) {
      // A failing free (device lost) must not take the process down from a destructor.
    }
    memory_counters().cuda_bytes -= static_cast<int64_t>(bytes);
#endif
  }
  memory_counters().blocks -= 1;
}

Napi::Function Arena::Init(Napi::Env env) {
  return DefineClass(env, "Arena",
                     {InstanceAccessor<&Arena::GetNumel>("numel"),
                      InstanceAccessor<&Arena::GetDevice>("device"),
                      InstanceAccessor<&Arena::GetData>("data"),
                      InstanceMethod<&Arena::Read>("read"), InstanceMethod<&Arena::Write>("write"),
                      InstanceMethod<&Arena::Fill>("fill"),
                      InstanceMethod<&Arena::CopyFrom>("copyFrom"),
                      InstanceMethod<&Arena::Free>("free")});
}

Arena::Arena(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Arena>(info) {
  Napi::Env env = info.Env();
  Args args(info, "new Arena", 2);
  std::string dev = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (dev == "cpu") {
    device_ = Device::Cpu;
  } else if (dev == "cuda") {
    device_ = Device::Cuda;
  } else {
    throw Napi::TypeError::New(env, "new Arena: expected device 'cpu' or 'cuda' for argument 1 but received " + describe(info[0]));
  }
  double n = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  // 2^40 floats (4 TiB) is far beyond any machine; the bound keeps byte counts exact.
  if (!(n >= 0 && n <= 1099511627776.0 && std::floor(n) == n)) {
    throw Napi::RangeError::New(env, "new Arena: expected numel to be a whole number between 0 and 2^40 but received " + describe(info[1]));
  }
  numel_ = static_cast<int64_t>(n);
  try {
    block_ = std::make_shared<Block>(device_, static_cast<size_t>(numel_) * sizeof(float));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("new Arena: ") + e.what());
  }
  if (device_ == Device::Cpu) std::memset(block_->ptr, 0, static_cast<size_t>(numel_) * sizeof(float));
#ifdef GPTUNE_WITH_CUDA
  else {
    try {
      cuda::memset_device(block_->ptr, 0, static_cast<size_t>(numel_) * sizeof(float));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("new Arena: ") + e.what());
    }
  }
#endif
}

float* Arena::data(const char* what) const {
  if (!block_) throw Error(std::string(what) + ": the arena was freed");
  return static_cast<float*>(block_->ptr);
}

void Arena::check_range(Napi::Env env, int64_t offset, int64_t n, const char* what) const {
  if (!block_) throw Napi::Error::New(env, std::string(what) + ": the arena was freed");
  if (offset < 0 || n < 0 || offset > numel_ || n > numel_ - offset) {
    throw Napi::RangeError::New(env, std::string(what) + ": range [" + std::to_string(offset) + ", " +
                                         std::to_string(offset + n) + ") is outside the arena of " +
                                         std::to_string(numel_) + " floats");
  }
}

static int64_t whole(Napi::Env env, const Napi::Value& v, const char* what, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + ": expected a whole number for " + name + " but received " + describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(std::floor(d) == d && std::fabs(d) <= 9007199254740992.0))
    throw Napi::RangeError::New(env, std::string(what) + ": expected a whole number for " + name + " but received " + describe(v));
  return static_cast<int64_t>(d);
}

Napi::Value Arena::GetNumel(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(numel_)); }
Napi::Value Arena::GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_name(device_)); }

Napi::Value Arena::GetData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (device_ != Device::Cpu) throw Napi::Error::New(env, "arena.data: only CPU arenas can be viewed directly; use arena.read()");
  check_range(env, 0, 0, "arena.data");
  if (!data_view_.IsEmpty()) return data_view_.Value();
  // The ArrayBuffer keeps its own reference to the block: freeing the arena cannot invalidate it.
  auto* keep = new std::shared_ptr<Block>(block_);
  auto buffer = Napi::ArrayBuffer::New(env, block_->ptr, block_->bytes,
                                       [](Napi::Env, void*, std::shared_ptr<Block>* hint) { delete hint; }, keep);
  auto view = Napi::Float32Array::New(env, static_cast<size_t>(numel_), buffer, 0);
  data_view_ = Napi::Persistent(view);
  return view;
}

Napi::Value Arena::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t offset = whole(env, info[0], "arena.read", "offset");
  int64_t n = info.Length() > 1 && !info[1].IsUndefined() ? whole(env, info[1], "arena.read", "n") : numel_ - offset;
  check_range(env, offset, n, "arena.read");
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(n));
  const float* src = static_cast<const float*>(block_->ptr) + offset;
  if (device_ == Device::Cpu) {
    std::memcpy(out.Data(), src, static_cast<size_t>(n) * sizeof(float));
  } else {
#ifdef GPTUNE_WITH_CUDA
    try {
      cuda::copy_to_host(out.Data(), src, static_cast<size_t>(n) * sizeof(float));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("arena.read: ") + e.what());
    }
#endif
  }
  return out;
}

Napi::Value Arena::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t offset = whole(env, info[0], "arena.write", "offset");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "arena.write: expected a Float32Array for argument 2 but received " + describe(info[1]));
  auto src = info[1].As<Napi::Float32Array>();
  int64_t n = static_cast<int64_t>(src.ElementLength());
  check_range(env, offset, n, "arena.write");
  float* dst = static_cast<float*>(block_->ptr) + offset;
  if (device_ == Device::Cpu) {
    std::memmove(dst, src.Data(), static_cast<size_t>(n) * sizeof(float));
  } else {
#ifdef GPTUNE_WITH_CUDA
    try {
      cuda::copy_to_device(dst, src.Data(), static_cast<size_t>(n) * sizeof(float));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("arena.write: ") + e.what());
    }
#endif
  }
  return env.Undefined();
}

Napi::Value Arena::Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "arena.fill: expected a number for value but received " + describe(info[0]));
  float value = info[0].As<Napi::Number>().FloatValue();
  int64_t offset = info.Length() > 1 && !info[1].IsUndefined() ? whole(env, info[1], "arena.fill", "offset") : 0;
  int64_t n = info.Length() > 2 && !info[2].IsUndefined() ? whole(env, info[2], "arena.fill", "n") : numel_ - offset;
  check_range(env, offset, n, "arena.fill");
  float* dst = static_cast<float*>(block_->ptr) + offset;
  try {
    if (device_ == Device::Cpu) cpu::fill(dst, value, n);
#ifdef GPTUNE_WITH_CUDA
    else cuda::fill(dst, value, n);
#endif
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("arena.fill: ") + e.what());
  }
  return env.Undefined();
}

Napi::Value Arena::CopyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t offset = whole(env, info[0], "arena.copyFrom", "offset");
  if (!info[1].IsObject() || !info[1].As<Napi::Object>().InstanceOf(env.GetInstanceData<Napi::FunctionReference>()->Value()))
    throw Napi::TypeError::New(env, "arena.copyFrom: expected an Arena for argument 2 but received " + describe(info[1]));
  Arena* src = Arena::Unwrap(info[1].As<Napi::Object>());
  int64_t src_offset = whole(env, info[2], "arena.copyFrom", "srcOffset");
  int64_t n = whole(env, info[3], "arena.copyFrom", "n");
  check_range(env, offset, n, "arena.copyFrom (destination)");
  src->check_range(env, src_offset, n, "arena.copyFrom (source)");
  float* dst = static_cast<float*>(block_->ptr) + offset;
  const float* from = static_cast<const float*>(src->block_->ptr) + src_offset;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  try {
    if (device_ == Device::Cpu && src->device_ == Device::Cpu) {
      std::memmove(dst, from, bytes);
    } else {
#ifdef GPTUNE_WITH_CUDA
      if (device_ == Device::Cuda && src->device_ == Device::Cuda) cuda::copy_device_to_device(dst, from, bytes);
      else if (device_ == Device::Cuda) cuda::copy_to_device(dst, from, bytes);
      else cuda::copy_to_host(dst, from, bytes);
#endif
    }
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("arena.copyFrom: ") + e.what());
  }
  return env.Undefined();
}

Napi::Value Arena::Free(const Napi::CallbackInfo& info) {
  block_.reset();
  data_view_.Reset();
  return info.Env().Undefined();
}

}  // namespace gptune::napi
