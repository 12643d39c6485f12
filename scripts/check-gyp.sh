#!/usr/bin/env bash
# Builds the CPU addon with node-gyp (binding.gyp) in a scratch copy of the sources, then runs the
# kernel and binding test suites against that build (GPTUNE_ADDON), proving that machines without
# cmake get the same working addon. Used by .ci/run; run it from the repository root.
set -euo pipefail
root=$(pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptune-gyp-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp -r binding.gyp package.json native "$scratch/"
ln -s "$root/node_modules" "$scratch/node_modules"
# Node's headers: npm's configured nodedir (as `npm run build:gyp` would use), else node-gyp's default.
nodedir=$(npm config get nodedir 2>/dev/null || true)
gyp_args=(rebuild --jobs 2)
if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ] && [ "$nodedir" != "null" ]; then gyp_args+=(--nodedir "$nodedir"); fi
(cd "$scratch" && "$root/node_modules/.bin/node-gyp" "${gyp_args[@]}" >"$scratch/build.log" 2>&1) || { tail -40 "$scratch/build.log"; exit 1; }
echo "node-gyp build: $scratch/build/Release/gptune.node"
GPTUNE_ADDON="$scratch/build/Release/gptune.node" "$root/node_modules/.bin/jest" test/kernels test/native
