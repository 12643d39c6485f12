#!/usr/bin/env bash
# Builds and runs bench/kernels/gemv_harness.cc: decoding's fp32 matrix-vector products (N = 1),
# GB/s of gptune's matmul_forward beside a plain loop and a plain read of the same weights, in the
# same run, without the N-API binding. The _avx512 / _avx2 files get their SIMD flags and the rest
# is baseline x86-64, as CMakeLists.txt builds them.
# Usage: scripts/gemv_harness.sh [rounds=15] [--threads=2]   (GPTUNE_SIMD=avx2|portable to cap the SIMD level)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=gnu++17 -O3 -fno-math-errno -Wall -Wno-unused-parameter -DGPTUNE_X86=1 -Inative/include -Inative)
for src in native/cpu/{sgemm,parallel,matmul,simd_level}.cc bench/kernels/gemv_harness.cc; do
  g++ "${flags[@]}" -c "$src" -o "$out/$(basename "$src" .cc).o" &
done
g++ "${flags[@]}" -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mavx2 -c native/cpu/sgemm_avx512.cc -o "$out/sgemm_avx512.o" &
g++ "${flags[@]}" -mavx2 -mfma -c native/cpu/sgemm_avx2.cc -o "$out/sgemm_avx2.o" &
wait
g++ "$out"/*.o -o "$out/gemv_harness" -lpthread
"$out/gemv_harness" "$@"
