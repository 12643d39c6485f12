/**
 * attention_forward / attention_backward / attention_cached_forward (flash-style CPU kernels with
 * grouped-query heads) against the float64 reference in test/reference/attention.ts, whose
 * gradient is itself checked by central differences. Sizes are chosen around the kernels' 64-row
 * query and key tiles (T = 67 and 130 span two and three tiles with ragged ends), head sizes that
 * are not multiples of the 16-float vector (6, 8, 10, 17, 64), and query/kv head ratios 1, 2, 3, 4
 * with NKV = 1 and NKV = NH among them.
 */
import { addon } from '../../lib/native';
import { AttentionDropout, attentionBackward, attentionForward, Heads } from '../reference/attention';
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

interface Shape extends Heads { B: number; T: number }
const label = ({ B, T, NH, NKV, HS }: Shape) => `B=${B} T=${T} NH=${NH} NKV=${NKV} HS=${HS}`;
/** Floats per qkv row and per out row. */
const qkvWidth = ({ NH, NKV, HS }: Heads) => (NH + 2 * NKV) * HS;
const outWidth = ({ NH, HS }: Heads) => NH * HS;

/** qkv in [-2, 2): scores q.k/sqrt(hs) then have a spread of ~1.3, so softmax rows are far from uniform. */
function makeInputs(shape: Shape, seed: number) {
  const rng = new SeededRandom(seed);
  const { B, T } = shape;
  return { qkv: rng.floats(B * T * qkvWidth(shape), -2, 2), dout: rng.floats(B * T * outWidth(shape), -1, 1) };
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

const NO_DROPOUT: AttentionDropout = { p: 0, seed: 0 };

function runForward(qkv: Float32Array, segmentIds: Int32Array | null, shape: Shape, drop = NO_DROPOUT) {
  const { B, T, NH, NKV, HS } = shape;
  const out = new Float32Array(B * T * outWidth(shape)).fill(NaN), lse = new Float32Array(B * NH * T).fill(NaN);
  kernels.attention_forward(out, lse, qkv, segmentIds, B, T, NH, NKV, HS, drop.p, drop.seed);
  return { out, lse };
}

/** The kernel's gradient accumulated onto start (a copy is returned; start is untouched). */
function runBackward(start: Float32Array, dout: Float32Array, qkv: Float32Array, segmentIds: Int32Array | null, shape: Shape, drop = NO_DROPOUT) {
  const { B, T, NH, NKV, HS } = shape;
  const { out, lse } = runForward(qkv, segmentIds, shape, drop);
  const dqkv = Float32Array.from(start);
  kernels.attention_backward(dqkv, dout, qkv, out, lse, segmentIds, B, T, NH, NKV, HS, drop.p, drop.seed);
  return dqkv;
}

describe('float64 reference', () => {
  // dropout p > 0: at the fixed mask of seed 17 (the function is then smooth in qkv).
  test.each([
    [false, 0, { B: 2, T: 6, NH: 2, NKV: 2, HS: 3 }],
    [true, 0, { B: 2, T: 6, NH: 2, NKV: 2, HS: 3 }],
    [true, 0, { B: 2, T: 6, NH: 4, NKV: 2, HS: 2 }],
    [false, 0, { B: 1, T: 5, NH: 3, NKV: 1, HS: 2 }],
    [false, 0.3, { B: 2, T: 6, NH: 2, NKV: 2, HS: 3 }],
    [true, 0.3, { B: 2, T: 6, NH: 4, NKV: 2, HS: 2 }],
  ] as const)('its gradient matches central differences of its forward (segments: %s, dropout %p, %o)', (segmented, p, shape) => {
    const { B, T } = shape;
    const { qkv, dout } = makeInputs(shape, 5);
    const segmentIds = segmented ? Int32Array.from([0, 0, 1, 1, 1, 0, 3, 4, 4, 3, 4, 4]) : null;
    const drop = { p, seed: 17 };
    const x = Float64Array.from(qkv);
    const grads = attentionBackward(dout, x, segmentIds, B, T, shape, drop);
    const fd = centralDifferences((v) => dot(attentionForward(v, segmentIds, B, T, shape, drop).out, dout), x);
    // h = 1e-5 on O(1) functions: truncation and rounding are both ~1e-10.
    expectClose('dqkv vs central differences', grads, [...fd.values()], { rel: 1e-6, abs: 1e-8 });
    // With dropout the mask must matter: the same inputs without it give another gradient.
    if (p > 0) {
      const plain = attentionBackward(dout, x, segmentIds, B, T, shape);
      expect(Math.max(...plain.map((g, i) => Math.abs(g - grads[i])))).toBeGreaterThan(1e-2);
    }
  });

  test('lse is the log-sum-exp of the scaled scores and out the softmax-weighted values (T=2 by hand)', () => {
    // One head, hs = 1: q1 = 2, k0 = 1, k1 = 3, v0 = 5, v1 = -1; row 1 scores are 2 and 6.
    const qkv = Float64Array.from([0, 1, 5, 2, 3, -1]);
    const { out, lse } = attentionForward(qkv, null, 1, 2, { NH: 1, NKV: 1, HS: 1 });
    const p0 = Math.exp(2) / (Math.exp(2) + Math.exp(6));
    expect(out[0]).toBe(5);
    expect(lse[0]).toBe(0); // one key: score 0 * 1, logsumexp = 0
    expect(out[1]).toBeCloseTo(p0 * 5 + (1 - p0) * -1, 14);
    expect(lse[1]).toBeCloseTo(Math.log(Math.exp(2) + Math.exp(6)), 14);
  });
});

const shapes: Shape[] = [
  // multi-head (GPT-2: NKV = NH)
  { B: 1, T: 1, NH: 1, NKV: 1, HS: 8 },
  { B: 2, T: 5, NH: 3, NKV: 3, HS: 16 },
  { B: 3, T: 67, NH: 4, NKV: 4, HS: 17 },
  { B: 1, T: 130, NH: 3, NKV: 3, HS: 8 },
  { B: 2, T: 130, NH: 3, NKV: 3, HS: 17 },
  { B: 1, T: 67, NH: 1, NKV: 1, HS: 64 },
  // grouped-query: ratios 2, 3, 4, with one kv head (multi-query) among them
  { B: 1, T: 1, NH: 2, NKV: 1, HS: 10 },
  { B: 2, T: 5, NH: 4, NKV: 1, HS: 6 },
  { B: 3, T: 67, NH: 4, NKV: 2, HS: 10 },
  { B: 1, T: 130, NH: 6, NKV: 2, HS: 17 },
  { B: 2, T: 70, NH: 9, NKV: 3, HS: 64 },
];

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  test.each(shapes.map((s) => [label(s), s] as const))('forward matches the reference, %s', (_, shape) => {
    const { B, T, NH, NKV, HS } = shape;
    const { qkv } = makeInputs(shape, B * 1000 + T + NH * 10 + NKV + HS);
    const got = runForward(qkv, null, shape);
    const want = attentionForward(qkv, null, B, T, shape);
    expectClose('out', got.out, want.out, OUT_TOL);
    expectClose('lse', got.lse, want.lse, LSE_TOL);
  });

  test.each(shapes.map((s) => [label(s), s] as const))('backward accumulates the reference gradient, %s', (_, shape) => {
    const { B, T, NH, NKV, HS } = shape;
    const { qkv, dout } = makeInputs(shape, B * 1000 + T + NH * 10 + NKV + HS + 1);
    // dqkv starts non-zero: the kernel must add to it.
    const start = new SeededRandom(T).floats(B * T * qkvWidth(shape));
    const got = runBackward(start, dout, qkv, null, shape);
    const want = attentionBackward(dout, qkv, null, B, T, shape).map((g, i) => g + start[i]);
    expectClose('dqkv', got, want, GRAD_TOL);
  });

  test.each(shapes.filter((s) => s.T > 1).map((s) => [label(s), s] as const))(
    'segment ids restrict attention to equal ids (forward and backward), %s',
    (_, shape) => {
      const { B, T, NH, NKV, HS } = shape;
      const { qkv, dout } = makeInputs(shape, B * 1000 + T + NH * 10 + NKV + HS + 2);
      const segmentIds = makeSegments(B, T, T + NH + HS);
      const got = runForward(qkv, segmentIds, shape);
      const want = attentionForward(qkv, segmentIds, B, T, shape);
      expectClose('out', got.out, want.out, OUT_TOL);
      expectClose('lse', got.lse, want.lse, LSE_TOL);
      const dqkv = runBackward(new Float32Array(B * T * qkvWidth(shape)), dout, qkv, segmentIds, shape);
      expectClose('dqkv', dqkv, attentionBackward(dout, qkv, segmentIds, B, T, shape), GRAD_TOL);
      // The mask must change the result for this test to mean anything.
      const unmasked = runForward(qkv, null, shape).out;
      let change = 0;
      for (let i = 0; i < unmasked.length; i++) change = Math.max(change, Math.abs(got.out[i] - unmasked[i]));
      expect(change).toBeGreaterThan(1e-2);
    },
  );
});

/** Every SIMD level the CPU can run: the tiles' mask must not depend on it. */
const LEVELS = (['avx512', 'avx2', 'portable'] as const).filter((level) => level === 'portable' || addon.simdLevel() === level || (level === 'avx2' && addon.simdLevel() === 'avx512'));

describe.each(LEVELS)('dropout on the probabilities, SIMD level %s', (level) => {
  beforeAll(() => expect(addon.setSimdLimit(level)).toBe(level));
  afterAll(() => addon.setSimdLimit('avx512'));
  const dropShapes: Shape[] = [
    { B: 2, T: 5, NH: 3, NKV: 3, HS: 16 },
    { B: 3, T: 67, NH: 4, NKV: 2, HS: 10 },
    { B: 1, T: 130, NH: 6, NKV: 2, HS: 17 },
  ];
  test.each(dropShapes.map((s) => [label(s), s] as const))('forward and backward match the float64 reference of the same mask (p = 0.1 and 0.5, with and without segments), %s', (_, shape) => {
    const { B, T, NH, NKV, HS } = shape;
    const { qkv, dout } = makeInputs(shape, B * 1000 + T + NH * 10 + NKV + HS + 3);
    for (const [p, segmented] of [[0.1, false], [0.5, true]] as const) {
      const drop = { p, seed: 1000 + T };
      const segmentIds = segmented ? makeSegments(B, T, T + 5) : null;
      const got = runForward(qkv, segmentIds, shape, drop);
      const want = attentionForward(qkv, segmentIds, B, T, shape, drop);
      // Dropped values are scaled by up to 2: twice the tolerance of out.
      expectClose(`out p=${p}`, got.out, want.out, { rel: 0, abs: 2 * OUT_TOL.abs });
      expectClose(`lse p=${p} (the undropped softmax's)`, got.lse, want.lse, LSE_TOL);
      const start = new SeededRandom(T + 1).floats(B * T * qkvWidth(shape));
      const dqkv = runBackward(start, dout, qkv, segmentIds, shape, drop);
      const wantGrad = attentionBackward(dout, qkv, segmentIds, B, T, shape, drop).map((g, i) => g + start[i]);
      expectClose(`dqkv p=${p}`, dqkv, wantGrad, { rel: 0, abs: 2 * GRAD_TOL.abs });
      // The mask must change the result for this to mean anything.
      const plain = runForward(qkv, segmentIds, shape).out;
      expect(Math.max(...plain.map((v, i) => Math.abs(v - got.out[i])))).toBeGreaterThan(1e-2);
    }
  });

  test('p = 0 is no dropout whatever the seed; the same (p, seed) gives the same result twice', () => {
    const shape = { B: 2, T: 70, NH: 4, NKV: 2, HS: 8 };
    const { qkv } = makeInputs(shape, 4);
    expect(runForward(qkv, null, shape, { p: 0, seed: 99 })).toEqual(runForward(qkv, null, shape));
    expect(runForward(qkv, null, shape, { p: 0.2, seed: 99 })).toEqual(runForward(qkv, null, shape, { p: 0.2, seed: 99 }));
  });
});

test('dropout masks are the same at every SIMD level and thread count (bit-identical out and dqkv)', () => {
  const shape = { B: 2, T: 130, NH: 6, NKV: 2, HS: 16 };
  const { B, T } = shape;
  const { qkv, dout } = makeInputs(shape, 79);
  const drop = { p: 0.25, seed: 2 ** 40 + 3 };
  const runs = LEVELS.flatMap((level) => [1, 2].map((threads) => {
    addon.setSimdLimit(level);
    addon.setNumThreads(threads);
    // The levels' tile products add in other orders (RETILED_TOL); a mask differing in even one of
    // the ~100k probabilities would move out by ~0.1.
    return { out: runForward(qkv, null, shape, drop).out, dqkv: runBackward(new Float32Array(B * T * qkvWidth(shape)), dout, qkv, null, shape, drop) };
  }));
  addon.setSimdLimit('avx512');
  for (const run of runs) {
    expectClose('out across levels', run.out, runs[0].out, RETILED_TOL);
    expectClose('dqkv across levels', run.dqkv, runs[0].dqkv, RETILED_TOL);
  }
});

test('packed examples give the outputs and gradients of each example run on its own', () => {
  // Two rows of T = 150 packed with examples of lengths crossing the 64-row tiles at odd places.
  const heads = { NH: 6, NKV: 2, HS: 17 }, T = 150;
  const W = qkvWidth(heads), O = outWidth(heads), NH = heads.NH;
  const lengths = [[20, 1, 45, 84], [64, 64, 22]];
  const B = lengths.length;
  const shape = { B, T, ...heads };
  const { qkv, dout } = makeInputs(shape, 42);
  const segmentIds = new Int32Array(B * T);
  lengths.forEach((row, b) => {
    let t = 0;
    row.forEach((len, id) => segmentIds.fill(id, b * T + t, b * T + (t += len)));
  });
  const packed = runForward(qkv, segmentIds, shape);
  const packedGrad = runBackward(new Float32Array(B * T * W), dout, qkv, segmentIds, shape);
  lengths.forEach((row, b) => {
    let t0 = 0;
    for (const len of row) {
      const one = { B: 1, T: len, ...heads };
      const rows = (x: Float32Array, width: number) => x.slice((b * T + t0) * width, (b * T + t0 + len) * width);
      const alone = runForward(rows(qkv, W), null, one);
      const aloneGrad = runBackward(new Float32Array(len * W), rows(dout, O), rows(qkv, W), null, one);
      const what = `row ${b}, example at ${t0} of length ${len}`;
      expectClose(`${what}: out`, rows(packed.out, O), alone.out, RETILED_TOL);
      expectClose(`${what}: dqkv`, rows(packedGrad, W), aloneGrad, RETILED_TOL);
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
    ['3 then single tokens', { B: 2, T: 70, NH: 3, NKV: 3, HS: 17 }, [3, 1]],
    ['a 67-token prompt (two query tiles) then single tokens', { B: 1, T: 133, NH: 2, NKV: 2, HS: 32 }, [67, 1]],
    ['mixed chunks crossing tile edges', { B: 3, T: 140, NH: 3, NKV: 3, HS: 8 }, [5, 1, 1, 64, 2]],
    ['the whole sequence at once', { B: 2, T: 9, NH: 1, NKV: 1, HS: 8 }, [9]],
    ['3 then single tokens, grouped-query 9/3 heads', { B: 2, T: 70, NH: 9, NKV: 3, HS: 64 }, [3, 1]],
    ['a 67-token prompt then single tokens, one kv head', { B: 1, T: 100, NH: 4, NKV: 1, HS: 10 }, [67, 1]],
    ['mixed chunks, grouped-query 4/2 heads', { B: 3, T: 140, NH: 4, NKV: 2, HS: 6 }, [5, 1, 1, 64, 2]],
  ] as const)('feeding %s reproduces the full forward', (_, shape, chunks) => {
    const { B, T, NH, NKV, HS } = shape;
    const W = qkvWidth(shape), O = outWidth(shape), KV = NKV * HS;
    const maxT = T + 5; // cache rows past the sequence must stay untouched
    const { qkv } = makeInputs(shape, T * 7 + NH * 10 + NKV + HS);
    const want = attentionForward(qkv, null, B, T, shape).out;
    const rng = new SeededRandom(3);
    // The caches hold the NKV kv heads only.
    const kcache = rng.floats(B * maxT * KV, 10, 11), vcache = rng.floats(B * maxT * KV, 10, 11);
    const kcacheStart = Float32Array.from(kcache), vcacheStart = Float32Array.from(vcache);
    let past = 0;
    for (let call = 0; past < T; call++) {
      const Tq = Math.min(chunks[call % chunks.length], T - past);
      const chunk = new Float32Array(B * Tq * W);
      for (let b = 0; b < B; b++) chunk.set(qkv.subarray((b * T + past) * W, (b * T + past + Tq) * W), b * Tq * W);
      const out = new Float32Array(B * Tq * O).fill(NaN);
      kernels.attention_cached_forward(out, kcache, vcache, chunk, B, Tq, past, maxT, NH, NKV, HS);
      const wantChunk = new Float64Array(B * Tq * O);
      for (let b = 0; b < B; b++) wantChunk.set(want.subarray((b * T + past) * O, (b * T + past + Tq) * O), b * Tq * O);
      expectClose(`out of positions [${past}, ${past + Tq})`, out, wantChunk, OUT_TOL);
      past += Tq;
    }
    for (let b = 0; b < B; b++)
      for (let t = 0; t < maxT; t++) {
        const row = (b * maxT + t) * KV, src = (b * T + t) * W + NH * HS;
        const wantK = t < T ? qkv.subarray(src, src + KV) : kcacheStart.subarray(row, row + KV);
        const wantV = t < T ? qkv.subarray(src + KV, src + 2 * KV) : vcacheStart.subarray(row, row + KV);
        expect(kcache.subarray(row, row + KV)).toEqual(wantK);
        expect(vcache.subarray(row, row + KV)).toEqual(wantV);
      }
  });
});

test('grouped-query attention equals multi-head attention with each kv head repeated for its query heads', () => {
  // Hugging Face's repeat_kv: expanding the NKV kv heads to NH copies must give the same out and
  // lse bit for bit (the same tiles in the same order), and the gradient of a kv head must be the
  // sum of its copies' gradients.
  const gqa = { B: 2, T: 70, NH: 6, NKV: 2, HS: 10 };
  const mha = { ...gqa, NKV: gqa.NH };
  const { B, T, NH, NKV, HS } = gqa, group = NH / NKV;
  const { qkv, dout } = makeInputs(gqa, 91);
  const W = qkvWidth(gqa), Wm = qkvWidth(mha);
  const expanded = new Float32Array(B * T * Wm);
  for (let r = 0; r < B * T; r++) {
    expanded.set(qkv.subarray(r * W, r * W + NH * HS), r * Wm);
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / group);
      for (const part of [0, 1]) {
        const src = r * W + (NH + part * NKV + kv) * HS, dst = r * Wm + (NH + part * NH + h) * HS;
        expanded.set(qkv.subarray(src, src + HS), dst);
      }
    }
  }
  const segmentIds = makeSegments(B, T, 92);
  const got = runForward(qkv, segmentIds, gqa), wantMha = runForward(expanded, segmentIds, mha);
  expect(got.out).toEqual(wantMha.out);
  expect(got.lse).toEqual(wantMha.lse);
  const dGqa = runBackward(new Float32Array(B * T * W), dout, qkv, segmentIds, gqa);
  const dMha = runBackward(new Float32Array(B * T * Wm), dout, expanded, segmentIds, mha);
  const folded = new Float64Array(B * T * W);
  for (let r = 0; r < B * T; r++) {
    for (let c = 0; c < NH * HS; c++) folded[r * W + c] = dMha[r * Wm + c];
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / group);
      for (const part of [0, 1])
        for (let d = 0; d < HS; d++) folded[r * W + (NH + part * NKV + kv) * HS + d] += dMha[r * Wm + (NH + part * NH + h) * HS + d];
    }
  }
  // Only the order of the float32 additions into a kv head differs (the copies' sums are added
  // after the fact here, inside the kernel as they come).
  expectClose('dqkv of GQA vs folded MHA', dGqa, folded, RETILED_TOL);
});

test('1 and 2 threads give bit-identical results (each head and tile is computed by one thread)', () => {
  const shape = { B: 2, T: 130, NH: 6, NKV: 2, HS: 16 };
  const { B, T, NH, NKV, HS } = shape;
  const { qkv, dout } = makeInputs(shape, 77);
  const segmentIds = makeSegments(B, T, 78);
  const results = [1, 2].map((threads) => {
    addon.setNumThreads(threads);
    const plain = runForward(qkv, null, shape);
    const masked = runForward(qkv, segmentIds, shape);
    const grad = runBackward(new Float32Array(B * T * qkvWidth(shape)), dout, qkv, segmentIds, shape);
    const kcache = new Float32Array(B * T * NKV * HS), vcache = new Float32Array(B * T * NKV * HS);
    const cached = new Float32Array(B * T * outWidth(shape));
    kernels.attention_cached_forward(cached, kcache, vcache, qkv, B, T, 0, T, NH, NKV, HS);
    const dropped = runBackward(new Float32Array(B * T * qkvWidth(shape)), dout, qkv, segmentIds, shape, { p: 0.3, seed: 5 });
    return { plain, masked, grad, cached, dropped };
  });
  expect(results[1]).toEqual(results[0]);
});

describe('attention_cached_rows_forward (continuous batching: each row its own cache slot and length)', () => {
  // Rows of different lengths in slots out of order: each row's prompt is prefilled on its own
  // (B = 1), then the rows decode together one position per call, at different past lengths, and
  // leave the batch when their sequence ends. Slots 1 and 3 are never named and must stay untouched.
  test.each([
    ['multi-head, a prompt spanning two query tiles', { NH: 3, NKV: 3, HS: 17 }],
    ['grouped-query 4/2 heads', { NH: 4, NKV: 2, HS: 6 }],
    ['grouped-query 9/3 heads, HS 64', { NH: 9, NKV: 3, HS: 64 }],
    ['one kv head', { NH: 4, NKV: 1, HS: 10 }],
  ] as const)('%s: each row matches the float64 reference and attention_cached_forward on that row alone', (_, heads) => {
    const { NH, NKV, HS } = heads;
    const S = 5, maxT = 90, W = qkvWidth(heads), O = outWidth(heads), KV = NKV * HS;
    // [slot, prompt length, total length]
    const rows = [[4, 67, 75], [0, 1, 9], [2, 5, 31]] as const;
    const seqs = rows.map(([, , T], i) => makeInputs({ B: 1, T, ...heads }, 500 + 31 * i + NH + HS).qkv);
    const want = rows.map(([, , T], i) => attentionForward(seqs[i], null, 1, T, heads).out);
    const rng = new SeededRandom(9);
    const kcache = rng.floats(S * maxT * KV, 10, 11), vcache = rng.floats(S * maxT * KV, 10, 11);
    const kStart = Float32Array.from(kcache), vStart = Float32Array.from(vcache);
    // The same rows each through attention_cached_forward on a cache of its own (B = 1).
    const alone = rows.map(() => ({ k: new Float32Array(maxT * KV), v: new Float32Array(maxT * KV) }));
    const check = (i: number, past: number, Tq: number, got: Float32Array, b: number) => {
      const gotRow = got.subarray(b * Tq * O, (b + 1) * Tq * O);
      expectClose(`row ${i} positions [${past}, ${past + Tq})`, gotRow, want[i].subarray(past * O, (past + Tq) * O), OUT_TOL);
      const single = new Float32Array(Tq * O);
      kernels.attention_cached_forward(single, alone[i].k, alone[i].v, seqs[i].subarray(past * W, (past + Tq) * W), 1, Tq, past, maxT, NH, NKV, HS);
      expect(gotRow).toEqual(single);
    };
    rows.forEach(([slot, prompt], i) => {
      const out = new Float32Array(prompt * O).fill(NaN);
      kernels.attention_cached_rows_forward(out, kcache, vcache, seqs[i].subarray(0, prompt * W), Int32Array.of(slot), Int32Array.of(0), 1, prompt, S, maxT, NH, NKV, HS);
      check(i, 0, prompt, out, 0);
    });
    const past = rows.map(([, prompt]) => prompt);
    for (;;) {
      const live = rows.map((_, i) => i).filter((i) => past[i] < rows[i][2]);
      if (live.length === 0) break;
      const qkv = new Float32Array(live.length * W);
      live.forEach((i, b) => qkv.set(seqs[i].subarray(past[i] * W, (past[i] + 1) * W), b * W));
      const out = new Float32Array(live.length * O).fill(NaN);
      kernels.attention_cached_rows_forward(out, kcache, vcache, qkv, Int32Array.from(live, (i) => rows[i][0]), Int32Array.from(live, (i) => past[i]),
        live.length, 1, S, maxT, NH, NKV, HS);
      live.forEach((i, b) => check(i, past[i]++, 1, out, b));
    }
    for (let slot = 0; slot < S; slot++) {
      const i = rows.findIndex(([s]) => s === slot);
      for (let t = 0; t < maxT; t++) {
        const at = (slot * maxT + t) * KV;
        const written = i >= 0 && t < rows[i][2];
        const src = t * W + NH * HS;
        expect(kcache.subarray(at, at + KV)).toEqual(written ? seqs[i].subarray(src, src + KV) : kStart.subarray(at, at + KV));
        expect(vcache.subarray(at, at + KV)).toEqual(written ? seqs[i].subarray(src + KV, src + 2 * KV) : vStart.subarray(at, at + KV));
      }
    }
  });

  test('slots out of range, given twice, and lengths past the cache are refused with the argument named', () => {
    const f = (n: number) => new Float32Array(n);
    // NH = NKV = 1, HS = 4: qkv rows of 12 floats, caches (S=2, maxT=3, 4).
    const call = (slots: number[], pasts: number[]) => () =>
      kernels.attention_cached_rows_forward(f(8), f(24), f(24), f(24), Int32Array.from(slots), Int32Array.from(pasts), 2, 1, 2, 3, 1, 1, 4);
    expect(call([0, 2], [0, 0])).toThrow(/slots\[1\] = 2 is outside \[0, S = 2\)/);
    expect(call([1, 1], [0, 0])).toThrow(/slots\[1\] = 1 is given to two rows/);
    expect(call([0, 1], [0, 3])).toThrow(/pasts\[1\] \+ Tq = 4 is outside \[Tq, maxT = 3\]/);
    expect(call([1, 0], [2, 0])).not.toThrow();
  });
});
