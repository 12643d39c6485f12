/**
 * GGUF tensor encodings against ggml's definitions. Expected values were computed independently with
 * numpy from gguf-py's quants.py Q8_0 formula (d = max|x| / 127 in float32, qs = roundf(x / d) with
 * halves away from zero, d stored as numpy float16) and numpy's float32 -> float16 cast (round to
 * nearest even), and are written here as literals.
 */
import { dequantizeRows, floatToHalfBits, quantizeRows } from '../../lib/gguf/quant';
import { encodeHeader, ggufChunks, GGUFTensor, GGUFValue, writeGGUF } from '../../lib/gguf/format';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from '../helpers';

const range = (n: number, f: (j: number) => number) => Array.from({ length: n }, (_, j) => f(j));

/** Fixed blocks of 32 and their Q8_0 encodings: d as fp16 bits, qs. */
const BLOCKS: Array<{ x: number[]; d: number; qs: number[] }> = [
  {
    // amax 127: d = 1; halves round away from zero (0.5 -> 1, -2.5 -> -3, -126.5 -> -127, -3.5 -> -4).
    x: [0.5, -0.5, 1.5, -2.5, 127, -126.5, 3.49, -3.5, ...range(24, (j) => j)],
    d: 0x3c00,
    qs: [1, -1, 2, -3, 127, -127, 3, -4, ...range(24, (j) => j)],
  },
  { x: range(32, () => 0), d: 0x0000, qs: range(32, () => 0) },
  {
    x: range(32, (j) => Math.fround((((j * 37) % 29) - 14) / 7)),
    d: 0x2408,
    qs: [-127, -54, 18, 91, -100, -27, 45, 118, -73, 0, 73, -118, -45, 27, 100, -91, -18, 54, 127, -64, 9, 82, -109, -36, 36, 109, -82, -9, 64, -127, -54, 18],
  },
  {
    x: range(32, (j) => Math.fround(1e-3 * (j - 16))),
    d: 0x0821,
    qs: [-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48, -40, -32, -24, -16, -8, 0, 8, 16, 24, 32, 40, 48, 56, 64, 71, 79, 87, 95, 103, 111, 119],
  },
];

/** The fixed blocks as one row of 128 values (the export quantizes whole rows through the native kernel). */
const ROW = BLOCKS.length * 32;

describe('Q8_0 (the native quantize_ggml / dequantize_ggml kernels, as the export and the reader use them)', () => {
  test('blocks are { fp16 d, int8 qs[32] } (34 bytes) exactly as ggml quantizes them', () => {
    const bytes = quantizeRows(Float32Array.from(BLOCKS.flatMap((b) => b.x)), 'Q8_0', ROW);
    expect(bytes.length).toBe(34 * BLOCKS.length);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    BLOCKS.forEach((b, i) => {
      expect(view.getUint16(34 * i, true)).toBe(b.d);
      expect(Array.from(new Int8Array(bytes.buffer, bytes.byteOffset + 34 * i + 2, 32))).toEqual(b.qs);
    });
  });

  test('dequantization is d * qs (fp16 d widened to float32)', () => {
    const values = dequantizeRows(quantizeRows(Float32Array.from(BLOCKS.flatMap((b) => b.x)), 'Q8_0', ROW), 'Q8_0', ROW);
    // numpy: float32(float16(d)) * float32(qs)
    expect(Array.from(values.subarray(0, 6))).toEqual([1, -1, 2, -3, 127, -127]);
    expect(Array.from(values.subarray(64, 70))).toEqual([-1.9998779296875, -0.850341796875, 0.283447265625, 1.4329833984375, -1.57470703125, -0.4251708984375]);
    expect(values[96]).toBe(Math.fround(-0.016002535820007324));
  });

  test('a row length that is not a whole number of blocks is a RangeError', () => {
    expect(() => quantizeRows(new Float32Array(33), 'Q8_0', 33)).toThrow(RangeError);
    expect(() => dequantizeRows(new Uint8Array(33), 'Q8_0', 32)).toThrow(RangeError);
  });
});

test('float32 -> float16 rounds to nearest even, with subnormals, overflow and infinities as numpy casts', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [65504, 0x7bff], [65520, 0x7c00], [Math.fround(65519.99), 0x7bff],
    [Math.fround(1e-8), 0x0000], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -26, 0x0001], [2 ** -14, 0x0400],
    [2 ** -14 - 2 ** -25, 0x0400], [1.0009765625 + 2 ** -11, 0x3c02], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
    [Math.fround(-3.14159), 0xc248], [Infinity, 0x7c00], [-Infinity, 0xfc00], [Math.fround(0.1), 0x2e66], [1.5 * 2 ** -24, 0x0002],
  ];
  for (const [x, bits] of cases) expect([x, floatToHalfBits(x)]).toEqual([x, bits]);
  expect(floatToHalfBits(NaN) & 0x7c00).toBe(0x7c00);
  expect(floatToHalfBits(NaN) & 0x3ff).not.toBe(0);
});

describe('GGUF container', () => {
  const kv = new Map<string, GGUFValue>([['general.architecture', { type: 'string', value: 'gpt2' }], ['x.n', { type: 'u32', value: 7 }]]);
  const tensor = (name: string, n: number, fill: number): GGUFTensor => ({
    name, ne: [n], type: 'F32', nbytes: 4 * n, data: () => [new Uint8Array(new Float32Array(n).fill(fill).buffer)],
  });

  test('header, KV, tensor infos with padded offsets, 32-byte aligned data (bytes read back by hand)', () => {
    const tensors = [tensor('a', 3, 1), tensor('b', 9, 2)];
    const file = Buffer.concat([...ggufChunks(kv, tensors)]);
    expect(file.toString('latin1', 0, 4)).toBe('GGUF');
    expect(file.readUInt32LE(4)).toBe(3);
    expect(file.readBigUInt64LE(8)).toBe(2n);
    expect(file.readBigUInt64LE(16)).toBe(2n);
    let at = 24;
    const str = () => {
      const n = Number(file.readBigUInt64LE(at));
      const s = file.toString('utf8', at + 8, at + 8 + n);
      at += 8 + n;
      return s;
    };
    expect(str()).toBe('general.architecture');
    expect(file.readUInt32LE(at)).toBe(8);
    at += 4;
    expect(str()).toBe('gpt2');
    expect(str()).toBe('x.n');
    expect([file.readUInt32LE(at), file.readUInt32LE(at + 4)]).toEqual([4, 7]);
    at += 8;
    const infos = [];
    for (let t = 0; t < 2; t++) {
      const name = str();
      const dims = file.readUInt32LE(at);
      const ne0 = Number(file.readBigUInt64LE(at + 4));
      const type = file.readUInt32LE(at + 12);
      const offset = Number(file.readBigUInt64LE(at + 16));
      at += 24;
      infos.push({ name, dims, ne0, type, offset });
    }
    // 'a' takes 12 bytes, padded to 32: 'b' starts at 32.
    expect(infos).toEqual([{ name: 'a', dims: 1, ne0: 3, type: 0, offset: 0 }, { name: 'b', dims: 1, ne0: 9, type: 0, offset: 32 }]);
    const dataStart = Math.ceil(at / 32) * 32;
    expect(encodeHeader(kv, tensors).header.length).toBe(dataStart);
    expect(file.subarray(at, dataStart).every((b) => b === 0)).toBe(true);
    expect(file.readFloatLE(dataStart + 8)).toBe(1);
    expect(file.subarray(dataStart + 12, dataStart + 32).every((b) => b === 0)).toBe(true);
    expect(file.readFloatLE(dataStart + 32 + 32)).toBe(2);
    expect(file.length).toBe(dataStart + 32 + 64);
  });

  test('a tensor that fails while streaming leaves no file and no temporary behind', () => {
    const dir = tempDir('gptune-gguf-fail-');
    const file = path.join(dir, 'x.gguf');
    const broken: GGUFTensor = { ...tensor('b', 9, 2), nbytes: 40 };
    expect(() => writeGGUF(file, kv, [tensor('a', 3, 1), broken])).toThrow(/tensor b: wrote 36 bytes but its info says 40/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
