// Standalone check and timing harness for the CPU encoder, LayerNorm, GELU, elementwise,
// cross-entropy, AdamW, RMSNorm, RoPE, SwiGLU and LoRA-dropout kernels and the frozen-weight building blocks, usable without the N-API binding. Every kernel is compared with a
// float64 reference written here; the row kernels are checked on both paths (portable and, when
// the CPU has it, AVX-512) as well as through the public multithreaded entry point. Then it times
// the hot kernels at GPT-2 124M and SmolLM2-135M shapes on 1 and 2 threads.
//
// Build and run from the repository root with scripts/kernels_harness.sh: it compiles the kernel
// sources at baseline x86-64, the *_avx512.cc ones with AVX-512 flags, links them with this file.
// Exit status 0 when every check passes. `--no-timing` skips the timings, `--timing-only` the checks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/row_kernels.h"
#include "gptune/kernels.h"
#include "dropout_mask_ref.h"

using namespace gptune;

namespace {

int failures = 0;

// Records one comparison: every element must satisfy |got - want| <= rel * |want| + abs; prints
// the worst ratio |got - want| / (rel * |want| + abs), which must be <= 1.
void expect_close(const std::string& what, const float* got, const double* want, size_t n, double rel,
                  double abs) {
  double worst = 0.0;
  size_t worst_at = 0;
  for (size_t i = 0; i < n; ++i) {
    double diff = std::fabs(got[i] - want[i]);
    double ratio = diff == 0 ? 0.0 : diff / (rel * std::fabs(want[i]) + abs);
    if (!(ratio <= worst)) {  // also catches NaN
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_at = i;
    }
  }
  bool ok = worst <= 1.0;
  if (!ok) ++failures;
  char detail[160] = "";
  if (!ok) std::snprintf(detail, sizeof detail, " at %zu: got %.9g want %.9g", worst_at, got[worst_at], want[worst_at]);
  std::printf("%-4s %-58s %5.2f of tol (rel %.0e, abs %.0e)%s\n", ok ? "ok" : "FAIL", what.c_str(), worst, rel, abs,
              detail);
}

void expect_true(const std::string& what, bool ok) {
  if (!ok) ++failures;
  std::printf("%-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
}

std::mt19937_64 rng(20240611);

std::vector<float> random_floats(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<int> random_ints(size_t n, int lo, int hi_inclusive) {
  std::uniform_int_distribution<int> dist(lo, hi_inclusive);
  std::vector<int> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ---- float64 references ----

// 0.5 (1 + tanh(u)) in float64. For u < 0 it uses the equal form e^{2u} / (1 + e^{2u}): 1 + tanh(u)
// cancels even in double below x = -7 (gelu < 1e-15), where float kernels still have digits.
double gelu_half_one_plus_tanh(double u) { return u >= 0 ? 0.5 * (1.0 + std::tanh(u)) : std::exp(2 * u) / (1.0 + std::exp(2 * u)); }

double gelu_ref(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return x * gelu_half_one_plus_tanh(k * (x + 0.044715 * x * x * x));
}

double gelu_grad_ref(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  double u = k * (x + 0.044715 * x * x * x);
  double t = std::tanh(u);
  return gelu_half_one_plus_tanh(u) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

struct RowKernelSet {
  const char* name;
  void (*gelu_forward)(float*, const float*, int64_t);
  void (*gelu_backward)(float*, const float*, const float*, int64_t);
  void (*layernorm_forward)(float*, float*, float*, const float*, const float*, const float*, int64_t, int, float);
  void (*layernorm_backward)(float*, float*, float*, const float*, const float*, const float*, const float*,
                             const float*, int64_t, int);
  float (*logsumexp)(const float*, int, int*);
  void (*scaled_exp)(float*, const float*, float, float, int);
  void (*softmax)(float*, const float*, float, int);
  double (*sum_squares)(const float*, int64_t);
  void (*rmsnorm_forward)(float*, float*, const float*, const float*, int64_t, int, float);
  void (*rmsnorm_backward)(float*, float*, const float*, const float*, const float*, const float*, int64_t, int);
  void (*rope_rotate)(float*, const float*, const float*, int, int, bool);
  void (*swiglu_forward)(float*, const float*, int64_t, int);
  void (*swiglu_backward)(float*, const float*, const float*, int64_t, int);
  void (*dropout_tile)(float*, int64_t, const float*, int64_t, int64_t, int, int64_t, int, int, const DropoutMask&, bool);
};

std::vector<RowKernelSet> row_kernel_sets() {
  std::vector<RowKernelSet> sets;
  sets.push_back({"portable", cpu::portable::gelu_forward, cpu::portable::gelu_backward,
                  cpu::portable::layernorm_forward, cpu::portable::layernorm_backward,
                  cpu::portable::logsumexp, cpu::portable::scaled_exp, cpu::portable::softmax,
                  cpu::portable::sum_squares, cpu::portable::rmsnorm_forward, cpu::portable::rmsnorm_backward,
                  cpu::portable::rope_rotate, cpu::portable::swiglu_forward, cpu::portable::swiglu_backward,
                  cpu::portable::dropout_tile});
  if (cpu::cpu_has_avx512())
    sets.push_back({"avx512", cpu::avx512::gelu_forward, cpu::avx512::gelu_backward,
                    cpu::avx512::layernorm_forward, cpu::avx512::layernorm_backward,
                    cpu::avx512::logsumexp, cpu::avx512::scaled_exp, cpu::avx512::softmax,
                    cpu::avx512::sum_squares, cpu::avx512::rmsnorm_forward, cpu::avx512::rmsnorm_backward,
                    cpu::avx512::rope_rotate, cpu::avx512::swiglu_forward, cpu::avx512::swiglu_backward,
                    cpu::avx512::dropout_tile});
  return sets;
}

// ---- checks ----

void check_exp_accuracy(const RowKernelSet& k) {
  // exp through scaled_exp(shift 0, scale 1) on a dense sweep of [-87, 88], in float ulps of the
  // correctly rounded result.
  const int n = 1 << 20;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = -87.0f + 175.0f * i / n;
  k.scaled_exp(y.data(), x.data(), 0.0f, 1.0f, n);
  double worst_ulps = 0.0;
  for (int i = 0; i < n; ++i) {
    double want = std::exp(static_cast<double>(x[i]));
    float rounded = static_cast<float>(want);
    double ulp = std::nextafter(rounded, INFINITY) - rounded;
    worst_ulps = std::max(worst_ulps, std::fabs(y[i] - want) / ulp);
  }
  bool ok = worst_ulps <= 4.0;  // float expf is within 1 ulp; 4 leaves room for the polynomial
  if (!ok) ++failures;
  std::printf("%-4s %-58s %.2f ulp\n", ok ? "ok" : "FAIL", (std::string(k.name) + " exp max error [-87,88]").c_str(),
              worst_ulps);
  // Special values: -inf -> 0, large -> inf, NaN -> NaN.
  float specials[3] = {-INFINITY, 100.0f, NAN}, out[3];
  k.scaled_exp(out, specials, 0.0f, 1.0f, 3);
  expect_true(std::string(k.name) + " exp(-inf)=0, exp(100)=inf, exp(NaN)=NaN",
              out[0] == 0.0f && std::isinf(out[1]) && std::isnan(out[2]));
}

void check_gelu(const RowKernelSet& k) {
  for (int64_t n : {1, 7, 33, 1000}) {
    auto x = random_floats(n, -6.0f, 6.0f);
    auto dout = random_floats(n, -1.0f, 1.0f);
    auto dinp = random_floats(n, -1.0f, 1.0f);
    std::vector<float> out(n);
    std::vector<double> want(n), want_dinp(n);
    for (int64_t i = 0; i < n; ++i) {
      want[i] = gelu_ref(x[i]);
      want_dinp[i] = dinp[i] + dout[i] * gelu_grad_ref(x[i]);
    }
    k.gelu_forward(out.data(), x.data(), n);
    k.gelu_backward(dinp.data(), x.data(), dout.data(), n);
    // A few float roundings (u = 6e-8) of intermediates as large as |x| <= 6: rel 1e-6, abs 1e-6.
    expect_close(std::string(k.name) + " gelu_forward n=" + std::to_string(n), out.data(), want.data(), n, 1e-6, 1e-6);
    expect_close(std::string(k.name) + " gelu_backward (accumulating) n=" + std::to_string(n), dinp.data(),
                 want_dinp.data(), n, 1e-6, 1e-6);
  }
  // Relative error on a dense sweep of [-10, 10], where the tanh form loses relative accuracy to
  // cancellation in 1 + tanh(u) for x < -3 (portable) and the sigmoid form does not (avx512).
  const int n = 200001;
  std::vector<float> x(n), y(n), g(n, 0.0f), ones(n, 1.0f);
  for (int i = 0; i < n; ++i) x[i] = -10.0f + 20.0f * i / (n - 1);
  k.gelu_forward(y.data(), x.data(), n);
  k.gelu_backward(g.data(), x.data(), ones.data(), n);
  double worst_rel_core = 0, worst_rel_tail = 0, worst_abs = 0, worst_grad = 0;
  for (int i = 0; i < n; ++i) {
    double want = gelu_ref(x[i]);
    // Below 1e-30 the result is subnormal-adjacent noise (x * s with s < 1e-37); skip relative.
    double rel = std::fabs(want) < 1e-30 ? 0.0 : std::fabs(y[i] - want) / std::fabs(want);
    double& worst_rel = std::fabs(x[i]) <= 3.0f ? worst_rel_core : worst_rel_tail;
    worst_rel = std::max(worst_rel, rel);
    worst_abs = std::max(worst_abs, std::fabs(y[i] - want));
    worst_grad = std::max(worst_grad, std::fabs(g[i] - gelu_grad_ref(x[i])));
  }
  // |x| <= 3: a few roundings, 2e-6 relative. Tail: u is rounded (a few u relative) and
  // exp(-2u) turns that into |2u| * few u relative, |2u| <= 87 at x = -10: 4e-5.
  bool ok = worst_rel_core <= 2e-6 && worst_rel_tail <= 4e-5 && worst_abs <= 1e-6 && worst_grad <= 1e-6;
  if (!ok) ++failures;
  std::printf("%-4s %-58s rel %.2e (|x|<=3), rel %.2e (3<|x|<=10), abs %.2e, grad abs %.2e\n", ok ? "ok" : "FAIL",
              (std::string(k.name) + " gelu sweep [-10,10]").c_str(), worst_rel_core, worst_rel_tail, worst_abs,
              worst_grad);
}

void check_layernorm(const RowKernelSet& k) {
  const float eps = 1e-5f;
  for (int N : {1, 3, 37})
    for (int C : {1, 7, 33, 768}) {
      // An offset per row (0..12), as on the residual stream, so a one-pass variance would cancel.
      auto inp = random_floats(static_cast<size_t>(N) * C, -2.0f, 2.0f);
      for (int r = 0; r < N; ++r)
        for (int c = 0; c < C; ++c) inp[static_cast<size_t>(r) * C + c] += 3.0f * (r % 5);
      auto weight = random_floats(C, 0.5f, 1.5f), bias = random_floats(C, -0.5f, 0.5f);
      auto dout = random_floats(static_cast<size_t>(N) * C, -1.0f, 1.0f);
      auto dinp = random_floats(static_cast<size_t>(N) * C, -1.0f, 1.0f);
      auto dweight = random_floats(C, -1.0f, 1.0f), dbias = random_floats(C, -1.0f, 1.0f);
      std::vector<double> want_out(static_cast<size_t>(N) * C), want_mean(N), want_rstd(N);
      std::vector<double> want_dinp = widen(dinp), want_dweight = widen(dweight), want_dbias = widen(dbias);
      for (int r = 0; r < N; ++r) {
        const float* x = &inp[static_cast<size_t>(r) * C];
        double mean = 0, var = 0;
        for (int c = 0; c < C; ++c) mean += x[c];
        mean /= C;
        for (int c = 0; c < C; ++c) var += (x[c] - mean) * (x[c] - mean);
        var /= C;
        double rstd = 1.0 / std::sqrt(var + eps);
        want_mean[r] = mean;
        want_rstd[r] = rstd;
        double g_mean = 0, gx_mean = 0;
        for (int c = 0; c < C; ++c) {
          double xhat = (x[c] - mean) * rstd;
          want_out[static_cast<size_t>(r) * C + c] = xhat * weight[c] + bias[c];
          double g = static_cast<double>(dout[static_cast<size_t>(r) * C + c]) * weight[c];
          g_mean += g / C;
          gx_mean += g * xhat / C;
          want_dweight[c] += dout[static_cast<size_t>(r) * C + c] * xhat;
          want_dbias[c] += dout[static_cast<size_t>(r) * C + c];
        }
        for (int c = 0; c < C; ++c) {
          double xhat = (x[c] - mean) * rstd;
          double g = static_cast<double>(dout[static_cast<size_t>(r) * C + c]) * weight[c];
          want_dinp[static_cast<size_t>(r) * C + c] += rstd * (g - g_mean - xhat * gx_mean);
        }
      }
      std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C);
      std::vector<float> out(static_cast<size_t>(N) * C), mean(N), rstd(N);
      // Through the row kernel, and through the public threaded kernel (which picks one of them).
      for (int pass = 0; pass < 2; ++pass) {
        std::string who = pass == 0 ? std::string(k.name) : std::string("public");
        if (pass == 1 && std::string(k.name) != "portable") continue;  // public once per size
        std::vector<float> d_inp = dinp, d_w = dweight, d_b = dbias;
        if (pass == 0) {
          k.layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C, eps);
          k.layernorm_backward(d_inp.data(), d_w.data(), d_b.data(), dout.data(), inp.data(), weight.data(),
                               mean.data(), rstd.data(), N, C);
        } else {
          cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C, eps);
          cpu::layernorm_backward(d_inp.data(), d_w.data(), d_b.data(), dout.data(), inp.data(), weight.data(),
                                  mean.data(), rstd.data(), N, C);
        }
        // xhat inherits the float rounding of the mean, u |mean| rstd ~ 1e-6 for |mean| <= 12 and
        // std ~ 1.2, plus float sums over C terms: 5e-6 absolute on O(1) outputs and input
        // gradients; dweight sums N = 37 such xhat errors; mean and rstd are a few ulps.
        expect_close(who + " layernorm_forward out" + shape, out.data(), want_out.data(), out.size(), 0, 5e-6);
        expect_close(who + " layernorm_forward mean" + shape, mean.data(), want_mean.data(), N, 1e-6, 1e-7);
        expect_close(who + " layernorm_forward rstd" + shape, rstd.data(), want_rstd.data(), N, 1e-6, 0);
        expect_close(who + " layernorm_backward dinp" + shape, d_inp.data(), want_dinp.data(), d_inp.size(), 0, 5e-6);
        expect_close(who + " layernorm_backward dweight" + shape, d_w.data(), want_dweight.data(), C, 0, 3e-5);
        expect_close(who + " layernorm_backward dbias" + shape, d_b.data(), want_dbias.data(), C, 0, 5e-6);
      }
    }
}

// RMSNorm rows vs float64: out = x rstd w, rstd = 1/sqrt(mean(x^2) + eps); the backward
// dx += rstd (g - xhat mean(g xhat)), g = dout w, dweight += dout xhat. Rows of RMS 0.05 to 3.
void check_rmsnorm(const RowKernelSet& k) {
  const float eps = 1e-6f;
  for (int N : {1, 3, 37})
    for (int C : {1, 6, 33, 64, 576}) {
      auto inp = random_floats(static_cast<size_t>(N) * C, -2.0f, 2.0f);
      for (int r = 0; r < N; ++r)
        for (int c = 0; c < C; ++c) inp[static_cast<size_t>(r) * C + c] *= (r % 3 == 0) ? 0.05f : (r % 3 == 1 ? 1.0f : 3.0f);
      auto weight = random_floats(C, 0.5f, 1.5f), dout = random_floats(static_cast<size_t>(N) * C, -1.0f, 1.0f);
      auto dinp = random_floats(static_cast<size_t>(N) * C, -1.0f, 1.0f), dweight = random_floats(C, -1.0f, 1.0f);
      std::vector<double> want_out(inp.size()), want_rstd(N), want_dinp = widen(dinp), want_dweight = widen(dweight);
      for (int r = 0; r < N; ++r) {
        const float* x = &inp[static_cast<size_t>(r) * C];
        const float* dy = &dout[static_cast<size_t>(r) * C];
        double ms = 0;
        for (int c = 0; c < C; ++c) ms += double(x[c]) * x[c];
        const double rstd = 1.0 / std::sqrt(ms / C + eps);
        want_rstd[r] = rstd;
        double gx_mean = 0;
        for (int c = 0; c < C; ++c) {
          want_out[static_cast<size_t>(r) * C + c] = x[c] * rstd * weight[c];
          gx_mean += double(dy[c]) * weight[c] * x[c] * rstd / C;
          want_dweight[c] += double(dy[c]) * x[c] * rstd;
        }
        for (int c = 0; c < C; ++c)
          want_dinp[static_cast<size_t>(r) * C + c] += rstd * (double(dy[c]) * weight[c] - x[c] * rstd * gx_mean);
      }
      std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C);
      std::vector<float> out(inp.size()), rstd(N), d_inp = dinp, d_w = dweight;
      k.rmsnorm_forward(out.data(), rstd.data(), inp.data(), weight.data(), N, C, eps);
      k.rmsnorm_backward(d_inp.data(), d_w.data(), dout.data(), inp.data(), weight.data(), rstd.data(), N, C);
      // rstd: a float sum of C squares, halved by the sqrt: a few ulps (1e-6 relative). out is
      // |x rstd w| <= 3: rel 2e-6 + abs 1e-6. dinp is O(rstd), up to 20 on the 0.05-RMS rows:
      // abs 2e-5 (~3 ulps of 20 = 6e-6 plus the sums); dweight sums N rows.
      expect_close(std::string(k.name) + " rmsnorm_forward out" + shape, out.data(), want_out.data(), out.size(), 2e-6, 1e-6);
      expect_close(std::string(k.name) + " rmsnorm_forward rstd" + shape, rstd.data(), want_rstd.data(), N, 1e-6, 0);
      expect_close(std::string(k.name) + " rmsnorm_backward dinp" + shape, d_inp.data(), want_dinp.data(), d_inp.size(), 2e-6, 2e-5);
      expect_close(std::string(k.name) + " rmsnorm_backward dweight" + shape, d_w.data(), want_dweight.data(), C, 2e-6,
                   2e-6 * std::sqrt(double(N)));
    }
}

// RoPE pairs (x[i], x[i+HS/2]) rotated by the angle whose cos/sin a float table gives; the inverse
// rotation must undo it.
void check_rope(const RowKernelSet& k) {
  for (int HS : {2, 6, 10, 34, 64, 128})
    for (int heads : {1, 3, 12}) {
      const int half = HS / 2;
      auto x = random_floats(static_cast<size_t>(heads) * HS, -2.0f, 2.0f);
      std::vector<float> cos(half), sin(half);
      for (int i = 0; i < half; ++i) {
        const double angle = 37.0 * std::pow(10000.0, -2.0 * i / HS);
        cos[i] = float(std::cos(angle));
        sin[i] = float(std::sin(angle));
      }
      std::vector<double> want(x.size());
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          const double a = x[size_t(h) * HS + i], b = x[size_t(h) * HS + half + i];
          want[size_t(h) * HS + i] = a * cos[i] - b * sin[i];
          want[size_t(h) * HS + half + i] = b * cos[i] + a * sin[i];
        }
      std::string shape = " heads=" + std::to_string(heads) + " HS=" + std::to_string(HS);
      std::vector<float> y = x;
      k.rope_rotate(y.data(), cos.data(), sin.data(), heads, HS, false);
      // a*c - b*s with |a|, |b| < 2: one FMA and one product, ~2 ulp of 2
      expect_close(std::string(k.name) + " rope_rotate" + shape, y.data(), want.data(), y.size(), 0, 1e-6);
      k.rope_rotate(y.data(), cos.data(), sin.data(), heads, HS, true);
      expect_close(std::string(k.name) + " rope_rotate inverse undoes it" + shape, y.data(), widen(x).data(), y.size(), 0, 1e-6);
    }
}

// SwiGLU rows [gate | up] vs float64, gate over [-8, 8) plus the far tails where exp overflows.
void check_swiglu(const RowKernelSet& k) {
  for (int N : {1, 3, 37})
    for (int H : {1, 7, 33, 1536}) {
      auto inp = random_floats(static_cast<size_t>(N) * 2 * H, -8.0f, 8.0f);
      const float tails[] = {-1000.0f, -104.0f, -89.0f, 88.0f, 1000.0f};
      for (int i = 0; i < 5 && i < H; ++i) inp[i] = tails[i];  // row 0's first gates
      auto dout = random_floats(static_cast<size_t>(N) * H, -1.0f, 1.0f);
      auto dinp = random_floats(inp.size(), -1.0f, 1.0f);
      std::vector<double> want_out(static_cast<size_t>(N) * H), want_dinp = widen(dinp);
      for (int r = 0; r < N; ++r)
        for (int i = 0; i < H; ++i) {
          const double g = inp[size_t(r) * 2 * H + i], u = inp[size_t(r) * 2 * H + H + i], dy = dout[size_t(r) * H + i];
          const double s = 1.0 / (1.0 + std::exp(-g));
          want_out[size_t(r) * H + i] = g * s * u;
          want_dinp[size_t(r) * 2 * H + i] += dy * u * s * (1.0 + g * (1.0 - s));
          want_dinp[size_t(r) * 2 * H + H + i] += dy * g * s;
        }
      std::string shape = " N=" + std::to_string(N) + " H=" + std::to_string(H);
      std::vector<float> out(want_out.size()), d_inp = dinp;
      k.swiglu_forward(out.data(), inp.data(), N, H);
      k.swiglu_backward(d_inp.data(), dout.data(), inp.data(), N, H);
      // sigmoid from an exp good to ~2 ulp and a division: ~5 ulp relative (2e-6 rel); |out| and
      // |dinp| reach 1000 * 8 on the tails, so abs covers only the zero crossings' cancellation.
      expect_close(std::string(k.name) + " swiglu_forward" + shape, out.data(), want_out.data(), out.size(), 2e-6, 1e-7);
      expect_close(std::string(k.name) + " swiglu_backward" + shape, d_inp.data(), want_dinp.data(), d_inp.size(), 2e-6, 1e-6);
    }
}

// Tiles at row/column offsets inside a wider input, both modes. The kernel multiplies kept values
// by the float32 scale (and adds them) exactly as written here, so the results must be bit-equal.
void check_dropout_tile(const RowKernelSet& k) {
  const int C = 45, rows = 5, ld = 50;
  const int64_t row0 = 3;
  const uint64_t seed = 0x1234567890abcull;
  for (float p : {0.1f, 0.5f, 0.97f}) {
    const DropoutMask d = dropout_mask_params(p, seed);
    const float scale = 1.0f / (1.0f - p);
    std::string differs;
    for (int cols : {1, 15, 16, 17, 37})
      for (bool accumulate : {false, true}) {
        const int col0 = C - cols - 2;
        auto src = random_floats(size_t(rows) * ld, -1.0f, 1.0f), dst = random_floats(size_t(rows) * ld, -1.0f, 1.0f);
        std::vector<float> want = dst;
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < cols; ++j) {
            const bool keep = dropout_keep_ref(seed, uint64_t(row0 + i) * C + col0 + j, p);
            float& w = want[size_t(i) * ld + j];
            const float kept = scale * src[size_t(i) * ld + j];
            w = accumulate ? (keep ? w + kept : w) : (keep ? kept : 0.0f);
          }
        k.dropout_tile(dst.data(), ld, src.data(), ld, rows, cols, row0, col0, C, d, accumulate);
        if (std::memcmp(dst.data(), want.data(), want.size() * sizeof(float)) != 0)
          differs += " cols=" + std::to_string(cols) + (accumulate ? "(+=)" : "");
      }
    char what[96];
    std::snprintf(what, sizeof what, "%s dropout_tile p=%.2f, cols 1..37, = and +=", k.name, p);
    expect_true(what + (differs.empty() ? std::string() : " differs at" + differs), differs.empty());
  }
}

void check_crossentropy(const RowKernelSet& k) {
  for (int V : {1, 5, 33, 50257}) {
    const int N = V > 1000 ? 3 : 37;
    auto logits = random_floats(static_cast<size_t>(N) * V, -8.0f, 8.0f);
    // A tie for the maximum in row 0 (the first one must win) when the row has room: 1 and 17 share
    // an AVX-512 lane, V - 2 usually sits in another.
    if (V >= 5) logits[1] = logits[V - 2] = 20.0f;
    if (V > 17) logits[17] = 20.0f;
    std::vector<double> want_lse(N);
    std::vector<int> want_argmax(N);
    for (int r = 0; r < N; ++r) {
      const float* x = &logits[static_cast<size_t>(r) * V];
      double m = -INFINITY;
      int arg = 0;
      for (int i = 0; i < V; ++i)
        if (x[i] > m) m = x[i], arg = i;
      double s = 0;
      for (int i = 0; i < V; ++i) s += std::exp(x[i] - m);
      want_lse[r] = m + std::log(s);
      want_argmax[r] = arg;
    }
    std::string shape = " N=" + std::to_string(N) + " V=" + std::to_string(V);
    std::vector<float> lse(N);
    std::vector<int> argmax(N, -1);
    for (int r = 0; r < N; ++r)
      lse[r] = k.logsumexp(&logits[static_cast<size_t>(r) * V], V, r % 2 ? nullptr : &argmax[r]);
    // lse is O(10-20): a few ulps (ulp(16) = 2e-6) from rounding the sum, the log and the max.
    expect_close(std::string(k.name) + " logsumexp" + shape, lse.data(), want_lse.data(), N, 0, 4e-6);
    bool argmax_ok = true;
    for (int r = 0; r < N; r += 2) argmax_ok &= argmax[r] == want_argmax[r];
    expect_true(std::string(k.name) + " argmax is the first maximum" + shape, argmax_ok);

    // Public forward and backward (in place and out of place), with ignored rows.
    const int ignore_index = -100;
    std::vector<int> targets = random_ints(N, 0, V - 1);
    targets[N / 2] = ignore_index;
    std::vector<float> losses(N), lse_pub(N), dlogits(logits.size()), inplace = logits;
    std::vector<int> predictions(N);
    cpu::crossentropy_forward(losses.data(), lse_pub.data(), predictions.data(), logits.data(), targets.data(), N,
                              V, ignore_index);
    std::vector<double> want_losses(N);
    for (int r = 0; r < N; ++r)
      want_losses[r] = targets[r] == ignore_index ? 0.0 : want_lse[r] - logits[static_cast<size_t>(r) * V + targets[r]];
    // loss = lse - logit: lse's rounding again, absolute.
    expect_close("public crossentropy_forward losses" + shape, losses.data(), want_losses.data(), N, 0, 4e-6);
    expect_true("public crossentropy_forward predictions" + shape, predictions == want_argmax);
    const float scale = 1.0f / 7.0f;
    cpu::crossentropy_backward(dlogits.data(), logits.data(), lse_pub.data(), targets.data(), nullptr, scale, N, V,
                               ignore_index);
    cpu::crossentropy_backward(inplace.data(), inplace.data(), lse_pub.data(), targets.data(), nullptr, scale, N, V,
                               ignore_index);
    std::vector<double> want_d(logits.size());
    for (int r = 0; r < N; ++r)
      for (int i = 0; i < V; ++i) {
        size_t at = static_cast<size_t>(r) * V + i;
        want_d[at] = targets[r] == ignore_index
                         ? 0.0
                         : scale * (std::exp(logits[at] - want_lse[r]) - (i == targets[r] ? 1.0 : 0.0));
      }
    // p = exp(logit - lse) inherits lse's absolute error (<= 2e-6) as a relative error, so
    // scale * p is within 1e-5 relative, and the target's scale * (p - 1) within 4e-6 * scale.
    expect_close("public crossentropy_backward" + shape, dlogits.data(), want_d.data(), want_d.size(), 1e-5, 4e-6 * scale);
    expect_true("public crossentropy_backward in place equals out of place" + shape, inplace == dlogits);
  }
}

void check_softmax(const RowKernelSet& k) {
  for (int V : {1, 5, 33, 50257}) {
    for (float inv_temperature : {1.0f, 1.0f / 0.7f}) {
      auto logits = random_floats(V, -8.0f, 8.0f);
      if (V > 1) logits[0] = -INFINITY;  // a masked logit gets probability 0
      std::vector<double> want(V);
      double m = -INFINITY, s = 0;
      for (float x : logits) m = std::max(m, static_cast<double>(x) * inv_temperature);
      for (int i = 0; i < V; ++i) s += want[i] = std::exp(logits[i] * static_cast<double>(inv_temperature) - m);
      for (auto& p : want) p /= s;
      std::vector<float> probs(V);
      k.softmax(probs.data(), logits.data(), inv_temperature, V);
      expect_close(std::string(k.name) + " softmax V=" + std::to_string(V) + " invT=" + std::to_string(inv_temperature),
                   probs.data(), want.data(), V, 2e-6, 0);  // logit * invT <= 12 rounds by 5e-7, + the sum
    }
  }
}

void check_sum_squares(const RowKernelSet& k) {
  for (int64_t n : {1, 7, 33, 1000003}) {
    auto x = random_floats(n, -3.0f, 3.0f);
    long double want = 0;
    for (float v : x) want += static_cast<long double>(v) * v;
    double got = k.sum_squares(x.data(), n), got_public = cpu::sum_squares(x.data(), n);
    double rel = std::fabs(got - static_cast<double>(want)) / static_cast<double>(want);
    double rel_public = std::fabs(got_public - static_cast<double>(want)) / static_cast<double>(want);
    // Double accumulation of exact squares: ~n * 1e-16 at worst.
    expect_true(std::string(k.name) + " sum_squares n=" + std::to_string(n) + " rel err " + std::to_string(rel),
                rel <= 1e-12 && rel_public <= 1e-12);
  }
}

void check_encoder() {
  const int B = 3, T = 5, C = 37, V = 4, maxT = 20, pos_offset = 7;
  auto wte = random_floats(static_cast<size_t>(V) * C, -1, 1), wpe = random_floats(static_cast<size_t>(maxT) * C, -1, 1);
  auto tokens = random_ints(B * T, 0, V - 1);  // V = 4 < B*T: token ids repeat
  auto positions = random_ints(B * T, 0, maxT - 1);
  auto dout = random_floats(static_cast<size_t>(B) * T * C, -1, 1);
  for (int with_positions = 0; with_positions < 2; ++with_positions) {
    const int* pos_ptr = with_positions ? positions.data() : nullptr;
    std::vector<float> out(static_cast<size_t>(B) * T * C);
    cpu::encoder_forward(out.data(), tokens.data(), pos_ptr, wte.data(), wpe.data(), B, T, C, pos_offset);
    std::vector<double> want(out.size());
    auto dwte = random_floats(wte.size(), -1, 1), dwpe = random_floats(wpe.size(), -1, 1);
    std::vector<double> want_dwte = widen(dwte), want_dwpe = widen(dwpe);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        int row = b * T + t, pos = with_positions ? positions[row] : pos_offset + t;
        for (int c = 0; c < C; ++c) {
          want[static_cast<size_t>(row) * C + c] = static_cast<double>(wte[tokens[row] * C + c]) + wpe[pos * C + c];
          want_dwte[tokens[row] * C + c] += dout[static_cast<size_t>(row) * C + c];
          want_dwpe[pos * C + c] += dout[static_cast<size_t>(row) * C + c];
        }
      }
    cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), pos_ptr, B, T, C, pos_offset);
    std::string how = with_positions ? " (positions)" : " (pos_offset)";
    const double u = std::ldexp(1.0, -24);  // float unit roundoff
    expect_close("encoder_forward" + how, out.data(), want.data(), out.size(), u, 0);  // one rounding
    // At most B*T = 15 float additions into each gradient, partial sums below 16.
    expect_close("encoder_backward dwte" + how, dwte.data(), want_dwte.data(), dwte.size(), 0, 15 * 16 * u);
    expect_close("encoder_backward dwpe" + how, dwpe.data(), want_dwpe.data(), dwpe.size(), 0, 15 * 16 * u);
  }
}

void check_adamw() {
  const int64_t n = 1001;
  auto params = random_floats(n, -1, 1);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<double> p_ref = widen(params), m_ref(n, 0.0), v_ref(n, 0.0);
  const float lr = 3e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.5f;
  for (int step = 1; step <= 5; ++step) {
    auto grads = random_floats(n, -1, 1);
    cpu::adamw_update(params.data(), m.data(), v.data(), grads.data(), n, lr, beta1, beta2, eps, wd, grad_scale, step);
    double bc1 = 1 - std::pow(static_cast<double>(beta1), step), bc2 = 1 - std::pow(static_cast<double>(beta2), step);
    for (int64_t i = 0; i < n; ++i) {
      double g = static_cast<double>(grads[i]) * grad_scale;
      p_ref[i] *= 1 - static_cast<double>(lr) * wd;
      m_ref[i] = beta1 * m_ref[i] + (1 - static_cast<double>(beta1)) * g;
      v_ref[i] = beta2 * v_ref[i] + (1 - static_cast<double>(beta2)) * g * g;
      p_ref[i] -= lr / bc1 * m_ref[i] / (std::sqrt(v_ref[i]) / std::sqrt(bc2) + eps);
    }
  }
  // Per step, the decay multiply rounds p (u |p| <= 6e-8) and the update adds a few roundings of lr
  // * m / denom (~lr u); over 5 steps that stays below 1e-6 absolute.
  expect_close("adamw_update params, 5 steps", params.data(), p_ref.data(), n, 0, 1e-6);
}

void check_elementwise() {
  const int64_t n = 100003;
  auto a = random_floats(n, -1, 1), b = random_floats(n, -1, 1);
  std::vector<float> out(n);
  std::vector<double> want(n);
  cpu::residual_forward(out.data(), a.data(), b.data(), n);
  for (int64_t i = 0; i < n; ++i) want[i] = static_cast<double>(a[i]) + b[i];
  const double u = std::ldexp(1.0, -24);  // each is one correctly rounded float operation
  expect_close("residual_forward", out.data(), want.data(), n, u, 0);
  cpu::add_inplace(out.data(), a.data(), n);
  for (int64_t i = 0; i < n; ++i) want[i] = static_cast<float>(want[i]) + static_cast<double>(a[i]);
  expect_close("add_inplace", out.data(), want.data(), n, u, 0);
  cpu::scale_inplace(out.data(), 0.3f, n);
  for (int64_t i = 0; i < n; ++i) want[i] = static_cast<float>(want[i]) * static_cast<double>(0.3f);
  expect_close("scale_inplace", out.data(), want.data(), n, u, 0);
  cpu::fill(out.data(), 2.5f, n);
  expect_true("fill", std::all_of(out.begin(), out.end(), [](float x) { return x == 2.5f; }));
}

// The frozen-weight building blocks of quant.cc: every path must decode and round to the same bits
// as references written here from the formats (kernels.inc), and dot / axpy stay within float32
// rounding of float64 sums.
void check_frozen_weight_kernels() {
  struct Set {
    const char* name;
    void (*widen_bf16)(float*, const uint16_t*, int64_t);
    void (*round_to_bf16)(uint16_t*, const float*, int64_t);
    void (*int8_decode)(float*, const int8_t*, int64_t, float);
    void (*nf4_decode)(float*, const uint8_t*, int64_t, float);
    float (*dot)(const float*, const float*, int64_t);
    void (*axpy)(float*, float, const float*, int64_t);
  };
  std::vector<Set> sets = {{"portable", cpu::portable::widen_bf16, cpu::portable::round_to_bf16, cpu::portable::int8_decode,
                            cpu::portable::nf4_decode, cpu::portable::dot, cpu::portable::axpy}};
  if (cpu::cpu_has_avx512())
    sets.push_back({"avx512", cpu::avx512::widen_bf16, cpu::avx512::round_to_bf16, cpu::avx512::int8_decode,
                    cpu::avx512::nf4_decode, cpu::avx512::dot, cpu::avx512::axpy});
  static const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                                0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
  const double u = std::ldexp(1.0, -24);
  for (const Set& k : sets) {
    for (int64_t n : {1, 15, 16, 17, 33, 1000}) {
      const std::string tag = std::string(" ") + k.name + " n=" + std::to_string(n);
      // bf16: the nearer neighbour (ties to the even one), compared as doubles.
      auto x = random_floats(n, -3, 3);
      x[0] = 1.0f + std::ldexp(1.0f, -8);  // an exact tie: goes down to 1.0 (even)
      std::vector<uint16_t> bits(n);
      k.round_to_bf16(bits.data(), x.data(), n);
      std::vector<float> back(n);
      k.widen_bf16(back.data(), bits.data(), n);
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) {
        const double step = std::ldexp(1.0, std::ilogb(x[i]) - 7), q = double(x[i]) / step, fl = std::floor(q);
        const double r = q - fl > 0.5 || (q - fl == 0.5 && std::fmod(fl, 2.0) != 0) ? fl + 1 : fl;
        ok = ok && double(back[i]) == r * step && (uint32_t(bits[i]) << 16) == [&] { uint32_t b; float f = back[i]; std::memcpy(&b, &f, 4); return b; }();
      }
      expect_true("round_to_bf16 + widen_bf16 (nearest, ties to even)" + tag, ok);
      // int8 and NF4 decoding: one float32 product per element.
      std::vector<int8_t> q8(n);
      std::vector<uint8_t> packed(n);
      for (int64_t i = 0; i < n; ++i) q8[i] = static_cast<int8_t>(random_ints(1, -127, 127)[0]), packed[i] = static_cast<uint8_t>(random_ints(1, 0, 255)[0]);
      std::vector<float> out(2 * n);
      k.int8_decode(out.data(), q8.data(), n, 0.0123f);
      ok = true;
      for (int64_t i = 0; i < n; ++i) ok = ok && out[i] == float(q8[i]) * 0.0123f;
      expect_true("int8_decode" + tag, ok);
      k.nf4_decode(out.data(), packed.data(), n, 2.5f);
      ok = true;
      for (int64_t i = 0; i < n; ++i) ok = ok && out[2 * i] == nf4[packed[i] >> 4] * 2.5f && out[2 * i + 1] == nf4[packed[i] & 15] * 2.5f;
      expect_true("nf4_decode" + tag, ok);
      // dot and axpy against float64, within float32 summation rounding (n terms).
      auto a = random_floats(n, -1, 1), b = random_floats(n, -1, 1), y = random_floats(n, -1, 1);
      double d = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) d += double(a[i]) * b[i], magnitude += std::fabs(double(a[i]) * b[i]);
      const float got = k.dot(a.data(), b.data(), n);
      expect_true("dot" + tag, std::fabs(got - d) <= 2 * (n + 2) * u * magnitude);
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = y[i] + 0.7 * double(a[i]);
      k.axpy(y.data(), 0.7f, a.data(), n);
      expect_close("axpy" + tag, y.data(), want.data(), n, 3 * u, 3 * u);
    }
  }
}

// ---- timing ----

struct Timing {
  double wall_ms;  // best of 5
  double cpu_ms;   // process CPU time of that run, all threads: on a shared, loaded machine the
                   // wall time includes waiting for a core, the CPU time does not
};

double process_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

Timing time_ms(const std::function<void()>& fn) {
  fn();  // warm up (page faults, pool start)
  Timing best{INFINITY, INFINITY};
  for (int rep = 0; rep < 5; ++rep) {
    double cpu0 = process_cpu_ms();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    double cpu = process_cpu_ms() - cpu0;
    double wall = std::chrono::duration<double, std::milli>(t1 - t0).count();
    if (wall < best.wall_ms) best = {wall, cpu};
  }
  return best;
}

void run_timings() {
  // GPT-2 124M: C = 768, 4C = 3072; N = B*T = 4*1024 rows for LayerNorm and GELU, and the
  // cross-entropy of 1024 rows over the 50257-token vocabulary.
  const int N = 4096, C = 768, V = 50257, NV = 1024;
  const int64_t gelu_n = static_cast<int64_t>(N) * 4 * C;
  auto ln_in = random_floats(static_cast<size_t>(N) * C, -2, 2), ln_dout = random_floats(ln_in.size(), -1, 1);
  auto w = random_floats(C, 0.5f, 1.5f), bvec = random_floats(C, -0.5f, 0.5f);
  std::vector<float> ln_out(ln_in.size()), ln_dinp(ln_in.size()), mean(N), rstd(N), dw(C), db(C);
  auto g_in = random_floats(gelu_n, -4, 4), g_dout = random_floats(gelu_n, -1, 1);
  std::vector<float> g_out(gelu_n), g_dinp(gelu_n);
  auto logits = random_floats(static_cast<size_t>(NV) * V, -8, 8);
  auto targets = random_ints(NV, 0, V - 1);
  std::vector<float> losses(NV), lse(NV);
  std::vector<int> predictions(NV);

  // SmolLM2-135M at B=4, T=256: C = 576, FFN 1536, 9 query heads and 3 kv heads of 64.
  const int LN = 1024, LC = 576, LH = 1536, NH = 9, NKV = 3, HS = 64, LW = (NH + 2 * NKV) * HS;
  auto rms_in = random_floats(static_cast<size_t>(LN) * LC, -2, 2), rms_dout = random_floats(rms_in.size(), -1, 1);
  auto rms_w = random_floats(LC, 0.5f, 1.5f);
  std::vector<float> rms_out(rms_in.size()), rms_dinp(rms_in.size()), rms_rstd(LN), rms_dw(LC);
  auto qkv = random_floats(static_cast<size_t>(LN) * LW, -2, 2);
  std::vector<float> rope_cos(256 * HS / 2), rope_sin(rope_cos.size());
  for (size_t i = 0; i < rope_cos.size(); ++i) {
    rope_cos[i] = float(std::cos(0.01 * i));
    rope_sin[i] = float(std::sin(0.01 * i));
  }
  auto sw_in = random_floats(static_cast<size_t>(LN) * 2 * LH, -4, 4), sw_dout = random_floats(static_cast<size_t>(LN) * LH, -1, 1);
  std::vector<float> sw_out(static_cast<size_t>(LN) * LH), sw_dinp(sw_in.size());

  std::printf("\n%-38s %22s %22s\n", "kernel (GPT-2 124M, SmolLM2-135M shapes)", "1 thread: wall (cpu)",
              "2 threads: wall (cpu)");
  struct Row {
    const char* name;
    std::function<void()> fn;
  };
  std::vector<Row> rows = {
      {"layernorm_forward N=4096 C=768", [&] {
         cpu::layernorm_forward(ln_out.data(), mean.data(), rstd.data(), ln_in.data(), w.data(), bvec.data(), N, C, 1e-5f);
       }},
      {"layernorm_backward N=4096 C=768", [&] {
         cpu::layernorm_backward(ln_dinp.data(), dw.data(), db.data(), ln_dout.data(), ln_in.data(), w.data(),
                                 mean.data(), rstd.data(), N, C);
       }},
      {"gelu_forward n=4096*3072", [&] { cpu::gelu_forward(g_out.data(), g_in.data(), gelu_n); }},
      {"gelu_backward n=4096*3072", [&] { cpu::gelu_backward(g_dinp.data(), g_in.data(), g_dout.data(), gelu_n); }},
      {"crossentropy_forward N=1024 V=50257", [&] {
         cpu::crossentropy_forward(losses.data(), lse.data(), predictions.data(), logits.data(), targets.data(), NV, V,
                                   -100);
       }},
      {"crossentropy_backward N=1024 V=50257", [&] {
         // In place, as in training; the values stay finite (they are just scaled probabilities).
         cpu::crossentropy_backward(logits.data(), logits.data(), lse.data(), targets.data(), nullptr, 1.0f / NV, NV, V, -100);
       }},
      // Bytes moved (the GB/s a memory-bound kernel should approach): rmsnorm forward 2 N C floats,
      // backward 4 N C (dinp read and written); rope 2 * (NH+NKV) HS per row; swiglu 3 N H forward,
      // 7 N H backward (dinp read and written).
      {"rmsnorm_forward N=1024 C=576", [&] {
         cpu::rmsnorm_forward(rms_out.data(), rms_rstd.data(), rms_in.data(), rms_w.data(), LN, LC, 1e-6f);
       }},
      {"rmsnorm_backward N=1024 C=576", [&] {
         cpu::rmsnorm_backward(rms_dinp.data(), rms_dw.data(), rms_dout.data(), rms_in.data(), rms_w.data(),
                               rms_rstd.data(), LN, LC);
       }},
      {"rope_forward B=4 T=256 NH=9 NKV=3 HS=64", [&] {
         cpu::rope_forward(qkv.data(), rope_cos.data(), rope_sin.data(), nullptr, 4, 256, NH, NKV, HS, 256, 0);
       }},
      {"rope_backward B=4 T=256 NH=9 NKV=3 HS=64", [&] {
         cpu::rope_backward(qkv.data(), rope_cos.data(), rope_sin.data(), nullptr, 4, 256, NH, NKV, HS, 256, 0);
       }},
      {"swiglu_forward N=1024 H=1536", [&] { cpu::swiglu_forward(sw_out.data(), sw_in.data(), LN, LH); }},
      {"swiglu_backward N=1024 H=1536", [&] {
         cpu::swiglu_backward(sw_dinp.data(), sw_dout.data(), sw_in.data(), LN, LH);
       }},
  };
  for (auto& row : rows) {
    Timing t[2];
    for (int threads = 1; threads <= 2; ++threads) {
      cpu::set_num_threads(threads);
      t[threads - 1] = time_ms(row.fn);
    }
    std::printf("%-38s %9.2f ms (%7.2f) %9.2f ms (%7.2f)\n", row.name, t[0].wall_ms, t[0].cpu_ms, t[1].wall_ms,
                t[1].cpu_ms);
  }
  cpu::set_num_threads(2);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool timing = mode != "--no-timing";
  if (mode == "--timing-only") {
    run_timings();
    return 0;
  }
  std::printf("simd: %s, threads: %d\n", cpu::cpu_has_avx512() ? "avx512" : "portable", cpu::num_threads());
  for (const auto& k : row_kernel_sets()) {
    check_exp_accuracy(k);
    check_gelu(k);
    check_layernorm(k);
    check_crossentropy(k);
    check_softmax(k);
    check_sum_squares(k);
    check_rmsnorm(k);
    check_rope(k);
    check_swiglu(k);
    check_dropout_tile(k);
  }
  check_encoder();
  check_adamw();
  check_elementwise();
  check_frozen_weight_kernels();
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  if (timing) run_timings();
  return failures ? 1 : 0;
}
