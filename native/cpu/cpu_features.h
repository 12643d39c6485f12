// Runtime CPU feature checks used to dispatch to the widest SIMD path compiled in.
// Sources named *_avx512.cc are compiled with AVX-512 (F/BW/DQ/VL) + FMA flags and *_avx2.cc with
// AVX2 + FMA flags (CMakeLists.txt and binding.gyp); everything else is compiled for baseline
// x86-64 (or the host architecture), so the addon loads on any CPU and only calls wide code after
// these checks pass.
#pragma once

namespace gptune::cpu {

inline bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

inline bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace gptune::cpu
