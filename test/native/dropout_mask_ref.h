// The dropout mask restated from the definition in native/include/gptune/dropout_mask.h (not
// from its code), for the C++ checks of both backends (test/native/kernels_harness.cc for the CPU
// row kernels, test/gpu/emulated_kernels.cc for CUDA): SplitMix64 from key = mix64(seed + golden);
// element i is kept iff the top 24 bits of mix64(key + (i + 1) golden), as a fraction of 2^24, are
// >= p. test/reference/dropout.ts states it once more with BigInt for the TypeScript tests.
#pragma once
#include <cstdint>

inline bool dropout_keep_ref(uint64_t seed, uint64_t index, float p) {
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  const uint64_t golden = 0x9e3779b97f4a7c15ull, key = mix(seed + golden);
  return static_cast<double>(mix(key + (index + 1) * golden) >> 40) / 16777216.0 >= p;
}
