/**
 * The quantized frozen-weight formats (int8 per output channel, NF4 with double-quantized scales)
 * and the matmuls that read them, against test/reference/quant.ts (written from the published
 * definitions) and the float64 linear-layer reference.
 *
 * Codes, scales and dequantized values must equal the reference exactly: both apply the same
 * float32 operations the formats define. Round-trip errors are held to bounds derived from the
 * formats, plus the float32 roundings named at each bound (u = 2^-24). The matmuls must equal a
 * float64 matmul with the reference's dequantized weights within float32 summation rounding
 * (reference/matmul.ts), as the fp32 matmul is.
 */
import { addon, ArenaHandle, TensorRef } from '../../lib/native';
import { readElements, writeElements } from '../../lib/tensor';
import { expectWithinRounding, FLOAT32_UNIT_ROUNDOFF as u, matmulBackwardRef, matmulForwardRef } from '../reference/matmul';
import {
  bf16Bits, bf16RoundRef, bf16ToFloatRef, dequantizeInt8Ref, dequantizeNf4Ref, dynamicCode, NF4_CODE, nf4BlockAbsmaxRef,
  quantizeInt8Ref, quantizeNf4Ref, roundingBound,
} from '../reference/quant';
import { SeededRandom } from '../reference/random';

const { kernels: k } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

function nf4Storage(n: number) {
  const blocks = Math.ceil(n / 64);
  return {
    packed: new Uint8Array(Math.ceil(n / 2)), qabsmax: new Uint8Array(blocks),
    absmax2: new Float32Array(Math.ceil(blocks / 256)), offset: new Float32Array(1),
  };
}

function quantizeNf4(weight: Float32Array) {
  const s = nf4Storage(weight.length);
  k.quantize_nf4(s.packed, s.qabsmax, s.absmax2, s.offset, weight, weight.length);
  return s;
}

function expectSame(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i]) && got[i] !== want[i]) throw new Error(`${what}[${i}] is ${got[i]} but the reference is ${want[i]}`);
  }
}

/** Weights with a spread of row and block magnitudes, as trained layers have. */
function weights(n: number, seed: number, rowLength = 64): Float32Array {
  const rng = new SeededRandom(seed);
  const w = rng.floats(n);
  for (let i = 0; i < n; i += rowLength) {
    const scale = 10 ** rng.uniform(-3, 1);
    for (let j = i; j < Math.min(i + rowLength, n); j++) w[j] = Math.fround(w[j] * scale);
  }
  return w;
}

describe('int8 per output channel', () => {
  test('codes follow round-half-to-even of w * 127 / absmax (bitsandbytes, torch.round)', () => {
    // absmax 127 makes the factor exactly 1, so x.5 values are exact ties.
    const w = Float32Array.of(127, 2.5, 3.5, -2.5, -0.5, 0.5, 126.5, -127, 0, 1, 1.5, 0, 0, 0);
    const q = new Int8Array(14), scale = new Float32Array(2);
    k.quantize_int8(q, scale, w, 2, 7);
    expect(Array.from(q)).toEqual([127, 2, 4, -2, 0, 0, 126, -127, 0, 1, 2, 0, 0, 0]);
    expect(Array.from(scale)).toEqual([1, 1]);
  });

  test('an all-zero row has scale 0 and codes 0, and dequantizes to zeros', () => {
    const q = new Int8Array(6).fill(5), scale = new Float32Array(2).fill(NaN);
    k.quantize_int8(q, scale, Float32Array.of(0, 0, 0, 1, -2, 0.5), 2, 3);
    expect(Array.from(q)).toEqual([0, 0, 0, 64, -127, 32]);
    expect(scale[0]).toBe(0);
    const back = new Float32Array(6).fill(NaN);
    k.dequantize_int8(back, q, scale, 2, 3);
    expect(Array.from(back.subarray(0, 3))).toEqual([0, 0, 0]);
  });

  test.each([[1, 1], [3, 70], [17, 129], [40, 300]])('OC=%i C=%i: codes, scales and dequantized values equal the reference; |error| <= scale/2', (OC, C) => {
    const w = weights(OC * C, OC * 31 + C, C);
    const q = new Int8Array(OC * C), scale = new Float32Array(OC);
    k.quantize_int8(q, scale, w, OC, C);
    const ref = quantizeInt8Ref(w, OC, C);
    expectSame('q', q, ref.q);
    expectSame('scale', scale, ref.scale);
    const back = new Float32Array(OC * C);
    k.dequantize_int8(back, q, scale, OC, C);
    expectSame('dequantized', back, dequantizeInt8Ref(ref.q, ref.scale, OC, C));
    for (let o = 0; o < OC; o++) {
      // scale/2 from rounding to the nearest code; 4.1 u absmax covers the float32 roundings of
      // 127/absmax, of w * factor, of absmax/127 and of q * scale (each relative u of <= absmax).
      const bound = ref.absmax[o] / 127 / 2 + 4.1 * u * ref.absmax[o];
      for (let c = 0; c < C; c++) {
        const err = Math.abs(back[o * C + c] - w[o * C + c]);
        if (!(err <= bound)) throw new Error(`element (${o},${c}): |${back[o * C + c]} - ${w[o * C + c]}| = ${err} exceeds ${bound}`);
      }
    }
  });
});

describe('NF4 with double-quantized block absmax', () => {
  test('the published code values, and a block holding +-absmax and zeros gives the codes of 1, -1 and 0', () => {
    expect(NF4_CODE.length).toBe(16);
    expect(NF4_CODE[7]).toBe(0);
    const w = new Float32Array(128);
    w[0] = 0.5;  // block 0: absmax 0.5 at element 0 -> code 15 (1.0) in the high nibble, zeros -> code 7
    w[65] = -3;  // block 1: -absmax at element 65 -> code 0 (-1.0) in the low nibble of byte 32
    const s = quantizeNf4(w);
    expect(s.packed[0]).toBe(0xf7);
    expect(s.packed[1]).toBe(0x77);
    expect(s.packed[32]).toBe(0x70);
    expect(s.packed[63]).toBe(0x77);
  });

  test('each code value times a power-of-two absmax maps to that code, two a byte, earlier element high', () => {
    const w = new Float32Array(64);
    for (let i = 0; i < 64; i++) w[i] = 2 * NF4_CODE[i % 16];
    const s = quantizeNf4(w);
    expect(Array.from(s.packed.subarray(0, 8))).toEqual([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    // One block: offset = its absmax, absmax2 = 0, and the reconstruction is exact.
    expect(s.offset[0]).toBe(2);
    const back = new Float32Array(64);
    k.dequantize_nf4(back, s.packed, s.qabsmax, s.absmax2, s.offset, 64);
    expectSame('dequantized', back, w);
  });

  test('double quantization: offset is the mean absmax, absmax2 the largest deviation, codes the nearest dynamic values', () => {
    // Two blocks with absmax 1 and 3: offset 2, deviations -1 and +1, absmax2 1; the dynamic code's
    // extremes are its smallest value (-0.99297, index 0) and 1 (index 255).
    const w = new Float32Array(128);
    w[3] = 1;
    w[100] = -3;
    const s = quantizeNf4(w);
    expect(s.offset[0]).toBe(2);
    expect(s.absmax2[0]).toBe(1);
    expect(Array.from(s.qabsmax)).toEqual([0, 255]);
    const code8 = dynamicCode();
    expect(code8.length).toBe(256);
    expect(code8[255]).toBe(1);
    expect(code8[0]).toBeCloseTo(-0.99297, 5);
    expect(new Set(code8).size).toBe(256);
  });

  // n not a multiple of 64 (a partial last block, blocks spanning rows) nor of 2 (a last half byte),
  // and more than 256 blocks (several second-level scales).
  test.each([1, 63, 64, 65, 1000, 64 * 256 + 77, 64 * 600 + 1])('n=%i: storage equals the reference exactly; round-trip errors within the format bounds', (n) => {
    const w = weights(n, n, 64);
    const s = quantizeNf4(w);
    const ref = quantizeNf4Ref(w, n);
    expectSame('packed', s.packed, ref.packed);
    expectSame('qabsmax', s.qabsmax, ref.qabsmax);
    expectSame('absmax2', s.absmax2, ref.absmax2);
    expectSame('offset', s.offset, ref.offset);
    const back = new Float32Array(n);
    k.dequantize_nf4(back, s.packed, s.qabsmax, s.absmax2, s.offset, n);
    expectSame('dequantized', back, dequantizeNf4Ref(ref.packed, ref.qabsmax, ref.absmax2, ref.offset[0], n));

    // Double quantization: the reconstructed absmax is off by at most half the gap between the
    // dynamic-code values around (absmax - offset)/absmax2, times absmax2; 4u absmax2 covers the
    // float32 roundings of absmax - offset, of the reciprocal and of the normalised value, and
    // 2u |absmax'| those of code8 * absmax2 and of adding the offset.
    const code8 = dynamicCode();
    const rebuilt = nf4BlockAbsmaxRef(s.qabsmax, s.absmax2, s.offset[0]);
    for (let b = 0; b < rebuilt.length; b++) {
      const a2 = s.absmax2[b >> 8];
      const y = a2 > 0 ? (ref.absmax[b] - s.offset[0]) / a2 : 0;
      const bound = a2 * (roundingBound(code8, y) + 4 * u) + 2 * u * Math.abs(rebuilt[b]);
      const err = Math.abs(rebuilt[b] - ref.absmax[b]);
      if (!(err <= bound)) throw new Error(`block ${b}: absmax ${ref.absmax[b]} rebuilt as ${rebuilt[b]}, error ${err} exceeds ${bound}`);
    }
    // Weights: half the gap between the NF4 codes around w/absmax, times absmax (3u absmax for
    // forming w * (1/absmax) in float32), plus the absmax reconstruction error, plus u |absmax'|
    // for the final product.
    for (let i = 0; i < n; i++) {
      const a = ref.absmax[i >> 6], a1 = rebuilt[i >> 6];
      const bound = a * (roundingBound(NF4_CODE, a > 0 ? w[i] / a : 0) + 3 * u) + Math.abs(a1 - a) + u * Math.abs(a1);
      const err = Math.abs(back[i] - w[i]);
      if (!(err <= bound)) throw new Error(`element ${i}: |${back[i]} - ${w[i]}| = ${err} exceeds ${bound}`);
    }
  });
});

// [N, C, OC]: N = 1 (decoding); C not a multiple of 64, so NF4 blocks straddle rows of W; OC odd and
// past the 16-row tile; C past the backward's 256-column tile. N >= 16 takes the slab + sgemm path:
// 208-row slabs at C = 300 (two, the last partial), 928-row slabs at C = 70.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 70, 3], [2, 64, 17], [5, 130, 33], [3, 300, 7], [9, 257, 40], [15, 65, 19],
  [16, 300, 231], [40, 70, 1001], [17, 1, 5], [1, 63, 21], [5, 65, 7], [17, 63, 45], [33, 130, 19],
  [33, 65, 33],
];

describe.each([1, 3])('quantized matmul with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  test.each(SHAPES)('int8, nf4 and bf16 forward and input backward equal float64 matmuls with the dequantized W, N=%i C=%i OC=%i', (N, C, OC) => {
    const rng = new SeededRandom(N * 7919 + C * 31 + OC);
    const inp = rng.floats(N * C), bias = rng.floats(OC), dout = rng.floats(N * OC), dinp0 = rng.floats(N * C);
    const w = weights(OC * C, C + OC, C);

    const int8 = quantizeInt8Ref(w, OC, C);
    const q = new Int8Array(OC * C), scale = new Float32Array(OC);
    k.quantize_int8(q, scale, w, OC, C);
    const nf4 = quantizeNf4(w);
    const nf4Ref = quantizeNf4Ref(w, OC * C);
    const bf16 = Uint16Array.from(w, (x) => bf16Bits(bf16RoundRef(x)));
    const formats = [
      {
        name: 'int8', deq: dequantizeInt8Ref(int8.q, int8.scale, OC, C),
        forward: (out: Float32Array, b: Float32Array | null) => k.matmul_int8_forward(out, inp, q, scale, b, N, C, OC),
        backward: (dinp: Float32Array) => k.matmul_int8_backward(dinp, dout, q, scale, N, C, OC),
      },
      {
        name: 'nf4', deq: dequantizeNf4Ref(nf4Ref.packed, nf4Ref.qabsmax, nf4Ref.absmax2, nf4Ref.offset[0], OC * C),
        forward: (out: Float32Array, b: Float32Array | null) =>
          k.matmul_nf4_forward(out, inp, nf4.packed, nf4.qabsmax, nf4.absmax2, nf4.offset, b, N, C, OC),
        backward: (dinp: Float32Array) => k.matmul_nf4_backward(dinp, dout, nf4.packed, nf4.qabsmax, nf4.absmax2, nf4.offset, N, C, OC),
      },
      {
        name: 'bf16', deq: bf16ToFloatRef(bf16),
        forward: (out: Float32Array, b: Float32Array | null) => k.matmul_bf16_forward(out, inp, bf16, b, N, C, OC),
        backward: (dinp: Float32Array) => k.matmul_bf16_backward(dinp, dout, bf16, N, C, OC),
      },
    ];
    for (const fmt of formats) {
      for (const b of [bias, null]) {
        const want = matmulForwardRef(inp, fmt.deq, b, N, C, OC);
        const out = new Float32Array(N * OC).fill(NaN);  // written, never read
        fmt.forward(out, b);
        expectWithinRounding(`${fmt.name} forward${b ? '' : ' (no bias)'}`, out, want.out, want.magnitude, C + 1);
      }
      // The backward accumulates into dinp.
      const grads = matmulBackwardRef(dout, inp, fmt.deq, N, C, OC);
      const dinp = Float32Array.from(dinp0);
      fmt.backward(dinp);
      const want = grads.dinp.map((g, i) => g + dinp0[i]);
      const magnitude = grads.dinpMagnitude.map((m, i) => m + Math.abs(dinp0[i]));
      expectWithinRounding(`${fmt.name} input backward`, dinp, want, magnitude, OC + 1);
    }
  });
});

describe('bf16 weights', () => {
  test('convert_f32_to_bf16 rounds to nearest, ties to even; overflow to infinity; NaN, infinities, zeros and subnormals', () => {
    const f = Math.fround;
    const values = [
      1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 1 - 2 ** -9, 3.140625, f(Math.PI), -0, 0,
      Infinity, -Infinity, f(3.3895e38), f(3.397e38), 2 ** -130, 2 ** -133 * 1.5, 2 ** -149, -(2 ** -126), f(1e-40),
    ];
    const inp = Float32Array.from(values);
    const out = new Uint16Array(values.length);
    k.convert_f32_to_bf16(out, inp, values.length);
    // Spelled out where the rule decides: the tie 1 + 2^-8 goes down to 1 (even), 1 + 3*2^-8 up to
    // 1 + 2^-6 (even), and 3.397e38 is past the last bf16 (2^128 - 2^120) by more than half a step.
    expect(out[0]).toBe(0x3f80);
    expect(out[1]).toBe(0x3f80);
    expect(out[2]).toBe(0x3f82);
    expect(out[3]).toBe(0x3f81);
    expect(out[4]).toBe(0xbf80);
    expect(out[8]).toBe(0x8000);
    expect(out[10]).toBe(0x7f80);
    expect(out[13]).toBe(0x7f80);
    for (let i = 0; i < values.length; i++) expect([i, out[i]]).toEqual([i, bf16Bits(bf16RoundRef(inp[i]))]);
    const nan = new Uint16Array(3);
    k.convert_f32_to_bf16(nan, Float32Array.of(NaN, -NaN, 1), 3);
    expect(Number.isNaN(bf16ToFloatRef(nan)[0]) && Number.isNaN(bf16ToFloatRef(nan)[1])).toBe(true);
  });

  // 1, 15, 16, 17 and 1000: the vector width, its tail and a multi-thread split.
  test.each([1, 15, 16, 17, 1000, 70001])('n=%i random values of every magnitude equal the reference bits', (n) => {
    const rng = new SeededRandom(n);
    const inp = Float32Array.from({ length: n }, () => rng.uniform(-1, 1) * 2 ** Math.floor(rng.uniform(-140, 128)));
    const out = new Uint16Array(n).fill(0xffff);
    k.convert_f32_to_bf16(out, inp, n);
    for (let i = 0; i < n; i++) {
      const want = bf16Bits(bf16RoundRef(inp[i]));
      if (out[i] !== want) throw new Error(`element ${i} (${inp[i]}): 0x${out[i].toString(16)} but the reference is 0x${want.toString(16)}`);
    }
  });

  test('widening is exact: a forward with a one-hot input returns the weight row as float32', () => {
    const C = 33, OC = 5;
    const bits = Uint16Array.from({ length: OC * C }, (_, i) => (i * 2654435761) >>> 16 & 0x7f7f);
    const want = bf16ToFloatRef(bits);
    for (const c of [0, 16, 32]) {
      const inp = new Float32Array(C);
      inp[c] = 1;
      const out = new Float32Array(OC);
      k.matmul_bf16_forward(out, inp, bits, null, 1, C, OC);
      expectSame(`column ${c}`, out, Array.from({ length: OC }, (_, o) => want[o * C + c]));
    }
  });
});

describe('quantized and bf16 weights in arena views', () => {
  const arenas: ArenaHandle[] = [];
  afterEach(() => {
    while (arenas.length) arenas.pop()!.free();
  });
  /** A CPU arena view holding `values` at an odd slot offset, so views never start at slot 0. */
  function inArena(values: Int8Array | Uint8Array | Uint16Array): TensorRef {
    const arena = new addon.Arena('cpu', Math.ceil(values.byteLength / 4) + 3);
    arenas.push(arena);
    arena.fill(NaN);
    return writeElements(arena, 3, values);
  }
  function floatsIn(values: Float32Array): TensorRef {
    const arena = new addon.Arena('cpu', values.length + 1);
    arenas.push(arena);
    arena.write(1, values);
    return { arena, offset: 1, numel: values.length };
  }

  test.each([[1, 1, 1], [5, 65, 7], [17, 130, 33]])('N=%i C=%i OC=%i: every kernel gives bit-identical results from views and from typed arrays', (N, C, OC) => {
    const rng = new SeededRandom(N + C * 3 + OC * 5);
    const w = weights(OC * C, C, C), inp = rng.floats(N * C), bias = rng.floats(OC), dout = rng.floats(N * OC), dinp0 = rng.floats(N * C);
    // int8: quantize into a view, then every int8 kernel from views.
    const q = new Int8Array(OC * C), scale = new Float32Array(OC);
    k.quantize_int8(q, scale, w, OC, C);
    const qView = inArena(new Int8Array(OC * C).fill(77)), scaleView = floatsIn(new Float32Array(OC));
    k.quantize_int8(qView, scaleView, floatsIn(w), OC, C);
    expectSame('q from a view', readElements(qView, Int8Array, OC * C), q);
    expectSame('scale', scaleView.arena.read(scaleView.offset, OC), scale);
    // nf4
    const s = quantizeNf4(w);
    const n = OC * C, blocks = Math.ceil(n / 64);
    const packedView = inArena(new Uint8Array(Math.ceil(n / 2)).fill(9)), qabsmaxView = inArena(new Uint8Array(blocks).fill(9));
    const absmax2View = floatsIn(new Float32Array(Math.ceil(blocks / 256))), offsetView = floatsIn(new Float32Array(1));
    k.quantize_nf4(packedView, qabsmaxView, absmax2View, offsetView, w, n);
    expectSame('packed from a view', readElements(packedView, Uint8Array, Math.ceil(n / 2)), s.packed);
    expectSame('qabsmax from a view', readElements(qabsmaxView, Uint8Array, blocks), s.qabsmax);
    // bf16
    const bf16 = new Uint16Array(n);
    k.convert_f32_to_bf16(bf16, w, n);
    const bf16View = inArena(new Uint16Array(n));
    k.convert_f32_to_bf16(bf16View, w, n);
    expectSame('bf16 from a view', readElements(bf16View, Uint16Array, n), bf16);

    const pairs: [string, (out: Float32Array, viewed: boolean) => void][] = [
      ['dequantize_int8', (out, v) => k.dequantize_int8(out.subarray(0, n), v ? qView : q, scale, OC, C)],
      ['dequantize_nf4', (out, v) => k.dequantize_nf4(out.subarray(0, n), v ? packedView : s.packed, v ? qabsmaxView : s.qabsmax, s.absmax2, s.offset, n)],
      ['matmul_int8_forward', (out, v) => k.matmul_int8_forward(out, inp, v ? qView : q, scale, bias, N, C, OC)],
      ['matmul_nf4_forward', (out, v) => k.matmul_nf4_forward(out, inp, v ? packedView : s.packed, v ? qabsmaxView : s.qabsmax, s.absmax2, s.offset, bias, N, C, OC)],
      ['matmul_bf16_forward', (out, v) => k.matmul_bf16_forward(out, inp, v ? bf16View : bf16, bias, N, C, OC)],
      ['matmul_int8_backward', (out, v) => { out.set(dinp0); k.matmul_int8_backward(out, dout, v ? qView : q, scale, N, C, OC); }],
      ['matmul_nf4_backward', (out, v) => { out.set(dinp0); k.matmul_nf4_backward(out, dout, v ? packedView : s.packed, v ? qabsmaxView : s.qabsmax, s.absmax2, s.offset, N, C, OC); }],
      ['matmul_bf16_backward', (out, v) => { out.set(dinp0); k.matmul_bf16_backward(out, dout, v ? bf16View : bf16, N, C, OC); }],
    ];
    const size = Math.max(n, N * OC, N * C);
    for (const [name, run] of pairs) {
      const fromArrays = new Float32Array(size), fromViews = new Float32Array(size);
      run(fromArrays, false);
      run(fromViews, true);
      expectSame(name, fromViews, fromArrays);
    }
  });

  test('hostile views: too short, outside the arena, freed, a float view of the wrong type: one-line errors', () => {
    const OC = 3, C = 5;
    const q = inArena(new Int8Array(OC * C));  // 4 slots: 16 bytes
    const out = new Float32Array(OC * C), scale = new Float32Array(OC);
    expect(() => readElements(q, Int8Array, 17)).toThrow(/^readElements: 17 elements of 1 bytes do not fit the view's 4 float slots$/);
    const short = { ...q, numel: 3 };  // 12 bytes < 15
    expect(() => k.dequantize_int8(out, short, scale, OC, C))
      .toThrow(/^dequantize_int8: expected q to hold at least 15 bytes for the given dimensions but it holds 12$/);
    const w = inArena(new Uint16Array(OC * C));  // 8 slots: 16 values
    expect(() => k.matmul_bf16_forward(new Float32Array(OC), new Float32Array(C), { ...w, numel: 7 }, null, 1, C, OC))
      .toThrow(/^matmul_bf16_forward: expected w to hold at least 15 16-bit values for the given dimensions but it holds 14$/);
    expect(() => k.dequantize_int8(out, { ...q, numel: 5 }, scale, OC, C)).toThrow(/^dequantize_int8: q view \[3, 8\) lies outside its arena of 7 floats$/);
    expect(() => k.dequantize_int8(out, { ...q, offset: -1 }, scale, OC, C)).toThrow(/^dequantize_int8: expected a view with whole, non-negative offset and numel for q \(argument 2\)/);
    expect(() => k.convert_f32_to_bf16(new Int8Array(8) as unknown as Uint16Array, new Float32Array(2), 2))
      .toThrow(/^convert_f32_to_bf16: expected a Uint16Array or an \{arena, offset, numel\} view for w_out \(argument 1\) but received an Int8Array of length 8$/);
    const packed = inArena(new Uint8Array(8));
    packed.arena.free();
    arenas.splice(arenas.indexOf(packed.arena), 1);
    const s = nf4Storage(OC * C);
    expect(() => k.matmul_nf4_forward(new Float32Array(OC), new Float32Array(C), packed, s.qabsmax, s.absmax2, s.offset, null, 1, C, OC))
      .toThrow(/^matmul_nf4_forward: packed refers to an arena that was freed$/);
  });

  test('a view whose getters free its arena during the call is refused, not read', () => {
    const OC = 2, C = 4;
    const q = inArena(new Int8Array(OC * C).fill(1));
    const hostile = {
      arena: q.arena, offset: q.offset,
      get numel() {
        q.arena.free();
        return q.numel;
      },
    };
    arenas.splice(arenas.indexOf(q.arena), 1);
    expect(() => k.dequantize_int8(new Float32Array(OC * C), hostile, new Float32Array(OC), OC, C))
      .toThrow(/^dequantize_int8: q refers to an arena that was freed$/);
  });
});

describe('binding safety', () => {
  const OC = 3, C = 5;
  const w = new Float32Array(OC * C).fill(0.25);
  const expectThrows = (fn: () => void, pattern: RegExp) => expect(fn).toThrow(pattern);
  // By name: the addon's errors come from the main realm, not jest's sandbox, so instanceof fails.
  const expectTypeError = (fn: () => void, pattern: RegExp) => {
    let caught: unknown;
    try {
      fn();
    } catch (e) {
      caught = e;
    }
    expect((caught as Error | undefined)?.name).toBe('TypeError');
    expect((caught as Error).message).toMatch(pattern);
  };

  test('short buffers are refused with the argument and the sizes', () => {
    expectThrows(() => k.quantize_int8(new Int8Array(OC * C - 1), new Float32Array(OC), w, OC, C),
      /quantize_int8: expected q to hold at least 15 bytes for the given dimensions but it holds 14/);
    expectThrows(() => k.matmul_int8_forward(new Float32Array(2 * OC), new Float32Array(2 * C), new Int8Array(OC * C), new Float32Array(OC - 1), null, 2, C, OC),
      /matmul_int8_forward: expected scale to hold at least 3 floats/);
    const s = nf4Storage(OC * C);
    expectThrows(() => k.matmul_nf4_forward(new Float32Array(OC), new Float32Array(C), s.packed.subarray(1), s.qabsmax, s.absmax2, s.offset, null, 1, C, OC),
      /matmul_nf4_forward: expected packed to hold at least 8 bytes for the given dimensions but it holds 7/);
    expectThrows(() => k.matmul_nf4_backward(new Float32Array(C), new Float32Array(OC), s.packed, new Uint8Array(0), s.absmax2, s.offset, 1, C, OC),
      /matmul_nf4_backward: expected qabsmax to hold at least 1 bytes/);
    expectThrows(() => k.dequantize_nf4(new Float32Array(15), s.packed, s.qabsmax, s.absmax2, new Float32Array(0), 15),
      /dequantize_nf4: expected offset to hold at least 1 floats/);
    expectThrows(() => k.quantize_nf4(s.packed, s.qabsmax, s.absmax2, s.offset, w, 0), /quantize_nf4: n must be at least 1/);
  });

  test('wrong array types are refused', () => {
    const anyK = k as unknown as Record<string, (...a: unknown[]) => void>;
    expectTypeError(() => anyK.quantize_int8(new Uint8Array(OC * C), new Float32Array(OC), w, OC, C), /^quantize_int8: expected an Int8Array or an \{arena, offset, numel\} view for q \(argument 1\) but received a Uint8Array of length 15$/);
    expectTypeError(() => anyK.dequantize_int8(new Float32Array(OC * C), new Float32Array(OC * C), new Float32Array(OC), OC, C), /^dequantize_int8: expected an Int8Array or an \{arena, offset, numel\} view for q \(argument 2\) but received a Float32Array/);
    const s = nf4Storage(OC * C);
    expectTypeError(() => anyK.quantize_nf4(new Int8Array(8), s.qabsmax, s.absmax2, s.offset, w, OC * C), /^quantize_nf4: expected a Uint8Array or an \{arena, offset, numel\} view for packed \(argument 1\) but received an Int8Array of length 8$/);
    expectTypeError(() => anyK.matmul_nf4_forward(new Float32Array(OC), new Float32Array(C), s.packed, [0], s.absmax2, s.offset, null, 1, C, OC), /^matmul_nf4_forward: expected a Uint8Array or an \{arena, offset, numel\} view for qabsmax \(argument 4\)/);
    expectTypeError(() => anyK.matmul_int8_forward(new Float32Array(OC), new Float32Array(C), new Int8Array(OC * C), new Float32Array(OC), null, 1, C, 0), /^matmul_int8_forward: expected .* for OC \(argument 8\)/);
  });

  test('resizable and detached byte buffers are refused', () => {
    const resizable = new Int8Array(new ArrayBuffer(OC * C, { maxByteLength: 64 }));
    expectThrows(() => k.dequantize_int8(new Float32Array(OC * C), resizable, new Float32Array(OC), OC, C), /q \(argument 2\) is backed by a resizable ArrayBuffer/);
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    const s = nf4Storage(OC * C);
    expectThrows(() => k.dequantize_nf4(new Float32Array(15), detached, s.qabsmax, s.absmax2, s.offset, 15), /packed \(argument 2\) is a view of a detached ArrayBuffer/);
  });
});
