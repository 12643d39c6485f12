/**
 * swiglu_forward / swiglu_backward against the float64 reference in test/reference/swiglu.ts, whose
 * gradient is itself checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { centralDifferences, dot } from '../reference/finite_difference';
import { SeededRandom } from '../reference/random';
import { swigluBackward, swigluForward } from '../reference/swiglu';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

// Tolerances, u = 6e-8. sigmoid(g) comes from a polynomial exp good to ~2 ulp and a division, so
// silu(g) up is good to ~5 ulp relative: rel 2e-6 for outputs and the up gradient. The gate gradient
// s (1 + g (1 - s)) cancels near g = -1.28 where it crosses 0, so it also gets an absolute part of a
// few ulp of its scale |dout up| <= 3.
const OUT_TOL = { rel: 2e-6, abs: 1e-7 };
const GRAD_TOL = { rel: 2e-6, abs: 1e-6 };

/** gate in [-8, 8) (silu's curved part and both tails), up in [-3, 3). */
function makeInputs(N: number, H: number, seed: number) {
  const rng = new SeededRandom(seed);
  const inp = new Float32Array(N * 2 * H);
  for (let n = 0; n < N; n++) {
    inp.set(rng.floats(H, -8, 8), n * 2 * H);
    inp.set(rng.floats(H, -3, 3), n * 2 * H + H);
  }
  return { inp, dout: rng.floats(N * H) };
}

test('the reference gradient matches central differences of the reference forward', () => {
  const N = 3, H = 5;
  const { inp, dout } = makeInputs(N, H, 1);
  const x = Float64Array.from(inp);
  const fd = centralDifferences((v) => dot(swigluForward(v, N, H), dout), x);
  // h = 1e-5 on O(10) functions: truncation and rounding ~1e-9.
  expectClose('dinp vs central differences', swigluBackward(dout, x, N, H), [...fd.values()], { rel: 1e-6, abs: 1e-8 });
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // H = 1536 is SmolLM2-135M's FFN width; N = 100 splits rows between threads.
  const shapes: [number, number][] = [[1, 1], [3, 7], [37, 33], [5, 64], [100, 1536]];

  test.each(shapes)('swiglu_forward matches the float64 reference, N=%i H=%i', (N, H) => {
    const { inp } = makeInputs(N, H, N * 1000 + H);
    const out = new Float32Array(N * H).fill(NaN);
    kernels.swiglu_forward(out, inp, N, H);
    expectClose('out', out, swigluForward(inp, N, H), OUT_TOL);
  });

  test.each(shapes)('swiglu_backward accumulates the float64 reference gradient, N=%i H=%i', (N, H) => {
    const { inp, dout } = makeInputs(N, H, N * 1000 + H + 1);
    const dinp = new SeededRandom(N + H).floats(N * 2 * H);
    const want = swigluBackward(dout, inp, N, H).map((g, i) => g + dinp[i]);
    kernels.swiglu_backward(dinp, dout, inp, N, H);
    expectClose('dinp', dinp, want, GRAD_TOL);
  });
});

test('very negative and very positive gates give finite results (no inf * 0)', () => {
  // silu(g) -> 0 for g -> -inf and -> g for g -> +inf; exp(-g) overflows float32 past g = -88.7.
  const gate = Float32Array.from([-1000, -104, -89, -88, -30, 30, 88, 1000]);
  const H = gate.length, inp = new Float32Array(2 * H);
  inp.set(gate, 0);
  inp.fill(1.5, H);
  const out = new Float32Array(H), dinp = new Float32Array(2 * H), dout = new Float32Array(H).fill(1);
  kernels.swiglu_forward(out, inp, 1, H);
  kernels.swiglu_backward(dinp, dout, inp, 1, H);
  expect(out.every(Number.isFinite)).toBe(true);
  expect(dinp.every(Number.isFinite)).toBe(true);
  expectClose('out', out, swigluForward(inp, 1, H), { rel: 2e-6, abs: 1e-30 });
  expectClose('dinp', dinp, swigluBackward(dout, inp, 1, H), { rel: 2e-6, abs: 1e-30 });
});
