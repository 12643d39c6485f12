// The one entry point every N-API function of the addon goes through (kernels, Arena methods,
// module functions). A binding is written as `Napi::Value F(const Napi::CallbackInfo&)` and may
// throw; Bind<F> is the raw napi_callback V8 calls, and it is noexcept: no C++ exception ever
// crosses into V8. Napi::Errors are thrown into JavaScript, other exceptions become an Error
// named after the binding, and when the env cannot run JavaScript any more (a worker being
// terminated) the binding returns quietly instead of aborting the process.
#pragma once
#include <napi.h>

namespace gptune::napi {

using BindingFn = Napi::Value (*)(const Napi::CallbackInfo&);

// `name` (the binding's data pointer, a string literal) prefixes messages of non-JS exceptions.
napi_value run_binding(napi_env env, napi_callback_info cb, BindingFn fn) noexcept;

template <BindingFn F>
napi_value Bind(napi_env env, napi_callback_info cb) noexcept {
  return run_binding(env, cb, F);
}

// A JS function for binding F; `name` must be a string literal (it is kept as the callback data).
template <BindingFn F>
Napi::Function function(Napi::Env env, const char* name) {
  napi_value fn = nullptr;
  napi_status status = napi_create_function(env, name, NAPI_AUTO_LENGTH, Bind<F>, const_cast<char*>(name), &fn);
  NAPI_THROW_IF_FAILED(env, status, Napi::Function());
  return Napi::Function(env, fn);
}

// Throws a Napi::Error for a failed napi_* call (a pending exception, or the env terminating).
void check_status(napi_env env, napi_status status);

}  // namespace gptune::napi
