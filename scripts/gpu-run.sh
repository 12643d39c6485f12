#!/usr/bin/env bash
# The whole GPU check in one run on a device machine (see ../shared/gpu/README.md): CUDA kernels
# vs the CPU backend, GPT-2 on the GPU vs the CPU and PyTorch fixtures, transformers loading what
# gptune saves, then the GPU benchmark next to PyTorch. Everything is logged under $OUT.
# Prepared here by scripts/prepare-gpu-run.sh; run there from the repository root with
#   carry: [".device", "build/Release", "dist"]
set -uo pipefail
OUT=${OUT:-/tmp/gptune-gpu-out}
mkdir -p "$OUT"
source .device/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
node dist/lib/cli/main.js info --json | tee "$OUT/info.json"
echo "== GPU tests"
timeout 240 node --test dist/test/gpu/ > "$OUT/gpu-tests.log" 2>&1; echo "gpu tests exit $?"
grep -E "^# (tests|pass|fail|skipped)|^not ok|error:" "$OUT/gpu-tests.log" | head -40
echo "== transformers compatibility"
timeout 120 python3 scripts/hf_compat_check.py .device/hfcheck 2>&1 | tail -3 | tee "$OUT/hf-check.log"
echo "== benchmarks"
timeout 300 node dist/bench/gpu.js 2>&1 | tee "$OUT/bench-gpu.log" | tail -40
timeout 240 python3 bench/gpu_torch.py 2>&1 | tee "$OUT/bench-torch.log" | tail -20
