/**
 * matmul_forward / matmul_backward throughput at the linear layers of GPT-2 124M with N = B*T = 1024
 * rows, on the CPU addon with the current thread count. Each case runs once untimed (first touch of
 * the buffers, packing scratch), then `repeats` times; the median is reported (the machine may be
 * shared, so the best is in `bestGflops` too). `node dist/bench/matmul.js [--repeats N] [--only name]`
 * prints a table and one JSON line; bench/run.ts calls benchMatmul().
 *
 * FLOPs counted: forward 2*N*C*OC; backward 4*N*C*OC (dinp and dweight gemms; the dbias column sum
 * is N*OC adds, not counted); "bwd dinp" and "bwd dweight" time one gemm each (2*N*C*OC).
 */
import { addon } from '../lib/native';

export interface MatmulBenchRow {
  name: string;
  shape: string;
  gflops: number;  // at the median time
  ms: number;  // median
  bestGflops: number;
}

/** GPT-2 124M linear layers: (name, C in, OC out). */
export const GPT2_LINEAR_LAYERS: [string, number, number][] = [
  ['attn qkv', 768, 2304],
  ['attn proj', 768, 768],
  ['mlp fc', 768, 3072],
  ['mlp proj', 3072, 768],
  ['lm head', 768, 50257],
];

export function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x / 4294967296 - 0.5;
  }
  return out;
}

/** Median and minimum wall time in ms of `repeats` runs after one untimed warm-up run. */
export async function timeRuns(fn: () => void, repeats: number): Promise<{ median: number; best: number }> {
  fn();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await new Promise((resolve) => setImmediate(resolve));  // let other work on the event loop run
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], best: times[0] };
}

export async function benchMatmul(options: { rows?: number; repeats?: number; only?: string } = {}): Promise<MatmulBenchRow[]> {
  const N = options.rows ?? 1024;
  const results: MatmulBenchRow[] = [];
  for (const [layer, C, OC] of GPT2_LINEAR_LAYERS) {
    if (options.only && !layer.includes(options.only)) continue;
    // The lm head is ~20x the work of the others: fewer repeats keep the whole bench near a minute.
    const repeats = options.repeats ?? (OC > 10000 ? 3 : 7);
    const inp = randomFloats(N * C, 1), weight = randomFloats(OC * C, 2), bias = randomFloats(OC, 3);
    const dout = randomFloats(N * OC, 4);
    const out = new Float32Array(N * OC), dinp = new Float32Array(N * C);
    const dweight = new Float32Array(OC * C), dbias = new Float32Array(OC);
    const k = addon.kernels;
    const gemmFlops = 2 * N * C * OC;
    const cases: [string, string, number, () => void][] = [
      ['fwd', `${N}x${C} @ (${OC}x${C})^T`, gemmFlops, () => k.matmul_forward(out, inp, weight, bias, N, C, OC)],
      ['bwd', `dinp+dweight+dbias`, 2 * gemmFlops, () => k.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC)],
      ['bwd dinp', `${N}x${OC} @ ${OC}x${C}`, gemmFlops, () => k.matmul_backward(dinp, null, null, dout, inp, weight, N, C, OC)],
      ['bwd dweight', `(${N}x${OC})^T @ ${N}x${C}`, gemmFlops, () => k.matmul_backward(null, dweight, null, dout, inp, weight, N, C, OC)],
    ];
    for (const [what, shape, flops, fn] of cases) {
      const t = await timeRuns(fn, repeats);
      results.push({ name: `${layer} ${what}`, shape, gflops: flops / (t.median * 1e6), ms: t.median, bestGflops: flops / (t.best * 1e6) });
    }
  }
  return results;
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const repeats = arg('repeats') ? Number(arg('repeats')) : undefined;
  benchMatmul({ repeats, only: arg('only') })
    .then((rows) => {
      console.log(`matmul, ${addon.numThreads()} thread(s), ${addon.simdLevel()}, N=1024 rows`);
      console.log(`  ${'case'.padEnd(22)} ${'shape'.padEnd(28)} ${'GFLOP/s'.padStart(8)} ${'best'.padStart(8)} ${'ms'.padStart(9)}`);
      for (const r of rows) {
        console.log(`  ${r.name.padEnd(22)} ${r.shape.padEnd(28)} ${r.gflops.toFixed(1).padStart(8)} ${r.bestGflops.toFixed(1).padStart(8)} ${r.ms.toFixed(2).padStart(9)}`);
      }
      console.log(JSON.stringify({ bench: 'matmul', threads: addon.numThreads(), simd: addon.simdLevel(), rows }));
    })
    .catch((e) => {
      console.error(`bench/matmul: ${(e as Error).message}`);
      process.exitCode = 1;
    });
}
