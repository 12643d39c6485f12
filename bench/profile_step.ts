/**
 * Where a training step's time goes: wraps every kernel binding with a timer and runs a few steps
 * of GPT-2 (default 124M, B=4, T=256). Prints time per kernel and its share of the step.
 *   node dist/bench/profile_step.js [--n-layer 12 --n-embd 768 --n-head 12 --batch 4 --seq 256 --threads 2]
 */
import { addon } from '../lib/native';

const totals = new Map<string, { ms: number; calls: number }>();
const k = addon.kernels as unknown as Record<string, (...args: unknown[]) => unknown>;
for (const name of Object.keys(k)) {
  const fn = k[name];
  k[name] = (...args: unknown[]) => {
    const t0 = process.hrtime.bigint();
    const r = fn(...args);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    // matmul_forward of the tied LM head is reported on its own: it is the largest single call.
    const key = name === 'matmul_forward' && args[6] === 50257 ? 'matmul_forward (lm head)' :
      name === 'matmul_backward' && args[8] === 50257 ? 'matmul_backward (lm head)' : name;
    const e = totals.get(key) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls++;
    totals.set(key, e);
    return r;
  };
}

// Import after patching so the model module sees the wrapped kernels object.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { main } = require('./train_step') as { main: () => void };
main();
const all = [...totals.values()].reduce((a, b) => a + b.ms, 0);
console.log('\nkernel                         calls    total ms   share');
for (const [name, e] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`${name.padEnd(30)} ${String(e.calls).padStart(6)} ${e.ms.toFixed(1).padStart(11)} ${(100 * e.ms / all).toFixed(1).padStart(6)}%`);
}
