#!/usr/bin/env bash
# Prepares everything scripts/gpu-run.sh needs, here (no GPU needed): the addon built with CUDA,
# the compiled TypeScript, Node.js packed for the GPU machine, and the transformers check inputs.
set -euo pipefail
npx cmake-js compile --out build --CDGPTUNE_CUDA=ON
npx tsc -p tsconfig.json
bash ../shared/gpu/pack.sh
rm -rf .device/hfcheck && node dist/bench/prepare_hf_check.js .device/hfcheck
du -sh .device build/Release dist
