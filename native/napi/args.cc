#include "napi/args.h"

#include "napi/binding.h"

namespace gptune::napi {
namespace {

// Per-env data: the engine's getters that say whether a buffer can change size.
struct BufferChecks {
  Napi::FunctionReference resizable;  // ArrayBuffer.prototype.resizable (absent on old engines)
  Napi::FunctionReference growable;   // SharedArrayBuffer.prototype.growable
};

Napi::FunctionReference getter(Napi::Env env, const char* constructor, const char* property) {
  Napi::Value ctor = env.Global().Get(constructor);
  if (!ctor.IsFunction()) return {};
  Napi::Value proto = ctor.As<Napi::Object>().Get("prototype");
  Napi::Object object = env.Global().Get("Object").As<Napi::Object>();
  Napi::Value desc = object.Get("getOwnPropertyDescriptor").As<Napi::Function>().Call(object, {proto, Napi::String::New(env, property)});
  if (!desc.IsObject()) return {};
  Napi::Value get = desc.As<Napi::Object>().Get("get");
  return get.IsFunction() ? Napi::Persistent(get.As<Napi::Function>()) : Napi::FunctionReference();
}

const char* kTensorExpected = "a Float32Array or an {arena, offset, numel} view";

}  // namespace

void init_buffer_checks(Napi::Env env) {
  auto* checks = new BufferChecks{getter(env, "ArrayBuffer", "resizable"), getter(env, "SharedArrayBuffer", "growable")};
  env.SetInstanceData(checks);
}

std::string describe(const Napi::Value& v) {
  if (v.IsEmpty() || v.IsUndefined()) return "undefined";
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
      case napi_int8_array: kind = "an Int8Array"; break;
      case napi_uint8_array: kind = "a Uint8Array"; break;
      case napi_uint16_array: kind = "a Uint16Array"; break;
      default: break;
    }
    return std::string(kind) + " of length " + std::to_string(t.ElementLength());
  }
  if (v.IsArray()) return "an Array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return Arena::unwrap(v.Env(), v) ? "an Arena" : "an object";
  return "a value of unexpected type";
}

// ---- phase 1: read every JavaScript value once ----

Args::Args(const Napi::CallbackInfo& info, const char* binding, size_t count) : Args(info, binding, count, count) {}

Args::Args(const Napi::CallbackInfo& info, const char* binding, size_t min_count, size_t max_count)
    : env_(info.Env()), binding_(binding), undefined_(info.Env().Undefined()) {
  size_t n = info.Length();
  if (n < min_count || n > max_count) {
    std::string expected = min_count == max_count ? std::to_string(min_count)
                                                  : std::to_string(min_count) + " to " + std::to_string(max_count);
    throw Napi::TypeError::New(env_, binding_ + ": expected " + expected + " arguments but received " + std::to_string(n));
  }
  args_.reserve(n);
  for (size_t i = 0; i < n; ++i) snapshot(info[i]);
}

Args::Args(Napi::Env env, const std::string& binding, const std::vector<Napi::Value>& values)
    : env_(env), binding_(binding), undefined_(env.Undefined()) {
  args_.reserve(values.size());
  for (const auto& v : values) snapshot(v);
}

void Args::snapshot(const Napi::Value& v) {
  Snapshot s;
  s.value = v;
  if (v.IsTypedArray()) {
    napi_value buffer = nullptr;
    check_status(env_, napi_get_typedarray_info(env_, v, nullptr, nullptr, nullptr, &buffer, nullptr));
    bool plain = false;
    check_status(env_, napi_is_arraybuffer(env_, buffer, &plain));
    auto* checks = env_.GetInstanceData<BufferChecks>();
    const Napi::FunctionReference& get = plain ? checks->resizable : checks->growable;
    // Calling the engine's getter can run JavaScript only if someone replaced it before the
    // addon loaded; that is still phase 1, and phase 2 re-reads the length itself.
    if (!get.IsEmpty()) s.resizable = get.Value().Call(Napi::Value(env_, buffer), {}).ToBoolean().Value();
  } else if (v.IsObject() && !v.IsArray() && !v.IsFunction() && !Arena::unwrap(env_, v)) {
    Napi::Object o = v.As<Napi::Object>();
    s.is_view = true;
    s.arena = o.Get("arena");
    s.offset = o.Get("offset");
    s.numel = o.Get("numel");
  }
  args_.push_back(std::move(s));
}

// ---- phase 2: validate and take pointers; no JavaScript runs from here on ----

const Napi::Value& Args::value(size_t i) const { return i < args_.size() ? args_[i].value : undefined_; }

bool Args::has(size_t i) const { return i < args_.size() && !args_[i].value.IsUndefined(); }

void Args::fail_type(size_t i, const char* name, const std::string& expected) const {
  throw Napi::TypeError::New(env_, binding_ + ": expected " + expected + " for " + name + " (argument " +
                                       std::to_string(i + 1) + ") but received " + describe(value(i)));
}

void Args::fail_range(const std::string& message) const { throw Napi::RangeError::New(env_, binding_ + ": " + message); }

int Args::dim(size_t i, const char* name, int min_value) const {
  const Napi::Value& v = value(i);
  if (!v.IsNumber()) fail_type(i, name, "a whole number >= " + std::to_string(min_value));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(std::floor(d) == d && d >= min_value && d < 2147483648.0))
    fail_type(i, name, "a whole number between " + std::to_string(min_value) + " and 2^31-1");
  return static_cast<int>(d);
}

int64_t Args::count(size_t i, const char* name, double max_value, const char* max_text) const {
  const Napi::Value& v = value(i);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && std::floor(d) == d && d <= max_value)) fail_type(i, name, std::string("a whole number between 0 and ") + max_text);
  return static_cast<int64_t>(d);
}

int Args::integer(size_t i, const char* name) const {
  const Napi::Value& v = value(i);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0.5;
  if (!(std::floor(d) == d && std::fabs(d) < 2147483648.0)) fail_type(i, name, "a whole number between -2^31+1 and 2^31-1");
  return static_cast<int>(d);
}

double Args::number(size_t i, const char* name, bool finite) const {
  const Napi::Value& v = value(i);
  if (!v.IsNumber()) fail_type(i, name, finite ? "a finite number" : "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (finite && !std::isfinite(d)) fail_type(i, name, "a finite number");
  return d;
}

bool Args::boolean(size_t i, const char* name) const {
  if (!value(i).IsBoolean()) fail_type(i, name, "a boolean");
  return value(i).As<Napi::Boolean>().Value();
}

std::string Args::choice(size_t i, const char* name, std::initializer_list<const char*> choices) const {
  std::string s = value(i).IsString() ? value(i).As<Napi::String>().Utf8Value() : "";
  std::string expected;
  for (const char* c : choices) {
    if (s == c) return s;
    expected += (expected.empty() ? "'" : " or '") + std::string(c) + "'";
  }
  fail_type(i, name, expected);
}

Arena& Args::arena(size_t i, const char* name) {
  Arena* a = Arena::unwrap(env_, value(i));
  if (!a) fail_type(i, name, "a gptune Arena");
  if (a->freed()) fail_range(std::string(name) + " is an arena that was freed");
  pins_.push_back(a->block());
  return *a;
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

void Args::typed(size_t i, const char* name, napi_typedarray_type type, const char* expected, void** data, int64_t* length) const {
  const Napi::Value& v = value(i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) fail_type(i, name, expected);
  napi_typedarray_type actual;
  size_t n = 0;
  napi_value buffer = nullptr;
  check_status(env_, napi_get_typedarray_info(env_, v, &actual, &n, data, &buffer, nullptr));
  bool detached = false;
  check_status(env_, napi_is_detached_arraybuffer(env_, buffer, &detached));
  std::string arg = std::string(name) + " (argument " + std::to_string(i + 1) + ")";
  if (detached) fail_range(arg + " is a view of a detached ArrayBuffer (it was transferred or detached); pass a live array");
  if (args_[i].resizable)
    fail_range(arg + " is backed by a resizable ArrayBuffer or growable SharedArrayBuffer, which is refused because it can "
                     "shrink under a kernel; pass an array over a fixed-length buffer");
  *length = static_cast<int64_t>(n);
}

void Args::require(const char* name, int64_t have, int64_t required, const char* unit) const {
  if (have < required)
    fail_range("expected " + std::string(name) + " to hold at least " + std::to_string(required) + " " + unit +
               " for the given dimensions but it holds " + std::to_string(have));
}

FloatArg Args::view(size_t i, const char* name) {
  const Snapshot& s = args_[i];
  Arena* arena = Arena::unwrap(env_, s.arena);
  if (!arena) fail_type(i, name, "a view whose 'arena' is a gptune Arena");
  double offset = s.offset.IsNumber() ? s.offset.As<Napi::Number>().DoubleValue() : -1;
  double numel = s.numel.IsNumber() ? s.numel.As<Napi::Number>().DoubleValue() : -1;
  if (!(offset >= 0 && std::floor(offset) == offset) || !(numel >= 0 && std::floor(numel) == numel))
    fail_type(i, name, "a view with whole, non-negative offset and numel");
  if (arena->freed()) fail_range(std::string(name) + " refers to an arena that was freed");
  if (offset + numel > static_cast<double>(arena->numel()))
    fail_range(std::string(name) + " view [" + std::to_string(static_cast<int64_t>(offset)) + ", " +
               std::to_string(static_cast<int64_t>(offset + numel)) + ") lies outside its arena of " +
               std::to_string(arena->numel()) + " floats");
  pins_.push_back(arena->block());
  FloatArg out;
  out.ptr = static_cast<float*>(pins_.back()->ptr) + static_cast<int64_t>(offset);
  out.numel = static_cast<int64_t>(numel);
  out.device = arena->device();
  return out;
}

void Args::claim_device(const char* name, Device device, bool host_array) {
  if (!device_set_) {
    device_ = device;
    device_set_ = true;
  } else if (device_ != device) {
    const std::string what = host_array ? "a host typed array (cpu)" : std::string("on ") + device_name(device);
    fail_range(std::string(name) + " is " + what + " but the earlier tensors are on " + device_name(device_) +
               "; all tensors of one call must be on the same device");
  }
}

FloatArg Args::resolve(size_t i, const char* name, int64_t required) {
  const Snapshot* s = i < args_.size() ? &args_[i] : nullptr;
  FloatArg out;
  if (s && s->value.IsTypedArray()) {
    void* data = nullptr;
    typed(i, name, napi_float32_array, kTensorExpected, &data, &out.numel);
    out.ptr = static_cast<float*>(data);
    out.device = Device::Cpu;
  } else if (s && s->is_view) {
    out = view(i, name);
  } else {
    fail_type(i, name, kTensorExpected);
  }
  require(name, out.numel, required, "floats");
  claim_device(name, out.device, false);
  return out;
}

FloatArg Args::floats(size_t i, const char* name, int64_t required) { return resolve(i, name, required); }

FloatArg Args::floats_opt(size_t i, const char* name, int64_t required) {
  if (value(i).IsNull() || value(i).IsUndefined()) return FloatArg{};
  return resolve(i, name, required);
}

FloatArg Args::host_floats(size_t i, const char* name) {
  FloatArg out;
  void* data = nullptr;
  typed(i, name, napi_float32_array, "a Float32Array", &data, &out.numel);
  out.ptr = static_cast<float*>(data);
  return out;
}

IntArg Args::ints(size_t i, const char* name, int64_t required) const {
  IntArg out;
  void* data = nullptr;
  typed(i, name, napi_int32_array, "an Int32Array", &data, &out.numel);
  out.ptr = static_cast<int32_t*>(data);
  require(name, out.numel, required, "ints");
  return out;
}

IntArg Args::ints_opt(size_t i, const char* name, int64_t required) const {
  if (value(i).IsNull() || value(i).IsUndefined()) return IntArg{};
  return ints(i, name, required);
}

template <class T>
ByteArg<T> Args::elements(size_t i, const char* name, napi_typedarray_type type, const char* expected, int64_t required,
                          const char* unit) {
  const Snapshot* s = i < args_.size() ? &args_[i] : nullptr;
  ByteArg<T> out;
  if (s && s->is_view) {
    const FloatArg slots = view(i, name);
    out.ptr = reinterpret_cast<T*>(slots.ptr);
    out.numel = slots.numel * static_cast<int64_t>(sizeof(float) / sizeof(T));
    out.device = slots.device;
    require(name, out.numel, required, unit);
    claim_device(name, out.device, false);
  } else {
    void* data = nullptr;
    typed(i, name, type, expected, &data, &out.numel);
    out.ptr = static_cast<T*>(data);
    require(name, out.numel, required, unit);
    // A typed array is host memory: a CUDA call needs its weights in a CUDA arena view.
    claim_device(name, Device::Cpu, true);
  }
  return out;
}

ByteArg<int8_t> Args::int8s(size_t i, const char* name, int64_t required) {
  return elements<int8_t>(i, name, napi_int8_array, "an Int8Array or an {arena, offset, numel} view", required, "bytes");
}

ByteArg<uint8_t> Args::uint8s(size_t i, const char* name, int64_t required) {
  return elements<uint8_t>(i, name, napi_uint8_array, "a Uint8Array or an {arena, offset, numel} view", required, "bytes");
}

ByteArg<uint16_t> Args::uint16s(size_t i, const char* name, int64_t required) {
  return elements<uint16_t>(i, name, napi_uint16_array, "a Uint16Array or an {arena, offset, numel} view", required,
                            "16-bit values");
}

}  // namespace gptune::napi
