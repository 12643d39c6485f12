/**
 * The GGML block formats (kernels.inc quantize_ggml / dequantize_ggml / matmul_ggml_*) against ggml itself:
 * libggml-base.so as node-llama-cpp ships it (a devDependency), called through python3's ctypes
 * (test/reference/ggml_quants.py). Quantized bytes must equal quantize_row_<type>_ref's and dequantized
 * floats dequantize_row_<type>'s, bit for bit, for every type; the matmuls must equal a float64 sum over
 * ggml's dequantized weights within float32 summation rounding (reference/matmul.ts).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { GGML_BLOCK_TYPE_LIST, GGMLBlockType, ggmlBlockBytes, ggmlBlockType } from '../../lib/gguf/ggml_types';
import { addon } from '../../lib/native';
import { readElements, writeElements } from '../../lib/tensor';
import { expectWithinRounding } from '../reference/matmul';
import { SeededRandom } from '../reference/random';

const { kernels: k, ggmlReference } = addon;
const ROOT = path.resolve(__dirname, '../..');
const LIB = path.join(ROOT, 'node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so');
const SCRIPT = path.join(ROOT, 'test/reference/ggml_quants.py');
const HAVE_LIB = fs.existsSync(LIB);
const describeWithGgml = HAVE_LIB ? describe : describe.skip;
if (!HAVE_LIB) console.warn(`ggml_blocks.test.ts: ggml comparisons skipped because ${LIB} is absent (node-llama-cpp not installed)`);

/** A request to ggml's own code (ggml_quants.py): 0 quantize (then dequantize the result), 1 dequantize. */
interface GgmlRequest {
  op: 0 | 1;
  type: GGMLBlockType;
  count: number;
  input: ArrayBufferView;
}

/** ggml's replies to every request, from one python process (its start-up costs seconds on a busy machine). */
function runGgml(requests: GgmlRequest[]): Uint8Array[] {
  const parts: Buffer[] = [];
  for (const r of requests) {
    const header = Buffer.alloc(10);
    header.writeUInt8(r.op, 0);
    header.writeUInt8(r.type.id, 1);
    header.writeUInt32LE(r.count, 2);
    header.writeUInt32LE(r.input.byteLength, 6);
    parts.push(header, Buffer.from(r.input.buffer, r.input.byteOffset, r.input.byteLength));
  }
  const out = execFileSync('python3', [SCRIPT, LIB], { input: Buffer.concat(parts), maxBuffer: 1 << 28 });
  const replies: Uint8Array[] = [];
  for (let at = 0; at < out.length; ) {
    const size = out.readUInt32LE(at);
    replies.push(new Uint8Array(out.buffer.slice(out.byteOffset + at + 4, out.byteOffset + at + 4 + size)));
    at += 4 + size;
  }
  expect(replies.length).toBe(requests.length);
  return replies;
}

/** Queues requests for one batch run in beforeAll; each handle's reply is read in the tests. */
class GgmlBatch {
  private requests: GgmlRequest[] = [];
  private replies: Uint8Array[] = [];
  add(request: GgmlRequest): () => Uint8Array {
    const index = this.requests.push(request) - 1;
    return () => this.replies[index];
  }
  run(): void {
    this.replies = runGgml(this.requests);
  }
}
const batch = new GgmlBatch();
if (HAVE_LIB) beforeAll(() => batch.run());

/** ggml's blocks of x and its dequantization of them. */
function ggmlQuantize(type: GGMLBlockType, x: Float32Array): () => { blocks: Uint8Array; values: Float32Array } {
  const reply = batch.add({ op: 0, type, count: x.length, input: x });
  return () => {
    const r = reply();
    const nbytes = (x.length / type.block) * type.bytes;
    return { blocks: r.slice(0, nbytes), values: new Float32Array(r.slice(nbytes).buffer) };
  };
}
/** ggml's dequantization of `count` values' blocks. */
function ggmlDequantize(type: GGMLBlockType, blocks: Uint8Array, count: number): () => Float32Array {
  const reply = batch.add({ op: 1, type, count, input: blocks });
  return () => new Float32Array(reply().slice().buffer);
}

function quantize(type: GGMLBlockType, x: Float32Array, rows: number): Uint8Array {
  const blocks = new Uint8Array(ggmlBlockBytes(type, rows, x.length / rows));
  k.quantize_ggml(blocks, x, type.id, rows, x.length / rows);
  return blocks;
}
function dequantize(type: GGMLBlockType, blocks: Uint8Array, rows: number, C: number): Float32Array {
  const out = new Float32Array(rows * C);
  k.dequantize_ggml(out, blocks, type.id, rows, C);
  return out;
}

/** The first differing byte, described, or null when equal. */
function firstByteDifference(got: Uint8Array, want: Uint8Array, type: GGMLBlockType): string | null {
  if (got.length !== want.length) return `length ${got.length} vs ggml's ${want.length}`;
  for (let i = 0; i < got.length; i++)
    if (got[i] !== want[i]) return `byte ${i % type.bytes} of block ${Math.floor(i / type.bytes)}: ${got[i]} vs ggml's ${want[i]}`;
  return null;
}
/** The first float whose bits differ (NaN payloads included), described, or null when equal. */
function firstBitDifference(got: Float32Array, want: Float32Array): string | null {
  if (got.length !== want.length) return `length ${got.length} vs ggml's ${want.length}`;
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length), w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++)
    if (g[i] !== w[i]) return `value ${i}: ${got[i]} (0x${g[i].toString(16)}) vs ggml's ${want[i]} (0x${w[i].toString(16)})`;
  return null;
}

/** Fixed inputs: `rows` rows of C values each, for a type whose blocks are `block` values. */
function fixtures(block: number): { name: string; rows: number; x: Float32Array }[] {
  const C = 2 * 256; // two super-blocks, sixteen 32-blocks per row
  const rng = new SeededRandom(1300 + block);
  const cases: { name: string; rows: number; x: Float32Array }[] = [];
  const add = (name: string, rows: number, x: Float32Array) => cases.push({ name, rows, x });
  add('random normal rows', 3, rng.normals(3 * C, 0.02));
  const outliers = rng.normals(3 * C, 0.05);
  for (let i = 0; i < outliers.length; i += 97) outliers[i] *= 40;
  add('rows with outliers', 3, outliers);
  add('all-zero rows', 2, new Float32Array(2 * C));
  add('tiny values (fp16 scales subnormal or zero)', 2, Float32Array.from(rng.normals(2 * C), (v, i) => v * (i < C ? 1e-6 : 1e-30)));
  add('negative-only rows', 2, Float32Array.from(rng.normals(2 * C), (v) => -Math.abs(v)));
  // Each block a magnitude from 1e-12 to 1e8: fp16 scales across subnormals, normals and overflow to infinity.
  const spread = rng.normals(4 * C);
  for (let b = 0; b < spread.length; b += block) {
    const scale = 10 ** rng.uniform(-12, 8);
    for (let j = b; j < b + block; j++) spread[j] *= scale;
  }
  add('block magnitudes from 1e-12 to 1e8', 4, spread);
  // Small integers and halves: exact ties in every rounding step that scales by a power of two.
  add('integers and halves (rounding ties)', 2, Float32Array.from({ length: 2 * C }, () => rng.ints(1, -16, 16)[0] / 2));
  // Many rows of a trained layer's spread: a float step done differently (a fused multiply-add in Q4_K's
  // least-squares fit, say) changes about 1 super-block in 600, so this many (2048) catch it.
  const many = rng.normals(1024 * C);
  for (let r = 0; r < 1024; r++) {
    const scale = 10 ** rng.uniform(-3, 0);
    for (let j = r * C; j < (r + 1) * C; j++) many[j] *= scale;
  }
  add('1024 rows of varied scale', 1024, many);
  // One row of a single block (C = block): the smallest weight.
  add('one block', 1, rng.normals(block, 0.1));
  return cases;
}

describeWithGgml('quantize_ggml and dequantize_ggml equal ggml bit for bit', () => {
  for (const type of GGML_BLOCK_TYPE_LIST) {
    for (const { name, rows, x } of fixtures(type.block)) {
      const want = ggmlQuantize(type, x);
      test(`${type.name}: ${name}`, () => {
        const C = x.length / rows;
        const { blocks, values } = want();
        expect(firstByteDifference(quantize(type, x, rows), blocks, type)).toBeNull();
        expect(firstBitDifference(dequantize(type, blocks, rows, C), values)).toBeNull();
      });
    }
    const nblocks = 64;
    const arbitrary = Uint8Array.from(new SeededRandom(77 + type.id).ints(nblocks * type.bytes, 0, 255));
    const arbitraryWant = ggmlDequantize(type, arbitrary, nblocks * type.block);
    test(`${type.name}: dequantizing arbitrary bytes (any scale bits, NaN and infinity included)`, () => {
      expect(firstBitDifference(dequantize(type, arbitrary, 1, nblocks * type.block), arbitraryWant())).toBeNull();
    });
  }

  const q8 = ggmlBlockType('Q8_0')!;
  const everyHalf = new Uint8Array(65536 * q8.bytes);
  for (let h = 0; h < 65536; h++) {
    everyHalf[h * q8.bytes] = h & 0xff;
    everyHalf[h * q8.bytes + 1] = h >> 8;
    everyHalf[h * q8.bytes + 2] = 1; // q = 1: the value is the scale itself
    everyHalf[h * q8.bytes + 3] = 0xff; // q = -1
  }
  const everyHalfWant = ggmlDequantize(q8, everyHalf, 65536 * q8.block);
  test('every fp16 scale widens as ggml widens it (all 65536 bit patterns, through Q8_0 blocks)', () => {
    expect(firstBitDifference(dequantize(q8, everyHalf, 1, 65536 * q8.block), everyHalfWant())).toBeNull();
  });
});

describeWithGgml('matmul_ggml_forward / matmul_ggml_backward against a float64 sum over ggml-dequantized weights', () => {
  const N = 3, OC = 5;
  const implementations = [
    ['kernel', k],
    ['scalar reference', ggmlReference],
  ] as const;
  for (const type of GGML_BLOCK_TYPE_LIST) {
    const C = type.block === 32 ? 96 : 512;
    const rng = new SeededRandom(900 + type.id);
    const w = quantize(type, rng.normals(OC * C, 0.05), OC);
    const ggmlWeight = ggmlDequantize(type, w, OC * C); // ggml's own dequantization: the reference's weights
    const inp = rng.normals(N * C);
    const bias = rng.normals(OC);
    for (const [label, impl] of implementations) {
      for (const withBias of [false, true]) {
        test(`${type.name} ${label} forward, out_stride = OC + 3, ${withBias ? 'with' : 'no'} bias`, () => {
          const stride = OC + 3;
          const weight = ggmlWeight();
          const sentinel = -12345.5;
          const out = new Float32Array((N - 1) * stride + OC).fill(sentinel);
          impl.matmul_ggml_forward(out, inp, w, withBias ? bias : null, type.id, N, C, OC, stride);
          const want = new Float64Array(N * OC), magnitude = new Float64Array(N * OC), got = new Float32Array(N * OC);
          for (let n = 0; n < N; n++) {
            for (let o = 0; o < OC; o++) {
              let sum = withBias ? bias[o] : 0, mag = withBias ? Math.abs(bias[o]) : 0;
              for (let c = 0; c < C; c++) {
                const p = inp[n * C + c] * weight[o * C + c];
                sum += p;
                mag += Math.abs(p);
              }
              want[n * OC + o] = sum;
              magnitude[n * OC + o] = mag;
              got[n * OC + o] = out[n * stride + o];
            }
            for (let o = OC; o < stride && n < N - 1; o++) expect(out[n * stride + o]).toBe(sentinel);
          }
          expectWithinRounding(`${type.name} forward`, got, want, magnitude, C + 1);
        });
      }
      test(`${type.name} ${label} backward accumulates, dout_stride = OC + 2`, () => {
        const stride = OC + 2;
        const weight = ggmlWeight();
        const dout = rng.normals((N - 1) * stride + OC);
        const dinp0 = rng.normals(N * C);
        const dinp = dinp0.slice();
        impl.matmul_ggml_backward(dinp, dout, w, type.id, N, C, OC, stride);
        const want = new Float64Array(N * C), magnitude = new Float64Array(N * C);
        for (let n = 0; n < N; n++) {
          for (let c = 0; c < C; c++) {
            let sum = dinp0[n * C + c], mag = Math.abs(dinp0[n * C + c]);
            for (let o = 0; o < OC; o++) {
              const p = dout[n * stride + o] * weight[o * C + c];
              sum += p;
              mag += Math.abs(p);
            }
            want[n * C + c] = sum;
            magnitude[n * C + c] = mag;
          }
        }
        expectWithinRounding(`${type.name} backward`, dinp, want, magnitude, OC + 1);
      });
    }
  }
});

describe('GGML blocks in arena views (float slots, as a model holds its weights)', () => {
  // Q5_0 rows of 96 values are 66 bytes: not a whole number of 4-byte slots per row, nor in total for 3 rows.
  const type = ggmlBlockType('Q5_0')!;
  const rows = 3, C = 96, N = 2;
  const rng = new SeededRandom(4242);
  const x = rng.normals(rows * C, 0.1);
  const inp = rng.normals(N * C);

  test('quantize into a view, dequantize and multiply from it: the same bytes and floats as typed arrays', () => {
    const arena = new addon.Arena('cpu', 1024);
    try {
      const blocks = quantize(type, x, rows);
      const view = writeElements(arena, 5, new Uint8Array(blocks.length).fill(0xee));
      k.quantize_ggml(view, x, type.id, rows, C);
      expect(firstByteDifference(readElements(view, Uint8Array, blocks.length), blocks, type)).toBeNull();
      const values = new Float32Array(rows * C);
      k.dequantize_ggml(values, view, type.id, rows, C);
      expect(firstBitDifference(values, dequantize(type, blocks, rows, C))).toBeNull();
      const fromView = new Float32Array(N * rows), fromArray = new Float32Array(N * rows);
      k.matmul_ggml_forward(fromView, inp, view, null, type.id, N, C, rows, rows);
      k.matmul_ggml_forward(fromArray, inp, blocks, null, type.id, N, C, rows, rows);
      expect(firstBitDifference(fromView, fromArray)).toBeNull();
    } finally {
      arena.free();
    }
  });
});

describe('GGML block bindings refuse bad arguments with a one-line RangeError', () => {
  const q4k = ggmlBlockType('Q4_K')!;
  const q8 = ggmlBlockType('Q8_0')!;
  function expectRangeError(call: () => void, kernel: string, fragment: string): void {
    let error: unknown;
    try {
      call();
    } catch (e) {
      error = e;
    }
    // The addon's errors come from the main realm, not jest's sandbox: checked by name, not instanceof.
    expect((error as Error).name).toBe('RangeError');
    const message = (error as Error).message;
    expect(message.startsWith(`${kernel}: `)).toBe(true);
    expect(message).toContain(fragment);
    expect(message).not.toContain('\n');
  }
  const weight = new Float32Array(2 * 256);
  const blocks = new Uint8Array(2 * q4k.bytes);

  test('a type that is not one of the six block types', () => {
    for (const bad of [0, 1, 3, 15, 99, -2])
      expectRangeError(() => k.quantize_ggml(blocks, weight, bad, 2, 256), 'quantize_ggml', `but it is ${bad}`);
    expectRangeError(() => k.dequantize_ggml(weight, blocks, 1, 2, 256), 'dequantize_ggml', 'GGML block type');
    expectRangeError(() => k.matmul_ggml_forward(new Float32Array(2), weight, blocks, null, 0, 1, 256, 2, 2), 'matmul_ggml_forward', 'GGML block type');
    expectRangeError(() => k.matmul_ggml_backward(weight, new Float32Array(2), blocks, 30, 1, 256, 2, 2), 'matmul_ggml_backward', 'GGML block type');
  });

  test('C that is not a multiple of the block', () => {
    expectRangeError(() => k.quantize_ggml(blocks, weight, q4k.id, 1, 288), 'quantize_ggml', 'C (288) must be a multiple of 256, the block of Q4_K');
    expectRangeError(() => k.dequantize_ggml(weight, blocks, ggmlBlockType('Q5_K')!.id, 1, 96), 'dequantize_ggml', 'C (96) must be a multiple of 256, the block of Q5_K');
    expectRangeError(() => k.dequantize_ggml(weight, blocks, q8.id, 1, 33), 'dequantize_ggml', 'C (33) must be a multiple of 32');
    expectRangeError(() => k.matmul_ggml_forward(new Float32Array(2), weight, blocks, null, q8.id, 1, 48, 2, 2), 'matmul_ggml_forward', 'multiple of 32');
    expectRangeError(() => ggmlReference.matmul_ggml_backward(weight, new Float32Array(2), blocks, q4k.id, 1, 128, 2, 2), 'matmul_ggml_backward_reference', 'multiple of 256');
  });

  test('buffers too short for the shape', () => {
    expectRangeError(() => k.quantize_ggml(blocks.subarray(1), weight, q4k.id, 2, 256), 'quantize_ggml', 'blocks');
    expectRangeError(() => k.quantize_ggml(blocks, weight.subarray(1), q4k.id, 2, 256), 'quantize_ggml', 'weight');
    expectRangeError(() => k.dequantize_ggml(new Float32Array(3 * 256), blocks, q4k.id, 3, 256), 'dequantize_ggml', 'blocks');
    // out_stride 4 with N = 2, OC = 2 needs 4 + 2 floats.
    expectRangeError(() => k.matmul_ggml_forward(new Float32Array(5), weight, blocks, null, q4k.id, 2, 256, 2, 4), 'matmul_ggml_forward', 'out');
    expectRangeError(() => k.matmul_ggml_forward(new Float32Array(6), weight, blocks, new Float32Array(1), q4k.id, 2, 256, 2, 4), 'matmul_ggml_forward', 'bias');
    expectRangeError(() => k.matmul_ggml_backward(weight, new Float32Array(5), blocks, q4k.id, 2, 256, 2, 4), 'matmul_ggml_backward', 'dout');
    expectRangeError(() => k.matmul_ggml_backward(weight, new Float32Array(6), blocks.subarray(0, 200), q4k.id, 2, 256, 2, 4), 'matmul_ggml_backward', 'w');
  });

  test('a stride smaller than OC', () => {
    expectRangeError(() => k.matmul_ggml_forward(new Float32Array(8), weight, blocks, null, q4k.id, 1, 256, 2, 1), 'matmul_ggml_forward', 'out_stride (1) must be at least OC (2)');
    expectRangeError(() => k.matmul_ggml_backward(weight, new Float32Array(8), blocks, q4k.id, 1, 256, 2, 1), 'matmul_ggml_backward', 'dout_stride (1) must be at least OC (2)');
  });
});

describe('lib/gguf/ggml_types', () => {
  test('ids, block sizes and bytes are ggml-common.h / ggml.h values', () => {
    expect(GGML_BLOCK_TYPE_LIST.map((t) => [t.name, t.id, t.block, t.bytes])).toEqual([
      ['Q4_0', 2, 32, 18], ['Q5_0', 6, 32, 22], ['Q8_0', 8, 32, 34], ['Q4_K', 12, 256, 144], ['Q5_K', 13, 256, 176],
      ['Q6_K', 14, 256, 210],
    ]);
    expect(ggmlBlockType(12)?.name).toBe('Q4_K');
    expect(ggmlBlockType('Q6_K')?.id).toBe(14);
    expect(ggmlBlockType(13)?.name).toBe('Q5_K');
    expect(ggmlBlockType(1)).toBeUndefined();
    expect(ggmlBlockBytes(ggmlBlockType('Q4_K')!, 3, 512)).toBe(3 * 2 * 144);
    expect(() => ggmlBlockBytes(ggmlBlockType('Q4_K')!, 1, 300)).toThrow(/multiple of 256 values but received 300/);
  });
});
