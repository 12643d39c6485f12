/**
 * Where the GPU suites run: on CUDA, or with GPTUNE_GPU_TEST_DEVICE=cpu on the CPU backend (a check of
 * a suite's own logic without a GPU); why they skip where neither applies; and whether jest is the
 * runner (the suites run under `node --test dist/test/gpu/` and register one skipped test for jest).
 */
import * as assert from 'node:assert';
import { cudaDeviceCount } from '../../lib/device';
import { addon, type DeviceName } from '../../lib/native';

export const underJest = process.env.JEST_WORKER_ID !== undefined;
export const selfCheck = process.env.GPTUNE_GPU_TEST_DEVICE === 'cpu';
export const device: DeviceName = selfCheck ? 'cpu' : 'cuda';
export const skip = selfCheck
  ? undefined
  : !addon.cuda.compiled
    ? 'this addon was built without CUDA'
    : cudaDeviceCount() === 0
      ? `no usable GPU: ${addon.cuda.unavailableReason?.() ?? 'unknown reason'}`
      : undefined;

export function check(ok: boolean, message: string): void {
  assert.ok(ok, message);
}
