/**
 * GGML block-format matmuls (Q8_0, Q4_K, Q5_K, Q6_K, Q5_0, Q4_0, weight-only) against gptune's fp32 matmul in the same
 * run, at the linear layers of GPT-2 124M and SmolLM2-135M: the forward for decoding (N = 1) and for a prompt /
 * evaluation batch (N = 128), and the input gradient at N = 128 (QLoRA on a GGUF base), on the CPU addon with the
 * current thread count and SIMD level.
 * Q4_K, Q5_K and Q6_K only where C is a multiple of 256 (SmolLM2's hidden 576 is not: llama.cpp's Q4_K_M falls back to
 * Q5_0 there). Each weight is random blocks with finite fp16 scales (the speed does not depend on the values); at
 * N = 1 the runs cycle through enough copies of it (at least 256 MB together) that every call reads its weight
 * from memory, not from a cache warmed by the previous call, as decoding a whole model does. Median of `repeats`
 * runs after one warm-up (bench/matmul.ts's timing). GFLOP/s counts 2*N*C*OC; GB/s is the weight's bytes over the
 * median time; vs fp32 is fp32's median time over this one's (above 1: faster). Calls shorter than 2 ms are timed
 * in batches (timeBatched).
 * `node dist/bench/ggml_matmul.js [--repeats N] [--simd avx2]` prints a table and one JSON line.
 */
import { GGML_BLOCK_TYPES, GGMLBlockType, GGMLBlockTypeName, ggmlBlockBytes, ggmlBlockType } from '../lib/gguf/ggml_types';
import { addon } from '../lib/native';
import { randomFloats, timeRuns } from './matmul';

export interface GgmlMatmulRow {
  model: string;
  layer: string;
  C: number;
  OC: number;
  N: number;
  /** fwd: out = inp @ W^T; bwd dinp: dinp += dout @ W (the input gradient, as QLoRA on a GGUF base needs). */
  direction: 'fwd' | 'bwd dinp';
  format: 'fp32' | GGMLBlockTypeName;
  ms: number;
  gflops: number;
  weightGBs: number;
  vsFp32: number;
}

/** (model, layer, C in, OC out). */
const SHAPES: [string, string, number, number][] = [
  ['gpt2-124M', 'attn qkv', 768, 2304],
  ['gpt2-124M', 'mlp fc', 768, 3072],
  ['gpt2-124M', 'mlp proj', 3072, 768],
  ['gpt2-124M', 'lm head', 768, 50257],
  ['smollm2-135M', 'attn q/o', 576, 576],
  ['smollm2-135M', 'mlp gate/up', 576, 1536],
  ['smollm2-135M', 'mlp down', 1536, 576],
  ['smollm2-135M', 'lm head', 576, 49152],
];
const FORMATS: GGMLBlockTypeName[] = ['Q8_0', 'Q4_K', 'Q5_K', 'Q6_K', 'Q5_0', 'Q4_0'];
const COLD_BYTES = 256 * 2 ** 20;

/** Arbitrary blocks (xorshift bytes) for `rows` rows of C values with every fp16 scale in [2^-10, 2^-6). */
function randomBlocks(type: GGMLBlockType, rows: number, C: number, seed: number): Uint8Array {
  const blocks = new Uint8Array(ggmlBlockBytes(type, rows, C));
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < blocks.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    blocks[i] = x & 0xff;
  }
  const scales = type.name === 'Q4_K' || type.name === 'Q5_K' ? [0, 2] : type.name === 'Q6_K' ? [208] : [0];
  for (let b = 0; b < blocks.length; b += type.bytes) for (const at of scales) blocks[b + at + 1] = 0x14 + (blocks[b + at + 1] & 0x0f);
  return blocks;
}

/**
 * timeRuns over batches of calls lasting about 2 ms each, per call: a single decoding matmul of a small layer
 * takes tens of microseconds, which one timed call would drown in timer and scheduling noise.
 */
async function timeBatched(run: () => void, repeats: number): Promise<{ median: number; best: number }> {
  const once = await timeRuns(run, 3);
  const calls = Math.max(1, Math.ceil(2 / Math.max(once.median, 1e-3)));
  const t = await timeRuns(() => {
    for (let c = 0; c < calls; c++) run();
  }, repeats);
  return { median: t.median / calls, best: t.best / calls };
}

/** `count` copies of a weight made by make(seed), so consecutive calls read different memory. */
function copies<T extends { byteLength: number }>(make: (seed: number) => T, N: number): T[] {
  const first = make(1);
  const count = N === 1 ? Math.max(1, Math.ceil(COLD_BYTES / first.byteLength)) : 1;
  return [first, ...Array.from({ length: count - 1 }, (_, i) => make(i + 2))];
}

export async function benchGgmlMatmul(options: { repeats?: number } = {}): Promise<GgmlMatmulRow[]> {
  const k = addon.kernels;
  const rows: GgmlMatmulRow[] = [];
  const cases: [number, GgmlMatmulRow['direction']][] = [[1, 'fwd'], [128, 'fwd'], [128, 'bwd dinp']];
  for (const [N, direction] of cases) {
    for (const [model, layer, C, OC] of SHAPES) {
      const repeats = options.repeats ?? (N === 1 ? 15 : 5);
      const inp = randomFloats(N * C, 1), out = new Float32Array(N * OC);
      const dout = randomFloats(N * OC, 3), dinp = new Float32Array(N * C);
      const backward = direction === 'bwd dinp';
      // Each format's weights are made just before it runs, so only one format's copies are alive at a time.
      const formats: [GgmlMatmulRow['format'], () => { bytes: number; run: () => void }][] = [];
      formats.push(['fp32', () => {
        const weights = copies((seed) => randomFloats(OC * C, seed), N);
        let i = 0;
        const run = backward
          ? () => k.matmul_backward(dinp, null, null, dout, inp, weights[i++ % weights.length], N, C, OC)
          : () => k.matmul_forward(out, inp, weights[i++ % weights.length], null, N, C, OC);
        return { bytes: weights[0].byteLength, run };
      }]);
      for (const name of FORMATS) {
        const type = ggmlBlockType(name)!;
        if (C % type.block !== 0) continue;
        formats.push([name, () => {
          const weights = copies((seed) => randomBlocks(type, OC, C, seed), N);
          let i = 0;
          const run = backward
            ? () => k.matmul_ggml_backward(dinp, dout, weights[i++ % weights.length], type.id, N, C, OC, OC)
            : () => k.matmul_ggml_forward(out, inp, weights[i++ % weights.length], null, type.id, N, C, OC, OC);
          return { bytes: weights[0].byteLength, run };
        }]);
      }
      let fp32Ms = NaN;
      for (const [format, prepare] of formats) {
        const { bytes, run } = prepare();
        const t = await timeBatched(run, repeats);
        if (format === 'fp32') fp32Ms = t.median;
        rows.push({
          model, layer, C, OC, N, direction, format, ms: t.median, gflops: (2 * N * C * OC) / (t.median * 1e6),
          weightGBs: bytes / (t.median * 1e6), vsFp32: fp32Ms / t.median,
        });
      }
    }
  }
  return rows;
}

export function printGgmlMatmul(rows: GgmlMatmulRow[]): void {
  console.log(`GGML block matmuls vs fp32 matmul_forward / matmul_backward, ${addon.numThreads()} thread(s), ${addon.simdLevel()}`);
  console.log(`  ${'case'.padEnd(51)} ${'format'.padEnd(6)} ${'ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'GB/s'.padStart(7)} ${'vs fp32'.padStart(8)}`);
  for (const r of rows) {
    const name = `N=${r.N} ${r.direction} ${r.model} ${r.layer} (${r.C}->${r.OC})`;
    console.log(`  ${name.padEnd(51)} ${r.format.padEnd(6)} ${r.ms.toFixed(3).padStart(9)} ${r.gflops.toFixed(1).padStart(8)} ` +
      `${r.weightGBs.toFixed(1).padStart(7)} ${`${r.vsFp32.toFixed(2)}x`.padStart(8)}`);
  }
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const simd = arg('simd');
  if (simd !== undefined && simd !== 'avx512' && simd !== 'avx2' && simd !== 'portable') {
    console.error(`bench/ggml_matmul: expected avx512, avx2 or portable for --simd but received '${simd}'`);
    process.exit(2);
  }
  if (simd) addon.setSimdLimit(simd);
  const repeats = arg('repeats');
  benchGgmlMatmul({ repeats: repeats !== undefined ? Number(repeats) : undefined })
    .then((rows) => {
      printGgmlMatmul(rows);
      console.log(JSON.stringify({ bench: 'ggml_matmul', threads: addon.numThreads(), simd: addon.simdLevel(), formats: Object.keys(GGML_BLOCK_TYPES), rows }));
    })
    .catch((e) => {
      console.error(`bench/ggml_matmul: ${(e as Error).message}`);
      process.exitCode = 1;
    });
}
