/**
 * residual_forward, add_inplace, scale_inplace, fill and sum_squares against float64 arithmetic.
 * Each elementwise kernel is one float operation per element, so its result must be exactly the
 * correctly rounded float64 result (Math.fround of the exact double value).
 */
import { addon } from '../../lib/native';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

/** Indices where got differs from want; empty when equal. */
function mismatches(got: Float32Array, want: ArrayLike<number>): number[] {
  const bad: number[] = [];
  for (let i = 0; i < got.length && bad.length < 5; i++) if (got[i] !== want[i]) bad.push(i);
  return bad;
}

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // 100003 is large enough for the work to be split between threads.
  describe.each([1, 7, 33, 100003])('n=%i', (n) => {
    const rng = new SeededRandom(n);
    const a = rng.floats(n, -3, 3), b = rng.floats(n, -3, 3);

    test('residual_forward: out = a + b', () => {
      const out = new Float32Array(n).fill(9);
      kernels.residual_forward(out, a, b, n);
      // a + b of two floats is exact in float64; Math.fround rounds it once, like the kernel.
      expect(mismatches(out, Array.from(a, (x, i) => Math.fround(x + b[i])))).toEqual([]);
    });

    test('add_inplace: dst += src', () => {
      const dst = Float32Array.from(a);
      kernels.add_inplace(dst, b, n);
      expect(mismatches(dst, Array.from(a, (x, i) => Math.fround(x + b[i])))).toEqual([]);
    });

    test('scale_inplace: x *= s', () => {
      const x = Float32Array.from(a);
      const s = 0.3;
      kernels.scale_inplace(x, s, n);
      // The binding passes s as a float; a float * float product is exact in float64.
      expect(mismatches(x, Array.from(a, (v) => Math.fround(v * Math.fround(s))))).toEqual([]);
    });

    test('fill sets every element', () => {
      const x = Float32Array.from(a);
      kernels.fill(x, -1.5, n);
      expect(x.every((v) => v === -1.5)).toBe(true);
    });

    test('sum_squares accumulates in double', () => {
      let want = 0;
      for (const v of a) want += v * v; // squares of floats are exact in float64
      // Double accumulation: relative error ~ n * 1e-16 at worst, far below float's 6e-8.
      expect(Math.abs(kernels.sum_squares(a, n) - want) / want).toBeLessThan(1e-12);
    });
  });
});

test('sum_squares of many small terms keeps what a float accumulator would lose', () => {
  // 2^20 copies of 1e-4 squared: one float accumulator ends 2e-3 low (0.0104650 for 0.0104858).
  const n = 1 << 20;
  const x = new Float32Array(n).fill(1e-4);
  const term = Math.fround(1e-4) ** 2;
  expect(Math.abs(kernels.sum_squares(x, n) - n * term) / (n * term)).toBeLessThan(1e-12);
});
