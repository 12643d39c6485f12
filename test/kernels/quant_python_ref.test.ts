/**
 * The addon's quantization kernels against test/fixtures/quant-ref.json (+ quant-ref.safetensors), written by
 * scripts/ref_quant.py in numpy float32 from the published definitions (bitsandbytes' int8_vectorwise_quant,
 * QLoRA's NF4 with blocks of 64, double quantization with create_dynamic_map(signed=True) in blocks of 256).
 * A second reference, independent of test/reference/quant.ts. Every code, scale and dequantized value must be
 * equal exactly: both sides apply the same float32 operations in the same order.
 */
import * as fs from 'fs';
import * as path from 'path';
import { addon } from '../../lib/native';
import { readSafetensors, SafetensorsTensor, toFloat32 } from '../../lib/io/safetensors';
import { FIXTURES } from '../helpers';

const { kernels: k } = addon;

interface Nf4Ref {
  n: number; blocks: number; offset: number; absmax2: number[]; qabsmax: number[]; block_absmax: number[];
  absmax_dequantized: number[]; weight?: number[]; codes?: number[]; packed?: number[]; dequantized?: number[];
}
const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'quant-ref.json'), 'utf8')) as {
  nf4_code: number[]; dynamic_code: number[];
  int8: { OC: number; C: number; weight: number[]; q: number[]; scale: number[]; dequantized: number[] };
  nf4_small: Nf4Ref; nf4_large: Nf4Ref;
};
const tensors = readSafetensors(path.join(FIXTURES, 'quant-ref.safetensors')).tensors;

function bytes(t: SafetensorsTensor): Uint8Array {
  expect(t.dtype).toBe('U8');
  return new Uint8Array(t.data);
}

/** Index of the first difference (Object.is, so -0 and 0 differ), or -1. */
function firstDifference(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) return i;
  return -1;
}

function expectSame(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const i = firstDifference(got, want);
  if (i >= 0) throw new Error(`${what}[${i}]: the kernel gives ${got[i]}, the Python reference ${want[i]} (lengths ${got.length}, ${want.length})`);
}

interface Nf4Storage { packed: Uint8Array; qabsmax: Uint8Array; absmax2: Float32Array; offset: Float32Array }

function quantizeNf4(weight: Float32Array): Nf4Storage {
  const blocks = Math.ceil(weight.length / 64);
  const s = {
    packed: new Uint8Array(Math.ceil(weight.length / 2)), qabsmax: new Uint8Array(blocks),
    absmax2: new Float32Array(Math.ceil(blocks / 256)), offset: new Float32Array(1),
  };
  k.quantize_nf4(s.packed, s.qabsmax, s.absmax2, s.offset, weight, weight.length);
  return s;
}

function dequantizeNf4(s: Nf4Storage, n: number): Float32Array {
  const out = new Float32Array(n);
  k.dequantize_nf4(out, s.packed, s.qabsmax, s.absmax2, s.offset, n);
  return out;
}

describe('int8 per output channel vs the Python reference', () => {
  const { OC, C } = ref.int8;
  const weight = Float32Array.from(ref.int8.weight);

  test('codes (round half to even, with exact ties) and scales', () => {
    const q = new Int8Array(OC * C), scale = new Float32Array(OC);
    k.quantize_int8(q, scale, weight, OC, C);
    expectSame('q', q, ref.int8.q);
    expectSame('scale', scale, ref.int8.scale);
  });

  test('dequantized q * scale', () => {
    const out = new Float32Array(OC * C);
    k.dequantize_int8(out, Int8Array.from(ref.int8.q), Float32Array.from(ref.int8.scale), OC, C);
    expectSame('dequantized', out, ref.int8.dequantized);
  });
});

describe('NF4 with double quantization vs the Python reference', () => {
  test('the 16 code values and the 256 values of the dynamic map (read back through dequantize_nf4)', () => {
    // every element code 15 (NF4 1.0), block b's qabsmax = b, absmax2 1, offset 0: block b dequantizes to
    // fl32(1.0 * fl32(map[b] * 1 + 0)) = map[b]; then code c of block 255 (map 1.0) gives nf4[c].
    const n = 256 * 64;
    const s: Nf4Storage = {
      packed: new Uint8Array(n / 2).fill(0xff), qabsmax: Uint8Array.from({ length: 256 }, (_, b) => b),
      absmax2: Float32Array.of(1), offset: Float32Array.of(0),
    };
    const values = dequantizeNf4(s, n);
    expectSame('dynamic map', Array.from({ length: 256 }, (_, b) => values[b * 64]), Float32Array.from(ref.dynamic_code));
    s.packed.fill(0);
    for (let c = 0; c < 16; c++) s.packed[255 * 32 + (c >> 1)] |= c % 2 === 0 ? c << 4 : c;
    const codes = dequantizeNf4(s, n).subarray(255 * 64, 255 * 64 + 16);
    expectSame('nf4 code', codes, Float32Array.from(ref.nf4_code));
  });

  const cases: Array<[string, () => { weight: Float32Array; packed: Uint8Array; dequantized: Float32Array }]> = [
    ['350 values (5 full blocks + 30, one block all zero)', () => ({
      weight: Float32Array.from(ref.nf4_small.weight!), packed: Uint8Array.from(ref.nf4_small.packed!),
      dequantized: Float32Array.from(ref.nf4_small.dequantized!),
    })],
    ['16677 values (261 blocks: 2 second-level blocks, a partial block of 37, odd n)', () => ({
      weight: toFloat32(tensors.get('nf4_large.weight')!), packed: bytes(tensors.get('nf4_large.packed')!),
      dequantized: toFloat32(tensors.get('nf4_large.dequantized')!),
    })],
  ];
  const refs = [ref.nf4_small, ref.nf4_large];

  test.each(cases.map((c, i) => [c[0], i] as const))('%s: packed codes, qabsmax, absmax2, offset, dequantized', (_, i) => {
    const r = refs[i];
    const data = cases[i][1]();
    expect(data.weight).toHaveLength(r.n);
    const s = quantizeNf4(data.weight);
    expectSame('packed', s.packed, data.packed);
    expectSame('offset', s.offset, [r.offset]);
    expectSame('absmax2', s.absmax2, r.absmax2);
    expectSame('qabsmax', s.qabsmax, r.qabsmax);
    expectSame('dequantized (from the kernel\'s own codes)', dequantizeNf4(s, r.n), data.dequantized);
    // dequantizing the reference's stored format checks the dequantization alone
    const stored: Nf4Storage = {
      packed: data.packed, qabsmax: Uint8Array.from(r.qabsmax), absmax2: Float32Array.from(r.absmax2), offset: Float32Array.of(r.offset),
    };
    expectSame('dequantized (from the reference\'s codes)', dequantizeNf4(stored, r.n), data.dequantized);
  });
});
