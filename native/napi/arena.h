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

// The allocation itself. Shared between the Arena and every zero-copy Float32Array handed to
// JavaScript for a CPU arena, so a view outliving its Arena (or arena.free()) never dangles.
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

class Arena : public Napi::ObjectWrap<Arena> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Arena(const Napi::CallbackInfo& info);

  // The block, or a JS error naming `what` if the arena was freed.
  float* data(const char* what) const;
  Device device() const { return device_; }
  int64_t numel() const { return numel_; }
  bool freed() const { return !block_; }

 private:
  Napi::Value GetNumel(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetData(const Napi::CallbackInfo& info);  // CPU only: zero-copy Float32Array
  Napi::Value Read(const Napi::CallbackInfo& info);     // read(offset, n) -> Float32Array copy
  Napi::Value Write(const Napi::CallbackInfo& info);    // write(offset, Float32Array)
  Napi::Value Fill(const Napi::CallbackInfo& info);     // fill(value, offset?, n?)
  Napi::Value CopyFrom(const Napi::CallbackInfo& info); // copyFrom(offset, srcArena, srcOffset, n)
  Napi::Value Free(const Napi::CallbackInfo& info);

  // Checks [offset, offset+n) lies inside the arena; `what` names the call in errors.
  void check_range(Napi::Env env, int64_t offset, int64_t n, const char* what) const;

  std::shared_ptr<Block> block_;
  Device device_ = Device::Cpu;
  int64_t numel_ = 0;
  Napi::Reference<Napi::Float32Array> data_view_;
};

}  // namespace gptune::napi
