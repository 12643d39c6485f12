/**
 * Hugging Face checkpoints: a folder with config.json and model.safetensors, or shards and
 * model.safetensors.index.json (lib/io/sharded.ts), plus the tokenizer's files.
 *
 * Each arena parameter is stored as one or more checkpoint tensors (a Mapping):
 *   GPT-2   the same name (the original gpt2 names, or save_pretrained's `transformer.`-prefixed
 *           ones), Conv1D weights transposed ((in, out) on disk, (out, in) in gptune); the
 *           `attn.bias` / `attn.masked_bias` buffers are ignored.
 *   Llama   HF names; q_proj/k_proj/v_proj (and their biases) are the row blocks of the packed
 *   family  qkv_proj ((NH+2NKV)*HS, C), gate_proj/up_proj those of gate_up_proj (2H, C); old
 *           checkpoints' rotary_emb.inv_freq buffers are ignored.
 * A tied model may also store lm_head.weight; it must then equal the embedding.
 * Saving writes what transformers' from_pretrained loads: the same names and layouts, F32 or BF16,
 * sharded above maxShardBytes, config.json and the tokenizer files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CheckpointError, NonFiniteError } from '../errors';
import { FileContents, writeDirAtomic, writeFileAtomic } from '../io/atomic';
import { Float32TensorToWrite, SafetensorsDtype, toFloat32 } from '../io/safetensors';
import {
  checkpointFiles, CheckpointTensor, DEFAULT_MAX_SHARD_SIZE, findCheckpointFiles, INDEX_FILE, readCheckpointTensors, SINGLE_FILE,
} from '../io/sharded';
import type { DeviceName } from '../native';
import type { TensorArena } from '../tensor';
import { ADAPTER_FILES, isAdapterFolder } from '../lora/files';
import { checkInstance, checkOptions, describeValue } from '../util/check';
import { isGGUFPath, loadGGUFModel } from '../gguf/load';
import { loadModelConfig } from './config';
import { configEosTokenIds, Decoder, globalParamName, parameterSpecs } from './decoder';
import { readGenerationConfig } from '../io/generation_config';
import { DecoderConfig } from './decoder_config';
import { BaseDtype, QuantizeDtype, storageOptions } from './frozen_base';

/** Hugging Face's Conv1D stores (in, out); gptune's linear weights are (out, in). */
const CONV1D = /^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;
/** Non-parameter buffers found in published checkpoints. */
const IGNORED_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$|^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;
/** Files of the tokenizer (and generation defaults) carried along with a checkpoint. */
export const TOKENIZER_FILES = [
  'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja',
  'generation_config.json',
];
/**
 * The files of a model folder other than shards: what copyModelFolder carries and what a training
 * output lists in its manifest before the weights are planned (the shard names are recorded when
 * they are known, before they are written).
 */
export const MODEL_FILES = ['config.json', SINGLE_FILE, INDEX_FILE, ...TOKENIZER_FILES];
/** Weight dtypes read (converted to float32); integer tensors are refused rather than cast. */
const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];
/** Matches the packed Llama-family parameters, captures (layer prefix, packed name, weight|bias). */
const PACKED = /^(model\.layers\.\d+\.)(self_attn\.qkv_proj|mlp\.gate_up_proj)\.(weight|bias)$/;

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/** One arena parameter and the checkpoint tensors (row blocks, in order) it is stored as. */
interface Mapping {
  param: string;
  parts: Array<{ name: string; shape: number[] }>;
  /** GPT-2's Conv1D: the single part is the parameter transposed. */
  transposed: boolean;
}

function checkpointMappings(cfg: DecoderConfig): Mapping[] {
  const C = cfg.width, q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim, H = cfg.ffnWidth;
  return parameterSpecs(cfg).specs.map((spec) => {
    const shape = [...spec.shape];
    if (cfg.modelType === 'gpt2') {
      const transposed = CONV1D.test(spec.name);
      return { param: spec.name, parts: [{ name: spec.name, shape: transposed ? [shape[1], shape[0]] : shape }], transposed };
    }
    const m = PACKED.exec(spec.name);
    if (!m) return { param: spec.name, parts: [{ name: spec.name, shape }], transposed: false };
    const [, prefix, packed, kind] = m;
    const blocks: Array<[string, number]> = packed === 'self_attn.qkv_proj'
      ? [['self_attn.q_proj', q], ['self_attn.k_proj', kv], ['self_attn.v_proj', kv]]
      : [['mlp.gate_proj', H], ['mlp.up_proj', H]];
    const parts = blocks.map(([name, rows]) => ({ name: `${prefix}${name}.${kind}`, shape: kind === 'weight' ? [rows, C] : [rows] }));
    return { param: spec.name, parts, transposed: false };
  });
}

/** A stored name as the mappings spell it: GPT-2's save_pretrained prefixes `transformer.`. */
function canonicalName(cfg: DecoderConfig, name: string): string {
  return cfg.modelType === 'gpt2' && name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
}

/** The name a parameter part is saved under. */
function savedName(cfg: DecoderConfig, name: string): string {
  return cfg.modelType === 'gpt2' ? `transformer.${name}` : name;
}

export interface LoadOptions {
  device?: DeviceName;
  /** How the blocks' linear weights are kept (a frozen LoRA base may be bf16, int8, nf4, q8_0 or q4_k); default f32. */
  baseDtype?: BaseDtype;
  /** Weight-only quantized inference: the linear weights and the LM head in int8, q8_0 or q4_k (lib/model/frozen_base.ts storageOptions). */
  quantize?: QuantizeDtype;
}

/**
 * Loads config.json and the weights (single file or shards) from dir into a new model; a .gguf file
 * is read as lib/gguf/load.ts rebuilds it (weights dequantized to float32).
 */
export function loadModel(dir: string, options: LoadOptions = {}): Decoder {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`loadModel: expected dir to be a folder path but received ${describeValue(dir)}`);
  checkOptions('loadModel', 'options', options);
  if (isGGUFPath(dir) && fs.existsSync(dir) && fs.statSync(dir).isFile()) return loadGGUFModel(dir, options).model;
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: model folder not found`);
  const config = loadModelConfig(dir);
  if (!fs.existsSync(path.join(dir, SINGLE_FILE)) && !fs.existsSync(path.join(dir, INDEX_FILE)) && fs.existsSync(path.join(dir, 'pytorch_model.bin'))) {
    throw new CheckpointError(`${path.join(dir, SINGLE_FILE)}: not found (only pytorch_model.bin is there; gptune reads safetensors: convert it with save_pretrained(safe_serialization=True))`);
  }
  const tensors = readCheckpointTensors(dir);
  const source = path.join(dir, fs.existsSync(path.join(dir, SINGLE_FILE)) ? SINGLE_FILE : INDEX_FILE);
  const generationEos = readGenerationConfig(dir)?.eosTokenIds ?? [];
  const eosTokenIds = [...configEosTokenIds(config), ...generationEos.filter((id) => id < config.vocabSize)];
  const model = new Decoder(config, options.device ?? 'cpu', { ...storageOptions(options.baseDtype, options.quantize), eosTokenIds });
  try {
    fillParameters(model, tensors, source);
    return model;
  } catch (e) {
    model.free();
    throw e;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fillParameters(model: Decoder, stored: Map<string, CheckpointTensor>, source: string): void {
  const cfg = model.config;
  const mappings = checkpointMappings(cfg);
  const wanted = new Set(mappings.flatMap((m) => m.parts.map((p) => p.name)));
  const tiedHeadName = cfg.tiedHead ? 'lm_head.weight' : null;
  const byName = new Map<string, { name: string; tensor: CheckpointTensor }>();
  let tiedHead: { name: string; tensor: CheckpointTensor } | null = null;
  for (const [rawName, tensor] of stored) {
    const name = canonicalName(cfg, rawName);
    if (IGNORED_BUFFER.test(name)) continue;
    if (!FLOAT_DTYPES.includes(tensor.dtype)) {
      throw new CheckpointError(`${tensor.file}: tensor "${rawName}" has dtype ${tensor.dtype} but model weights must be floating point (${FLOAT_DTYPES.join(', ')})`);
    }
    if (name === tiedHeadName) {
      tiedHead = { name: rawName, tensor };
      continue;
    }
    if (!wanted.has(name)) throw new CheckpointError(`${tensor.file}: unexpected tensor "${rawName}" (not a parameter of this ${cfg.modelType} config)`);
    if (byName.has(name)) throw new CheckpointError(`${tensor.file}: tensor "${name}" appears twice (as "${byName.get(name)!.name}" and "${rawName}")`);
    byName.set(name, { name: rawName, tensor });
  }
  const missing = [...wanted].filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new CheckpointError(`${source}: missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  // A low-precision base checks its weights as it stores them (nonFiniteParameter sees only the arena).
  const store = (m: Mapping, data: Float32Array) => {
    try {
      model.setParameter(m.param, data);
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      const part = byName.get(m.parts[0].name)!;
      throw new NonFiniteError(`${part.tensor.file}: tensor "${m.parts.map((p) => byName.get(p.name)!.name).join('" or "')}" holds NaN or infinite values (a diverged run's weights?); gptune does not load non-finite weights`);
    }
  };
  for (const m of mappings) {
    const values = m.parts.length === 1 ? null : new Float32Array(m.parts.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0));
    let offset = 0;
    for (const part of m.parts) {
      const { name: rawName, tensor } = byName.get(part.name)!;
      if (!sameShape(tensor.shape, part.shape)) {
        throw new CheckpointError(`${tensor.file}: tensor "${rawName}" has shape [${tensor.shape.join(', ')}] but config.json implies [${part.shape.join(', ')}]`);
      }
      let data = toFloat32(tensor);
      if (m.transposed) data = transpose(data, part.shape[0], part.shape[1]);
      if (values === null) {
        store(m, data);
      } else {
        values.set(data, offset);
        offset += data.length;
      }
    }
    if (values !== null) store(m, values);
  }
  const nonFinite = model.nonFiniteParameter();
  if (nonFinite !== null) {
    const parts = mappings.find((m) => m.param === nonFinite)!.parts.map((p) => byName.get(p.name)!);
    throw new NonFiniteError(`${parts[0].tensor.file}: tensor "${parts.map((p) => p.name).join('" or "')}" holds NaN or infinite values (a diverged run's weights?); gptune does not load non-finite weights`);
  }
  if (tiedHead) checkTiedHead(model, tiedHead.name, tiedHead.tensor);
}

/** A stored lm_head of a tied model must be the embedding itself. */
function checkTiedHead(model: Decoder, name: string, tensor: CheckpointTensor): void {
  const embed = model.params.get(globalParamName(model.config, 'embed'));
  if (!sameShape(tensor.shape, embed.shape)) {
    throw new CheckpointError(`${tensor.file}: tensor "${name}" has shape [${tensor.shape.join(', ')}] but must equal the embedding's [${embed.shape.join(', ')}] (the LM head is tied to it)`);
  }
  const w = embed.read(), head = toFloat32(tensor);
  for (let i = 0; i < w.length; i++) {
    if (w[i] !== head[i]) {
      throw new CheckpointError(`${tensor.file}: "${name}" differs from the token embedding, but config.json ties them (tie_word_embeddings); gptune supports only a head equal to the embedding here`);
    }
  }
}

/**
 * The tensors of a checkpoint, named and laid out as save_pretrained writes them. `arena` may be the
 * gradients (same layout as the parameters), to compare them with a reference by checkpoint name.
 */
export function checkpointTensors(model: Decoder, arena: TensorArena = model.params): Float32TensorToWrite[] {
  const cfg = model.config;
  const out: Float32TensorToWrite[] = [];
  for (const m of checkpointMappings(cfg)) {
    const values = arena === model.params ? model.readParameter(m.param) : arena.get(m.param).read();
    let offset = 0;
    for (const part of m.parts) {
      const numel = part.shape.reduce((a, b) => a * b, 1);
      let data = m.parts.length === 1 ? values : values.subarray(offset, offset + numel);
      if (m.transposed) data = transpose(data, part.shape[1], part.shape[0]);
      out.push({ name: savedName(cfg, part.name), shape: part.shape, data });
      offset += numel;
    }
  }
  return out;
}

export type SaveDtype = 'f32' | 'bf16';

export interface SaveOptions {
  /** Copy tokenizer files (vocab.json, merges.txt, tokenizer.json, ...) from this folder when present. */
  tokenizerFrom?: string | null;
  /** Extra files written into the same folder, in the same atomic step. */
  extraFiles?: Record<string, FileContents>;
  /** Weights as float32 (default) or rounded to bfloat16. */
  dtype?: SaveDtype;
  /** Shard the weights above this size: bytes or "5GB", "500MiB" as save_pretrained's max_shard_size (default "5GB"). */
  maxShardSize?: string | number;
}

/**
 * config.json as written: the model's own keys (GPT-2: configToJSON's; the Llama family: the file
 * it was loaded from, every key kept) with torch_dtype saying what the weights are stored as.
 */
export function savedConfigJSON(cfg: DecoderConfig, dtype: SaveDtype = 'f32'): Record<string, unknown> {
  return { ...cfg.json, torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32' };
}

/**
 * The files of the model folder `dir` as they are to be published elsewhere: config.json (its
 * torch_dtype saying what the weights are stored as), the tokenizer files, then the weights,
 * re-encoded as `dtype` and re-sharded at maxShardBytes; the single file or the index comes last,
 * so a reader never sees an index naming shards not yet written.
 */
export function reencodedModelFiles(dir: string, options: Pick<SaveOptions, 'dtype' | 'maxShardSize'> = {}): Record<string, FileContents> {
  const dtype = options.dtype ?? 'f32';
  const files: Record<string, FileContents> = {};
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  files['config.json'] = JSON.stringify({ ...config, torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32' }, null, 2) + '\n';
  for (const name of TOKENIZER_FILES) {
    const src = path.join(dir, name);
    if (fs.existsSync(src)) files[name] = fs.readFileSync(src);
  }
  const tensors = [...readCheckpointTensors(dir)].map(([name, t]) => ({ name, shape: t.shape, data: toFloat32(t) }));
  const weights = checkpointFiles(tensors, dir, options.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE, dtype === 'bf16' ? 'BF16' : 'F32');
  const last: string[] = Object.keys(weights).filter((n) => n === SINGLE_FILE || n === INDEX_FILE);
  for (const name of Object.keys(weights).filter((n) => !last.includes(n))) files[name] = weights[name];
  for (const name of last) files[name] = weights[name];
  return files;
}

/** Writes dir/{config.json, weights, tokenizer files} atomically (all or nothing). */
export function saveModel(model: Decoder, dir: string, options: SaveOptions = {}): void {
  checkInstance('saveModel', 'model', model, Decoder, 'a Decoder model');
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`saveModel: expected dir to be a folder path but received ${describeValue(dir)}`);
  checkOptions('saveModel', 'options', options);
  writeDirAtomic(dir, modelFolderFiles(model, dir, options));
}

/**
 * The files saveModel writes into `dir` (file name -> contents): config.json, the weights (one
 * file, or shards and their index), the tokenizer files, options.extraFiles.
 */
export function modelFolderFiles(model: Decoder, dir: string, options: SaveOptions = {}): Record<string, FileContents> {
  const dtype = options.dtype ?? 'f32';
  const files: Record<string, FileContents> = {};
  files['config.json'] = JSON.stringify(savedConfigJSON(model.config, dtype), null, 2) + '\n';
  Object.assign(files, checkpointFiles(checkpointTensors(model), dir, options.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE, dtype === 'bf16' ? 'BF16' : 'F32'));
  if (options.tokenizerFrom) {
    for (const name of TOKENIZER_FILES) {
      const src = path.join(options.tokenizerFrom, name);
      if (fs.existsSync(src)) files[name] = fs.readFileSync(src);
    }
  }
  Object.assign(files, options.extraFiles ?? {});
  return files;
}

/**
 * The model files of `from` read into memory: config.json, the tokenizer files and `extraNames` that
 * exist there, and the weights (model.safetensors, or the index and every shard it names; a LoRA
 * checkpoint's adapter files instead).
 */
export function readModelFiles(from: string, extraNames: readonly string[] = []): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const name of ['config.json', ...TOKENIZER_FILES, ...extraNames]) {
    const file = path.join(from, name);
    if (fs.existsSync(file)) files[name] = fs.readFileSync(file);
  }
  // A LoRA checkpoint holds an adapter (lib/lora/files.ts) instead of weights.
  if (isAdapterFolder(from)) {
    for (const name of ADAPTER_FILES) files[name] = fs.readFileSync(path.join(from, name));
    return files;
  }
  const weights = findCheckpointFiles(from);
  for (const file of weights.files) files[path.basename(file)] = fs.readFileSync(file);
  if (weights.index) files[INDEX_FILE] = fs.readFileSync(weights.index.file);
  return files;
}

/**
 * Copies a model folder (config, weights, tokenizer files, and `extraNames` such as a checkpoint's
 * trainer_state.json when present) to `to`, replacing the folder `to` as a whole atomically.
 */
export function copyModelFolder(from: string, to: string, extraNames: readonly string[] = []): void {
  writeDirAtomic(to, readModelFiles(from, extraNames));
}

/** A weight file of a model folder: the single model.safetensors, the shard index, or a shard. */
export function isWeightFile(name: string): boolean {
  return name === SINGLE_FILE || name === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(name);
}

/**
 * Writes model files into `dir` one by one, each atomically: the shards, then model.safetensors or the
 * index last, so a reader never meets an index naming shards not yet written. The folder itself and
 * anything else in it are left alone (a training output holds its checkpoints beside the model, and is
 * never swapped as a whole); config.json and the tokenizer files are the same for every checkpoint of a run.
 * Weight files of an earlier save in another layout (one file vs shards, another shard count) would
 * shadow or outlive this one: those that `ownsStale` says this writer created are removed before the
 * new single file or index is written, so a reader in between finds no weights (an error), never the old ones.
 */
export function writeModelFiles(dir: string, files: Record<string, FileContents>, options: { ownsStale?: (name: string) => boolean } = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const last = [SINGLE_FILE, INDEX_FILE];
  for (const name of Object.keys(files).filter((n) => !last.includes(n))) writeFileAtomic(path.join(dir, name), files[name]);
  if (options.ownsStale) {
    for (const name of fs.readdirSync(dir)) {
      if (isWeightFile(name) && files[name] === undefined && options.ownsStale(name)) fs.rmSync(path.join(dir, name));
    }
  }
  for (const name of last) if (files[name] !== undefined) writeFileAtomic(path.join(dir, name), files[name]);
}
