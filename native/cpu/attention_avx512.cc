// AVX-512 versions of attention.cc's tile primitives (see AttentionTileOps there for the contracts).
// Compiled with AVX-512 flags and only called after cpu_has_avx512(). Everything here besides the
// three entry points has internal linkage and no standard-library templates are instantiated, so no
// AVX-512 code can be merged by the linker into the baseline translation units.
#if defined(__AVX512F__)
#include <cstdint>

#include "cpu/exp_avx512.h"

namespace gptune::cpu {
namespace {

// Lanes [0, n) of a 16-float vector, n clamped to [0, 16] (first_lanes wants 0 <= n <= 16).
inline __mmask16 lanes_up_to(int n) { return avx512::first_lanes(n < 0 ? 0 : n > 16 ? 16 : n); }

// exp(x), with results below float32's normal range (x < -87) flushed to exactly 0. Producing a
// denormal, or underflowing to 0 from one, costs a microcode assist of over a hundred cycles, and
// every masked (-inf) score on a diagonal tile would take one; the flushed values are < 1.7e-38 of
// a softmax sum that is >= 1. NaN still propagates (NLT_UQ is true and MAXPS returns x for NaN).
inline __m512 exp_flush_tiny(__m512 x) {
  const __m512 lowest = _mm512_set1_ps(-87.0f);
  const __mmask16 normal = _mm512_cmp_ps_mask(x, lowest, _CMP_NLT_UQ);
  return _mm512_maskz_mov_ps(normal, avx512::exp_ps(_mm512_max_ps(lowest, x)));
}

// A block of R rows (R <= 6) by NC vectors (NC <= 4, the last one masked by lanes[NC-1]) of
// C = A.B: R*NC accumulators stay in registers for the whole K loop; each step loads NC vectors of
// one B row and broadcasts R scalars of A.
template <int R, int NC>
void product_block(float* C, int64_t ldc, const float* A, int64_t a_row, int64_t a_col,
                   const float* B, int64_t ldb, int K, const __mmask16* lanes, bool accumulate,
                   const float* row_scale) {
  // Fully unrolled so GCC keeps acc in registers (a rolled loop over acc spills it every step).
  __m512 acc[R][NC];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m512 scale = _mm512_set1_ps(row_scale ? row_scale[r] : 1.0f);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c)
      acc[r][c] = accumulate
                      ? _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes[c], C + r * ldc + 16 * c), scale)
                      : _mm512_setzero_ps();
  }
  for (int k = 0; k < K; ++k) {
    const float* b_row = B + k * ldb;
    __m512 b[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) b[c] = _mm512_maskz_loadu_ps(lanes[c], b_row + 16 * c);
    const float* a = A + k * a_col;
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512 a_r = _mm512_set1_ps(a[r * a_row]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_fmadd_ps(a_r, b[c], acc[r][c]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) _mm512_mask_storeu_ps(C + r * ldc + 16 * c, lanes[c], acc[r][c]);
}

using ProductBlock = void (*)(float*, int64_t, const float*, int64_t, int64_t, const float*,
                              int64_t, int, const __mmask16*, bool, const float*);

// kBlocks[R-1][NC-1]
constexpr ProductBlock kBlocks[6][4] = {
    {product_block<1, 1>, product_block<1, 2>, product_block<1, 3>, product_block<1, 4>},
    {product_block<2, 1>, product_block<2, 2>, product_block<2, 3>, product_block<2, 4>},
    {product_block<3, 1>, product_block<3, 2>, product_block<3, 3>, product_block<3, 4>},
    {product_block<4, 1>, product_block<4, 2>, product_block<4, 3>, product_block<4, 4>},
    {product_block<5, 1>, product_block<5, 2>, product_block<5, 3>, product_block<5, 4>},
    {product_block<6, 1>, product_block<6, 2>, product_block<6, 3>, product_block<6, 4>},
};

// C (R,1) = A (R,K) . b (K) with A's rows contiguous (a_col == 1) and b contiguous: one query
// against many keys when decoding with the KV cache. The blocked kernel would vectorise along a
// single column there (one lane in sixteen busy); dot products along K keep all lanes busy, four
// rows at a time for independent FMA chains.
void product_column(float* C, int64_t ldc, const float* A, int64_t a_row, const float* b, int R,
                    int K, bool accumulate, const float* row_scale) {
  for (int r0 = 0; r0 < R; r0 += 4) {
    const int rows = R - r0 < 4 ? R - r0 : 4;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int k = 0; k < K; k += 16) {
      const __mmask16 lanes = lanes_up_to(K - k);
      const __m512 b_k = _mm512_maskz_loadu_ps(lanes, b + k);
      for (int i = 0; i < rows; ++i)
        acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, A + (r0 + i) * a_row + k), b_k, acc[i]);
    }
    for (int i = 0; i < rows; ++i) {
      float* c = C + (r0 + i) * ldc;
      const float previous = !accumulate ? 0.0f : row_scale ? row_scale[r0 + i] * *c : *c;
      *c = previous + _mm512_reduce_add_ps(acc[i]);
    }
  }
}

}  // namespace

void attention_product_avx512(float* C, int64_t ldc, const float* A, int64_t a_row, int64_t a_col,
                              const float* B, int64_t ldb, int R, int N, int K, bool accumulate,
                              const float* row_scale) {
  if (N == 1 && a_col == 1) {
    // b is column 0 of B (K floats, ldb apart); copied contiguous in pieces of at most 256
    float column[256];
    for (int k0 = 0; k0 < K; k0 += 256) {
      const int piece = K - k0 < 256 ? K - k0 : 256;
      for (int k = 0; k < piece; ++k) column[k] = B[(k0 + k) * ldb];
      product_column(C, ldc, A + k0, a_row, column, R, piece, accumulate || k0 > 0,
                     k0 > 0 ? nullptr : row_scale);
    }
    return;
  }
  for (int n0 = 0; n0 < N; n0 += 64) {
    const int width = N - n0 < 64 ? N - n0 : 64;
    const int nc = (width + 15) / 16;
    const __mmask16 lanes[4] = {lanes_up_to(width), lanes_up_to(width - 16),
                                lanes_up_to(width - 32), lanes_up_to(width - 48)};
    for (int r0 = 0; r0 < R; r0 += 6) {
      const int rows = R - r0 < 6 ? R - r0 : 6;
      kBlocks[rows - 1][nc - 1](C + r0 * ldc + n0, ldc, A + r0 * a_row, a_row, a_col, B + n0, ldb,
                                K, lanes, accumulate, row_scale ? row_scale + r0 : nullptr);
    }
  }
}

void attention_online_softmax_avx512(float* St, int64_t ld, int nk, int nq, float* row_max,
                                     float* row_sum, float* rescale) {
  const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
  for (int i0 = 0; i0 < nq; i0 += 16) {
    const __mmask16 lanes = lanes_up_to(nq - i0);
    const __m512 old_max = _mm512_maskz_loadu_ps(lanes, row_max + i0);
    __m512 new_max = old_max;
    for (int j = 0; j < nk; ++j)
      new_max = _mm512_max_ps(new_max, _mm512_maskz_loadu_ps(lanes, St + j * ld + i0));
    // Queries whose keys are all masked so far keep max -inf; subtract 0 for them, not -inf.
    const __m512 base = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(new_max, neg_inf, _CMP_EQ_OQ),
                                             new_max, _mm512_setzero_ps());
    const __m512 alpha = exp_flush_tiny(_mm512_sub_ps(old_max, base));
    __m512 sum = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, row_sum + i0), alpha);
    for (int j = 0; j < nk; ++j) {
      float* s = St + j * ld + i0;
      const __m512 p = exp_flush_tiny(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, s), base));
      _mm512_mask_storeu_ps(s, lanes, p);
      sum = _mm512_add_ps(sum, p);
    }
    _mm512_mask_storeu_ps(row_max + i0, lanes, new_max);
    _mm512_mask_storeu_ps(row_sum + i0, lanes, sum);
    _mm512_mask_storeu_ps(rescale + i0, lanes, alpha);
  }
}

void attention_softmax_backward_avx512(float* St, float* dPt, int64_t ld, int nk, int nq,
                                       const float* lse, const float* D, float scale) {
  const __m512 scale_v = _mm512_set1_ps(scale);
  for (int i0 = 0; i0 < nq; i0 += 16) {
    const __mmask16 lanes = lanes_up_to(nq - i0);
    const __m512 lse_v = _mm512_maskz_loadu_ps(lanes, lse + i0);
    const __m512 D_v = _mm512_maskz_loadu_ps(lanes, D + i0);
    for (int j = 0; j < nk; ++j) {
      float* s = St + j * ld + i0;
      float* dp = dPt + j * ld + i0;
      const __m512 p = exp_flush_tiny(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, s), lse_v));
      const __m512 dp_v = _mm512_maskz_loadu_ps(lanes, dp);
      _mm512_mask_storeu_ps(s, lanes, p);
      _mm512_mask_storeu_ps(dp, lanes, _mm512_mul_ps(_mm512_mul_ps(p, scale_v),
                                                     _mm512_sub_ps(dp_v, D_v)));
    }
  }
}

}  // namespace gptune::cpu
#endif  // __AVX512F__
