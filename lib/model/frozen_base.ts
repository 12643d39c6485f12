/**
 * A frozen base's linear weights stored in a lower precision (LoRA/QLoRA's `--base-dtype`):
 *   bf16  the weight rounded to bfloat16 (2 bytes a weight)
 *   int8  per-output-channel absmax (bitsandbytes' row-wise int8; 1 byte + 4 bytes a row)
 *   nf4   QLoRA's NormalFloat4 in blocks of 64 with double-quantized block scales (~0.52 bytes)
 * The matmuls read these formats directly (native/include/gptune/kernels.inc); no full-size float32
 * copy of a weight exists after it is stored. Only the linear layers of the blocks are stored here:
 * the embedding, the LM head, norms and biases stay float32 in the decoder's parameter arena (as
 * QLoRA keeps them), and nothing here takes a gradient except with respect to the layer's input.
 */
import { UsageError } from '../errors';
import { float32ToBF16 } from '../io/safetensors';
import { kernels } from '../native';
import type { DeviceName, F } from '../native';

export const BASE_DTYPES = ['f32', 'bf16', 'int8', 'nf4'] as const;
export type BaseDtype = (typeof BASE_DTYPES)[number];
export type StoredDtype = Exclude<BaseDtype, 'f32'>;

type Stored =
  | { dtype: 'bf16'; OC: number; C: number; bits: Uint16Array }
  | { dtype: 'int8'; OC: number; C: number; q: Int8Array; scale: Float32Array }
  | { dtype: 'nf4'; OC: number; C: number; packed: Uint8Array; qabsmax: Uint8Array; absmax2: Float32Array; offset: Float32Array };

/** Bytes one (OC, C) weight takes in `dtype` (what a memory plan counts). */
export function storedWeightBytes(dtype: BaseDtype, OC: number, C: number): number {
  const n = OC * C;
  switch (dtype) {
    case 'f32': return 4 * n;
    case 'bf16': return 2 * n;
    case 'int8': return n + 4 * OC;
    case 'nf4': {
      const blocks = Math.ceil(n / 64);
      return Math.ceil(n / 2) + blocks + 4 * Math.ceil(blocks / 256) + 4;
    }
  }
}

/** The frozen linear weights of a model in one low-precision format, by parameter name. */
export class FrozenLinears {
  private readonly weights = new Map<string, Stored>();

  constructor(readonly dtype: StoredDtype, readonly device: DeviceName) {
    if (device !== 'cpu') {
      throw new UsageError(`base dtype ${dtype}: the ${dtype} base weights run on the CPU only for now (use --base-dtype f32 on CUDA)`);
    }
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  /** Stores the (OC, C) float32 weight `values` in this format. */
  set(name: string, OC: number, C: number, values: Float32Array): void {
    if (values.length !== OC * C) throw new RangeError(`frozen weight ${name}: expected ${OC * C} values but received ${values.length}`);
    const k = kernels;
    if (this.dtype === 'bf16') {
      this.weights.set(name, { dtype: 'bf16', OC, C, bits: float32ToBF16(values) });
    } else if (this.dtype === 'int8') {
      const q = new Int8Array(OC * C), scale = new Float32Array(OC);
      k.quantize_int8(q, scale, values, OC, C);
      this.weights.set(name, { dtype: 'int8', OC, C, q, scale });
    } else {
      const n = OC * C, blocks = Math.ceil(n / 64);
      const s = {
        dtype: 'nf4' as const, OC, C, packed: new Uint8Array(Math.ceil(n / 2)), qabsmax: new Uint8Array(blocks),
        absmax2: new Float32Array(Math.ceil(blocks / 256)), offset: new Float32Array(1),
      };
      k.quantize_nf4(s.packed, s.qabsmax, s.absmax2, s.offset, values, n);
      this.weights.set(name, s);
    }
  }

  private get(name: string): Stored {
    const w = this.weights.get(name);
    if (!w) throw new Error(`no frozen weight named ${name}`);
    return w;
  }

  /** out (N,OC) = inp (N,C) @ W^T + bias. */
  forward(name: string, out: F, inp: F, bias: F | null, N: number): void {
    const w = this.get(name), k = kernels;
    if (w.dtype === 'bf16') k.matmul_bf16_forward(out, inp, w.bits, bias, N, w.C, w.OC);
    else if (w.dtype === 'int8') k.matmul_int8_forward(out, inp, w.q, w.scale, bias, N, w.C, w.OC);
    else k.matmul_nf4_forward(out, inp, w.packed, w.qabsmax, w.absmax2, w.offset, bias, N, w.C, w.OC);
  }

  /** dinp (N,C) += dout (N,OC) @ W: the input gradient (the weight is frozen). */
  backward(name: string, dinp: F, dout: F, N: number): void {
    const w = this.get(name), k = kernels;
    if (w.dtype === 'bf16') k.matmul_bf16_backward(dinp, dout, w.bits, N, w.C, w.OC);
    else if (w.dtype === 'int8') k.matmul_int8_backward(dinp, dout, w.q, w.scale, N, w.C, w.OC);
    else k.matmul_nf4_backward(dinp, dout, w.packed, w.qabsmax, w.absmax2, w.offset, N, w.C, w.OC);
  }

  /** The weight as float32 (OC, C), dequantized (for merging and saving). */
  read(name: string): Float32Array {
    const w = this.get(name), k = kernels;
    const out = new Float32Array(w.OC * w.C);
    if (w.dtype === 'bf16') {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < w.bits.length; i++) bits[i] = w.bits[i] << 16;
    } else if (w.dtype === 'int8') {
      k.dequantize_int8(out, w.q, w.scale, w.OC, w.C);
    } else {
      k.dequantize_nf4(out, w.packed, w.qabsmax, w.absmax2, w.offset, w.OC * w.C);
    }
    return out;
  }

  get bytes(): number {
    let n = 0;
    for (const w of this.weights.values()) n += storedWeightBytes(w.dtype, w.OC, w.C);
    return n;
  }

  free(): void {
    this.weights.clear();
  }
}
