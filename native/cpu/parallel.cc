#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "gptune/kernels.h"

namespace gptune::cpu {
namespace {

// One pause of a spin-wait: tells the core (and its SMT sibling) that this thread is waiting.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins before sleeping, on both sides of a job: generation runs ~100 small kernels a token
// (SmolLM2-135M's 30 layers), each a few tens of microseconds, and a condition-variable wake-up
// costs about as much as the work itself. ~2^14 pauses is a few hundred microseconds at most, so an
// idle pool still goes to sleep almost at once.
constexpr int kSpinPauses = 1 << 14;

class ThreadPool {
 public:
  ThreadPool() { resize(default_threads()); }
  ~ThreadPool() { stop_workers(); }

  static int default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(std::min(n, 256u));
  }

  int size() const { return num_threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);
    stop_workers();
    num_threads_ = n;
    stopping_.store(false, std::memory_order_relaxed);
    // New workers must treat the current generation as already seen: otherwise a worker created
    // after earlier jobs would wake at once and run a job pointer that is no longer set.
    const uint64_t current = generation_.load(std::memory_order_relaxed);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, current] { worker_loop(current); });
  }

  // Runs job(t) for t in [0, num_threads) and waits; thread 0 is the caller. Each worker index is
  // a slot that exactly one worker claims. With all_slots false (jobs that hand out their work
  // dynamically, where any thread may do any part), slots still unclaimed when the caller's own
  // job(0) returns are withdrawn: on a loaded machine a worker that the OS has not scheduled would
  // otherwise hold the caller for a time slice (milliseconds) after the work is already done.
  void run(const std::function<void(int)>& job, bool all_slots) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);
    if (num_threads_ == 1) {
      job(0);
      return;
    }
    job_.store(&job, std::memory_order_relaxed);
    {
      // Published under mutex_ so a worker between its last check and its wait cannot miss it;
      // the release makes job_ and unclaimed_ visible to a worker that sees the new generation.
      std::lock_guard<std::mutex> lock(mutex_);
      unclaimed_.store(num_threads_ - 1, std::memory_order_release);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    job(0);
    // An exchange (not a store) reads the last claim, so a worker that claimed a slot is seen in
    // running_ below.
    if (!all_slots) unclaimed_.exchange(0, std::memory_order_acq_rel);
    // A worker counts itself in running_ before it claims a slot and out after the job, so once
    // no slot is left and running_ is 0 no worker is inside this job or about to enter it.
    auto finished = [this] {
      return unclaimed_.load(std::memory_order_acquire) == 0 && running_.load(std::memory_order_acquire) == 0;
    };
    for (int spin = 0; !finished(); ++spin) {
      if (spin < kSpinPauses) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, finished);
      break;
    }
    job_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  void worker_loop(uint64_t seen) {
    for (;;) {
      uint64_t generation;
      int spin = 0;
      while ((generation = generation_.load(std::memory_order_acquire)) == seen) {
        if (stopping_.load(std::memory_order_acquire)) return;
        if (spin++ < kSpinPauses) {
          cpu_relax();
          continue;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] {
          return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
        });
      }
      seen = generation;
      // A worker slow to get here may find the job withdrawn, or even a later job published; the
      // slot it claims (if any) is always one of the job that job_ holds now, which the caller
      // stored before it opened the slots.
      running_.fetch_add(1, std::memory_order_acq_rel);
      int slot = unclaimed_.load(std::memory_order_acquire);
      while (slot > 0 && !unclaimed_.compare_exchange_weak(slot, slot - 1, std::memory_order_acq_rel)) {
      }
      if (slot > 0) (*job_.load(std::memory_order_relaxed))(slot);
      if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Under mutex_ so a caller between its last check and its wait cannot miss it.
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex run_mutex_;  // one job at a time (kernels are called from one JS thread anyway)
  std::mutex mutex_;      // only for sleeping and waking; the hand-off itself is the atomics below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::atomic<const std::function<void(int)>*> job_{nullptr};
  int num_threads_ = 1;
  std::atomic<int> unclaimed_{0};  // worker slots of the current job no worker has taken yet
  std::atomic<int> running_{0};    // workers between noticing a job and leaving it
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

ThreadPool& pool() {
  static ThreadPool instance;
  return instance;
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > 256) throw Error("threads must be between 1 and 256, got " + std::to_string(n));
  if (n != pool().size()) pool().resize(n);
}

int num_threads() { return pool().size(); }

void parallel_run(const std::function<void(int)>& fn) { pool().run(fn, true); }

void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1 || pool().size() == 1) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  pool().run([&](int) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks; c = next.fetch_add(1, std::memory_order_relaxed))
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  }, false);
}

void parallel_for(int64_t n, int64_t min_chunk,
                  const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  int64_t threads = std::min<int64_t>(pool().size(), std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (threads <= 1) {
    fn(0, n, 0);
    return;
  }
  pool().run([&](int t) {
    if (t >= threads) return;
    int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) fn(begin, end, t);
  }, true);
}

}  // namespace gptune::cpu
