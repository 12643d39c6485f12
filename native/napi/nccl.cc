// addon.nccl: NCCL for GPU ranks (gptune/nccl.h), present in CUDA builds; available() says whether
// libnccl loads, unavailableReason() what to install. The unique id travels as a Uint8Array (mpi.broadcast).
#include <napi.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "napi/args.h"
#include "napi/binding.h"
#include "napi/bindings.h"
#ifdef GPTUNE_WITH_CUDA
#include "gptune/nccl.h"
#endif

namespace gptune::napi {
namespace {

#ifdef GPTUNE_WITH_CUDA
namespace nccl = gptune::cuda::nccl;

Napi::Value Available(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), nccl::unavailable_reason().empty()); }
Napi::Value UnavailableReason(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), nccl::unavailable_reason()); }
Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), nccl::version()); }

Napi::Value UniqueId(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> id = nccl::unique_id();
  Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), id.size());
  std::copy(id.begin(), id.end(), out.Data());
  return out;
}

// initRank(id: Uint8Array(128), nranks, rank) on the current CUDA device.
Napi::Value InitRank(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.initRank", 3);
  ByteArg<uint8_t> id = a.uint8s(0, "id", static_cast<int64_t>(nccl::kUniqueIdBytes));
  const int nranks = a.dim(1, "nranks");
  const int rank = a.dim(2, "rank", 0);
  if (rank >= nranks) a.fail_range("nccl.initRank: rank must be below nranks " + std::to_string(nranks) + ", got " + std::to_string(rank));
  if (a.device() != Device::Cpu) a.fail_range("nccl.initRank: id must be a host Uint8Array");
  nccl::init_rank(id.ptr, nranks, rank);
  return info.Env().Undefined();
}

// initAll(devices: number[]): one communicator per listed GPU in this process.
Napi::Value InitAll(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.initAll", 1);
  if (!info[0].IsArray()) a.fail_type(0, "devices", "an Array of CUDA device indices");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<int> devices;
  for (uint32_t i = 0, n = list.Length(); i < n; ++i) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 || v.As<Napi::Number>().DoubleValue() != v.As<Napi::Number>().Int32Value()) {
      throw Napi::TypeError::New(info.Env(), "nccl.initAll: devices[" + std::to_string(i) + "]: expected a device index but received " + describe(v));
    }
    devices.push_back(v.As<Napi::Number>().Int32Value());
  }
  if (devices.empty()) a.fail_range("nccl.initAll: devices is empty");
  nccl::init_all(devices);
  return info.Env().Undefined();
}

Napi::Value SetTimeout(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.setTimeout", 1);
  double s = a.number(0, "seconds");
  if (!(s > 0) || s > 1e9) a.fail_range("nccl.setTimeout: seconds must be > 0 and at most 1e9, got " + std::to_string(s));
  nccl::set_timeout(s);
  return info.Env().Undefined();
}

int comm_arg(Args& a, size_t i) {
  return a.has(i) ? a.dim(i, "comm", 0) : 0;
}

void require_cuda(Args& a) {
  if (a.device() != Device::Cuda) a.fail_range(std::string(a.binding()) + ": tensors must be CUDA arena views");
}

// allreduceSum(x, comm = 0) in place.
Napi::Value AllreduceSum(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.allreduceSum", 1, 2);
  FloatArg x = a.floats(0, "x", 0);
  require_cuda(a);
  nccl::all_reduce_sum(comm_arg(a, 1), x.ptr, static_cast<size_t>(x.numel));
  return info.Env().Undefined();
}

// The arena blocks of the regions reduceAsync issued and reduceWait has not waited for: NCCL writes into them
// until then, so arena.free() meanwhile must not release them.
std::vector<std::shared_ptr<Block>>& pending_pins() {
  static std::vector<std::shared_ptr<Block>> pins;
  return pins;
}

// reduceAsync(x, comm = 0): the in-place all-reduce of x (a CUDA arena view: a region of the gradients whose
// backward is enqueued) issued on NCCL's stream after the backend's work so far; returns at once.
Napi::Value ReduceAsync(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.reduceAsync", 1, 2);
  FloatArg x = a.floats(0, "x", 0);
  require_cuda(a);
  const int comm = comm_arg(a, 1);
  if (x.numel == 0) return info.Env().Undefined();
  nccl::all_reduce_sum_async(comm, x.ptr, static_cast<size_t>(x.numel));
  for (const auto& pin : a.pins()) pending_pins().push_back(pin);
  return info.Env().Undefined();
}

// reduceWait(comm = 0) -> {regions, waitedSeconds}: waits for every region reduceAsync issued (against the
// collective timeout; the communicator is aborted on a timeout) and orders the backend's later work after them.
Napi::Value ReduceWait(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.reduceWait", 0, 1);
  const int comm = comm_arg(a, 0);
  const auto started = std::chrono::steady_clock::now();
  int regions = 0;
  try {
    regions = nccl::wait_async(comm);
  } catch (...) {
    pending_pins().clear();
    throw;
  }
  pending_pins().clear();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("regions", regions);
  out.Set("waitedSeconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return out;
}

// reduceScatterSum(full, shard, comm = 0): full.numel = shard.numel x ranks.
Napi::Value ReduceScatterSum(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.reduceScatterSum", 2, 3);
  FloatArg full = a.floats(0, "full", 0);
  FloatArg shard = a.floats(1, "shard", 1);
  require_cuda(a);
  if (full.numel % shard.numel != 0) a.fail_range("nccl.reduceScatterSum: full (" + std::to_string(full.numel) + ") must be a whole number of shards of " + std::to_string(shard.numel));
  nccl::reduce_scatter_sum(comm_arg(a, 2), full.ptr, shard.ptr, static_cast<size_t>(shard.numel));
  return info.Env().Undefined();
}

// allGather(full, shardNumel, comm = 0) in place.
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Args a(info, "nccl.allGather", 2, 3);
  FloatArg full = a.floats(0, "full", 0);
  const int64_t shard = a.count(1, "shardNumel");
  require_cuda(a);
  if (shard == 0 || full.numel % shard != 0) a.fail_range("nccl.allGather: full (" + std::to_string(full.numel) + ") must be a whole number of shards of " + std::to_string(shard));
  nccl::all_gather(comm_arg(a, 2), full.ptr, static_cast<size_t>(shard));
  return info.Env().Undefined();
}

// allreduceSumAll(views): one process driving several GPUs (after initAll); views[i] lives on
// communicator i's GPU, every view holds the same number of floats, and each becomes the sum of all of
// them (one NCCL group). Phase 1 (list_args) reads every entry before any pointer is taken.
Napi::Value AllreduceSumAll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "nccl.allreduceSumAll", 1);
  std::vector<Args> entries = list_args(info, a, 0, "views", "an Array of CUDA arena views, one per communicator",
                                        [](Napi::Value view, const std::string&) { return std::vector<Napi::Value>{view}; });
  // Phase 2: no JavaScript runs from here to the collective.
  const size_t count = entries.size();
  const int communicators = nccl::communicators();
  if (static_cast<int64_t>(count) != communicators) {
    a.fail_range("nccl.allreduceSumAll: views holds " + std::to_string(count) + " views; expected one per communicator (" + std::to_string(communicators) + ", from nccl.initAll)");
  }
  std::vector<float*> xs;
  int64_t numel = -1;
  for (size_t i = 0; i < count; ++i) {
    FloatArg x = entries[i].floats(0, "x", 0);
    require_cuda(entries[i]);
    if (numel >= 0 && x.numel != numel) {
      entries[i].fail_range("nccl.allreduceSumAll: views[" + std::to_string(i) + "] holds " + std::to_string(x.numel) + " floats; views[0] holds " + std::to_string(numel) + " (every view must have the same length)");
    }
    numel = x.numel;
    xs.push_back(x.ptr);
  }
  nccl::all_reduce_sum_all(xs, static_cast<size_t>(numel));
  return env.Undefined();
}

Napi::Value Communicators(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), nccl::communicators()); }

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  nccl::destroy();
  return info.Env().Undefined();
}
#else
Napi::Value Available(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), false); }
Napi::Value UnavailableReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), "this gptune addon was built without CUDA, so without NCCL: rebuild it where nvcc is found (GPTUNE_CUDA=ON)");
}
#endif

}  // namespace

Napi::Object NcclBindings(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", function<Available>(env, "nccl.available"));
  o.Set("unavailableReason", function<UnavailableReason>(env, "nccl.unavailableReason"));
#ifdef GPTUNE_WITH_CUDA
  o.Set("version", function<Version>(env, "nccl.version"));
  o.Set("uniqueId", function<UniqueId>(env, "nccl.uniqueId"));
  o.Set("initRank", function<InitRank>(env, "nccl.initRank"));
  o.Set("initAll", function<InitAll>(env, "nccl.initAll"));
  o.Set("setTimeout", function<SetTimeout>(env, "nccl.setTimeout"));
  o.Set("allreduceSum", function<AllreduceSum>(env, "nccl.allreduceSum"));
  o.Set("reduceAsync", function<ReduceAsync>(env, "nccl.reduceAsync"));
  o.Set("reduceWait", function<ReduceWait>(env, "nccl.reduceWait"));
  o.Set("reduceScatterSum", function<ReduceScatterSum>(env, "nccl.reduceScatterSum"));
  o.Set("allGather", function<AllGather>(env, "nccl.allGather"));
  o.Set("allreduceSumAll", function<AllreduceSumAll>(env, "nccl.allreduceSumAll"));
  o.Set("communicators", function<Communicators>(env, "nccl.communicators"));
  o.Set("destroy", function<Destroy>(env, "nccl.destroy"));
#endif
  return o;
}

}  // namespace gptune::napi
