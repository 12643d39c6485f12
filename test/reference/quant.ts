/**
 * References for the quantized weight formats, written from their published definitions (not from
 * native/cpu/quant.cc):
 *  - int8 weight-only per output channel, as bitsandbytes' int8_vectorwise_quant: row absmax,
 *    q = round(w * (127 / absmax)) with torch.round's half-to-even rounding, scale = absmax / 127;
 *  - NF4 of QLoRA (Dettmers et al. 2023) as bitsandbytes stores it: the 16 published code values,
 *    blocks of 64 over the flattened weight, the upper code taken when x = w * (1/absmax) is above
 *    the float32 midpoint of two neighbours (dQuantizeNF4's thresholds), the earlier element in the
 *    high nibble; double quantization (compress_statistics): offset = mean of the block absmax,
 *    blocks of 256 of (absmax - offset) mapped to the nearest value of create_dynamic_map(signed)
 *    with a float32 absmax2 each.
 * Each float32 operation the formats define is rounded with Math.fround, so codes and dequantized
 * values are exact; quantities a test derives a bound from are float64.
 */

const f = Math.fround;

/** QLoRA's NormalFloat4 values (bitsandbytes functional.py, get_4bit_type('nf4')). */
export const NF4_CODE: readonly number[] = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
];

/** torch.linspace(start, end, steps) in float32: ATen fills the first half forward, the second from the end. */
function linspaceF32(start: number, end: number, steps: number): number[] {
  const step = f(f(end - start) / (steps - 1));
  const out: number[] = [];
  for (let j = 0; j < steps; j++) out.push(j < steps / 2 ? f(start + f(step * j)) : f(end - f(step * (steps - 1 - j))));
  return out;
}

/**
 * bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i = 0..6,
 * the midpoints of linspace(0.1, 1, 2^i + 1) scaled by +-10^(i-6), then 0 and 1, sorted (256 values).
 */
export function dynamicCode(): number[] {
  const values: number[] = [];
  for (let i = 0; i < 7; i++) {
    const bounds = linspaceF32(f(0.1), 1, 2 ** i + 1);
    const power = f(Number(`1e${i - 6}`));
    for (let j = 0; j + 1 < bounds.length; j++) {
      const mean = f(f(bounds[j] + bounds[j + 1]) / 2);
      values.push(f(power * mean), f(-power * mean));
    }
  }
  values.push(0, 1);
  return values.sort((a, b) => a - b);
}

/** Round half to even (torch.round). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function quantizeInt8Ref(weight: ArrayLike<number>, OC: number, C: number) {
  const q = new Int8Array(OC * C), scale = new Float32Array(OC), absmax = new Float64Array(OC);
  for (let o = 0; o < OC; o++) {
    let m = 0;
    for (let c = 0; c < C; c++) m = Math.max(m, Math.abs(weight[o * C + c]));
    absmax[o] = m;
    scale[o] = f(m / 127);
    const factor = m > 0 ? f(127 / m) : 0;
    for (let c = 0; c < C; c++) q[o * C + c] = roundHalfEven(f(weight[o * C + c] * factor));
  }
  return { q, scale, absmax };
}

export function dequantizeInt8Ref(q: Int8Array, scale: ArrayLike<number>, OC: number, C: number): Float64Array {
  const w = new Float64Array(OC * C);
  for (let o = 0; o < OC; o++) for (let c = 0; c < C; c++) w[o * C + c] = f(q[o * C + c] * scale[o]);
  return w;
}

/** Nearest value of a sorted code, ties to the lower one. */
function nearest(code: readonly number[], x: number): number {
  let best = 0;
  for (let k = 1; k < code.length; k++) if (Math.abs(code[k] - x) < Math.abs(code[best] - x)) best = k;
  return best;
}

export function nf4CodeOf(x: number): number {
  let k = 0;
  while (k < 15 && x > f((NF4_CODE[k] + NF4_CODE[k + 1]) / 2)) k++;
  return k;
}

/** NF4 storage of n weights plus the exact block absmax (before double quantization). */
export function quantizeNf4Ref(weight: ArrayLike<number>, n: number) {
  const blocks = Math.ceil(n / 64), statBlocks = Math.ceil(blocks / 256);
  const packed = new Uint8Array(Math.ceil(n / 2)), absmax = new Float64Array(blocks);
  const codes = new Uint8Array(n);
  for (let b = 0; b < blocks; b++) {
    const first = b * 64, last = Math.min(first + 64, n);
    let m = 0;
    for (let i = first; i < last; i++) m = Math.max(m, Math.abs(weight[i]));
    absmax[b] = m;
    const inv = m > 0 ? f(1 / m) : 0;
    for (let i = first; i < last; i++) codes[i] = nf4CodeOf(f(weight[i] * inv));
  }
  for (let i = 0; i < n; i++) packed[i >> 1] |= i % 2 === 0 ? codes[i] << 4 : codes[i];
  let sum = 0;
  for (let b = 0; b < blocks; b++) sum += absmax[b];
  const offset = f(sum / blocks);
  const code8 = dynamicCode();
  const qabsmax = new Uint8Array(blocks), absmax2 = new Float32Array(statBlocks);
  for (let s = 0; s < statBlocks; s++) {
    const first = s * 256, last = Math.min(first + 256, blocks);
    let m = 0;
    for (let b = first; b < last; b++) m = Math.max(m, Math.abs(f(absmax[b] - offset)));
    absmax2[s] = m;
    const inv = m > 0 ? f(1 / m) : 0;
    for (let b = first; b < last; b++) qabsmax[b] = nearest(code8, f(f(absmax[b] - offset) * inv));
  }
  return { packed, qabsmax, absmax2, offset: Float32Array.of(offset), absmax, codes };
}

/** The block absmax as the format reconstructs it: code8[q] * absmax2 + offset, in float32. */
export function nf4BlockAbsmaxRef(qabsmax: Uint8Array, absmax2: ArrayLike<number>, offset: number): Float64Array {
  const code8 = dynamicCode();
  return Float64Array.from(qabsmax, (q, b) => f(f(code8[q] * absmax2[b >> 8]) + offset));
}

export function dequantizeNf4Ref(packed: Uint8Array, qabsmax: Uint8Array, absmax2: ArrayLike<number>, offset: number, n: number): Float64Array {
  const blockAbsmax = nf4BlockAbsmaxRef(qabsmax, absmax2, offset);
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const code = i % 2 === 0 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15;
    w[i] = f(NF4_CODE[code] * blockAbsmax[i >> 6]);
  }
  return w;
}

/**
 * The most a nearest-value rounding of x to a sorted code can err: half the gap between the two
 * neighbouring values enclosing x, or the distance to the end value when x lies outside the code.
 */
export function roundingBound(code: readonly number[], x: number): number {
  if (x <= code[0]) return code[0] - x;
  for (let k = 0; k + 1 < code.length; k++) if (x <= code[k + 1]) return (code[k + 1] - code[k]) / 2;
  return x - code[code.length - 1];
}

/**
 * bfloat16 rounding of a float32 value x, from the format's definition (not from bit tricks): the
 * representable values near |x| are spaced 2^(e-7) for |x| in [2^e, 2^(e+1)) (2^-133 below 2^-126,
 * bf16 sharing float32's exponent range); x goes to the nearest one, ties to the even multiple, and
 * values that round to 2^128 or beyond become infinities. Returns the bf16 value (NaN for NaN).
 */
export function bf16RoundRef(x: number): number {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;  // log2 may round up just below a power of two
  if (2 ** (e + 1) <= a) e += 1;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const m = a / ulp;  // exact: a has 24 significant bits and ulp is a power of two
  const floor = Math.floor(m);
  const frac = m - floor;
  const r = frac > 0.5 || (frac === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  const value = r * ulp;
  return Math.sign(x) * (value >= 2 ** 128 ? Infinity : value);
}

/** The float32 bit pattern's top 16 bits of a value bf16RoundRef returned (NaN: any NaN's). */
export function bf16Bits(value: number): number {
  const f = new Float32Array([value]);
  return new Uint32Array(f.buffer)[0] >>> 16;
}

/** The float32 value of bf16 bit patterns (exact). */
export function bf16ToFloatRef(bits: ArrayLike<number>): Float64Array {
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  return Float64Array.from({ length: bits.length }, (_, i) => {
    u[0] = bits[i] << 16;
    return f[0];
  });
}
