// Decoding's fp32 matrix-vector products in isolation: GB/s of weight streamed by gptune's
// matmul_forward at N = 1 (the path every generated token takes through each linear layer), beside
// a plain loop doing the same product and a plain read of the same bytes, in the same run.
//
// Rows, per layer shape (GPT-2 124M and SmolLM2-135M, fused as gptune runs them):
//   read         sum of the weight's floats, the threads splitting the rows in halves: the memory
//                bandwidth a GEMV of this size can reach at best
//   plain loop   out[o] = dot(W[o,:], x) + bias[o], one row at a time with one 16-float
//                accumulator, the rows split in halves over the threads (the obvious GEMV)
//   gptune       matmul_forward(out, x, W, bias, 1, C, OC): what decoding calls
//   ... 1 thr    the same three on one thread (the pool at 1 thread)
// At N = 1 a token reads every weight once, so each call here reads a weight that is not in any
// cache: the calls cycle through copies of it, at least 256 MB together (the whole decode step's
// weights do not fit in cache either). The variants run interleaved, round by round, so a burst
// of load from other processes falls on all of them; the table gives each one's best and median
// round (GB/s of weight bytes over the time per call).
//
// Build and run: scripts/gemv_harness.sh [rounds=15] [--threads=2]
// (GPTUNE_SIMD=avx2 or portable in the environment times those paths.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/parallel.h"
#include "gptune/kernels.h"

using namespace gptune::cpu;

namespace {

constexpr size_t kColdBytes = size_t{256} << 20;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A 64-byte aligned float buffer (as the tensor arenas align their tensors).
struct Floats {
  explicit Floats(size_t n) : n(n), p(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {}
  ~Floats() { std::free(p); }
  Floats(const Floats&) = delete;
  Floats& operator=(const Floats&) = delete;
  size_t n;
  float* p;
};

void fill_random(float* x, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) x[i] = dist(rng);
}

// out[o] = dot(W[o,:], x) + bias[o] for o in [begin, end): one row at a time, sixteen partial sums
// the compiler keeps in one vector register.
void plain_rows(float* out, const float* x, const float* W, const float* bias, int C, int64_t begin, int64_t end) {
  for (int64_t o = begin; o < end; ++o) {
    const float* w = W + o * C;
    float acc[16] = {};
    int k = 0;
    for (; k + 16 <= C; k += 16)
      for (int l = 0; l < 16; ++l) acc[l] += w[k + l] * x[k + l];
    float sum = 0.0f;
    for (; k < C; ++k) sum += w[k] * x[k];
    for (float a : acc) sum += a;
    out[o] = sum + (bias ? bias[o] : 0.0f);
  }
}

float read_rows(const float* W, int C, int64_t begin, int64_t end) {
  float acc[16] = {};
  const float* w = W + begin * C;
  const int64_t n = (end - begin) * C;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += w[i + l];
  for (; i < n; ++i) acc[0] += w[i];
  float sum = 0.0f;
  for (float a : acc) sum += a;
  return sum;
}

struct Shape {
  const char* name;
  int C, OC;
  bool bias;
};

struct Result {
  std::string shape, variant;
  double best_gbs, median_gbs, best_us;
};

}  // namespace

int main(int argc, char** argv) {
  int rounds = 15, threads = 2;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) threads = std::atoi(argv[i] + 10);
    else rounds = std::atoi(argv[i]);
  }
  if (rounds < 1 || threads < 1) {
    std::fprintf(stderr, "usage: gemv_harness [rounds >= 1] [--threads=N >= 1]\n");
    return 2;
  }
  const Shape shapes[] = {
      {"SmolLM2 attn qkv 576->960", 576, 960, false}, {"SmolLM2 attn out 576->576", 576, 576, false},
      {"SmolLM2 mlp gate|up 576->3072", 576, 3072, false}, {"SmolLM2 mlp down 1536->576", 1536, 576, false},
      {"SmolLM2 lm head 576->49152", 576, 49152, false}, {"GPT-2 attn qkv 768->2304", 768, 2304, true},
      {"GPT-2 attn out 768->768", 768, 768, true}, {"GPT-2 mlp fc 768->3072", 768, 3072, true},
      {"GPT-2 mlp proj 3072->768", 3072, 768, true}, {"GPT-2 lm head 768->50257", 768, 50257, false},
  };
  static const char* kSimd[] = {"portable", "avx2", "avx512"};
  std::printf("fp32 GEMV (N = 1, weights cold), %d threads, SIMD %s, %d interleaved rounds\n", threads,
              kSimd[static_cast<int>(active_simd())], rounds);
  std::printf("%-31s %-13s %9s %9s %9s\n", "layer (C -> OC)", "variant", "best GB/s", "med GB/s", "best us");
  std::vector<Result> results;
  volatile float sink = 0.0f;
  for (const Shape& s : shapes) {
    const size_t weight_floats = size_t(s.C) * s.OC, bytes = weight_floats * sizeof(float);
    const size_t copies = std::max<size_t>(1, (kColdBytes + bytes - 1) / bytes);
    std::vector<std::unique_ptr<Floats>> weights;
    for (size_t c = 0; c < copies; ++c) {
      weights.push_back(std::make_unique<Floats>(weight_floats));
      fill_random(weights.back()->p, weight_floats, 17 + static_cast<uint32_t>(c));
    }
    Floats x(s.C), bias(s.OC), out(s.OC), want(s.OC);
    fill_random(x.p, s.C, 1);
    fill_random(bias.p, s.OC, 2);
    const float* b = s.bias ? bias.p : nullptr;
    size_t next = 0;
    auto weight = [&] { return weights[next++ % copies]->p; };
    struct Variant {
      const char* name;
      int threads;
      std::function<void()> call;
    };
    const Variant variants[] = {
        {"read", threads, [&] {
           const float* w = weight();
           parallel_for(s.OC, 1, [&](int64_t begin, int64_t end, int) { sink = sink + read_rows(w, s.C, begin, end); });
         }},
        {"plain loop", threads, [&] {
           const float* w = weight();
           parallel_for(s.OC, 1, [&](int64_t begin, int64_t end, int) { plain_rows(want.p, x.p, w, b, s.C, begin, end); });
         }},
        {"gptune", threads, [&] { matmul_forward(out.p, x.p, weight(), b, 1, s.C, s.OC); }},
        {"read 1 thr", 1, [&] { sink = sink + read_rows(weight(), s.C, 0, s.OC); }},
        {"plain 1 thr", 1, [&] { plain_rows(want.p, x.p, weight(), b, s.C, 0, s.OC); }},
        {"gptune 1 thr", 1, [&] { matmul_forward(out.p, x.p, weight(), b, 1, s.C, s.OC); }},
    };
    constexpr int kVariants = sizeof(variants) / sizeof(variants[0]);
    // Calls per timed round: ~20 ms of work at ~10 GB/s, and at least one pass over the copies.
    const int calls = static_cast<int>(std::max<size_t>(copies, size_t(20e-3 * 10e9 / bytes) + 1));
    std::vector<double> seconds[kVariants];
    for (int r = -1; r < rounds; ++r) {  // round -1 warms up (page faults, the pool's start)
      for (int v = 0; v < kVariants; ++v) {
        set_num_threads(variants[v].threads);
        const double t0 = now_seconds();
        for (int c = 0; c < calls; ++c) variants[v].call();
        if (r >= 0) seconds[v].push_back((now_seconds() - t0) / calls);
      }
    }
    // The product itself is checked by the test suite (test/kernels/matmul.test.ts); here only that
    // gptune and the plain loop computed the same thing on the last weight both used.
    const float* last = weights[(next - 1) % copies]->p;
    set_num_threads(threads);
    matmul_forward(out.p, x.p, last, b, 1, s.C, s.OC);
    plain_rows(want.p, x.p, last, b, s.C, 0, s.OC);
    for (int o = 0; o < s.OC; ++o) {
      if (std::fabs(out.p[o] - want.p[o]) > 1e-3f * (1.0f + std::fabs(want.p[o]))) {
        std::fprintf(stderr, "%s: gptune %g != plain loop %g at output %d\n", s.name, out.p[o], want.p[o], o);
        return 1;
      }
    }
    for (int v = 0; v < kVariants; ++v) {
      std::sort(seconds[v].begin(), seconds[v].end());
      const double best = seconds[v].front(), median = seconds[v][seconds[v].size() / 2];
      results.push_back({s.name, variants[v].name, bytes / best * 1e-9, bytes / median * 1e-9, best * 1e6});
      const Result& res = results.back();
      std::printf("%-31s %-13s %9.1f %9.1f %9.1f\n", v == 0 ? s.name : "", res.variant.c_str(), res.best_gbs,
                  res.median_gbs, res.best_us);
    }
    std::fflush(stdout);
  }
  std::printf("{\"gemv\":{\"threads\":%d,\"simd\":\"%s\",\"rounds\":%d,\"rows\":[", threads,
              kSimd[static_cast<int>(active_simd())], rounds);
  for (size_t i = 0; i < results.size(); ++i)
    std::printf("%s{\"layer\":\"%s\",\"variant\":\"%s\",\"best_gbs\":%.2f,\"median_gbs\":%.2f,\"best_us\":%.1f}",
                i ? "," : "", results[i].shape.c_str(), results[i].variant.c_str(), results[i].best_gbs,
                results[i].median_gbs, results[i].best_us);
  std::printf("]}}\n");
  return 0;
}
