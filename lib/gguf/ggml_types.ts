/**
 * The GGML block formats the native kernels implement (kernels.inc quantize_ggml / dequantize_ggml /
 * matmul_ggml_*; native/include/gptune/ggml_blocks.h): ggml's type id, the values per block and the bytes per
 * block, as ggml-common.h lays the blocks out. A row of C values is C / block blocks, rows back to back.
 */

export const GGML_BLOCK_TYPES = {
  Q4_0: { id: 2, block: 32, bytes: 18 },
  Q5_0: { id: 6, block: 32, bytes: 22 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  Q4_K: { id: 12, block: 256, bytes: 144 },
  Q5_K: { id: 13, block: 256, bytes: 176 },
  Q6_K: { id: 14, block: 256, bytes: 210 },
} as const;

export type GGMLBlockTypeName = keyof typeof GGML_BLOCK_TYPES;

export interface GGMLBlockType {
  name: GGMLBlockTypeName;
  id: number;
  /** Values per block. */
  block: number;
  /** Bytes per block. */
  bytes: number;
}

const BY_NAME = new Map<string, GGMLBlockType>();
const BY_ID = new Map<number, GGMLBlockType>();
for (const [name, t] of Object.entries(GGML_BLOCK_TYPES)) {
  const entry: GGMLBlockType = { name: name as GGMLBlockTypeName, ...t };
  BY_NAME.set(name, entry);
  BY_ID.set(t.id, entry);
}

/** Every block type, in id order. */
export const GGML_BLOCK_TYPE_LIST: readonly GGMLBlockType[] = [...BY_ID.values()].sort((a, b) => a.id - b.id);

/** The block type of a ggml type id or name (e.g. 12 or 'Q4_K'), or undefined when it is not one of the six. */
export function ggmlBlockType(idOrName: number | string): GGMLBlockType | undefined {
  return typeof idOrName === 'number' ? BY_ID.get(idOrName) : BY_NAME.get(idOrName);
}

/** Whether rows of `rowLength` values can be stored as `type` (its blocks do not cross rows). */
export function fitsBlockRows(type: GGMLBlockType, rowLength: number): boolean {
  return Number.isInteger(rowLength) && rowLength > 0 && rowLength % type.block === 0;
}

/** Bytes of `rows` rows of `rowLength` values stored as `type`; a RangeError when the rows do not fit whole blocks. */
export function ggmlBlockBytes(type: GGMLBlockType, rows: number, rowLength: number): number {
  if (!fitsBlockRows(type, rowLength))
    throw new RangeError(`ggmlBlockBytes: a ${type.name} row must be a positive multiple of ${type.block} values but received ${rowLength}`);
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`ggmlBlockBytes: expected a whole number of rows but received ${rows}`);
  return rows * (rowLength / type.block) * type.bytes;
}
