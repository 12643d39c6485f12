/**
 * encoder_forward / encoder_backward (token + position embeddings) against the float64 reference
 * in test/reference/encoder.ts, whose gradient is itself checked by central differences.
 */
import { addon } from '../../lib/native';
import { expectClose } from '../reference/compare';
import { encoderBackward, encoderForward } from '../reference/encoder';
import { centralDifferences, dot } from '../reference/finite_difference';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

const U = 2 ** -24; // float32 unit roundoff

function makeInputs(B: number, T: number, C: number, V: number, maxT: number, seed: number) {
  const rng = new SeededRandom(seed);
  return {
    wte: rng.floats(V * C), wpe: rng.floats(maxT * C),
    tokens: rng.ints(B * T, 0, V - 1), // V < B*T: ids repeat, so backward rows collide
    positions: rng.ints(B * T, 0, maxT - 1),
    dout: rng.floats(B * T * C),
  };
}

test('the reference gradient matches central differences of the reference forward', () => {
  const B = 2, T = 3, C = 5, V = 4, maxT = 6, posOffset = 2;
  const { wte, wpe, tokens, dout } = makeInputs(B, T, C, V, maxT, 1);
  const w = Float64Array.from(wte), p = Float64Array.from(wpe);
  const dwte = new Float64Array(V * C), dwpe = new Float64Array(maxT * C);
  encoderBackward(dwte, dwpe, dout, tokens, null, B, T, C, posOffset);
  const fdTol = { rel: 1e-8, abs: 1e-9 }; // the loss is linear: only rounding, ~1e-11
  expectClose('dwte', dwte, [...centralDifferences((v) => dot(encoderForward(tokens, null, v, p, B, T, C, posOffset), dout), w).values()], fdTol);
  expectClose('dwpe', dwpe, [...centralDifferences((v) => dot(encoderForward(tokens, null, w, v, B, T, C, posOffset), dout), p).values()], fdTol);
});

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // (B, T, C, V): awkward sizes, then one large enough to split channels between threads.
  const shapes: [number, number, number, number][] = [[1, 1, 1, 3], [3, 7, 33, 5], [2, 37, 7, 11], [4, 64, 768, 50]];

  describe.each([
    ['explicit positions', true],
    ['pos_offset + t', false],
  ])('%s', (_name, withPositions) => {
    test.each(shapes)('encoder_forward: wte[token] + wpe[pos], B=%i T=%i C=%i V=%i', (B, T, C, V) => {
      const maxT = T + 9, posOffset = withPositions ? 0 : 9;
      const { wte, wpe, tokens, positions } = makeInputs(B, T, C, V, maxT, B * T * C);
      const pos = withPositions ? positions : null;
      const out = new Float32Array(B * T * C);
      kernels.encoder_forward(out, tokens, pos, wte, wpe, B, T, C, posOffset);
      // One float addition: correctly rounded.
      expectClose('out', out, encoderForward(tokens, pos, wte, wpe, B, T, C, posOffset), { rel: U, abs: 0 });
    });

    test.each(shapes)('encoder_backward accumulates into dwte and dwpe, B=%i T=%i C=%i V=%i', (B, T, C, V) => {
      const maxT = T + 9, posOffset = withPositions ? 0 : 9;
      const { tokens, positions, dout } = makeInputs(B, T, C, V, maxT, B * T * C + 1);
      const pos = withPositions ? positions : null;
      const rng = new SeededRandom(7);
      const dwte = rng.floats(V * C), dwpe = rng.floats(maxT * C);
      const wantDwte = Float64Array.from(dwte), wantDwpe = Float64Array.from(dwpe);
      encoderBackward(wantDwte, wantDwpe, dout, tokens, pos, B, T, C, posOffset);
      kernels.encoder_backward(dwte, dwpe, dout, tokens, pos, B, T, C, posOffset);
      // Each entry is a float sum of its starting value and the rows that hit it (at most B*T):
      // one rounding of at most |partial sum| u per addition.
      const tol = { rel: 0, abs: B * T * Math.sqrt(B * T) * U * 2 };
      expectClose('dwte', dwte, wantDwte, tol);
      expectClose('dwpe', dwpe, wantDwpe, tol);
    });
  });
});

test('encoder_backward with a null dwte or dwpe updates only the other', () => {
  const B = 2, T = 5, C = 9, V = 3, maxT = 8;
  const { tokens, dout } = makeInputs(B, T, C, V, maxT, 3);
  const wantDwte = new Float64Array(V * C), wantDwpe = new Float64Array(maxT * C);
  encoderBackward(wantDwte, wantDwpe, dout, tokens, null, B, T, C, 1);
  const dwte = new Float32Array(V * C), dwpe = new Float32Array(maxT * C);
  kernels.encoder_backward(dwte, null, dout, tokens, null, B, T, C, 1);
  kernels.encoder_backward(null, dwpe, dout, tokens, null, B, T, C, 1);
  const tol = { rel: 0, abs: B * T * U * 4 };
  expectClose('dwte alone', dwte, wantDwte, tol);
  expectClose('dwpe alone', dwpe, wantDwpe, tol);
});

test('a null wpe (no learned position table, Llama family) gives out = wte[token] and only dwte', () => {
  // Large positions and offsets must not matter: without a table there is nothing to index.
  const B = 3, T = 7, C = 33, V = 11, maxT = 8;
  const { tokens, dout } = makeInputs(B, T, C, V, maxT, 5);
  const wte = new SeededRandom(6).floats(V * C);
  const out = new Float32Array(B * T * C).fill(NaN);
  kernels.encoder_forward(out, tokens, null, wte, null, B, T, C, 1_000_000);
  for (let row = 0; row < B * T; row++) expect(out.subarray(row * C, (row + 1) * C)).toEqual(wte.subarray(tokens[row] * C, (tokens[row] + 1) * C));
  const wantDwte = new Float64Array(V * C);
  encoderBackward(wantDwte, new Float64Array(maxT * C), dout, tokens, null, B, T, C, 0);
  const dwte = new Float32Array(V * C);
  kernels.encoder_backward(dwte, null, dout, tokens, Int32Array.from(tokens, () => 1 << 30), B, T, C, 0);
  expectClose('dwte', dwte, wantDwte, { rel: 0, abs: B * T * U * 4 });
});
