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
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, current] { worker_loop(i, current); });
  }

  // Runs job(t) for t in [0, num_threads) and waits; thread 0 is the caller.
  void run(const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);
    if (num_threads_ == 1) {
      job(0);
      return;
    }
    job_.store(&job, std::memory_order_relaxed);
    pending_.store(num_threads_ - 1, std::memory_order_relaxed);
    {
      // Published under mutex_ so a worker between its last check and its wait cannot miss it;
      // the release makes job_ and pending_ visible to a worker that sees the new generation.
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    job(0);
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin < kSpinPauses) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
      break;
    }
    job_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  void worker_loop(int index, uint64_t seen) {
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
      (*job_.load(std::memory_order_relaxed))(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
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
  std::atomic<int> pending_{0};
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

void parallel_run(const std::function<void(int)>& fn) { pool().run(fn); }

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
  });
}

}  // namespace gptune::cpu
