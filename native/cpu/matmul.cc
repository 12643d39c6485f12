// Linear layer (weight stored like nn.Linear: (OC, C)) on top of sgemm.
#include <algorithm>
#include <cstdint>

#include "gptune/kernels.h"
#include "parallel.h"
#include "sgemm.h"

namespace gptune::cpu {

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
  // out (N,OC) = inp (N,C) @ weight^T (C,OC) + bias (OC): an NT gemm, bias fused into its stores.
  sgemm_bias(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, bias, out, OC);
}

void matmul_backward(float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight,
                     int N, int C, int OC) {
  // dinp (N,C) += dout (N,OC) @ weight (OC,C)
  if (dinp) sgemm(false, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
  if (dweight) sgemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias) {
    // dbias (OC) += column sums of dout (N,OC); threads own disjoint column ranges, and each walks
    // the rows in order so the inner loop is a contiguous, vectorisable add into dbias.
    parallel_for(OC, 1024, [&](int64_t begin, int64_t end, int) {
      float* __restrict db = dbias;
      for (int64_t row = 0; row < N; ++row) {
        const float* __restrict d = dout + row * OC;
        for (int64_t o = begin; o < end; ++o) db[o] += d[o];
      }
    });
  }
}

}  // namespace gptune::cpu
