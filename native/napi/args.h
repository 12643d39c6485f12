// Argument checking for every binding. A wrong argument throws a JavaScript TypeError/RangeError
// naming the binding, the argument, what was expected and what was received.
//
// Resolution runs in two phases so that no raw pointer ever survives a call into JavaScript:
//  1. The constructor reads every JavaScript value of the call, each exactly once: the `arena`,
//     `offset` and `numel` of each view object (getters and proxies run here, and may free arenas,
//     shrink or transfer buffers) and whether each typed array's buffer is resizable. Nothing is
//     validated and no pointer is taken yet.
//  2. Every accessor (dim, number, floats, ints, ...) works on that snapshot and never runs
//     JavaScript: it checks arenas are alive, buffers not detached and views inside their storage,
//     and only then takes a pointer. Each arena's block is pinned (a shared_ptr held by Args) for
//     the rest of the call, so even arena.free() cannot release memory a resolved argument points
//     to; buffers cannot change because no JavaScript runs between resolution and the kernel.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "napi/arena.h"

namespace gptune::napi {

// A resolved float tensor argument: a Float32Array (CPU) or an {arena, offset, numel} view.
struct FloatArg {
  float* ptr = nullptr;
  int64_t numel = 0;
  Device device = Device::Cpu;
};

// A host int32 argument (token ids, targets, positions, segment ids, predictions).
struct IntArg {
  int32_t* ptr = nullptr;
  int64_t numel = 0;
};

// A quantized or 16-bit weight argument: an Int8Array (int8 codes), a Uint8Array (packed NF4 codes,
// 8-bit block scales) or a Uint16Array (bf16 bit patterns) on the CPU, or on any device an
// {arena, offset, numel} view whose offset and numel count the arena's 4-byte float slots: its
// elements start at byte offset*4 and there are numel*4/sizeof(T) of them.
template <class T>
struct ByteArg {
  T* ptr = nullptr;
  int64_t numel = 0;  // elements of T
  Device device = Device::Cpu;
};

std::string describe(const Napi::Value& v);  // "a number (-1)", "undefined", "a Float32Array of length 3"

class Args {
 public:
  // Phase 1 for a call: exactly `count` arguments, or between min_count and max_count.
  Args(const Napi::CallbackInfo& info, const char* binding, size_t count);
  Args(const Napi::CallbackInfo& info, const char* binding, size_t min_count, size_t max_count);
  // Phase 1 for values gathered by the binding itself (the entries of a list argument).
  Args(Napi::Env env, const std::string& binding, const std::vector<Napi::Value>& values);

  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;
  Args(Args&&) = default;

  [[noreturn]] void fail_type(size_t i, const char* name, const std::string& expected) const;
  [[noreturn]] void fail_range(const std::string& message) const;

  // Whether argument i was given (and is not undefined).
  bool has(size_t i) const;
  // A positive integer dimension (>= min_value, < 2^31).
  int dim(size_t i, const char* name, int min_value = 1) const;
  // A whole number in [0, max_value] (element counts, offsets); max_value <= 2^53.
  int64_t count(size_t i, const char* name, double max_value = 9007199254740991.0, const char* max_text = "2^53-1") const;
  // Any whole number in (-2^31, 2^31) (an ignore index).
  int integer(size_t i, const char* name) const;
  // A finite number (or, with finite = false, any number, NaN and infinities included).
  double number(size_t i, const char* name, bool finite = true) const;
  bool boolean(size_t i, const char* name) const;
  // One of the given strings, e.g. {"cpu", "cuda"}.
  std::string choice(size_t i, const char* name, std::initializer_list<const char*> choices) const;
  // A genuine gptune Arena (identified by its type tag, not by instanceof, so no JavaScript runs).
  Arena& arena(size_t i, const char* name);

  // Float tensor that must hold at least `required` elements; optional ones accept null.
  FloatArg floats(size_t i, const char* name, int64_t required);
  FloatArg floats_opt(size_t i, const char* name, int64_t required);
  // A host Float32Array only (no arena views), e.g. the source of arena.write.
  FloatArg host_floats(size_t i, const char* name);
  IntArg ints(size_t i, const char* name, int64_t required) const;
  IntArg ints_opt(size_t i, const char* name, int64_t required) const;
  // Element arrays of `required` elements at least: typed arrays (CPU) or arena views (any device).
  ByteArg<int8_t> int8s(size_t i, const char* name, int64_t required);     // an Int8Array or a view
  ByteArg<uint8_t> uint8s(size_t i, const char* name, int64_t required);   // a Uint8Array or a view
  ByteArg<uint16_t> uint16s(size_t i, const char* name, int64_t required); // a Uint16Array or a view

  // The arena blocks the views resolved so far point into, in resolution order: a binding that hands a
  // pointer to another thread keeps the block alive with a copy of its pin.
  const std::vector<std::shared_ptr<Block>>& pins() const { return pins_; }
  // The device shared by every tensor argument seen so far (CPU when none was a view).
  Device device() const { return device_; }
  Napi::Env env() const { return env_; }
  const char* binding() const { return binding_.c_str(); }

  // product of dims, checked against overflow (limit 2^53 so it stays exact in a JS number).
  int64_t product(std::initializer_list<int64_t> dims) const;

 private:
  // What phase 1 saw of one argument.
  struct Snapshot {
    Napi::Value value;
    bool is_view = false;                  // an object other than a typed array, array or Arena
    Napi::Value arena, offset, numel;      // its properties, read once (views only)
    bool resizable = false;                // typed arrays: buffer is resizable / growable
  };
  void snapshot(const Napi::Value& v);
  const Napi::Value& value(size_t i) const;
  // Typed array of the given type, checked for detached and resizable buffers.
  void typed(size_t i, const char* name, napi_typedarray_type type, const char* expected, void** data, int64_t* length) const;
  FloatArg resolve(size_t i, const char* name, int64_t required);
  // The float slots [offset, offset+numel) of the arena view snapshotted for argument i, checked
  // against its arena and pinned.
  FloatArg view(size_t i, const char* name);
  // Records that argument `name` lives on `device` (a host typed array when host_array), refusing a
  // device other than the one of the arguments resolved before it.
  void claim_device(const char* name, Device device, bool host_array);
  // A typed array of element type T (`type`) or an arena view, holding at least `required` elements.
  template <class T>
  ByteArg<T> elements(size_t i, const char* name, napi_typedarray_type type, const char* expected, int64_t required,
                      const char* unit);
  void require(const char* name, int64_t have, int64_t required, const char* unit) const;

  Napi::Env env_;
  std::string binding_;
  std::vector<Snapshot> args_;
  Napi::Value undefined_;
  std::vector<std::shared_ptr<Block>> pins_;  // every arena block a resolved view points into
  Device device_ = Device::Cpu;
  bool device_set_ = false;
};

// Phase 1 for a list argument: argument i of `a`'s call must be an Array; returns one Args per entry
// ("<binding> <name>[k]" in messages) holding the values `fields(entry, entry_name)` reads from it (a
// std::vector<Napi::Value>). Every entry is read here, before any pointer of the call is taken, so a
// getter of entry 7 cannot free the arena of entry 2; the Array's length is read once (a getter may grow it).
template <class Fields>
std::vector<Args> list_args(const Napi::CallbackInfo& info, const Args& a, size_t i, const char* name, const std::string& expected, Fields fields) {
  if (!info[i].IsArray()) a.fail_type(i, name, expected);
  Napi::Array list = info[i].As<Napi::Array>();
  const uint32_t count = list.Length();
  std::vector<Args> entries;
  entries.reserve(count);
  for (uint32_t k = 0; k < count; ++k) {
    const std::string entry_name = std::string(a.binding()) + " " + name + "[" + std::to_string(k) + "]";
    entries.emplace_back(info.Env(), entry_name, fields(list.Get(k), entry_name));
  }
  return entries;
}

// Captures the engine's own ArrayBuffer.prototype.resizable / SharedArrayBuffer.prototype.growable
// getters at load time (phase 1 calls them to refuse resizable buffers).
void init_buffer_checks(Napi::Env env);

}  // namespace gptune::napi
