/**
 * matmul_forward / matmul_backward and the sgemm under them, against the float64 references in
 * test/reference/matmul.ts (whose gradients are checked by central differences here too).
 *
 * Tolerance: every output element is a float32 sum of K products (K = the reduction length) plus
 * at most three alpha/beta/bias/accumulation terms, so its rounding error is bounded by
 * gamma_(K+3) = (K+3) u / (1 - (K+3) u) times the sum of the terms' absolute values (u = 2^-24);
 * float32SumTolerance doubles that for fused-vs-separate multiply-add rounding. The bound is per
 * element, from the element's own magnitude, so results that cancel to near zero are held to the
 * scale of their terms, and a missing, doubled or misplaced term (typically as large as the whole
 * bound or larger at these K) fails.
 */
import { addon } from '../../lib/native';
import { centralDifferences, dot } from '../reference/finite_difference';
import { expectWithinRounding, matmulBackwardRef, matmulForwardRef, sgemmRef } from '../reference/matmul';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

/** Seeded (N,C) input, (OC,C) weight, (OC) bias and (N,OC) upstream gradient. */
function makeLayer(N: number, C: number, OC: number, seed: number) {
  const rng = new SeededRandom(seed);
  return { inp: rng.floats(N * C), weight: rng.floats(OC * C, -0.5, 0.5), bias: rng.floats(OC), dout: rng.floats(N * OC) };
}

// [N, C, OC]: 1 and odd sizes; N <= 4 takes the few-rows path of the forward and dinp gemms and
// OC <= 4 that of dweight; 400 and 800 exceed the reduction block (384), 1100 the column block
// (1024); 12-14 rows straddle the 12-row register tile.
const LAYER_SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 5], [2, 33, 3], [3, 16, 17], [4, 50, 31], [5, 64, 1], [13, 33, 50],
  [14, 17, 4], [37, 100, 129], [70, 48, 33], [17, 400, 1100], [29, 800, 40], [400, 20, 30],
];

test('the reference gradients match central differences of the reference forward', () => {
  const N = 3, C = 5, OC = 4;
  const { inp, weight, bias, dout } = makeLayer(N, C, OC, 5);
  const x = Float64Array.from(inp), w = Float64Array.from(weight), b = Float64Array.from(bias);
  const grads = matmulBackwardRef(dout, x, w, N, C, OC);
  const lossOf = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(matmulForwardRef(xx, ww, bb, N, C, OC).out, dout);
  // The loss is bilinear, so central differences are exact up to rounding, ~eps |loss| / h ~ 1e-11.
  const fd = (f: (v: Float64Array) => number, v: Float64Array) => [...centralDifferences(f, v).values()];
  const close = (got: ArrayLike<number>, want: number[]) => want.forEach((g, i) => expect(Math.abs(got[i] - g)).toBeLessThan(1e-8));
  close(grads.dinp, fd((v) => lossOf(v, w, b), x));
  close(grads.dweight, fd((v) => lossOf(x, v, b), w));
  close(grads.dbias, fd((v) => lossOf(x, w, v), b));
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  test.each(LAYER_SHAPES)('matmul_forward matches the float64 reference, N=%i C=%i OC=%i', (N, C, OC) => {
    const { inp, weight, bias } = makeLayer(N, C, OC, N * 7919 + C * 31 + OC);
    for (const withBias of [true, false]) {
      const want = matmulForwardRef(inp, weight, withBias ? bias : null, N, C, OC);
      const out = new Float32Array(N * OC).fill(NaN);  // the forward overwrites: prior contents must not leak in
      kernels.matmul_forward(out, inp, weight, withBias ? bias : null, N, C, OC);
      expectWithinRounding(`out (bias ${withBias})`, out, want.out, want.magnitude, C);
    }
  });

  test.each(LAYER_SHAPES)('matmul_backward adds the float64 reference gradients, N=%i C=%i OC=%i', (N, C, OC) => {
    const { inp, weight, dout } = makeLayer(N, C, OC, N * 7919 + C * 31 + OC + 1);
    const want = matmulBackwardRef(dout, inp, weight, N, C, OC);
    // Gradient buffers start non-zero: the kernel must add to them (+=), not overwrite.
    const rng = new SeededRandom(N + C + OC);
    const dinp = rng.floats(N * C), dweight = rng.floats(OC * C), dbias = rng.floats(OC);
    const plus = (g: Float64Array, start: Float32Array) => g.map((v, i) => v + start[i]);
    const plusAbs = (m: Float64Array, start: Float32Array) => m.map((v, i) => v + Math.abs(start[i]));
    const wantDinp = plus(want.dinp, dinp), dinpMag = plusAbs(want.dinpMagnitude, dinp);
    const wantDweight = plus(want.dweight, dweight), dweightMag = plusAbs(want.dweightMagnitude, dweight);
    const wantDbias = plus(want.dbias, dbias), dbiasMag = plusAbs(want.dbiasMagnitude, dbias);
    kernels.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
    expectWithinRounding('dinp', dinp, wantDinp, dinpMag, OC + 1);
    expectWithinRounding('dweight', dweight, wantDweight, dweightMag, N + 1);
    expectWithinRounding('dbias', dbias, wantDbias, dbiasMag, N + 1);
  });

  test('matmul_backward computes only the gradients it is given buffers for', () => {
    const N = 9, C = 20, OC = 13;
    const { inp, weight, dout } = makeLayer(N, C, OC, 99);
    const want = matmulBackwardRef(dout, inp, weight, N, C, OC);
    const dweight = new Float32Array(OC * C);
    kernels.matmul_backward(null, dweight, null, dout, inp, weight, N, C, OC);
    expectWithinRounding('dweight alone', dweight, want.dweight, want.dweightMagnitude, N);
    const dinp = new Float32Array(N * C), dbias = new Float32Array(OC);
    kernels.matmul_backward(dinp, null, dbias, dout, inp, weight, N, C, OC);
    expectWithinRounding('dinp without dweight', dinp, want.dinp, want.dinpMagnitude, OC);
    expectWithinRounding('dbias without dweight', dbias, want.dbias, want.dbiasMagnitude, N);
  });

  test.each([[3, 5, 4], [13, 17, 15]])('matmul_backward matches central differences of the float64 forward, N=%i C=%i OC=%i', (N, C, OC) => {
    const { inp, weight, bias, dout } = makeLayer(N, C, OC, 1234 + N);
    const dinp = new Float32Array(N * C), dweight = new Float32Array(OC * C), dbias = new Float32Array(OC);
    kernels.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
    const x = Float64Array.from(inp), w = Float64Array.from(weight), b = Float64Array.from(bias);
    const lossOf = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(matmulForwardRef(xx, ww, bb, N, C, OC).out, dout);
    const fd = (f: (v: Float64Array) => number, v: Float64Array) => Float64Array.from(centralDifferences(f, v).values());
    // Magnitudes for the kernel's float32 rounding come from the reference backward; the central
    // differences of this bilinear loss add only ~1e-11 of float64 rounding (the 1e-9 slack).
    const ref = matmulBackwardRef(dout, inp, weight, N, C, OC);
    expectWithinRounding('dinp vs central differences', dinp, fd((v) => lossOf(v, w, b), x), ref.dinpMagnitude, OC, 1e-9);
    expectWithinRounding('dweight vs central differences', dweight, fd((v) => lossOf(x, v, b), w), ref.dweightMagnitude, N, 1e-9);
    expectWithinRounding('dbias vs central differences', dbias, fd((v) => lossOf(x, w, v), b), ref.dbiasMagnitude, N, 1e-9);
  });

  // [M, N, K] for sgemm, run for all four transpose combinations.
  const GEMM_SHAPES: [number, number, number][] = [
    [1, 1, 1], [1, 37, 70], [2, 50, 17], [3, 33, 1], [4, 129, 70], [5, 31, 16], [12, 32, 15], [13, 33, 17],
    [14, 64, 400], [50, 37, 129], [3, 1100, 40], [40, 1100, 390], [2, 45, 2100],
  ];
  const GEMM_CASES: [string, number, number, number][] = [];
  for (const t of ['NN', 'NT', 'TN', 'TT']) for (const [M, N, K] of GEMM_SHAPES) GEMM_CASES.push([t, M, N, K]);

  test.each(GEMM_CASES)('sgemm %s M=%i N=%i K=%i matches the float64 reference', (trans, M, N, K) => {
    const transA = trans[0] === 'T', transB = trans[1] === 'T';
    const rng = new SeededRandom(M * 1000003 + N * 1009 + K + (transA ? 7 : 0) + (transB ? 13 : 0));
    // (alpha, beta, padding): beta = 0 with NaN in C (C must not be read); general alpha and beta
    // with padded leading dimensions (the padding must not be touched).
    for (const [alpha, beta, pad] of [[1, 0, 0], [-0.75, 1.5, 3]]) {
      const lda = (transA ? M : K) + pad, ldb = (transB ? K : N) + pad + 2, ldc = N + pad + 1;
      const A = rng.floats((transA ? K : M) * lda), B = rng.floats((transB ? N : K) * ldb);
      const C = beta === 0 ? new Float32Array(M * ldc).fill(NaN) : rng.floats(M * ldc);
      const want = sgemmRef(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      addon.sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      for (let i = 0; i < M; i++) {
        const row = (x: ArrayLike<number>) => Array.prototype.slice.call(x, i * ldc, i * ldc + N) as number[];
        expectWithinRounding(`C row ${i} (alpha ${alpha}, beta ${beta})`, row(C), row(want.c), row(want.magnitude), K);
        for (let j = N; j < ldc; j++) expect(C[i * ldc + j]).toBe(Math.fround(want.c[i * ldc + j]));  // padding untouched
      }
    }
  });
});

// The work split never divides a reduction (threads own disjoint blocks of C, and every element's
// sum runs over the same blocks of K in the same order), so 1 and 2 threads agree bit for bit.
// Shapes are large enough that the kernel really splits: tall (rows split), wide (columns split)
// and decode-like batches of 1 and 3 rows (the few-rows path, column runs handed out one at a time).
test.each([[256, 300, 64], [40, 300, 900], [3, 768, 4000], [1, 576, 960]])('1 and 2 threads give identical results, N=%i C=%i OC=%i', (N, C, OC) => {
  const { inp, weight, bias, dout } = makeLayer(N, C, OC, 77);
  const run = (threads: number) => {
    addon.setNumThreads(threads);
    const out = new Float32Array(N * OC), dinp = new Float32Array(N * C), dweight = new Float32Array(OC * C), dbias = new Float32Array(OC);
    kernels.matmul_forward(out, inp, weight, bias, N, C, OC);
    kernels.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
    return { out, dinp, dweight, dbias };
  };
  const one = run(1), two = run(2);
  // Index of the first differing element, -1 if none (jest's toEqual takes minutes on 3M floats).
  const firstDifference = (a: Float32Array, b: Float32Array) => a.findIndex((v, i) => !Object.is(v, b[i]));
  expect(firstDifference(two.out, one.out)).toBe(-1);
  expect(firstDifference(two.dinp, one.dinp)).toBe(-1);
  expect(firstDifference(two.dweight, one.dweight)).toBe(-1);
  expect(firstDifference(two.dbias, one.dbias)).toBe(-1);
});

// Decoding alternates products whose column runs any thread may take (few rows) with products whose
// threads each own a fixed block (many rows), back to back, so a worker may arrive late for one job
// while the next is already published: every result must still be the one-thread result, bit for bit.
test('back-to-back decoding and batch products on 2 threads match 1 thread exactly', () => {
  const C = 576, OC = 960, rows = 64;
  const { inp, weight, bias } = makeLayer(rows, C, OC, 2024);
  const one = inp.subarray(0, C);
  addon.setNumThreads(1);
  const wantOne = new Float32Array(OC), wantBatch = new Float32Array(rows * OC);
  kernels.matmul_forward(wantOne, one, weight, null, 1, C, OC);
  kernels.matmul_forward(wantBatch, inp, weight, bias, rows, C, OC);
  addon.setNumThreads(2);
  const gotOne = new Float32Array(OC), gotBatch = new Float32Array(rows * OC);
  let mismatches = 0;
  for (let i = 0; i < 200; i++) {
    gotOne.fill(NaN);
    kernels.matmul_forward(gotOne, one, weight, null, 1, C, OC);
    if (gotOne.some((v, j) => !Object.is(v, wantOne[j]))) mismatches++;
    if (i % 10 === 0) {
      gotBatch.fill(NaN);
      kernels.matmul_forward(gotBatch, inp, weight, bias, rows, C, OC);
      if (gotBatch.some((v, j) => !Object.is(v, wantBatch[j]))) mismatches++;
    }
  }
  expect(mismatches).toBe(0);
  const ref = matmulForwardRef(one, weight, null, 1, C, OC);
  expectWithinRounding('decoding product', wantOne, ref.out, ref.magnitude, C);
});
