/**
 * Gradient checkpointing's trade: the SmolLM2-135M-shaped training step (B=4, T=256) with and without
 * it in the same run, each in its own process (bench/train_step.ts) so each peak RSS is its own.
 * Prints a table, the ratios, and one JSON line; `npm run bench` runs it too (bench/run.ts).
 *   node dist/bench/checkpointing.js [--threads 2] [--steps 3] [--spec new:smollm2-135m] [--batch 4] [--seq 256]
 */
import * as path from 'path';
import { runJSON, StepResult } from './child';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

export interface CheckpointingResult {
  plain: StepResult | { error: string };
  checkpointed: StepResult | { error: string };
  /** checkpointed / plain, when both ran. */
  speed_ratio?: number;
  peak_rss_ratio?: number;
  activations_ratio?: number;
}

export function benchCheckpointing(threads: number, steps: number, spec = 'new:smollm2-135m', B = 4, T = 256): CheckpointingResult {
  const args = ['--spec', spec, '--batch', String(B), '--seq', String(T), '--steps', String(steps), '--threads', String(threads)];
  const step = (extra: string[]) => runJSON(process.execPath, [path.join(__dirname, 'train_step.js'), ...args, ...extra]);
  const result: CheckpointingResult = { plain: step([]), checkpointed: step(['--gradient-checkpointing']) };
  const name = `${spec.replace(/^new:/, '')} step B=${B} T=${T}`;
  console.log(`\ngradient checkpointing, float32, CPU (${threads} threads)`);
  console.log(`  ${'config'.padEnd(34)} ${'layout'.padEnd(13)} ${'tokens/s'.padStart(9)} ${'ms/step'.padStart(8)} ${'peak RSS MB'.padStart(12)} ${'activations MB'.padStart(15)}`);
  for (const [layout, r] of [['full', result.plain], ['checkpointed', result.checkpointed]] as const) {
    if ('error' in r) {
      console.log(`  ${name.padEnd(34)} ${layout.padEnd(13)} ${r.error}`);
      continue;
    }
    const activations = (r.arena_mb as { activations: number }).activations;
    console.log(`  ${name.padEnd(34)} ${layout.padEnd(13)} ${r.tokens_per_s.toFixed(1).padStart(9)} ${r.ms_per_step.toFixed(0).padStart(8)} ${r.peak_rss_mb.toFixed(0).padStart(12)} ${activations.toFixed(0).padStart(15)}`);
  }
  const { plain, checkpointed } = result;
  if (!('error' in plain) && !('error' in checkpointed)) {
    result.speed_ratio = checkpointed.tokens_per_s / plain.tokens_per_s;
    result.peak_rss_ratio = checkpointed.peak_rss_mb / plain.peak_rss_mb;
    const activations = (r: StepResult) => (r.arena_mb as { activations: number }).activations;
    result.activations_ratio = activations(checkpointed) / activations(plain);
    console.log(`  ${''.padEnd(34)} ratio         checkpointed/full speed ${result.speed_ratio.toFixed(2)}x, peak RSS ${result.peak_rss_ratio.toFixed(2)}x, activations ${result.activations_ratio.toFixed(2)}x`);
  }
  return result;
}

if (require.main === module) {
  const result = benchCheckpointing(Number(option('threads', '2')), Number(option('steps', '3')), option('spec', 'new:smollm2-135m'), Number(option('batch', '4')), Number(option('seq', '256')));
  console.log(JSON.stringify({ date: new Date().toISOString(), ...result }));
}
