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
import { kernels } from '../native';
import type { DeviceName, F } from '../native';
import { arenaBytes, Tensor, TensorArena, TensorSpec } from '../tensor';

export const BASE_DTYPES = ['f32', 'bf16', 'int8', 'nf4'] as const;
export type BaseDtype = (typeof BASE_DTYPES)[number];
export type StoredDtype = Exclude<BaseDtype, 'f32'>;

/**
 * Where one stored weight lives in the store's arena: views whose offsets and lengths count float32
 * slots (4 bytes), as the kernels take byte arrays in arenas (lib/native.ts I8 / U8 / U16).
 */
type Stored =
  | { dtype: 'bf16'; OC: number; C: number; bits: Tensor }
  | { dtype: 'int8'; OC: number; C: number; q: Tensor; scale: Tensor }
  | { dtype: 'nf4'; OC: number; C: number; packed: Tensor; qabsmax: Tensor; absmax2: Tensor; offset: Tensor };

/** Float32 slots holding `bytes` bytes. */
const slots = (bytes: number) => Math.ceil(bytes / 4);

/** The arena views of one (OC, C) weight in `dtype`, named `${name}.${part}`. */
function storedSpecs(dtype: StoredDtype, name: string, OC: number, C: number): TensorSpec[] {
  const n = OC * C, blocks = Math.ceil(n / 64);
  switch (dtype) {
    case 'bf16': return [{ name: `${name}.bits`, shape: [slots(2 * n)] }];
    case 'int8': return [{ name: `${name}.q`, shape: [slots(n)] }, { name: `${name}.scale`, shape: [OC] }];
    case 'nf4': return [
      { name: `${name}.packed`, shape: [slots(Math.ceil(n / 2))] }, { name: `${name}.qabsmax`, shape: [slots(blocks)] },
      { name: `${name}.absmax2`, shape: [Math.ceil(blocks / 256)] }, { name: `${name}.offset`, shape: [1] },
    ];
  }
}

/** Bytes the store of these (OC, C) weights takes in `dtype` (its arena, padding included: what a memory plan counts). */
export function storedWeightBytes(dtype: BaseDtype, shapes: ReadonlyArray<{ name: string; OC: number; C: number }>): number {
  if (dtype === 'f32') return arenaBytes(shapes.map((w) => ({ name: w.name, shape: [w.OC, w.C] })));
  return arenaBytes(shapes.flatMap((w) => storedSpecs(dtype, w.name, w.OC, w.C)));
}

/**
 * The frozen linear weights of a model in one low-precision format, by parameter name, all in one
 * arena on the model's device (laid out when the model is built; filled by set()).
 */
export class FrozenLinears {
  private readonly arena: TensorArena;
  private readonly weights = new Map<string, Stored>();
  private readonly filled = new Set<string>();

  constructor(readonly dtype: StoredDtype, readonly device: DeviceName, shapes: ReadonlyArray<{ name: string; OC: number; C: number }>) {
    this.arena = new TensorArena(device, shapes.flatMap((w) => storedSpecs(dtype, w.name, w.OC, w.C)));
    const g = (w: { name: string }, part: string) => this.arena.get(`${w.name}.${part}`);
    for (const w of shapes) {
      const { OC, C } = w;
      this.weights.set(w.name, dtype === 'bf16' ? { dtype, OC, C, bits: g(w, 'bits') }
        : dtype === 'int8' ? { dtype, OC, C, q: g(w, 'q'), scale: g(w, 'scale') }
          : { dtype, OC, C, packed: g(w, 'packed'), qabsmax: g(w, 'qabsmax'), absmax2: g(w, 'absmax2'), offset: g(w, 'offset') });
    }
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  /** Stores the (OC, C) float32 weight `values` in this format (quantized on the model's device). */
  set(name: string, values: Float32Array): void {
    const w = this.get(name), n = w.OC * w.C, k = kernels;
    if (values.length !== n) throw new RangeError(`frozen weight ${name}: expected ${n} values but received ${values.length}`);
    // The kernels read a float input on their device: a CUDA store quantizes from a device copy.
    let staging: TensorArena | null = null;
    let input: Float32Array | Tensor = values;
    if (this.device !== 'cpu') {
      staging = new TensorArena(this.device, [{ name: 'w', shape: [n] }]);
      input = staging.get('w');
      input.write(values);
    }
    try {
      if (w.dtype === 'bf16') k.convert_f32_to_bf16(w.bits, input, n);
      else if (w.dtype === 'int8') k.quantize_int8(w.q, w.scale, input, w.OC, w.C);
      else k.quantize_nf4(w.packed, w.qabsmax, w.absmax2, w.offset, input, n);
    } finally {
      staging?.free();
    }
    this.filled.add(name);
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
    const w = this.get(name), k = kernels, n = w.OC * w.C;
    if (w.dtype === 'bf16') {
      // bf16 -> f32 is exact: the 16 bits become the high half of the float.
      const bits = new Uint16Array(w.bits.read().buffer, 0, n), values = new Float32Array(n), wide = new Uint32Array(values.buffer);
      for (let i = 0; i < n; i++) wide[i] = bits[i] << 16;
      return values;
    }
    const out = new TensorArena(this.device, [{ name: 'w', shape: [n] }]);
    try {
      const t = out.get('w');
      if (w.dtype === 'int8') k.dequantize_int8(t, w.q, w.scale, w.OC, w.C);
      else k.dequantize_nf4(t, w.packed, w.qabsmax, w.absmax2, w.offset, n);
      return t.read();
    } finally {
      out.free();
    }
  }

  /** Bytes of the stored formats (the arena, padding included). */
  get bytes(): number {
    return this.arena.bytes;
  }

  free(): void {
    this.arena.free();
  }
}
