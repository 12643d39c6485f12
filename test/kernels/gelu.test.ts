/**
 * gelu_forward / gelu_backward (GPT-2's tanh approximation) against the float64 reference in
 * test/reference/gelu.ts, whose derivative is itself checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose, worstViolation } from '../reference/compare';
import { centralDifferences } from '../reference/finite_difference';
import { gelu, geluGrad } from '../reference/gelu';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

// A float32 result carries a few roundings (unit roundoff u = 6e-8) of intermediates; in the
// negative tail gelu(x) = x / (1 + e^{-2u}) also inherits the rounding of u amplified by |2u|
// (25 at x = -6, where gelu ~ 1e-10, hence the absolute floor).
const FORWARD_TOL = { rel: 2e-6, abs: 1e-7 };
// Backward values are O(1) (|gelu'| <= 1.13, |dout| <= 1, plus the accumulated dinp).
const BACKWARD_TOL = { rel: 1e-6, abs: 5e-7 };

test('the reference derivative matches central differences of the reference forward', () => {
  const x = Float64Array.from(new SeededRandom(1).floats(200, -8, 8));
  for (let i = 0; i < x.length; i++) {
    const fd = centralDifferences((v) => gelu(v[0]), Float64Array.of(x[i])).get(0)!;
    expect(Math.abs(fd - geluGrad(x[i]))).toBeLessThan(1e-8); // O(h^2) ~ 1e-10 for h = 1e-5
  }
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // 50001 is large enough for the work to be split between threads.
  test.each([1, 7, 33, 1000, 50001])('gelu_forward matches the float64 reference, n=%i', (n) => {
    const x = new SeededRandom(n).floats(n, -6, 6);
    const out = new SeededRandom(n + 1).floats(n); // overwritten, never read
    kernels.gelu_forward(out, x, n);
    expectClose(`gelu_forward n=${n}`, out, Array.from(x, gelu), FORWARD_TOL);
  });

  test.each([1, 7, 33, 1000, 50001])('gelu_backward accumulates dout * gelu\'(x) into dinp, n=%i', (n) => {
    const rng = new SeededRandom(100 + n);
    const x = rng.floats(n, -6, 6), dout = rng.floats(n), dinp = rng.floats(n);
    const want = Array.from(x, (xi, i) => dinp[i] + dout[i] * geluGrad(xi));
    kernels.gelu_backward(dinp, x, dout, n);
    expectClose(`gelu_backward n=${n}`, dinp, want, BACKWARD_TOL);
  });
});

test('gelu keeps its relative accuracy across [-10, 10], where 1 + tanh(u) cancels for x < 0', () => {
  const n = 20001;
  const x = Float32Array.from({ length: n }, (_, i) => -10 + (20 * i) / (n - 1));
  const out = new Float32Array(n);
  kernels.gelu_forward(out, x, n);
  const core: number[] = [], coreWant: number[] = [], tail: number[] = [], tailWant: number[] = [];
  x.forEach((xi, i) => {
    const want = gelu(xi);
    if (Math.abs(want) < 1e-30) return; // x < -9.3: subnormal territory, checked by FORWARD_TOL below
    (Math.abs(xi) <= 3 ? core : tail).push(out[i]);
    (Math.abs(xi) <= 3 ? coreWant : tailWant).push(want);
  });
  // |x| <= 3: a few roundings. Beyond, exp(-2u) turns u's few-u rounding into |2u| * few u relative,
  // |2u| <= 87 at x = -10: 4e-5. (The textbook float formula is off by 100% there.)
  expectClose('gelu relative error, |x| <= 3', core, coreWant, { rel: 2e-6, abs: 0 });
  expectClose('gelu relative error, 3 < |x| <= 10', tail, tailWant, { rel: 4e-5, abs: 0 });
  expectClose('gelu absolute error on [-10, 10]', out, Array.from(x, gelu), FORWARD_TOL);
});

test('NaN inputs give NaN, so a diverged run is visible downstream', () => {
  const x = Float32Array.of(NaN, 1, NaN, -2);
  const out = new Float32Array(4), dinp = new Float32Array(4);
  kernels.gelu_forward(out, x, 4);
  kernels.gelu_backward(dinp, x, Float32Array.of(1, 1, 1, 1), 4);
  expect([Number.isNaN(out[0]), Number.isNaN(out[2]), Number.isNaN(dinp[0]), Number.isNaN(dinp[2])]).toEqual([true, true, true, true]);
  expect(worstViolation([out[1], out[3]], [gelu(1), gelu(-2)], FORWARD_TOL).ratio).toBeLessThanOrEqual(1);
});
