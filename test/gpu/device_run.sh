#!/usr/bin/env bash
# The one GPU session for the CUDA backend: correctness first, then the two benchmarks, table last.
# Prepared here (build/Release/gptune.node built with nvcc, dist/ compiled by tsc, .device/ from
# ../shared/gpu/pack.sh), then run by the device tool with carry [".device", "build/Release", "dist"]:
#   source .device/setup.sh && bash test/gpu/device_run.sh
# Writes logs and JSON under $OUT (gpu-test.log, torch.json, gpu.json, ...). About 2-3 minutes of
# device time after the machine is up. SANITIZE=1 adds compute-sanitizer memcheck over the kernel
# tests (several minutes more; Firecracker machines only).
set -uo pipefail
OUT=${OUT:-/tmp/gptune-gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/nvidia-smi.txt"

echo "== CUDA kernels vs CPU kernels (node --test)"
timeout 300 node --test dist/test/gpu/ > "$OUT/gpu-test.log" 2>&1
test_rc=$?
grep -E "^# (tests|pass|fail|skipped)|^not ok|^    not ok|relative error|Error" "$OUT/gpu-test.log" | head -40

if [ "${SANITIZE:-0}" = 1 ]; then
  echo "== compute-sanitizer memcheck over the kernel tests"
  timeout 400 compute-sanitizer --tool memcheck --target-processes all --print-limit 20 \
    node --test dist/test/gpu/ > "$OUT/memcheck.log" 2>&1
  grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/memcheck.log" | head -20
fi

echo "== PyTorch baseline (bench/gpu_torch.py)"
timeout 240 python3 bench/gpu_torch.py --json "$OUT/torch.json" > "$OUT/torch.log" 2>&1 || tail -5 "$OUT/torch.log"

echo "== gptune CUDA kernels (bench/gpu.ts)"
timeout 300 node dist/bench/gpu.js --torch "$OUT/torch.json" --json "$OUT/gpu.json" > "$OUT/gpu.log" 2>&1 || tail -5 "$OUT/gpu.log"

echo
grep -v '^{' "$OUT/torch.log" | tail -25
grep -v '^{' "$OUT/gpu.log" | tail -40
echo "kernel tests: exit $test_rc ($(grep -E '^# (pass|fail)' "$OUT/gpu-test.log" | tr '\n' ' '))"
