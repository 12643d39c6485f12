#!/usr/bin/env bash
# The whole GPU check in one device run (../shared/gpu/README.md), correctness first, inside a budget
# (BUDGET_S, default 470 s: the run fits ~8 minutes of an H100 whatever hangs; each step's timeout is
# cut to what is left, and a step with under 10 s left is skipped and shows as such in the table):
#   1. the GPU suite, node --test dist/test/gpu/: CUDA kernels vs the CPU kernels (the GGML block formats
#      bit for bit in ggml.test.ts); GPT-2 on the GPU vs
#      the CPU and its fixtures; the Llama family (llama, llama-mha, qwen2, qwen3, mistral) on the GPU
#      vs the float64 PyTorch fixtures in fp32, bf16 training, KV-cache generation, bitwise repeats,
#      a sharded checkpoint (test/gpu/*.test.ts say what each holds and why);
#   2. the Llama benchmark: gptune's SmolLM2-135M-shaped training step (B=16, T=1024, bf16; cuBLASLt
#      and gptune's own GEMM), then PyTorch eager on scripts/torch_llama.py's model at the same shape;
#   3. GPT-2's training steps (124M bf16 both GEMMs and fp32, 350M bf16) and KV-cache generation for
#      GPT-2 124M and SmolLM2-135M;
#   4. transformers' GPT2LMHeadModel loads what gptune saves and computes the same logits;
#   5. PyTorch's kernels and GPT-2 steps, then gptune's kernel benchmark beside them;
#   6. one table (bench/gpu_summary.ts) of all of it, printed last.
# Prepare here with scripts/prepare-gpu-run.sh, then run with
#   carry [".device", "build/Release", "dist"], command "bash scripts/gpu-run.sh"
# Everything is logged under $OUT. SANITIZE=1 adds compute-sanitizer memcheck (minutes more).
set -uo pipefail
OUT=${OUT:-/tmp/gptune-gpu-out}
BUDGET_S=${BUDGET_S:-470}
mkdir -p "$OUT"
source .device/setup.sh

# Seconds a step may take: its own cap, or what is left of the budget if less (0: skip it).
cap() {
  local left=$((BUDGET_S - SECONDS))
  if [ "$left" -lt 10 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
# step CAP_S LOG command...: runs the command under its capped timeout, output to LOG.
step() {
  local limit; limit=$(cap "$1")
  local log=$2
  shift 2
  if [ "$limit" = 0 ]; then echo "skipped (budget spent): $*" | tee -a "$OUT/skipped.log"; return 124; fi
  timeout "$limit" "$@" > "$log" 2>&1
}
# bench_line CAP_S FILE LABEL command...: appends "LABEL<TAB>last JSON line" to FILE (empty on failure);
# the step's own output goes to $OUT/step-LABEL.log.
bench_line() {
  local limit=$1 file=$2 label=$3
  local log; log="$OUT/step-$(printf '%s' "$label" | tr -c 'A-Za-z0-9=.-' '_').log"
  shift 3
  step "$limit" "$log" "$@"
  local line; line=$(grep '^{' "$log" | tail -1)
  printf '%s\t%s\n' "$label" "$line" >> "$file"
  if [ -n "$line" ]; then echo "$label: done"; else echo "$label: FAILED ($(grep -m1 -E 'Error|error' "$log" || tail -1 "$log"))"; fi
}

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
rm -f "$OUT/train-step.tsv" "$OUT/generate.tsv"

echo "== 1. GPU tests (node --test dist/test/gpu/)"
step 150 "$OUT/gpu-test.log" node --test dist/test/gpu/
test_rc=$?
grep -E "^# (tests|pass|fail|skipped)|not ok|relative error|Error" "$OUT/gpu-test.log" | head -40
if [ "${SANITIZE:-0}" = 1 ]; then
  step 300 "$OUT/memcheck.log" compute-sanitizer --tool memcheck --print-limit 20 node --test dist/test/gpu/kernels.test.js
  grep -E "ERROR SUMMARY" "$OUT/memcheck.log"
fi

echo "== 2. Llama benchmark: SmolLM2-135M shape, B=16, T=1024, bf16, gptune then PyTorch eager"
for matmul in auto native; do
  GPTUNE_CUDA_MATMUL=$matmul bench_line 45 "$OUT/train-step.tsv" "SmolLM2-135M bf16 B=16 T=1024 matmul=$matmul" \
    node dist/bench/train_step.js --device cuda --precision bf16 --spec new:smollm2-135m --batch 16 --seq 1024 --steps 8 --warmup 2
done
step 60 "$OUT/torch-llama.log" python3 bench/gpu_torch.py --sections llama --json "$OUT/torch-llama.json"
grep -v '^{' "$OUT/torch-llama.log" | tail -3

echo "== 3. GPT-2 training steps and generation"
# matmul backend: auto (cuBLASLt when it loads) and native (gptune's own tensor-core GEMM).
for cfg in "12 12 768 bf16 auto 124M" "12 12 768 bf16 native 124M" "24 16 1024 bf16 auto 350M" "12 12 768 fp32 auto 124M"; do
  set -- $cfg
  GPTUNE_CUDA_MATMUL=$5 bench_line 40 "$OUT/train-step.tsv" "GPT-2 $6 $4 B=16 T=1024 matmul=$5" \
    node dist/bench/train_step.js --device cuda --precision "$4" --n-layer "$1" --n-head "$2" --n-embd "$3" --batch 16 --seq 1024 --steps 8 --warmup 2
done
bench_line 30 "$OUT/generate.tsv" "GPT-2 124M bf16, 16 + 256 tokens" node dist/bench/generate_speed.js --device cuda --prompt 16 --new 256
bench_line 30 "$OUT/generate.tsv" "SmolLM2-135M bf16, 16 + 256 tokens" node dist/bench/generate_speed.js --device cuda --spec new:smollm2-135m --prompt 16 --new 256

echo "== 4. transformers compatibility"
step 45 "$OUT/hf-check.log" python3 scripts/hf_compat_check.py .device/hfcheck
tail -1 "$OUT/hf-check.log"

echo "== 5. PyTorch kernels and GPT-2 steps, then gptune's kernels beside them"
step 110 "$OUT/torch.log" python3 bench/gpu_torch.py --sections kernels,gpt2 --json "$OUT/torch.json" || tail -3 "$OUT/torch.log"
step 100 "$OUT/gpu.log" node dist/bench/gpu.js --torch "$OUT/torch.json" --json "$OUT/gpu.json" || tail -3 "$OUT/gpu.log"

echo "== 6. summary ($SECONDS s of the ${BUDGET_S} s budget; details in each step's log under \$OUT)"
node dist/bench/gpu_summary.js "$OUT" | tee "$OUT/summary.txt"
echo "GPU tests: exit $test_rc"
