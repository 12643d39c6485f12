/**
 * Hugging Face checkpoints split over several safetensors files ("shards"), as save_pretrained writes them
 * above its max_shard_size:
 *
 *   model-00001-of-00003.safetensors ... model-00003-of-00003.safetensors
 *   model.safetensors.index.json   {"metadata": {"total_size": <sum of tensor bytes>},
 *                                   "weight_map": {"<tensor name>": "<shard file>", ...}}
 *
 * A checkpoint that fits one shard is a single model.safetensors and has no index. Reading accepts either
 * layout (model.safetensors first, as transformers looks for it first) and checks the index against the shard
 * headers before any tensor bytes are read; writing returns the files for writeDirAtomic, so a save is all or
 * nothing together with the config and tokenizer files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CheckpointError } from '../errors';
import { FileContents } from './atomic';
import {
  describe, encodeSafetensors, Float32TensorToWrite, readSafetensors, readSafetensorsHeader, SafetensorsTensor, WriteDtype, writtenBytes,
} from './safetensors';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** save_pretrained's default max_shard_size. */
export const DEFAULT_MAX_SHARD_SIZE = '5GB';

const SIZE_UNITS: Record<string, number> = { KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, KB: 1e3, MB: 1e6, GB: 1e9 };

/**
 * A shard size as transformers parses max_shard_size: a byte count, or an integer with KB/MB/GB (powers of
 * 1000) or KiB/MiB/GiB (powers of 1024), any case; a lowercase final "b" (e.g. "5Gb") means bits, 1/8 of that.
 * `what` names the option in the error.
 */
export function parseShardSize(size: string | number, what = 'max shard size'): number {
  if (typeof size === 'number') {
    if (Number.isSafeInteger(size) && size > 0) return size;
    throw new CheckpointError(`${what}: expected a positive whole number of bytes or a size like "5GB" but received ${size}`);
  }
  const match = /^\s*(\d+)\s*([KMG]i?B)?\s*$/i.exec(size);
  const unit = match?.[2] ?? '';
  const bytes = match === null ? NaN : Number(match[1]) * (unit === '' ? 1 : SIZE_UNITS[unit.toUpperCase()]);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new CheckpointError(`${what}: expected a positive integer of bytes or an integer with KB, MB, GB, KiB, MiB or GiB (e.g. "5GB") but received ${JSON.stringify(size)}`);
  }
  const bits = unit.endsWith('b') && !unit.toUpperCase().includes('I');
  return bits ? Math.floor(bytes / 8) : bytes;
}

/** The validated content of a model.safetensors.index.json. */
export interface ShardIndex {
  /** tensor name -> shard file name, in the index's order. */
  weightMap: Map<string, string>;
  /** metadata.total_size when present (transformers writes it; it does not need it to load). */
  totalSize: number | undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parse and validate an index file's text; `file` is used in messages only. */
export function parseShardIndex(text: string, file: string): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json)) throw new CheckpointError(`${file}: expected a JSON object but found ${describe(json)}`);
  const map = json.weight_map;
  if (!isPlainObject(map)) throw new CheckpointError(`${file}: key "weight_map": expected an object of tensor name -> shard file but found ${describe(map)}`);
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    // A shard is a file beside the index: no folders, so an index cannot point outside the checkpoint.
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..') {
      throw new CheckpointError(`${file}: weight_map["${name}"]: expected a shard file name beside the index but found ${describe(shard)}`);
    }
    weightMap.set(name, shard);
  }
  if (weightMap.size === 0) throw new CheckpointError(`${file}: key "weight_map" is empty`);
  let totalSize: number | undefined;
  if (json.metadata !== undefined) {
    if (!isPlainObject(json.metadata)) throw new CheckpointError(`${file}: key "metadata": expected an object but found ${describe(json.metadata)}`);
    const total = json.metadata.total_size;
    if (total !== undefined) {
      if (typeof total !== 'number' || !Number.isSafeInteger(total) || total < 0) {
        throw new CheckpointError(`${file}: key "metadata.total_size": expected a non-negative integer but found ${describe(total)}`);
      }
      totalSize = total;
    }
  }
  return { weightMap, totalSize };
}

/** A tensor read from a checkpoint, with the file it came from (for messages about it). */
export interface CheckpointTensor extends SafetensorsTensor {
  file: string;
}

export interface CheckpointFiles {
  /** The safetensors files of the checkpoint, in shard order (one for an unsharded checkpoint). */
  files: string[];
  /** The index file and its content, or undefined for a single model.safetensors. */
  index?: { file: string } & ShardIndex;
}

/** Which files hold the checkpoint in `dir`: model.safetensors, else the shards its index names. */
export function findCheckpointFiles(dir: string): CheckpointFiles {
  const single = path.join(dir, SINGLE_FILE);
  if (fs.existsSync(single)) return { files: [single] };
  const indexFile = path.join(dir, INDEX_FILE);
  if (!fs.existsSync(indexFile)) {
    throw new CheckpointError(`${dir}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found`);
  }
  const index = parseShardIndex(fs.readFileSync(indexFile, 'utf8'), indexFile);
  const shards = [...new Set(index.weightMap.values())].sort();
  for (const shard of shards) {
    const shardPath = path.join(dir, shard);
    if (!fs.existsSync(shardPath)) {
      const example = [...index.weightMap].find(([, s]) => s === shard)![0];
      throw new CheckpointError(`${indexFile}: shard "${shard}" (holding "${example}") not found: ${shardPath}`);
    }
  }
  return { files: shards.map((s) => path.join(dir, s)), index: { file: indexFile, ...index } };
}

/**
 * Every tensor of the checkpoint in `dir` (single file or sharded), by name. For a sharded checkpoint the
 * index and the shard headers must agree exactly: each tensor in exactly one shard, the one the index names.
 * All headers are checked before any tensor data is read.
 */
export function readCheckpointTensors(dir: string): Map<string, CheckpointTensor> {
  const { files, index } = findCheckpointFiles(dir);
  if (index !== undefined) {
    const { weightMap } = index;
    const foundIn = new Map<string, string>();  // tensor name -> the shard file holding it
    for (const file of files) {
      for (const entry of readSafetensorsHeader(file).entries) {
        const earlier = foundIn.get(entry.name);
        if (earlier !== undefined) {
          throw new CheckpointError(`${file}: tensor "${entry.name}" is also in ${path.basename(earlier)} (a tensor must be in one shard)`);
        }
        foundIn.set(entry.name, file);
      }
    }
    for (const [name, file] of foundIn) {
      const mapped = weightMap.get(name);
      if (mapped !== path.basename(file)) {
        throw new CheckpointError(mapped === undefined
          ? `${file}: tensor "${name}" is not in ${INDEX_FILE}'s weight_map`
          : `${index.file}: weight_map puts "${name}" in ${mapped} but it is in ${path.basename(file)}`);
      }
    }
    for (const [name, shard] of weightMap) {
      if (!foundIn.has(name)) throw new CheckpointError(`${path.join(dir, shard)}: has no tensor "${name}", which ${INDEX_FILE} maps to it`);
    }
  }
  const tensors = new Map<string, CheckpointTensor>();
  for (const file of files) {
    for (const [name, tensor] of readSafetensors(file).tensors) tensors.set(name, { ...tensor, file });
  }
  return tensors;
}

/**
 * save_pretrained's split (huggingface_hub's split_state_dict_into_shards): walk the tensors in order, close
 * the current shard when the next tensor would take it past maxShardBytes; a tensor larger than maxShardBytes
 * alone gets a shard of its own at once (before the shard still being filled). Returns indices into `sizes`.
 */
export function planShards(sizes: readonly number[], maxShardBytes: number): number[][] {
  const shards: number[][] = [];
  let current: number[] = [];
  let currentBytes = 0;
  sizes.forEach((size, i) => {
    if (size > maxShardBytes) {
      shards.push([i]);
      return;
    }
    if (currentBytes + size > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(i);
    currentBytes += size;
  });
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/** model-00002-of-00005.safetensors */
export function shardFileName(i: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(count)}.safetensors`;
}

/** JSON with object keys sorted at every level and 2-space indent: Python's json.dumps(indent=2, sort_keys=True). */
function sortedJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (!isPlainObject(v)) return v;
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
  };
  return JSON.stringify(sort(value), null, 2);
}

/**
 * The files of a checkpoint holding `tensors` (in the given order), ready for writeDirAtomic beside config.json
 * and the tokenizer: a single model.safetensors when everything fits under maxShardSize (default "5GB"), else
 * the shards and model.safetensors.index.json, as save_pretrained writes them, stored as `dtype` (sizes are
 * those of the stored bytes). `dir` is used in messages only.
 */
export function checkpointFiles(tensors: readonly Float32TensorToWrite[], dir: string,
  maxShardSize: string | number = DEFAULT_MAX_SHARD_SIZE, dtype: WriteDtype = 'F32'): Record<string, FileContents> {
  const maxBytes = parseShardSize(maxShardSize);
  const plan = planShards(tensors.map((t) => writtenBytes(t.data.length, dtype)), maxBytes);
  const metadata = { format: 'pt' };
  if (plan.length === 1) {
    return { [SINGLE_FILE]: encodeSafetensors(tensors, metadata, path.join(dir, SINGLE_FILE), dtype) };
  }
  const files: Record<string, FileContents> = {};
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  plan.forEach((members, i) => {
    const name = shardFileName(i, plan.length);
    const shardTensors = members.map((m) => tensors[m]);
    files[name] = encodeSafetensors(shardTensors, metadata, path.join(dir, name), dtype);
    for (const t of shardTensors) {
      weightMap[t.name] = name;
      totalSize += writtenBytes(t.data.length, dtype);
    }
  });
  files[INDEX_FILE] = `${sortedJson({ metadata: { total_size: totalSize }, weight_map: weightMap })}\n`;
  return files;
}
