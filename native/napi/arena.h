// Arenas: native-owned float32 storage on one device. TypeScript holds Arena handles and
// {arena, offset, numel} views into them; kernels receive raw pointers resolved from those views.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace gptune::napi {

enum class Device { Cpu, Cuda };

const char* device_name(Device d);

// The allocation itself. Shared between the Arena, every zero-copy Float32Array handed to
// JavaScript for a CPU arena, and the Args of a call in progress (its pin), so neither a view
// outliving its Arena nor arena.free() during a call ever leaves a pointer dangling.
struct Block {
  Block(Device device, size_t bytes);
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  Device device;
  size_t bytes;
  void* ptr = nullptr;
};

// Bytes currently allocated per device, for memory accounting and leak tests.
struct MemoryCounters {
  std::atomic<int64_t> cpu_bytes{0}, cuda_bytes{0}, blocks{0};
};
MemoryCounters& memory_counters();

// The largest arena: 2^40 floats (4 TiB), far beyond any machine; the bound keeps byte counts exact.
constexpr double kMaxArenaNumel = 1099511627776.0;

// The native side of a JavaScript Arena object (napi_wrap'ed into it, type-tagged).
class Arena {
 public:
  // The JS class; every method and accessor goes through Bind<> (napi/binding.h).
  static Napi::Function define_class(Napi::Env env);
  // The Arena wrapped in `v`, or nullptr when `v` is anything else (a look-alike object, an
  // Object.create(Arena.prototype)). Decided by a type tag: no JavaScript runs.
  static Arena* unwrap(napi_env env, napi_value v);

  Arena(Device device, int64_t numel);
  Device device() const { return device_; }
  int64_t numel() const { return numel_; }
  bool freed() const { return !block_; }
  // The block, for a caller to pin while it uses a pointer into it; null once freed.
  const std::shared_ptr<Block>& block() const { return block_; }

 private:
  static Napi::Value construct(const Napi::CallbackInfo& info);  // new Arena(device, numel)
  static Napi::Value get_numel(const Napi::CallbackInfo& info);
  static Napi::Value get_device(const Napi::CallbackInfo& info);
  static Napi::Value get_data(const Napi::CallbackInfo& info);  // CPU only: zero-copy Float32Array
  static Napi::Value read(const Napi::CallbackInfo& info);      // read(offset, n?) -> Float32Array copy
  static Napi::Value write(const Napi::CallbackInfo& info);     // write(offset, Float32Array)
  static Napi::Value fill(const Napi::CallbackInfo& info);      // fill(value, offset?, n?)
  static Napi::Value copy_from(const Napi::CallbackInfo& info); // copyFrom(offset, srcArena, srcOffset, n)
  static Napi::Value free(const Napi::CallbackInfo& info);

  std::shared_ptr<Block> block_;
  Device device_ = Device::Cpu;
  int64_t numel_ = 0;
  Napi::Reference<Napi::Float32Array> data_view_;
};

}  // namespace gptune::napi
