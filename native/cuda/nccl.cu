// NCCL loaded with dlopen (gptune/nccl.h). The few types and functions used are declared here from
// NCCL's public ABI (nccl.h of NCCL 2.x): no NCCL headers are needed to build. Host code only, so the
// CPU emulator of the kernels (GPTUNE_CUDA_EMULATE, test/gpu/run_emulated.sh) leaves it out.
#ifndef GPTUNE_CUDA_EMULATE
#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "common.cuh"
#include "dl_symbol.h"
#include "gptune/nccl.h"

namespace gptune::cuda::nccl {
namespace {

// ---- the NCCL ABI (src/nccl.h.in) ----
using ncclComm_t = struct ncclComm*;
struct ncclUniqueId {
  char internal[kUniqueIdBytes];
};
using ncclResult_t = int;  // 0 = ncclSuccess
constexpr int ncclSuccess = 0;
constexpr int ncclInProgress = 7;
constexpr int ncclFloat32 = 7;  // ncclDataType_t
constexpr int ncclSum = 0;      // ncclRedOp_t

struct Api {
  ncclResult_t (*get_version)(int*);
  ncclResult_t (*get_unique_id)(ncclUniqueId*);
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  ncclResult_t (*comm_abort)(ncclComm_t);
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*comm_user_rank)(ncclComm_t, int*);
  ncclResult_t (*all_reduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*reduce_scatter)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*all_gather)(const void*, void*, size_t, int, ncclComm_t, cudaStream_t);
  const char* (*get_error_string)(ncclResult_t);
  ncclResult_t (*group_start)();
  ncclResult_t (*group_end)();
};

struct Library {
  bool loaded = false;
  std::string reason;
  Api api{};
};

Library& library() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GPTUNE_NCCL");
    const std::string name = env && *env ? env : "libnccl.so.2";
    void* so = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!so) {
      const char* error = dlerror();
      lib.reason = "NCCL is not available (" + std::string(error ? error : name + ": dlopen failed") +
                   "): install it (Debian/Ubuntu with NVIDIA's repository: apt-get install libnccl2) or point GPTUNE_NCCL at libnccl.so.2";
      return;
    }
    Api api{};
    std::string missing;
    resolve_symbol(so, "ncclGetVersion", api.get_version, missing);
    resolve_symbol(so, "ncclGetUniqueId", api.get_unique_id, missing);
    resolve_symbol(so, "ncclCommInitRank", api.comm_init_rank, missing);
    resolve_symbol(so, "ncclCommInitAll", api.comm_init_all, missing);
    resolve_symbol(so, "ncclCommDestroy", api.comm_destroy, missing);
    resolve_symbol(so, "ncclCommAbort", api.comm_abort, missing);
    resolve_symbol(so, "ncclCommGetAsyncError", api.comm_get_async_error, missing);
    resolve_symbol(so, "ncclCommUserRank", api.comm_user_rank, missing);
    resolve_symbol(so, "ncclAllReduce", api.all_reduce, missing);
    resolve_symbol(so, "ncclReduceScatter", api.reduce_scatter, missing);
    resolve_symbol(so, "ncclAllGather", api.all_gather, missing);
    resolve_symbol(so, "ncclGetErrorString", api.get_error_string, missing);
    resolve_symbol(so, "ncclGroupStart", api.group_start, missing);
    resolve_symbol(so, "ncclGroupEnd", api.group_end, missing);
    if (!missing.empty()) {
      lib.reason = name + " lacks " + missing + " (NCCL 2.x expected; point GPTUNE_NCCL at libnccl.so.2)";
      dlclose(so);
      return;
    }
    lib.api = api;
    lib.loaded = true;  // never dlclose()d: communicators live as long as the process
  });
  return lib;
}

const Api& api() {
  Library& lib = library();
  if (!lib.loaded) throw Error(lib.reason);
  return lib.api;
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) throw Error(std::string("NCCL ") + what + ": " + api().get_error_string(r));
}

struct Communicator {
  ncclComm_t comm = nullptr;
  int device = 0;
  cudaStream_t stream = nullptr;  // NCCL's own stream, so collectives can overlap the backend's work
  cudaEvent_t ready = nullptr;    // the backend's stream reached the collective
  cudaEvent_t done = nullptr;     // the collective finished
  int pending = 0;                // all_reduce_sum_async calls not yet waited for
};
std::vector<Communicator>& comms() {
  static std::vector<Communicator> list;
  return list;
}
double timeout_s = 300;

Communicator& at(int comm) {
  auto& list = comms();
  if (comm < 0 || comm >= static_cast<int>(list.size())) {
    throw Error("NCCL communicator " + std::to_string(comm) + " does not exist (" + std::to_string(list.size()) + " initialized)");
  }
  if (list[comm].comm == nullptr) throw Error("NCCL communicator " + std::to_string(comm) + " was aborted after a failed collective");
  CUDA_CHECK(cudaSetDevice(list[comm].device));
  return list[comm];
}

void add(ncclComm_t comm, int device) {
  Communicator c;
  c.comm = comm;
  c.device = device;
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&c.ready, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming));
  comms().push_back(c);
}

// Orders `issue` (one NCCL call on c.stream) after the backend's work so far, without waiting for it.
template <class Issue>
void issue_after_backend(Communicator& c, const char* what, Issue issue) {
  // c.ready is re-recorded per call: cudaStreamWaitEvent takes the event's state at the time it is called.
  CUDA_CHECK(cudaEventRecord(c.ready, stream()));
  CUDA_CHECK(cudaStreamWaitEvent(c.stream, c.ready, 0));
  check(issue(), what);
}

// Waits for everything issued on c.stream so far against the deadline, and orders the backend's later work
// after it. On a timeout or an asynchronous NCCL error the communicator is aborted (a peer that died leaves
// NCCL spinning for ever otherwise).
void wait_for_collectives(Communicator& c, const char* what) {
  CUDA_CHECK(cudaEventRecord(c.done, c.stream));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int polls = 0;; ++polls) {
    cudaError_t state = cudaEventQuery(c.done);
    if (state == cudaSuccess) break;
    if (state != cudaErrorNotReady) CUDA_CHECK(state);
    ncclResult_t async = ncclSuccess;
    api().comm_get_async_error(c.comm, &async);
    const bool late = std::chrono::steady_clock::now() > deadline;
    if (late || (async != ncclSuccess && async != ncclInProgress)) {
      api().comm_abort(c.comm);
      c.comm = nullptr;
      c.pending = 0;
      char seconds[32];
      snprintf(seconds, sizeof seconds, "%g", timeout_s);
      throw Error(std::string("NCCL ") + what + (late ? std::string(" did not complete within ") + seconds + " s (collective timeout): a rank died or hangs"
                                                      : std::string(" failed: ") + api().get_error_string(async)));
    }
    if (polls > 64) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  CUDA_CHECK(cudaStreamWaitEvent(stream(), c.done, 0));
  c.pending = 0;
}

// One NCCL call ordered after the backend's work, the backend's later work ordered after it, waited for.
template <class Issue>
void run(Communicator& c, const char* what, Issue issue) {
  issue_after_backend(c, what, issue);
  wait_for_collectives(c, what);
}

// The CUDA device the calling thread has current, restored when the scope ends (a grouped collective
// visits every communicator's device; the caller's choice of device must survive it).
struct CurrentDevice {
  int device = 0;
  CurrentDevice() { CUDA_CHECK(cudaGetDevice(&device)); }
  ~CurrentDevice() { cudaSetDevice(device); }
};

// run() for every communicator of this process at once (init_all): each collective ordered after its
// device's backend stream, all issued in one NCCL group (one process drives every rank of the
// communicators, so a rank waited on alone would wait for peers not yet issued), then all awaited
// against one deadline. A timeout or an asynchronous error aborts every communicator.
template <class Issue>
void run_group(const char* what, Issue issue) {
  auto& list = comms();
  for (Communicator& c : list) {
    CUDA_CHECK(cudaSetDevice(c.device));
    CUDA_CHECK(cudaEventRecord(c.ready, stream()));  // stream(): the backend's stream of c.device
    CUDA_CHECK(cudaStreamWaitEvent(c.stream, c.ready, 0));
  }
  check(api().group_start(), "ncclGroupStart");
  ncclResult_t issued = ncclSuccess;
  for (size_t i = 0; i < list.size() && (issued == ncclSuccess || issued == ncclInProgress); ++i) issued = issue(i, list[i]);
  // ncclGroupEnd even after a failed issue: an open group would swallow every later NCCL call.
  const ncclResult_t ended = api().group_end();
  check(issued, what);
  check(ended, "ncclGroupEnd");
  for (Communicator& c : list) {
    CUDA_CHECK(cudaSetDevice(c.device));
    CUDA_CHECK(cudaEventRecord(c.done, c.stream));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int polls = 0;; ++polls) {
    bool all_done = true;
    ncclResult_t async = ncclSuccess;
    for (Communicator& c : list) {
      cudaError_t state = cudaEventQuery(c.done);
      if (state == cudaErrorNotReady) all_done = false;
      else if (state != cudaSuccess) CUDA_CHECK(state);
      ncclResult_t e = ncclSuccess;
      if (c.comm) api().comm_get_async_error(c.comm, &e);
      if (e != ncclSuccess && e != ncclInProgress) async = e;
    }
    if (all_done) break;
    const bool late = std::chrono::steady_clock::now() > deadline;
    if (late || async != ncclSuccess) {
      for (Communicator& c : list) {
        if (c.comm) api().comm_abort(c.comm);
        c.comm = nullptr;
      }
      char seconds[32];
      snprintf(seconds, sizeof seconds, "%g", timeout_s);
      throw Error(std::string("NCCL grouped ") + what + " over " + std::to_string(list.size()) + " GPUs" +
                  (late ? std::string(" did not complete within ") + seconds + " s (collective timeout): a GPU hangs"
                        : std::string(" failed: ") + api().get_error_string(async)));
    }
    if (polls > 64) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  for (Communicator& c : list) {
    CUDA_CHECK(cudaSetDevice(c.device));
    CUDA_CHECK(cudaStreamWaitEvent(stream(), c.done, 0));
  }
}

}  // namespace

std::string unavailable_reason() { return library().loaded ? "" : library().reason; }

int version() {
  int v = 0;
  check(api().get_version(&v), "ncclGetVersion");
  return v;
}

std::vector<uint8_t> unique_id() {
  ncclUniqueId id;
  check(api().get_unique_id(&id), "ncclGetUniqueId");
  return std::vector<uint8_t>(id.internal, id.internal + kUniqueIdBytes);
}

void init_rank(const uint8_t* id, int nranks, int rank) {
  if (!comms().empty()) throw Error("NCCL is initialized already in this process");
  ncclUniqueId unique;
  std::memcpy(unique.internal, id, kUniqueIdBytes);
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  ncclComm_t comm = nullptr;
  check(api().comm_init_rank(&comm, nranks, unique, rank), "ncclCommInitRank");
  add(comm, device);
}

void init_all(const std::vector<int>& devices) {
  if (!comms().empty()) throw Error("NCCL is initialized already in this process");
  std::vector<ncclComm_t> list(devices.size());
  check(api().comm_init_all(list.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll");
  for (size_t i = 0; i < devices.size(); ++i) add(list[i], devices[i]);
}

int communicators() { return static_cast<int>(comms().size()); }

void set_timeout(double seconds) { timeout_s = seconds; }

void all_reduce_sum(int comm, float* x, size_t n) {
  Communicator& c = at(comm);
  run(c, "all-reduce", [&] { return api().all_reduce(x, x, n, ncclFloat32, ncclSum, c.comm, c.stream); });
}

void all_reduce_sum_async(int comm, float* x, size_t n) {
  Communicator& c = at(comm);
  issue_after_backend(c, "all-reduce", [&] { return api().all_reduce(x, x, n, ncclFloat32, ncclSum, c.comm, c.stream); });
  ++c.pending;
}

int wait_async(int comm) {
  Communicator& c = at(comm);
  const int pending = c.pending;
  if (pending > 0) wait_for_collectives(c, "all-reduce");
  return pending;
}

void reduce_scatter_sum(int comm, const float* full, float* shard, size_t shard_n) {
  Communicator& c = at(comm);
  run(c, "reduce-scatter", [&] { return api().reduce_scatter(full, shard, shard_n, ncclFloat32, ncclSum, c.comm, c.stream); });
}

void all_gather(int comm, float* full, size_t shard_n) {
  Communicator& c = at(comm);
  int rank_in_comm = 0;
  check(api().comm_user_rank(c.comm, &rank_in_comm), "ncclCommUserRank");
  // In place: NCCL reads this rank's shard from where it lands in the output.
  run(c, "all-gather", [&] { return api().all_gather(full + shard_n * rank_in_comm, full, shard_n, ncclFloat32, c.comm, c.stream); });
}

void all_reduce_sum_all(const std::vector<float*>& xs, size_t n) {
  auto& list = comms();
  if (xs.size() != list.size() || list.empty()) {
    throw Error("NCCL grouped all-reduce: " + std::to_string(xs.size()) + " buffers for " + std::to_string(list.size()) + " communicators (one per GPU of initAll expected)");
  }
  CurrentDevice keep;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!list[i].comm) throw Error("NCCL communicator " + std::to_string(i) + " was aborted after an earlier failure");
    // NCCL reads a pointer of another device as garbage or faults: refuse it with the indices.
    cudaPointerAttributes attributes{};
    CUDA_CHECK(cudaPointerGetAttributes(&attributes, xs[i]));
    if (attributes.type != cudaMemoryTypeDevice || attributes.device != list[i].device) {
      throw Error("NCCL grouped all-reduce: buffer " + std::to_string(i) + " must be memory of GPU " + std::to_string(list[i].device) +
                  " (communicator " + std::to_string(i) + "), but it is " +
                  (attributes.type == cudaMemoryTypeDevice ? "on GPU " + std::to_string(attributes.device) : std::string("not device memory")));
    }
  }
  run_group("all-reduce", [&](size_t i, Communicator& c) { return api().all_reduce(xs[i], xs[i], n, ncclFloat32, ncclSum, c.comm, c.stream); });
}

void destroy() {
  for (Communicator& c : comms()) {
    cudaSetDevice(c.device);
    if (c.comm) api().comm_destroy(c.comm);
    cudaStreamDestroy(c.stream);
    cudaEventDestroy(c.ready);
    cudaEventDestroy(c.done);
  }
  comms().clear();
}

}  // namespace gptune::cuda::nccl

#endif  // GPTUNE_CUDA_EMULATE
