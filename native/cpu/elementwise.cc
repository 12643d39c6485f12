// Elementwise helpers. The loops are written so the compiler vectorises them at baseline x86-64
// (no reductions, restrict-qualified pointers); only sum_squares, a reduction, has an AVX-512 path
// (elementwise_avx512.cc).
#include <algorithm>
#include <vector>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

double sum_squares(const float* x, int64_t n) {
  // Four independent accumulators so the additions overlap instead of waiting on each other.
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(x[i + k]) * x[i + k];
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]) * x[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace portable

void residual_forward(float* out, const float* a, const float* b, long long n) {
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    float* __restrict o = out;
    const float* __restrict pa = a;
    const float* __restrict pb = b;
    for (int64_t i = begin; i < end; ++i) o[i] = pa[i] + pb[i];
  });
}

void add_inplace(float* dst, const float* src, long long n) {
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    float* __restrict d = dst;
    const float* __restrict s = src;
    for (int64_t i = begin; i < end; ++i) d[i] += s[i];
  });
}

void scale_inplace(float* x, float s, long long n) {
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) x[i] *= s;
  });
}

void fill(float* x, float value, long long n) {
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    std::fill(x + begin, x + end, value);
  });
}

double sum_squares(const float* x, long long n) {
  // One double partial per thread, added in thread order: no shared accumulator, and the same
  // result for the same thread count.
  std::vector<double> partials(num_threads(), 0.0);
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int thread) {
    partials[thread] = GPTUNE_ROW_KERNEL(sum_squares)(x + begin, end - begin);
  });
  double total = 0.0;
  for (double p : partials) total += p;
  return total;
}

}  // namespace gptune::cpu
