// Argument checking for the kernel bindings. Every public argument is validated here before a
// kernel sees it: a wrong one throws a JavaScript TypeError/RangeError naming the kernel, the
// argument, what was expected and what was received. Nothing from JavaScript reaches a kernel
// unchecked, so no input can crash the process or touch memory out of bounds.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
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

std::string describe(const Napi::Value& v);  // "a number (-1)", "undefined", "a Float32Array of length 3"

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* kernel, size_t expected_count);

  [[noreturn]] void fail_type(size_t i, const char* name, const std::string& expected) const;
  [[noreturn]] void fail_range(const std::string& message) const;

  // A positive integer dimension (>= min_value, < 2^31).
  int dim(size_t i, const char* name, int min_value = 1) const;
  // Any finite number.
  double number(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;

  // Float tensor that must hold at least `required` elements; optional ones accept null.
  FloatArg floats(size_t i, const char* name, int64_t required);
  FloatArg floats_opt(size_t i, const char* name, int64_t required);
  IntArg ints(size_t i, const char* name, int64_t required) const;
  IntArg ints_opt(size_t i, const char* name, int64_t required) const;

  // The device shared by every tensor argument seen so far (CPU when none was a view).
  Device device() const { return device_; }
  Napi::Env env() const { return info_.Env(); }
  const char* kernel() const { return kernel_; }

  // product of dims, checked against overflow (limit 2^53 so it stays exact in a JS number).
  int64_t product(std::initializer_list<int64_t> dims) const;

 private:
  FloatArg resolve(size_t i, const char* name, int64_t required);
  const Napi::CallbackInfo& info_;
  const char* kernel_;
  Device device_ = Device::Cpu;
  bool device_set_ = false;
};

}  // namespace gptune::napi
