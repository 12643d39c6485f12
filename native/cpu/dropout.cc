// The dropout mask's tile kernels (row_kernels.h), portable versions: the mask of
// gptune/dropout_mask.h applied to a tile of a wider input. The AVX-512 versions are in
// dropout_avx512.cc; LoRA's dropout (lora.cc) and the model's (the attention tiles) share them.
#include <cstdint>

#include "row_kernels.h"

namespace gptune::cpu {

namespace portable {

void dropout_tile(float* dst, int64_t ld_dst, const float* src, int64_t ld_src, int64_t rows, int cols,
                  int64_t row0, int col0, int C, const DropoutMask& d, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i) {
    uint64_t state = dropout_state(d, static_cast<uint64_t>(row0 + i) * C + col0);
    const float* s = src + i * ld_src;
    float* o = dst + i * ld_dst;
    for (int j = 0; j < cols; ++j, state += kDropoutGolden) {
      const bool keep = dropout_keep_state(d, state);
      if (accumulate) {
        if (keep) o[j] += d.scale * s[j];
      } else {
        o[j] = keep ? d.scale * s[j] : 0.0f;
      }
    }
  }
}

void apply_multipliers(float* dst, const float* src, const float* m, int64_t n, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    if (accumulate) {
      if (m[i] != 0.0f) dst[i] += m[i] * src[i];
    } else {
      dst[i] = m[i] != 0.0f ? m[i] * src[i] : 0.0f;
    }
  }
}

}  // namespace portable

}  // namespace gptune::cpu
