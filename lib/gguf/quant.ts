/**
 * Tensor data encodings of a GGUF file, bit for bit as ggml defines them:
 *   F32   little-endian float32
 *   F16   IEEE binary16, rounded to nearest, ties to even (ggml's GGML_FP32_TO_FP16, numpy's astype)
 *   BF16  the top 16 bits of float32, rounded to nearest even (ggml_compute_fp32_to_bf16)
 *   Q8_0  blocks of 32 consecutive values along a row (ggml-common.h block_q8_0, 34 bytes):
 *         { fp16 d; int8 qs[32] }, d = max|x| / 127, qs = roundf(x / d) (ggml-quants.c
 *         quantize_row_q8_0_ref, all in float32); a row's length must be a multiple of 32.
 */
import { float32ToBF16 } from '../io/safetensors';
import type { GGMLTypeName } from './format';

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> binary16 bits, round to nearest even; overflow to infinity, NaN stays NaN. */
export function floatToHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: units of 2^-24; (1.mantissa) * 2^(exponent-127) = m24 >> (14 - e) units.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m24 = mantissa | 0x800000;
    let half = m24 >>> shift;
    const rest = m24 & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa moves into the exponent, as it should (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** ggml's roundf: to nearest, halves away from zero. */
function roundAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** Q8_0 blocks of `values` (a whole number of blocks) into `out` (34 bytes per block). */
export function quantizeQ8_0(values: Float32Array, out: Uint8Array = new Uint8Array((values.length / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES)): Uint8Array {
  if (values.length % Q8_0_BLOCK !== 0) throw new RangeError(`quantizeQ8_0: expected a multiple of ${Q8_0_BLOCK} values but received ${values.length}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < values.length / Q8_0_BLOCK; b++) {
    const x = values.subarray(b * Q8_0_BLOCK, (b + 1) * Q8_0_BLOCK);
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[j]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, floatToHalfBits(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(at + 2 + j, roundAwayFromZero(Math.fround(x[j] * id)));
  }
  return out;
}

/** Q8_0 blocks back to float32: x = d * qs (ggml-quants.c dequantize_row_q8_0). */
export function dequantizeQ8_0(bytes: Uint8Array, halfToFloat: (bits: number) => number): Float32Array {
  if (bytes.length % Q8_0_BLOCK_BYTES !== 0) throw new RangeError(`dequantizeQ8_0: expected a multiple of ${Q8_0_BLOCK_BYTES} bytes but received ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / Q8_0_BLOCK_BYTES) * Q8_0_BLOCK);
  for (let b = 0; b < bytes.length / Q8_0_BLOCK_BYTES; b++) {
    const d = halfToFloat(view.getUint16(b * Q8_0_BLOCK_BYTES, true));
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = Math.fround(d * view.getInt8(b * Q8_0_BLOCK_BYTES + 2 + j));
  }
  return out;
}

/** Bytes of a tensor of `numel` values stored as `type` (Q8_0: numel a multiple of 32). */
export function encodedBytes(type: GGMLTypeName, numel: number): number {
  switch (type) {
    case 'F32': return 4 * numel;
    case 'F16': case 'BF16': return 2 * numel;
    case 'Q8_0': return (numel / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  }
}

/** Whether rows of `rowLength` values can be stored as `type` (Q8_0's blocks do not cross rows). */
export function fitsRows(type: GGMLTypeName, rowLength: number): boolean {
  return type !== 'Q8_0' || rowLength % Q8_0_BLOCK === 0;
}

/** Values encoded per chunk: bounds the memory an export holds besides the model (a multiple of 32). */
const CHUNK_VALUES = 1 << 20;

/** The bytes of `values` stored as `type`, in chunks of at most CHUNK_VALUES values. */
export function* encodeTensor(values: Float32Array, type: GGMLTypeName): Generator<Uint8Array> {
  for (let start = 0; start < values.length; start += CHUNK_VALUES) {
    const part = values.subarray(start, Math.min(values.length, start + CHUNK_VALUES));
    switch (type) {
      case 'F32': {
        // Copied, so the bytes are little-endian float32 whatever views `values` shares its buffer with.
        const copy = new Float32Array(part);
        yield new Uint8Array(copy.buffer);
        break;
      }
      case 'F16': {
        const half = new Uint16Array(part.length);
        for (let i = 0; i < part.length; i++) half[i] = floatToHalfBits(part[i]);
        yield new Uint8Array(half.buffer);
        break;
      }
      case 'BF16':
        yield new Uint8Array(float32ToBF16(part).buffer);
        break;
      case 'Q8_0':
        yield quantizeQ8_0(part);
        break;
    }
  }
}
