/**
 * The LoRA adapter kernels (kernels.inc lora_forward / lora_backward) against the float64 reference
 * test/reference/lora.ts, whose dropout mask is an independent BigInt implementation of the hash's
 * definition (native/include/gptune/lora_dropout.h), at awkward sizes: N = 1, 7, 33, C not a multiple
 * of the 16-float vector, R = 1, 3, 16, an output slice at offset > 0 inside rows wider than it, and
 * shapes that take several dropout tiles per thread (N*C > 2^16) or rows wider than a tile (C > 2^16).
 *
 * Tolerances: float32 rounding bounds (reference/matmul.ts's expectWithinRounding, Higham's gamma_n
 * times the magnitude of each sum) with the number of rounded operations each result went through:
 * the dropout scaling, the sums over C (u), R (out, dinp), OC (du), N (dA, dB), and the kernel's
 * float32 u and du feeding the next product. A wrong mask element is off by a whole term, far beyond.
 */
import { addon } from '../../lib/native';
import { expectWithinRounding } from '../reference/matmul';
import { dropoutKeep, dropoutScale } from '../reference/dropout';
import { loraBackwardRef, loraForwardRef, LoraShape } from '../reference/lora';
import { SeededRandom } from '../reference/random';

const { kernels: k } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

/** Bitwise equality, NaN included; names the first difference. */
function expectBits(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) throw new Error(`${what}[${i}] is ${got[i]} but should be ${want[i]}`);
  }
}

/** base + increment as float64, and |base| + magnitude: what an accumulating kernel should hold. */
function accumulated(base: Float32Array, increment: Float64Array, magnitude: Float64Array) {
  return {
    want: Float64Array.from(base, (b, i) => b + increment[i]),
    magnitude: Float64Array.from(base, (b, i) => Math.abs(b) + magnitude[i]),
  };
}

interface Case {
  s: LoraShape;
  inp: Float32Array;
  A: Float32Array;
  B: Float32Array;
}

function makeCase(N: number, C: number, R: number, OC: number, ld: number, offset: number, dropout: number, seed = 1234): Case {
  const rng = new SeededRandom(N * 7919 + C * 31 + R * 7 + OC + offset + Math.round(dropout * 100));
  return {
    s: { N, C, R, OC, ld, offset, scaling: 1.75, dropout, seed },
    inp: rng.floats(N * C), A: rng.floats(R * C), B: rng.floats(OC * R),
  };
}

/** Runs lora_forward into an out (N,ld) holding random values everywhere; returns out0, out and u. */
function forward(c: Case, rng = new SeededRandom(99)) {
  const { N, C, R, OC, ld, offset, scaling, dropout, seed } = c.s;
  const out0 = rng.floats(N * ld), out = out0.slice(), u = new Float32Array(N * R).fill(NaN);
  k.lora_forward(out, u, c.inp, c.A, c.B, N, C, R, OC, ld, offset, scaling, dropout, seed);
  return { out0, out, u };
}

/** dout (N,ld) with NaN outside the adapter's columns, so reading them would poison every gradient. */
function sliceDout(s: LoraShape, rng: SeededRandom): Float32Array {
  const dout = new Float32Array(s.N * s.ld).fill(NaN);
  for (let n = 0; n < s.N; n++) for (let o = 0; o < s.OC; o++) dout[n * s.ld + s.offset + o] = rng.uniform(-1, 1);
  return dout;
}

function checkForward(c: Case): Float32Array {
  const { N, C, R, OC, ld, offset } = c.s;
  const { out0, out, u } = forward(c);
  const ref = loraForwardRef(c.inp, c.A, c.B, c.s);
  expectWithinRounding('u', u, ref.u, ref.uMagnitude, C + 2);
  const slice = (a: ArrayLike<number>) => Float64Array.from({ length: N * OC }, (_, i) => a[Math.floor(i / OC) * ld + offset + (i % OC)]);
  const acc = accumulated(Float32Array.from(slice(out0)), ref.delta, ref.deltaMagnitude);
  expectWithinRounding('out slice', slice(out), acc.want, acc.magnitude, C + R + 4);
  // Every column outside [offset, offset + OC) keeps its bits.
  for (let n = 0; n < N; n++) {
    expectBits(`out row ${n} before the slice`, out.subarray(n * ld, n * ld + offset), out0.subarray(n * ld, n * ld + offset));
    expectBits(`out row ${n} after the slice`, out.subarray(n * ld + offset + OC, (n + 1) * ld), out0.subarray(n * ld + offset + OC, (n + 1) * ld));
  }
  return u;
}

function checkBackward(c: Case, u: Float32Array): void {
  const { N, C, R, OC, ld, offset, scaling, dropout, seed } = c.s;
  const rng = new SeededRandom(7);
  const dout = sliceDout(c.s, rng);
  const dinp0 = rng.floats(N * C), dA0 = rng.floats(R * C), dB0 = rng.floats(OC * R);
  const dinp = dinp0.slice(), dA = dA0.slice(), dB = dB0.slice(), du = new Float32Array(N * R).fill(NaN);
  k.lora_backward(dinp, dA, dB, du, dout, u, c.inp, c.A, c.B, N, C, R, OC, ld, offset, scaling, dropout, seed);
  const ref = loraBackwardRef(dout, u, c.inp, c.A, c.B, c.s);
  expectWithinRounding('du', du, ref.du, ref.duMagnitude, OC + 2);
  const dBWant = accumulated(dB0, ref.dB, ref.dBMagnitude);
  expectWithinRounding('dB', dB, dBWant.want, dBWant.magnitude, N + 3);
  const dAWant = accumulated(dA0, ref.dA, ref.dAMagnitude);
  expectWithinRounding('dA', dA, dAWant.want, dAWant.magnitude, OC + N + 5);
  const dinpWant = accumulated(dinp0, ref.dinp, ref.dinpMagnitude);
  expectWithinRounding('dinp', dinp, dinpWant.want, dinpWant.magnitude, OC + R + 5);
  if (dropout > 0) {
    // A dropped input element takes no gradient at all: its dinp keeps its bits.
    const keep = dropoutKeep(seed, dropout, N * C);
    for (let i = 0; i < N * C; i++) if (!keep[i] && !Object.is(dinp[i], dinp0[i])) throw new Error(`dinp[${i}] of a dropped element changed`);
  }
}

// [N, C, R, OC, ld, offset]
const SHAPES: [number, number, number, number, number, number][] = [
  [1, 13, 1, 5, 5, 0],
  [7, 37, 3, 11, 20, 4],
  [33, 70, 16, 29, 64, 30],
  [33, 129, 16, 50, 50, 0],
  [700, 333, 5, 41, 45, 2],  // N*C > 2^16 floats: several dropout tiles per thread, several dA panels
  [3, 70001, 2, 3, 7, 3],    // C > 2^16: a tile is one row
];

describe.each([1, 3])('%i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  describe.each([0, 0.3])('dropout %p', (dropout) => {
    test.each(SHAPES)('N=%i C=%i R=%i OC=%i ld=%i offset=%i: forward and backward equal the float64 reference', (N, C, R, OC, ld, offset) => {
      const c = makeCase(N, C, R, OC, ld, offset, dropout);
      const u = checkForward(c);
      checkBackward(c, u);
    });
  });
});

describe('semantics', () => {
  test('p = 0 uses the input exactly: with A = I, u is inp bit for bit', () => {
    const N = 5, C = 19, rng = new SeededRandom(3);
    const inp = rng.floats(N * C), A = new Float32Array(C * C), B = rng.floats(2 * C);
    for (let i = 0; i < C; i++) A[i * C + i] = 1;
    const u = new Float32Array(N * C);
    k.lora_forward(new Float32Array(N * 2), u, inp, A, B, N, C, C, 2, 2, 0, 1, 0, 5);
    expectBits('u', u, inp);
  });

  test('the mask of element (n, c) is keep(seed, n*C + c): with A = I and inp = 1, u is the mask times 1/(1-p)', () => {
    // C = 37 = 2*16 + 5 exercises the vector path and its tail in every row.
    const N = 6, C = 37, p = 0.35, seed = 2 ** 53 - 1;
    const A = new Float32Array(C * C);
    for (let i = 0; i < C; i++) A[i * C + i] = 1;
    const u = new Float32Array(N * C);
    k.lora_forward(new Float32Array(N), u, new Float32Array(N * C).fill(1), A, new Float32Array(C), N, C, C, 1, 1, 0, 1, p, seed);
    const scale = dropoutScale(p);
    expectBits('u', u, Float32Array.from(dropoutKeep(seed, p, N * C), (keep) => keep * scale));
  });

  test('gradients accumulate (+=), du is overwritten, and null outputs are skipped without changing the others', () => {
    const c = makeCase(9, 21, 4, 10, 14, 3, 0.25);
    const { N, C, R, OC, ld, offset, scaling, dropout, seed } = c.s;
    const { u } = forward(c);
    const rng = new SeededRandom(11);
    const dout = sliceDout(c.s, rng);
    const dinp0 = rng.floats(N * C), dA0 = rng.floats(R * C), dB0 = rng.floats(OC * R);
    const run = (which: { dinp: boolean; dA: boolean; dB: boolean }) => {
      const dinp = dinp0.slice(), dA = dA0.slice(), dB = dB0.slice(), du = new Float32Array(N * R).fill(NaN);
      k.lora_backward(which.dinp ? dinp : null, which.dA ? dA : null, which.dB ? dB : null, du, dout, u, c.inp, c.A, c.B,
        N, C, R, OC, ld, offset, scaling, dropout, seed);
      return { dinp, dA, dB, du };
    };
    const all = run({ dinp: true, dA: true, dB: true });
    // Twice into the same buffers: the increments add up (second - first == first - start).
    const twice = { dinp: all.dinp.slice(), dA: all.dA.slice(), dB: all.dB.slice(), du: new Float32Array(N * R) };
    k.lora_backward(twice.dinp, twice.dA, twice.dB, twice.du, dout, u, c.inp, c.A, c.B, N, C, R, OC, ld, offset, scaling, dropout, seed);
    expectBits('du (overwritten, not accumulated)', twice.du, all.du);
    for (const [name, start, once, second] of [['dinp', dinp0, all.dinp, twice.dinp], ['dA', dA0, all.dA, twice.dA], ['dB', dB0, all.dB, twice.dB]] as const) {
      for (let i = 0; i < start.length; i++) {
        const inc1 = once[i] - start[i], inc2 = second[i] - once[i];
        if (!(Math.abs(inc2 - inc1) <= 1e-5 * (Math.abs(start[i]) + Math.abs(once[i]) + Math.abs(second[i])))) {
          throw new Error(`${name}[${i}]: the second call added ${inc2}, the first ${inc1}`);
        }
      }
    }
    for (const which of [{ dinp: false, dA: true, dB: true }, { dinp: true, dA: false, dB: true }, { dinp: true, dA: true, dB: false }, { dinp: false, dA: false, dB: false }]) {
      const got = run(which);
      expectBits('du', got.du, all.du);
      expectBits('dinp', got.dinp, which.dinp ? all.dinp : dinp0);
      expectBits('dA', got.dA, which.dA ? all.dA : dA0);
      expectBits('dB', got.dB, which.dB ? all.dB : dB0);
    }
  });

  test('views: an adapter on a column slice of an arena, reading arena views', () => {
    const c = makeCase(8, 24, 3, 6, 16, 5, 0.2);
    const { N, C, R, OC, ld, offset, scaling, dropout, seed } = c.s;
    const direct = forward(c);
    const arena = new addon.Arena('cpu', 7 + N * ld + N * R + N * C);
    try {
      const out = { arena, offset: 7, numel: N * ld }, u = { arena, offset: 7 + N * ld, numel: N * R };
      const inp = { arena, offset: 7 + N * ld + N * R, numel: N * C };
      arena.write(out.offset, direct.out0);
      arena.write(inp.offset, c.inp);
      k.lora_forward(out, u, inp, c.A, c.B, N, C, R, OC, ld, offset, scaling, dropout, seed);
      expectBits('out', arena.read(out.offset, out.numel), direct.out);
      expectBits('u', arena.read(u.offset, u.numel), direct.u);
    } finally {
      arena.free();
    }
  });
});

describe('central finite differences through lora_forward (p > 0, the mask fixed by the seed)', () => {
  test('dinp, dA and dB of <out slice, dout> equal the differences of the float32 forward', () => {
    const c = makeCase(5, 23, 3, 7, 12, 2, 0.4, 777);
    const { N, C, R, OC, ld, offset, scaling, dropout, seed } = c.s;
    const dout = sliceDout(c.s, new SeededRandom(5));
    const loss = (inp: Float32Array, A: Float32Array, B: Float32Array) => {
      const out = new Float32Array(N * ld), u = new Float32Array(N * R);
      k.lora_forward(out, u, inp, A, B, N, C, R, OC, ld, offset, scaling, dropout, seed);
      let sum = 0;
      for (let n = 0; n < N; n++) for (let o = 0; o < OC; o++) sum += out[n * ld + offset + o] * dout[n * ld + offset + o];
      return sum;
    };
    const { u } = forward(c);
    const dinp = new Float32Array(N * C), dA = new Float32Array(R * C), dB = new Float32Array(OC * R), du = new Float32Array(N * R);
    k.lora_backward(dinp, dA, dB, du, dout, u, c.inp, c.A, c.B, N, C, R, OC, ld, offset, scaling, dropout, seed);
    // The loss is linear in each single element of inp, A and B (the mask does not depend on the
    // values), so a central difference has no truncation error at any step; h = 0.5 keeps float32
    // rounding of the loss (~1e-6 here) small next to the O(0.1..1) gradients. A gradient taken
    // with the wrong mask element or without 1/(1-p) is off by O(0.1) or more.
    const h = 0.5, tol = 2e-5;
    let dropped = 0;
    for (const [name, x, grad] of [['inp', c.inp, dinp], ['A', c.A, dA], ['B', c.B, dB]] as const) {
      const which = (v: Float32Array) => (name === 'inp' ? [v, c.A, c.B] : name === 'A' ? [c.inp, v, c.B] : [c.inp, c.A, v]) as [Float32Array, Float32Array, Float32Array];
      for (let i = 0; i < x.length; i++) {
        const probe = x.slice();
        probe[i] = x[i] + h;
        const up = loss(...which(probe));
        probe[i] = x[i] - h;
        const down = loss(...which(probe));
        const fd = (up - down) / (2 * h);
        if (!(Math.abs(fd - grad[i]) <= tol)) throw new Error(`d${name}[${i}]: backward ${grad[i]}, central difference ${fd}`);
        if (name === 'inp' && fd === 0) dropped++;
      }
    }
    expect(dropped).toBeGreaterThan(0);  // p = 0.4 over 115 inputs: some are dropped, and their gradient is 0
  });
});

describe('the dropout mask', () => {
  // Element n of u is the mask of element n when C = R = OC = 1 and inp = A = B = 1.
  function maskOf(n: number, p: number, seed: number): Float32Array {
    const u = new Float32Array(n);
    const one = Float32Array.of(1);
    k.lora_forward(new Float32Array(n), u, new Float32Array(n).fill(1), one, one, n, 1, 1, 1, 1, 0, 1, p, seed);
    return u;
  }

  test.each([0.05, 0.5, 0.9])('p = %p: over 1e6 elements the kept fraction is within 5 binomial standard deviations of 1 - p, kept values are 1/(1-p)', (p) => {
    const n = 1_000_000;
    const mask = maskOf(n, p, 42);
    const scale = dropoutScale(p);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (mask[i] === scale) kept++;
      else if (mask[i] !== 0) throw new Error(`mask[${i}] = ${mask[i]} is neither 0 nor ${scale}`);
    }
    const sigma = Math.sqrt(n * p * (1 - p));
    expect(Math.abs(kept - n * (1 - p))).toBeLessThanOrEqual(5 * sigma);
  });

  test('equals the BigInt reference of the definition, at seeds 0, 1 and 2^53-1', () => {
    const n = 50_000, p = 0.25;
    for (const seed of [0, 1, 2 ** 53 - 1]) {
      const scale = dropoutScale(p);
      expectBits(`mask seed ${seed}`, maskOf(n, p, seed), Float32Array.from(dropoutKeep(seed, p, n), (keep) => keep * scale));
    }
  });

  test('adjacent seeds draw independent masks: they agree on p^2 + (1-p)^2 of the elements', () => {
    const n = 200_000, p = 0.5;
    const a = maskOf(n, p, 1000), b = maskOf(n, p, 1001);
    let agree = 0;
    for (let i = 0; i < n; i++) if (a[i] === b[i]) agree++;
    expect(Math.abs(agree - n / 2)).toBeLessThanOrEqual(5 * Math.sqrt(n / 4));
  });

  test('a p that is not 0 but below 2^-24 drops only elements whose 24 bits are all zero', () => {
    // u >= p fails only for u = 0: ~ n / 2^24 drops; at n = 1e5 almost surely none.
    const mask = maskOf(100_000, 1e-9, 3);
    expect(mask.every((v) => v === dropoutScale(1e-9))).toBe(true);
  });
});
