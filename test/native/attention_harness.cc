// Standalone validation and timing of native/cpu/attention.cc against its naive references, for both
// the AVX-512 and the portable tile primitives. Build and run from the repository root:
//   g++ -std=c++17 -O3 -fno-math-errno -DGPTUNE_X86=1 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma
//       -Inative/include -Inative -c native/cpu/attention_avx512.cc -o /tmp/attention_avx512.o &&
//   g++ -std=c++17 -O3 -fno-math-errno -DGPTUNE_X86=1 -Inative/include -Inative
//       test/native/attention_harness.cc native/cpu/attention.cc native/cpu/parallel.cc native/cpu/simd_level.cc
//       /tmp/attention_avx512.o -lpthread -o /tmp/attention_harness && /tmp/attention_harness
// Pass --no-bench to skip the timings. Exits non-zero when any check fails.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <immintrin.h>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "gptune/kernels.h"

namespace gptune::cpu {
// attention.cc: the naive references and the test hook (not part of kernels.inc).
void attention_forward_reference(float* out, float* lse, const float* qkv, const int* segment_ids,
                                 int B, int T, int NH, int NKV, int HS);
void attention_backward_reference(float* dqkv, const float* dout, const float* qkv,
                                  const int* segment_ids, int B, int T, int NH, int NKV, int HS);
void attention_cached_forward_reference(float* out, float* kcache, float* vcache, const float* qkv,
                                        int B, int Tq, int past, int maxT, int NH, int NKV, int HS);
void attention_use_portable_path(bool portable);
}  // namespace gptune::cpu

using namespace gptune::cpu;

namespace {

int failures = 0;

struct Rng {
  uint64_t state;
  float uniform() {  // [-1, 1)
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return float((state >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;
  }
};

std::vector<float> random_vector(size_t n, uint64_t seed, float amplitude) {
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  std::vector<float> v(n);
  for (float& x : v) x = amplitude * rng.uniform();
  return v;
}

// max |a - b| / (1 + max |b|): errors relative to the tensor's scale.
double scaled_error(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(double(b[i])));
  }
  return max_diff / (1.0 + max_ref);
}

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                 const std::string& what) {
  const double err = scaled_error(got, want);
  check(err <= tolerance, what + " scaled error " + std::to_string(err) + " > " +
                              std::to_string(tolerance));
}

// Segment ids in runs of random length, with one id reused later so non-contiguous equal ids occur.
std::vector<int> random_segments(int B, int T, uint64_t seed) {
  Rng rng{seed + 77};
  std::vector<int> seg(size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    int id = 0, left = 1 + int((rng.uniform() + 1.0f) * 40);
    for (int t = 0; t < T; ++t) {
      if (left-- == 0) {
        id = (id == 2) ? 0 : id + 1;  // id 0 comes back after id 2
        left = int((rng.uniform() + 1.0f) * 40);
      }
      seg[size_t(b) * T + t] = id;
    }
  }
  return seg;
}

struct Shape {
  int B, T, NH, NKV, HS;
  size_t qkv_row() const { return size_t(NH + 2 * NKV) * HS; }  // floats per qkv row
  size_t out_row() const { return size_t(NH) * HS; }             // floats per out row
  size_t kv_row() const { return size_t(NKV) * HS; }             // floats per KV-cache row
};

std::string name(const char* what, const Shape& s, bool segments) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s B=%d T=%d NH=%d NKV=%d HS=%d%s", what, s.B, s.T, s.NH, s.NKV,
                s.HS, segments ? " segments" : "");
  return buf;
}

// Forward (out, lse) and backward (dqkv, accumulated onto a random start) vs the references.
void check_against_reference(const Shape& s, bool segments, uint64_t seed) {
  const size_t nqkv = size_t(s.B) * s.T * s.qkv_row(), nout = size_t(s.B) * s.T * s.out_row();
  const std::vector<float> qkv = random_vector(nqkv, seed, 2.0f);
  const std::vector<float> dout = random_vector(nout, seed + 1, 1.0f);
  const std::vector<float> dqkv_start = random_vector(nqkv, seed + 2, 1.0f);
  const std::vector<int> seg = random_segments(s.B, s.T, seed);
  const int* seg_ptr = segments ? seg.data() : nullptr;

  std::vector<float> out(nout), lse(size_t(s.B) * s.NH * s.T), out_ref(nout), lse_ref(lse.size());
  attention_forward(out.data(), lse.data(), qkv.data(), seg_ptr, s.B, s.T, s.NH, s.NKV, s.HS, 0.0f, 0);
  attention_forward_reference(out_ref.data(), lse_ref.data(), qkv.data(), seg_ptr, s.B, s.T, s.NH,
                              s.NKV, s.HS);
  // float32 tiles vs a float64 reference: a few ulps of the scores and sums, 1e-5 leaves room.
  check_close(out, out_ref, 1e-5, name("forward out", s, segments));
  check_close(lse, lse_ref, 1e-5, name("forward lse", s, segments));

  std::vector<float> dqkv = dqkv_start, dqkv_ref = dqkv_start;
  attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), seg_ptr, s.B,
                     s.T, s.NH, s.NKV, s.HS, 0.0f, 0);
  attention_backward_reference(dqkv_ref.data(), dout.data(), qkv.data(), seg_ptr, s.B, s.T, s.NH,
                               s.NKV, s.HS);
  for (size_t i = 0; i < nqkv; ++i) {  // compare the increments, not the random start
    dqkv[i] -= dqkv_start[i];
    dqkv_ref[i] -= dqkv_start[i];
  }
  check_close(dqkv, dqkv_ref, 2e-5, name("backward dqkv", s, segments));
}

// Feeding a sequence through the KV cache in chunks reproduces the full forward.
void check_cached(const Shape& s, const std::vector<int>& chunks, uint64_t seed) {
  const int maxT = s.T + 3;  // cache longer than the sequence: unused tail rows must not matter
  const size_t nqkv = size_t(s.B) * s.T * s.qkv_row();
  const std::vector<float> qkv = random_vector(nqkv, seed, 2.0f);
  std::vector<float> out_full(size_t(s.B) * s.T * s.out_row()), lse(size_t(s.B) * s.NH * s.T);
  attention_forward_reference(out_full.data(), lse.data(), qkv.data(), nullptr, s.B, s.T, s.NH,
                              s.NKV, s.HS);
  std::vector<float> kcache = random_vector(size_t(s.B) * maxT * s.kv_row(), seed + 5, 1.0f);
  std::vector<float> vcache = random_vector(kcache.size(), seed + 6, 1.0f);
  std::vector<float> kcache_ref = kcache, vcache_ref = vcache;
  int past = 0;
  for (size_t c = 0; past < s.T; ++c) {
    const int Tq = std::min(chunks[c % chunks.size()], s.T - past);
    const size_t W = s.qkv_row(), O = s.out_row();
    std::vector<float> chunk(size_t(s.B) * Tq * W);
    for (int b = 0; b < s.B; ++b)
      std::memcpy(&chunk[size_t(b) * Tq * W], &qkv[(size_t(b) * s.T + past) * W], sizeof(float) * Tq * W);
    std::vector<float> out(size_t(s.B) * Tq * O), out_ref(out.size()), want(out.size());
    attention_cached_forward(out.data(), kcache.data(), vcache.data(), chunk.data(), s.B, Tq, past,
                             maxT, s.NH, s.NKV, s.HS);
    attention_cached_forward_reference(out_ref.data(), kcache_ref.data(), vcache_ref.data(),
                                       chunk.data(), s.B, Tq, past, maxT, s.NH, s.NKV, s.HS);
    for (int b = 0; b < s.B; ++b)
      std::memcpy(&want[size_t(b) * Tq * O], &out_full[(size_t(b) * s.T + past) * O], sizeof(float) * Tq * O);
    check_close(out, want, 1e-5, name("cached vs full", s, false) + " past=" + std::to_string(past));
    check_close(out_ref, want, 1e-6, name("cached reference vs full", s, false));
    past += Tq;
  }
  check(kcache == kcache_ref && vcache == vcache_ref, name("cache contents", s, false));
}

// Units never change with the thread that runs them, so 1 and 2 threads agree bit for bit.
void check_threads(const Shape& s, uint64_t seed) {
  const size_t nqkv = size_t(s.B) * s.T * s.qkv_row(), nout = size_t(s.B) * s.T * s.out_row();
  const std::vector<float> qkv = random_vector(nqkv, seed, 2.0f);
  const std::vector<float> dout = random_vector(nout, seed + 1, 1.0f);
  std::vector<float> out[2], lse[2], dqkv[2];
  for (int threads = 1; threads <= 2; ++threads) {
    set_num_threads(threads);
    std::vector<float>& o = out[threads - 1];
    std::vector<float>& l = lse[threads - 1];
    std::vector<float>& d = dqkv[threads - 1];
    o.assign(nout, 0.0f);
    l.assign(size_t(s.B) * s.NH * s.T, 0.0f);
    d.assign(nqkv, 0.0f);
    attention_forward(o.data(), l.data(), qkv.data(), nullptr, s.B, s.T, s.NH, s.NKV, s.HS, 0.0f, 0);
    attention_backward(d.data(), dout.data(), qkv.data(), o.data(), l.data(), nullptr, s.B, s.T,
                       s.NH, s.NKV, s.HS, 0.0f, 0);
  }
  check(out[0] == out[1] && lse[0] == lse[1] && dqkv[0] == dqkv[1], name("threads 1 vs 2", s, false));
}

// Best of at least 3 calls and 1 s: the machine is shared, and the fastest call is the one least
// disturbed by other processes.
double seconds_per_call(const std::function<void()>& fn) {
  fn();  // warm-up
  double best = 1e30, total = 0.0;
  for (int reps = 0; reps < 3 || total < 1.0; ++reps) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, elapsed);
    total += elapsed;
  }
  return best;
}

// Baseline for the timings: GFLOP/s of independent AVX-512 FMAs on this core right now (the
// ceiling for any kernel; on a shared machine it moves with the load).
__attribute__((target("avx512f,fma"))) double fma_peak_gflops() {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
  const long steps = 20000000;
  const auto start = std::chrono::steady_clock::now();
  for (long k = 0; k < steps; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  float lanes[16], sink = 0.0f;
  for (int i = 0; i < 12; ++i) {
    _mm512_storeu_ps(lanes, acc[i]);
    sink += lanes[0];
  }
  if (sink == 12345.0f) std::printf(" ");  // keeps the loop from being optimised away
  return steps * 12 * 32 / seconds * 1e-9;
}

// Per query head, grouped-query attention does the work of multi-head attention: compare the two
// at the same NH to see that sharing kv heads costs nothing.
void bench(const Shape& s) {
  const size_t nqkv = size_t(s.B) * s.T * s.qkv_row(), nout = size_t(s.B) * s.T * s.out_row();
  const std::vector<float> qkv = random_vector(nqkv, 11, 2.0f);
  const std::vector<float> dout = random_vector(nout, 12, 1.0f);
  std::vector<float> out(nout), lse(size_t(s.B) * s.NH * s.T), dqkv(nqkv, 0.0f);
  // causal attention: 2 products of T(T+1)/2 * hs multiply-adds forward, 5 backward
  const double pairs = double(s.B) * s.NH * s.T * (s.T + 1) / 2.0, hs = s.HS;
  for (bool portable : {false, true}) {
    attention_use_portable_path(portable);
    for (int threads = 1; threads <= 2; ++threads) {
      set_num_threads(threads);
      const double fwd = seconds_per_call([&] {
        attention_forward(out.data(), lse.data(), qkv.data(), nullptr, s.B, s.T, s.NH, s.NKV, s.HS, 0.0f, 0);
      });
      const double bwd = seconds_per_call([&] {
        attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), nullptr,
                           s.B, s.T, s.NH, s.NKV, s.HS, 0.0f, 0);
      });
      std::printf("%-9s B=%d T=%-4d NH=%-2d NKV=%-2d HS=%d threads=%d  forward %8.2f ms (%5.1f GFLOP/s)  "
                  "backward %8.2f ms (%5.1f GFLOP/s)\n",
                  portable ? "portable" : "avx512", s.B, s.T, s.NH, s.NKV, s.HS, threads, fwd * 1e3,
                  4 * pairs * hs / fwd * 1e-9, bwd * 1e3, 10 * pairs * hs / bwd * 1e-9);
    }
  }
  attention_use_portable_path(false);
}

}  // namespace

int main(int argc, char** argv) {
  const bool run_bench = !(argc > 1 && std::string(argv[1]) == "--no-bench");
  std::printf("cpu has avx512: %s\n", cpu_has_avx512() ? "yes" : "no");
  const Shape shapes[] = {
      // multi-head (NKV = NH)
      {1, 1, 1, 1, 8}, {2, 5, 3, 3, 8}, {1, 67, 4, 4, 17}, {3, 130, 3, 3, 16}, {2, 130, 3, 3, 17},
      {1, 200, 2, 2, 64}, {2, 64, 3, 3, 12}, {1, 129, 1, 1, 64},
      // grouped-query, including one kv head
      {1, 1, 2, 1, 10}, {2, 5, 4, 1, 6}, {1, 67, 4, 2, 17}, {2, 130, 6, 2, 10}, {2, 70, 9, 3, 64}};
  for (bool portable : {false, true}) {
    attention_use_portable_path(portable);
    for (int threads = 1; threads <= 2; ++threads) {
      set_num_threads(threads);
      uint64_t seed = 1;
      for (const Shape& s : shapes) {
        check_against_reference(s, false, seed++);
        check_against_reference(s, true, seed++);
      }
      check_cached({2, 70, 3, 3, 8}, {3, 1, 1, 5, 64}, seed++);
      check_cached({1, 140, 3, 3, 17}, {1}, seed++);
      check_cached({1, 9, 1, 1, 8}, {9}, seed++);
      check_cached({1, 6, 2, 2, 300}, {1}, seed++);  // hs = 300: decoding dot products in pieces
      check_cached({2, 70, 9, 3, 64}, {3, 1, 1, 5, 64}, seed++);
      check_cached({1, 40, 4, 1, 10}, {1}, seed++);
    }
    check_threads({2, 130, 3, 3, 16}, 99);
    check_threads({2, 130, 6, 2, 16}, 100);
    std::printf("%s path: %s\n", portable ? "portable" : "avx512", failures ? "FAILED" : "ok");
  }
  attention_use_portable_path(false);
  if (run_bench && failures == 0) {
    if (cpu_has_avx512()) std::printf("AVX-512 FMA peak of one core now: %.1f GFLOP/s\n", fma_peak_gflops());
    bench({4, 256, 12, 12, 64});
    bench({4, 1024, 12, 12, 64});
    bench({4, 256, 9, 9, 64});  // SmolLM2-135M's 9 query heads, as multi-head ...
    bench({4, 256, 9, 3, 64});  // ... and as it is, sharing 3 kv heads
  }
  std::printf("%s\n", failures ? "FAILED" : "all checks passed");
  return failures ? 1 : 0;
}
