/**
 * attention_forward / attention_backward / attention_cached_forward (flash-style CPU kernels) against
 * the float64 reference in test/reference/attention_ref.ts, whose gradient is itself checked by
 * central differences. Sizes are chosen around the kernels' 64-row query and key tiles (T = 67 and
 * 130 span two and three tiles with ragged ends) and head sizes that are not multiples of the
 * 16-float vector (8, 16, 17, 64).
 */
import { addon } from '../../lib/native';
import { attentionBackward, attentionForward } from '../reference/attention_ref';
import { expectClose } from '../reference/compare';
import { centralDifferences, dot } from '../reference/finite_difference';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

// Tolerances, for float32 rounding u = 6e-8. Scores are float32 sums of hs products of O(1) values
// and the kernel's exp is a polynomial good to ~2 ulp, so probabilities are off by ~1e-6 relative
// at worst; out is a convex combination of |v| <= 2 values. The largest errors seen over these
// shapes (and B=1 T=200 C=768 NH=12) are 1.3e-6 on out, 1.4e-6 on lse (|lse| <= 6.6) and 1.7e-6 on
// dqkv (|dqkv| <= 2.5); the tolerances leave 5-8x headroom over them for other seeds and sizes.
const OUT_TOL = { rel: 0, abs: 1e-5 };
const LSE_TOL = { rel: 1e-6, abs: 2e-6 };
const GRAD_TOL = { rel: 0, abs: 1e-5 };
// The same kernel on the same rows computed in another tiling (a segment run on its own): only the
// order of float32 additions differs.
const RETILED_TOL = { rel: 1e-5, abs: 2e-6 };

interface Shape { B: number; T: number; C: number; NH: number }
const label = ({ B, T, C, NH }: Shape) => `B=${B} T=${T} C=${C} NH=${NH} hs=${C / NH}`;

/** qkv in [-2, 2): scores q.k/sqrt(hs) then have a spread of ~1.3, so softmax rows are far from uniform. */
function makeInputs({ B, T, C }: Shape, seed: number) {
  const rng = new SeededRandom(seed);
  return { qkv: rng.floats(B * T * 3 * C, -2, 2), dout: rng.floats(B * T * C, -1, 1) };
}

/**
 * Segment ids (B,T) in runs of 1..min(40, T/2) positions, cycling 0,1,2,0,... so equal ids also
 * occur non-contiguously, and every row has at least two runs.
 */
function makeSegments(B: number, T: number, seed: number): Int32Array {
  const rng = new SeededRandom(seed);
  const longest = Math.max(1, Math.min(40, Math.floor(T / 2)));
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let id = 0, left = 1 + Math.floor(rng.next() * longest);
    for (let t = 0; t < T; t++) {
      if (left-- === 0) {
        id = (id + 1) % 3;
        left = Math.floor(rng.next() * longest);
      }
      ids[b * T + t] = id;
    }
  }
  return ids;
}

function runForward(qkv: Float32Array, segmentIds: Int32Array | null, { B, T, C, NH }: Shape) {
  const out = new Float32Array(B * T * C).fill(NaN), lse = new Float32Array(B * NH * T).fill(NaN);
  kernels.attention_forward(out, lse, qkv, segmentIds, B, T, C, NH);
  return { out, lse };
}

/** The kernel's gradient accumulated onto start (a copy is returned; start is untouched). */
function runBackward(start: Float32Array, dout: Float32Array, qkv: Float32Array, segmentIds: Int32Array | null, shape: Shape) {
  const { B, T, C, NH } = shape;
  const { out, lse } = runForward(qkv, segmentIds, shape);
  const dqkv = Float32Array.from(start);
  kernels.attention_backward(dqkv, dout, qkv, out, lse, segmentIds, B, T, C, NH);
  return dqkv;
}

describe('float64 reference', () => {
  test.each([false, true])('its gradient matches central differences of its forward (segments: %s)', (segmented) => {
    const shape = { B: 2, T: 6, C: 6, NH: 2 };
    const { B, T, C, NH } = shape;
    const { qkv, dout } = makeInputs(shape, 5);
    const segmentIds = segmented ? Int32Array.from([0, 0, 1, 1, 1, 0, 3, 4, 4, 3, 4, 4]) : null;
    const x = Float64Array.from(qkv);
    const grads = attentionBackward(dout, x, segmentIds, B, T, C, NH);
    const fd = centralDifferences((v) => dot(attentionForward(v, segmentIds, B, T, C, NH).out, dout), x);
    // h = 1e-5 on O(1) functions: truncation and rounding are both ~1e-10.
    expectClose('dqkv vs central differences', grads, [...fd.values()], { rel: 1e-6, abs: 1e-8 });
  });

  test('lse is the log-sum-exp of the scaled scores and out the softmax-weighted values (T=2 by hand)', () => {
    // One head, hs = 1: q1 = 2, k0 = 1, k1 = 3, v0 = 5, v1 = -1; row 1 scores are 2 and 6.
    const qkv = Float64Array.from([0, 1, 5, 2, 3, -1]);
    const { out, lse } = attentionForward(qkv, null, 1, 2, 1, 1);
    const p0 = Math.exp(2) / (Math.exp(2) + Math.exp(6));
    expect(out[0]).toBe(5);
    expect(lse[0]).toBe(0); // one key: score 0 * 1, logsumexp = 0
    expect(out[1]).toBeCloseTo(p0 * 5 + (1 - p0) * -1, 14);
    expect(lse[1]).toBeCloseTo(Math.log(Math.exp(2) + Math.exp(6)), 14);
  });
});

const shapes: Shape[] = [
  { B: 1, T: 1, C: 8, NH: 1 },
  { B: 2, T: 5, C: 48, NH: 3 },
  { B: 3, T: 67, C: 68, NH: 4 },
  { B: 1, T: 130, C: 24, NH: 3 },
  { B: 2, T: 130, C: 51, NH: 3 },
  { B: 1, T: 67, C: 64, NH: 1 },
];

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  test.each(shapes.map((s) => [label(s), s] as const))('forward matches the reference, %s', (_, shape) => {
    const { B, T, C, NH } = shape;
    const { qkv } = makeInputs(shape, B * 1000 + T + C);
    const got = runForward(qkv, null, shape);
    const want = attentionForward(qkv, null, B, T, C, NH);
    expectClose('out', got.out, want.out, OUT_TOL);
    expectClose('lse', got.lse, want.lse, LSE_TOL);
  });

  test.each(shapes.map((s) => [label(s), s] as const))('backward accumulates the reference gradient, %s', (_, shape) => {
    const { B, T, C, NH } = shape;
    const { qkv, dout } = makeInputs(shape, B * 1000 + T + C + 1);
    // dqkv starts non-zero: the kernel must add to it.
    const start = new SeededRandom(T).floats(B * T * 3 * C);
    const got = runBackward(start, dout, qkv, null, shape);
    const want = attentionBackward(dout, qkv, null, B, T, C, NH).map((g, i) => g + start[i]);
    expectClose('dqkv', got, want, GRAD_TOL);
  });

  test.each(shapes.filter((s) => s.T > 1).map((s) => [label(s), s] as const))(
    'segment ids restrict attention to equal ids (forward and backward), %s',
    (_, shape) => {
      const { B, T, C, NH } = shape;
      const { qkv, dout } = makeInputs(shape, B * 1000 + T + C + 2);
      const segmentIds = makeSegments(B, T, T + C);
      const got = runForward(qkv, segmentIds, shape);
      const want = attentionForward(qkv, segmentIds, B, T, C, NH);
      expectClose('out', got.out, want.out, OUT_TOL);
      expectClose('lse', got.lse, want.lse, LSE_TOL);
      const dqkv = runBackward(new Float32Array(B * T * 3 * C), dout, qkv, segmentIds, shape);
      expectClose('dqkv', dqkv, attentionBackward(dout, qkv, segmentIds, B, T, C, NH), GRAD_TOL);
      // The mask must change the result for this test to mean anything.
      const unmasked = runForward(qkv, null, shape).out;
      let change = 0;
      for (let i = 0; i < unmasked.length; i++) change = Math.max(change, Math.abs(got.out[i] - unmasked[i]));
      expect(change).toBeGreaterThan(1e-2);
    },
  );
});

test('packed examples give the outputs and gradients of each example run on its own', () => {
  // Two rows of T = 150 packed with examples of lengths crossing the 64-row tiles at odd places.
  const C = 51, NH = 3, T = 150;
  const lengths = [[20, 1, 45, 84], [64, 64, 22]];
  const B = lengths.length;
  const shape = { B, T, C, NH };
  const { qkv, dout } = makeInputs(shape, 42);
  const segmentIds = new Int32Array(B * T);
  lengths.forEach((row, b) => {
    let t = 0;
    row.forEach((len, id) => segmentIds.fill(id, b * T + t, b * T + (t += len)));
  });
  const packed = runForward(qkv, segmentIds, shape);
  const packedGrad = runBackward(new Float32Array(B * T * 3 * C), dout, qkv, segmentIds, shape);
  lengths.forEach((row, b) => {
    let t0 = 0;
    for (const len of row) {
      const one = { B: 1, T: len, C, NH };
      const rows = (x: Float32Array, width: number) => x.slice((b * T + t0) * width, (b * T + t0 + len) * width);
      const alone = runForward(rows(qkv, 3 * C), null, one);
      const aloneGrad = runBackward(new Float32Array(len * 3 * C), rows(dout, C), rows(qkv, 3 * C), null, one);
      const what = `row ${b}, example at ${t0} of length ${len}`;
      expectClose(`${what}: out`, rows(packed.out, C), alone.out, RETILED_TOL);
      expectClose(`${what}: dqkv`, rows(packedGrad, 3 * C), aloneGrad, RETILED_TOL);
      for (let h = 0; h < NH; h++) {
        const packedLse = packed.lse.slice((b * NH + h) * T + t0, (b * NH + h) * T + t0 + len);
        expectClose(`${what}: lse of head ${h}`, packedLse, alone.lse.slice(h * len, (h + 1) * len), RETILED_TOL);
      }
      t0 += len;
    }
  });
});

describe('attention_cached_forward', () => {
  // chunks: how many new positions each call feeds (cycled), e.g. a prompt then single tokens.
  test.each([
    ['3 then single tokens', { B: 2, T: 70, C: 51, NH: 3 }, [3, 1]],
    ['a 67-token prompt (two query tiles) then single tokens', { B: 1, T: 133, C: 64, NH: 2 }, [67, 1]],
    ['mixed chunks crossing tile edges', { B: 3, T: 140, C: 24, NH: 3 }, [5, 1, 1, 64, 2]],
    ['the whole sequence at once', { B: 2, T: 9, C: 8, NH: 1 }, [9]],
  ] as const)('feeding %s reproduces the full forward', (_, shape, chunks) => {
    const { B, T, C, NH } = shape;
    const maxT = T + 5; // cache rows past the sequence must stay untouched
    const { qkv } = makeInputs(shape, T * 7 + C);
    const want = attentionForward(qkv, null, B, T, C, NH).out;
    const rng = new SeededRandom(3);
    const kcache = rng.floats(B * maxT * C, 10, 11), vcache = rng.floats(B * maxT * C, 10, 11);
    const kcacheStart = Float32Array.from(kcache), vcacheStart = Float32Array.from(vcache);
    let past = 0;
    for (let call = 0; past < T; call++) {
      const Tq = Math.min(chunks[call % chunks.length], T - past);
      const chunk = new Float32Array(B * Tq * 3 * C);
      for (let b = 0; b < B; b++) chunk.set(qkv.subarray((b * T + past) * 3 * C, (b * T + past + Tq) * 3 * C), b * Tq * 3 * C);
      const out = new Float32Array(B * Tq * C).fill(NaN);
      kernels.attention_cached_forward(out, kcache, vcache, chunk, B, Tq, past, maxT, C, NH);
      const wantChunk = new Float64Array(B * Tq * C);
      for (let b = 0; b < B; b++) wantChunk.set(want.subarray((b * T + past) * C, (b * T + past + Tq) * C), b * Tq * C);
      expectClose(`out of positions [${past}, ${past + Tq})`, out, wantChunk, OUT_TOL);
      past += Tq;
    }
    for (let b = 0; b < B; b++)
      for (let t = 0; t < maxT; t++) {
        const row = (b * maxT + t) * C, src = (b * T + t) * 3 * C;
        const wantK = t < T ? qkv.subarray(src + C, src + 2 * C) : kcacheStart.subarray(row, row + C);
        const wantV = t < T ? qkv.subarray(src + 2 * C, src + 3 * C) : vcacheStart.subarray(row, row + C);
        expect(kcache.subarray(row, row + C)).toEqual(wantK);
        expect(vcache.subarray(row, row + C)).toEqual(wantV);
      }
  });
});

test('1 and 2 threads give bit-identical results (each head and tile is computed by one thread)', () => {
  const shape = { B: 2, T: 130, C: 48, NH: 3 };
  const { B, T, C, NH } = shape;
  const { qkv, dout } = makeInputs(shape, 77);
  const segmentIds = makeSegments(B, T, 78);
  const results = [1, 2].map((threads) => {
    addon.setNumThreads(threads);
    const plain = runForward(qkv, null, shape);
    const masked = runForward(qkv, segmentIds, shape);
    const grad = runBackward(new Float32Array(B * T * 3 * C), dout, qkv, segmentIds, shape);
    const kcache = new Float32Array(B * T * C), vcache = new Float32Array(B * T * C);
    const cached = new Float32Array(B * T * C);
    kernels.attention_cached_forward(cached, kcache, vcache, qkv, B, T, 0, T, C, NH);
    return { plain, masked, grad, cached };
  });
  expect(results[1]).toEqual(results[0]);
});
