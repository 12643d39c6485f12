/**
 * A strict reader and writer of the safetensors format (what Hugging Face stores model weights in).
 *
 * Layout of a file:
 *   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
 *   bytes [8, 8+N)      UTF-8 JSON object: { "<tensor name>": { "dtype": "F32", "shape": [768, 2304],
 *                       "data_offsets": [begin, end] }, ..., "__metadata__": { "<key>": "<string>" } }
 *                       (may be padded at the end with spaces)
 *   bytes [8+N, EOF)    the data buffer; data_offsets are relative to its start, row-major,
 *                       little-endian. Tensors must tile the buffer exactly: no holes, no overlaps.
 *
 * Every malformed file is reported as one Error line naming the file, the tensor and the problem;
 * the reader never trusts a length it has not checked against the file size.
 */
import * as fs from 'fs';
import * as os from 'os';
import { writeFileAtomic, type FileContents } from './atomic';

/** The element types this reader understands, with their size in bytes. */
const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

export function dtypeByteSize(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

function isKnownDtype(value: string): value is SafetensorsDtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

/** One tensor's entry in the header, after validation. Offsets are relative to the data buffer. */
export interface TensorHeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data buffer. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** In header order (JSON key order). */
  entries: TensorHeaderEntry[];
  /** The optional "__metadata__" map; {} when absent. */
  metadata: Record<string, string>;
  /** Absolute file offset where the data buffer starts: 8 + header length. */
  dataStart: number;
  /** Length of the data buffer in bytes (file size - dataStart). */
  dataLength: number;
}

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The tensor's raw little-endian bytes (exactly numel * dtype size), in its own ArrayBuffer. */
  data: Buffer;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** A header larger than this is treated as corrupt: GPT-2 XL's header is ~40 KB. */
export const MAX_HEADER_BYTES = 100 * 1000 * 1000;

const HEADER_PREFIX_BYTES = 8;

function checkLittleEndianHost(): void {
  // Tensor bytes are little-endian and we view them as typed arrays in host order.
  if (os.endianness() !== 'LE') throw new Error('safetensors: only little-endian hosts are supported');
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Product of dims, or an error if it is not a safe integer (a corrupt header could claim 2^70). */
function elementCount(shape: readonly number[], where: string): number {
  let count = 1;
  for (const dim of shape) {
    count *= dim;
    if (!Number.isSafeInteger(count)) throw new Error(`${where}: shape ${shapeText(shape)} has more elements than can be addressed`);
  }
  return count;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** A short JSON rendering of a value for error messages ("nothing" for undefined). */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Validate a header's JSON bytes (the N bytes after the 8-byte length) against the size of the file
 * they came from, and return its entries. `fileName` is used in messages only.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number, fileName: string): SafetensorsHeader {
  const dataStart = HEADER_PREFIX_BYTES + headerBytes.byteLength;
  const dataLength = fileSize - dataStart;
  if (dataLength < 0) throw new Error(`${fileName}: safetensors header length ${headerBytes.byteLength} reaches past the end of the ${fileSize}-byte file`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new Error(`${fileName}: safetensors header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${fileName}: safetensors header is not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${fileName}: safetensors header must be a JSON object but is ${Array.isArray(json) ? 'an array' : describe(json)}`);
  }

  let metadata: Record<string, string> = {};
  const entries: TensorHeaderEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, fileName);
      continue;
    }
    const where = `${fileName}: tensor "${name}"`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new Error(`${where}: expected an object {dtype, shape, data_offsets} but received ${describe(raw)}`);
    }
    const entry = raw as Record<string, unknown>;
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!(key in entry)) throw new Error(`${where}: missing "${key}"`);
    }
    const dtype = entry.dtype;
    if (typeof dtype !== 'string' || !isKnownDtype(dtype)) {
      throw new Error(`${where}: unknown dtype ${describe(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new Error(`${where}: shape must be an array of non-negative integers but is ${describe(shape)}`);
    }
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw new Error(`${where}: data_offsets must be two non-negative integers [begin, end] but is ${describe(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLength) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] reach past the end of the ${dataLength}-byte data buffer`);
    }
    const expectedBytes = elementCount(shape, where) * DTYPE_BYTES[dtype];
    if (end - begin !== expectedBytes) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape ${shapeText(shape)} needs ${expectedBytes}`);
    }
    entries.push({ name, dtype, shape: shape.slice(), dataOffsets: [begin, end] });
  }

  checkTensorsTileBuffer(entries, dataLength, fileName);
  return { entries, metadata, dataStart, dataLength };
}

function parseMetadata(raw: unknown, fileName: string): Record<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${fileName}: "__metadata__" must be an object of strings but is ${describe(raw)}`);
  }
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      throw new Error(`${fileName}: "__metadata__" value for "${key}" must be a string but is ${describe(value)}`);
    }
    metadata[key] = value;
  }
  return metadata;
}

/** The format requires the tensors to cover [0, dataLength) exactly once: no holes, no overlaps. */
function checkTensorsTileBuffer(entries: readonly TensorHeaderEntry[], dataLength: number, fileName: string): void {
  // Sort by (begin, end) so that empty tensors sitting at a boundary come before the tensor that
  // starts there.
  const sorted = entries.slice().sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let covered = 0;
  let previous: TensorHeaderEntry | undefined;
  for (const entry of sorted) {
    const [begin, end] = entry.dataOffsets;
    if (begin < covered) {
      throw new Error(`${fileName}: tensor "${entry.name}" data_offsets [${begin}, ${end}] overlap tensor "${previous!.name}" [${previous!.dataOffsets.join(', ')}]`);
    }
    if (begin > covered) {
      throw new Error(`${fileName}: tensor "${entry.name}" starts at data offset ${begin} but the data before it ends at ${covered} (the format allows no holes)`);
    }
    covered = end;
    previous = entry;
  }
  if (covered !== dataLength) {
    throw new Error(`${fileName}: tensors cover ${covered} bytes of the ${dataLength}-byte data buffer; the remaining ${dataLength - covered} bytes belong to no tensor`);
  }
}

/** Read exactly `length` bytes at `position` into a fresh Buffer with its own ArrayBuffer. */
function readExactly(fd: number, position: number, length: number, fileName: string): Buffer {
  // allocUnsafeSlow: a dedicated ArrayBuffer at offset 0, so 8-byte types can be viewed in place.
  const buffer = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const got = fs.readSync(fd, buffer, done, Math.min(length - done, 1 << 30), position + done);
    if (got === 0) throw new Error(`${fileName}: file ended while reading bytes ${position}..${position + length}`);
    done += got;
  }
  return buffer;
}

/** Parse only the header: names, dtypes, shapes and offsets, validated against the file size. */
export function readSafetensorsHeader(filePath: string): SafetensorsHeader {
  const fd = fs.openSync(filePath, 'r');
  try {
    return readHeaderFromFd(fd, filePath);
  } finally {
    fs.closeSync(fd);
  }
}

function readHeaderFromFd(fd: number, filePath: string): SafetensorsHeader {
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < HEADER_PREFIX_BYTES) {
    throw new Error(`${filePath}: file is ${fileSize} bytes, too short for the 8-byte safetensors header length`);
  }
  const headerLength = readExactly(fd, 0, HEADER_PREFIX_BYTES, filePath).readBigUInt64LE(0);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${filePath}: safetensors header length ${headerLength} is larger than the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
  }
  const headerBytes = Number(headerLength);
  if (HEADER_PREFIX_BYTES + headerBytes > fileSize) {
    throw new Error(`${filePath}: safetensors header length ${headerBytes} reaches past the end of the ${fileSize}-byte file`);
  }
  return parseSafetensorsHeader(readExactly(fd, HEADER_PREFIX_BYTES, headerBytes, filePath), fileSize, filePath);
}

/**
 * Read and validate a whole safetensors file. Each tensor's bytes are read straight into their own
 * Buffer: one copy from disk, no whole-file buffer (fs.readFileSync cannot read files over 2 GiB,
 * and GPT-2 XL in F32 is 6.4 GB).
 */
export function readSafetensors(filePath: string): SafetensorsFile {
  checkLittleEndianHost();
  const fd = fs.openSync(filePath, 'r');
  try {
    const header = readHeaderFromFd(fd, filePath);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const entry of header.entries) {
      const [begin, end] = entry.dataOffsets;
      tensors.set(entry.name, {
        dtype: entry.dtype,
        shape: entry.shape,
        data: readExactly(fd, header.dataStart + begin, end - begin, filePath),
      });
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/** float16 bit pattern -> float32 value, for all 65536 patterns (256 KB, built on first use). */
let halfToFloatTable: Float32Array | undefined;

/**
 * IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 * exponent 0: subnormal, value = mantissa * 2^-24; exponent 31: infinity (mantissa 0) or NaN.
 */
export function halfBitsToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** The float32 value of every binary16 bit pattern (a lookup table, built once). */
export function getHalfToFloatTable(): Float32Array {
  if (!halfToFloatTable) {
    const table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) table[bits] = halfBitsToFloat(bits);
    halfToFloatTable = table;
  }
  return halfToFloatTable;
}

/** A typed-array view of the tensor's bytes when aligned, else a view of an aligned copy. */
function alignedView<T>(data: Buffer, bytesPerElement: number, make: (buffer: ArrayBuffer, byteOffset: number, length: number) => T): T {
  const length = data.byteLength / bytesPerElement;
  if (data.byteOffset % bytesPerElement === 0) return make(data.buffer as ArrayBuffer, data.byteOffset, length);
  const copy = new Uint8Array(data.byteLength);
  copy.set(data);
  return make(copy.buffer, 0, length);
}

/**
 * Convert a tensor of any supported dtype to float32 (what gptune computes in).
 * F32 tensors are returned as a view sharing memory with `tensor.data` when its bytes are
 * 4-byte aligned (always, for tensors from readSafetensors), to avoid doubling the memory of a
 * 500 MB checkpoint; copy it if both must be modified independently. Other dtypes return new arrays.
 * F64, I64 and U64 values are rounded to the nearest float32, as a cast in PyTorch would.
 */
export function toFloat32(tensor: SafetensorsTensor): Float32Array {
  checkLittleEndianHost();
  const { dtype, data } = tensor;
  switch (dtype) {
    case 'F32':
      return alignedView(data, 4, (b, o, n) => new Float32Array(b, o, n));
    case 'F16': {
      const table = getHalfToFloatTable();
      const halves = alignedView(data, 2, (b, o, n) => new Uint16Array(b, o, n));
      const out = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the 16 bits into place, exactly.
      const halves = alignedView(data, 2, (b, o, n) => new Uint16Array(b, o, n));
      const out = new Float32Array(halves.length);
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < halves.length; i++) outBits[i] = halves[i] << 16;
      return out;
    }
    case 'F64': return Float32Array.from(alignedView(data, 8, (b, o, n) => new Float64Array(b, o, n)));
    case 'I64': {
      const values = alignedView(data, 8, (b, o, n) => new BigInt64Array(b, o, n));
      const out = new Float32Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = Number(values[i]);
      return out;
    }
    case 'U64': {
      const values = alignedView(data, 8, (b, o, n) => new BigUint64Array(b, o, n));
      const out = new Float32Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = Number(values[i]);
      return out;
    }
    case 'I32': return Float32Array.from(alignedView(data, 4, (b, o, n) => new Int32Array(b, o, n)));
    case 'U32': return Float32Array.from(alignedView(data, 4, (b, o, n) => new Uint32Array(b, o, n)));
    case 'I16': return Float32Array.from(alignedView(data, 2, (b, o, n) => new Int16Array(b, o, n)));
    case 'U16': return Float32Array.from(alignedView(data, 2, (b, o, n) => new Uint16Array(b, o, n)));
    case 'I8': return Float32Array.from(new Int8Array(data.buffer, data.byteOffset, data.byteLength));
    case 'U8': return Float32Array.from(data);
    case 'BOOL': return Float32Array.from(data, (byte) => (byte !== 0 ? 1 : 0));
  }
}

/** A float32 tensor to write. */
export interface Float32TensorToWrite {
  name: string;
  shape: readonly number[];
  /** Row-major values; length must equal the product of `shape`. */
  data: Float32Array;
}

/** The dtypes gptune writes: float32 as is, or rounded to bfloat16. */
export type WriteDtype = 'F32' | 'BF16';

/**
 * float32 -> bfloat16 bits, rounding to nearest with ties to even (as torch's .to(torch.bfloat16));
 * NaNs stay NaN (quiet), infinities and overflow to infinity behave as in the cast.
 */
export function float32ToBF16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x007fffff) !== 0) {
      out[i] = (x >>> 16) | 0x0040;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Bytes a tensor of `numel` elements takes when written as `dtype`. */
export function writtenBytes(numel: number, dtype: WriteDtype): number {
  return numel * (dtype === 'F32' ? 4 : 2);
}

/**
 * Serialize float32 tensors to safetensors as a list of chunks (header, then each tensor's bytes:
 * F32 viewed in place, no copies; BF16 rounded into a new array), ready for writeFileAtomic or
 * writeDirAtomic. Tensors are stored in the given order. The header is padded with spaces so the
 * data buffer starts at a multiple of 8. `fileName` is used in error messages only.
 */
export function encodeSafetensors(tensors: readonly Float32TensorToWrite[], metadata: Record<string, string> = {}, fileName = 'safetensors', dtype: WriteDtype = 'F32'): Uint8Array[] {
  checkLittleEndianHost();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`${fileName}: metadata value for "${key}" must be a string but received ${describe(value)}`);
    }
    header.__metadata__ = metadata;
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const tensor of tensors) {
    const where = `${fileName}: tensor "${tensor.name}"`;
    if (typeof tensor.name !== 'string' || tensor.name === '' || tensor.name === '__metadata__') {
      throw new Error(`${fileName}: expected a non-empty tensor name other than "__metadata__" but received ${describe(tensor.name)}`);
    }
    if (seen.has(tensor.name)) throw new Error(`${where}: name appears twice`);
    seen.add(tensor.name);
    if (!Array.isArray(tensor.shape) || !tensor.shape.every(isNonNegativeInteger)) {
      throw new Error(`${where}: shape must be an array of non-negative integers but received ${describe(tensor.shape)}`);
    }
    if (Object.prototype.toString.call(tensor.data) !== "[object Float32Array]") throw new Error(`${where}: expected data as a Float32Array`);
    const count = elementCount(tensor.shape, where);
    if (tensor.data.length !== count) {
      throw new Error(`${where}: shape ${shapeText(tensor.shape)} needs ${count} values but data has ${tensor.data.length}`);
    }
    header[tensor.name] = { dtype, shape: tensor.shape.slice(), data_offsets: [offset, offset + writtenBytes(count, dtype)] };
    offset += writtenBytes(count, dtype);
  }
  const json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  const paddedLength = Math.ceil(jsonBytes / 8) * 8;
  const headerChunk = Buffer.alloc(HEADER_PREFIX_BYTES + paddedLength, 0x20);
  headerChunk.writeBigUInt64LE(BigInt(paddedLength), 0);
  headerChunk.write(json, HEADER_PREFIX_BYTES, 'utf8');
  const chunks: Uint8Array[] = [headerChunk];
  for (const tensor of tensors) {
    const data = dtype === 'F32' ? tensor.data : float32ToBF16(tensor.data);
    chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return chunks;
}

/** Write F32 tensors to a safetensors file atomically (see lib/io/atomic.ts). */
export function writeSafetensors(filePath: string, tensors: readonly Float32TensorToWrite[], metadata: Record<string, string> = {}): void {
  const chunks: FileContents = encodeSafetensors(tensors, metadata, filePath);
  writeFileAtomic(filePath, chunks);
}
