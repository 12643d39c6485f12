/**
 * rope_forward / rope_backward (in place on the q and k heads of packed qkv) against the float64
 * reference in test/reference/rope.ts, written in Hugging Face's rotate_half form; the backward is
 * checked against central differences of that reference's forward.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { centralDifferences, dot } from '../reference/finite_difference';
import { SeededRandom } from '../reference/random';
import { ropeForward, ropeTables } from '../reference/rope';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

// Each output is a*cos -/+ b*sin of float32 inputs |a|, |b| < 2 and float32 table entries: one fused
// multiply-add and one product, ~2 ulp of 2 (2.4e-7); 1e-6 leaves 4x headroom.
const TOL = { rel: 0, abs: 1e-6 };

interface Shape { B: number; T: number; NH: number; NKV: number; HS: number; maxPos: number }

/** Float32 tables (as the model passes them) for theta = 10000. */
function tables(maxPos: number, HS: number) {
  const { cos, sin } = ropeTables(maxPos, HS, 10000);
  return { cos: Float32Array.from(cos), sin: Float32Array.from(sin) };
}

/** Packed-example positions: runs restarting at 0, every one below maxPos. */
function packedPositions(B: number, T: number, maxPos: number, seed: number): Int32Array {
  const rng = new SeededRandom(seed);
  const pos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let p = Math.floor(rng.next() * Math.min(maxPos, 5));
    for (let t = 0; t < T; t++) {
      if (p >= maxPos || rng.next() < 0.1) p = 0;
      pos[b * T + t] = p++;
    }
  }
  return pos;
}

const shapes: Shape[] = [
  { B: 1, T: 1, NH: 1, NKV: 1, HS: 2, maxPos: 1 },
  { B: 2, T: 5, NH: 4, NKV: 1, HS: 6, maxPos: 9 },
  { B: 3, T: 17, NH: 4, NKV: 2, HS: 10, maxPos: 40 },
  { B: 2, T: 33, NH: 9, NKV: 3, HS: 64, maxPos: 100 }, // SmolLM2's heads
  { B: 1, T: 7, NH: 3, NKV: 3, HS: 34, maxPos: 4096 }, // a half of 17: a ragged vector tail
];
const label = ({ B, T, NH, NKV, HS, maxPos }: Shape) => `B=${B} T=${T} NH=${NH} NKV=${NKV} HS=${HS} maxPos=${maxPos}`;

test('the reference rotates (1, 0) at position p to (cos, sin) of the angle p * theta^(-2i/HS)', () => {
  // HS = 4, one q head and one k head, no v content worth checking beyond "untouched".
  const { cos, sin } = ropeTables(3, 4, 10000);
  const qkv = Float64Array.from([1, 2, 0, 0, 0, 3, 0, 1, 9, 9, 9, 9]);
  const out = ropeForward(qkv, cos, sin, null, 1, 1, 1, 1, 4, 2);
  // pair 0 of the q head: (x0, x2) = (1, 0) at angle 2; pair 1: (x1, x3) = (2, 0) at angle 2 / 100.
  expect(out[0]).toBeCloseTo(Math.cos(2), 15);
  expect(out[2]).toBeCloseTo(Math.sin(2), 15);
  expect(out[1]).toBeCloseTo(2 * Math.cos(0.02), 15);
  expect(out[3]).toBeCloseTo(2 * Math.sin(0.02), 15);
  // k head: (x0, x2) = (0, 0); (x1, x3) = (3, 1): (3 cos - sin, cos + 3 sin) at 0.02
  expect(out[5]).toBeCloseTo(3 * Math.cos(0.02) - Math.sin(0.02), 15);
  expect(out[7]).toBeCloseTo(Math.cos(0.02) + 3 * Math.sin(0.02), 15);
  expect(Array.from(out.subarray(8))).toEqual([9, 9, 9, 9]);
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  test.each(shapes.map((s) => [label(s), s] as const))('rope_forward matches the reference (positions array and pos_offset), %s', (_, shape) => {
    const { B, T, NH, NKV, HS, maxPos } = shape;
    const W = (NH + 2 * NKV) * HS;
    const { cos, sin } = tables(maxPos, HS);
    const qkv = new SeededRandom(B * 100 + T + HS).floats(B * T * W, -2, 2);
    const positions = packedPositions(B, T, maxPos, T);
    const posOffset = maxPos - T >= 0 ? maxPos - T : 0; // the last positions the table allows
    for (const [pos, offset] of [[positions, 0], [null, posOffset]] as const) {
      if (pos === null && offset + T > maxPos) continue;
      const got = Float32Array.from(qkv);
      kernels.rope_forward(got, cos, sin, pos, B, T, NH, NKV, HS, maxPos, offset);
      const want = ropeForward(qkv, cos, sin, pos, B, T, NH, NKV, HS, offset);
      expectClose(pos ? 'with positions' : `at pos_offset ${offset}`, got, want, TOL);
      // v heads untouched, bit for bit
      for (let r = 0; r < B * T; r++)
        expect(got.subarray(r * W + (NH + NKV) * HS, (r + 1) * W)).toEqual(qkv.subarray(r * W + (NH + NKV) * HS, (r + 1) * W));
    }
  });

  test.each(shapes.map((s) => [label(s), s] as const))('rope_backward is the gradient of the reference forward, %s', (_, shape) => {
    const { B, T, NH, NKV, HS, maxPos } = shape;
    const W = (NH + 2 * NKV) * HS;
    const { cos, sin } = tables(maxPos, HS);
    const rng = new SeededRandom(B * 100 + T + HS + 1);
    const qkv = Float64Array.from(rng.floats(B * T * W, -2, 2));
    const dout = rng.floats(B * T * W);
    const positions = packedPositions(B, T, maxPos, T + 1);
    // The forward is linear in qkv, so central differences are exact up to rounding (~1e-10). Each
    // difference costs a whole forward: 300 indices spread over every row, head and channel suffice.
    const stride = Math.max(1, Math.floor(qkv.length / 300)) | 1;
    const indices = [...qkv.keys()].filter((i) => i % stride === 0);
    const fd = centralDifferences((x) => dot(ropeForward(x, cos, sin, positions, B, T, NH, NKV, HS, 0), dout), qkv, indices);
    const got = Float32Array.from(dout);
    kernels.rope_backward(got, cos, sin, positions, B, T, NH, NKV, HS, maxPos, 0);
    expectClose('dqkv', indices.map((i) => got[i]), [...fd.values()], TOL);
  });
});

test('rope_backward undoes rope_forward (the rotation is orthogonal)', () => {
  const B = 2, T = 50, NH = 9, NKV = 3, HS = 64, maxPos = 256, W = (NH + 2 * NKV) * HS;
  const { cos, sin } = tables(maxPos, HS);
  const qkv = new SeededRandom(3).floats(B * T * W, -2, 2);
  const x = Float32Array.from(qkv);
  kernels.rope_forward(x, cos, sin, null, B, T, NH, NKV, HS, maxPos, 200);
  kernels.rope_backward(x, cos, sin, null, B, T, NH, NKV, HS, maxPos, 200);
  // two rotations' roundings, each ~2 ulp of 2; cos^2 + sin^2 of the float32 tables is 1 within 1 ulp
  expectClose('round trip', x, qkv, TOL);
});
