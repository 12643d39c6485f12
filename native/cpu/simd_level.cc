// simd_level(): which wide-SIMD code paths this build can run on this CPU (see cpu_features.h).
#include "cpu_features.h"
#include "gptune/kernels.h"

namespace gptune::cpu {

const char* simd_level() {
#if defined(GPTUNE_X86) || defined(__x86_64__)
  if (cpu_has_avx512()) return "avx512";
  if (cpu_has_avx2()) return "avx2";
#endif
  return "portable";
}

}  // namespace gptune::cpu
