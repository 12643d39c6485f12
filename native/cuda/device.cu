// Device discovery, memory, copies and the backend's per-device state (stream, scratch buffers).
// Everything reports failure by throwing gptune::Error with a message a user can act on; only
// device_count() never throws, so `gptune` can probe for a GPU on machines without a driver.
#include <cstdio>
#include <mutex>
#include <string>

#include "common.cuh"
#include "gptune/device.h"

namespace gptune::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  bool initialised = false;
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
  void* scratch[static_cast<int>(Scratch::Count)] = {};
  size_t scratch_bytes[static_cast<int>(Scratch::Count)] = {};
};

DeviceState& state_of_current_device() {
  static DeviceState states[kMaxDevices];
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) throw Error("CUDA device index " + std::to_string(device) + " is beyond the 64 gptune supports");
  DeviceState& s = states[device];
  if (!s.initialised) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, device));
    s.initialised = true;
  }
  return s;
}

std::string mib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

// device_count() result and, when it is 0, why; probed once (the answer cannot change while the
// process runs, and a failed probe is not free).
struct Probe {
  int count = 0;
  std::string reason;
};

const Probe& probe() {
  static Probe result;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear it: the probe must not poison later calls
      const std::string detail = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      if (e == cudaErrorNoDevice)
        result.reason = "no CUDA-capable GPU was found (" + detail + "; check CUDA_VISIBLE_DEVICES)";
#ifndef GPTUNE_CUDA_EMULATE
      else if (e == cudaErrorInsufficientDriver)
        result.reason = "no usable NVIDIA driver found (" + detail + "); install or update the NVIDIA driver (CUDA 13 needs 580 or newer)";
#endif
      else
        result.reason = "the CUDA runtime could not initialise (" + detail + ")";
      n = 0;
    } else if (n == 0) {
      result.reason = "no CUDA-capable GPU was found";
    }
    result.count = n;
  });
  return result;
}

}  // namespace

void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line) {
  std::string message = std::string("CUDA error ") + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) +
                        ") from " + expression + " at " + file + ":" + std::to_string(line);
#ifndef GPTUNE_CUDA_EMULATE
  // These errors poison the context: every later CUDA call fails too.
  if (error == cudaErrorIllegalAddress || error == cudaErrorLaunchFailure || error == cudaErrorMisalignedAddress ||
      error == cudaErrorIllegalInstruction || error == cudaErrorHardwareStackError)
    message += "; the GPU context is no longer usable, restart the process";
#endif
  throw Error(message);
}

cudaStream_t stream() { return state_of_current_device().stream; }
int multiprocessor_count() { return state_of_current_device().multiprocessors; }

void* scratch(Scratch which, size_t bytes) {
  DeviceState& s = state_of_current_device();
  const int i = static_cast<int>(which);
  if (bytes > s.scratch_bytes[i]) {
    if (s.scratch[i]) {
      // Kernels already queued may still use the old buffer.
      CUDA_CHECK(cudaStreamSynchronize(s.stream));
      CUDA_CHECK(cudaFree(s.scratch[i]));
      s.scratch[i] = nullptr;
      s.scratch_bytes[i] = 0;
    }
    // Grow by at least 1/8 so a slowly growing size does not reallocate every call.
    size_t grown = bytes + bytes / 8;
    s.scratch[i] = malloc_device(grown);
    s.scratch_bytes[i] = grown;
  }
  return s.scratch[i];
}

int device_count() {
  try {
    return probe().count;
  } catch (...) {
    return 0;
  }
}

std::string unavailable_reason() { return probe().count > 0 ? std::string() : probe().reason; }

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> list;
  const int n = device_count();
  if (n == 0) return list;
  int previous = 0;
  CUDA_CHECK(cudaGetDevice(&previous));
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    CUDA_CHECK(cudaSetDevice(i));
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    list.push_back(DeviceInfo{i, p.name, total_bytes, free_bytes, p.major, p.minor});
  }
  CUDA_CHECK(cudaSetDevice(previous));
  return list;
}

void set_device(int index) {
  const int n = device_count();
  if (index < 0 || index >= n)
    throw Error("cuda.setDevice: expected a device index in [0, " + std::to_string(n) + ") but received " + std::to_string(index) +
                (n == 0 ? " (" + unavailable_reason() + ")" : ""));
  CUDA_CHECK(cudaSetDevice(index));
}

void* malloc_device(size_t bytes) {
  if (device_count() == 0) throw Error("cannot allocate GPU memory: " + unavailable_reason());
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error("CUDA out of memory: tried to allocate " + mib(bytes) + " MiB with " + mib(free_bytes) + " MiB free of " +
                mib(total_bytes) + " MiB; lower the batch size or seq_len");
  }
  CUDA_CHECK(e);
  return ptr;
}

void free_device(void* ptr) {
  if (ptr) CUDA_CHECK(cudaFree(ptr));
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // From pageable host memory the call returns once the bytes are staged, so src may be reused.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_device(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemsetAsync(ptr, value, bytes, stream()));
}

void synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace gptune::cuda
