// simd_level(): which wide-SIMD code paths this build runs on this CPU (see cpu_features.h).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu_features.h"
#include "gptune/kernels.h"

namespace gptune::cpu {
namespace {

Simd detect() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Simd::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return Simd::avx2;
#endif
  return Simd::portable;
}

// GPTUNE_SIMD=avx2|portable caps the level from the start; anything else (or unset) leaves it.
Simd limit_from_environment() {
  const char* v = std::getenv("GPTUNE_SIMD");
  if (v && std::strcmp(v, "portable") == 0) return Simd::portable;
  if (v && std::strcmp(v, "avx2") == 0) return Simd::avx2;
  return Simd::avx512;
}

Simd lower(Simd a, Simd b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

// Read on every dispatch, so a relaxed atomic (a plain load on x86).
std::atomic<int>& active() {
  static std::atomic<int> level{static_cast<int>(lower(detected_simd(), limit_from_environment()))};
  return level;
}

}  // namespace

Simd detected_simd() {
  static const Simd detected = detect();
  return detected;
}

Simd active_simd() { return static_cast<Simd>(active().load(std::memory_order_relaxed)); }

Simd set_simd_limit(Simd limit) {
  const Simd level = lower(detected_simd(), limit);
  active().store(static_cast<int>(level), std::memory_order_relaxed);
  return level;
}

const char* simd_level() {
  switch (active_simd()) {
    case Simd::avx512: return "avx512";
    case Simd::avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace gptune::cpu
