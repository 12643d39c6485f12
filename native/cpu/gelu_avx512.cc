// GELU (tanh approximation) on 16 floats at a time: the sigmoid form derived in gelu.cc, with the
// vectorised exp of exp_avx512.h.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "row_kernels.h"

namespace gptune::cpu::avx512 {
namespace {

// Returns s = 1 / (1 + exp(-2u)) and sets one_minus_s = exp(-2u) s.
inline __m512 gelu_sigmoid(__m512 x, __m512* one_minus_s) {
  const __m512 x2 = _mm512_mul_ps(x, x);
  // -2u = -2 sqrt(2/pi) x (1 + 0.044715 x^2)
  __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps(kGeluCubic), x2, _mm512_set1_ps(1.0f));
  __m512 minus_2u = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f * kGeluScale), x), inner);
  // Beyond 88, exp overflows and 1 - s would be inf * 0; s is below 1e-38 there anyway. x goes
  // second so NaN propagates (MINPS returns its second operand on NaN).
  __m512 e = exp_ps(_mm512_min_ps(_mm512_set1_ps(88.0f), minus_2u));
  __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  if (one_minus_s) *one_minus_s = _mm512_mul_ps(e, s);
  return s;
}

inline __m512 gelu_local_grad(__m512 x) {
  __m512 one_minus_s;
  __m512 s = gelu_sigmoid(x, &one_minus_s);
  // du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
  __m512 du_dx = _mm512_mul_ps(_mm512_set1_ps(kGeluScale),
                               _mm512_fmadd_ps(_mm512_set1_ps(3.0f * kGeluCubic), _mm512_mul_ps(x, x),
                                               _mm512_set1_ps(1.0f)));
  __m512 two_x_du = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), x), du_dx);
  return _mm512_fmadd_ps(_mm512_mul_ps(s, one_minus_s), two_x_du, s);
}

}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps(inp + i);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(x, gelu_sigmoid(x, nullptr)));
  }
  if (i < n) {
    __mmask16 tail = first_lanes(static_cast<int>(n - i));
    __m512 x = _mm512_maskz_loadu_ps(tail, inp + i);
    _mm512_mask_storeu_ps(out + i, tail, _mm512_mul_ps(x, gelu_sigmoid(x, nullptr)));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 grad = _mm512_mul_ps(gelu_local_grad(_mm512_loadu_ps(inp + i)), _mm512_loadu_ps(dout + i));
    _mm512_storeu_ps(dinp + i, _mm512_add_ps(_mm512_loadu_ps(dinp + i), grad));
  }
  if (i < n) {
    __mmask16 tail = first_lanes(static_cast<int>(n - i));
    __m512 grad = _mm512_mul_ps(gelu_local_grad(_mm512_maskz_loadu_ps(tail, inp + i)),
                                _mm512_maskz_loadu_ps(tail, dout + i));
    _mm512_mask_storeu_ps(dinp + i, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, dinp + i), grad));
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
