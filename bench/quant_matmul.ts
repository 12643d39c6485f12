/**
 * Frozen-base matmuls (int8 per output channel, NF4 double-quantized, bf16) against the fp32 matmul at
 * SmolLM2-135M's MLP shapes (hidden 576, intermediate 1536), on the CPU addon with the current
 * thread count: the forward and the input backward (the frozen base takes no weight gradient), for
 * a training batch (N = 1024 rows) and for decoding (N = 1). Median of `repeats` runs after one
 * warm-up (bench/matmul.ts's timing). FLOPs counted 2*N*C*OC for each; vs_fp32 is the fp32
 * matmul's median time over this one's (above 1: faster than fp32).
 * `node dist/bench/quant_matmul.js [--repeats N]` prints a table and one JSON line.
 */
import { addon } from '../lib/native';
import { randomFloats, timeRuns } from './matmul';

export interface QuantMatmulRow {
  name: string;
  format: 'fp32' | 'int8' | 'nf4' | 'bf16';
  gflops: number;  // at the median time
  ms: number;
  vsFp32: number;  // fp32's median time / this one's, same case
}

/** SmolLM2-135M linear layers: (name, C in, OC out). */
const SMOLLM2_MLP: [string, number, number][] = [['up_proj', 576, 1536], ['down_proj', 1536, 576]];

export async function benchQuantMatmul(options: { repeats?: number } = {}): Promise<QuantMatmulRow[]> {
  const k = addon.kernels;
  const rows: QuantMatmulRow[] = [];
  for (const N of [1024, 1]) {
    for (const [layer, C, OC] of SMOLLM2_MLP) {
      const repeats = options.repeats ?? (N === 1 ? 51 : 7);
      const inp = randomFloats(N * C, 1), weight = randomFloats(OC * C, 2), dout = randomFloats(N * OC, 4);
      const out = new Float32Array(N * OC), dinp = new Float32Array(N * C);
      const q = new Int8Array(OC * C), scale = new Float32Array(OC);
      k.quantize_int8(q, scale, weight, OC, C);
      const n = OC * C, blocks = Math.ceil(n / 64);
      const packed = new Uint8Array(Math.ceil(n / 2)), qabsmax = new Uint8Array(blocks);
      const absmax2 = new Float32Array(Math.ceil(blocks / 256)), offset = new Float32Array(1);
      k.quantize_nf4(packed, qabsmax, absmax2, offset, weight, n);
      const bf16 = new Uint16Array(n);
      k.convert_f32_to_bf16(bf16, weight, n);
      const cases: [QuantMatmulRow['format'], string, () => void][] = [
        ['fp32', 'fwd', () => k.matmul_forward(out, inp, weight, null, N, C, OC)],
        ['int8', 'fwd', () => k.matmul_int8_forward(out, inp, q, scale, null, N, C, OC)],
        ['nf4', 'fwd', () => k.matmul_nf4_forward(out, inp, packed, qabsmax, absmax2, offset, null, N, C, OC)],
        ['bf16', 'fwd', () => k.matmul_bf16_forward(out, inp, bf16, null, N, C, OC)],
        ['fp32', 'bwd dinp', () => k.matmul_backward(dinp, null, null, dout, inp, weight, N, C, OC)],
        ['int8', 'bwd dinp', () => k.matmul_int8_backward(dinp, dout, q, scale, N, C, OC)],
        ['nf4', 'bwd dinp', () => k.matmul_nf4_backward(dinp, dout, packed, qabsmax, absmax2, offset, N, C, OC)],
        ['bf16', 'bwd dinp', () => k.matmul_bf16_backward(dinp, dout, bf16, N, C, OC)],
      ];
      let fp32Ms = NaN;
      for (const [format, what, fn] of cases) {
        const t = await timeRuns(fn, repeats);
        if (format === 'fp32') fp32Ms = t.median;
        rows.push({
          name: `N=${N} ${layer} (${C}->${OC}) ${what}`, format, gflops: (2 * N * C * OC) / (t.median * 1e6), ms: t.median,
          vsFp32: fp32Ms / t.median,
        });
      }
    }
  }
  return rows;
}

if (require.main === module) {
  const i = process.argv.indexOf('--repeats');
  benchQuantMatmul({ repeats: i >= 0 ? Number(process.argv[i + 1]) : undefined })
    .then((rows) => {
      console.log(`quantized matmul vs fp32, ${addon.numThreads()} thread(s), ${addon.simdLevel()}`);
      console.log(`  ${'case'.padEnd(40)} ${'format'.padEnd(6)} ${'GFLOP/s'.padStart(8)} ${'ms'.padStart(9)} ${'vs fp32'.padStart(8)}`);
      for (const r of rows) {
        console.log(`  ${r.name.padEnd(40)} ${r.format.padEnd(6)} ${r.gflops.toFixed(1).padStart(8)} ${r.ms.toFixed(3).padStart(9)} ${`${r.vsFp32.toFixed(2)}x`.padStart(8)}`);
      }
      console.log(JSON.stringify({ bench: 'quant_matmul', threads: addon.numThreads(), simd: addon.simdLevel(), rows }));
    })
    .catch((e) => {
      console.error(`bench/quant_matmul: ${(e as Error).message}`);
      process.exitCode = 1;
    });
}
