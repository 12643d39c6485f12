// Cross-entropy and softmax rows, 16 logits at a time; the same results as the portable loops in
// crossentropy.cc. Sums of exponentials are added in float only within 64-logit blocks and in
// double across blocks, so V = 50257 loses no more than a few float roundings.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include <climits>
#include <cmath>

#include "row_kernels.h"

namespace gptune::cpu::avx512 {
namespace {

inline void add_to_double(__m512d* acc, __m512 v) {
  acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

// Sum over i < V of exp(x[i] * in_scale - shift), also stored to out[i] when out is non-null.
double sum_exp(const float* x, int V, float in_scale, float shift, float* out) {
  const __m512 scale_v = _mm512_set1_ps(in_scale), shift_v = _mm512_set1_ps(shift);
  auto term = [&](__m512 v) { return exp_ps(_mm512_fmsub_ps(v, scale_v, shift_v)); };
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  int i = 0;
  for (; i + 64 <= V; i += 64) {
    __m512 e0 = term(_mm512_loadu_ps(x + i)), e1 = term(_mm512_loadu_ps(x + i + 16));
    __m512 e2 = term(_mm512_loadu_ps(x + i + 32)), e3 = term(_mm512_loadu_ps(x + i + 48));
    if (out) {
      _mm512_storeu_ps(out + i, e0);
      _mm512_storeu_ps(out + i + 16, e1);
      _mm512_storeu_ps(out + i + 32, e2);
      _mm512_storeu_ps(out + i + 48, e3);
    }
    add_to_double(acc, _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)));
  }
  for (; i + 16 <= V; i += 16) {
    __m512 e = term(_mm512_loadu_ps(x + i));
    if (out) _mm512_storeu_ps(out + i, e);
    add_to_double(acc, e);
  }
  if (i < V) {
    const __mmask16 tail = first_lanes(V - i);
    __m512 e = _mm512_maskz_mov_ps(tail, term(_mm512_maskz_loadu_ps(tail, x + i)));
    if (out) _mm512_mask_storeu_ps(out + i, tail, e);
    add_to_double(acc, e);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]));
}

// max over i < V of x[i] * in_scale. A NaN entry may or may not survive the max, but sum_exp turns
// it into a NaN sum either way.
float max_scaled(const float* x, int V, float in_scale) {
  const __m512 scale_v = _mm512_set1_ps(in_scale);
  __m512 m[4];
  for (auto& lane_max : m) lane_max = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 64 <= V; i += 64)
    for (int k = 0; k < 4; ++k) m[k] = _mm512_max_ps(m[k], _mm512_mul_ps(_mm512_loadu_ps(x + i + 16 * k), scale_v));
  for (; i + 16 <= V; i += 16) m[0] = _mm512_max_ps(m[0], _mm512_mul_ps(_mm512_loadu_ps(x + i), scale_v));
  if (i < V) {
    const __mmask16 tail = first_lanes(V - i);
    m[0] = _mm512_mask_max_ps(m[0], tail, m[0], _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), scale_v));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])));
}

// Index of the first maximum of x (V), NaN skipped; sets *max_value.
int first_argmax(const float* x, int V, float* max_value) {
  // Each lane keeps its first strict maximum and that element's index; across lanes the smallest
  // index holding the overall maximum is the first maximum of the row.
  __m512 best = _mm512_set1_ps(-INFINITY);
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i best_index = index;
  const __m512i step = _mm512_set1_epi32(16);
  auto update = [&](__m512 v) {
    __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, greater, v);
    best_index = _mm512_mask_mov_epi32(best_index, greater, index);
    index = _mm512_add_epi32(index, step);
  };
  int i = 0;
  for (; i + 16 <= V; i += 16) update(_mm512_loadu_ps(x + i));
  if (i < V) update(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), first_lanes(V - i), x + i));
  const float max_logit = _mm512_reduce_max_ps(best);
  const __mmask16 at_max = _mm512_cmp_ps_mask(best, _mm512_set1_ps(max_logit), _CMP_EQ_OQ);
  *max_value = max_logit;
  return _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(_mm512_set1_epi32(INT_MAX), at_max, best_index));
}

}  // namespace

float logsumexp(const float* logits, int V, int* argmax) {
  float max_logit;
  if (argmax) *argmax = first_argmax(logits, V, &max_logit);
  else max_logit = max_scaled(logits, V, 1.0f);
  return max_logit + static_cast<float>(std::log(sum_exp(logits, V, 1.0f, max_logit, nullptr)));
}

void scaled_exp(float* out, const float* logits, float shift, float scale, int V) {
  const __m512 shift_v = _mm512_set1_ps(shift), scale_v = _mm512_set1_ps(scale);
  int i = 0;
  for (; i + 16 <= V; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(scale_v, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(logits + i), shift_v))));
  if (i < V) {
    const __mmask16 tail = first_lanes(V - i);
    __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, logits + i), shift_v));
    _mm512_mask_storeu_ps(out + i, tail, _mm512_mul_ps(scale_v, e));
  }
}

void softmax(float* probs, const float* logits, float inv_temperature, int V) {
  const float max_logit = max_scaled(logits, V, inv_temperature);
  const __m512 inv_sum = _mm512_set1_ps(static_cast<float>(1.0 / sum_exp(logits, V, inv_temperature, max_logit, probs)));
  int i = 0;
  for (; i + 16 <= V; i += 16) _mm512_storeu_ps(probs + i, _mm512_mul_ps(_mm512_loadu_ps(probs + i), inv_sum));
  if (i < V) {
    const __mmask16 tail = first_lanes(V - i);
    _mm512_mask_storeu_ps(probs + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, probs + i), inv_sum));
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
