// exp() on 16 floats at once, for the *_avx512.cc kernels only (include it from nowhere else: its
// functions are compiled with AVX-512 enabled, and internal linkage keeps each copy private to its
// translation unit).
#pragma once
// GCC 12 reports its own _mm512_undefined_*() placeholders inside immintrin.h as uninitialized
// (GCC bug 105593, fixed in GCC 13); the warnings say nothing about this code.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace gptune::cpu::avx512 {
namespace {

// exp(x) = 2^n * exp(r) with n = round(x / ln2) and r = x - n*ln2 in [-ln2/2, ln2/2]. ln2 is split
// into a 9-bit head (n*head is exact for |n| < 2^15, so x - n*head loses nothing) and a tail
// (Cody and Waite). exp(r) is its degree-7 Taylor polynomial: the truncation error
// |r|^8/8! < 5.2e-9 is below half an ulp of exp(r) >= 0.7, so float rounding (<= 2 ulp measured,
// test/native/kernels_harness.cc) dominates. scalef applies 2^n with correct overflow to +inf and
// gradual underflow to 0.
inline __m512 exp_ps(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_head = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_tail = _mm512_set1_ps(-2.12194440e-4f);
  // Clamp so -inf (masked logits) gives 0 rather than NaN from -inf - (-inf); e^-104 and e^89
  // already underflow / overflow. MAXPS/MINPS return their second operand when either is NaN, so
  // x goes second and NaN propagates.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_head, x);
  r = _mm512_fnmadd_ps(n, ln2_tail, r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lanes [0, count) set, for the ragged tail of a row (count < 16).
inline __mmask16 first_lanes(int count) { return static_cast<__mmask16>((1u << count) - 1u); }

}  // namespace
}  // namespace gptune::cpu::avx512
