// Runs every CUDA kernel of native/cuda/ on the CPU emulator (native/cuda/emulator.cuh) against
// float64 references, at awkward sizes. This is how the CUDA backend is checked on machines with no
// GPU; test/gpu/kernels.test.ts checks the real device against the CPU backend.
//
// Build and run (from the repository root; ~1 minute to compile): scripts are in
// test/gpu/run_emulated.sh, which compiles with
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -DGPTUNE_CUDA_EMULATE -DGPTUNE_WITH_CUDA
//       -Inative/include -Inative -Inative/cuda -x c++ native/cuda/*.cu test/gpu/emulated_kernels.cc
// and runs the binary three times: default order, GPTUNE_EMU_ORDER=reverse, GPTUNE_EMU_CP_ASYNC=early.
// Exit status 0 when every check passes; each check prints one line.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#include "gptune/cuda_options.h"
#include "gptune/device.h"
#include "gptune/kernels.h"
#include "gptune/quant_format.h"
#include "../native/dropout_mask_ref.h"  // the mask definition, restated

namespace cu = gptune::cuda;
using std::vector;

namespace {

int g_failures = 0;
std::mt19937 g_rng(1234);

vector<float> random_vector(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

// A device buffer filled from (or read back into) host vectors.
template <typename T>
struct Dev {
  T* ptr = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { ptr = static_cast<T*>(cu::malloc_device(std::max<size_t>(count, 1) * sizeof(T))); }
  explicit Dev(const vector<T>& host) : Dev(host.size()) { cu::copy_to_device(ptr, host.data(), n * sizeof(T)); }
  ~Dev() { cu::free_device(ptr); }
  vector<T> get() const {
    vector<T> h(n);
    cu::copy_to_host(h.data(), ptr, n * sizeof(T));
    return h;
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// ||got - want|| / ||want|| over the whole tensor; NaN anywhere fails.
void check(const std::string& name, const vector<float>& got, const vector<double>& want, double tolerance) {
  double diff = 0, norm = 0;
  bool nan = got.size() != want.size();
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(got[i])) nan = true;
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  const double rel = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
  const bool ok = !nan && rel <= tolerance;
  if (!ok) ++g_failures;
  std::printf("%s %-58s rel %.2e (tol %.0e)%s\n", ok ? "ok  " : "FAIL", name.c_str(), rel, tolerance,
              nan ? " [NaN/size]" : "");
}
// For kernels that accumulate (+=) into a random initial value: compares the increments
// (got - base) with (want - base), so the base's norm cannot hide an error in the increment.
void check_increment(const std::string& name, const vector<float>& got, const vector<float>& base,
                     const vector<double>& want, double tolerance) {
  vector<float> got_delta(got.size());
  vector<double> want_delta(want.size());
  for (size_t i = 0; i < got.size() && i < base.size(); ++i) got_delta[i] = got[i] - base[i];
  for (size_t i = 0; i < want.size() && i < base.size(); ++i) want_delta[i] = want[i] - base[i];
  check(name, got_delta, want_delta, tolerance);
}
void check_exact(const std::string& name, const vector<int>& got, const vector<int>& want) {
  const bool ok = got == want;
  if (!ok) ++g_failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
}
vector<double> to_double(const vector<float>& v) { return vector<double>(v.begin(), v.end()); }
// Rounds every element to bf16 (ties to even), so a kernel's bf16 copy of it is exact.
vector<float> bf16_exact(vector<float> v) {
  for (auto& x : v) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // finite inputs only
    std::memcpy(&x, &u, 4);
  }
  return v;
}

// ---- matmul ----
// C (M,N) = alpha op(A) op(B) + beta C (+ bias), row-major, float64.
vector<double> ref_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const vector<float>& A, int lda,
                        const vector<float>& B, int ldb, double beta, const vector<float>& C, int ldc,
                        const vector<float>* bias) {
  vector<double> out(C.begin(), C.end());
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(ta ? A[size_t(k) * lda + m] : A[size_t(m) * lda + k]) * (tb ? B[size_t(n) * ldb + k] : B[size_t(k) * ldb + n]);
      out[size_t(m) * ldc + n] = alpha * s + beta * C[size_t(m) * ldc + n] + (bias ? (*bias)[n] : 0.0);
    }
  return out;
}

void test_matmul(bool bf16, bool exact_inputs) {
  cu::set_matmul_precision(bf16);
  const char* p = bf16 ? (exact_inputs ? "bf16 (bf16-exact inputs)" : "bf16") : "fp32";
  // bf16 operands: each product term carries ~2^-8 relative rounding, averaged over K terms. On
  // inputs that are exactly bf16, only fp32 accumulation remains: 1e-5.
  const double tol = bf16 && !exact_inputs ? 1e-2 : 1e-5;
  auto prep = [&](vector<float> v) { return exact_inputs ? bf16_exact(std::move(v)) : v; };
  struct Shape { int N, C, OC; };
  for (Shape s : {Shape{1, 3, 5}, Shape{37, 45, 29}, Shape{130, 64, 257}, Shape{200, 136, 9}}) {
    const auto inp = prep(random_vector(size_t(s.N) * s.C)), w = prep(random_vector(size_t(s.OC) * s.C)), b = random_vector(s.OC);
    Dev<float> d_inp(inp), d_w(w), d_b(b), d_out(size_t(s.N) * s.OC);
    cu::matmul_forward(d_out.ptr, d_inp.ptr, d_w.ptr, d_b.ptr, s.N, s.C, s.OC);
    const vector<float> zero_out(size_t(s.N) * s.OC, 0.0f);
    char name[128];
    std::snprintf(name, sizeof name, "matmul_forward %s N=%d C=%d OC=%d", p, s.N, s.C, s.OC);
    check(name, d_out.get(), ref_gemm(false, true, s.N, s.OC, s.C, 1, inp, s.C, w, s.C, 0, zero_out, s.OC, &b), tol);

    const auto dout = prep(random_vector(size_t(s.N) * s.OC));
    const auto dinp0 = random_vector(size_t(s.N) * s.C), dw0 = random_vector(size_t(s.OC) * s.C), db0 = random_vector(s.OC);
    Dev<float> d_dout(dout), d_dinp(dinp0), d_dw(dw0), d_db(db0);
    cu::matmul_backward(d_dinp.ptr, d_dw.ptr, d_db.ptr, d_dout.ptr, d_inp.ptr, d_w.ptr, s.N, s.C, s.OC);
    std::snprintf(name, sizeof name, "matmul_backward dinp %s N=%d C=%d OC=%d", p, s.N, s.C, s.OC);
    check_increment(name, d_dinp.get(), dinp0, ref_gemm(false, false, s.N, s.C, s.OC, 1, dout, s.OC, w, s.C, 1, dinp0, s.C, nullptr), tol);
    std::snprintf(name, sizeof name, "matmul_backward dweight %s N=%d C=%d OC=%d", p, s.N, s.C, s.OC);
    check_increment(name, d_dw.get(), dw0, ref_gemm(true, false, s.OC, s.C, s.N, 1, dout, s.OC, inp, s.C, 1, dw0, s.C, nullptr), tol);
    vector<double> db(db0.begin(), db0.end());
    for (int n = 0; n < s.N; ++n)
      for (int o = 0; o < s.OC; ++o) db[o] += dout[size_t(n) * s.OC + o];
    std::snprintf(name, sizeof name, "matmul_backward dbias %s N=%d OC=%d", p, s.N, s.OC);
    check_increment(name, d_db.get(), db0, db, 1e-5);
  }
  // The general entry point: every transpose combination, leading dimensions wider than the rows.
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int M = 70, N = 133, K = 41;
      const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
      const auto A = prep(random_vector(size_t(ta ? K : M) * lda)), B = prep(random_vector(size_t(tb ? N : K) * ldb));
      const auto C = random_vector(size_t(M) * ldc);
      Dev<float> dA(A), dB(B), dC(C);
      cu::gemm(ta, tb, M, N, K, 0.5f, dA.ptr, lda, dB.ptr, ldb, 2.0f, dC.ptr, ldc);
      auto want = ref_gemm(ta, tb, M, N, K, 0.5, A, lda, B, ldb, 2.0, C, ldc, nullptr);
      char name[128];
      std::snprintf(name, sizeof name, "gemm %s trans_a=%d trans_b=%d lda/ldb/ldc padded", p, ta, tb);
      check(name, dC.get(), want, tol);
    }
}

// ---- elementwise ----
double gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

void test_elementwise() {
  for (long long n : {1LL, 7LL, 1027LL}) {
    auto x = random_vector(n, -6, 6), y = random_vector(n), dout = random_vector(n);
    Dev<float> dx(x), dy(y), dd(dout), dout_buf(n);
    vector<double> want(n);
    cu::gelu_forward(dout_buf.ptr, dx.ptr, n);
    for (long long i = 0; i < n; ++i) want[i] = gelu_ref(x[i]);
    check("gelu_forward n=" + std::to_string(n), dout_buf.get(), want, 1e-6);
    auto acc0 = random_vector(n);
    Dev<float> dacc(acc0);
    cu::gelu_backward(dacc.ptr, dx.ptr, dd.ptr, n);
    for (long long i = 0; i < n; ++i) {
      const double h = 1e-4;  // central difference in double: error ~h^2 * gelu''' ~ 1e-8
      want[i] = acc0[i] + dout[i] * (gelu_ref(x[i] + h) - gelu_ref(x[i] - h)) / (2 * h);
    }
    {
      // The increment dout * gelu'(x) can be ~0 (gelu' crosses zero near x = -0.75), so its error is
      // measured against ||dout||, the scale of its terms (|gelu'| <= 1.13): float32 rounding, 1e-6.
      const auto got = dacc.get();
      double diff = 0, scale = 0;
      for (long long i = 0; i < n; ++i) {
        diff += std::pow((got[i] - acc0[i]) - (want[i] - acc0[i]), 2);
        scale += double(dout[i]) * dout[i];
      }
      const double rel = std::sqrt(diff / scale);
      const bool ok = rel <= 1e-6;
      if (!ok) ++g_failures;
      std::printf("%s %-58s rel %.2e (tol 1e-06, relative to ||dout||)\n", ok ? "ok  " : "FAIL",
                  ("gelu_backward n=" + std::to_string(n)).c_str(), rel);
    }
    cu::residual_forward(dout_buf.ptr, dx.ptr, dy.ptr, n);
    for (long long i = 0; i < n; ++i) want[i] = double(x[i]) + y[i];
    check("residual_forward n=" + std::to_string(n), dout_buf.get(), want, 1e-7);
    cu::add_inplace(dx.ptr, dy.ptr, n);
    check("add_inplace n=" + std::to_string(n), dx.get(), want, 1e-7);
    cu::scale_inplace(dy.ptr, -0.75f, n);
    for (long long i = 0; i < n; ++i) want[i] = -0.75 * y[i];
    check("scale_inplace n=" + std::to_string(n), dy.get(), want, 1e-7);
    double sq = 0;
    for (float v : y) sq += 0.5625 * double(v) * v;
    const double got = cu::sum_squares(dy.ptr, n);
    check("sum_squares n=" + std::to_string(n), {float(got)}, {sq}, 1e-6);
    cu::fill(dy.ptr, 2.5f, n);
    check("fill n=" + std::to_string(n), dy.get(), vector<double>(n, 2.5), 0);
    // Dropout: one multiply (and add) per element, so the results equal the rounded reference exactly.
    for (float p : {0.0f, 0.1f, 0.5f}) {
      const uint64_t seed = 77 + n;
      const float scale = 1.0f / (1.0f - p);
      auto m = [&](long long i) { return p == 0.0f || dropout_keep_ref(seed, uint64_t(i), p) ? scale : 0.0f; };
      Dev<float> inp(x), res(y), acc(dout), out_buf(n);
      const std::string tag = " n=" + std::to_string(n) + " p=" + std::to_string(p).substr(0, 3);
      cu::dropout_forward(out_buf.ptr, inp.ptr, nullptr, n, p, seed);
      for (long long i = 0; i < n; ++i) want[i] = m(i) * x[i];
      check("dropout_forward" + tag, out_buf.get(), want, 0);
      cu::dropout_forward(res.ptr, inp.ptr, res.ptr, n, p, seed);  // in place on the residual
      for (long long i = 0; i < n; ++i) want[i] = float(y[i] + float(m(i) * x[i]));
      check("dropout_forward residual" + tag, res.get(), want, 0);
      cu::dropout_backward(acc.ptr, inp.ptr, n, p, seed);
      for (long long i = 0; i < n; ++i) want[i] = float(dout[i] + float(m(i) * x[i]));
      check("dropout_backward" + tag, acc.get(), want, 0);
    }
  }
  // Misaligned views (offset by one float) take the scalar path.
  const long long n = 301;
  auto x = random_vector(n + 1), y = random_vector(n + 1);
  Dev<float> dx(x), dy(y);
  cu::add_inplace(dx.ptr + 1, dy.ptr + 1, n);
  vector<double> want(x.begin(), x.end());
  for (long long i = 1; i <= n; ++i) want[i] += y[i];
  check("add_inplace misaligned view", dx.get(), want, 1e-7);
  // A large sum of squares crosses many blocks and both reduction passes.
  const long long big = 3 * 256 * 16 * 4 + 13;
  auto z = random_vector(big);
  Dev<float> dz(z);
  double sq = 0;
  for (float v : z) sq += double(v) * v;
  check("sum_squares n=" + std::to_string(big), {float(cu::sum_squares(dz.ptr, big))}, {sq}, 1e-6);
}

// ---- encoder ----
void test_encoder() {
  const int B = 3, T = 5, C = 12, V = 7, maxT = 9;
  for (int variant = 0; variant < 3; ++variant) {
    const int Cv = variant == 2 ? 13 : C;  // 13: the scalar path
    auto wte = random_vector(size_t(V) * Cv), wpe = random_vector(size_t(maxT) * Cv);
    vector<int> tokens(B * T), positions(B * T);
    for (int i = 0; i < B * T; ++i) tokens[i] = (i * 5 + 3) % V, positions[i] = (i * 3) % T;
    const bool with_positions = variant == 1;
    const int pos_offset = with_positions ? 0 : 2;
    Dev<float> d_wte(wte), d_wpe(wpe), d_out(size_t(B) * T * Cv);
    Dev<int> d_tok(tokens), d_pos(positions);
    cu::encoder_forward(d_out.ptr, d_tok.ptr, with_positions ? d_pos.ptr : nullptr, d_wte.ptr, d_wpe.ptr, B, T, Cv, pos_offset);
    vector<double> want(size_t(B) * T * Cv);
    auto pos_of = [&](int i) { return with_positions ? positions[i] : pos_offset + i % T; };
    for (int i = 0; i < B * T; ++i)
      for (int c = 0; c < Cv; ++c) want[size_t(i) * Cv + c] = double(wte[size_t(tokens[i]) * Cv + c]) + wpe[size_t(pos_of(i)) * Cv + c];
    check("encoder_forward variant " + std::to_string(variant), d_out.get(), want, 1e-7);
    auto dout = random_vector(size_t(B) * T * Cv);
    auto dwte0 = random_vector(wte.size()), dwpe0 = random_vector(wpe.size());
    Dev<float> d_dout(dout), d_dwte(dwte0), d_dwpe(dwpe0);
    cu::encoder_backward(d_dwte.ptr, d_dwpe.ptr, d_dout.ptr, d_tok.ptr, with_positions ? d_pos.ptr : nullptr, B, T, Cv, pos_offset);
    vector<double> dwte(dwte0.begin(), dwte0.end()), dwpe(dwpe0.begin(), dwpe0.end());
    for (int i = 0; i < B * T; ++i)
      for (int c = 0; c < Cv; ++c) {
        dwte[size_t(tokens[i]) * Cv + c] += dout[size_t(i) * Cv + c];
        dwpe[size_t(pos_of(i)) * Cv + c] += dout[size_t(i) * Cv + c];
      }
    check_increment("encoder_backward dwte variant " + std::to_string(variant), d_dwte.get(), dwte0, dwte, 1e-6);
    check_increment("encoder_backward dwpe variant " + std::to_string(variant), d_dwpe.get(), dwpe0, dwpe, 1e-6);
  }
}

// ---- encoder backward: repeated ids, determinism ----
// Inputs come from their own seeded generator, so a child process (encoder_bits) rebuilds them.
struct EncoderBackwardCase {
  std::string name;
  int B, T, C;
  vector<int> tokens, positions;  // positions empty: row b*T + t is at position pos_offset + t
  int pos_offset;
  bool with_dwte, with_dwpe;
  vector<float> dout, dwte0, dwpe0;
};

vector<EncoderBackwardCase> encoder_backward_cases() {
  std::mt19937 rng(4321);
  auto uniform_int = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto floats = [&](size_t n) {
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
  };
  vector<EncoderBackwardCase> cases;
  auto add = [&](std::string name, int B, int T, int C, std::function<int(int)> token, std::function<int(int)> position,
                 int pos_offset, bool with_dwte, bool with_dwpe) {
    EncoderBackwardCase k{name, B, T, C, {}, {}, pos_offset, with_dwte, with_dwpe, {}, {}, {}};
    for (int i = 0; i < B * T; ++i) k.tokens.push_back(token(i));
    if (position)
      for (int i = 0; i < B * T; ++i) k.positions.push_back(position(i));
    const int V = *std::max_element(k.tokens.begin(), k.tokens.end()) + 1;
    const int maxT = k.positions.empty() ? pos_offset + T : *std::max_element(k.positions.begin(), k.positions.end()) + 1;
    k.dout = floats(size_t(B) * T * C), k.dwte0 = floats(size_t(V) * C), k.dwpe0 = floats(size_t(maxT) * C);
    cases.push_back(std::move(k));
  };
  // Rows (B*T) are never a multiple of the 32-row chunk or of a power of two, except the single row.
  add("11 token ids, B=4 T=37 C=13", 4, 37, 13, [&](int) { return uniform_int(11); }, nullptr, 3, true, true);
  add("one token id for all rows, B=5 T=333 C=7", 5, 333, 7, [](int) { return 6; }, nullptr, 0, true, true);
  // 45% padding id (spans ~70 chunks), packed positions restarting at random example boundaries;
  // 5100 rows > the 4096-key sort tile, so the sort's cross-tile merge stages run.
  int segment_start = 0;
  add("45% padding id, packed positions, B=3 T=1700 C=3", 3, 1700, 3,
      [&](int) { return uniform_int(100) < 45 ? 50 : uniform_int(50); },
      [&](int i) {
        if (i % 1700 == 0 || uniform_int(40) == 0) segment_start = i;
        return i - segment_start;
      },
      0, true, true);
  add("single row, B=1 T=1 C=5", 1, 1, 5, [](int) { return 2; }, nullptr, 4, true, true);
  add("9 positions at random, dwte null, B=2 T=65 C=133", 2, 65, 133, [&](int) { return uniform_int(20); },
      [&](int) { return uniform_int(9); }, 0, false, true);
  add("3 token ids, dwpe null, B=7 T=19 C=40", 7, 19, 40, [&](int) { return uniform_int(3); }, nullptr, 1, true, false);
  return cases;
}

// Runs encoder_backward on the case; returns dwte then dwpe (the initial values where null).
std::pair<vector<float>, vector<float>> run_encoder_backward(const EncoderBackwardCase& k) {
  Dev<float> d_dout(k.dout), d_dwte(k.dwte0), d_dwpe(k.dwpe0);
  Dev<int> d_tok(k.tokens), d_pos(k.positions);
  cu::encoder_backward(k.with_dwte ? d_dwte.ptr : nullptr, k.with_dwpe ? d_dwpe.ptr : nullptr, d_dout.ptr, d_tok.ptr,
                       k.positions.empty() ? nullptr : d_pos.ptr, k.B, k.T, k.C, k.pos_offset);
  return {d_dwte.get(), d_dwpe.get()};
}

// FNV-1a over the bits of every result of every case.
uint64_t encoder_backward_bits() {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& k : encoder_backward_cases()) {
    const auto r = run_encoder_backward(k);
    for (const auto* v : {&r.first, &r.second})
      for (float x : *v) {
        uint32_t u;
        std::memcpy(&u, &x, 4);
        for (int b = 0; b < 4; ++b) h = (h ^ ((u >> (8 * b)) & 0xffu)) * 1099511628211ULL;
      }
  }
  return h;
}

void test_encoder_backward_repeats() {
  const auto cases = encoder_backward_cases();
  vector<std::pair<vector<float>, vector<float>>> first;
  for (const auto& k : cases) {
    const auto r = run_encoder_backward(k);
    first.push_back(r);
    vector<double> dwte = to_double(k.dwte0), dwpe = to_double(k.dwpe0);
    for (int i = 0; i < k.B * k.T; ++i) {
      const int pos = k.positions.empty() ? k.pos_offset + i % k.T : k.positions[i];
      for (int c = 0; c < k.C; ++c) {
        if (k.with_dwte) dwte[size_t(k.tokens[i]) * k.C + c] += k.dout[size_t(i) * k.C + c];
        if (k.with_dwpe) dwpe[size_t(pos) * k.C + c] += k.dout[size_t(i) * k.C + c];
      }
    }
    // float32 sums of up to ~2300 terms of |x| <= 1 in a fixed chunked order: rounding ~2^-24 per
    // add, growing like sqrt(terms); measured 5e-8..3e-7. A row added to the wrong id, or a lost
    // chunk partial, gives >= 1e-2.
    if (k.with_dwte) check_increment("encoder_backward dwte " + k.name, r.first, k.dwte0, dwte, 1e-6);
    if (k.with_dwpe) check_increment("encoder_backward dwpe " + k.name, r.second, k.dwpe0, dwpe, 1e-6);
  }
  // Again in reverse case order, so the sort's scratch holds another case's keys and partials.
  bool same = true;
  for (size_t i = cases.size(); i-- > 0;) {
    const auto r = run_encoder_backward(cases[i]);
    same = same && r.first.size() == first[i].first.size() && r.second.size() == first[i].second.size() &&
           std::memcmp(r.first.data(), first[i].first.data(), r.first.size() * 4) == 0 &&
           std::memcmp(r.second.data(), first[i].second.data(), r.second.size() * 4) == 0;
  }
  check_exact("encoder_backward bit-identical on a second run (stale scratch)", {same}, {1});
  // The same cases in child processes under both thread orders: float atomics would add repeated
  // ids in thread order, so their bits would follow the scheduling mode.
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  const unsigned long long mine = encoder_backward_bits();
  for (const char* order : {"default", "reverse"}) {
    unsigned long long child = 0;
    bool ok = len > 0;
    if (ok) {
      self[len] = 0;
      const std::string command = std::string("GPTUNE_EMU_ORDER=") + order + " '" + self + "' encoder_bits";
      FILE* pipe = popen(command.c_str(), "r");
      ok = pipe && std::fscanf(pipe, "%llx", &child) == 1;
      if (pipe) ok = pclose(pipe) == 0 && ok;
    }
    if (!ok || child != mine) ++g_failures;
    std::printf("%s encoder_backward bits equal in a child with GPTUNE_EMU_ORDER=%s (%016llx vs %016llx)\n",
                ok && child == mine ? "ok  " : "FAIL", order, mine, child);
  }
}

// ---- layernorm ----
void test_layernorm() {
  for (int C : {1, 13, 64, 100}) {
    const int N = 19;
    auto inp = random_vector(size_t(N) * C, -2, 3), w = random_vector(C), b = random_vector(C);
    Dev<float> d_inp(inp), d_w(w), d_b(b), d_out(size_t(N) * C), d_mean(N), d_rstd(N);
    const float eps = 1e-5f;
    cu::layernorm_forward(d_out.ptr, d_mean.ptr, d_rstd.ptr, d_inp.ptr, d_w.ptr, d_b.ptr, N, C, eps);
    vector<double> out(size_t(N) * C), mean(N), rstd(N);
    for (int n = 0; n < N; ++n) {
      double m = 0, v = 0;
      for (int c = 0; c < C; ++c) m += inp[size_t(n) * C + c];
      m /= C;
      for (int c = 0; c < C; ++c) v += (inp[size_t(n) * C + c] - m) * (inp[size_t(n) * C + c] - m);
      v /= C;
      mean[n] = m;
      rstd[n] = 1 / std::sqrt(v + eps);
      for (int c = 0; c < C; ++c) out[size_t(n) * C + c] = (inp[size_t(n) * C + c] - m) * rstd[n] * w[c] + b[c];
    }
    const std::string tag = " C=" + std::to_string(C);
    check("layernorm_forward out" + tag, d_out.get(), out, 1e-5);
    check("layernorm_forward mean" + tag, d_mean.get(), mean, 1e-6);
    check("layernorm_forward rstd" + tag, d_rstd.get(), rstd, 1e-5);
    auto dout = random_vector(size_t(N) * C);
    auto dinp0 = random_vector(size_t(N) * C), dw0 = random_vector(C), db0 = random_vector(C);
    Dev<float> d_dout(dout), d_dinp(dinp0), d_dw(dw0), d_db(db0);
    cu::layernorm_backward(d_dinp.ptr, d_dw.ptr, d_db.ptr, d_dout.ptr, d_inp.ptr, d_w.ptr, d_mean.ptr, d_rstd.ptr, N, C);
    vector<double> dinp(dinp0.begin(), dinp0.end()), dw(dw0.begin(), dw0.end()), db(db0.begin(), db0.end());
    for (int n = 0; n < N; ++n) {
      double sg = 0, sgx = 0;
      for (int c = 0; c < C; ++c) {
        const double xhat = (inp[size_t(n) * C + c] - mean[n]) * rstd[n], g = w[c] * double(dout[size_t(n) * C + c]);
        sg += g, sgx += g * xhat;
        dw[c] += dout[size_t(n) * C + c] * xhat;
        db[c] += dout[size_t(n) * C + c];
      }
      for (int c = 0; c < C; ++c) {
        const double xhat = (inp[size_t(n) * C + c] - mean[n]) * rstd[n], g = w[c] * double(dout[size_t(n) * C + c]);
        dinp[size_t(n) * C + c] += rstd[n] * (g - sg / C - xhat * sgx / C);
      }
    }
    check_increment("layernorm_backward dinp" + tag, d_dinp.get(), dinp0, dinp, 1e-5);
    check_increment("layernorm_backward dweight" + tag, d_dw.get(), dw0, dw, 1e-5);
    check_increment("layernorm_backward dbias" + tag, d_db.get(), db0, db, 1e-5);
  }
  // Many rows: several row chunks in the column sums.
  const int N = 1000, C = 40;
  auto inp = random_vector(size_t(N) * C), w = random_vector(C), dout = random_vector(size_t(N) * C);
  vector<float> mean(N), rstd(N);
  for (int n = 0; n < N; ++n) mean[n] = 0.1f * (n % 7), rstd[n] = 1.0f + 0.01f * (n % 5);
  Dev<float> d_inp(inp), d_w(w), d_dout(dout), d_mean(mean), d_rstd(rstd), d_dw(vector<float>(C, 0)), d_db(vector<float>(C, 0));
  cu::layernorm_backward(nullptr, d_dw.ptr, d_db.ptr, d_dout.ptr, d_inp.ptr, d_w.ptr, d_mean.ptr, d_rstd.ptr, N, C);
  vector<double> dw(C), db(C);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      dw[c] += dout[size_t(n) * C + c] * (inp[size_t(n) * C + c] - double(mean[n])) * rstd[n];
      db[c] += dout[size_t(n) * C + c];
    }
  check("layernorm_backward dweight N=1000 (null dinp)", d_dw.get(), dw, 1e-5);
  check("layernorm_backward dbias N=1000", d_db.get(), db, 1e-5);
}

// ---- cross-entropy, softmax ----
void test_crossentropy() {
  for (int V : {1, 5, 1537}) {
    const int N = 6, ignore = -100;
    auto logits = random_vector(size_t(N) * V, -4, 4);
    if (V > 1) logits[3] = logits[1] = 9.0f;  // a tie for row 0's maximum: the first index wins
    vector<int> targets(N);
    for (int n = 0; n < N; ++n) targets[n] = (n * 7 + 1) % V;
    targets[2] = ignore;
    Dev<float> d_logits(logits), d_losses(N), d_lse(N);
    Dev<int> d_targets(targets), d_pred(N);
    cu::crossentropy_forward(d_losses.ptr, d_lse.ptr, d_pred.ptr, d_logits.ptr, d_targets.ptr, N, V, ignore);
    vector<double> lse(N), losses(N);
    vector<int> pred(N);
    for (int n = 0; n < N; ++n) {
      const float* row = &logits[size_t(n) * V];
      double mx = -1e30, s = 0;
      int am = 0;
      for (int i = 0; i < V; ++i)
        if (row[i] > mx) mx = row[i], am = i;
      for (int i = 0; i < V; ++i) s += std::exp(row[i] - mx);
      lse[n] = mx + std::log(s);
      pred[n] = am;
      losses[n] = targets[n] == ignore ? 0 : lse[n] - row[targets[n]];
    }
    const std::string tag = " V=" + std::to_string(V);
    check("crossentropy_forward losses" + tag, d_losses.get(), losses, 1e-6);
    check("crossentropy_forward lse" + tag, d_lse.get(), lse, 1e-6);
    check_exact("crossentropy_forward predictions" + tag, d_pred.get(), pred);
    // Backward in place (dlogits aliases logits).
    const float scale = 1.0f / 5;
    Dev<float> d_logits_weighted(logits);
    cu::crossentropy_backward(d_logits.ptr, d_logits.ptr, d_lse.ptr, d_targets.ptr, nullptr, scale, N, V, ignore);
    vector<double> dl(size_t(N) * V);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < V; ++i)
        dl[size_t(n) * V + i] = targets[n] == ignore ? 0 : scale * (std::exp(logits[size_t(n) * V + i] - lse[n]) - (i == targets[n]));
    check("crossentropy_backward in place" + tag, d_logits.get(), dl, 1e-6);
    // Per-row weights (a preference loss's dL/dlogp), signed: each row scaled by its own weight.
    vector<float> weights(N);
    for (int n = 0; n < N; ++n) weights[n] = 0.75f * float(n % 5) - 1.5f;
    Dev<float> d_weights(weights);
    cu::crossentropy_backward(d_logits_weighted.ptr, d_logits_weighted.ptr, d_lse.ptr, d_targets.ptr, d_weights.ptr, scale, N, V,
                              ignore);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < V; ++i) dl[size_t(n) * V + i] *= weights[n];
    check("crossentropy_backward with row weights" + tag, d_logits_weighted.get(), dl, 1e-6);
    // Softmax with temperature, in place too.
    Dev<float> d_probs(logits);
    cu::softmax_forward(d_probs.ptr, d_probs.ptr, 1.0f / 0.7f, N, V);
    vector<double> probs(size_t(N) * V);
    for (int n = 0; n < N; ++n) {
      double mx = -1e30, s = 0;
      for (int i = 0; i < V; ++i) mx = std::max(mx, logits[size_t(n) * V + i] / 0.7);
      for (int i = 0; i < V; ++i) s += std::exp(logits[size_t(n) * V + i] / 0.7 - mx);
      for (int i = 0; i < V; ++i) probs[size_t(n) * V + i] = std::exp(logits[size_t(n) * V + i] / 0.7 - mx) / s;
    }
    check("softmax_forward in place T=0.7" + tag, d_probs.get(), probs, 1e-6);
  }
}

// ---- AdamW ----
void adamw_ref(vector<double>& p, vector<double>& m, vector<double>& v, const vector<float>& g, double lr, double b1,
               double b2, double eps, double wd, double gs, int step) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double gi = g[i] * gs;
    p[i] *= 1 - lr * wd;
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    const double mhat = m[i] / (1 - std::pow(b1, step)), vhat = v[i] / (1 - std::pow(b2, step));
    p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
  }
}

void test_adamw() {
  const long long n = 1001;
  auto p = random_vector(n), m = random_vector(n, -0.1f, 0.1f), v = random_vector(n, 0.0f, 0.01f), g = random_vector(n);
  Dev<float> dp(p), dm(m), dv(v), dg(g);
  cu::adamw_update(dp.ptr, dm.ptr, dv.ptr, dg.ptr, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3);
  vector<double> rp = to_double(p), rm = to_double(m), rv = to_double(v);
  adamw_ref(rp, rm, rv, g, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 3);
  check("adamw_update params", dp.get(), rp, 1e-6);
  check("adamw_update m", dm.get(), rm, 1e-6);
  check("adamw_update v", dv.get(), rv, 1e-6);

  // Multi-tensor: three tensors, one larger than a chunk, one empty, different weight decay.
  const vector<long long> sizes = {40000, 0, 77};
  vector<vector<float>> P, M, Vv, G;
  vector<std::unique_ptr<Dev<float>>> dP, dM, dV, dG;
  vector<cu::AdamWTensor> table;
  for (size_t t = 0; t < sizes.size(); ++t) {
    P.push_back(random_vector(sizes[t])), M.push_back(random_vector(sizes[t], -0.1f, 0.1f));
    Vv.push_back(random_vector(sizes[t], 0.0f, 0.01f)), G.push_back(random_vector(sizes[t]));
    dP.emplace_back(new Dev<float>(P[t])), dM.emplace_back(new Dev<float>(M[t]));
    dV.emplace_back(new Dev<float>(Vv[t])), dG.emplace_back(new Dev<float>(G[t]));
    table.push_back({dP[t]->ptr, dM[t]->ptr, dV[t]->ptr, dG[t]->ptr, sizes[t], t == 0 ? 0.1f : 0.0f});
  }
  cu::adamw_update_multi(table.data(), int(table.size()), 2e-3f, 0.8f, 0.99f, 1e-6f, 0.7f, 1);
  for (size_t t = 0; t < sizes.size(); ++t) {
    vector<double> rp2 = to_double(P[t]), rm2 = to_double(M[t]), rv2 = to_double(Vv[t]);
    adamw_ref(rp2, rm2, rv2, G[t], 2e-3, 0.8, 0.99, 1e-6, t == 0 ? 0.1 : 0.0, 0.7, 1);
    if (sizes[t] == 0) continue;
    check("adamw_update_multi tensor " + std::to_string(t) + " params", dP[t]->get(), rp2, 1e-6);
    check("adamw_update_multi tensor " + std::to_string(t) + " v", dV[t]->get(), rv2, 1e-6);
  }
}

// ---- device API ----
void test_device() {
  check_exact("device_count is 1 in the emulator", {cu::device_count()}, {1});
  bool threw = false;
  try {
    cu::malloc_device(size_t(1) << 40);
  } catch (const gptune::Error& e) {
    threw = std::strstr(e.what(), "CUDA out of memory: tried to allocate 1048576.0 MiB") != nullptr;
    std::printf("     (message: %s)\n", e.what());
  }
  check_exact("malloc_device out of memory throws a sized message", {threw}, {1});
}

}  // namespace

// ---- attention ----
// float64 reference of causal (segment-masked) grouped-query attention for one batch row: qkv
// (T,W), W = (NH+2*NKV)*hs -> out (T,NH*hs), lse (NH,T), and, given dout, dqkv (T,W) (added to the
// given accumulator). Query head h reads kv head h / (NH/NKV). With dropout p > 0, the probability of
// key j for query i of head h in batch row b is multiplied by z = 0 or 1/(1-p), kept iff the mask's
// definition keeps index ((b*NH + h)*T + j)*T + i (kernels.inc); lse stays the undropped one.
struct AttentionRef {
  vector<double> out, lse, dqkv;
};
AttentionRef attention_ref(const float* qkv, const float* dout, const int* seg, int T, int NH, int NKV, int hs,
                           const float* dqkv0, float p_drop = 0.0f, uint64_t seed = 0, int b = 0) {
  const int W = (NH + 2 * NKV) * hs, C = NH * hs, group = NH / NKV;
  const double drop_scale = 1.0f / (1.0f - p_drop);
  auto z = [&](int h, int i, int j) {
    if (p_drop == 0.0f) return 1.0;
    const uint64_t index = ((uint64_t(b) * NH + h) * T + j) * uint64_t(T) + i;
    return dropout_keep_ref(seed, index, p_drop) ? drop_scale : 0.0;
  };
  const double scale = 1 / std::sqrt(double(hs));
  AttentionRef r{vector<double>(size_t(T) * C), vector<double>(size_t(NH) * T), vector<double>(size_t(T) * W)};
  for (size_t i = 0; dqkv0 && i < r.dqkv.size(); ++i) r.dqkv[i] = dqkv0[i];
  auto q_at = [&](int t, int h) { return size_t(t) * W + h * hs; };
  auto k_at = [&](int t, int h) { return size_t(t) * W + (NH + h / group) * hs; };
  auto v_at = [&](int t, int h) { return size_t(t) * W + (NH + NKV + h / group) * hs; };
  auto Q = [&](int t, int h, int c) { return double(qkv[q_at(t, h) + c]); };
  auto K = [&](int t, int h, int c) { return double(qkv[k_at(t, h) + c]); };
  auto V = [&](int t, int h, int c) { return double(qkv[v_at(t, h) + c]); };
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < T; ++i) {
      vector<double> p(i + 1, 0.0);
      double mx = -1e300;
      for (int j = 0; j <= i; ++j) {
        if (seg && seg[j] != seg[i]) continue;
        double s = 0;
        for (int c = 0; c < hs; ++c) s += Q(i, h, c) * K(j, h, c);
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int j = 0; j <= i; ++j) {
        if (seg && seg[j] != seg[i]) { p[j] = 0; continue; }
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      r.lse[size_t(h) * T + i] = mx + std::log(sum);
      for (int j = 0; j <= i; ++j) p[j] /= sum;
      for (int c = 0; c < hs; ++c) {
        double o = 0;
        for (int j = 0; j <= i; ++j) o += p[j] * z(h, i, j) * V(j, h, c);
        r.out[size_t(i) * C + h * hs + c] = o;
      }
      if (!dout) continue;
      auto dO = [&](int c) { return double(dout[size_t(i) * C + h * hs + c]); };
      vector<double> dp(i + 1, 0.0);
      double D = 0;
      for (int j = 0; j <= i; ++j) {
        for (int c = 0; c < hs; ++c) dp[j] += dO(c) * V(j, h, c);
        dp[j] *= z(h, i, j);
        D += p[j] * dp[j];
      }
      for (int j = 0; j <= i; ++j) {
        const double ds = p[j] * (dp[j] - D);
        for (int c = 0; c < hs; ++c) {
          r.dqkv[q_at(i, h) + c] += scale * ds * K(j, h, c);
          r.dqkv[k_at(j, h) + c] += scale * ds * Q(i, h, c);
          r.dqkv[v_at(j, h) + c] += p[j] * z(h, i, j) * dO(c);
        }
      }
    }
  return r;
}

struct AttentionCase { int B, T, NH, NKV, hs; bool segments; float dropout = 0.0f; };
void test_attention_cached();
void run_attention_cases(const vector<AttentionCase>& cases, bool bf16);

void test_attention() {
  run_attention_cases({{2, 37, 3, 3, 8, false}, {1, 130, 2, 2, 64, false}, {2, 45, 3, 3, 5, true},
                       {1, 70, 2, 2, 128, true}, {1, 66, 2, 2, 32, true}, {1, 1, 1, 1, 64, false},
                       // grouped-query: ratios 2, 3, 4 (one kv head), odd head sizes
                       {2, 37, 4, 2, 10, true}, {1, 70, 6, 2, 64, false}, {2, 45, 4, 1, 6, true},
                       {1, 130, 9, 3, 64, true},
                       // dropout on the probabilities (the mask drawn in every kernel from (seed, index))
                       {2, 37, 3, 3, 8, false, 0.1f}, {2, 45, 4, 2, 10, true, 0.5f}, {1, 70, 2, 2, 64, true, 0.2f}}, false);
  test_attention_cached();
}

// Tensor cores, head size 64, on bf16-exact inputs: scores and lse are then fp32-exact (1e-5), and
// out/dqkv carry only the bf16 rounding of P and dS for their products (~3e-3 relative).
void test_attention_bf16() {
  cu::set_attention_precision(true);
  run_attention_cases({{2, 37, 2, 2, 64, false}, {1, 130, 1, 1, 64, false}, {2, 66, 2, 2, 64, true},
                       {1, 1, 1, 1, 64, false}, {1, 200, 1, 1, 64, true},
                       // grouped-query: SmolLM2's 9/3 heads, one kv head, ratio 2
                       {1, 130, 9, 3, 64, true}, {2, 66, 4, 1, 64, false}, {1, 70, 4, 2, 64, true},
                       // with dropout the fp32 kernels run instead, so the fp32 tolerance holds
                       {2, 66, 2, 2, 64, true, 0.3f}}, true);
  cu::set_attention_precision(false);
}

void run_attention_cases(const vector<AttentionCase>& cases, bool bf16) {
  const char* p = bf16 ? " bf16" : "";
  const uint64_t seed = 0x5eed0000abcdull;
  for (AttentionCase k : cases) {
    // bf16: P, dS rounded to 8 mantissa bits (2^-9 max, ~1e-3 typical); dropout scales values by up to 2.
    const double tol = bf16 && k.dropout == 0.0f ? 5e-3 : k.dropout > 0.0f ? 2e-5 : 1e-5;
    const int B = k.B, T = k.T, NH = k.NH, NKV = k.NKV, hs = k.hs, C = NH * hs, W = (NH + 2 * NKV) * hs;
    auto qkv = random_vector(size_t(B) * T * W, -2, 2), dout = random_vector(size_t(B) * T * C);
    if (bf16) qkv = bf16_exact(qkv), dout = bf16_exact(dout);
    auto dqkv0 = random_vector(qkv.size());
    vector<int> seg(size_t(B) * T);
    for (int b = 0; b < B; ++b) {
      int id = 0;
      for (int t = 0; t < T; ++t) {
        if (t > 0 && (t * 7 + b) % 11 == 0) ++id;  // packed examples of uneven lengths
        seg[size_t(b) * T + t] = id;
      }
    }
    Dev<float> d_qkv(qkv), d_out(size_t(B) * T * C), d_lse(size_t(B) * NH * T), d_dout(dout), d_dqkv(dqkv0);
    Dev<int> d_seg(seg);
    const int* segp = k.segments ? d_seg.ptr : nullptr;
    cu::attention_forward(d_out.ptr, d_lse.ptr, d_qkv.ptr, segp, B, T, NH, NKV, hs, k.dropout, seed);
    // attention_backward reads the forward's out and lse, as in training.
    cu::attention_backward(d_dqkv.ptr, d_dout.ptr, d_qkv.ptr, d_out.ptr, d_lse.ptr, segp, B, T, NH, NKV, hs, k.dropout, seed);
    vector<double> out, lse, dqkv;
    for (int b = 0; b < B; ++b) {
      auto r = attention_ref(&qkv[size_t(b) * T * W], &dout[size_t(b) * T * C], k.segments ? &seg[size_t(b) * T] : nullptr,
                             T, NH, NKV, hs, &dqkv0[size_t(b) * T * W], k.dropout, seed, b);
      out.insert(out.end(), r.out.begin(), r.out.end());
      lse.insert(lse.end(), r.lse.begin(), r.lse.end());
      dqkv.insert(dqkv.end(), r.dqkv.begin(), r.dqkv.end());
    }
    char tag[96];
    std::snprintf(tag, sizeof tag, "%s B=%d T=%d NH=%d NKV=%d hs=%d%s dropout=%.1f", p, B, T, NH, NKV, hs,
                  k.segments ? " segments" : "", k.dropout);
    check(std::string("attention_forward out") + tag, d_out.get(), out, tol);
    check(std::string("attention_forward lse") + tag, d_lse.get(), lse, 1e-5);
    check_increment(std::string("attention_backward dqkv") + tag, d_dqkv.get(), dqkv0, dqkv, tol);
  }
}

// The float64 attention of Tq new rows (qkv, W floats each) after `past` cached positions: cache
// rows k_rows, v_rows (KV floats each) then the new rows, through the training reference; its last
// Tq rows are the decoding outputs. Queries of the cached rows don't matter (set to 0).
vector<double> cached_attention_ref(const float* k_rows, const float* v_rows, const float* qkv, int past, int Tq,
                                    int NH, int NKV, int hs) {
  const int C = NH * hs, KV = NKV * hs, W = (NH + 2 * NKV) * hs, T = past + Tq;
  vector<float> full(size_t(T) * W, 0.0f);
  for (int t = 0; t < past; ++t)
    for (int c = 0; c < KV; ++c) {
      full[size_t(t) * W + C + c] = k_rows[size_t(t) * KV + c];
      full[size_t(t) * W + C + KV + c] = v_rows[size_t(t) * KV + c];
    }
  for (int t = 0; t < Tq; ++t)
    for (int c = 0; c < W; ++c) full[size_t(past + t) * W + c] = qkv[size_t(t) * W + c];
  auto r = attention_ref(full.data(), nullptr, nullptr, T, NH, NKV, hs, nullptr);
  return vector<double>(r.out.begin() + size_t(past) * C, r.out.end());
}

// Expected caches after Tq rows of qkv are written into cache rows [past, past + Tq) of `row0`.
void expect_cache_rows(vector<double>& kc_want, vector<double>& vc_want, size_t row0, const float* qkv, int past,
                       int Tq, int NH, int NKV, int hs) {
  const int C = NH * hs, KV = NKV * hs, W = (NH + 2 * NKV) * hs;
  for (int t = 0; t < Tq; ++t)
    for (int c = 0; c < KV; ++c) {
      kc_want[(row0 + past + t) * KV + c] = qkv[size_t(t) * W + C + c];
      vc_want[(row0 + past + t) * KV + c] = qkv[size_t(t) * W + C + KV + c];
    }
}

struct CachedCase { int NH, NKV, hs; };
const CachedCase kCachedCases[] = {{2, 2, 16}, {2, 2, 64}, {6, 2, 10}, {4, 1, 64}};

void test_attention_cached() {
  // KV-cache decoding: caches hold `past` positions of the NKV kv heads; 3 new queries attend over
  // past + themselves.
  for (const CachedCase k : kCachedCases) {
    const int B = 2, Tq = 3, past = 70, maxT = 80, NH = k.NH, NKV = k.NKV, hs = k.hs;
    const int C = NH * hs, KV = NKV * hs, W = (NH + 2 * NKV) * hs;
    auto kc = random_vector(size_t(B) * maxT * KV), vc = random_vector(size_t(B) * maxT * KV);
    auto qkv = random_vector(size_t(B) * Tq * W);
    Dev<float> d_kc(kc), d_vc(vc), d_qkv(qkv), d_out(size_t(B) * Tq * C);
    cu::attention_cached_forward(d_out.ptr, d_kc.ptr, d_vc.ptr, d_qkv.ptr, B, Tq, past, maxT, NH, NKV, hs);
    vector<double> out, kc_want(kc.begin(), kc.end()), vc_want(vc.begin(), vc.end());
    for (int b = 0; b < B; ++b) {
      const size_t row0 = size_t(b) * maxT;
      auto r = cached_attention_ref(&kc[row0 * KV], &vc[row0 * KV], &qkv[size_t(b) * Tq * W], past, Tq, NH, NKV, hs);
      out.insert(out.end(), r.begin(), r.end());
      expect_cache_rows(kc_want, vc_want, row0, &qkv[size_t(b) * Tq * W], past, Tq, NH, NKV, hs);
    }
    const std::string tag = " NH=" + std::to_string(NH) + " NKV=" + std::to_string(NKV) + " hs=" + std::to_string(hs);
    check("attention_cached_forward out" + tag, d_out.get(), out, 1e-5);
    check("attention_cached_forward kcache" + tag, d_kc.get(), kc_want, 0);
    check("attention_cached_forward vcache" + tag, d_vc.get(), vc_want, 0);
  }
  // Continuous batching: 3 rows in slots 3, 0, 2 of 4 at lengths 70, 5 and 33 (slot 1 untouched).
  for (const CachedCase k : kCachedCases) {
    const int S = 4, B = 3, Tq = 2, maxT = 80, NH = k.NH, NKV = k.NKV, hs = k.hs;
    const int C = NH * hs, KV = NKV * hs, W = (NH + 2 * NKV) * hs;
    const vector<int> slots{3, 0, 2}, pasts{70, 5, 33};
    auto kc = random_vector(size_t(S) * maxT * KV), vc = random_vector(size_t(S) * maxT * KV);
    auto qkv = random_vector(size_t(B) * Tq * W);
    Dev<float> d_kc(kc), d_vc(vc), d_qkv(qkv), d_out(size_t(B) * Tq * C);
    Dev<int> d_slots(slots), d_pasts(pasts);
    cu::attention_cached_rows_forward(d_out.ptr, d_kc.ptr, d_vc.ptr, d_qkv.ptr, d_slots.ptr, d_pasts.ptr, B, Tq, S, maxT,
                                      NH, NKV, hs);
    vector<double> out, kc_want(kc.begin(), kc.end()), vc_want(vc.begin(), vc.end());
    for (int b = 0; b < B; ++b) {
      const size_t row0 = size_t(slots[b]) * maxT;
      auto r = cached_attention_ref(&kc[row0 * KV], &vc[row0 * KV], &qkv[size_t(b) * Tq * W], pasts[b], Tq, NH, NKV, hs);
      out.insert(out.end(), r.begin(), r.end());
      expect_cache_rows(kc_want, vc_want, row0, &qkv[size_t(b) * Tq * W], pasts[b], Tq, NH, NKV, hs);
    }
    const std::string tag = " NH=" + std::to_string(NH) + " NKV=" + std::to_string(NKV) + " hs=" + std::to_string(hs);
    check("attention_cached_rows_forward out" + tag, d_out.get(), out, 1e-5);
    check("attention_cached_rows_forward kcache" + tag, d_kc.get(), kc_want, 0);
    check("attention_cached_rows_forward vcache" + tag, d_vc.get(), vc_want, 0);
  }
}

// ---- Llama-family kernels: RMSNorm, QK-norm, RoPE, SwiGLU, encoder without wpe ----
// float64 RMSNorm of rows (HS) at x + r's offset: out, rstd, and (given dout) dinp += ..., dw += ...
struct RmsRef { vector<double> out, rstd, dinp, dw; };
void rms_ref_row(RmsRef& r, const vector<float>& x, const vector<float>& dout, const vector<float>& w, size_t at,
                 size_t stat, int HS, double eps, size_t w_at) {
  double ms = 0;
  for (int c = 0; c < HS; ++c) ms += double(x[at + c]) * x[at + c];
  const double s = 1 / std::sqrt(ms / HS + eps);
  r.rstd[stat] = s;
  double gx = 0;
  for (int c = 0; c < HS; ++c) {
    r.out[at + c] = x[at + c] * s * w[c];
    gx += double(dout[at + c]) * w[c] * x[at + c] * s / HS;
    r.dw[w_at + c] += double(dout[at + c]) * x[at + c] * s;
  }
  for (int c = 0; c < HS; ++c) r.dinp[at + c] += s * (double(dout[at + c]) * w[c] - x[at + c] * s * gx);
}

void test_llama_kernels() {
  const float eps = 1e-6f;
  for (int C : {1, 13, 64, 576}) {  // RMSNorm; N = 300 rows gives several weight-gradient chunks
    const int N = 300;
    auto x = random_vector(size_t(N) * C, -2, 2), w = random_vector(C, 0.5f, 1.5f), dout = random_vector(size_t(N) * C);
    auto dinp0 = random_vector(x.size()), dw0 = random_vector(C);
    RmsRef r{vector<double>(x.size()), vector<double>(N), to_double(dinp0), to_double(dw0)};
    for (int n = 0; n < N; ++n) rms_ref_row(r, x, dout, w, size_t(n) * C, n, C, eps, 0);
    Dev<float> d_x(x), d_w(w), d_out(x.size()), d_rstd(N), d_dout(dout), d_dinp(dinp0), d_dw(dw0);
    cu::rmsnorm_forward(d_out.ptr, d_rstd.ptr, d_x.ptr, d_w.ptr, N, C, eps);
    cu::rmsnorm_backward(d_dinp.ptr, d_dw.ptr, d_dout.ptr, d_x.ptr, d_w.ptr, d_rstd.ptr, N, C);
    const std::string tag = " C=" + std::to_string(C);
    check("rmsnorm_forward out" + tag, d_out.get(), r.out, 1e-6);
    check("rmsnorm_forward rstd" + tag, d_rstd.get(), r.rstd, 1e-6);
    check_increment("rmsnorm_backward dinp" + tag, d_dinp.get(), dinp0, r.dinp, 1e-5);
    check_increment("rmsnorm_backward dweight" + tag, d_dw.get(), dw0, r.dw, 1e-5);
  }
  struct Heads { int N, NH, NKV, HS; };
  for (const Heads k : {Heads{7, 4, 2, 10}, Heads{33, 6, 1, 64}, Heads{5, 2, 2, 6}}) {  // QK-norm
    const int N = k.N, NH = k.NH, NKV = k.NKV, HS = k.HS, W = (NH + 2 * NKV) * HS, stats = NH + NKV;
    auto x = random_vector(size_t(N) * W, -2, 2), qw = random_vector(HS, 0.5f, 1.5f), kw = random_vector(HS, 0.5f, 1.5f);
    auto dout = random_vector(x.size()), dinp0 = random_vector(x.size()), dqw0 = random_vector(HS), dkw0 = random_vector(HS);
    vector<float> both_w0(dqw0);
    both_w0.insert(both_w0.end(), dkw0.begin(), dkw0.end());
    RmsRef r{vector<double>(x.size()), vector<double>(size_t(N) * stats), to_double(dinp0), to_double(both_w0)};
    for (int n = 0; n < N; ++n) {
      for (int h = 0; h < NH; ++h) rms_ref_row(r, x, dout, qw, size_t(n) * W + h * HS, size_t(n) * stats + h, HS, eps, 0);
      for (int h = 0; h < NKV; ++h)
        rms_ref_row(r, x, dout, kw, size_t(n) * W + (NH + h) * HS, size_t(n) * stats + NH + h, HS, eps, HS);
      for (int c = (NH + NKV) * HS; c < W; ++c) {
        r.out[size_t(n) * W + c] = x[size_t(n) * W + c];
        r.dinp[size_t(n) * W + c] += dout[size_t(n) * W + c];
      }
    }
    Dev<float> d_x(x), d_qw(qw), d_kw(kw), d_out(x.size()), d_rstd(size_t(N) * stats), d_dout(dout), d_dinp(dinp0),
        d_dqw(dqw0), d_dkw(dkw0);
    cu::qknorm_forward(d_out.ptr, d_rstd.ptr, d_x.ptr, d_qw.ptr, d_kw.ptr, N, NH, NKV, HS, eps);
    cu::qknorm_backward(d_dinp.ptr, d_dqw.ptr, d_dkw.ptr, d_dout.ptr, d_x.ptr, d_qw.ptr, d_kw.ptr, d_rstd.ptr, N, NH, NKV, HS);
    char tag[64];
    std::snprintf(tag, sizeof tag, " N=%d NH=%d NKV=%d HS=%d", N, NH, NKV, HS);
    check(std::string("qknorm_forward out") + tag, d_out.get(), r.out, 1e-6);
    check(std::string("qknorm_forward rstd") + tag, d_rstd.get(), r.rstd, 1e-6);
    check_increment(std::string("qknorm_backward dinp") + tag, d_dinp.get(), dinp0, r.dinp, 1e-5);
    check_increment(std::string("qknorm_backward dq_weight") + tag, d_dqw.get(), dqw0,
                    vector<double>(r.dw.begin(), r.dw.begin() + HS), 1e-5);
    check_increment(std::string("qknorm_backward dk_weight") + tag, d_dkw.get(), dkw0,
                    vector<double>(r.dw.begin() + HS, r.dw.end()), 1e-5);
  }
  for (const Heads k : {Heads{0, 4, 2, 10}, Heads{0, 9, 3, 64}, Heads{0, 1, 1, 2}}) {  // RoPE
    const int B = 2, T = 19, NH = k.NH, NKV = k.NKV, HS = k.HS, half = HS / 2, W = (NH + 2 * NKV) * HS, max_pos = 40;
    vector<float> cos(size_t(max_pos) * half), sin(cos.size());
    for (int p = 0; p < max_pos; ++p)
      for (int i = 0; i < half; ++i) {
        const double angle = p * std::pow(10000.0, -2.0 * i / HS);
        cos[size_t(p) * half + i] = float(std::cos(angle)), sin[size_t(p) * half + i] = float(std::sin(angle));
      }
    vector<int> positions(size_t(B) * T);
    for (int i = 0; i < B * T; ++i) positions[i] = (i * 7) % max_pos;
    auto x = random_vector(size_t(B) * T * W, -2, 2);
    for (int variant = 0; variant < 2; ++variant) {  // positions array; pos_offset
      const int pos_offset = variant ? max_pos - T : 0;
      vector<double> want = to_double(x), back = to_double(x);
      for (int row = 0; row < B * T; ++row) {
        const int p = variant ? pos_offset + row % T : positions[row];
        for (int h = 0; h < NH + NKV; ++h)
          for (int i = 0; i < half; ++i) {
            const size_t a = size_t(row) * W + h * HS + i;
            const double c = cos[size_t(p) * half + i], s = sin[size_t(p) * half + i];
            want[a] = x[a] * c - x[a + half] * s, want[a + half] = x[a + half] * c + x[a] * s;
            back[a] = x[a] * c + x[a + half] * s, back[a + half] = x[a + half] * c - x[a] * s;
          }
      }
      Dev<float> d_x(x), d_dx(x), d_cos(cos), d_sin(sin);
      Dev<int> d_pos(positions);
      cu::rope_forward(d_x.ptr, d_cos.ptr, d_sin.ptr, variant ? nullptr : d_pos.ptr, B, T, NH, NKV, HS, max_pos, pos_offset);
      cu::rope_backward(d_dx.ptr, d_cos.ptr, d_sin.ptr, variant ? nullptr : d_pos.ptr, B, T, NH, NKV, HS, max_pos, pos_offset);
      char tag[80];
      std::snprintf(tag, sizeof tag, " NH=%d NKV=%d HS=%d%s", NH, NKV, HS, variant ? " pos_offset" : " positions");
      check(std::string("rope_forward") + tag, d_x.get(), want, 1e-6);
      check(std::string("rope_backward") + tag, d_dx.get(), back, 1e-6);
    }
  }
  for (int H : {1, 7, 64, 1536}) {  // SwiGLU, gates over [-8, 8) plus the far tails
    const int N = 9;
    auto x = random_vector(size_t(N) * 2 * H, -8, 8), dout = random_vector(size_t(N) * H), dinp0 = random_vector(x.size());
    const float tails[] = {-1000.0f, -104.0f, 88.0f, 1000.0f};
    for (int i = 0; i < 4 && i < H; ++i) x[i] = tails[i];
    vector<double> out(size_t(N) * H), dinp = to_double(dinp0);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < H; ++i) {
        const size_t g_at = size_t(n) * 2 * H + i;
        const double g = x[g_at], u = x[g_at + H], dy = dout[size_t(n) * H + i], s = 1 / (1 + std::exp(-g));
        out[size_t(n) * H + i] = g * s * u;
        dinp[g_at] += dy * u * s * (1 + g * (1 - s));
        dinp[g_at + H] += dy * g * s;
      }
    Dev<float> d_x(x), d_out(out.size()), d_dout(dout), d_dinp(dinp0);
    cu::swiglu_forward(d_out.ptr, d_x.ptr, N, H);
    cu::swiglu_backward(d_dinp.ptr, d_dout.ptr, d_x.ptr, N, H);
    check("swiglu_forward H=" + std::to_string(H), d_out.get(), out, 1e-6);
    check_increment("swiglu_backward H=" + std::to_string(H), d_dinp.get(), dinp0, dinp, 1e-6);
  }
  {  // encoder without a position table: out = wte[token]
    const int B = 2, T = 5, C = 12, V = 7;
    vector<int> tokens(size_t(B) * T);
    for (int i = 0; i < B * T; ++i) tokens[i] = (i * 3) % V;
    auto wte = random_vector(size_t(V) * C);
    vector<double> want(size_t(B) * T * C);
    for (int row = 0; row < B * T; ++row)
      for (int c = 0; c < C; ++c) want[size_t(row) * C + c] = wte[size_t(tokens[row]) * C + c];
    Dev<float> d_wte(wte), d_out(want.size());
    Dev<int> d_tok(tokens);
    cu::encoder_forward(d_out.ptr, d_tok.ptr, nullptr, d_wte.ptr, nullptr, B, T, C, 1000);
    check("encoder_forward with a null wpe", d_out.get(), want, 0);
  }
}

// ---- quantized and bf16 frozen weights ----
// References written from the formats' definitions (kernels.inc): every float32 step spelled out
// with its own rounding, so codes, scales and dequantized weights must match exactly; the matmuls
// are float64 sums of the reference's dequantized weights.
vector<float> spread_weights(size_t n, int row) {  // rows of very different magnitudes, as trained layers
  auto w = random_vector(n);
  for (size_t i = 0; i < n; i += row) {
    const float scale = std::pow(10.0f, std::uniform_real_distribution<float>(-3, 1)(g_rng));
    for (size_t j = i; j < std::min(n, i + row); ++j) w[j] *= scale;
  }
  return w;
}
template <typename T>
bool same_bits(const vector<T>& a, const vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
void check_bits(const std::string& name, bool ok) {
  if (!ok) ++g_failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
}
uint16_t bf16_ref(float x) {  // the nearer of the two neighbouring bf16 values, ties to the even one
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return 0x7fc0;
  if (std::isinf(x)) return static_cast<uint16_t>(u >> 16);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;  // toward zero; the next one away from zero
  float flo, fhi;
  std::memcpy(&flo, &lo, 4);
  std::memcpy(&fhi, &hi, 4);
  // Past the largest bf16 the next value is infinity: rounding compares against 2^128 there.
  const double vhi = std::isinf(fhi) ? std::copysign(std::ldexp(1.0, 128), x) : double(fhi);
  const double dlo = std::fabs(double(x) - flo), dhi = std::fabs(vhi - double(x));
  const bool up = dhi < dlo || (dhi == dlo && ((lo >> 16) & 1u));
  return static_cast<uint16_t>((up ? hi : lo) >> 16);
}
float widen_ref(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// NF4 reference over the flattened weight: blocks of 64, codes by the float midpoints, then the
// block absmax double-quantized around their mean with the dynamic 8-bit code.
struct Nf4Ref {
  vector<uint8_t> packed, qabsmax;
  vector<float> absmax2, deq;
  float offset;
};
Nf4Ref nf4_reference(const vector<float>& w) {
  using namespace gptune::quant;
  const size_t n = w.size();
  const long long blocks = (long long)((n + 63) / 64), stat_blocks = (blocks + 255) / 256;
  const auto code8 = make_dynamic_code();
  Nf4Ref r{vector<uint8_t>((n + 1) / 2, 0), vector<uint8_t>(blocks), vector<float>(stat_blocks), vector<float>(n), 0};
  vector<float> absmax(blocks);
  double sum = 0;
  for (long long b = 0; b < blocks; ++b) {
    const size_t first = size_t(b) * 64, last = std::min(n, first + 64);
    float m = 0;
    for (size_t i = first; i < last; ++i) m = std::max(m, std::fabs(w[i]));
    absmax[b] = m;
    sum += m;
    const float inv = m > 0 ? 1.0f / m : 0.0f;
    for (size_t i = first; i < last; ++i) {
      const float x = w[i] * inv;
      int code = 0;
      while (code < 15 && x > float((double(kNf4[code]) + kNf4[code + 1]) / 2)) ++code;
      r.packed[i / 2] |= static_cast<uint8_t>(i % 2 ? code : code << 4);
    }
  }
  const float mean = float(sum / double(blocks));
  r.offset = mean;
  for (long long sb = 0; sb < stat_blocks; ++sb) {
    float m = 0;
    for (long long b = sb * 256; b < std::min(blocks, sb * 256 + 256); ++b) m = std::max(m, std::fabs(absmax[b] - mean));
    r.absmax2[sb] = m;
    const float inv = m > 0 ? 1.0f / m : 0.0f;
    for (long long b = sb * 256; b < std::min(blocks, sb * 256 + 256); ++b) {
      const float x = (absmax[b] - mean) * inv;
      int best = 0;
      for (int k = 1; k < 256; ++k)
        if (std::fabs(code8[k] - x) < std::fabs(code8[best] - x)) best = k;
      r.qabsmax[b] = static_cast<uint8_t>(best);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const float a = code8[r.qabsmax[i / 64]] * r.absmax2[i / 64 / 256];
    const float block_absmax = a + mean;
    r.deq[i] = kNf4[i % 2 ? r.packed[i / 2] & 15 : r.packed[i / 2] >> 4] * block_absmax;
  }
  return r;
}

void test_quant() {
  struct Shape { int N, C, OC; };
  // N <= 8 takes the direct (one warp per output channel) forward, larger N the slab + fp32 GEMM.
  for (Shape s : {Shape{1, 1, 1}, Shape{1, 63, 21}, Shape{5, 65, 7}, Shape{8, 130, 33}, Shape{17, 63, 45}, Shape{33, 130, 19},
                  Shape{9, 257, 40}}) {
    const size_t n = size_t(s.OC) * s.C;
    const auto w = spread_weights(n, s.C), inp = random_vector(size_t(s.N) * s.C), bias = random_vector(s.OC);
    const auto dout = random_vector(size_t(s.N) * s.OC), dinp0 = random_vector(size_t(s.N) * s.C);
    char tag[64];
    std::snprintf(tag, sizeof tag, " N=%d C=%d OC=%d", s.N, s.C, s.OC);

    // int8 reference: scale = absmax / 127, q = round-half-even(w * (127 / absmax)).
    vector<int8_t> q_ref(n);
    vector<float> scale_ref(s.OC), int8_deq(n);
    for (int o = 0; o < s.OC; ++o) {
      float m = 0;
      for (int c = 0; c < s.C; ++c) m = std::max(m, std::fabs(w[size_t(o) * s.C + c]));
      scale_ref[o] = m / 127.0f;
      const float factor = m > 0 ? 127.0f / m : 0.0f;
      for (int c = 0; c < s.C; ++c) {
        const size_t i = size_t(o) * s.C + c;
        q_ref[i] = static_cast<int8_t>(std::nearbyint(w[i] * factor));
        int8_deq[i] = float(q_ref[i]) * scale_ref[o];
      }
    }
    const Nf4Ref nf4 = nf4_reference(w);
    const long long blocks = (long long)nf4.qabsmax.size(), stat_blocks = (long long)nf4.absmax2.size();
    const auto& packed_ref = nf4.packed;
    const auto& qabsmax_ref = nf4.qabsmax;
    const auto& absmax2_ref = nf4.absmax2;
    const auto& nf4_deq = nf4.deq;
    const float mean = nf4.offset;
    vector<uint16_t> bf16_bits(n);
    vector<float> bf16_deq(n);
    for (size_t i = 0; i < n; ++i) bf16_bits[i] = bf16_ref(w[i]), bf16_deq[i] = widen_ref(bf16_bits[i]);

    Dev<float> d_w(w), d_inp(inp), d_bias(bias), d_dout(dout), d_scale(s.OC), d_deq(n), d_absmax2(stat_blocks), d_offset(1);
    Dev<int8_t> d_q(n);
    Dev<uint8_t> d_packed((n + 1) / 2), d_qabsmax(blocks);
    Dev<uint16_t> d_bf16(n);
    cu::quantize_int8(d_q.ptr, d_scale.ptr, d_w.ptr, s.OC, s.C);
    check_bits(std::string("quantize_int8 codes and scales") + tag, same_bits(d_q.get(), q_ref) && same_bits(d_scale.get(), scale_ref));
    cu::dequantize_int8(d_deq.ptr, d_q.ptr, d_scale.ptr, s.OC, s.C);
    check_bits(std::string("dequantize_int8") + tag, same_bits(d_deq.get(), int8_deq));
    cu::quantize_nf4(d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, d_w.ptr, (long long)n);
    check_bits(std::string("quantize_nf4 packed, qabsmax, absmax2, offset") + tag,
               same_bits(d_packed.get(), packed_ref) && same_bits(d_qabsmax.get(), qabsmax_ref) &&
                   same_bits(d_absmax2.get(), absmax2_ref) && same_bits(d_offset.get(), vector<float>{mean}));
    cu::dequantize_nf4(d_deq.ptr, d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, (long long)n);
    check_bits(std::string("dequantize_nf4") + tag, same_bits(d_deq.get(), nf4_deq));
    cu::convert_f32_to_bf16(d_bf16.ptr, d_w.ptr, (long long)n);
    check_bits(std::string("convert_f32_to_bf16") + tag, same_bits(d_bf16.get(), bf16_bits));

    struct Format {
      const char* name;
      const vector<float>* deq;
      std::function<void(float*, const float*)> forward;
      std::function<void(float*)> backward;
    };
    const Format formats[] = {
        {"int8", &int8_deq, [&](float* out, const float* b) { cu::matmul_int8_forward(out, d_inp.ptr, d_q.ptr, d_scale.ptr, b, s.N, s.C, s.OC); },
         [&](float* dinp) { cu::matmul_int8_backward(dinp, d_dout.ptr, d_q.ptr, d_scale.ptr, s.N, s.C, s.OC); }},
        {"nf4", &nf4_deq,
         [&](float* out, const float* b) {
           cu::matmul_nf4_forward(out, d_inp.ptr, d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, b, s.N, s.C, s.OC);
         },
         [&](float* dinp) { cu::matmul_nf4_backward(dinp, d_dout.ptr, d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, s.N, s.C, s.OC); }},
        {"bf16", &bf16_deq, [&](float* out, const float* b) { cu::matmul_bf16_forward(out, d_inp.ptr, d_bf16.ptr, b, s.N, s.C, s.OC); },
         [&](float* dinp) { cu::matmul_bf16_backward(dinp, d_dout.ptr, d_bf16.ptr, s.N, s.C, s.OC); }},
    };
    const vector<float> zero_out(size_t(s.N) * s.OC, 0.0f);
    for (const Format& f : formats) {
      Dev<float> d_out(size_t(s.N) * s.OC), d_dinp(dinp0);
      f.forward(d_out.ptr, d_bias.ptr);
      check(std::string("matmul_") + f.name + "_forward" + tag, d_out.get(),
            ref_gemm(false, true, s.N, s.OC, s.C, 1, inp, s.C, *f.deq, s.C, 0, zero_out, s.OC, &bias), 1e-5);
      f.forward(d_out.ptr, nullptr);
      check(std::string("matmul_") + f.name + "_forward no bias" + tag, d_out.get(),
            ref_gemm(false, true, s.N, s.OC, s.C, 1, inp, s.C, *f.deq, s.C, 0, zero_out, s.OC, nullptr), 1e-5);
      f.backward(d_dinp.ptr);
      check_increment(std::string("matmul_") + f.name + "_backward dinp" + tag, d_dinp.get(), dinp0,
                      ref_gemm(false, false, s.N, s.C, s.OC, 1, dout, s.OC, *f.deq, s.C, 1, dinp0, s.C, nullptr), 1e-5);
      f.backward(nullptr);  // no input gradient wanted: nothing to do, nothing written
    }
  }
  // More than 256 NF4 blocks (several second-level scales), a partial last block and a half byte.
  {
    const size_t n = 64 * 600 + 1;
    const auto w = spread_weights(n, 64);
    const Nf4Ref want = nf4_reference(w);
    const long long blocks = (long long)want.qabsmax.size();
    Dev<float> d_w(w), d_absmax2(want.absmax2.size()), d_offset(1), d_deq(n);
    Dev<uint8_t> d_packed((n + 1) / 2), d_qabsmax(blocks);
    cu::quantize_nf4(d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, d_w.ptr, (long long)n);
    cu::dequantize_nf4(d_deq.ptr, d_packed.ptr, d_qabsmax.ptr, d_absmax2.ptr, d_offset.ptr, (long long)n);
    check_bits("quantize_nf4 + dequantize_nf4 n=" + std::to_string(n) + " (601 blocks, 3 second-level scales)",
               same_bits(d_packed.get(), want.packed) && same_bits(d_qabsmax.get(), want.qabsmax) &&
                   same_bits(d_absmax2.get(), want.absmax2) && same_bits(d_offset.get(), vector<float>{want.offset}) &&
                   same_bits(d_deq.get(), want.deq));
  }
  // bf16 rounding at ties, overflow, NaN and infinities.
  {
    const vector<float> x = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -(1.0f + 0x1p-8f), 3.397e38f, INFINITY, -INFINITY, NAN, -0.0f, 0x1p-130f};
    const vector<uint16_t> want = {0x3f80, 0x3f82, 0xbf80, 0x7f80, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x0008};
    Dev<float> d_x(x);
    Dev<uint16_t> d_b(x.size());
    cu::convert_f32_to_bf16(d_b.ptr, d_x.ptr, (long long)x.size());
    check_bits("convert_f32_to_bf16 ties to even, overflow, infinities, NaN, -0, subnormal", same_bits(d_b.get(), want));
  }
}
// ---- GGML block formats ----
// The reference is ggml itself: quantize_row_*_ref and dequantize_row_* of the libggml-base.so that
// node-llama-cpp ships (llama.cpp's release, built without FMA: its products and sums round one by
// one, as ggml's generic C code says), dlopen'ed from node_modules. Quantized bytes and dequantized
// floats must equal ggml's bit for bit; the matmuls are float64 sums of ggml's dequantized weights,
// within 1e-5 (float32 accumulation of up to 512 terms: ~sqrt(512) * 2^-24 = 1.3e-6 relative).
struct GgmlType {
  int id;
  const char* name;
  int values, bytes;  // per block
  void (*quantize)(const float*, void*, int64_t);
  void (*dequantize)(const void*, float*, int64_t);
};
vector<GgmlType> ggml_types() {
  const char* path = std::getenv("GPTUNE_LIBGGML_BASE");
  if (!path) path = "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    ++g_failures;
    std::printf("FAIL ggml reference: cannot load %s (%s); run from the repository root after npm install\n", path, dlerror());
    return {};
  }
  vector<GgmlType> types = {{2, "q4_0", 32, 18}, {6, "q5_0", 32, 22}, {8, "q8_0", 32, 34}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210}};
  for (auto& t : types) {
    t.quantize = reinterpret_cast<void (*)(const float*, void*, int64_t)>(dlsym(lib, ("quantize_row_" + std::string(t.name) + "_ref").c_str()));
    t.dequantize = reinterpret_cast<void (*)(const void*, float*, int64_t)>(dlsym(lib, ("dequantize_row_" + std::string(t.name)).c_str()));
    if (!t.quantize || !t.dequantize) {
      ++g_failures;
      std::printf("FAIL ggml reference: %s lacks the %s functions\n", path, t.name);
      return {};
    }
  }
  return types;
}

// Weights a quantizer must get right beyond random rows: rows of very different magnitudes, an
// all-zero block, a block whose only non-zero value is negative, a constant block, and one
// weight far larger than the rest of its block.
vector<float> ggml_weights(int rows, int C) {
  auto w = spread_weights(size_t(rows) * C, C);
  for (int c = 0; c < 256 && c < C; ++c) w[c] = 0.0f;
  if (rows > 1) {
    for (int c = 0; c < 256; ++c) w[size_t(C) + c] = c == 37 ? -0.75f : 0.0f;
  }
  if (rows > 2) {
    for (int c = 0; c < 256; ++c) w[size_t(2) * C + c] = 0.3125f;
    w[size_t(2) * C + 300 % C] = 40.0f;
  }
  return w;
}

void test_ggml() {
  const auto types = ggml_types();
  for (const GgmlType& t : types) {
    // quantize / dequantize, rows back to back.
    {
      const int rows = 9, C = 512;
      const size_t n = size_t(rows) * C, nbytes = n / t.values * t.bytes;
      const auto w = ggml_weights(rows, C);
      vector<uint8_t> want_blocks(nbytes);
      vector<float> want_deq(n);
      t.quantize(w.data(), want_blocks.data(), int64_t(n));
      t.dequantize(want_blocks.data(), want_deq.data(), int64_t(n));
      Dev<float> d_w(w), d_deq(n);
      Dev<uint8_t> d_blocks(nbytes);
      cu::quantize_ggml(d_blocks.ptr, d_w.ptr, t.id, rows, C);
      check_bits(std::string("quantize_ggml ") + t.name + " rows=9 C=512 equals ggml's quantize_row_" + t.name + "_ref",
                 same_bits(d_blocks.get(), want_blocks));
      cu::dequantize_ggml(d_deq.ptr, d_blocks.ptr, t.id, rows, C);
      check_bits(std::string("dequantize_ggml ") + t.name + " rows=9 C=512 equals ggml's dequantize_row_" + t.name,
                 same_bits(d_deq.get(), want_deq));
    }
    // matmuls on W (OC,C) quantized by ggml: out is a column slice of a wider (N, OC+5) output, dout
    // a slice of a wider (N, OC+3) gradient whose other columns are NaN.
    const int C = 256 * (t.values == 32 ? 1 : 2) + (t.values == 32 ? 32 : 0), OC = 37;
    const int out_stride = OC + 5, dout_stride = OC + 3;
    const auto w = ggml_weights(OC, C);
    vector<uint8_t> blocks(size_t(OC) * C / t.values * t.bytes);
    vector<float> deq(size_t(OC) * C);
    t.quantize(w.data(), blocks.data(), int64_t(w.size()));
    t.dequantize(blocks.data(), deq.data(), int64_t(deq.size()));
    Dev<uint8_t> d_blocks(blocks);
    const auto bias = random_vector(OC);
    Dev<float> d_bias(bias);
    for (const int N : {1, 3, 64, 200}) {
      char tag[96];
      std::snprintf(tag, sizeof tag, " %s N=%d C=%d OC=%d", t.name, N, C, OC);
      const auto inp = random_vector(size_t(N) * C), out0 = random_vector(size_t(N) * out_stride);
      vector<float> dout(size_t(N) * dout_stride, NAN);
      for (int r = 0; r < N; ++r)
        for (int o = 0; o < OC; ++o) dout[size_t(r) * dout_stride + o] = random_vector(1)[0];
      const auto dinp0 = random_vector(size_t(N) * C);
      // N = 3 reads its input at a view misaligned by one float (the decoding kernel's scalar loads).
      const int shift = N == 3 ? 1 : 0;
      vector<float> inp_view(shift, 0.0f);
      inp_view.insert(inp_view.end(), inp.begin(), inp.end());
      for (const bool with_bias : {true, false}) {
        Dev<float> d_inp(inp_view), d_out(out0);
        cu::matmul_ggml_forward(d_out.ptr, d_inp.ptr + shift, d_blocks.ptr, with_bias ? d_bias.ptr : nullptr, t.id, N, C, OC, out_stride);
        const auto got = d_out.get();
        vector<float> got_slice(size_t(N) * OC);
        vector<double> want(size_t(N) * OC);
        bool untouched = true;
        for (int r = 0; r < N; ++r) {
          for (int o = 0; o < OC; ++o) {
            double sum = with_bias ? bias[o] : 0.0;
            for (int c = 0; c < C; ++c) sum += double(inp[size_t(r) * C + c]) * deq[size_t(o) * C + c];
            want[size_t(r) * OC + o] = sum;
            got_slice[size_t(r) * OC + o] = got[size_t(r) * out_stride + o];
          }
          for (int o = OC; o < out_stride; ++o)
            untouched = untouched && std::memcmp(&got[size_t(r) * out_stride + o], &out0[size_t(r) * out_stride + o], 4) == 0;
        }
        check(std::string("matmul_ggml_forward") + (with_bias ? "" : " no bias") + tag + " stride=42", got_slice, want, 1e-5);
        check_exact(std::string("matmul_ggml_forward columns past OC untouched") + tag, {untouched}, {true});
      }
      Dev<float> d_dout(dout), d_dinp(dinp0);
      cu::matmul_ggml_backward(d_dinp.ptr, d_dout.ptr, d_blocks.ptr, t.id, N, C, OC, dout_stride);
      vector<double> want = to_double(dinp0);
      for (int r = 0; r < N; ++r)
        for (int c = 0; c < C; ++c) {
          double sum = 0;
          for (int o = 0; o < OC; ++o) sum += double(dout[size_t(r) * dout_stride + o]) * deq[size_t(o) * C + c];
          want[size_t(r) * C + c] += sum;
        }
      check_increment(std::string("matmul_ggml_backward dinp") + tag + " dout stride=40", d_dinp.get(), dinp0, want, 1e-5);
      cu::matmul_ggml_backward(nullptr, d_dout.ptr, d_blocks.ptr, t.id, N, C, OC, dout_stride);  // no input gradient: a no-op
    }
    // The direct (decoding) kernel dequantizes in registers: with one-hot input rows, out[n][o] is
    // W[o][c] itself (one exact product, sums of zeros), which must equal ggml's dequantized value.
    // The first 256 columns are one round of the warp's lanes: every lane's position in a block.
    {
      const int N = 8;
      Dev<float> d_out(size_t(N) * OC);
      bool same = true;
      for (int c0 = 0; c0 < 256; c0 += N) {
        vector<float> onehot(size_t(N) * C, 0.0f);
        for (int r = 0; r < N; ++r) onehot[size_t(r) * C + c0 + r] = 1.0f;
        Dev<float> d_inp(onehot);
        cu::matmul_ggml_forward(d_out.ptr, d_inp.ptr, d_blocks.ptr, nullptr, t.id, N, C, OC, OC);
        const auto got = d_out.get();
        for (int r = 0; r < N; ++r)
          for (int o = 0; o < OC; ++o) same = same && got[size_t(r) * OC + o] == deq[size_t(o) * C + c0 + r];
      }
      check_exact(std::string("matmul_ggml_forward N=8 with one-hot rows gives ggml's dequantized values exactly ") + t.name, {same}, {true});
    }
  }
  bool threw = false;
  try {
    Dev<float> d(32);
    Dev<uint8_t> b(34);
    cu::quantize_ggml(b.ptr, d.ptr, 3, 1, 32);
  } catch (const gptune::Error& e) {
    threw = std::strstr(e.what(), "received 3") != nullptr;
  }
  check_exact("quantize_ggml rejects ggml type 3 (Q4_1) with an error naming it", {threw}, {true});
}

// ---- LoRA adapters ----
namespace gptune::cuda {
void lora_set_chunk_floats_for_tests(long long floats);  // lora.cu's test hook
}  // namespace gptune::cuda
namespace {

void test_lora() {
  struct Shape { int N, C, R, OC, ld, offset; };
  const float scaling = 1.75f;
  const uint64_t seed = 987654321;
  // fp32 products: float32 rounding only (1e-5); bf16: operands rounded to 8 bits (1e-2).
  for (const bool bf16 : {false, true})
    for (const long long chunk : {0LL, 100LL})  // the default chunk, and chunks of a few rows
      for (const Shape s : {Shape{1, 13, 1, 5, 5, 0}, Shape{7, 37, 3, 11, 20, 4}, Shape{33, 70, 16, 29, 64, 30}})
        for (const float p : {0.0f, 0.3f}) {
          if (bf16 && (chunk || s.N == 1)) continue;
          cu::set_matmul_precision(bf16);
          cu::lora_set_chunk_floats_for_tests(chunk);
          const int N = s.N, C = s.C, R = s.R, OC = s.OC, ld = s.ld, off = s.offset;
          const auto inp = random_vector(size_t(N) * C), A = random_vector(size_t(R) * C), B = random_vector(size_t(OC) * R);
          const auto out0 = random_vector(size_t(N) * ld);
          vector<float> dout(size_t(N) * ld, NAN);  // NaN outside the slice: reading it poisons everything
          for (int n = 0; n < N; ++n)
            for (int o = 0; o < OC; ++o) dout[size_t(n) * ld + off + o] = random_vector(1)[0];
          const auto dinp0 = random_vector(size_t(N) * C), dA0 = random_vector(size_t(R) * C), dB0 = random_vector(size_t(OC) * R);
          const double scale = 1.0f / (1.0f - p);
          vector<double> m(size_t(N) * C, 1.0);
          if (p > 0)
            for (size_t i = 0; i < m.size(); ++i) m[i] = dropout_keep_ref(seed, i, p) ? scale : 0.0;
          vector<double> u(size_t(N) * R), out = to_double(out0), du(size_t(N) * R), dB = to_double(dB0), dA = to_double(dA0),
                                           dinp = to_double(dinp0);
          for (int n = 0; n < N; ++n)
            for (int r = 0; r < R; ++r) {
              double sum = 0, g = 0;
              for (int c = 0; c < C; ++c) sum += m[size_t(n) * C + c] * inp[size_t(n) * C + c] * A[size_t(r) * C + c];
              for (int o = 0; o < OC; ++o) g += double(dout[size_t(n) * ld + off + o]) * B[size_t(o) * R + r];
              u[size_t(n) * R + r] = sum;
              du[size_t(n) * R + r] = scaling * g;
            }
          for (int n = 0; n < N; ++n)
            for (int o = 0; o < OC; ++o) {
              double sum = 0;
              for (int r = 0; r < R; ++r) {
                sum += u[size_t(n) * R + r] * B[size_t(o) * R + r];
                dB[size_t(o) * R + r] += scaling * double(dout[size_t(n) * ld + off + o]) * u[size_t(n) * R + r];
              }
              out[size_t(n) * ld + off + o] += scaling * sum;
            }
          for (int n = 0; n < N; ++n)
            for (int c = 0; c < C; ++c) {
              double sum = 0;
              for (int r = 0; r < R; ++r) {
                sum += du[size_t(n) * R + r] * A[size_t(r) * C + c];
                dA[size_t(r) * C + c] += du[size_t(n) * R + r] * m[size_t(n) * C + c] * inp[size_t(n) * C + c];
              }
              dinp[size_t(n) * C + c] += m[size_t(n) * C + c] * sum;
            }
          Dev<float> d_inp(inp), d_A(A), d_B(B), d_out(out0), d_u(size_t(N) * R), d_dout(dout), d_du(size_t(N) * R), d_dinp(dinp0),
              d_dA(dA0), d_dB(dB0);
          cu::lora_forward(d_out.ptr, d_u.ptr, d_inp.ptr, d_A.ptr, d_B.ptr, N, C, R, OC, ld, off, scaling, p, seed);
          cu::lora_backward(d_dinp.ptr, d_dA.ptr, d_dB.ptr, d_du.ptr, d_dout.ptr, d_u.ptr, d_inp.ptr, d_A.ptr, d_B.ptr, N, C, R, OC,
                            ld, off, scaling, p, seed);
          const double tol = bf16 ? 1e-2 : 1e-5;
          char tag[128];
          std::snprintf(tag, sizeof tag, " %s N=%d C=%d R=%d OC=%d ld=%d off=%d p=%.1f%s", bf16 ? "bf16" : "fp32", N, C, R, OC, ld,
                        off, p, chunk ? " small chunks" : "");
          check(std::string("lora_forward u") + tag, d_u.get(), u, tol);
          const auto got_out = d_out.get();
          check_increment(std::string("lora_forward out") + tag, got_out, out0, out, tol);
          bool untouched = true;
          for (int n = 0; n < N; ++n)
            for (int c = 0; c < ld; ++c)
              if ((c < off || c >= off + OC) && std::memcmp(&got_out[size_t(n) * ld + c], &out0[size_t(n) * ld + c], 4) != 0) untouched = false;
          check_exact(std::string("lora_forward columns outside the slice untouched") + tag, {untouched}, {true});
          check(std::string("lora_backward du") + tag, d_du.get(), du, tol);
          check_increment(std::string("lora_backward dB") + tag, d_dB.get(), dB0, dB, tol);
          check_increment(std::string("lora_backward dA") + tag, d_dA.get(), dA0, dA, tol);
          check_increment(std::string("lora_backward dinp") + tag, d_dinp.get(), dinp0, dinp, tol);
        }
  cu::lora_set_chunk_floats_for_tests(0);
  cu::set_matmul_precision(false);
  {  // The mask itself: with C = R = OC = 1 and inp = A = B = 1, u[n] is element n's multiplier.
    const int N = 3000;
    const float p = 0.25f;
    const vector<float> ones(N, 1.0f);
    Dev<float> d_ones(ones), d_out(N), d_u(N);
    cu::lora_forward(d_out.ptr, d_u.ptr, d_ones.ptr, d_ones.ptr, d_ones.ptr, N, 1, 1, 1, 1, 0, 1.0f, p, seed);
    vector<double> want(N);
    for (int n = 0; n < N; ++n) want[n] = dropout_keep_ref(seed, n, p) ? double(1.0f / (1.0f - p)) : 0.0;
    check("lora dropout mask equals the definition (3000 elements)", d_u.get(), want, 0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  auto run = [&](const char* name, void (*fn)()) {
    if (only.empty() || only == name) fn();
  };
  run("device", test_device);
  run("elementwise", test_elementwise);
  if (only == "encoder_bits") {  // for test_encoder_backward_repeats: the bits in this process's mode
    std::printf("%016llx\n", static_cast<unsigned long long>(encoder_backward_bits()));
    return 0;
  }
  run("encoder", test_encoder);
  run("encoder", test_encoder_backward_repeats);
  run("layernorm", test_layernorm);
  run("crossentropy", test_crossentropy);
  run("adamw", test_adamw);
  run("matmul_fp32", [] { test_matmul(false, false); });
  run("matmul_bf16", [] {
    test_matmul(true, false);
    test_matmul(true, true);
  });
  run("attention", test_attention);
  run("attention_cached", test_attention_cached);  // also part of "attention": the KV-cache kernels alone
  run("attention_bf16", test_attention_bf16);
  run("llama", test_llama_kernels);
  run("quant", test_quant);
  run("ggml", test_ggml);
  run("lora", test_lora);
  std::printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
  return g_failures ? 1 : 0;
}
