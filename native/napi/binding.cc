#include "napi/binding.h"

#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace gptune::napi {
namespace {

// Throws `error` into JavaScript unless an exception is already pending. napi_throw fails when the
// env is terminating; there is nothing to report to then, so the failure is ignored.
void throw_into_js(napi_env env, napi_value error) noexcept {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || pending || !error) return;
  napi_throw(env, error);
}

// A plain Error "<binding>: <message>" built with raw napi calls (nothing here may throw).
void throw_message(napi_env env, napi_callback_info cb, const char* message) noexcept {
  void* data = nullptr;
  napi_get_cb_info(env, cb, nullptr, nullptr, nullptr, &data);
  const char* name = static_cast<const char*>(data);
  std::string text;
  try {
    // Backend messages that already start with the binding's name are not prefixed twice.
    text = name && std::strncmp(message, name, std::strlen(name)) != 0 ? std::string(name) + ": " + message : message;
  } catch (...) {
    text.clear();
  }
  napi_value str = nullptr, error = nullptr;
  const char* chars = text.empty() ? message : text.c_str();
  if (napi_create_string_utf8(env, chars, NAPI_AUTO_LENGTH, &str) != napi_ok) return;
  if (napi_create_error(env, nullptr, str, &error) != napi_ok) return;
  throw_into_js(env, error);
}

}  // namespace

napi_value run_binding(napi_env env, napi_callback_info cb, BindingFn fn) noexcept {
  try {
    try {
      Napi::CallbackInfo info(env, cb);
      return fn(info);
    } catch (const Napi::Error& e) {
      throw_into_js(env, e.Value());
    } catch (const std::bad_alloc&) {
      throw_message(env, cb, "out of memory");
    } catch (const std::exception& e) {
      throw_message(env, cb, e.what());
    } catch (...) {
      throw_message(env, cb, "unexpected native exception");
    }
  } catch (...) {
    // Reporting the failure failed too (the env is going away): return without a value.
  }
  return nullptr;
}

void check_status(napi_env env, napi_status status) {
  if (status != napi_ok) throw Napi::Error::New(env);
}

}  // namespace gptune::napi
