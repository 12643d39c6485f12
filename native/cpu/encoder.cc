// Token + position embeddings: out[b,t,:] = wte[tokens[b,t],:] + wpe[pos,:], with
// pos = positions[b,t] (packed examples restart their positions) or pos_offset + t (decoding).
// A null wpe (Llama family) leaves out = wte[tokens[b,t],:].
#include <algorithm>

#include "gptune/kernels.h"
#include "parallel.h"
#include "row_kernels.h"

namespace gptune::cpu {
namespace {

inline int position_of(const int* positions, int64_t row, int T, int pos_offset) {
  return positions ? positions[row] : pos_offset + static_cast<int>(row % T);
}

// Channels per work item of the backward: one 64-byte cache line, so no two threads write the
// same line of dwte / dwpe.
constexpr int kChannelBlock = 16;

}  // namespace

void encoder_forward(float* out, const int* tokens, const int* positions, const float* wte,
                     const float* wpe, int B, int T, int C, int pos_offset) {
  parallel_for(static_cast<int64_t>(B) * T, min_items_per_thread(C), [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {
      const float* __restrict token_row = wte + static_cast<int64_t>(tokens[row]) * C;  // (C)
      float* __restrict out_row = out + row * C;
      if (!wpe) {  // no learned position table: a plain embedding lookup
        std::copy(token_row, token_row + C, out_row);
        continue;
      }
      const float* __restrict pos_row = wpe + static_cast<int64_t>(position_of(positions, row, T, pos_offset)) * C;
      for (int c = 0; c < C; ++c) out_row[c] = token_row[c] + pos_row[c];
    }
  });
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens,
                      const int* positions, int B, int T, int C, int pos_offset) {
  if (!dwte && !dwpe) return;
  const int64_t rows = static_cast<int64_t>(B) * T;
  // Rows that share a token id (or, when packed, a position) add into the same dwte (dwpe) row, so
  // splitting rows between threads would race. Each thread owns a block of channels instead and
  // walks every row in order: race-free and deterministic.
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  parallel_for(blocks, min_items_per_thread(rows * kChannelBlock), [&](int64_t block_begin, int64_t block_end, int) {
    const int c_begin = static_cast<int>(block_begin * kChannelBlock);
    const int c_end = static_cast<int>(std::min<int64_t>(block_end * kChannelBlock, C));
    for (int64_t row = 0; row < rows; ++row) {
      const float* __restrict dout_row = dout + row * C;  // (C)
      if (dwte) {
        float* __restrict dwte_row = dwte + static_cast<int64_t>(tokens[row]) * C;
        for (int c = c_begin; c < c_end; ++c) dwte_row[c] += dout_row[c];
      }
      if (dwpe) {
        float* __restrict dwpe_row = dwpe + static_cast<int64_t>(position_of(positions, row, T, pos_offset)) * C;
        for (int c = c_begin; c < c_end; ++c) dwpe_row[c] += dout_row[c];
      }
    }
  });
}

}  // namespace gptune::cpu
