/**
 * A strict GGUF v3 reader (the layout format.ts writes; ggml's docs/gguf.md and gguf.cpp gguf_init):
 * the header, KV and tensor infos are read in chunks and checked as ggml checks them (known value
 * and tensor types, unique keys and names, ne[0] a whole number of blocks, each tensor's offset the
 * padded sum of those before it, the data inside the file); tensor data is read by offset when asked
 * for, never the whole file at once. Every error is one FileFormatError line naming the file and the
 * key or tensor.
 */
import * as fs from 'fs';
import { FileFormatError } from '../errors';
import { getHalfToFloatTable } from '../io/safetensors';
import { ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, VALUE_TYPE } from './format';
import { dequantizeRows } from './quant';
import { GGML_BLOCK_TYPE_LIST } from './ggml_types';

/** A KV value as read: numbers (u64/i64 as bigint), booleans, strings, or arrays of them. */
export type GGUFReadValue = number | bigint | boolean | string | GGUFReadValue[];

/**
 * ggml types whose byte size is known (ggml.c type_traits: values per block, bytes per block), so a
 * file holding them can be laid out and checked; READABLE_TYPES are the ones gptune dequantizes. The
 * six block types the kernels implement come from their one table (ggml_types.ts).
 */
const TYPE_SIZES: Record<number, { name: string; block: number; bytes: number }> = {
  0: { name: 'F32', block: 1, bytes: 4 }, 1: { name: 'F16', block: 1, bytes: 2 },
  3: { name: 'Q4_1', block: 32, bytes: 20 }, 7: { name: 'Q5_1', block: 32, bytes: 24 }, 9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 }, 11: { name: 'Q3_K', block: 256, bytes: 110 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  24: { name: 'I8', block: 1, bytes: 1 }, 25: { name: 'I16', block: 1, bytes: 2 }, 26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 }, 28: { name: 'F64', block: 1, bytes: 8 }, 30: { name: 'BF16', block: 1, bytes: 2 },
  ...Object.fromEntries(GGML_BLOCK_TYPE_LIST.map((t) => [t.id, { name: t.name, block: t.block, bytes: t.bytes }])),
};

export interface GGUFTensorInfo {
  name: string;
  /** ggml dims, ne[0] (the row length) first. */
  ne: number[];
  /** numpy-order shape: ne reversed. */
  shape: number[];
  type: string;
  /** Absolute byte offset of the data in the file, and its size. */
  fileOffset: number;
  nbytes: number;
}

export interface GGUFHeader {
  file: string;
  fileSize: number;
  kv: Map<string, GGUFReadValue>;
  tensors: Map<string, GGUFTensorInfo>;
}

/** Sequential little-endian reads from a file descriptor through a buffer refilled on demand. */
class Cursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  /** What is being read, for the messages ("key general.name"). */
  where = 'header';

  constructor(private readonly fd: number, readonly file: string, readonly size: number) {}

  fail(problem: string): never {
    throw new FileFormatError(`${this.file}: ${this.where}: ${problem}`);
  }

  private take(n: number): Buffer {
    if (this.pos + n > this.size) this.fail(`the file ends at byte ${this.size} but ${n} more bytes are needed at byte ${this.pos} (truncated?)`);
    if (this.pos + n > this.bufStart + this.buf.length) {
      this.buf = Buffer.alloc(Math.min(Math.max(n, 1 << 20), this.size - this.pos));
      this.bufStart = this.pos;
      fs.readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }

  u8(): number { return this.take(1)[0]; }
  i8(): number { return this.take(1).readInt8(0); }
  u16(): number { return this.take(2).readUInt16LE(0); }
  i16(): number { return this.take(2).readInt16LE(0); }
  u32(): number { return this.take(4).readUInt32LE(0); }
  i32(): number { return this.take(4).readInt32LE(0); }
  f32(): number { return this.take(4).readFloatLE(0); }
  f64(): number { return this.take(8).readDoubleLE(0); }
  u64(): bigint { return this.take(8).readBigUInt64LE(0); }
  i64(): bigint { return this.take(8).readBigInt64LE(0); }

  /**
   * A u64 that must be a count or size of at most `max`; by default the bytes left after it (every
   * string byte and array element takes at least one byte, so a larger count means a cut file).
   */
  count(what: string, max?: number): number {
    const v = this.u64();
    const limit = max ?? this.size - this.pos;
    if (v > BigInt(limit)) this.fail(`${what} is ${v}, more than the ${limit} bytes ${max === undefined ? 'left in the file (truncated?)' : 'the file can hold'}`);
    return Number(v);
  }

  string(): string {
    const bytes = this.take(this.count('a string length'));
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return this.fail('a string is not valid UTF-8');
    }
  }
}

function readValue(c: Cursor, type: number, inArray: boolean): GGUFReadValue {
  switch (type) {
    case VALUE_TYPE.u8: return c.u8();
    case VALUE_TYPE.i8: return c.i8();
    case VALUE_TYPE.u16: return c.u16();
    case VALUE_TYPE.i16: return c.i16();
    case VALUE_TYPE.u32: return c.u32();
    case VALUE_TYPE.i32: return c.i32();
    case VALUE_TYPE.f32: return c.f32();
    case VALUE_TYPE.f64: return c.f64();
    case VALUE_TYPE.u64: return c.u64();
    case VALUE_TYPE.i64: return c.i64();
    case VALUE_TYPE.bool: {
      const b = c.u8();
      if (b > 1) c.fail(`a bool is ${b}; expected 0 or 1`);
      return b === 1;
    }
    case VALUE_TYPE.string: return c.string();
    case VALUE_TYPE.array: {
      if (inArray) c.fail('an array of arrays (gguf.cpp rejects nested arrays)');
      const elementType = c.u32();
      // Every element takes at least one byte: a longer count cannot fit in the file.
      const n = c.count('the array length');
      const out: GGUFReadValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, elementType, true);
      return out;
    }
    default: return c.fail(`value type ${type} is not a GGUF type (0..12)`);
  }
}

/** Reads and checks the header of a GGUF v3 file: KV pairs and tensor infos (with absolute offsets). */
export function readGGUFHeader(file: string): GGUFHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new FileFormatError(`${file}: cannot open: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const c = new Cursor(fd, file, size);
    if (size < 24) c.fail(`${size} bytes; a GGUF file starts with a 24-byte header (truncated or not GGUF?)`);
    const magic = c.u32();
    if (magic !== GGUF_MAGIC) c.fail(`bad magic 0x${magic.toString(16).padStart(8, '0')}; expected "GGUF" (0x${GGUF_MAGIC.toString(16)}): not a GGUF file`);
    const version = c.u32();
    if (version !== GGUF_VERSION) c.fail(`GGUF version ${version}; gptune reads version ${GGUF_VERSION}`);
    const nTensors = c.count('the tensor count', size), nKV = c.count('the KV count', size);

    const kv = new Map<string, GGUFReadValue>();
    for (let i = 0; i < nKV; i++) {
      c.where = `KV pair ${i}`;
      const key = c.string();
      c.where = `key ${key}`;
      if (kv.has(key)) c.fail('appears twice');
      kv.set(key, readValue(c, c.u32(), false));
    }
    let alignment = ALIGNMENT;
    if (kv.has('general.alignment')) {
      c.where = 'key general.alignment';
      const a = kv.get('general.alignment');
      if (typeof a !== 'number' || a <= 0 || (a & (a - 1)) !== 0) c.fail(`is ${String(a)}; expected a power of two`);
      alignment = a as number;
    }

    const infos: Array<{ name: string; ne: number[]; type: string; offset: number; nbytes: number }> = [];
    const names = new Set<string>();
    let expected = 0;
    for (let i = 0; i < nTensors; i++) {
      c.where = `tensor info ${i}`;
      const name = c.string();
      c.where = `tensor ${name}`;
      if (names.has(name)) c.fail('appears twice');
      names.add(name);
      const nDims = c.u32();
      if (nDims < 1 || nDims > 4) c.fail(`has ${nDims} dimensions; ggml tensors have 1 to 4`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(c.count(`ne[${d}]`, Number.MAX_SAFE_INTEGER));
      const typeId = c.u32();
      const t = TYPE_SIZES[typeId];
      if (!t) c.fail(`has ggml type ${typeId}, which gptune does not know`);
      if (ne[0] % t.block !== 0) c.fail(`ne[0] = ${ne[0]} is not a multiple of ${t.name}'s block of ${t.block}`);
      const numel = ne.reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(numel)) c.fail(`has ${ne.join(' x ')} elements, too many`);
      const offset = c.count('the data offset', Number.MAX_SAFE_INTEGER);
      // gguf.cpp: each tensor starts where the previous one's padded data ends.
      if (offset !== expected) c.fail(`data offset ${offset}; expected ${expected} (the padded sizes of the tensors before it)`);
      const nbytes = (numel / t.block) * t.bytes;
      expected += Math.ceil(nbytes / alignment) * alignment;
      infos.push({ name, ne, type: t.name, offset, nbytes });
    }
    c.where = 'data';
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    const tensors = new Map<string, GGUFTensorInfo>();
    for (const t of infos) {
      if (dataStart + t.offset + t.nbytes > size) {
        throw new FileFormatError(`${file}: tensor ${t.name}: its data ends at byte ${dataStart + t.offset + t.nbytes} but the file has ${size} bytes (truncated?)`);
      }
      tensors.set(t.name, { name: t.name, ne: t.ne, shape: [...t.ne].reverse(), type: t.type, fileOffset: dataStart + t.offset, nbytes: t.nbytes });
    }
    return { file, fileSize: size, kv, tensors };
  } finally {
    fs.closeSync(fd);
  }
}

/** Types readTensor dequantizes. */
export const READABLE_TYPES = ['F32', 'F16', 'BF16', 'Q4_0', 'Q5_0', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type ReadableType = (typeof READABLE_TYPES)[number];

/**
 * A tensor's stored bytes as they are in the file (ggml's layout of its type): the one place tensor
 * data is read, whether it is then dequantized (readTensor) or used as it is.
 */
export function readTensorBytes(header: GGUFHeader, name: string): { info: GGUFTensorInfo & { type: ReadableType }; bytes: Uint8Array } {
  const t = header.tensors.get(name);
  if (!t) throw new FileFormatError(`${header.file}: tensor ${name} is missing`);
  if (!(READABLE_TYPES as readonly string[]).includes(t.type)) {
    throw new FileFormatError(`${header.file}: tensor ${name} has type ${t.type}; gptune reads ${READABLE_TYPES.join(', ')}`);
  }
  const bytes = new Uint8Array(t.nbytes);
  const fd = fs.openSync(header.file, 'r');
  try {
    let done = 0;
    while (done < t.nbytes) {
      const n = fs.readSync(fd, bytes, done, t.nbytes - done, t.fileOffset + done);
      if (n === 0) throw new FileFormatError(`${header.file}: tensor ${name}: the file ended while reading its data (changed while being read?)`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { info: t as GGUFTensorInfo & { type: ReadableType }, bytes };
}

/** A tensor's values as float32 (F32 as stored; the other types dequantized as ggml defines them). */
export function readTensor(header: GGUFHeader, name: string): Float32Array {
  const { info, bytes } = readTensorBytes(header, name);
  switch (info.type) {
    case 'F32': return new Float32Array(bytes.buffer);
    case 'F16': {
      const half = new Uint16Array(bytes.buffer), out = new Float32Array(half.length), table = getHalfToFloatTable();
      for (let i = 0; i < half.length; i++) out[i] = table[half[i]];
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const half = new Uint16Array(bytes.buffer), out = new Uint32Array(half.length);
      for (let i = 0; i < half.length; i++) out[i] = half[i] << 16;
      return new Float32Array(out.buffer);
    }
    default: return dequantizeRows(bytes, info.type, info.ne[0]);
  }
}
