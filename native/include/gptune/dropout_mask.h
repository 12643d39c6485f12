// The dropout mask, one definition for every backend and every dropout gptune applies: LoRA's on an
// adapter's input (native/cpu/lora*.cc, native/cuda/lora.cu), the model's on activations
// (dropout_forward / dropout_backward, native/cpu/dropout*.cc, native/cuda/dropout.cu) and on
// attention probabilities (native/cpu/attention*.cc, native/cuda/attention.cu). The mask is a pure
// function of (seed, element index), so the backward and a gradient-checkpointing recompute
// regenerate it instead of storing it. Definition (all arithmetic modulo 2^64):
//
//   mix64(z)     = SplitMix64's output function (Steele, Lea & Flood 2014; Vigna's splitmix64.c):
//                  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
//                  return z ^ (z >> 31)
//   GOLDEN       = 0x9e3779b97f4a7c15
//   key          = mix64(seed + GOLDEN)                  (so nearby seeds give unrelated streams)
//   bits(index)  = mix64(key + (index + 1) * GOLDEN)     (the SplitMix64 stream started at key)
//   keep(index)  = (bits(index) >> 40) * 2^-24 >= p      (the top 24 bits as u in [0, 1))
//               <=> (bits(index) >> 40) >= ceil(p * 2^24)
//   kept values are multiplied by scale = 1.0f / (1.0f - p), computed in float32.
//
// Each kernel documents its element index (kernels.inc); for an input (N,C), element (n,c) has index
// n*C + c. Two sites dropping the same tensor (q_proj and v_proj on one hidden state) need different
// seeds to draw independent masks, as PyTorch's separate nn.Dropout calls do. test/reference/dropout.ts
// implements the same definition with BigInt, test/native/dropout_mask_ref.h in plain C++.
//
// The functions are static (internal linkage): this header is included by translation units compiled
// with and without AVX-512 flags, and an inline function with external linkage could be emitted with
// AVX-512 instructions and picked by the linker for a baseline caller.
#pragma once
#include <cmath>
#include <cstdint>

#include "gptune/host_device.h"

namespace gptune {

constexpr uint64_t kDropoutGolden = 0x9e3779b97f4a7c15ull;

// What a kernel needs to draw the mask: derived once per call from (p, seed).
struct DropoutMask {
  bool active;         // p > 0; p == 0 means no mask at all (exactly x, no multiply)
  uint64_t key;        // mix64(seed + GOLDEN)
  uint32_t threshold;  // ceil(p * 2^24) in [0, 2^24]: keep iff the top 24 bits are >= it
  float scale;         // 1 / (1 - p) in float32
};

static GPTUNE_HOST_DEVICE inline uint64_t dropout_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// p in [0, 1) (the bindings check it).
static inline DropoutMask dropout_mask_params(float p, uint64_t seed) {
  DropoutMask d;
  d.active = p > 0.0f;
  d.key = dropout_mix64(seed + kDropoutGolden);
  // p * 2^24 is exact in double (p is a float), so ceil() gives the threshold exactly.
  d.threshold = static_cast<uint32_t>(std::ceil(static_cast<double>(p) * 16777216.0));
  d.scale = 1.0f / (1.0f - p);
  return d;
}

// The SplitMix64 state of element `index`: key + (index + 1) * GOLDEN. Consecutive elements differ
// by GOLDEN, so a loop along a row can add it instead of multiplying.
static GPTUNE_HOST_DEVICE inline uint64_t dropout_state(const DropoutMask& d, uint64_t index) {
  return d.key + (index + 1) * kDropoutGolden;
}

static GPTUNE_HOST_DEVICE inline bool dropout_keep_state(const DropoutMask& d, uint64_t state) {
  return static_cast<uint32_t>(dropout_mix64(state) >> 40) >= d.threshold;
}

// The multiplier of element `index`: scale when kept, 0 when dropped.
static GPTUNE_HOST_DEVICE inline float dropout_multiplier(const DropoutMask& d, uint64_t index) {
  return dropout_keep_state(d, dropout_state(d, index)) ? d.scale : 0.0f;
}

}  // namespace gptune
