/**
 * crossentropy_forward / crossentropy_backward / softmax_forward against the float64 references
 * in test/reference/crossentropy.ts, whose gradient is itself checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { crossentropyBackward, crossentropyForward, softmaxForward } from '../reference/crossentropy';
import { centralDifferences } from '../reference/finite_difference';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

const IGNORE = -100;

/**
 * Logits in [-8, 8) with a tie for the maximum in row 0 (the first one must win) at indices 1, 17
 * and V - 2: 1 and 17 are 16 apart, so a 16-lane kernel sees them in the same lane, and V - 2 is
 * usually in another. Targets have one ignored row.
 */
function makeInputs(N: number, V: number, seed: number) {
  const rng = new SeededRandom(seed);
  const logits = rng.floats(N * V, -8, 8);
  if (V >= 5) logits[1] = logits[V - 2] = 12;
  if (V > 17) logits[17] = 12;
  const targets = rng.ints(N, 0, V - 1);
  if (N >= 3) targets[1] = IGNORE;
  return { logits, targets };
}

// Tolerances. lse is O(10): rounding the sum, the log and the max costs a few ulps of it
// (ulp(16) = 2e-6), and loss = lse - logit carries that absolute error. p = exp(logit - lse)
// inherits lse's absolute error as a relative one, so dlogits = scale * p is within 1e-5 relative,
// and the target's scale * (p - 1) within 4e-6 * scale absolute.
const LSE_TOL = { rel: 0, abs: 4e-6 };
const dlogitsTol = (scale: number) => ({ rel: 1e-5, abs: 4e-6 * scale });

test('the reference gradient matches central differences of the reference losses', () => {
  const N = 4, V = 9, scale = 0.25;
  const { logits, targets } = makeInputs(N, V, 3);
  const x = Float64Array.from(logits);
  const lossOf = (v: Float64Array) => scale * crossentropyForward(v, targets, N, V, IGNORE).losses.reduce((a, b) => a + b, 0);
  const fd = centralDifferences(lossOf, x);
  // h = 1e-5 on O(1) functions: ~1e-10 truncation and rounding.
  expectClose('reference dlogits vs central differences', crossentropyBackward(x, targets, scale, N, V, IGNORE), [...fd.values()], { rel: 1e-6, abs: 1e-9 });
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  const shapes: [number, number][] = [];
  for (const N of [1, 3, 37]) for (const V of [1, 5, 33]) shapes.push([N, V]);
  shapes.push([3, 50257]);

  test.each(shapes)('crossentropy_forward: losses, lse and first-argmax predictions, N=%i V=%i', (N, V) => {
    const { logits, targets } = makeInputs(N, V, N * 100 + V);
    const want = crossentropyForward(logits, targets, N, V, IGNORE);
    const losses = new Float32Array(N).fill(5), lse = new Float32Array(N), predictions = new Int32Array(N).fill(-1);
    kernels.crossentropy_forward(losses, lse, predictions, logits, targets, N, V, IGNORE);
    expectClose('losses', losses, want.losses, LSE_TOL);
    expectClose('lse', lse, want.lse, LSE_TOL);
    expect(Array.from(predictions)).toEqual(Array.from(want.argmax));
    if (V >= 5) expect(predictions[0]).toBe(1); // the tie: first maximum
    if (N >= 3) expect(losses[1]).toBe(0); // ignored row
    // predictions may be null (training does not need them).
    const losses2 = new Float32Array(N), lse2 = new Float32Array(N);
    kernels.crossentropy_forward(losses2, lse2, null, logits, targets, N, V, IGNORE);
    expect(losses2).toEqual(losses);
    expect(lse2).toEqual(lse);
  });

  test.each(shapes)('crossentropy_backward writes scale * (softmax - onehot), zero for ignored rows, N=%i V=%i', (N, V) => {
    const { logits, targets } = makeInputs(N, V, N * 100 + V + 1);
    const scale = 1 / 7;
    const lse = new Float32Array(N);
    kernels.crossentropy_forward(new Float32Array(N), lse, null, logits, targets, N, V, IGNORE);
    const want = crossentropyBackward(logits, targets, scale, N, V, IGNORE);
    // Pre-filled with non-zero values: the kernel writes, it does not accumulate.
    const dlogits = new SeededRandom(5).floats(N * V);
    kernels.crossentropy_backward(dlogits, logits, lse, targets, null, scale, N, V, IGNORE);
    expectClose('dlogits', dlogits, want, dlogitsTol(scale));
    if (N >= 3) expect(dlogits.subarray(V, 2 * V).every((d) => d === 0)).toBe(true);
    // In place (dlogits === logits), as training does to reuse the (N,V) buffer: identical result.
    const inPlace = Float32Array.from(logits);
    kernels.crossentropy_backward(inPlace, inPlace, lse, targets, null, scale, N, V, IGNORE);
    expect(inPlace).toEqual(dlogits);
  });

  test.each(shapes)('crossentropy_backward with row weights writes scale * w[row] * (softmax - onehot), N=%i V=%i', (N, V) => {
    const { logits, targets } = makeInputs(N, V, N * 100 + V + 2);
    // Signed weights of mixed size, as a preference loss gives (dL/dlogp is negative for chosen answers).
    const weights = new SeededRandom(N + V).floats(N, -3, 3);
    const scale = 1 / 7;
    const lse = new Float32Array(N);
    kernels.crossentropy_forward(new Float32Array(N), lse, null, logits, targets, N, V, IGNORE);
    const want = crossentropyBackward(logits, targets, scale, N, V, IGNORE, weights);
    const dlogits = new SeededRandom(6).floats(N * V);
    kernels.crossentropy_backward(dlogits, logits, lse, targets, weights, scale, N, V, IGNORE);
    // Each row is scale * |w| times a softmax-sized quantity: the unweighted tolerance at scale * max|w|.
    expectClose('weighted dlogits', dlogits, want, dlogitsTol(scale * 3));
    if (N >= 3) expect(dlogits.subarray(V, 2 * V).every((d) => d === 0)).toBe(true);
    const inPlace = Float32Array.from(logits);
    kernels.crossentropy_backward(inPlace, inPlace, lse, targets, weights, scale, N, V, IGNORE);
    expect(inPlace).toEqual(dlogits);
  });
});

test('the weighted reference gradient matches central differences of the weighted reference losses', () => {
  const N = 4, V = 9, scale = 0.25;
  const { logits, targets } = makeInputs(N, V, 4);
  const weights = [0.5, -2, 1.25, -0.75];
  const x = Float64Array.from(logits);
  const lossOf = (v: Float64Array) => scale * crossentropyForward(v, targets, N, V, IGNORE).losses.reduce((a, l, r) => a + weights[r] * l, 0);
  const fd = centralDifferences(lossOf, x);
  expectClose('weighted reference dlogits vs central differences', crossentropyBackward(x, targets, scale, N, V, IGNORE, weights), [...fd.values()], { rel: 1e-6, abs: 1e-9 });
});

test('crossentropy_backward refuses row weights shorter than N', () => {
  const N = 3, V = 5;
  const { logits, targets } = makeInputs(N, V, 9);
  const lse = new Float32Array(N);
  expect(() => kernels.crossentropy_backward(logits, logits, lse, targets, new Float32Array(N - 1), 1, N, V, IGNORE)).toThrow(/row_weights/);
});

test('a row whose logits are all equal has loss log(V) and uniform gradient', () => {
  const N = 2, V = 50257;
  const logits = new Float32Array(N * V).fill(0.3);
  const targets = Int32Array.of(17, V - 1);
  const losses = new Float32Array(N), lse = new Float32Array(N), predictions = new Int32Array(N);
  kernels.crossentropy_forward(losses, lse, predictions, logits, targets, N, V, IGNORE);
  expectClose('loss = log V', losses, [Math.log(V), Math.log(V)], LSE_TOL);
  expect(Array.from(predictions)).toEqual([0, 0]);
  const scale = 0.5;
  kernels.crossentropy_backward(logits, logits, lse, targets, null, scale, N, V, IGNORE);
  const want = new Float64Array(N * V).fill(scale / V);
  want[17] -= scale;
  want[V + V - 1] -= scale;
  expectClose('dlogits = scale (1/V - onehot)', logits, want, dlogitsTol(scale));
});

describe('softmax_forward', () => {
  test.each([
    [1, 1, 1],
    [3, 5, 1],
    [37, 33, 1 / 0.7],
    [2, 50257, 1 / 1.3],
  ])('matches the float64 reference, N=%i V=%i invTemperature=%f', (N, V, invT) => {
    const logits = new SeededRandom(N + V).floats(N * V, -8, 8);
    if (V > 1) logits[0] = -Infinity; // a masked logit (e.g. top-k filtering) gets probability 0
    const probs = new Float32Array(N * V);
    kernels.softmax_forward(probs, logits, invT, N, V);
    // logit * invT <= 12 rounds by 5e-7 before exp, plus the sum's rounding: 2e-6 relative.
    expectClose('probs', probs, softmaxForward(logits, invT, N, V), { rel: 2e-6, abs: 0 });
    if (V > 1) expect(probs[0]).toBe(0);
  });
});
