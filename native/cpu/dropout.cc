// Dropout on activations (kernels.inc dropout_forward / dropout_backward), and the dropout mask's
// tile kernels (row_kernels.h) that they, LoRA's dropout (lora.cc) and the attention tiles
// (attention.cc) share: the mask of gptune/dropout_mask.h applied to a tile of a wider input. The
// portable tile kernels are here, the AVX-512 ones in dropout_avx512.cc.
#include <cstdint>
#include <cstring>

#include "gptune/kernels.h"
#include "parallel.h"
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

namespace {

// The mask applied to elements [begin, end) of an n-float tensor (index = position in the tensor):
// dst = m * src, or dst += m * src. Pieces of the range are single-row tiles whose row index is the
// element index (C = 1), so the mask is the same whatever the thread count or piece size.
void drop_range(float* dst, const float* src, int64_t begin, int64_t end, const DropoutMask& d, bool accumulate) {
  constexpr int64_t kPiece = int64_t{1} << 16;
  for (int64_t first = begin; first < end; first += kPiece) {
    const int width = static_cast<int>(end - first < kPiece ? end - first : kPiece);
    GPTUNE_ROW_KERNEL(dropout_tile)(dst + first, width, src + first, width, 1, width, first, 0, 1, d, accumulate);
  }
}

}  // namespace

void dropout_forward(float* out, const float* inp, const float* residual, long long n, float p, uint64_t seed) {
  const DropoutMask d = dropout_mask_params(p, seed);
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    if (!d.active) {
      // No mask: exactly inp (+ residual), the sum residual_forward computes (one loop per case, so
      // each vectorises).
      if (!residual) {
        if (out != inp) std::memcpy(out + begin, inp + begin, sizeof(float) * (end - begin));
      } else {
        for (int64_t i = begin; i < end; ++i) out[i] = residual[i] + inp[i];
      }
      return;
    }
    // out = residual, then out += m * inp: a thread's range stays in its cache between the passes.
    if (residual && residual != out) std::memcpy(out + begin, residual + begin, sizeof(float) * (end - begin));
    drop_range(out, inp, begin, end, d, residual != nullptr);
  });
}

void dropout_backward(float* dinp, const float* dout, long long n, float p, uint64_t seed) {
  const DropoutMask d = dropout_mask_params(p, seed);
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    if (!d.active) {
      for (int64_t i = begin; i < end; ++i) dinp[i] += dout[i];
      return;
    }
    drop_range(dinp, dout, begin, end, d, true);
  });
}

}  // namespace gptune::cpu
