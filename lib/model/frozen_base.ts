/**
 * A frozen base's linear weights stored in a lower precision (LoRA/QLoRA's `--base-dtype`, and
 * weight-only quantized inference, `--quantize`):
 *   bf16  the weight rounded to bfloat16 (2 bytes a weight)
 *   int8  per-output-channel absmax (bitsandbytes' row-wise int8; 1 byte + 4 bytes a row)
 *   nf4   QLoRA's NormalFloat4 in blocks of 64 with double-quantized block scales (~0.52 bytes)
 *   q8_0  ggml's Q8_0 blocks of 32 (34 bytes: 8.5 bits a weight)
 *   q4_k  ggml's Q4_K super-blocks of 256 (144 bytes: 4.5 bits); a weight whose input width C is
 *         not a multiple of 256 takes Q5_0 (blocks of 32, 5.5 bits) as llama.cpp's quantizer falls
 *         back, and one whose C is not a multiple of 32 stays float32 (llama.cpp's F16 fallback)
 * and GGML blocks as a GGUF file stores them, where the row ranges of one weight may differ in type
 * (a fused q/k/v whose attn_q is Q4_K and attn_v Q6_K): each range writes its column slice of the
 * output (the kernels' out_stride / dout_stride).
 * The matmuls read these formats directly (native/include/gptune/kernels.inc); no full-size float32
 * copy of a weight exists after it is stored. Norms, biases and the embedding table stay float32 in
 * the decoder's parameter arena (as QLoRA keeps them); the LM head is stored here only for
 * `--quantize` and GGUF files (as llama.cpp quantizes output.weight). Nothing here takes a gradient
 * except with respect to the layer's input.
 */
import { UsageError } from '../errors';
import { GGML_BLOCK_TYPES, ggmlBlockBytes, ggmlBlockType, GGMLBlockTypeName } from '../gguf/ggml_types';
import { kernels } from '../native';
import { describeValue } from '../util/check';
import type { DeviceName, F } from '../native';
import { arenaBytes, Tensor, TensorArena, TensorSpec, writeElements } from '../tensor';

export const BASE_DTYPES = ['f32', 'bf16', 'int8', 'nf4', 'q8_0', 'q4_k'] as const;
export type BaseDtype = (typeof BASE_DTYPES)[number];
export type StoredDtype = Exclude<BaseDtype, 'f32'>;

/** `--quantize`: weight-only quantized inference, the blocks' linear weights and the LM head. */
export const QUANTIZE_DTYPES = ['int8', 'q8_0', 'q4_k'] as const;
export type QuantizeDtype = (typeof QUANTIZE_DTYPES)[number];

/**
 * The storage a load asks for. `baseDtype` stores the blocks' linear weights (a frozen LoRA/QLoRA
 * base); `quantize` stores them AND the LM head in that format (as llama.cpp quantizes
 * output.weight). Both may be given when they agree; different formats are an error naming both
 * (`names`: the option or flag names of the caller).
 */
export function storageOptions(
  baseDtype: BaseDtype | undefined, quantize: QuantizeDtype | undefined, names = { baseDtype: 'options.baseDtype', quantize: 'options.quantize' },
): { baseDtype: BaseDtype; quantizeHead: boolean } {
  if (baseDtype !== undefined && !(BASE_DTYPES as readonly string[]).includes(baseDtype)) {
    throw new UsageError(`${names.baseDtype}: expected one of ${BASE_DTYPES.join(', ')} but received ${describeValue(baseDtype)}`);
  }
  if (quantize === undefined) return { baseDtype: baseDtype ?? 'f32', quantizeHead: false };
  if (!(QUANTIZE_DTYPES as readonly string[]).includes(quantize)) {
    throw new UsageError(`${names.quantize}: expected one of ${QUANTIZE_DTYPES.join(', ')} but received ${describeValue(quantize)}`);
  }
  if (baseDtype !== undefined && baseDtype !== quantize) {
    throw new UsageError(`${names.quantize} ${quantize} conflicts with ${names.baseDtype} ${baseDtype}: ${names.quantize} stores the linear weights and the LM head in ${quantize}; give one of the two`);
  }
  return { baseDtype: quantize, quantizeHead: true };
}

/**
 * How one (OC, C) weight is stored: a whole-weight format, or GGML blocks in row ranges (in order,
 * their rows summing to OC) whose types may differ.
 */
export type WeightFormat =
  | { dtype: 'bf16' | 'int8' | 'nf4' }
  | { dtype: 'ggml'; parts: ReadonlyArray<{ type: GGMLBlockTypeName; rows: number }> };

/**
 * The format a `--base-dtype` / `--quantize` dtype gives an (OC, C) weight, or null when the weight
 * stays float32: GGML types follow llama.cpp's fallbacks for widths their blocks do not divide
 * (llama-quant.cpp tensor_type_fallback: Q4_K -> Q5_0 -> F16, Q8_0 -> F16; gptune computes in
 * float32, so "F16" is the float32 weight).
 */
export function weightFormat(dtype: StoredDtype, OC: number, C: number): WeightFormat | null {
  if (dtype === 'bf16' || dtype === 'int8' || dtype === 'nf4') return { dtype };
  const wanted: GGMLBlockTypeName = dtype === 'q8_0' ? 'Q8_0' : 'Q4_K';
  const type = C % GGML_BLOCK_TYPES[wanted].block === 0 ? wanted : wanted === 'Q4_K' && C % GGML_BLOCK_TYPES.Q5_0.block === 0 ? 'Q5_0' : null;
  return type === null ? null : { dtype: 'ggml', parts: [{ type, rows: OC }] };
}

/** One line saying which weights a GGML dtype stored in a fallback type (llama.cpp's warning), or null when none. */
export function fallbackNote(dtype: StoredDtype, shapes: ReadonlyArray<{ OC: number; C: number }>): string | null {
  if (dtype !== 'q8_0' && dtype !== 'q4_k') return null;
  const counts = new Map<string, number>();
  for (const w of shapes) {
    const f = weightFormat(dtype, w.OC, w.C);
    const type = f === null ? 'F32' : f.dtype === 'ggml' ? f.parts[0].type : dtype;
    if (type !== (dtype === 'q8_0' ? 'Q8_0' : 'Q4_K')) counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  if (counts.size === 0) return null;
  const block = dtype === 'q8_0' ? 32 : 256;
  const parts = [...counts].map(([type, n]) => `${n} as ${type}`).join(', ');
  return `${dtype}: ${[...counts.values()].reduce((a, b) => a + b, 0)} of ${shapes.length} weights have an input width that is not a multiple of ${block}; stored ${parts} (llama.cpp's fallback)`;
}

/**
 * Where one stored weight lives in the store's arena: views whose offsets and lengths count float32
 * slots (4 bytes), as the kernels take byte arrays in arenas (lib/native.ts I8 / U8 / U16).
 */
type Stored =
  | { dtype: 'bf16'; OC: number; C: number; bits: Tensor }
  | { dtype: 'int8'; OC: number; C: number; q: Tensor; scale: Tensor }
  | { dtype: 'nf4'; OC: number; C: number; packed: Tensor; qabsmax: Tensor; absmax2: Tensor; offset: Tensor }
  | { dtype: 'ggml'; OC: number; C: number; parts: Array<{ type: GGMLBlockTypeName; row: number; rows: number; blocks: Tensor }> };

/** Float32 slots holding `bytes` bytes. */
const slots = (bytes: number) => Math.ceil(bytes / 4);

/** The arena views of one (OC, C) weight in `format`, named `${name}.${part}`. */
function storedSpecs(format: WeightFormat, name: string, OC: number, C: number): TensorSpec[] {
  const n = OC * C, blocks = Math.ceil(n / 64);
  switch (format.dtype) {
    case 'ggml': return format.parts.map((p, i) => ({ name: `${name}.blocks${i}`, shape: [slots(ggmlBlockBytes(ggmlBlockType(p.type)!, p.rows, C))] }));
    case 'bf16': return [{ name: `${name}.bits`, shape: [slots(2 * n)] }];
    case 'int8': return [{ name: `${name}.q`, shape: [slots(n)] }, { name: `${name}.scale`, shape: [OC] }];
    case 'nf4': return [
      { name: `${name}.packed`, shape: [slots(Math.ceil(n / 2))] }, { name: `${name}.qabsmax`, shape: [slots(blocks)] },
      { name: `${name}.absmax2`, shape: [Math.ceil(blocks / 256)] }, { name: `${name}.offset`, shape: [1] },
    ];
  }
}

/** One weight of a store: its name, shape and format. */
export interface StoredShape {
  name: string;
  OC: number;
  C: number;
  format: WeightFormat;
}

/** Bytes the store of these weights takes (its arena, padding included: what a memory plan counts). */
export function storedWeightBytes(shapes: readonly StoredShape[]): number {
  return arenaBytes(shapes.flatMap((w) => storedSpecs(w.format, w.name, w.OC, w.C)));
}

/** The Stored entry of one weight whose arena views `view(part)` gives. */
function storedViews(format: WeightFormat, OC: number, C: number, view: (part: string) => Tensor): Stored {
  switch (format.dtype) {
    case 'bf16': return { dtype: 'bf16', OC, C, bits: view('bits') };
    case 'int8': return { dtype: 'int8', OC, C, q: view('q'), scale: view('scale') };
    case 'nf4': return { dtype: 'nf4', OC, C, packed: view('packed'), qabsmax: view('qabsmax'), absmax2: view('absmax2'), offset: view('offset') };
    case 'ggml': {
      let row = 0;
      const parts = format.parts.map((p, i) => ({ type: p.type, row: (row += p.rows) - p.rows, rows: p.rows, blocks: view(`blocks${i}`) }));
      if (row !== OC) throw new RangeError(`GGML weight parts cover ${row} rows but the weight has ${OC}`);
      return { dtype: 'ggml', OC, C, parts };
    }
  }
}

/** A weight's row range in a GGML type: rows [row, row + rows) of the (OC, C) weight. */
type GGMLPart = Extract<Stored, { dtype: 'ggml' }>['parts'][number];

/**
 * The frozen linear weights of a model in low-precision formats, by parameter name, all in one
 * arena on the model's device (laid out when the model is built; filled by set() or setBlocks()).
 */
export class FrozenLinears {
  private readonly arena: TensorArena;
  private readonly weights = new Map<string, Stored>();

  constructor(readonly device: DeviceName, shapes: readonly StoredShape[]) {
    this.arena = new TensorArena(device, shapes.flatMap((w) => storedSpecs(w.format, w.name, w.OC, w.C)));
    const g = (w: { name: string }, part: string) => this.arena.get(`${w.name}.${part}`);
    for (const w of shapes) {
      const { OC, C, format } = w;
      this.weights.set(w.name, storedViews(format, OC, C, (part) => g(w, part)));
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
      else if (w.dtype === 'nf4') k.quantize_nf4(w.packed, w.qabsmax, w.absmax2, w.offset, input, n);
      else for (const p of w.parts) k.quantize_ggml(p.blocks, rowsOf(input, p.row * w.C, p.rows * w.C), GGML_BLOCK_TYPES[p.type].id, p.rows, w.C);
    } finally {
      staging?.free();
    }
  }

  /**
   * Stores row range `part` of GGML weight `name` from its blocks as a GGUF file holds them (rows of
   * C/block blocks, back to back): the bytes are copied, never dequantized.
   */
  setBlocks(name: string, part: number, blocks: Uint8Array): void {
    const w = this.get(name);
    const p = w.dtype === 'ggml' ? w.parts[part] : undefined;
    if (!p) throw new Error(`frozen weight ${name} has no GGML part ${part}`);
    const expected = ggmlBlockBytes(ggmlBlockType(p.type)!, p.rows, w.C);
    if (blocks.length !== expected) throw new RangeError(`frozen weight ${name}: expected ${expected} bytes of ${p.type} blocks but received ${blocks.length}`);
    writeElements(p.blocks.arena, p.blocks.offset, blocks);
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
    else if (w.dtype === 'nf4') k.matmul_nf4_forward(out, inp, w.packed, w.qabsmax, w.absmax2, w.offset, bias, N, w.C, w.OC);
    else {
      // Each row range writes columns [row, row + rows) of every output row (out_stride OC).
      for (const p of w.parts) {
        k.matmul_ggml_forward(columnsFrom(out, p, w.OC, N), inp, p.blocks, bias && rowsOf(bias, p.row, p.rows), GGML_BLOCK_TYPES[p.type].id, N, w.C, p.rows, w.OC);
      }
    }
  }

  /** dinp (N,C) += dout (N,OC) @ W: the input gradient (the weight is frozen). */
  backward(name: string, dinp: F, dout: F, N: number): void {
    const w = this.get(name), k = kernels;
    if (w.dtype === 'bf16') k.matmul_bf16_backward(dinp, dout, w.bits, N, w.C, w.OC);
    else if (w.dtype === 'int8') k.matmul_int8_backward(dinp, dout, w.q, w.scale, N, w.C, w.OC);
    else if (w.dtype === 'nf4') k.matmul_nf4_backward(dinp, dout, w.packed, w.qabsmax, w.absmax2, w.offset, N, w.C, w.OC);
    else for (const p of w.parts) k.matmul_ggml_backward(dinp, columnsFrom(dout, p, w.OC, N), p.blocks, GGML_BLOCK_TYPES[p.type].id, N, w.C, p.rows, w.OC);
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
      else if (w.dtype === 'nf4') k.dequantize_nf4(t, w.packed, w.qabsmax, w.absmax2, w.offset, n);
      else for (const p of w.parts) k.dequantize_ggml(t.slice(p.row * w.C, [p.rows, w.C]), p.blocks, GGML_BLOCK_TYPES[p.type].id, p.rows, w.C);
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

/** Elements [start, start + count) of a host array or an arena view. */
function rowsOf(x: F, start: number, count: number): F {
  return x instanceof Float32Array ? x.subarray(start, start + count) : { arena: x.arena, offset: x.offset + start, numel: count };
}

/**
 * The (N, OC) matrix `x` from column `part.row` on: what a kernel with stride OC reads or writes as
 * its rows' first `part.rows` columns (the last row's columns past the part are not touched).
 */
function columnsFrom(x: F, part: GGMLPart, OC: number, N: number): F {
  return rowsOf(x, part.row, N * OC - part.row);
}
