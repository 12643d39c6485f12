// Standalone sgemm / matmul harness: validates the fast paths against a double-precision reference
// at awkward sizes for all four transpose combinations, then times the GPT-2 (124M) linear layers.
//
// Build (from the repository root; the _avx512 and _avx2 files get their SIMD flags, the rest is
// baseline x86-64, exactly as CMakeLists.txt does):
//   g++ -O3 -std=c++17 -DGPTUNE_X86=1 -Inative/include -Inative -mavx512f -mavx512bw -mavx512dq
//       -mavx512vl -mfma -mavx2 -c native/cpu/sgemm_avx512.cc -o /tmp/sgemm_avx512.o &&
//   g++ -O3 -std=c++17 -DGPTUNE_X86=1 -Inative/include -Inative -mavx2 -mfma
//       -c native/cpu/sgemm_avx2.cc -o /tmp/sgemm_avx2.o &&
//   g++ -O3 -std=c++17 -DGPTUNE_X86=1 -Inative/include -Inative native/cpu/sgemm.cc
//       native/cpu/parallel.cc native/cpu/matmul.cc native/cpu/simd_level.cc
//       bench/kernels/sgemm_harness.cc /tmp/sgemm_avx512.o /tmp/sgemm_avx2.o -lpthread -ldl
//       -o /tmp/sgemm_harness
// (three commands, shown wrapped; each is one line).
// Run:  /tmp/sgemm_harness [repeats=7] [--no-validate] [--only=<layer name substring>]
// When OpenBLAS is installed (apt-get install libopenblas0-pthread) it is dlopen()ed and timed
// at the same shapes in the same run, as the baseline (OPENBLAS_CORETYPE=SkylakeX is set for it:
// Debian's 0.3.21 misdetects this CPU otherwise).
// Block sizes can be tried without editing the source: add -DGPTUNE_SGEMM_MR=14 (or _KC, _NC) to
// the first command.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/sgemm.h"
#include "gptune/kernels.h"

using namespace gptune::cpu;

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// C = alpha * op(A) op(B) + beta * C0 (+ bias) in double, and the magnitude bound
// |alpha| * sum_k |a_ik b_kj| + |beta c0| + |bias| that float rounding errors scale with.
void reference(bool ta, bool tb, int M, int N, int K, float alpha, const std::vector<float>& A, int lda,
               const std::vector<float>& B, int ldb, float beta, const float* bias, const std::vector<float>& C0,
               int ldc, std::vector<double>& C, std::vector<double>& magnitude) {
  C.assign(static_cast<size_t>(M) * ldc, 0.0);
  magnitude.assign(C.size(), 0.0);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double sum = 0, abs_sum = 0;
      for (int k = 0; k < K; ++k) {
        double a = ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        double b = tb ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        sum += a * b;
        abs_sum += std::fabs(a * b);
      }
      const size_t idx = static_cast<size_t>(i) * ldc + j;
      const double c0 = beta == 0.0f ? 0.0 : C0[idx];
      const double b = bias ? bias[j] : 0.0;
      C[idx] = alpha * sum + beta * c0 + b;
      magnitude[idx] = std::fabs(alpha) * abs_sum + std::fabs(beta * c0) + std::fabs(b);
    }
}

int failures = 0;

// cblas_sgemm from OpenBLAS, if it can be loaded: the baseline in the timing table.
using CblasSgemm = void (*)(int layout, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, float beta, float* C, int ldc);
CblasSgemm openblas_sgemm = nullptr;
void (*openblas_set_threads)(int) = nullptr;

void load_openblas() {
  setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
  for (const char* name : {"libopenblas.so.0", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"}) {
    if (void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
      openblas_sgemm = reinterpret_cast<CblasSgemm>(dlsym(lib, "cblas_sgemm"));
      openblas_set_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "openblas_set_num_threads"));
      if (openblas_sgemm && openblas_set_threads) return;
    }
  }
  openblas_sgemm = nullptr;
}

// One sgemm call at a shape, checked element by element. Tolerance: each output is a float sum of
// K products plus the alpha/beta/bias terms, so its rounding error is at most about (K + 3) units
// of float rounding (2^-24) times the magnitude bound; 2x that leaves room for FMA-vs-separate
// rounding differences but still catches any missing or doubled term when K is modest.
void check_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, float beta, bool with_bias, int pad,
                 uint32_t seed) {
  const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  std::vector<float> A = random_vector(static_cast<size_t>(ta ? K : M) * lda, seed);
  std::vector<float> B = random_vector(static_cast<size_t>(tb ? N : K) * ldb, seed + 1);
  std::vector<float> C0 = random_vector(static_cast<size_t>(M) * ldc, seed + 2);
  std::vector<float> bias = random_vector(N, seed + 3);
  if (beta == 0.0f) std::fill(C0.begin(), C0.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<double> ref, mag;
  reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, with_bias ? bias.data() : nullptr, C0, ldc, ref, mag);
  // Variants: the dispatching entry point with 1 and 2 threads, the portable path (what CPUs
  // without AVX-512 run), the naive reference (no bias argument, so only without bias) and the
  // unpacked fallback (used when packing buffers cannot be allocated).
  const char* variant_names[] = {"1 thread", "2 threads", "portable", "sgemm_reference", "unpacked", "avx2"};
  for (int variant = 0; variant < 6; ++variant) {
    if (variant == 5 && !cpu_has_avx2()) continue;
    if (variant == 3 && with_bias) continue;
    std::vector<float> C = C0;
    const float* bias_ptr = with_bias ? bias.data() : nullptr;
    if (variant <= 1) {
      set_num_threads(variant + 1);
      sgemm_bias(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, bias_ptr, C.data(), ldc);
    } else if (variant == 2 || variant == 4 || variant == 5) {
      if (K == 0) continue;  // the paths below sgemm() require K >= 1
      const GemmProblem p{ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc, bias_ptr};
      if (variant == 2) sgemm_blocked_portable(p);
      else if (variant == 4) sgemm_unpacked(p);
      else sgemm_blocked_avx2(p);
    } else {
      sgemm_reference(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    }
    double worst = 0;
    int bad = 0;
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < ldc; ++j) {
        const size_t idx = static_cast<size_t>(i) * ldc + j;
        if (j >= N) {  // padding columns must be untouched
          if (!(std::isnan(C0[idx]) ? std::isnan(C[idx]) : C[idx] == C0[idx])) ++bad;
          continue;
        }
        const double tol = 2.0 * (K + 3) * std::ldexp(1.0, -24) * mag[idx] + 1e-30;
        const double err = std::fabs(C[idx] - ref[idx]);
        if (!(err <= tol)) ++bad;  // NaN fails too
        worst = std::max(worst, err / tol);
      }
    if (bad) {
      ++failures;
      std::printf("FAIL sgemm (%s) %c%c M=%d N=%d K=%d alpha=%g beta=%g bias=%d pad=%d: %d bad, worst err/tol %.3g\n",
                  variant_names[variant], ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, with_bias, pad, bad, worst);
    }
  }
}

void validate() {
  const int shapes[][3] = {{1, 1, 1},    {1, 7, 33},    {7, 1, 5},      {2, 50, 17},    {3, 33, 1},
                           {4, 129, 70}, {5, 31, 16},   {11, 32, 15},   {12, 33, 17},   {13, 64, 31},
                           {25, 97, 48}, {50, 37, 129}, {129, 65, 400}, {37, 1100, 800}, {1, 2100, 769},
                           {300, 20, 9}, {2, 1031, 3},  {64, 2, 1000}, {2, 45, 2100}, {4, 7, 3000}};
  int count = 0;
  for (auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const uint32_t seed = 1000 + 17 * count++;
        check_sgemm(ta, tb, s[0], s[1], s[2], 1.0f, 0.0f, false, 0, seed);
        check_sgemm(ta, tb, s[0], s[1], s[2], -0.7f, 1.3f, true, 3, seed + 5);
        check_sgemm(ta, tb, s[0], s[1], s[2], 1.0f, 1.0f, false, 1, seed + 9);
      }
  check_sgemm(false, true, 9, 11, 0, 1.0f, 0.5f, true, 0, 7);  // K = 0: C = beta * C + bias
  std::printf("sgemm validation: %s (%d shapes x 4 transposes x 3 alpha/beta/bias/stride cases; 1 and 2 threads, "
              "AVX2 path, portable path, naive reference, unpacked fallback)\n",
              failures ? "FAILED" : "ok", count / 4);
}

// matmul_forward / matmul_backward at one shape against double-precision sums.
void check_matmul(int N, int C, int OC, uint32_t seed) {
  std::vector<float> inp = random_vector(static_cast<size_t>(N) * C, seed);
  std::vector<float> weight = random_vector(static_cast<size_t>(OC) * C, seed + 1);
  std::vector<float> bias = random_vector(OC, seed + 2);
  std::vector<float> dout = random_vector(static_cast<size_t>(N) * OC, seed + 3);
  std::vector<float> dinp = random_vector(static_cast<size_t>(N) * C, seed + 4), dinp0 = dinp;
  std::vector<float> dweight = random_vector(static_cast<size_t>(OC) * C, seed + 5), dweight0 = dweight;
  std::vector<float> dbias = random_vector(OC, seed + 6), dbias0 = dbias;
  std::vector<float> out(static_cast<size_t>(N) * OC, std::numeric_limits<float>::quiet_NaN());
  matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), N, C, OC);
  auto expect = [&](const char* what, double got, double want, double magnitude, int terms) {
    const double tol = 2.0 * (terms + 3) * std::ldexp(1.0, -24) * magnitude;
    if (!(std::fabs(got - want) <= tol)) {
      if (failures++ < 20) std::printf("FAIL %s N=%d C=%d OC=%d: got %.9g want %.9g\n", what, N, C, OC, got, want);
    }
  };
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = bias[o], m = std::fabs(bias[o]);
      for (int c = 0; c < C; ++c) {
        s += double(inp[n * C + c]) * weight[o * C + c];
        m += std::fabs(double(inp[n * C + c]) * weight[o * C + c]);
      }
      expect("matmul_forward", out[n * OC + o], s, m, C);
    }
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      double s = dinp0[n * C + c], m = std::fabs(s);
      for (int o = 0; o < OC; ++o) {
        s += double(dout[n * OC + o]) * weight[o * C + c];
        m += std::fabs(double(dout[n * OC + o]) * weight[o * C + c]);
      }
      expect("matmul_backward dinp", dinp[n * C + c], s, m, OC);
    }
  for (int o = 0; o < OC; ++o) {
    for (int c = 0; c < C; ++c) {
      double s = dweight0[o * C + c], m = std::fabs(s);
      for (int n = 0; n < N; ++n) {
        s += double(dout[n * OC + o]) * inp[n * C + c];
        m += std::fabs(double(dout[n * OC + o]) * inp[n * C + c]);
      }
      expect("matmul_backward dweight", dweight[o * C + c], s, m, N);
    }
    double s = dbias0[o], m = std::fabs(s);
    for (int n = 0; n < N; ++n) s += dout[n * OC + o], m += std::fabs(dout[n * OC + o]);
    expect("matmul_backward dbias", dbias[o], s, m, N);
  }
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// best / median are wall-clock rates. per_core is flops per CPU-second this process got, times
// the thread count: on a machine shared with other jobs it estimates what the code would reach
// on idle cores (it hides time a thread spends waiting for the other, so read it with best).
struct Timing {
  double best_gflops, median_gflops, best_ms, per_core_gflops;
};

template <typename Fn>
Timing time_gemm(double flops, int repeats, int threads, Fn&& fn) {
  fn();  // warm-up: first-touch of buffers, packing scratch allocation
  std::vector<double> seconds, cpu_seconds;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_seconds(), c0 = process_cpu_seconds();
    fn();
    seconds.push_back(now_seconds() - t0);
    cpu_seconds.push_back(process_cpu_seconds() - c0);
  }
  std::sort(seconds.begin(), seconds.end());
  std::sort(cpu_seconds.begin(), cpu_seconds.end());
  return {flops / seconds.front() * 1e-9, flops / seconds[seconds.size() / 2] * 1e-9, seconds.front() * 1e3,
          flops / (cpu_seconds.front() / threads) * 1e-9};
}

void benchmark(int repeats, const std::string& only) {
  struct Layer {
    const char* name;
    int C, OC;
  };
  const Layer layers[] = {{"qkv", 768, 2304}, {"attn_proj", 768, 768}, {"fc", 768, 3072},
                          {"fc_proj", 3072, 768}, {"lm_head", 768, 50257}};
  const int N = 1024;  // B*T rows
  std::printf("\n%-10s %-8s %-18s | %-26s | %-26s | %-26s\n", "layer", "gemm", "M x N x K", "gptune, 1 thread GFLOP/s",
              "gptune, 2 threads GFLOP/s", openblas_sgemm ? "OpenBLAS, 2 threads" : "(OpenBLAS not found)");
  std::printf("%-10s %-8s %-18s | %8s %8s %8s | %8s %8s %8s | %8s %8s %8s\n", "", "", "", "best", "median", "per-core",
              "best", "median", "per-core", "best", "median", "per-core");
  for (const Layer& layer : layers) {
    if (!only.empty() && std::string(layer.name).find(only) == std::string::npos) continue;
    const int C = layer.C, OC = layer.OC;
    std::vector<float> inp = random_vector(static_cast<size_t>(N) * C, 1), weight = random_vector(static_cast<size_t>(OC) * C, 2);
    std::vector<float> bias = random_vector(OC, 3), dout = random_vector(static_cast<size_t>(N) * OC, 4);
    std::vector<float> out(static_cast<size_t>(N) * OC), dinp(static_cast<size_t>(N) * C), dweight(static_cast<size_t>(OC) * C);
    const double flops = 2.0 * N * C * OC;
    struct Gemm {
      const char* name;
      char shape[64];
      std::function<void()> run;
    };
    Gemm gemms[3] = {
        {"fwd NT", "", [&] { matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC); }},
        {"dinp NN", "", [&] { matmul_backward(dinp.data(), nullptr, nullptr, dout.data(), inp.data(), weight.data(), N, C, OC); }},
        {"dW TN", "", [&] { matmul_backward(nullptr, dweight.data(), nullptr, dout.data(), inp.data(), weight.data(), N, C, OC); }},
    };
    std::snprintf(gemms[0].shape, 64, "%dx%dx%d", N, OC, C);
    std::snprintf(gemms[1].shape, 64, "%dx%dx%d", N, C, OC);
    std::snprintf(gemms[2].shape, 64, "%dx%dx%d", OC, C, N);
    // The same three gemms through OpenBLAS (row-major cblas; bias not fused, beta as in matmul).
    std::function<void()> openblas_runs[3] = {
        [&] { openblas_sgemm(101, 111, 112, N, OC, C, 1.0f, inp.data(), C, weight.data(), C, 0.0f, out.data(), OC); },
        [&] { openblas_sgemm(101, 111, 111, N, C, OC, 1.0f, dout.data(), OC, weight.data(), C, 1.0f, dinp.data(), C); },
        [&] { openblas_sgemm(101, 112, 111, OC, C, N, 1.0f, dout.data(), OC, inp.data(), C, 1.0f, dweight.data(), C); },
    };
    for (int gi = 0; gi < 3; ++gi) {
      Gemm& g = gemms[gi];
      Timing t[2], ob{0, 0, 0, 0};
      for (int threads = 1; threads <= 2; ++threads) {
        set_num_threads(threads);
        t[threads - 1] = time_gemm(flops, threads == 1 ? std::max(3, repeats / 2) : repeats, threads, g.run);
      }
      if (openblas_sgemm) {
        openblas_set_threads(2);
        ob = time_gemm(flops, repeats, 2, openblas_runs[gi]);
        // OpenBLAS's workers spin for a while after each call; without this pause they hold a
        // core through the next gptune timing (which then looks like a 1-core run).
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      std::printf("%-10s %-8s %-18s | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f\n", layer.name, g.name,
                  g.shape, t[0].best_gflops, t[0].median_gflops, t[0].per_core_gflops, t[1].best_gflops,
                  t[1].median_gflops, t[1].per_core_gflops, ob.best_gflops, ob.median_gflops, ob.per_core_gflops);
      std::fflush(stdout);
    }
  }
  // Decoding: one row through the lm head (memory-bound: streams the 154 MB weight).
  if (only.empty() || only == "decode") {
    const int C = 768, OC = 50257;
    std::vector<float> inp = random_vector(C, 1), weight = random_vector(static_cast<size_t>(OC) * C, 2);
    std::vector<float> out(OC);
    set_num_threads(2);
    Timing t = time_gemm(2.0 * C * OC, repeats, 2, [&] { matmul_forward(out.data(), inp.data(), weight.data(), nullptr, 1, C, OC); });
    std::printf("%-10s %-8s %-18s | %8s %8s %8s | %8.1f %8.1f %8s | (%.2f ms, %.1f GB/s of weight)\n", "lm_head", "decode",
                "1x50257x768", "", "", "", t.best_gflops, t.median_gflops, "", t.best_ms,
                4.0 * C * OC / (t.best_ms * 1e-3) * 1e-9);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 7;
  bool validate_first = true;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--no-validate") validate_first = false;
    else if (arg.rfind("--only=", 0) == 0) only = arg.substr(7);
    else repeats = std::max(1, std::atoi(arg.c_str()));
  }
  std::printf("simd level: %s, threads available: %d, micro-tile %dx%d\n", simd_level(), num_threads(),
              sgemm_avx512_tile_rows(), sgemm_avx512_tile_cols());
  load_openblas();
  if (validate_first) {
    validate();
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      check_matmul(1, 7, 5, 11);
      check_matmul(13, 33, 50, 12);
      check_matmul(70, 40, 129, 13);
      check_matmul(4, 768, 77, 14);
    }
    std::printf("matmul validation: %s\n", failures ? "FAILED" : "ok");
    if (failures) return 1;
  }
  benchmark(repeats, only);
  return 0;
}
