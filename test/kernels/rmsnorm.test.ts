/**
 * rmsnorm_forward / rmsnorm_backward and qknorm_forward / qknorm_backward (Qwen3's per-head
 * q_norm / k_norm) against the float64 references in test/reference/rmsnorm.ts, whose gradients
 * are themselves checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { centralDifferences, dot } from '../reference/finite_difference';
import { qknormBackward, qknormForward, rmsnormBackward, rmsnormForward } from '../reference/rmsnorm';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

const EPS = 1e-6; // Llama's and Qwen's rms_norm_eps

/** (N,C) inputs whose rows have RMS from ~0.05 to ~6 (a residual stream's spread), never zero. */
function makeInputs(N: number, C: number, seed: number) {
  const rng = new SeededRandom(seed);
  const inp = rng.floats(N * C, -2, 2);
  for (let r = 0; r < N; r++) for (let c = 0; c < C; c++) inp[r * C + c] *= [0.05, 1, 3][r % 3];
  return { inp, weight: rng.floats(C, 0.5, 1.5), dout: rng.floats(N * C) };
}

// Tolerances, u = 6e-8. rstd comes from a float sum of C squares (16 lanes of C/16 terms, then a
// reduction): relative error ~ sqrt(C/16) u, halved by the square root, plus the division and sqrt
// roundings: 1e-6 relative leaves >5x headroom for C = 768. out = x rstd w (|out| <= 3) adds a few
// ulps; dinp = rstd (g - xhat mean(g xhat)) is O(rstd), up to 20 for the 0.05-RMS rows, so it is
// checked relative to rstd's scale (rel 2e-6 on top of 1e-6 absolute); dweight sums N rows.
const OUT_TOL = { rel: 2e-6, abs: 1e-6 };
const RSTD_TOL = { rel: 1e-6, abs: 0 };
const DINP_TOL = { rel: 2e-6, abs: 2e-5 };
const DWEIGHT_TOL = (rows: number) => ({ rel: 2e-6, abs: 2e-6 * Math.max(1, Math.sqrt(rows)) });

test('the reference gradients match central differences of the reference forward', () => {
  const N = 3, C = 7;
  const { inp, weight, dout } = makeInputs(N, C, 7);
  const x = Float64Array.from(inp), w = Float64Array.from(weight);
  const grads = rmsnormBackward(dout, x, w, N, C, EPS);
  const lossOf = (xx: Float64Array, ww: Float64Array) => dot(rmsnormForward(xx, ww, N, C, EPS).out, dout);
  // h = 1e-5 on O(1) functions (the 0.05-RMS row's rstd ~ 20 makes its terms O(20)): truncation and
  // rounding are both below 1e-8.
  const fdTol = { rel: 1e-6, abs: 1e-7 };
  expectClose('dinp vs central differences', grads.dinp, [...centralDifferences((v) => lossOf(v, w), x).values()], fdTol);
  expectClose('dweight vs central differences', grads.dweight, [...centralDifferences((v) => lossOf(x, v), w).values()], fdTol);
});

test('the qknorm reference gradients match central differences of its forward', () => {
  const N = 2, NH = 4, NKV = 2, HS = 6, W = (NH + 2 * NKV) * HS;
  const rng = new SeededRandom(8);
  const x = Float64Array.from(rng.floats(N * W, -2, 2));
  const qw = Float64Array.from(rng.floats(HS, 0.5, 1.5)), kw = Float64Array.from(rng.floats(HS, 0.5, 1.5));
  const dout = rng.floats(N * W);
  const grads = qknormBackward(dout, x, qw, kw, N, NH, NKV, HS, EPS);
  const lossOf = (xx: Float64Array, q: Float64Array, k: Float64Array) => dot(qknormForward(xx, q, k, N, NH, NKV, HS, EPS).out, dout);
  const fdTol = { rel: 1e-6, abs: 1e-8 };
  expectClose('dinp vs central differences', grads.dinp, [...centralDifferences((v) => lossOf(v, qw, kw), x).values()], fdTol);
  expectClose('dq_weight vs central differences', grads.dqWeight, [...centralDifferences((v) => lossOf(x, v, kw), qw).values()], fdTol);
  expectClose('dk_weight vs central differences', grads.dkWeight, [...centralDifferences((v) => lossOf(x, qw, v), kw).values()], fdTol);
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // C = 576 is SmolLM2-135M's width; N = 200 splits rows between threads.
  const shapes: [number, number][] = [];
  for (const N of [1, 3, 37]) for (const C of [1, 6, 33, 64, 576]) shapes.push([N, C]);
  shapes.push([200, 576]);

  test.each(shapes)('rmsnorm_forward matches the float64 reference, N=%i C=%i', (N, C) => {
    const { inp, weight } = makeInputs(N, C, N * 1000 + C);
    const want = rmsnormForward(inp, weight, N, C, EPS);
    const out = new Float32Array(N * C).fill(7), rstd = new Float32Array(N);
    kernels.rmsnorm_forward(out, rstd, inp, weight, N, C, EPS);
    expectClose('out', out, want.out, OUT_TOL);
    expectClose('rstd', rstd, want.rstd, RSTD_TOL);
    // Inference passes null for rstd and must get the same output.
    const outNoStats = new Float32Array(N * C);
    kernels.rmsnorm_forward(outNoStats, null, inp, weight, N, C, EPS);
    expect(outNoStats).toEqual(out);
  });

  test.each(shapes)('rmsnorm_backward accumulates the float64 reference gradients, N=%i C=%i', (N, C) => {
    const { inp, weight, dout } = makeInputs(N, C, N * 1000 + C + 1);
    const rstd = new Float32Array(N);
    kernels.rmsnorm_forward(new Float32Array(N * C), rstd, inp, weight, N, C, EPS);
    const want = rmsnormBackward(dout, inp, weight, N, C, EPS);
    // Gradient buffers start non-zero: the kernel must add to them.
    const rng = new SeededRandom(N + C);
    const dinp = rng.floats(N * C), dweight = rng.floats(C);
    const wantDinp = want.dinp.map((g, i) => g + dinp[i]);
    const wantDweight = want.dweight.map((g, i) => g + dweight[i]);
    kernels.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
    expectClose('dinp', dinp, wantDinp, DINP_TOL);
    expectClose('dweight', dweight, wantDweight, DWEIGHT_TOL(N));
  });

  const qkShapes = [
    { N: 1, NH: 1, NKV: 1, HS: 6 },
    { N: 5, NH: 4, NKV: 1, HS: 10 },
    { N: 37, NH: 6, NKV: 2, HS: 17 },
    { N: 64, NH: 16, NKV: 8, HS: 128 }, // Qwen3-0.6B's heads
  ];
  test.each(qkShapes)('qknorm_forward matches the float64 reference, %o', ({ N, NH, NKV, HS }) => {
    const W = (NH + 2 * NKV) * HS;
    const rng = new SeededRandom(N * 100 + NH + HS);
    const inp = rng.floats(N * W, -3, 3), qw = rng.floats(HS, 0.5, 1.5), kw = rng.floats(HS, 0.5, 1.5);
    const want = qknormForward(inp, qw, kw, N, NH, NKV, HS, EPS);
    const out = new Float32Array(N * W).fill(NaN), rstd = new Float32Array(N * (NH + NKV)).fill(NaN);
    kernels.qknorm_forward(out, rstd, inp, qw, kw, N, NH, NKV, HS, EPS);
    expectClose('out', out, want.out, OUT_TOL);
    expectClose('rstd', rstd, want.rstd, RSTD_TOL);
    // v heads pass through bit for bit
    for (let n = 0; n < N; n++) {
      const v0 = n * W + (NH + NKV) * HS;
      expect(out.subarray(v0, (n + 1) * W)).toEqual(inp.subarray(v0, (n + 1) * W));
    }
    const outNoStats = new Float32Array(N * W);
    kernels.qknorm_forward(outNoStats, null, inp, qw, kw, N, NH, NKV, HS, EPS);
    expect(outNoStats).toEqual(out);
  });

  test.each(qkShapes)('qknorm_backward accumulates the float64 reference gradients, %o', ({ N, NH, NKV, HS }) => {
    const W = (NH + 2 * NKV) * HS;
    const rng = new SeededRandom(N * 100 + NH + HS + 1);
    const inp = rng.floats(N * W, -3, 3), qw = rng.floats(HS, 0.5, 1.5), kw = rng.floats(HS, 0.5, 1.5);
    const dout = rng.floats(N * W);
    const rstd = new Float32Array(N * (NH + NKV));
    kernels.qknorm_forward(new Float32Array(N * W), rstd, inp, qw, kw, N, NH, NKV, HS, EPS);
    const want = qknormBackward(dout, inp, qw, kw, N, NH, NKV, HS, EPS);
    const dinp = rng.floats(N * W), dqw = rng.floats(HS), dkw = rng.floats(HS);
    const wantDinp = want.dinp.map((g, i) => g + dinp[i]);
    const wantDqw = want.dqWeight.map((g, i) => g + dqw[i]), wantDkw = want.dkWeight.map((g, i) => g + dkw[i]);
    kernels.qknorm_backward(dinp, dqw, dkw, dout, inp, qw, kw, rstd, N, NH, NKV, HS);
    expectClose('dinp', dinp, wantDinp, DINP_TOL);
    expectClose('dq_weight', dqw, wantDqw, DWEIGHT_TOL(N * NH));
    expectClose('dk_weight', dkw, wantDkw, DWEIGHT_TOL(N * NKV));
  });
});

test('rmsnorm_backward and qknorm_backward compute only the gradients asked for (null outputs)', () => {
  const N = 5, C = 33;
  const { inp, weight, dout } = makeInputs(N, C, 99);
  const rstd = new Float32Array(N);
  kernels.rmsnorm_forward(new Float32Array(N * C), rstd, inp, weight, N, C, EPS);
  const want = rmsnormBackward(dout, inp, weight, N, C, EPS);
  const dinp = new Float32Array(N * C), dweight = new Float32Array(C);
  kernels.rmsnorm_backward(dinp, null, dout, inp, weight, rstd, N, C);
  kernels.rmsnorm_backward(null, dweight, dout, inp, weight, rstd, N, C);
  expectClose('dinp alone', dinp, want.dinp, DINP_TOL);
  expectClose('dweight alone', dweight, want.dweight, DWEIGHT_TOL(N));

  const NH = 4, NKV = 2, HS = 10, W = (NH + 2 * NKV) * HS;
  const rng = new SeededRandom(5);
  const x = rng.floats(N * W, -2, 2), qw = rng.floats(HS, 0.5, 1.5), kw = rng.floats(HS, 0.5, 1.5), dy = rng.floats(N * W);
  const r = new Float32Array(N * (NH + NKV));
  kernels.qknorm_forward(new Float32Array(N * W), r, x, qw, kw, N, NH, NKV, HS, EPS);
  const wantQk = qknormBackward(dy, x, qw, kw, N, NH, NKV, HS, EPS);
  const dx = new Float32Array(N * W), dqw = new Float32Array(HS), dkw = new Float32Array(HS);
  kernels.qknorm_backward(dx, null, null, dy, x, qw, kw, r, N, NH, NKV, HS);
  kernels.qknorm_backward(null, dqw, null, dy, x, qw, kw, r, N, NH, NKV, HS);
  kernels.qknorm_backward(null, null, dkw, dy, x, qw, kw, r, N, NH, NKV, HS);
  expectClose('qknorm dinp alone', dx, wantQk.dinp, DINP_TOL);
  expectClose('qknorm dq_weight alone', dqw, wantQk.dqWeight, DWEIGHT_TOL(N * NH));
  expectClose('qknorm dk_weight alone', dkw, wantQk.dkWeight, DWEIGHT_TOL(N * NKV));
});
