// The fast CPU linear layer over GGML block-format weights (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K; weight-only:
// the inputs stay float32). Few input rows (decoding): threads own output channels and multiply each
// weight row, decoded in registers, into up to kGgmlDotRows input rows at a time, so the 4.5 to 8.5
// bits a weight are read once per group of rows instead of 32. Many rows (prompts, evaluation,
// QLoRA's input gradient): panels of W dequantized into float32 and the sgemm (quant_matmul.h).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ggml_matmul.h"
#include "parallel.h"
#include "quant_matmul.h"
#include "row_kernels.h"

namespace gptune::cpu {
namespace {

// The widest version of a GGML kernel this CPU runs (GPTUNE_ROW_KERNEL with the AVX2 level too).
#if defined(GPTUNE_X86)
#define GPTUNE_GGML_KERNEL(name) (cpu_has_avx512() ? avx512::name : cpu_has_avx2() ? avx2::name : portable::name)
#else
#define GPTUNE_GGML_KERNEL(name) portable::name
#endif

static_assert(quant_matmul::kTileCols % 256 == 0, "backward column tiles must hold whole super-blocks");

// A (OC,C) weight of `type` blocks, rows back to back; tile() for quant_matmul.h.
struct GgmlWeight {
  const uint8_t* blocks;
  int type;
  ggml::Geometry g;
  int64_t row_bytes;
  GgmlWeight(const uint8_t* blocks, int type, int C)
      : blocks(blocks), type(type), g(ggml::geometry(type)), row_bytes(int64_t{C} / g.values * g.bytes) {}
  const uint8_t* row(int o) const { return blocks + int64_t{o} * row_bytes; }
  // c0 and cols are multiples of the block (quant_matmul.h asks for whole 256-column tiles or rows).
  void tile(float* dst, int o0, int rows, int c0, int cols) const {
    for (int r = 0; r < rows; ++r)
      GPTUNE_GGML_KERNEL(ggml_decode)(dst + int64_t{r} * cols, row(o0 + r) + c0 / g.values * g.bytes, type, cols / g.values);
  }
};

}  // namespace

void ggml_matmul_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C,
                         int OC, int out_stride) {
  const GgmlWeight weight(w, type, C);
  if (N >= quant_matmul::kSlabMinRows) return quant_matmul::panel_forward(out, out_stride, inp, weight, bias, N, C, OC);
  // Threads over output channels, at least ~kMinFloatsPerThread weights each.
  parallel_for(OC, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* row = weight.row(static_cast<int>(o));
      const float b = bias ? bias[o] : 0.0f;
      for (int n0 = 0; n0 < N; n0 += kGgmlDotRows) {
        const int rows = std::min(kGgmlDotRows, N - n0);
        float y[kGgmlDotRows];
        GPTUNE_GGML_KERNEL(ggml_dot)(y, inp + int64_t{n0} * C, C, rows, row, type, C);
        for (int r = 0; r < rows; ++r) out[int64_t{n0 + r} * out_stride + o] = y[r] + b;
      }
    }
  });
}

void ggml_matmul_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                          int dout_stride) {
  quant_matmul::backward(dinp, dout, dout_stride, GgmlWeight(w, type, C), N, C, OC);
}

namespace portable {

void ggml_decode(float* dst, const uint8_t* blocks, int type, int64_t count) {
  const ggml::Geometry g = ggml::geometry(type);
  for (int64_t i = 0; i < count; ++i, dst += g.values) {
    const uint8_t* b = blocks + i * g.bytes;
    switch (type) {
      case ggml::kQ4_0: {
        const float d = ggml::half_at(b);
        for (int j = 0; j < 16; ++j) {
          dst[j] = static_cast<float>((b[2 + j] & 15) - 8) * d;
          dst[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
        }
        break;
      }
      case ggml::kQ5_0: {
        const float d = ggml::half_at(b);
        uint32_t qh;
        std::memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; ++j) {
          const int fifth_lo = (qh >> j) & 1, fifth_hi = (qh >> (j + 16)) & 1;
          dst[j] = static_cast<float>(((b[6 + j] & 15) | (fifth_lo << 4)) - 16) * d;
          dst[j + 16] = static_cast<float>(((b[6 + j] >> 4) | (fifth_hi << 4)) - 16) * d;
        }
        break;
      }
      case ggml::kQ8_0: {
        const float d = ggml::half_at(b);
        for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
        break;
      }
      case ggml::kQ4_K: {
        const float d = ggml::half_at(b), dmin = ggml::half_at(b + 2);
        for (int s = 0; s < 8; ++s) {
          int sc, m;
          ggml::q4k_scale_min(b + 4, s, &sc, &m);
          const float scale = d * sc, min = dmin * m;
          const uint8_t* q = b + 16 + 32 * (s / 2);
          for (int l = 0; l < 32; ++l) {
            volatile float product = scale * static_cast<float>(s % 2 ? q[l] >> 4 : q[l] & 15);  // rounded, as ggml
            dst[32 * s + l] = product - min;
          }
        }
        break;
      }
      case ggml::kQ6_K: {
        const float d = ggml::half_at(b + 208);
        for (int half = 0; half < 2; ++half) {
          const uint8_t* ql = b + 64 * half;
          const uint8_t* qh = b + 128 + 32 * half;
          const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
          float* y = dst + 128 * half;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            y[l] = d * sc[is] * static_cast<float>(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
            y[l + 32] = d * sc[is + 2] * static_cast<float>(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
            y[l + 64] = d * sc[is + 4] * static_cast<float>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            y[l + 96] = d * sc[is + 6] * static_cast<float>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
          }
        }
        break;
      }
    }
  }
}

void ggml_dot(float* y, const float* x, int64_t ldx, int rows, const uint8_t* w, int type, int C) {
  const ggml::Geometry g = ggml::geometry(type);
  float block[256];
  for (int r = 0; r < rows; ++r) y[r] = 0.0f;
  for (int c0 = 0; c0 < C; c0 += g.values) {
    ggml_decode(block, w + int64_t{c0 / g.values} * g.bytes, type, 1);
    for (int r = 0; r < rows; ++r) y[r] += GPTUNE_ROW_KERNEL(dot)(x + r * ldx + c0, block, g.values);
  }
}

}  // namespace portable

}  // namespace gptune::cpu
