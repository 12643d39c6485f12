// Runtime CPU feature checks used to dispatch to the widest SIMD path compiled in.
// Sources named *_avx512.cc are compiled with AVX-512 (F/BW/DQ/VL) + FMA flags and *_avx2.cc with
// AVX2 + FMA + F16C flags (CMakeLists.txt and binding.gyp); everything else is compiled for baseline
// x86-64 (or the host architecture), so the addon loads on any CPU and only calls wide code after
// these checks pass.
//
// The level the kernels use can be lowered below what the CPU has (never raised): GPTUNE_SIMD=avx2
// or portable in the environment, or set_simd_limit() (tests and benchmarks run the narrower paths
// on a machine with AVX-512 that way). Change it only while no kernel runs.
#pragma once

namespace gptune::cpu {

enum class Simd { portable = 0, avx2 = 1, avx512 = 2 };

// What this CPU supports (checked once).
Simd detected_simd();
// The level kernels dispatch on: min(detected_simd(), the limit).
Simd active_simd();
// Lowers (or restores, up to detected_simd()) the level kernels dispatch on; returns the new level.
Simd set_simd_limit(Simd limit);

inline bool cpu_has_avx512() { return active_simd() == Simd::avx512; }
inline bool cpu_has_avx2() { return active_simd() >= Simd::avx2; }

}  // namespace gptune::cpu
