// AVX-512 versions of dropout.cc's tile kernels: the dropout mask of gptune/dropout_mask.h on 16
// floats at a time, its SplitMix64 hash on eight 64-bit lanes (AVX-512DQ's 64-bit multiply), two
// vectors per 16-float mask.
#if defined(__AVX512F__)
#include "exp_avx512.h"  // first: it silences GCC 12's false uninitialized warnings in immintrin.h

#include "row_kernels.h"

namespace gptune::cpu::avx512 {
namespace {

inline __m512i mix64(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64(0xbf58476d1ce4e5b9ll));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebull)));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

// Keep bits of the 8 elements whose SplitMix64 states are `state`: top 24 bits >= threshold.
inline __mmask8 keep8(__m512i state, __m512i threshold) {
  return _mm512_cmpge_epu64_mask(_mm512_srli_epi64(mix64(state), 40), threshold);
}

}  // namespace

void dropout_tile(float* dst, int64_t ld_dst, const float* src, int64_t ld_src, int64_t rows, int cols,
                       int64_t row0, int col0, int C, const DropoutMask& d, bool accumulate) {
  const __m512i golden = _mm512_set1_epi64(static_cast<long long>(kDropoutGolden));
  const __m512i lane_steps = _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), golden);
  const __m512i step8 = _mm512_set1_epi64(static_cast<long long>(8 * kDropoutGolden));
  const __m512i step16 = _mm512_set1_epi64(static_cast<long long>(16 * kDropoutGolden));
  const __m512i threshold = _mm512_set1_epi64(d.threshold);
  const __m512 scale = _mm512_set1_ps(d.scale);
  for (int64_t i = 0; i < rows; ++i) {
    const uint64_t first = dropout_state(d, static_cast<uint64_t>(row0 + i) * C + col0);
    __m512i state = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(first)), lane_steps);
    const float* s = src + i * ld_src;
    float* o = dst + i * ld_dst;
    for (int j = 0; j < cols; j += 16, state = _mm512_add_epi64(state, step16)) {
      const __mmask16 lanes = cols - j >= 16 ? __mmask16(0xffff) : first_lanes(cols - j);
      const __mmask16 keep = static_cast<__mmask16>(
          keep8(state, threshold) | (static_cast<unsigned>(keep8(_mm512_add_epi64(state, step8), threshold)) << 8));
      // Dropped lanes are not even loaded: they are 0 here, whatever src holds.
      const __m512 scaled = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes & keep, s + j), scale);
      if (accumulate) {
        const __m512 acc = _mm512_maskz_loadu_ps(lanes, o + j);
        _mm512_mask_storeu_ps(o + j, lanes, _mm512_mask_add_ps(acc, keep, acc, scaled));
      } else {
        _mm512_mask_storeu_ps(o + j, lanes, scaled);
      }
    }
  }
}

void apply_multipliers(float* dst, const float* src, const float* m, int64_t n, bool accumulate) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : first_lanes(static_cast<int>(n - i));
    const __m512 mv = _mm512_maskz_loadu_ps(lanes, m + i);
    const __mmask16 keep = _mm512_mask_cmp_ps_mask(lanes, mv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    const __m512 scaled = _mm512_mul_ps(mv, _mm512_maskz_loadu_ps(keep, src + i));  // 0 where dropped
    if (accumulate) {
      const __m512 acc = _mm512_maskz_loadu_ps(lanes, dst + i);
      _mm512_mask_storeu_ps(dst + i, lanes, _mm512_mask_add_ps(acc, keep, acc, scaled));
    } else {
      _mm512_mask_storeu_ps(dst + i, lanes, scaled);
    }
  }
}

}  // namespace gptune::cpu::avx512
#endif  // __AVX512F__
