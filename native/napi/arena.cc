#include "napi/arena.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "gptune/device.h"
#include "gptune/kernels.h"
#include "napi/args.h"
#include "napi/binding.h"

namespace gptune::napi {

const char* device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

MemoryCounters& memory_counters() {
  static MemoryCounters counters;
  return counters;
}

Block::Block(Device device_, size_t bytes_) : device(device_), bytes(bytes_) {
  size_t alloc_bytes = bytes == 0 ? 64 : bytes;
  if (device == Device::Cpu) {
    // More than the machine's RAM can only fail, or (with overcommit) succeed and then be zeroed
    // page by page until the OOM killer steps in: refuse it up front.
    const std::string asked = "could not allocate " + std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB (" +
                              std::to_string(bytes / sizeof(float)) + " floats) on the CPU";
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0 && bytes / static_cast<size_t>(page_size) > static_cast<size_t>(pages))
      throw Error("out of memory: " + asked + ", which has " +
                  std::to_string((static_cast<size_t>(pages) * static_cast<size_t>(page_size)) >> 20) + " MiB of memory");
    // 64-byte alignment: every arena starts on a cache line / AVX-512 vector boundary.
    size_t rounded = (alloc_bytes + 63) / 64 * 64;
    ptr = std::aligned_alloc(64, rounded);
    if (!ptr) throw Error("out of memory: " + asked);
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

namespace {

// Marks JavaScript objects made by `new Arena`, so a view's `arena` is recognised without instanceof
// (which runs Symbol.hasInstance and proxy traps) and a look-alike object is never reinterpreted.
constexpr napi_type_tag kArenaTag = {0x6770747566656e61ULL, 0x4172656e61763031ULL};

void finalize(napi_env, void* data, void*) { delete static_cast<Arena*>(data); }

// The Arena a method was called on, pinned for the call (`live`: it must not have been freed).
struct Self {
  Arena& arena;
  std::shared_ptr<Block> pin;
};

Self self(const Napi::CallbackInfo& info, const Args& a, bool live = true) {
  Arena* arena = Arena::unwrap(info.Env(), info.This());
  if (!arena) throw Napi::TypeError::New(info.Env(), std::string(a.binding()) + ": called on an object that is not a gptune Arena");
  if (live && arena->freed()) throw Napi::Error::New(info.Env(), std::string(a.binding()) + ": the arena was freed");
  return Self{*arena, arena->block()};
}

// Checks [offset, offset+n) lies inside an arena of `numel` floats.
void check_range(const Args& a, int64_t offset, int64_t n, int64_t numel, const char* which = "") {
  if (offset > numel || n > numel - offset)
    a.fail_range(std::string("range [") + std::to_string(offset) + ", " + std::to_string(offset + n) + ")" + which +
                 " is outside the arena of " + std::to_string(numel) + " floats");
}

napi_property_descriptor method(const char* name, napi_callback cb, const char* binding) {
  return {name, nullptr, cb, nullptr, nullptr, nullptr, napi_default, const_cast<char*>(binding)};
}

napi_property_descriptor getter(const char* name, napi_callback cb, const char* binding) {
  return {name, nullptr, nullptr, cb, nullptr, nullptr, napi_default, const_cast<char*>(binding)};
}

}  // namespace

Napi::Function Arena::define_class(Napi::Env env) {
  const napi_property_descriptor props[] = {
      getter("numel", Bind<get_numel>, "arena.numel"),
      getter("device", Bind<get_device>, "arena.device"),
      getter("data", Bind<get_data>, "arena.data"),
      method("read", Bind<read>, "arena.read"),
      method("write", Bind<write>, "arena.write"),
      method("fill", Bind<fill>, "arena.fill"),
      method("copyFrom", Bind<copy_from>, "arena.copyFrom"),
      method("free", Bind<free>, "arena.free"),
  };
  napi_value cls = nullptr;
  check_status(env, napi_define_class(env, "Arena", NAPI_AUTO_LENGTH, Bind<construct>, const_cast<char*>("new Arena"),
                                      sizeof(props) / sizeof(props[0]), props, &cls));
  return Napi::Function(env, cls);
}

Arena* Arena::unwrap(napi_env env, napi_value v) {
  napi_valuetype type;
  if (!v || napi_typeof(env, v, &type) != napi_ok || type != napi_object) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, v, &kArenaTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* data = nullptr;
  if (napi_unwrap(env, v, &data) != napi_ok) return nullptr;
  return static_cast<Arena*>(data);
}

Arena::Arena(Device device, int64_t numel) : device_(device), numel_(numel) {
  size_t bytes = static_cast<size_t>(numel_) * sizeof(float);
  block_ = std::make_shared<Block>(device_, bytes);
  if (device_ == Device::Cpu) std::memset(block_->ptr, 0, bytes);
#ifdef GPTUNE_WITH_CUDA
  else cuda::memset_device(block_->ptr, 0, bytes);
#endif
}

Napi::Value Arena::construct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.NewTarget().IsEmpty()) throw Napi::TypeError::New(env, "Arena: use new Arena(device, numel)");
  Args a(info, "new Arena", 2);
  Device device = a.choice(0, "device", {"cpu", "cuda"}) == "cpu" ? Device::Cpu : Device::Cuda;
  int64_t numel = a.count(1, "numel", kMaxArenaNumel, "2^40");
  auto arena = std::make_unique<Arena>(device, numel);
  napi_value object = info.This();
  check_status(env, napi_type_tag_object(env, object, &kArenaTag));
  check_status(env, napi_wrap(env, object, arena.get(), finalize, nullptr, nullptr));
  arena.release();  // owned by the JavaScript object now (finalize)
  return info.This();
}

Napi::Value Arena::get_numel(const Napi::CallbackInfo& info) {
  Args a(info, "arena.numel", 0);
  return Napi::Number::New(info.Env(), static_cast<double>(self(info, a, false).arena.numel_));
}

Napi::Value Arena::get_device(const Napi::CallbackInfo& info) {
  Args a(info, "arena.device", 0);
  return Napi::String::New(info.Env(), device_name(self(info, a, false).arena.device_));
}

Napi::Value Arena::get_data(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "arena.data", 0);
  Arena& s = self(info, a).arena;
  if (s.device_ != Device::Cpu) throw Napi::Error::New(env, "arena.data: only CPU arenas can be viewed directly; use arena.read()");
  if (!s.data_view_.IsEmpty()) return s.data_view_.Value();
  // The ArrayBuffer keeps its own reference to the block: freeing the arena cannot invalidate it.
  auto keep = std::make_unique<std::shared_ptr<Block>>(s.block_);
  auto buffer = Napi::ArrayBuffer::New(env, s.block_->ptr, s.block_->bytes,
                                       [](Napi::Env, void*, std::shared_ptr<Block>* hint) { delete hint; }, keep.get());
  keep.release();
  auto view = Napi::Float32Array::New(env, static_cast<size_t>(s.numel_), buffer, 0);
  s.data_view_ = Napi::Persistent(view);
  return view;
}

Napi::Value Arena::read(const Napi::CallbackInfo& info) {
  Args a(info, "arena.read", 1, 2);
  Self s = self(info, a);
  int64_t offset = a.count(0, "offset");
  int64_t n = a.has(1) ? a.count(1, "n") : std::max<int64_t>(s.arena.numel_ - offset, 0);
  check_range(a, offset, n, s.arena.numel_);
  auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(n));
  const float* src = static_cast<const float*>(s.pin->ptr) + offset;
  if (s.arena.device_ == Device::Cpu) std::memcpy(out.Data(), src, static_cast<size_t>(n) * sizeof(float));
#ifdef GPTUNE_WITH_CUDA
  else cuda::copy_to_host(out.Data(), src, static_cast<size_t>(n) * sizeof(float));
#endif
  return out;
}

Napi::Value Arena::write(const Napi::CallbackInfo& info) {
  Args a(info, "arena.write", 2);
  Self s = self(info, a);
  int64_t offset = a.count(0, "offset");
  FloatArg src = a.host_floats(1, "src");
  check_range(a, offset, src.numel, s.arena.numel_);
  float* dst = static_cast<float*>(s.pin->ptr) + offset;
  if (s.arena.device_ == Device::Cpu) std::memmove(dst, src.ptr, static_cast<size_t>(src.numel) * sizeof(float));
#ifdef GPTUNE_WITH_CUDA
  else cuda::copy_to_device(dst, src.ptr, static_cast<size_t>(src.numel) * sizeof(float));
#endif
  return info.Env().Undefined();
}

Napi::Value Arena::fill(const Napi::CallbackInfo& info) {
  Args a(info, "arena.fill", 1, 3);
  Self s = self(info, a);
  float value = static_cast<float>(a.number(0, "value", false));
  int64_t offset = a.has(1) ? a.count(1, "offset") : 0;
  int64_t n = a.has(2) ? a.count(2, "n") : std::max<int64_t>(s.arena.numel_ - offset, 0);
  check_range(a, offset, n, s.arena.numel_);
  float* dst = static_cast<float*>(s.pin->ptr) + offset;
  if (s.arena.device_ == Device::Cpu) cpu::fill(dst, value, n);
#ifdef GPTUNE_WITH_CUDA
  else cuda::fill(dst, value, n);
#endif
  return info.Env().Undefined();
}

Napi::Value Arena::copy_from(const Napi::CallbackInfo& info) {
  Args a(info, "arena.copyFrom", 4);
  Self s = self(info, a);
  int64_t offset = a.count(0, "offset");
  Arena& src = a.arena(1, "src");
  std::shared_ptr<Block> src_pin = src.block_;
  int64_t src_offset = a.count(2, "srcOffset");
  int64_t n = a.count(3, "n");
  check_range(a, offset, n, s.arena.numel_, " (destination)");
  check_range(a, src_offset, n, src.numel_, " (source)");
  float* dst = static_cast<float*>(s.pin->ptr) + offset;
  const float* from = static_cast<const float*>(src_pin->ptr) + src_offset;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  if (s.arena.device_ == Device::Cpu && src.device_ == Device::Cpu) {
    std::memmove(dst, from, bytes);
  } else {
#ifdef GPTUNE_WITH_CUDA
    if (s.arena.device_ == Device::Cuda && src.device_ == Device::Cuda) cuda::copy_device_to_device(dst, from, bytes);
    else if (s.arena.device_ == Device::Cuda) cuda::copy_to_device(dst, from, bytes);
    else cuda::copy_to_host(dst, from, bytes);
#endif
  }
  return info.Env().Undefined();
}

Napi::Value Arena::free(const Napi::CallbackInfo& info) {
  Args a(info, "arena.free", 0);
  Arena& s = self(info, a, false).arena;
  // A call in progress holds its own pin on the block, so this never frees memory under a kernel.
  s.block_.reset();
  s.data_view_.Reset();
  return info.Env().Undefined();
}

}  // namespace gptune::napi
