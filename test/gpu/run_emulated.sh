#!/usr/bin/env bash
# Checks the CUDA kernels on the CPU emulator (no GPU needed): builds test/gpu/emulated_kernels.cc
# with native/cuda/*.cu under -DGPTUNE_CUDA_EMULATE, AddressSanitizer and UBSan, then runs it in
# the three scheduling modes that expose missing barriers and missing cp.async waits.
# Usage: test/gpu/run_emulated.sh [section]   (sections: device elementwise encoder layernorm
#        crossentropy adamw matmul_fp32 matmul_bf16 attention attention_cached attention_bf16 llama quant ggml lora;
#        ggml compares with the libggml-base.so of node_modules/@node-llama-cpp, so run npm install first)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${EMULATED_BIN:-/tmp/gptune_emulated_kernels}
g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -DGPTUNE_CUDA_EMULATE -DGPTUNE_WITH_CUDA -Wall -Wno-unknown-pragmas \
  -Inative/include -Inative -Inative/cuda -x c++ native/cuda/*.cu test/gpu/emulated_kernels.cc -o "$out"
export ASAN_OPTIONS=detect_stack_use_after_return=0:detect_leaks=0
echo "== default order, late cp.async"; "$out" "$@"
echo "== reverse order";                GPTUNE_EMU_ORDER=reverse "$out" "$@"
echo "== early cp.async";               GPTUNE_EMU_CP_ASYNC=early "$out" "$@"
