#include "napi/args.h"

#include <sstream>

namespace gptune::napi {

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    // Printed as JavaScript would (NaN, Infinity), since that is what the caller wrote.
    return "the number " + v.ToString().Utf8Value();
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsString()) return "the string '" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    const char* kind = "a typed array";
    switch (t.TypedArrayType()) {
      case napi_float32_array: kind = "a Float32Array"; break;
      case napi_float64_array: kind = "a Float64Array"; break;
      case napi_int32_array: kind = "an Int32Array"; break;
      case napi_uint8_array: kind = "a Uint8Array"; break;
      default: break;
    }
    return std::string(kind) + " of length " + std::to_string(t.ElementLength());
  }
  if (v.IsArray()) return "an Array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "a value of unexpected type";
}

Args::Args(const Napi::CallbackInfo& info, const char* kernel, size_t expected_count)
    : info_(info), kernel_(kernel) {
  if (info.Length() != expected_count) {
    throw Napi::TypeError::New(info.Env(), std::string(kernel) + ": expected " + std::to_string(expected_count) +
                                               " arguments but received " + std::to_string(info.Length()));
  }
}

void Args::fail_type(size_t i, const char* name, const std::string& expected) const {
  throw Napi::TypeError::New(env(), std::string(kernel_) + ": expected " + expected + " for " + name +
                                        " (argument " + std::to_string(i + 1) + ") but received " + describe(info_[i]));
}

void Args::fail_range(const std::string& message) const {
  throw Napi::RangeError::New(env(), std::string(kernel_) + ": " + message);
}

int Args::dim(size_t i, const char* name, int min_value) const {
  const Napi::Value& v = info_[i];
  if (!v.IsNumber()) fail_type(i, name, "a whole number >= " + std::to_string(min_value));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(std::floor(d) == d && d >= min_value && d < 2147483648.0))
    fail_type(i, name, "a whole number between " + std::to_string(min_value) + " and 2^31-1");
  return static_cast<int>(d);
}

double Args::number(size_t i, const char* name) const {
  const Napi::Value& v = info_[i];
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) fail_type(i, name, "a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

bool Args::boolean(size_t i, const char* name) const {
  if (!info_[i].IsBoolean()) fail_type(i, name, "a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

int64_t Args::product(std::initializer_list<int64_t> dims) const {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0) fail_range("negative dimension");
    if (d != 0 && p > (int64_t{1} << 53) / d) fail_range("dimensions are too large: their product exceeds 2^53 elements");
    p *= d;
  }
  return p;
}

FloatArg Args::resolve(size_t i, const char* name, int64_t required) {
  const Napi::Value& v = info_[i];
  FloatArg out;
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    if (t.TypedArrayType() != napi_float32_array) fail_type(i, name, "a Float32Array or an {arena, offset, numel} view");
    auto f = v.As<Napi::Float32Array>();
    out.ptr = f.Data();
    out.numel = static_cast<int64_t>(f.ElementLength());
    out.device = Device::Cpu;
  } else if (v.IsObject() && !v.IsArray() && !v.IsFunction()) {
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value arena_value = o.Get("arena");
    if (!arena_value.IsObject()) fail_type(i, name, "a Float32Array or an {arena, offset, numel} view");
    Arena* arena = nullptr;
    // Unwrap only genuine Arena objects: a look-alike object must not be reinterpreted.
    napi_value constructor = env().GetInstanceData<Napi::FunctionReference>()->Value();
    bool is_arena = false;
    napi_instanceof(env(), arena_value, constructor, &is_arena);
    if (!is_arena) fail_type(i, name, "a view whose 'arena' is a gptune Arena");
    arena = Arena::Unwrap(arena_value.As<Napi::Object>());
    Napi::Value off = o.Get("offset"), num = o.Get("numel");
    double offset = off.IsNumber() ? off.As<Napi::Number>().DoubleValue() : -1;
    double numel = num.IsNumber() ? num.As<Napi::Number>().DoubleValue() : -1;
    if (!(offset >= 0 && std::floor(offset) == offset) || !(numel >= 0 && std::floor(numel) == numel))
      fail_type(i, name, "a view with whole, non-negative offset and numel");
    if (arena->freed()) fail_range(std::string(name) + " refers to an arena that was freed");
    if (offset + numel > static_cast<double>(arena->numel()))
      fail_range(std::string(name) + " view [" + std::to_string(static_cast<int64_t>(offset)) + ", " +
                 std::to_string(static_cast<int64_t>(offset + numel)) + ") lies outside its arena of " +
                 std::to_string(arena->numel()) + " floats");
    out.ptr = arena->data(kernel_) + static_cast<int64_t>(offset);
    out.numel = static_cast<int64_t>(numel);
    out.device = arena->device();
  } else {
    fail_type(i, name, "a Float32Array or an {arena, offset, numel} view");
  }
  if (out.numel < required) {
    fail_range("expected " + std::string(name) + " to hold at least " + std::to_string(required) +
               " floats for the given dimensions but it holds " + std::to_string(out.numel));
  }
  if (!device_set_) {
    device_ = out.device;
    device_set_ = true;
  } else if (device_ != out.device) {
    fail_range(std::string(name) + " is on " + device_name(out.device) + " but the earlier tensors are on " +
               device_name(device_) + "; all tensors of one call must be on the same device");
  }
  return out;
}

FloatArg Args::floats(size_t i, const char* name, int64_t required) { return resolve(i, name, required); }

FloatArg Args::floats_opt(size_t i, const char* name, int64_t required) {
  if (info_[i].IsNull() || info_[i].IsUndefined()) return FloatArg{};
  return resolve(i, name, required);
}

IntArg Args::ints(size_t i, const char* name, int64_t required) const {
  const Napi::Value& v = info_[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    fail_type(i, name, "an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  IntArg out{a.Data(), static_cast<int64_t>(a.ElementLength())};
  if (out.numel < required)
    fail_range("expected " + std::string(name) + " to hold at least " + std::to_string(required) +
               " ints for the given dimensions but it holds " + std::to_string(out.numel));
  return out;
}

IntArg Args::ints_opt(size_t i, const char* name, int64_t required) const {
  if (info_[i].IsNull() || info_[i].IsUndefined()) return IntArg{};
  return ints(i, name, required);
}

}  // namespace gptune::napi
