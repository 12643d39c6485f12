/**
 * The CPU's fast GGML block-format matmuls (native/cpu/ggml_matmul*.cc: AVX-512 and AVX2) against a float64
 * sum over the weights dequantize_ggml gives (ggml_blocks.test.ts checks those equal ggml's dequantize_row_*
 * bit for bit). Every type, at the sizes that take each path: N = 1, 2 and 7 (the fused few-row dot kernel,
 * 4 input rows at a time and a remainder), 64 and 300 (panels of W through the sgemm); OC not a multiple of
 * any tile; out_stride / dout_stride wider than OC; bias null and not; on both SIMD levels
 * (addon.setSimdLimit), each level the CPU has.
 */
import { GGML_BLOCK_TYPE_LIST, GGMLBlockType, ggmlBlockBytes } from '../../lib/gguf/ggml_types';
import { addon } from '../../lib/native';
import { expectWithinRounding, matmulBackwardRef, matmulForwardRef } from '../reference/matmul';
import { SeededRandom } from '../reference/random';

const k = addon.kernels;
const NS = [1, 2, 7, 64, 300];
const OC = 70; // > 2 panels of 32 rows, not a multiple of 4, 16 or 32
const PAD = 3; // out_stride = dout_stride = OC + PAD

/** Levels to test: AVX-512 only where the CPU has it; AVX2 wherever the CPU has at least that. */
function levels(): ('avx512' | 'avx2')[] {
  const widest = addon.simdLevel();
  return widest === 'avx512' ? ['avx512', 'avx2'] : widest === 'avx2' ? ['avx2'] : [];
}
const LEVELS = levels();
if (LEVELS.length === 0) console.warn('ggml_matmul.test.ts: this CPU has neither AVX2 nor AVX-512; the fast paths are not compiled in or not runnable');

/** Row length per type: 32-blocks get 800 = 3 * 256 + 32 (the backward's 256-column tiles leave a 32-column one). */
const columns = (type: GGMLBlockType) => (type.block === 32 ? 800 : 768);

/** Offsets of a block's fp16 scales (ggml-common.h): Q4_K's and Q5_K's d and dmin, Q6_K's d at the end, the others' d first. */
function scaleOffsets(type: GGMLBlockType): number[] {
  return type.name === 'Q4_K' || type.name === 'Q5_K' ? [0, 2] : type.name === 'Q6_K' ? [208] : [0];
}

/**
 * (OC, C) weights as blocks: the first rows quantized from normal values by quantize_ggml, the rest arbitrary
 * bytes (every code, 6-bit scale, min and high bit pattern) with finite fp16 scales in [2^-10, 2^-6).
 */
function weights(type: GGMLBlockType, C: number, rng: SeededRandom): Uint8Array {
  const quantizedRows = OC >> 1;
  const blocks = new Uint8Array(ggmlBlockBytes(type, OC, C));
  k.quantize_ggml(blocks, rng.normals(quantizedRows * C, 0.05), type.id, quantizedRows, C);
  const start = ggmlBlockBytes(type, quantizedRows, C);
  for (let i = start; i < blocks.length; i++) blocks[i] = rng.ints(1, 0, 255)[0];
  for (let b = start; b < blocks.length; b += type.bytes) {
    for (const at of scaleOffsets(type)) {
      const half = 0x1400 + rng.ints(1, 0, 0x1000)[0]; // exponent field 5..8: magnitudes in [2^-10, 2^-6)
      blocks[b + at] = half & 0xff;
      blocks[b + at + 1] = (half >> 8) | (rng.next() < 0.5 ? 0x80 : 0);
    }
  }
  return blocks;
}

describe.each(GGML_BLOCK_TYPE_LIST.map((t) => [t.name, t] as const))('%s fast CPU matmuls', (_name, type) => {
  const C = columns(type);
  const rng = new SeededRandom(4200 + type.id);
  const w = weights(type, C, rng);
  const dequantized = new Float32Array(OC * C);
  k.dequantize_ggml(dequantized, w, type.id, OC, C);
  const bias = rng.normals(OC);

  afterAll(() => addon.setSimdLimit('avx512'));

  for (const N of NS) {
    const inp = rng.normals(N * C);
    const dout = rng.normals(N * OC);
    const dinp0 = rng.normals(N * C);
    let reference: { forward: ReturnType<typeof matmulForwardRef>; backward: ReturnType<typeof matmulBackwardRef> } | null = null;
    const ref = () => (reference ??= { forward: matmulForwardRef(inp, dequantized, null, N, C, OC), backward: matmulBackwardRef(dout, inp, dequantized, N, C, OC) });

    for (const level of LEVELS) {
      test(`${level}: forward N=${N}, out_stride = OC + ${PAD}, with and without bias`, () => {
        expect(addon.setSimdLimit(level)).toBe(level);
        const stride = OC + PAD, sentinel = -12345.5;
        for (const withBias of [false, true]) {
          const out = new Float32Array(N * stride).fill(sentinel);
          k.matmul_ggml_forward(out, inp, w, withBias ? bias : null, type.id, N, C, OC, stride);
          const got = new Float32Array(N * OC), want = new Float64Array(N * OC), magnitude = new Float64Array(N * OC);
          for (let n = 0; n < N; n++) {
            for (let o = 0; o < OC; o++) {
              got[n * OC + o] = out[n * stride + o];
              want[n * OC + o] = ref().forward.out[n * OC + o] + (withBias ? bias[o] : 0);
              magnitude[n * OC + o] = ref().forward.magnitude[n * OC + o] + (withBias ? Math.abs(bias[o]) : 0);
            }
            for (let o = OC; o < stride; o++) expect(out[n * stride + o]).toBe(sentinel);
          }
          expectWithinRounding(`${type.name} ${level} forward N=${N}${withBias ? ' + bias' : ''}`, got, want, magnitude, C + 1);
        }
      });

      test(`${level}: backward N=${N} accumulates into dinp, dout_stride = OC + ${PAD}`, () => {
        expect(addon.setSimdLimit(level)).toBe(level);
        const stride = OC + PAD;
        const strided = new Float32Array(N * stride).fill(Number.NaN); // the padding columns must never be read
        for (let n = 0; n < N; n++) strided.set(dout.subarray(n * OC, (n + 1) * OC), n * stride);
        const dinp = dinp0.slice();
        k.matmul_ggml_backward(dinp, strided, w, type.id, N, C, OC, stride);
        const want = new Float64Array(N * C), magnitude = new Float64Array(N * C);
        for (let i = 0; i < N * C; i++) {
          want[i] = dinp0[i] + ref().backward.dinp[i];
          magnitude[i] = Math.abs(dinp0[i]) + ref().backward.dinpMagnitude[i];
        }
        expectWithinRounding(`${type.name} ${level} backward N=${N}`, dinp, want, magnitude, OC + 1);
      });
    }
  }
});

describe('addon.setSimdLimit', () => {
  afterAll(() => addon.setSimdLimit('avx512'));

  test('lowers the level every CPU kernel dispatches on, never above what the CPU has, and restores it', () => {
    const widest = addon.simdLevel();
    expect(addon.setSimdLimit('portable')).toBe('portable');
    expect(addon.simdLevel()).toBe('portable');
    expect(addon.setSimdLimit('avx2')).toBe(widest === 'portable' ? 'portable' : 'avx2');
    expect(addon.setSimdLimit('avx512')).toBe(widest);
  });

  test('the portable level runs the scalar reference: the same floats as addon.ggmlReference', () => {
    const type = GGML_BLOCK_TYPE_LIST.find((t) => t.name === 'Q4_K')!;
    const rng = new SeededRandom(99);
    const C = 512, N = 5;
    const w = weights(type, C, rng), inp = rng.normals(N * C);
    const viaKernel = new Float32Array(N * OC), viaReference = new Float32Array(N * OC);
    addon.setSimdLimit('portable');
    k.matmul_ggml_forward(viaKernel, inp, w, null, type.id, N, C, OC, OC);
    addon.setSimdLimit('avx512');
    addon.ggmlReference.matmul_ggml_forward(viaReference, inp, w, null, type.id, N, C, OC, OC);
    expect(Buffer.from(viaKernel.buffer).equals(Buffer.from(viaReference.buffer))).toBe(true);
  });

  test('refuses a level it does not know', () => {
    expect(() => (addon.setSimdLimit as (l: string) => string)('sse2')).toThrow(/setSimdLimit: .*level/);
  });
});
