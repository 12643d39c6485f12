// Device memory and discovery for the CUDA backend. Declared unconditionally; implemented in
// native/cuda/device.cu when the addon is built with CUDA. Every function throws gptune::Error with
// a message a user can act on (no driver, no GPU, out of memory with the byte count asked for).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace gptune::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  size_t total_memory;  // bytes
  size_t free_memory;   // bytes, at query time
  int major, minor;     // compute capability
};

// Number of usable GPUs; 0 (never an exception) when there is no driver or no device.
int device_count();
// Why device_count() is 0 ("no NVIDIA driver found", "CUDA driver version is insufficient", ...).
std::string unavailable_reason();
std::vector<DeviceInfo> devices();
void set_device(int index);

void* malloc_device(size_t bytes);  // throws gptune::Error naming bytes requested and free
void free_device(void* ptr);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void memset_device(void* ptr, int value, size_t bytes);
void synchronize();  // waits for the backend's stream; rethrows asynchronous kernel errors

}  // namespace gptune::cuda
