// addon.mpi: data-parallel collectives over MPI for CPU ranks (and the host side of GPU ranks: the
// NCCL unique id travels by broadcast). Built when CMake finds MPI (GPTUNE_MPI=AUTO|ON); otherwise
// every function but available()/unavailableReason() throws one line saying how to get it.
//
// Every collective is bounded by a timeout (setTimeout, default 300 s), so a rank that died or hangs never
// leaves the others blocked for ever. The collectives are MPI's blocking ones (its tuned algorithms; a
// non-blocking call polled from here moves large buffers only as often as it is polled), and a watchdog
// thread ends the job (MPI_Abort, the one way to stop every rank) when one has not returned in time. To
// name the ranks that never reached it, each collective is preceded by a heartbeat: every rank sends the
// collective's sequence number to every other one, received while MPI progresses the collective; on a
// timeout the heartbeats that did not arrive are the missing ranks. That is 2(N-1) messages of 4 bytes
// per collective, nothing beside a gradient all-reduce.
//
// The gradient all-reduce can also overlap the backward (reduceAsync / reduceWait): a communication thread
// reduces each region of the gradient arena as the backward finishes it, through the same ring and the same
// watchdog (see "The overlapped all-reduce" below).
#include <napi.h>

#include <chrono>
#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <cstring>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "napi/args.h"
#include "napi/binding.h"
#include "napi/bindings.h"

#ifdef GPTUNE_WITH_MPI
#include <dlfcn.h>
// The C API only: Open MPI and MPICH would otherwise pull in their removed C++ bindings (libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace gptune::napi {
namespace {

constexpr const char* kNoMpi =
    "this gptune addon was built without MPI: install an MPI development package (Debian/Ubuntu: apt-get install "
    "openmpi-bin libopenmpi-dev) and rebuild it with GPTUNE_MPI=ON (GPTUNE_MPI=ON npm run build:native)";

Napi::Value Available(const Napi::CallbackInfo& info) {
#ifdef GPTUNE_WITH_MPI
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value UnavailableReason(const Napi::CallbackInfo& info) {
#ifdef GPTUNE_WITH_MPI
  return Napi::String::New(info.Env(), "");
#else
  return Napi::String::New(info.Env(), kNoMpi);
#endif
}

#ifdef GPTUNE_WITH_MPI

struct World {
  bool initialized = false;
  bool finalized = false;
  int rank = 0;
  int size = 1;
  int64_t sequence = 0;  // collectives started on this rank; equal on every rank while they agree
  int thread_level = 0;   // what MPI_Init_thread granted (MPI_THREAD_SINGLE .. MPI_THREAD_MULTIPLE)
};
World& world() {
  static World w;
  return w;
}

// What the watchdog sees of the collective in progress (0: none), written by the JavaScript thread.
struct Watch {
  std::atomic<int64_t> started_ns{0};
  std::atomic<int64_t> sequence{0};
  std::atomic<const char*> what{""};
  std::atomic<double> timeout_s{300};
  // The collective's heartbeat buffers (heard[p] == beat once rank p's arrived); read without MPI, as
  // far as this rank has heard.
  std::atomic<const int*> heard{nullptr};
  std::atomic<int> beat{0};
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
};
// Never destroyed: the detached watchdog may still run while the process exits.
Watch& watch() {
  static Watch* w = new Watch();
  return *w;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Ends the job when a collective has not returned within the timeout (checked every 100 ms; the thread
// ends at finalize()).
// "rank R: WHAT #SEQ did not complete within S s (collective timeout): WHO".
std::string timeout_message(int rank, const char* what, int64_t seq, double timeout, const std::string& missing) {
  char seconds[32];
  snprintf(seconds, sizeof seconds, "%g", timeout);
  const std::string who = missing.empty() ? "every rank reached it, so one stopped inside it (dead or hung)"
                                          : "rank(s) " + missing + " never reached it (dead or hung)";
  return "rank " + std::to_string(rank) + ": " + what + " #" + std::to_string(seq) + " did not complete within " + seconds +
         " s (collective timeout): " + who;
}

void watchdog_loop(int rank, int size) {
  Watch& w = watch();
  std::unique_lock<std::mutex> lock(w.mutex);
  while (!w.wake.wait_for(lock, std::chrono::milliseconds(100), [&] { return w.stop; })) {
    const int64_t started = w.started_ns.load();
    if (started == 0) continue;
    const double timeout = w.timeout_s.load();
    const double waited = (now_ns() - started) / 1e9;
    if (waited < timeout) continue;
    std::string missing;
    const int* heard = w.heard.load();
    for (int p = 0; heard && p < size; ++p) {
      if (p != rank && reinterpret_cast<const volatile int*>(heard)[p] != w.beat.load()) missing += (missing.empty() ? "" : ", ") + std::to_string(p);
    }
    fprintf(stderr, "gptune: %s; ending the job\n", timeout_message(rank, w.what.load(), w.sequence.load(), timeout, missing).c_str());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

// Marks a collective in progress for the watchdog for the lifetime of this object.
struct Watched {
  Watched(const char* what, int64_t sequence, const int* heard, int beat) {
    Watch& w = watch();
    w.what = what;
    w.sequence = sequence;
    w.heard = heard;
    w.beat = beat;
    w.started_ns = now_ns();
  }
  ~Watched() {
    watch().started_ns = 0;
    watch().heard = nullptr;
  }
};

// Tag of the heartbeat messages; far from any tag an embedding application might use.
constexpr int kHeartbeatTag = 0x6770;
// The largest element count one MPI call takes (an int); larger all-reduces go in chunks.
constexpr int64_t kMaxChunk = int64_t{1} << 28;

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, length);
}

void check(Napi::Env env, int code, const std::string& what) {
  if (code != MPI_SUCCESS) throw Napi::Error::New(env, "mpi." + what + ": " + mpi_error(code));
}

void require_world(Napi::Env env, const char* what) {
  const World& w = world();
  if (!w.initialized || w.finalized) {
    throw Napi::Error::New(env, std::string("mpi.") + what + ": MPI is not " + (w.finalized ? "running any more (finalize() was called)" : "initialized; call mpi.init() first (under mpirun or srun)"));
  }
}

// Runs one blocking collective (`run`), watched: the watchdog ends the job when it has not returned
// within the timeout, naming the ranks whose heartbeat for it never came. Returns MPI's status. Called by
// one thread at a time: the JavaScript thread, or the communication thread while regions are in flight.
template <class Run>
int watched(const char* what, Run run) {
  World& w = world();
  const int64_t seq = ++w.sequence;
  const int beat = static_cast<int>(seq % INT_MAX);
  std::vector<int> heard(w.size, -1);
  std::vector<MPI_Request> beats;
  beats.reserve(2 * w.size);
  if (w.size > 1) {
    for (int p = 0; p < w.size; ++p) {
      if (p == w.rank) continue;
      beats.emplace_back();
      int code = MPI_Irecv(&heard[p], 1, MPI_INT, p, kHeartbeatTag, MPI_COMM_WORLD, &beats.back());
      if (code != MPI_SUCCESS) return code;
      beats.emplace_back();
      code = MPI_Isend(&beat, 1, MPI_INT, p, kHeartbeatTag, MPI_COMM_WORLD, &beats.back());
      if (code != MPI_SUCCESS) return code;
    }
  }
  Watched watching(what, seq, w.size > 1 ? heard.data() : nullptr, beat);
  int code = run();
  if (code != MPI_SUCCESS) return code;
  // Every rank sent its heartbeat before entering the collective that just completed; still, delivering it
  // may need the sender's progress (a full shared-memory queue), so this wait is watched too.
  if (!beats.empty()) return MPI_Waitall(static_cast<int>(beats.size()), beats.data(), MPI_STATUSES_IGNORE);
  return MPI_SUCCESS;
}

void require_no_regions(Napi::Env env, const char* what);

// watched() from the JavaScript thread: MPI's failure becomes a JavaScript error. Refused while regions of
// an overlapped all-reduce are in flight (the communication thread alone calls MPI then).
template <class Run>
void collective(Napi::Env env, const char* what, Run run) {
  require_no_regions(env, what);
  check(env, watched(what, run), what);
}

// ---- The overlapped all-reduce: regions of the gradient arena reduced while the backward goes on ----
//
// reduceAsync(view) queues an in-place all-reduce of one region (an arena view; its block is pinned until the
// region is done, so arena.free() meanwhile cannot pull memory from under it); one communication thread,
// started with the first region, reduces the regions in the order they were queued, each with the same ring
// and the same watchdog as allreduceSum, so the sums are bitwise the same on every rank and a dead or hung
// peer still ends the job naming it. Every rank queues the same regions in the same order (the layers'
// backward order), so the collectives and their sequence numbers match. reduceWait() blocks until every
// queued region is reduced and reports the first failure. While regions are in flight the JavaScript thread
// may not call MPI (every collective binding refuses): the communication thread alone does.

int ring_allreduce(float* p, int64_t numel);

struct Region {
  std::shared_ptr<Block> pin;
  float* ptr = nullptr;
  int64_t numel = 0;
};

struct Overlap {
  std::mutex mutex;
  std::condition_variable work;  // a region was queued, or stop
  std::condition_variable idle;  // in_flight reached 0
  std::deque<Region> queue;
  int64_t in_flight = 0;         // queued or being reduced
  int64_t regions = 0;           // queued since the last reduceWait
  double busy_s = 0;             // seconds the thread spent reducing since the last reduceWait
  int failure = MPI_SUCCESS;     // the first failed region's status; later regions are skipped
  bool stop = false;
  std::thread thread;
};
// Never destroyed: the thread may still wait on it while the process exits (MPI_Abort, an uncaught error).
Overlap& overlap() {
  static Overlap* o = new Overlap();
  return *o;
}

void communication_loop() {
  Overlap& o = overlap();
  std::unique_lock<std::mutex> lock(o.mutex);
  for (;;) {
    o.work.wait(lock, [&] { return o.stop || !o.queue.empty(); });
    if (o.queue.empty()) return;  // stop, nothing left
    Region r = std::move(o.queue.front());
    o.queue.pop_front();
    const bool skip = o.failure != MPI_SUCCESS;
    lock.unlock();
    const int64_t started = now_ns();
    const int code = skip ? MPI_SUCCESS : ring_allreduce(r.ptr, r.numel);
    r.pin.reset();
    lock.lock();
    o.busy_s += (now_ns() - started) / 1e9;
    if (code != MPI_SUCCESS && o.failure == MPI_SUCCESS) o.failure = code;
    if (--o.in_flight == 0) o.idle.notify_all();
  }
}

void require_no_regions(Napi::Env env, const char* what) {
  Overlap& o = overlap();
  std::lock_guard<std::mutex> lock(o.mutex);
  if (o.in_flight > 0) {
    throw Napi::Error::New(env, std::string("mpi.") + what + ": " + std::to_string(o.in_flight) +
                                    " region(s) of an overlapped all-reduce are in flight; call mpi.reduceWait() first (the communication thread alone calls MPI meanwhile)");
  }
}

// Blocks until no region is in flight; returns the first failure's status (and clears it).
int drain_regions() {
  Overlap& o = overlap();
  std::unique_lock<std::mutex> lock(o.mutex);
  o.idle.wait(lock, [&] { return o.in_flight == 0; });
  const int failure = o.failure;
  o.failure = MPI_SUCCESS;
  return failure;
}

// Ends the communication thread (at finalize), after the regions in flight.
void stop_communication_thread() {
  drain_regions();
  Overlap& o = overlap();
  {
    std::lock_guard<std::mutex> lock(o.mutex);
    o.stop = true;
  }
  o.work.notify_all();
  if (o.thread.joinable()) o.thread.join();
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "single";
    case MPI_THREAD_FUNNELED: return "funneled";
    case MPI_THREAD_SERIALIZED: return "serialized";
    case MPI_THREAD_MULTIPLE: return "multiple";
    default: return "unknown";
  }
}

// init() -> {rank, size, threadLevel, overlap}. MPI_Init_thread asks for SERIALIZED: the JavaScript thread
// calls MPI, and so does the communication thread of the overlapped all-reduce (reduceAsync), never both at
// once (every call from the JavaScript thread is refused while regions are in flight); the watchdog's
// MPI_Abort goes through the runtime from any thread in Open MPI and MPICH. Where MPI grants less
// (threadLevel 'single' or 'funneled'), overlap is false and reduceAsync refuses: the caller reduces after
// the backward with allreduceSum, as without overlap.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.init", 0);
  World& w = world();
  if (w.finalized) throw Napi::Error::New(env, "mpi.init: MPI was finalized in this process and cannot start again");
  if (!w.initialized) {
    // Open MPI loads its components with dlopen and they resolve symbols of libmpi globally; the addon
    // itself was loaded RTLD_LOCAL, so its libmpi is promoted to the global namespace first.
    for (const char* lib : {"libmpi.so.40", "libmpi.so.12", "libmpi.so"}) {
      if (dlopen(lib, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) break;
    }
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      if (code != MPI_SUCCESS) throw Napi::Error::New(env, "mpi.init: MPI_Init_thread failed: " + mpi_error(code));
    }
    MPI_Query_thread(&w.thread_level);
    // Errors come back as codes (and then JavaScript errors), not as MPI's default abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w.size);
    w.initialized = true;
    if (w.size > 1) std::thread(watchdog_loop, w.rank, w.size).detach();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", w.rank);
  o.Set("size", w.size);
  o.Set("threadLevel", thread_level_name(w.thread_level));
  o.Set("overlap", w.thread_level >= MPI_THREAD_SERIALIZED);
  return o;
}

Napi::Value Rank(const Napi::CallbackInfo& info) {
  require_world(info.Env(), "rank");
  return Napi::Number::New(info.Env(), world().rank);
}

Napi::Value Size(const Napi::CallbackInfo& info) {
  require_world(info.Env(), "size");
  return Napi::Number::New(info.Env(), world().size);
}

// setTimeout(seconds): the bound on every later collective (> 0).
Napi::Value SetTimeout(const Napi::CallbackInfo& info) {
  Args a(info, "mpi.setTimeout", 1);
  double s = a.number(0, "seconds");
  if (!(s > 0) || s > 1e9) a.fail_range("mpi.setTimeout: seconds must be > 0 and at most 1e9, got " + std::to_string(s));
  watch().timeout_s = s;
  return info.Env().Undefined();
}

// The shard of `numel` elements that `rank` of `size` owns: [numel*rank/size, numel*(rank+1)/size).
int64_t shard_begin(int64_t numel, int rank, int size) { return numel * rank / size; }

void shard_layout(const Args& a, int64_t numel, std::vector<int>* counts, std::vector<int>* displs) {
  const World& w = world();
  for (int p = 0; p < w.size; ++p) {
    const int64_t begin = shard_begin(numel, p, w.size), end = shard_begin(numel, p + 1, w.size);
    if (end - begin > INT_MAX || end > INT_MAX) a.fail_range(std::string(a.binding()) + ": " + std::to_string(numel) + " elements exceed what one MPI call addresses (2^31-1)");
    counts->push_back(static_cast<int>(end - begin));
    displs->push_back(static_cast<int>(begin));
  }
}

// Ring reduce-scatter in place over p (n floats laid out as shard_layout): in step k rank r sends its
// running sum of chunk (r-k-1) mod N to rank r+1 and adds the chunk (r-k-2) mod N it receives from rank
// r-1, so after N-1 steps chunk r holds the sum over all ranks (each element summed along one fixed ring
// order). Open MPI's own MPI_Reduce_scatter took 20-40x the time of this exchange on this project's
// machine (64 MiB, 2 ranks: 0.8-1.3 s against tens of ms for the same bytes through MPI_Allgatherv).
int ring_reduce_scatter(float* p, const std::vector<int>& counts, const std::vector<int>& displs) {
  const World& w = world();
  // Pieces of at most 4 MiB floats through one buffer kept for the process: a fresh buffer per call cost
  // more in page faults than the exchange itself.
  constexpr int kPiece = 1 << 22;
  static std::vector<float> scratch(kPiece);
  const int next = (w.rank + 1) % w.size, prev = (w.rank + w.size - 1) % w.size;
  // Every rank makes the same number of exchanges per step (pieces of the largest chunk, empty ones included):
  // a bound from this rank's two chunks alone left a neighbour waiting for a piece never sent when a chunk
  // is empty (fewer elements than ranks: a small region of the overlapped all-reduce) or ends on a piece.
  const int largest = *std::max_element(counts.begin(), counts.end());
  for (int k = 0; k < w.size - 1; ++k) {
    const int send = ((w.rank - k - 1) % w.size + w.size) % w.size, recv = ((w.rank - k - 2) % w.size + w.size) % w.size;
    for (int at = 0; at < largest; at += kPiece) {
      const int sending = std::max(0, std::min(kPiece, counts[send] - at)), receiving = std::max(0, std::min(kPiece, counts[recv] - at));
      int code = MPI_Sendrecv(p + displs[send] + at, sending, MPI_FLOAT, next, 0, scratch.data(), receiving, MPI_FLOAT, prev, 0,
                              MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS) return code;
      float* dst = p + displs[recv] + at;
      for (int i = 0; i < receiving; ++i) dst[i] += scratch[i];
    }
  }
  return MPI_SUCCESS;
}

// allreduceSum(x): x becomes the element-wise sum over ranks, bitwise the same on every rank (ranks that
// train on the same weights must stay identical; MPI_Allreduce does not promise that for more than two).
// A Float32Array or CPU arena view is reduce-scattered over a ring (each element summed once, by its
// owner) and all-gathered, in chunks of 2^28 floats: 2(N-1)/N x its bytes per rank, as a ring all-reduce
// moves. A Float64Array (a few scalars such as loss sums, kept exact beyond float32) is reduced to rank 0
// and broadcast.
Napi::Value AllreduceSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.allreduceSum", 1);
  require_world(env, "allreduceSum");
  if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    Napi::Float64Array x = info[0].As<Napi::Float64Array>();
    if (x.ElementLength() > static_cast<size_t>(INT_MAX)) a.fail_range("mpi.allreduceSum: a Float64Array of at most 2^31-1 values");
    double* p = x.Data();
    const int n = static_cast<int>(x.ElementLength());
    const bool root = world().rank == 0;
    collective(env, "all-reduce", [&] { return MPI_Reduce(root ? MPI_IN_PLACE : p, root ? p : nullptr, n, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD); });
    collective(env, "all-reduce", [&] { return MPI_Bcast(p, n, MPI_DOUBLE, 0, MPI_COMM_WORLD); });
    return env.Undefined();
  }
  FloatArg x = a.floats(0, "x", 0);
  if (x.device != Device::Cpu) a.fail_range("mpi.allreduceSum: x must be host memory (a CUDA view is reduced with NCCL)");
  require_no_regions(env, "allreduceSum");
  check(env, ring_allreduce(x.ptr, x.numel), "all-reduce");
  return env.Undefined();
}

// The in-place all-reduce of numel floats at p (a ring reduce-scatter, then MPI_Allgatherv), in chunks of
// kMaxChunk, each collective watched. From the JavaScript thread or the communication thread.
int ring_allreduce(float* p, int64_t numel) {
  const World& w = world();
  for (int64_t at = 0; at < numel; at += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, numel - at));  // kMaxChunk < 2^31
    std::vector<int> counts, displs;
    for (int r = 0; r < w.size; ++r) {
      const int64_t begin = shard_begin(n, r, w.size);
      counts.push_back(static_cast<int>(shard_begin(n, r + 1, w.size) - begin));
      displs.push_back(static_cast<int>(begin));
    }
    float* chunk = p + at;
    int code = watched("all-reduce", [&] { return ring_reduce_scatter(chunk, counts, displs); });
    if (code != MPI_SUCCESS) return code;
    code = watched("all-reduce", [&] {
      return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, chunk, counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
    });
    if (code != MPI_SUCCESS) return code;
  }
  return MPI_SUCCESS;
}

// reduceAsync(x): queues the in-place all-reduce of x, a CPU arena view (a region of the gradient arena whose
// backward is done), on the communication thread and returns at once; x holds the sum once reduceWait()
// returned. Refused where MPI did not grant MPI_THREAD_SERIALIZED (init().overlap is false).
Napi::Value ReduceAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.reduceAsync", 1);
  require_world(env, "reduceAsync");
  World& w = world();
  if (w.thread_level < MPI_THREAD_SERIALIZED) {
    a.fail_range(std::string("mpi.reduceAsync: MPI granted thread level ") + thread_level_name(w.thread_level) +
                 "; the communication thread needs serialized (reduce with mpi.allreduceSum after the backward instead)");
  }
  if (!info[0].IsObject() || info[0].IsTypedArray()) a.fail_type(0, "x", "a CPU arena view {arena, offset, numel}");
  FloatArg x = a.floats(0, "x", 0);
  if (x.device != Device::Cpu) a.fail_range("mpi.reduceAsync: x must be a CPU arena view (a CUDA view is reduced with NCCL)");
  if (a.pins().empty()) a.fail_type(0, "x", "a CPU arena view {arena, offset, numel}");
  if (x.numel == 0) return env.Undefined();
  Overlap& o = overlap();
  {
    std::lock_guard<std::mutex> lock(o.mutex);
    if (o.stop) a.fail_range("mpi.reduceAsync: MPI is finalizing");
    if (!o.thread.joinable()) o.thread = std::thread(communication_loop);
    o.queue.push_back(Region{a.pins().back(), x.ptr, x.numel});
    ++o.in_flight;
    ++o.regions;
  }
  o.work.notify_one();
  return env.Undefined();
}

// reduceWait() -> {regions, waitedSeconds, busySeconds}: blocks until every region queued by reduceAsync is
// reduced (each collective bounded by the watchdog); the regions queued since the last reduceWait, the
// seconds this call waited (the all-reduce time the backward did not hide) and the seconds the
// communication thread spent reducing. Throws the first region's failure.
Napi::Value ReduceWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.reduceWait", 0);
  require_world(env, "reduceWait");
  const int64_t started = now_ns();
  const int failure = drain_regions();
  const double waited = (now_ns() - started) / 1e9;
  Overlap& o = overlap();
  int64_t regions = 0;
  double busy = 0;
  {
    std::lock_guard<std::mutex> lock(o.mutex);
    std::swap(regions, o.regions);
    std::swap(busy, o.busy_s);
  }
  check(env, failure, "all-reduce");
  Napi::Object out = Napi::Object::New(env);
  out.Set("regions", static_cast<double>(regions));
  out.Set("waitedSeconds", waited);
  out.Set("busySeconds", busy);
  return out;
}

// shard(numel) -> {offset, numel}: this rank's part of a buffer under reduceScatterSum / allGather.
Napi::Value Shard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.shard", 1);
  require_world(env, "shard");
  const int64_t numel = a.count(0, "numel");
  const World& w = world();
  Napi::Object o = Napi::Object::New(env);
  const int64_t begin = shard_begin(numel, w.rank, w.size);
  o.Set("offset", static_cast<double>(begin));
  o.Set("numel", static_cast<double>(shard_begin(numel, w.rank + 1, w.size) - begin));
  return o;
}

// reduceScatterSum(full, shard): shard (this rank's shard(full.numel).numel elements) receives the
// sum over ranks of this rank's part of full. The ring works in place: full's own part then holds that
// sum too, and its other parts partial sums.
Napi::Value ReduceScatterSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.reduceScatterSum", 2);
  require_world(env, "reduceScatterSum");
  FloatArg full = a.floats(0, "full", 0);
  std::vector<int> counts, displs;
  shard_layout(a, full.numel, &counts, &displs);
  FloatArg shard = a.floats(1, "shard", counts[world().rank]);
  if (a.device() != Device::Cpu) a.fail_range("mpi.reduceScatterSum: full and shard must be host memory (CUDA views are reduced with NCCL)");
  collective(env, "reduce-scatter", [&] { return ring_reduce_scatter(full.ptr, counts, displs); });
  const int rank = world().rank;
  if (shard.ptr != full.ptr + displs[rank]) std::memmove(shard.ptr, full.ptr + displs[rank], sizeof(float) * counts[rank]);
  return env.Undefined();
}

// allGather(full): every rank's shard of full (as shard() lays it out) is copied to every rank.
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.allGather", 1);
  require_world(env, "allGather");
  FloatArg full = a.floats(0, "full", 0);
  if (full.device != Device::Cpu) a.fail_range("mpi.allGather: full must be host memory (CUDA views are gathered with NCCL)");
  std::vector<int> counts, displs;
  shard_layout(a, full.numel, &counts, &displs);
  collective(env, "all-gather", [&] {
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full.ptr, counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
  });
  return env.Undefined();
}

// broadcast(x, root): x (a Float32Array, a CPU arena view or a Uint8Array) takes root's contents.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.broadcast", 2);
  require_world(env, "broadcast");
  const int root = a.dim(1, "root", 0);
  if (root >= world().size) a.fail_range("mpi.broadcast: root must be a rank below " + std::to_string(world().size) + ", got " + std::to_string(root));
  void* ptr = nullptr;
  int64_t bytes = 0;
  if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    ByteArg<uint8_t> x = a.uint8s(0, "x", 0);
    ptr = x.ptr;
    bytes = x.numel;
  } else {
    FloatArg x = a.floats(0, "x", 0);
    ptr = x.ptr;
    bytes = x.numel * 4;
  }
  if (a.device() != Device::Cpu) a.fail_range("mpi.broadcast: x must be host memory");
  if (bytes > INT_MAX) a.fail_range("mpi.broadcast: x exceeds 2^31-1 bytes");
  collective(env, "broadcast", [&] { return MPI_Bcast(ptr, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD); });
  return env.Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.barrier", 0);
  require_world(env, "barrier");
  collective(env, "barrier", [&] { return MPI_Barrier(MPI_COMM_WORLD); });
  return env.Undefined();
}

// abort(code): ends every rank of the job (MPI_Abort) with exit code `code`; for the CLI once an
// error was reported, so that no rank waits for one that will never come.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  Args a(info, "mpi.abort", 1);
  const int code = a.dim(0, "code", 1);
  if (world().initialized && !world().finalized) MPI_Abort(MPI_COMM_WORLD, code);
  return info.Env().Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mpi.finalize", 0);
  World& w = world();
  if (w.initialized && !w.finalized) {
    stop_communication_thread();
    w.finalized = true;
    {
      std::lock_guard<std::mutex> lock(watch().mutex);
      watch().stop = true;
    }
    watch().wake.notify_all();
    check(env, MPI_Finalize(), "finalize");
  }
  return env.Undefined();
}

Napi::Value Library(const Napi::CallbackInfo& info) {
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  std::string text(version, strnlen(version, length));
  const size_t line = text.find('\n');
  return Napi::String::New(info.Env(), line == std::string::npos ? text : text.substr(0, line));
}

#else

Napi::Value NotBuilt(const Napi::CallbackInfo& info) { throw Napi::Error::New(info.Env(), kNoMpi); }

#endif

}  // namespace

Napi::Object MpiBindings(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", function<Available>(env, "mpi.available"));
  o.Set("unavailableReason", function<UnavailableReason>(env, "mpi.unavailableReason"));
#ifdef GPTUNE_WITH_MPI
  o.Set("init", function<Init>(env, "mpi.init"));
  o.Set("rank", function<Rank>(env, "mpi.rank"));
  o.Set("size", function<Size>(env, "mpi.size"));
  o.Set("setTimeout", function<SetTimeout>(env, "mpi.setTimeout"));
  o.Set("allreduceSum", function<AllreduceSum>(env, "mpi.allreduceSum"));
  o.Set("reduceAsync", function<ReduceAsync>(env, "mpi.reduceAsync"));
  o.Set("reduceWait", function<ReduceWait>(env, "mpi.reduceWait"));
  o.Set("shard", function<Shard>(env, "mpi.shard"));
  o.Set("reduceScatterSum", function<ReduceScatterSum>(env, "mpi.reduceScatterSum"));
  o.Set("allGather", function<AllGather>(env, "mpi.allGather"));
  o.Set("broadcast", function<Broadcast>(env, "mpi.broadcast"));
  o.Set("barrier", function<Barrier>(env, "mpi.barrier"));
  o.Set("abort", function<Abort>(env, "mpi.abort"));
  o.Set("finalize", function<Finalize>(env, "mpi.finalize"));
  o.Set("library", function<Library>(env, "mpi.library"));
#else
  for (const char* name : {"init", "rank", "size", "setTimeout", "allreduceSum", "reduceAsync", "reduceWait", "shard", "reduceScatterSum", "allGather", "broadcast", "barrier", "abort", "finalize", "library"}) {
    o.Set(name, function<NotBuilt>(env, "mpi"));
  }
#endif
  return o;
}

}  // namespace gptune::napi
