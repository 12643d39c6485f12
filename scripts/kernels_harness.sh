#!/usr/bin/env bash
# Builds and runs test/native/kernels_harness.cc (checks + timings of the CPU encoder, LayerNorm,
# GELU, elementwise, cross-entropy, AdamW, RMSNorm, RoPE, SwiGLU and dropout kernels, the
# frozen-weight building blocks) without the N-API binding.
# Usage: scripts/kernels_harness.sh [--no-timing]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=gnu++17 -O3 -fno-math-errno -Wall -Wno-unused-parameter -DGPTUNE_X86=1 -Inative/include -Inative)
avx512=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mavx2)
for src in native/cpu/{encoder,layernorm,gelu,elementwise,crossentropy,adamw,rmsnorm,rope,swiglu,dropout,lora,parallel,quant,sgemm,simd_level}.cc test/native/kernels_harness.cc; do
  g++ "${flags[@]}" -c "$src" -o "$out/$(basename "$src" .cc).o" &
done
wait
for src in native/cpu/{layernorm,gelu,elementwise,crossentropy,rmsnorm,rope,swiglu,dropout,quant,sgemm}_avx512.cc; do
  g++ "${flags[@]}" "${avx512[@]}" -c "$src" -o "$out/$(basename "$src" .cc).o"
done
# lora.cc's products go through sgemm, whose AVX2 path has its own flags.
g++ "${flags[@]}" -mavx2 -mfma -c native/cpu/sgemm_avx2.cc -o "$out/sgemm_avx2.o"
g++ "$out"/*.o -o "$out/kernels_harness" -lpthread
"$out/kernels_harness" "$@"
