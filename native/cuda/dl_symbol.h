// Functions of a library loaded at run time with dlopen() (cuBLASLt in cublaslt.cu, NCCL in nccl.cu).
#pragma once
#include <dlfcn.h>

#include <string>

namespace gptune::cuda {

// Sets fn to the symbol `name` of `so`; when the library lacks it, appends the name to `missing`
// (", "-separated, so one message lists every absent function) and returns false.
template <typename F>
bool resolve_symbol(void* so, const char* name, F& fn, std::string& missing) {
  void* symbol = dlsym(so, name);
  if (!symbol) {
    if (!missing.empty()) missing += ", ";
    missing += name;
    return false;
  }
  fn = reinterpret_cast<F>(symbol);
  return true;
}

}  // namespace gptune::cuda
