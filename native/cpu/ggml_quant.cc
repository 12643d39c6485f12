// GGML block formats on the CPU (kernels.inc quantize_ggml, dequantize_ggml, matmul_ggml_forward/
// backward). The formats themselves (layouts, ggml's reference quantizers and dequantizers) live in
// gptune/ggml_blocks.h, shared with the CUDA backend; this file splits rows across threads and holds
// the scalar reference matmuls (ggml_quant.h). Compiled with -ffp-contract=off (CMakeLists.txt): the
// quantizers must round every product and sum as ggml's generic build does.
#include "ggml_quant.h"

#include <cstdint>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "ggml_matmul.h"
#include "gptune/ggml_blocks.h"
#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {
namespace {

// The N-API layer validates types; a direct C++ caller with a wrong one gets an error, not a crash.
void require_block_type(int type, int C, const char* kernel) {
  if (!ggml::is_block_type(type))
    throw Error(std::string(kernel) + ": type " + std::to_string(type) + " is not a GGML block type (2, 6, 8, 12, 13 or 14)");
  if (C % ggml::block_size(type) != 0)
    throw Error(std::string(kernel) + ": C (" + std::to_string(C) + ") is not a multiple of " + ggml::type_name(type) +
                "'s block of " + std::to_string(ggml::block_size(type)));
}

}  // namespace

void quantize_ggml(uint8_t* blocks, const float* weight, int type, int rows, int C) {
  require_block_type(type, C, "quantize_ggml");
  const int64_t bytes = ggml::row_bytes(type, C);
  // Quantizing costs far more than streaming a row (Q4_K's search runs 22 passes over it).
  parallel_for(rows, min_items_per_thread(int64_t{C} * 8), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) ggml::quantize_row(type, blocks + r * bytes, weight + r * C, C);
  });
}

void dequantize_ggml(float* weight, const uint8_t* blocks, int type, int rows, int C) {
  require_block_type(type, C, "dequantize_ggml");
  const int64_t bytes = ggml::row_bytes(type, C);
  parallel_for(rows, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) ggml::dequantize_row(type, weight + r * C, blocks + r * bytes, C);
  });
}

void matmul_ggml_forward_reference(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N,
                                   int C, int OC, int out_stride) {
  require_block_type(type, C, "matmul_ggml_forward");
  const int64_t bytes = ggml::row_bytes(type, C);
  // Threads own output channels: each dequantizes its rows of W once and uses them for all N inputs.
  parallel_for(OC, min_items_per_thread(int64_t{N} * C), [&](int64_t begin, int64_t end, int) {
    std::vector<float> row(static_cast<size_t>(C));
    for (int64_t o = begin; o < end; ++o) {
      ggml::dequantize_row(type, row.data(), w + o * bytes, C);
      for (int n = 0; n < N; ++n) {
        const float* x = inp + int64_t{n} * C;
        float sum = 0.0f;
        for (int c = 0; c < C; ++c) sum += x[c] * row[c];
        out[int64_t{n} * out_stride + o] = sum + (bias ? bias[o] : 0.0f);
      }
    }
  });
}

void matmul_ggml_backward_reference(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                                    int dout_stride) {
  if (!dinp) return;
  require_block_type(type, C, "matmul_ggml_backward");
  const int bs = ggml::block_size(type), block_bytes = ggml::block_bytes(type);
  const int64_t bytes = ggml::row_bytes(type, C);
  // Threads own ranges of blocks (columns of dinp), so no two write the same element; each walks all
  // OC rows of W, dequantizing only its blocks.
  parallel_for(C / bs, min_items_per_thread(int64_t{N} * OC * bs), [&](int64_t begin, int64_t end, int) {
    const int64_t c0 = begin * bs, cols = (end - begin) * bs;
    std::vector<float> part(static_cast<size_t>(cols));
    for (int o = 0; o < OC; ++o) {
      for (int64_t b = begin; b < end; ++b)
        ggml::dequantize_block(type, part.data() + (b - begin) * bs, w + o * bytes + b * block_bytes);
      for (int n = 0; n < N; ++n) {
        const float g = dout[int64_t{n} * dout_stride + o];
        float* d = dinp + int64_t{n} * C + c0;
        for (int64_t c = 0; c < cols; ++c) d[c] += g * part[c];
      }
    }
  });
}

// The SIMD paths (ggml_matmul.cc) where the CPU has AVX2 or AVX-512, else the reference.
void matmul_ggml_forward(float* out, const float* inp, const uint8_t* w, const float* bias, int type, int N, int C,
                         int OC, int out_stride) {
#if defined(GPTUNE_X86)
  if (cpu_has_avx2()) {
    require_block_type(type, C, "matmul_ggml_forward");
    return ggml_matmul_forward(out, inp, w, bias, type, N, C, OC, out_stride);
  }
#endif
  matmul_ggml_forward_reference(out, inp, w, bias, type, N, C, OC, out_stride);
}

void matmul_ggml_backward(float* dinp, const float* dout, const uint8_t* w, int type, int N, int C, int OC,
                          int dout_stride) {
  if (!dinp) return;
#if defined(GPTUNE_X86)
  if (cpu_has_avx2()) {
    require_block_type(type, C, "matmul_ggml_backward");
    return ggml_matmul_backward(dinp, dout, w, type, N, C, OC, dout_stride);
  }
#endif
  matmul_ggml_backward_reference(dinp, dout, w, type, N, C, OC, dout_stride);
}

}  // namespace gptune::cpu
