// Quantized frozen weights (int8 per output channel, NF4 with double-quantized block scales) and the
// linear layer that reads them directly (quant_matmul.h). The formats are those of bitsandbytes (see
// kernels.inc).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gptune/kernels.h"
#include "gptune/quant_format.h"
#include "parallel.h"
#include "quant_matmul.h"
#include "row_kernels.h"

namespace gptune::cpu {
namespace {

using quant::kNf4;
using quant::kNf4Block;
using quant::kStatsBlock;

const std::array<float, 256>& dynamic_code() {
  static const std::array<float, 256> code = quant::make_dynamic_code();
  return code;
}

const std::array<float, 15>& nf4_midpoints() {
  static const std::array<float, 15> midpoints = quant::nf4_midpoints();
  return midpoints;
}

// Dequantizes rows [o0, o0+rows) and columns [c0, c0+cols) of a quantized (OC,C) weight into
// tile (rows,cols), row stride cols.
struct Int8Weight {
  const int8_t* q;
  const float* scale;
  int C;
  void tile(float* dst, int o0, int rows, int c0, int cols) const {
    for (int r = 0; r < rows; ++r) {
      const int8_t* src = q + int64_t{o0 + r} * C + c0;
      GPTUNE_ROW_KERNEL(int8_decode)(dst + int64_t{r} * cols, src, cols, scale[o0 + r]);
    }
  }
};

struct Nf4Weight {
  const uint8_t* packed;
  const uint8_t* qabsmax;
  const float* absmax2;
  float offset;
  int C;
  float block_absmax(int64_t block) const {
    return quant::nf4_block_absmax(dynamic_code()[qabsmax[block]], absmax2[block / kStatsBlock], offset);
  }
  // The flat elements [first, first+count) of the weight, into d: one absmax per block, and whole
  // bytes (two codes) at a time where the range is byte-aligned.
  void span(float* d, int64_t first, int64_t count) const {
    const int64_t stop = first + count;
    for (int64_t i = first; i < stop;) {
      const int64_t block_end = std::min<int64_t>((i / kNf4Block + 1) * kNf4Block, stop);
      const float absmax = block_absmax(i / kNf4Block);
      if (i & 1) {
        *d++ = kNf4[packed[i >> 1] & 15] * absmax;
        ++i;
      }
      const int64_t pairs = (block_end - i) / 2;
      GPTUNE_ROW_KERNEL(nf4_decode)(d, packed + (i >> 1), pairs, absmax);
      d += 2 * pairs;
      i += 2 * pairs;
      if (i < block_end) {
        *d++ = kNf4[packed[i >> 1] >> 4] * absmax;
        ++i;
      }
    }
  }
  void tile(float* dst, int o0, int rows, int c0, int cols) const {
    for (int r = 0; r < rows; ++r) span(dst + int64_t{r} * cols, int64_t{o0 + r} * C + c0, cols);
  }
};

// bf16 bit patterns, widened exactly (AVX-512 when the CPU has it).
struct Bf16Weight {
  const uint16_t* w;
  int C;
  void tile(float* dst, int o0, int rows, int c0, int cols) const {
    for (int r = 0; r < rows; ++r)
      GPTUNE_ROW_KERNEL(widen_bf16)(dst + int64_t{r} * cols, w + int64_t{o0 + r} * C + c0, cols);
  }
};

}  // namespace

void quantize_int8(int8_t* q, float* scale, const float* weight, int OC, int C) {
  parallel_for(OC, 16, [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) {
      const float* w = weight + o * C;
      float absmax = 0.0f;
      for (int c = 0; c < C; ++c) absmax = std::max(absmax, std::fabs(w[c]));
      scale[o] = quant::int8_scale(absmax);
      const float factor = quant::int8_factor(absmax);
      int8_t* qo = q + o * C;
      for (int c = 0; c < C; ++c) qo[c] = quant::int8_code(w[c], factor);
    }
  });
}

void dequantize_int8(float* weight, const int8_t* q, const float* scale, int OC, int C) {
  const Int8Weight w{q, scale, C};
  parallel_for(OC, 16, [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) w.tile(weight + o * C, static_cast<int>(o), 1, 0, C);
  });
}

void matmul_int8_forward(float* out, const float* inp, const int8_t* q, const float* scale,
                         const float* bias, int N, int C, int OC) {
  quant_matmul::forward(out, inp, Int8Weight{q, scale, C}, bias, N, C, OC);
}

void matmul_int8_backward(float* dinp, const float* dout, const int8_t* q, const float* scale,
                          int N, int C, int OC) {
  if (dinp) quant_matmul::backward(dinp, dout, OC, Int8Weight{q, scale, C}, N, C, OC);
}

void quantize_nf4(uint8_t* packed, uint8_t* qabsmax, float* absmax2, float* offset,
                  const float* weight, long long n) {
  const int64_t blocks = (n + kNf4Block - 1) / kNf4Block;
  std::vector<float> absmax(static_cast<size_t>(blocks));
  parallel_for(blocks, 64, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kNf4Block, last = std::min<int64_t>(first + kNf4Block, n);
      float m = 0.0f;
      for (int64_t i = first; i < last; ++i) m = std::max(m, std::fabs(weight[i]));
      absmax[b] = m;
      const float inv = quant::nf4_inverse(m);
      const float* midpoints = nf4_midpoints().data();
      for (int64_t i = first; i < last; i += 2) {
        const int hi = quant::nf4_code(weight[i], inv, midpoints);
        const int lo = i + 1 < last ? quant::nf4_code(weight[i + 1], inv, midpoints) : 0;
        packed[i >> 1] = static_cast<uint8_t>((hi << 4) | lo);
      }
    }
  });
  // Double quantization (compress_statistics): subtract the mean, then 8-bit blockwise with the
  // dynamic code.
  const float mean = quant::absmax_mean(absmax.data(), blocks);
  *offset = mean;
  const int64_t stat_blocks = (blocks + kStatsBlock - 1) / kStatsBlock;
  for (int64_t s = 0; s < stat_blocks; ++s) {
    const int64_t first = s * kStatsBlock, last = std::min<int64_t>(first + kStatsBlock, blocks);
    float m = 0.0f;
    for (int64_t b = first; b < last; ++b) m = std::max(m, std::fabs(quant::sub_rn(absmax[b], mean)));
    absmax2[s] = m;
    const float inv = quant::nf4_inverse(m);
    for (int64_t b = first; b < last; ++b)
      qabsmax[b] = static_cast<uint8_t>(quant::nearest_dynamic(quant::nf4_stat_normalised(absmax[b], mean, inv), dynamic_code().data()));
  }
}

void dequantize_nf4(float* weight, const uint8_t* packed, const uint8_t* qabsmax,
                    const float* absmax2, const float* offset, long long n) {
  const Nf4Weight w{packed, qabsmax, absmax2, *offset, 0};
  parallel_for(n, 4096, [&](int64_t begin, int64_t end, int) { w.span(weight + begin, begin, end - begin); });
}

void matmul_nf4_forward(float* out, const float* inp, const uint8_t* packed, const uint8_t* qabsmax,
                        const float* absmax2, const float* offset, const float* bias, int N, int C,
                        int OC) {
  quant_matmul::forward(out, inp, Nf4Weight{packed, qabsmax, absmax2, *offset, C}, bias, N, C, OC);
}

void matmul_nf4_backward(float* dinp, const float* dout, const uint8_t* packed,
                         const uint8_t* qabsmax, const float* absmax2, const float* offset, int N,
                         int C, int OC) {
  if (dinp) quant_matmul::backward(dinp, dout, OC, Nf4Weight{packed, qabsmax, absmax2, *offset, C}, N, C, OC);
}

void matmul_bf16_forward(float* out, const float* inp, const uint16_t* w, const float* bias, int N, int C,
                         int OC) {
  quant_matmul::forward(out, inp, Bf16Weight{w, C}, bias, N, C, OC);
}

void matmul_bf16_backward(float* dinp, const float* dout, const uint16_t* w, int N, int C, int OC) {
  if (dinp) quant_matmul::backward(dinp, dout, OC, Bf16Weight{w, C}, N, C, OC);
}

void convert_f32_to_bf16(uint16_t* w_out, const float* inp, long long n) {
  parallel_for(n, kMinFloatsPerThread, [&](int64_t begin, int64_t end, int) {
    GPTUNE_ROW_KERNEL(round_to_bf16)(w_out + begin, inp + begin, end - begin);
  });
}

namespace portable {

void widen_bf16(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = quant::bf16_to_float(src[i]);
}

void round_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = quant::float_to_bf16(src[i]);
}

void int8_decode(float* dst, const int8_t* q, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) dst[i] = quant::int8_value(q[i], scale);
}

void nf4_decode(float* dst, const uint8_t* packed, int64_t bytes, float absmax) {
  for (int64_t k = 0; k < bytes; ++k) {
    dst[2 * k] = quant::mul_rn(kNf4[packed[k] >> 4], absmax);
    dst[2 * k + 1] = quant::mul_rn(kNf4[packed[k] & 15], absmax);
  }
}

// 16 independent partial sums so the compiler vectorises the reduction without reassociation flags.
float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int k = 0; k < 16; ++k) acc[k] += a[c + k] * b[c + k];
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += acc[k];
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}

void axpy(float* y, float alpha, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace portable

}  // namespace gptune::cpu
