#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "gptune/kernels.h"

namespace gptune::cpu {
namespace {

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
    stopping_ = false;
    // New workers must treat the current generation as already seen: otherwise a worker created
    // after earlier jobs would wake at once and run a job pointer that is no longer set.
    const uint64_t current = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, current] { worker_loop(i, current); });
  }

  // Runs job(t) for t in [0, num_threads) and waits; thread 0 is the caller.
  void run(const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> run_guard(run_mutex_);
    if (num_threads_ == 1) {
      job(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      pending_ = num_threads_ - 1;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex run_mutex_;  // one job at a time (kernels are called from one JS thread anyway)
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int num_threads_ = 1;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
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
