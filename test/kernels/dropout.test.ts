/**
 * dropout_forward / dropout_backward (kernels.inc) against the BigInt reference of the mask's
 * definition (reference/dropout.ts), at every SIMD level the CPU has and with 1 and 2 threads: the
 * kernels multiply by 0 or the float32 scale (and add the residual), each one float operation, so
 * the results must equal the correctly rounded float64 values bit for bit.
 */
import { addon } from '../../lib/native';
import { dropoutKeep, dropoutScale } from '../reference/dropout';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => {
  addon.setNumThreads(initialThreads);
  addon.setSimdLimit('avx512');
});

/** Every SIMD level the CPU can run: the mask must not depend on it. */
const LEVELS = (['avx512', 'avx2', 'portable'] as const).filter((level) => level === 'portable' || addon.simdLevel() === level || (level === 'avx2' && addon.simdLevel() === 'avx512'));

/** The first indices where got and want differ (as float32 bit patterns, so -0 and +0 differ too). */
function mismatches(got: Float32Array, want: ArrayLike<number>): number[] {
  const bad: number[] = [];
  const w = Float32Array.from(want);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(w.buffer);
  for (let i = 0; i < got.length && bad.length < 5; i++) if (a[i] !== b[i]) bad.push(i);
  return bad;
}

describe.each(LEVELS)('SIMD level %s', (level) => {
  beforeAll(() => expect(addon.setSimdLimit(level)).toBe(level));

  describe.each([1, 2])('with %i thread(s)', (threads) => {
    beforeAll(() => addon.setNumThreads(threads));

    // 1, 15 and 17 straddle a 16-float vector; 100003 is split between threads and pieces.
    describe.each([1, 15, 17, 100003])('n=%i', (n) => {
      const rng = new SeededRandom(n + 11);
      const x = rng.floats(n, -3, 3), r = rng.floats(n, -3, 3), g = rng.floats(n, -3, 3);

      test.each([
        [0.1, 7],
        [0.5, 2 ** 53 - 1],
        [0.9, 0],
      ])('p=%p seed=%p: out = dropout(x), out = r + dropout(x), dinp += dropout(dout), each the mask of the definition', (p, seed) => {
        const keep = dropoutKeep(seed, p, n), scale = dropoutScale(p);
        const dropped = Array.from(x, (v, i) => (keep[i] ? Math.fround(v * scale) : 0));

        const out = new Float32Array(n).fill(9);
        kernels.dropout_forward(out, x, null, n, p, seed);
        expect(mismatches(out, dropped)).toEqual([]);

        const sum = new Float32Array(n).fill(9);
        kernels.dropout_forward(sum, x, r, n, p, seed);
        expect(mismatches(sum, Array.from(r, (v, i) => Math.fround(v + dropped[i])))).toEqual([]);

        // In place: out is the residual (GPT-2's residual stream), or the input (the embedding).
        const inPlace = Float32Array.from(r);
        kernels.dropout_forward(inPlace, x, inPlace, n, p, seed);
        expect(mismatches(inPlace, sum)).toEqual([]);
        const self = Float32Array.from(x);
        kernels.dropout_forward(self, self, null, n, p, seed);
        expect(mismatches(self, out)).toEqual([]);

        const dinp = Float32Array.from(r);
        kernels.dropout_backward(dinp, g, n, p, seed);
        expect(mismatches(dinp, Array.from(r, (v, i) => (keep[i] ? Math.fround(v + Math.fround(g[i] * scale)) : v)))).toEqual([]);
      });

      test('p = 0 is no mask: exactly x, r + x, dinp + dout', () => {
        const out = new Float32Array(n);
        kernels.dropout_forward(out, x, null, n, 0, 5);
        expect(mismatches(out, x)).toEqual([]);
        kernels.dropout_forward(out, x, r, n, 0, 5);
        expect(mismatches(out, Array.from(x, (v, i) => Math.fround(v + r[i])))).toEqual([]);
        const dinp = Float32Array.from(r);
        kernels.dropout_backward(dinp, g, n, 0, 5);
        expect(mismatches(dinp, Array.from(g, (v, i) => Math.fround(v + r[i])))).toEqual([]);
      });
    });
  });
});

describe('the fraction dropped', () => {
  test.each([0.1, 0.5])('p = %p: over 1e6 elements the dropped count is within 5 binomial standard deviations of n p', (p) => {
    const n = 1_000_000;
    const out = new Float32Array(n);
    kernels.dropout_forward(out, new Float32Array(n).fill(1), null, n, p, 1234);
    let dropped = 0;
    for (const v of out) if (v === 0) dropped++;
    expect(Math.abs(dropped - n * p)).toBeLessThanOrEqual(5 * Math.sqrt(n * p * (1 - p)));
  });
});

describe('bad arguments', () => {
  const x = new Float32Array(4);
  test('p outside [0, 1) and a seed that is not a whole number in [0, 2^53) are refused, naming the argument', () => {
    expect(() => kernels.dropout_forward(x, x, null, 4, 1, 0)).toThrow(/dropout must be a probability in \[0, 1\)/);
    expect(() => kernels.dropout_forward(x, x, null, 4, -0.1, 0)).toThrow(/dropout must be a probability/);
    expect(() => kernels.dropout_backward(x, x, 4, 0.1, 1.5)).toThrow(/seed must be a whole number/);
    expect(() => kernels.dropout_backward(x, x, 4, 0.1, -1)).toThrow(/seed must be a whole number/);
  });
  test('a length beyond the tensors is refused', () => {
    expect(() => kernels.dropout_forward(x, x, null, 5, 0.1, 0)).toThrow(/out/);
    expect(() => kernels.dropout_forward(new Float32Array(8), new Float32Array(8), x, 8, 0.1, 0)).toThrow(/residual/);
  });
});
