/**
 * Tensor data encodings of a GGUF file, bit for bit as ggml defines them:
 *   F32   little-endian float32
 *   F16   IEEE binary16, rounded to nearest, ties to even (ggml's GGML_FP32_TO_FP16, numpy's astype)
 *   BF16  the top 16 bits of float32, rounded to nearest even (ggml_compute_fp32_to_bf16)
 *   Q4_0, Q5_0, Q8_0 (blocks of 32 values along a row), Q4_K, Q5_K, Q6_K (super-blocks of 256): ggml's block
 *         layouts (ggml-common.h), quantized and dequantized by the native quantize_ggml /
 *         dequantize_ggml kernels (ggml-quants.c's reference quantizers and dequantizers, bit for bit).
 *         Blocks do not cross rows: a row's length must be a multiple of the block.
 */
import { float32ToBF16 } from '../io/safetensors';
import { kernels } from '../native';
import { GGML_TYPE, GGMLTypeName } from './format';
import { GGML_BLOCK_TYPES } from './ggml_types';

/** Values and bytes per block of each type (ggml.c type_traits; the float types are blocks of one value). */
const BLOCKS: Record<GGMLTypeName, { block: number; bytes: number }> = {
  F32: { block: 1, bytes: 4 }, F16: { block: 1, bytes: 2 }, BF16: { block: 1, bytes: 2 }, ...GGML_BLOCK_TYPES,
};

/** Values per block of `type` (a row's length must be a multiple of it). */
export function blockValues(type: GGMLTypeName): number {
  return BLOCKS[type].block;
}

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

/** Bytes of a tensor of `numel` values stored as `type` (numel a whole number of blocks). */
export function encodedBytes(type: GGMLTypeName, numel: number): number {
  const b = BLOCKS[type];
  if (numel % b.block !== 0) throw new RangeError(`encodedBytes: ${numel} values are not a whole number of ${type} blocks of ${b.block}`);
  return (numel / b.block) * b.bytes;
}

/** Rows of `rowLength` values quantized as `type` (a block type) by the native kernel. */
export function quantizeRows(values: Float32Array, type: GGMLTypeName, rowLength: number): Uint8Array {
  const rows = values.length / rowLength;
  const out = new Uint8Array(encodedBytes(type, values.length));
  kernels.quantize_ggml(out, values, GGML_TYPE[type], rows, rowLength);
  return out;
}

/** Rows of `rowLength` values of a block type back to float32 (ggml's dequantize_row_*). */
export function dequantizeRows(bytes: Uint8Array, type: GGMLTypeName, rowLength: number): Float32Array {
  const rowBytes = encodedBytes(type, rowLength);
  if (bytes.length % rowBytes !== 0) throw new RangeError(`dequantizeRows: ${bytes.length} bytes are not a whole number of ${type} rows of ${rowBytes} bytes`);
  const rows = bytes.length / rowBytes;
  const out = new Float32Array(rows * rowLength);
  kernels.dequantize_ggml(out, bytes, GGML_TYPE[type], rows, rowLength);
  return out;
}

/** Values encoded per chunk: bounds the memory an export holds besides the model (whole rows, at least one). */
const CHUNK_VALUES = 1 << 20;

/** The bytes of `values` (rows of `rowLength`) stored as `type`, in chunks of whole rows. */
export function* encodeTensor(values: Float32Array, type: GGMLTypeName, rowLength: number): Generator<Uint8Array> {
  const chunk = Math.max(1, Math.floor(CHUNK_VALUES / rowLength)) * rowLength;
  for (let start = 0; start < values.length; start += chunk) {
    const part = values.subarray(start, Math.min(values.length, start + chunk));
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
      default:
        yield quantizeRows(part, type, rowLength);
    }
  }
}
