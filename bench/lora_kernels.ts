/**
 * LoRA adapter kernels against the base fp32 matmul of the same module, in the same run, at the
 * linear layers of SmolLM2-135M (hidden 576) and Qwen2.5-0.5B (hidden 896): the forward
 * (lora_forward vs matmul_forward) and the backward (lora_backward with dinp, dA, dB vs the frozen
 * base's matmul_backward with dinp only), for a training batch of N = 1024 rows, rank r = 16, and
 * dropout 0.05 (the CLI's default) and 0. The ratio is what an adapter adds to its base layer.
 * Median (and fastest) of `repeats` runs after one warm-up (bench/matmul.ts's timing).
 * `node dist/bench/lora_kernels.js [--repeats N] [--rank R] [--rows N]` prints a table and one JSON line.
 */
import { addon } from '../lib/native';
import { randomFloats, timeRuns } from './matmul';

export interface LoraBenchRow {
  model: string;
  module: string;
  C: number;
  OC: number;
  dropout: number;
  pass: 'forward' | 'backward';
  baseMs: number;  // medians
  loraMs: number;
  ratio: number;  // loraMs / baseMs
  bestRatio: number;  // of the fastest runs: steadier than the medians on a machine shared with other work
}

/** (model, module, C in, OC out): the modules PEFT targets by default (q_proj, v_proj) and the MLP's. */
const MODULES: [string, string, number, number][] = [
  ['SmolLM2-135M', 'q_proj', 576, 576],
  ['SmolLM2-135M', 'v_proj', 576, 192],
  ['SmolLM2-135M', 'up_proj', 576, 1536],
  ['SmolLM2-135M', 'down_proj', 1536, 576],
  ['Qwen2.5-0.5B', 'q_proj', 896, 896],
  ['Qwen2.5-0.5B', 'v_proj', 896, 128],
  ['Qwen2.5-0.5B', 'up_proj', 896, 4864],
  ['Qwen2.5-0.5B', 'down_proj', 4864, 896],
];

export async function benchLora(options: { repeats?: number; rank?: number; rows?: number } = {}): Promise<LoraBenchRow[]> {
  const k = addon.kernels;
  const N = options.rows ?? 1024, R = options.rank ?? 16, repeats = options.repeats ?? 7;
  const rows: LoraBenchRow[] = [];
  for (const [model, module, C, OC] of MODULES) {
    const inp = randomFloats(N * C, 1), weight = randomFloats(OC * C, 2), dout = randomFloats(N * OC, 3);
    const A = randomFloats(R * C, 4), B = randomFloats(OC * R, 5);
    const out = new Float32Array(N * OC), dinp = new Float32Array(N * C), u = new Float32Array(N * R);
    const du = new Float32Array(N * R), dA = new Float32Array(R * C), dB = new Float32Array(OC * R);
    const baseForward = await timeRuns(() => k.matmul_forward(out, inp, weight, null, N, C, OC), repeats);
    const baseBackward = await timeRuns(() => k.matmul_backward(dinp, null, null, dout, inp, weight, N, C, OC), repeats);
    for (const dropout of [0.05, 0]) {
      const forward = await timeRuns(() => k.lora_forward(out, u, inp, A, B, N, C, R, OC, OC, 0, 2, dropout, 7), repeats);
      const backward = await timeRuns(() => k.lora_backward(dinp, dA, dB, du, dout, u, inp, A, B, N, C, R, OC, OC, 0, 2, dropout, 7), repeats);
      for (const [pass, base, lora] of [['forward', baseForward, forward], ['backward', baseBackward, backward]] as const) {
        rows.push({ model, module, C, OC, dropout, pass, baseMs: base.median, loraMs: lora.median, ratio: lora.median / base.median,
          bestRatio: lora.best / base.best });
      }
    }
  }
  return rows;
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const options = { repeats: arg('repeats'), rank: arg('rank'), rows: arg('rows') };
  benchLora(options)
    .then((rows) => {
      const N = options.rows ?? 1024, R = options.rank ?? 16;
      console.log(`LoRA adapter vs base fp32 matmul, N=${N} r=${R}, ${addon.numThreads()} thread(s), ${addon.simdLevel()}`);
      console.log(`  ${'model'.padEnd(13)} ${'module'.padEnd(10)} ${'C->OC'.padEnd(10)} ${'p'.padEnd(5)} ${'pass'.padEnd(9)} ${'base ms'.padStart(9)} ${'lora ms'.padStart(9)} ${'ratio'.padStart(7)} ${'best'.padStart(7)}`);
      for (const r of rows) {
        console.log(`  ${r.model.padEnd(13)} ${r.module.padEnd(10)} ${`${r.C}->${r.OC}`.padEnd(10)} ${String(r.dropout).padEnd(5)} ${r.pass.padEnd(9)} ` +
          `${r.baseMs.toFixed(3).padStart(9)} ${r.loraMs.toFixed(3).padStart(9)} ${(100 * r.ratio).toFixed(1).padStart(6)}% ${(100 * r.bestRatio).toFixed(1).padStart(6)}%`);
      }
      console.log(JSON.stringify({ bench: 'lora_kernels', threads: addon.numThreads(), simd: addon.simdLevel(), rows: N, rank: R, results: rows }));
    })
    .catch((e) => {
      console.error(`bench/lora_kernels: ${(e as Error).message}`);
      process.exitCode = 1;
    });
}
