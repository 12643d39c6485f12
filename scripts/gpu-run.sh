#!/usr/bin/env bash
# The whole GPU check in one device run (../shared/gpu/README.md), correctness first:
#   1. CUDA kernels vs the CPU kernels, GPT-2 on the GPU vs the CPU and the PyTorch fixtures
#      (node --test dist/test/gpu/);
#   2. transformers' GPT2LMHeadModel loads what gptune saves and computes the same logits;
#   3. gptune's training step (GPT-2 124M and 350M, B=16, T=1024, bf16 and fp32) and generation;
#   4. the PyTorch baseline on the same GPU, then the kernel benchmark printed beside it.
# Prepare here with scripts/prepare-gpu-run.sh, then run with
#   carry [".device", "build/Release", "dist"], command "bash scripts/gpu-run.sh"
# Everything is logged under $OUT. SANITIZE=1 adds compute-sanitizer memcheck (minutes more).
set -uo pipefail
OUT=${OUT:-/tmp/gptune-gpu-out}
mkdir -p "$OUT"
source .device/setup.sh
# cuBLASLt for the bf16 matmuls (dlopen'ed; the CUDA image has it in PyTorch's wheels, not on the
# loader path). Without it gptune uses its own tensor-core GEMM.
if [ -z "${GPTUNE_CUBLASLT:-}" ]; then
  GPTUNE_CUBLASLT=$(find /opt /usr/local /usr/lib -name 'libcublasLt.so*' -type f 2>/dev/null | sort | head -1)
  export GPTUNE_CUBLASLT
fi
echo "cuBLASLt: ${GPTUNE_CUBLASLT:-not found}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
# (gptune info without the CLI, whose tokenizer needs npm packages that don't travel)
node -e "const {addon}=require('./dist/lib/native');const c=addon.cuda;console.log(JSON.stringify({backends:addon.backends,simd:addon.simdLevel(),threads:addon.numThreads(),gpus:c.deviceCount()?c.devices():[],reason:c.unavailableReason(),matmul:c.matmulBackend?c.matmulBackend():null}))" | tee "$OUT/info.json"

echo "== 1. GPU tests (node --test dist/test/gpu/)"
timeout 150 node --test dist/test/gpu/ > "$OUT/gpu-test.log" 2>&1
test_rc=$?
grep -E "^# (tests|pass|fail|skipped)|not ok|relative error|Error" "$OUT/gpu-test.log" | head -40
if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 300 compute-sanitizer --tool memcheck --print-limit 20 node --test dist/test/gpu/kernels.test.js > "$OUT/memcheck.log" 2>&1
  grep -E "ERROR SUMMARY" "$OUT/memcheck.log"
fi

echo "== 2. transformers compatibility"
timeout 45 python3 scripts/hf_compat_check.py .device/hfcheck 2>&1 | tail -2 | tee "$OUT/hf-check.log"

echo "== 3. gptune training step and generation on the GPU"
# matmul backend: auto (cuBLASLt when it loads) and native (gptune's own tensor-core GEMM).
for cfg in "12 12 768 bf16 auto" "12 12 768 bf16 native" "24 16 1024 bf16 auto" "24 16 1024 bf16 native" "12 12 768 fp32 auto"; do
  set -- $cfg
  echo -n "matmul=$5 "
  GPTUNE_CUDA_MATMUL=$5 timeout 50 node dist/bench/train_step.js --device cuda --precision "$4" --n-layer "$1" --n-head "$2" --n-embd "$3" \
    --batch 16 --seq 1024 --steps 8 --warmup 2 2>&1 | tail -1 | tee -a "$OUT/train-step.jsonl"
done
timeout 30 node dist/bench/generate_speed.js --device cuda --prompt 16 --new 256 2>&1 | tail -1 | tee "$OUT/generate.json"

echo "== 4. PyTorch baseline, then gptune's kernels beside it"
timeout 110 python3 bench/gpu_torch.py --json "$OUT/torch.json" > "$OUT/torch.log" 2>&1 || tail -5 "$OUT/torch.log"
grep -v '^{' "$OUT/torch.log" | tail -25
timeout 110 node dist/bench/gpu.js --torch "$OUT/torch.json" --json "$OUT/gpu.json" > "$OUT/gpu.log" 2>&1 || tail -5 "$OUT/gpu.log"
grep -v '^{' "$OUT/gpu.log" | tail -45
echo "kernel tests: exit $test_rc ($(grep -E '^# (pass|fail)' "$OUT/gpu-test.log" | tr '\n' ' '))"
