#!/usr/bin/env bash
# CI sanitizer job: builds the CPU addon with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ (CMake option GPTUNE_SANITIZE), then runs the kernel and N-API suites and the seeded
# kernel-binding fuzz pass against it. node itself is not instrumented, so the sanitizer runtimes are
# preloaded; leak detection is off because node does not free everything at exit (not our leaks).
# Any ASan report or UBSan finding aborts the process and fails the job. Run from the repository root.
set -euo pipefail
out=build-asan
mkdir -p "$out"
# Through npx, like `npm install`, so npm settings (nodedir) reach cmake-js.
GPTUNE_CUDA=OFF npx --no-install cmake-js compile --out "$out" --CDGPTUNE_SANITIZE=ON >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
addon="$(pwd)/$out/Release/gptune.node"
runtimes="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
export LD_PRELOAD="$runtimes"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export GPTUNE_ADDON="$addon"
echo "sanitizer build: $addon (LD_PRELOAD=$LD_PRELOAD)"
node_modules/.bin/jest test/kernels test/native
node_modules/.bin/ts-node --transpile-only scripts/fuzz.ts --only kernels --seed 1 --iterations 25000 --seconds 90
