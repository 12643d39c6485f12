/**
 * The GGML block formats on CUDA (native/cuda/ggml_quant.cu) against the CPU backend, for every type
 * (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K):
 *   node --test dist/test/gpu/        (on a GPU machine; skips with the reason elsewhere)
 *   - quantize_ggml and dequantize_ggml on the device give the CPU's bytes and floats bit for bit (the
 *     CPU's equal ggml's own, test/kernels/ggml_blocks.test.ts); weights include denormals, which the
 *     device keeps (ggml_quant.cu is compiled without flush-to-zero);
 *   - matmul_ggml_forward / backward for N in {1, 3, 64, 200} (N <= 8 the direct decoding kernel,
 *     larger N dequantized slabs and the fp32 GEMM), writing a column slice of a wider output and
 *     reading a slice of a wider gradient, within 1e-5 of a float64 sum of the dequantized weights
 *     (float32 accumulation of 512 terms: ~1e-6 expected); columns outside the slice are untouched;
 *   - with one-hot input rows the direct kernel returns the dequantized weights exactly;
 *   - inputs at 16-byte aligned views (N = 1: vector loads) and misaligned ones (scalar loads);
 *   - a Llama-sized weight (C = 4096, OC = 2000: two slabs) against the CPU's matmul, 1e-5.
 * GPTUNE_GPU_TEST_DEVICE=cpu runs the same tests on the CPU backend: a check of this file's own logic.
 */
import * as assert from 'node:assert';
import * as nodeTest from 'node:test';
import { GGML_BLOCK_TYPE_LIST } from '../../lib/gguf/ggml_types';
import { addon, type ArenaHandle, type TensorRef } from '../../lib/native';
import { floatSlots, readElements, writeElements } from '../../lib/tensor';
import { seededRandom } from '../helpers';
import { device, skip, selfCheck, underJest } from './target';

const K = addon.kernels;
const TYPES = GGML_BLOCK_TYPE_LIST;

const random = seededRandom(20261207);
function randomArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 2 * random() - 1;
  return a;
}
/**
 * rows x C weights: rows of magnitudes 10^-3..10^1 as trained layers have, an all-zero block, a block
 * whose one non-zero value is negative, a constant block with one outlier, and a block of denormals (a
 * device that flushed them to zero would quantize that block differently).
 */
function weights(rows: number, C: number): Float32Array {
  const w = randomArray(rows * C);
  for (let r = 0; r < rows; r++) {
    const scale = 10 ** (-3 + 4 * random());
    for (let c = 0; c < C; c++) w[r * C + c] = Math.fround(w[r * C + c] * scale);
  }
  w.fill(0, 0, 256);
  if (rows > 1) w.fill(0, C, C + 256), (w[C + 37] = -0.75);
  if (rows > 2) w.fill(0.3125, 2 * C, 2 * C + 256), (w[2 * C + 12] = 40);
  if (rows > 3) for (let c = 0; c < 32; c++) w[3 * C + c] = (c % 2 ? -1 : 1) * 2 ** -140 * (c + 1);
  return w;
}

const allocated: ArenaHandle[] = [];
function arena(numel: number): ArenaHandle {
  const a = new addon.Arena(device, Math.max(1, numel));
  allocated.push(a);
  a.fill(NaN);
  return a;
}
/** floats on the device at a view offset of `offset` slots (NaN before and after); 3: not 16-byte aligned. */
function floatsOnDevice(host: Float32Array, offset = 3): TensorRef {
  const a = arena(host.length + offset + 1);
  a.write(offset, host);
  return { arena: a, offset, numel: host.length };
}
function bytesOnDevice(host: Uint8Array): TensorRef {
  return writeElements(arena(floatSlots(host.byteLength) + 2), 1, host);
}
const read = (t: TensorRef) => t.arena.read(t.offset, t.numel);
function freeAll(): void {
  while (allocated.length) allocated.pop()!.free();
}

function sameBits(a: Uint8Array | Float32Array, b: Uint8Array | Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
/** ||got - want|| / ||want||; a NaN anywhere is infinitely wrong. */
function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0, norm = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    diff += (got[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
}
function expectClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tolerance: number): void {
  const err = relL2(got, want);
  assert.ok(err <= tolerance, `${name}: relative error ${err.toExponential(2)} exceeds ${tolerance}`);
}

if (underJest) {
  (globalThis as unknown as { test: { skip: (n: string, f: () => void) => void } }).test.skip(
    'GPU GGML block format tests: run `node --test dist/test/gpu/` on a GPU machine (skipped under jest)', () => undefined);
} else {
  if (skip) console.log(`# GPU GGML block format tests skipped: ${skip}`);
  if (selfCheck) console.log('# GPU GGML block format tests on the CPU backend (GPTUNE_GPU_TEST_DEVICE=cpu): a self-check of the test logic');

  nodeTest.describe(`GGML block formats on ${device}`, { skip }, () => {
    nodeTest.afterEach(freeAll);

    for (const t of TYPES) {
      const C = t.block === 32 ? 288 : 512, OC = 37;
      const rowBytes = (C / t.block) * t.bytes;

      nodeTest.it(`${t.name}: quantize_ggml and dequantize_ggml give the CPU's bytes and floats bit for bit`, () => {
        const rows = 9, w = weights(rows, C);
        const blocks = new Uint8Array(rows * rowBytes), deq = new Float32Array(rows * C);
        K.quantize_ggml(blocks, w, t.id, rows, C);
        K.dequantize_ggml(deq, blocks, t.id, rows, C);
        const gBlocks = bytesOnDevice(new Uint8Array(blocks.length).fill(0x55)), gDeq = floatsOnDevice(new Float32Array(rows * C));
        K.quantize_ggml(gBlocks, floatsOnDevice(w), t.id, rows, C);
        assert.ok(sameBits(readElements(gBlocks, Uint8Array, blocks.length), blocks), `quantize_ggml ${t.name}: device bytes differ from the CPU's`);
        K.dequantize_ggml(gDeq, bytesOnDevice(blocks), t.id, rows, C);
        assert.ok(sameBits(read(gDeq), deq), `dequantize_ggml ${t.name}: device floats differ from the CPU's`);
      });

      nodeTest.it(`${t.name}: matmuls for N = 1, 3, 64, 200 on column slices match a float64 sum of the dequantized weights`, () => {
        const blocks = new Uint8Array(OC * rowBytes), deq = new Float32Array(OC * C);
        K.quantize_ggml(blocks, weights(OC, C), t.id, OC, C);
        K.dequantize_ggml(deq, blocks, t.id, OC, C);
        const gBlocks = bytesOnDevice(blocks), bias = randomArray(OC), gBias = floatsOnDevice(bias);
        const outStride = OC + 5, doutStride = OC + 3;
        for (const N of [1, 3, 64, 200]) {
          const inp = randomArray(N * C), gInp = floatsOnDevice(inp, N === 1 ? 4 : 3);  // aligned and not
          for (const withBias of [true, false]) {
            const out0 = randomArray(N * outStride), gOut = floatsOnDevice(out0);
            K.matmul_ggml_forward(gOut, gInp, gBlocks, withBias ? gBias : null, t.id, N, C, OC, outStride);
            const got = read(gOut), slice = new Float64Array(N * OC), want = new Float64Array(N * OC);
            for (let n = 0; n < N; n++)
              for (let o = 0; o < OC; o++) {
                let s = withBias ? bias[o] : 0;
                for (let c = 0; c < C; c++) s += inp[n * C + c] * deq[o * C + c];
                want[n * OC + o] = s;
                slice[n * OC + o] = got[n * outStride + o];
              }
            expectClose(`matmul_ggml_forward ${t.name} N=${N}${withBias ? '' : ' no bias'}`, slice, want, 1e-5);
            for (let n = 0; n < N; n++)
              for (let o = OC; o < outStride; o++)
                assert.ok(Object.is(got[n * outStride + o], out0[n * outStride + o]), `matmul_ggml_forward ${t.name} N=${N} wrote column ${o} >= OC`);
          }
          const dout = new Float32Array(N * doutStride).fill(NaN);  // NaN outside the slice: reading it poisons dinp
          for (let n = 0; n < N; n++) dout.set(randomArray(OC), n * doutStride);
          const dinp0 = randomArray(N * C), gDinp = floatsOnDevice(dinp0);
          K.matmul_ggml_backward(gDinp, floatsOnDevice(dout), gBlocks, t.id, N, C, OC, doutStride);
          const got = read(gDinp), increment = new Float64Array(N * C), want = new Float64Array(N * C);
          for (let n = 0; n < N; n++)
            for (let c = 0; c < C; c++) {
              let s = 0;
              for (let o = 0; o < OC; o++) s += dout[n * doutStride + o] * deq[o * C + c];
              want[n * C + c] = s;
              increment[n * C + c] = got[n * C + c] - dinp0[n * C + c];
            }
          expectClose(`matmul_ggml_backward ${t.name} N=${N} dinp increment`, increment, want, 1e-5);
        }
      });

      nodeTest.it(`${t.name}: the decoding kernel with one-hot input rows returns the dequantized weights exactly`, () => {
        const blocks = new Uint8Array(OC * rowBytes), deq = new Float32Array(OC * C);
        K.quantize_ggml(blocks, weights(OC, C), t.id, OC, C);
        K.dequantize_ggml(deq, blocks, t.id, OC, C);
        const gBlocks = bytesOnDevice(blocks), N = 8, gOut = floatsOnDevice(new Float32Array(N * OC));
        for (let c0 = 0; c0 < C; c0 += N) {
          const onehot = new Float32Array(N * C);
          for (let n = 0; n < N; n++) onehot[n * C + c0 + n] = 1;
          K.matmul_ggml_forward(gOut, floatsOnDevice(onehot), gBlocks, null, t.id, N, C, OC, OC);
          const got = read(gOut);
          for (let n = 0; n < N; n++)
            for (let o = 0; o < OC; o++)
              assert.ok(got[n * OC + o] === deq[o * C + c0 + n], `${t.name} W[${o}][${c0 + n}]: ${got[n * OC + o]} vs ${deq[o * C + c0 + n]}`);
        }
      });
    }

    nodeTest.it('Q4_K and Q6_K at C = 4096, OC = 2000 (two dequantized slabs) match the CPU matmuls', () => {
      const C = 4096, OC = 2000;
      for (const t of TYPES.filter((x) => x.block === 256)) {
        const blocks = new Uint8Array((OC * C) / t.block * t.bytes);
        K.quantize_ggml(blocks, weights(OC, C), t.id, OC, C);
        const gBlocks = bytesOnDevice(blocks);
        for (const N of [1, 40]) {
          const inp = randomArray(N * C), want = new Float32Array(N * OC), gOut = floatsOnDevice(new Float32Array(N * OC));
          K.matmul_ggml_forward(want, inp, blocks, null, t.id, N, C, OC, OC);
          K.matmul_ggml_forward(gOut, floatsOnDevice(inp), gBlocks, null, t.id, N, C, OC, OC);
          expectClose(`matmul_ggml_forward ${t.name} N=${N} C=${C} OC=${OC}`, read(gOut), want, 1e-5);
          const dout = randomArray(N * OC), want2 = new Float32Array(N * C), gDinp = floatsOnDevice(new Float32Array(N * C));
          K.matmul_ggml_backward(want2, dout, blocks, t.id, N, C, OC, OC);
          K.matmul_ggml_backward(gDinp, floatsOnDevice(dout), gBlocks, t.id, N, C, OC, OC);
          expectClose(`matmul_ggml_backward ${t.name} N=${N} C=${C} OC=${OC}`, read(gDinp), want2, 1e-5);
        }
      }
    });
  });
}
