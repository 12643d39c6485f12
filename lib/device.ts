/** Backend selection: --device cpu | cuda | auto, and --threads. */
import { addon, DeviceName } from './native';

export type DeviceChoice = DeviceName | 'auto';
export const DEVICE_CHOICES: readonly DeviceChoice[] = ['cpu', 'cuda', 'auto'];

export function cudaDeviceCount(): number {
  return addon.cuda.compiled && addon.cuda.deviceCount ? addon.cuda.deviceCount() : 0;
}

/** Resolves a device choice; asking for cuda where none is usable is an error that says why. */
export function resolveDevice(choice: DeviceChoice = 'auto'): DeviceName {
  if (choice === 'cpu') return 'cpu';
  const count = cudaDeviceCount();
  if (choice === 'auto') return count > 0 ? 'cuda' : 'cpu';
  if (!addon.cuda.compiled) throw new Error('--device cuda: this gptune addon was built without CUDA (nvcc was not found when it was built); rebuild with nvcc on PATH or use --device cpu');
  if (count === 0) throw new Error(`--device cuda: no usable GPU (${addon.cuda.unavailableReason?.() || 'no CUDA device found'}); use --device cpu`);
  return 'cuda';
}

export function setThreads(threads: number | undefined): void {
  if (threads !== undefined) addon.setNumThreads(threads);
}

export type Precision = 'fp32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'bf16'];

/**
 * Matmul and attention precision on the GPU: bf16 operands with fp32 accumulation (mixed
 * precision; master weights, gradients and optimizer state stay fp32) or fp32 throughout. The CPU
 * backend always computes in fp32.
 */
export function setPrecision(precision: Precision): void {
  addon.cuda.setMatmulPrecision?.(precision);
  addon.cuda.setAttentionPrecision?.(precision);
}
