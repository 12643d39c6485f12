/**
 * The GGUF v3 container (ggml's docs/gguf.md, ggml/src/gguf.cpp), written by gptune:
 *   u32 magic "GGUF" · u32 version 3 · u64 n_tensors · u64 n_kv
 *   n_kv × { string key · u32 value type · value }            (string: u64 length + UTF-8, no NUL)
 *   n_tensors × { string name · u32 n_dims · u64 ne[n_dims] · u32 ggml type · u64 offset }
 *   zero padding to ALIGNMENT, then each tensor's bytes, each zero-padded to ALIGNMENT.
 * Little-endian throughout. ne[0] is the fastest-varying dimension (numpy's shape reversed), and a
 * tensor's offset (from the start of the data) must be the sum of the padded sizes before it, in
 * tensor-info order: that is what the reader checks.
 */
import { writeFileAtomic } from '../io/atomic';
import { GGML_BLOCK_TYPES, GGMLBlockTypeName } from './ggml_types';

export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
/** general.alignment's default; gptune writes no general.alignment, so the data is aligned to this. */
export const ALIGNMENT = 32;

/** gguf_type: the type tag of a KV value (and of an array's elements). */
export const VALUE_TYPE = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;

/** The KV values gptune writes. */
export type GGUFValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: readonly string[] }
  | { type: 'i32s'; value: ArrayLike<number> }
  | { type: 'f32s'; value: ArrayLike<number> };

/** ggml_type of the tensor data gptune writes (gguf-py constants.py GGMLQuantizationType): the float types and the block types of the kernels. */
export const GGML_TYPE = {
  F32: 0, F16: 1, BF16: 30,
  ...(Object.fromEntries(Object.entries(GGML_BLOCK_TYPES).map(([name, t]) => [name, t.id])) as { [K in GGMLBlockTypeName]: number }),
};
export type GGMLTypeName = keyof typeof GGML_TYPE;

/**
 * One tensor of the file: its name, ggml dims (ne[0] first), type, exact byte size, and its bytes
 * produced on demand (chunk by chunk), so the whole model is never encoded in memory at once.
 */
export interface GGUFTensor {
  name: string;
  ne: readonly number[];
  type: GGMLTypeName;
  nbytes: number;
  data: () => Iterable<Uint8Array>;
}

/** Little-endian byte builder for the header (keys, values and tensor infos). */
class HeaderBuilder {
  private chunks: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }

  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }

  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }

  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }

  u8(v: number): void {
    this.push(Buffer.from([v]));
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  zeros(n: number): void {
    if (n > 0) this.push(Buffer.alloc(n));
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function writeValue(h: HeaderBuilder, v: GGUFValue): void {
  switch (v.type) {
    case 'u32': h.u32(VALUE_TYPE.u32); h.u32(v.value); return;
    case 'i32': h.u32(VALUE_TYPE.i32); h.i32(v.value); return;
    case 'f32': h.u32(VALUE_TYPE.f32); h.f32(v.value); return;
    case 'bool': h.u32(VALUE_TYPE.bool); h.u8(v.value ? 1 : 0); return;
    case 'string': h.u32(VALUE_TYPE.string); h.string(v.value); return;
    case 'strings':
      h.u32(VALUE_TYPE.array); h.u32(VALUE_TYPE.string); h.u64(v.value.length);
      for (const s of v.value) h.string(s);
      return;
    case 'i32s':
      h.u32(VALUE_TYPE.array); h.u32(VALUE_TYPE.i32); h.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) h.i32(v.value[i]);
      return;
    case 'f32s':
      h.u32(VALUE_TYPE.array); h.u32(VALUE_TYPE.f32); h.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) h.f32(v.value[i]);
  }
}

/** GGML_PAD(n, ALIGNMENT). */
export function padded(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}

/** The header (magic to the padding before the data) and each tensor's offset in the data. */
export function encodeHeader(kv: ReadonlyMap<string, GGUFValue>, tensors: readonly GGUFTensor[]): { header: Buffer; offsets: number[] } {
  const h = new HeaderBuilder();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(kv.size);
  for (const [key, value] of kv) {
    h.string(key);
    writeValue(h, value);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.ne.length);
    for (const d of t.ne) h.u64(d);
    h.u32(GGML_TYPE[t.type]);
    h.u64(offset);
    offsets.push(offset);
    offset += padded(t.nbytes);
  }
  h.zeros(padded(h.length) - h.length);
  return { header: h.bytes(), offsets };
}

/** The whole file as a stream of chunks: the header, then each tensor's bytes and padding. */
export function* ggufChunks(kv: ReadonlyMap<string, GGUFValue>, tensors: readonly GGUFTensor[]): Generator<Uint8Array> {
  yield encodeHeader(kv, tensors).header;
  for (const t of tensors) {
    let written = 0;
    for (const chunk of t.data()) {
      written += chunk.byteLength;
      yield chunk;
    }
    // A wrong size would shift every later tensor: fail (and leave no file) rather than write it.
    if (written !== t.nbytes) throw new Error(`GGUF tensor ${t.name}: wrote ${written} bytes but its info says ${t.nbytes}`);
    if (padded(written) > written) yield Buffer.alloc(padded(written) - written);
  }
}

/** Bytes of the file ggufChunks writes. */
export function ggufFileBytes(kv: ReadonlyMap<string, GGUFValue>, tensors: readonly GGUFTensor[]): number {
  return encodeHeader(kv, tensors).header.length + tensors.reduce((n, t) => n + padded(t.nbytes), 0);
}

/** Writes a GGUF file atomically (a temporary sibling renamed into place; no partial file on failure). */
export function writeGGUF(file: string, kv: ReadonlyMap<string, GGUFValue>, tensors: readonly GGUFTensor[]): void {
  writeFileAtomic(file, ggufChunks(kv, tensors));
}
