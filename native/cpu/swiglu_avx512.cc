// SwiGLU on 16 floats at a time: the formulas of swiglu.cc with the vectorised exp of exp_avx512.h.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "row_kernels.h"

namespace gptune::cpu::avx512 {
namespace {

// Returns s = sigmoid(g) and sets one_minus_s = exp(-g) s. exp(-g) is capped at exp(88) so that
// inf * 0 never makes a NaN; g goes second so NaN propagates (MINPS returns its second operand).
inline __m512 sigmoid(__m512 g, __m512* one_minus_s) {
  const __m512 e = exp_ps(_mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_sub_ps(_mm512_setzero_ps(), g)));
  const __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  *one_minus_s = _mm512_mul_ps(e, s);
  return s;
}

}  // namespace

void swiglu_forward(float* out, const float* inp, int64_t rows, int H) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* gate = inp + row * 2 * H;
    const float* up = gate + H;
    float* y = out + row * H;
    for (int i = 0; i < H; i += 16) {
      const __mmask16 lanes = H - i >= 16 ? __mmask16(0xffff) : first_lanes(H - i);
      const __m512 g = _mm512_maskz_loadu_ps(lanes, gate + i);
      __m512 one_minus_s;
      const __m512 silu = _mm512_mul_ps(g, sigmoid(g, &one_minus_s));
      _mm512_mask_storeu_ps(y + i, lanes, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(lanes, up + i)));
    }
  }
}

void swiglu_backward(float* dinp, const float* dout, const float* inp, int64_t rows, int H) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t row = 0; row < rows; ++row) {
    const float* gate = inp + row * 2 * H;
    const float* up = gate + H;
    const float* dy = dout + row * H;
    float* dgate = dinp + row * 2 * H;
    float* dup = dgate + H;
    for (int i = 0; i < H; i += 16) {
      const __mmask16 lanes = H - i >= 16 ? __mmask16(0xffff) : first_lanes(H - i);
      const __m512 g = _mm512_maskz_loadu_ps(lanes, gate + i);
      const __m512 dy_v = _mm512_maskz_loadu_ps(lanes, dy + i);
      __m512 one_minus_s;
      const __m512 s = sigmoid(g, &one_minus_s);
      const __m512 dup_v = _mm512_mul_ps(dy_v, _mm512_mul_ps(g, s));
      _mm512_mask_storeu_ps(dup + i, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, dup + i), dup_v));
      // dout * up * s * (1 + g (1 - s))
      const __m512 local = _mm512_mul_ps(s, _mm512_fmadd_ps(g, one_minus_s, one));
      const __m512 dgate_v = _mm512_mul_ps(_mm512_mul_ps(dy_v, _mm512_maskz_loadu_ps(lanes, up + i)), local);
      _mm512_mask_storeu_ps(dgate + i, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, dgate + i), dgate_v));
    }
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
