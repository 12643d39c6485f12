/**
 * layernorm_forward / layernorm_backward against the float64 reference in
 * test/reference/layernorm.ts, whose gradients are themselves checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { centralDifferences, dot } from '../reference/finite_difference';
import { layernormBackward, layernormForward } from '../reference/layernorm';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

const EPS = 1e-5;

/** (N,C) inputs with a per-row offset of 0..12, as on the residual stream. */
function makeInputs(N: number, C: number, seed: number) {
  const rng = new SeededRandom(seed);
  const inp = rng.floats(N * C, -2, 2);
  for (let r = 0; r < N; r++) for (let c = 0; c < C; c++) inp[r * C + c] += 3 * (r % 5);
  return { inp, weight: rng.floats(C, 0.5, 1.5), bias: rng.floats(C, -0.5, 0.5), dout: rng.floats(N * C) };
}

// Tolerances. xhat = (x - mean) rstd inherits the float rounding of the mean, u |mean| rstd ~ 1e-6
// for |mean| <= 12 and std ~ 1.2 (u = 6e-8), plus float sums over C terms, so outputs and input
// gradients (both O(1)) get 5e-6 absolute; dweight sums N rows of such xhat errors; mean and rstd
// are a few ulps.
const OUT_TOL = { rel: 0, abs: 5e-6 };
const STAT_TOL = { rel: 1e-6, abs: 1e-7 };
const DINP_TOL = { rel: 0, abs: 5e-6 };
const DPARAM_TOL = (N: number) => ({ rel: 0, abs: 5e-6 * Math.max(1, Math.sqrt(N)) });

test('the reference gradients match central differences of the reference forward', () => {
  const N = 3, C = 7;
  const { inp, weight, bias, dout } = makeInputs(N, C, 7);
  const x = Float64Array.from(inp), w = Float64Array.from(weight), b = Float64Array.from(bias);
  const grads = layernormBackward(dout, x, w, N, C, EPS);
  const lossOf = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(layernormForward(xx, ww, bb, N, C, EPS).out, dout);
  // h = 1e-5 on O(1) functions: truncation and rounding are both ~1e-10.
  const fdTol = { rel: 1e-6, abs: 1e-8 };
  expectClose('dinp vs central differences', grads.dinp, [...centralDifferences((v) => lossOf(v, w, b), x).values()], fdTol);
  expectClose('dweight vs central differences', grads.dweight, [...centralDifferences((v) => lossOf(x, v, b), w).values()], fdTol);
  expectClose('dbias vs central differences', grads.dbias, [...centralDifferences((v) => lossOf(x, w, v), b).values()], fdTol);
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // N=100, C=768 is large enough for both kernels to split rows between threads.
  const shapes: [number, number][] = [];
  for (const N of [1, 3, 37]) for (const C of [1, 7, 33, 768]) shapes.push([N, C]);
  shapes.push([100, 768]);

  test.each(shapes)('layernorm_forward matches the float64 reference, N=%i C=%i', (N, C) => {
    const { inp, weight, bias } = makeInputs(N, C, N * 1000 + C);
    const want = layernormForward(inp, weight, bias, N, C, EPS);
    const out = new Float32Array(N * C).fill(7), mean = new Float32Array(N), rstd = new Float32Array(N);
    kernels.layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, EPS);
    expectClose('out', out, want.out, OUT_TOL);
    expectClose('mean', mean, want.mean, STAT_TOL);
    expectClose('rstd', rstd, want.rstd, STAT_TOL);
    // Inference passes null for mean and rstd and must get the same output.
    const outNoStats = new Float32Array(N * C);
    kernels.layernorm_forward(outNoStats, null, null, inp, weight, bias, N, C, EPS);
    expect(outNoStats).toEqual(out);
  });

  test.each(shapes)('layernorm_backward accumulates the float64 reference gradients, N=%i C=%i', (N, C) => {
    const { inp, weight, bias, dout } = makeInputs(N, C, N * 1000 + C + 1);
    const mean = new Float32Array(N), rstd = new Float32Array(N);
    kernels.layernorm_forward(new Float32Array(N * C), mean, rstd, inp, weight, bias, N, C, EPS);
    const want = layernormBackward(dout, inp, weight, N, C, EPS);
    // Gradient buffers start non-zero: the kernel must add to them.
    const rng = new SeededRandom(N + C);
    const dinp = rng.floats(N * C), dweight = rng.floats(C), dbias = rng.floats(C);
    const wantDinp = want.dinp.map((g, i) => g + dinp[i]);
    const wantDweight = want.dweight.map((g, i) => g + dweight[i]);
    const wantDbias = want.dbias.map((g, i) => g + dbias[i]);
    kernels.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
    expectClose('dinp', dinp, wantDinp, DINP_TOL);
    expectClose('dweight', dweight, wantDweight, DPARAM_TOL(N));
    expectClose('dbias', dbias, wantDbias, DPARAM_TOL(N));
  });
});

test('layernorm_backward computes only the gradients asked for (null outputs)', () => {
  const N = 5, C = 33;
  const { inp, weight, bias, dout } = makeInputs(N, C, 99);
  const mean = new Float32Array(N), rstd = new Float32Array(N);
  kernels.layernorm_forward(new Float32Array(N * C), mean, rstd, inp, weight, bias, N, C, EPS);
  const want = layernormBackward(dout, inp, weight, N, C, EPS);
  const dinp = new Float32Array(N * C), dweight = new Float32Array(C), dbias = new Float32Array(C);
  kernels.layernorm_backward(dinp, null, null, dout, inp, weight, mean, rstd, N, C);
  kernels.layernorm_backward(null, dweight, null, dout, inp, weight, mean, rstd, N, C);
  kernels.layernorm_backward(null, null, dbias, dout, inp, weight, mean, rstd, N, C);
  expectClose('dinp alone', dinp, want.dinp, DINP_TOL);
  expectClose('dweight alone', dweight, want.dweight, DPARAM_TOL(N));
  expectClose('dbias alone', dbias, want.dbias, DPARAM_TOL(N));
});
