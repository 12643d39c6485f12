/**
 * Hugging Face GPT-2 checkpoints: a folder with config.json and model.safetensors (plus the
 * tokenizer's vocab.json / merges.txt when there is one). Loading accepts the original gpt2 names
 * (`h.0.attn.c_attn.weight`, with the `attn.bias` / `attn.masked_bias` buffers ignored) and the
 * `transformer.`-prefixed names that save_pretrained writes, with or without an explicit
 * `lm_head.weight` (tied to wte). Saving writes what GPT2LMHeadModel.from_pretrained loads.
 */
import * as fs from 'fs';
import * as path from 'path';
import { NonFiniteError } from '../errors';
import { FileContents, writeDirAtomic, writeFileAtomic } from '../io/atomic';
import { encodeSafetensors, Float32TensorToWrite, readSafetensors, SafetensorsDtype, SafetensorsTensor, toFloat32 } from '../io/safetensors';
import type { DeviceName } from '../native';
import { checkInstance, checkOptions, describeValue } from '../util/check';
import { configToJSON, loadGPT2Config } from './config';
import { GPT2 } from './gpt2';

/** Hugging Face's Conv1D stores (in, out); gptune's linear weights are (out, in). */
const CONV1D = /^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;
/** Non-parameter buffers of the original gpt2 checkpoints. */
const IGNORED_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;
/** Weight dtypes read (converted to float32); integer tensors are refused rather than cast. */
const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];
/** Files of the tokenizer (and generation_config.json, its sampling defaults and stop tokens) carried along with a checkpoint. */
export const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'generation_config.json'];
/** The files that make a model folder: what copyModelFolder carries and a model output holds. */
export const MODEL_FILES = ['config.json', 'model.safetensors', ...TOKENIZER_FILES];

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

export interface LoadOptions {
  device?: DeviceName;
}

/** Loads config.json + model.safetensors from dir into a new GPT2 on the given device. */
export function loadModel(dir: string, options: LoadOptions = {}): GPT2 {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`loadModel: expected dir to be a folder path but received ${describeValue(dir)}`);
  checkOptions('loadModel', 'options', options);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: model folder not found`);
  const config = loadGPT2Config(dir);
  const file = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(file)) {
    const hasBin = fs.existsSync(path.join(dir, 'pytorch_model.bin'));
    throw new Error(`${file}: not found${hasBin ? ' (only pytorch_model.bin is there; gptune reads safetensors: convert it with save_pretrained(safe_serialization=True))' : ''}`);
  }
  const st = readSafetensors(file);
  const model = new GPT2(config, options.device ?? 'cpu');
  try {
    fillParameters(model, st.tensors, file);
  } catch (e) {
    model.free();
    throw e;
  }
  return model;
}

function fillParameters(model: GPT2, tensors: Map<string, SafetensorsTensor>, file: string): void {
  const byName = new Map<string, { name: string; tensor: SafetensorsTensor }>();
  let lmHead: { name: string; data: Float32Array; shape: number[] } | null = null;
  for (const [rawName, tensor] of tensors) {
    const name = rawName.startsWith('transformer.') ? rawName.slice('transformer.'.length) : rawName;
    if (IGNORED_BUFFER.test(name)) continue;
    if (!FLOAT_DTYPES.includes(tensor.dtype)) {
      throw new Error(`${file}: tensor "${rawName}" has dtype ${tensor.dtype} but model weights must be floating point (${FLOAT_DTYPES.join(', ')})`);
    }
    if (name === 'lm_head.weight') {
      lmHead = { name: rawName, data: toFloat32(tensor), shape: tensor.shape };
      continue;
    }
    if (!model.params.tensors.has(name)) {
      throw new Error(`${file}: unexpected tensor "${rawName}" (not a GPT-2 parameter for this config)`);
    }
    if (byName.has(name)) throw new Error(`${file}: tensor "${name}" appears twice (as "${byName.get(name)!.name}" and "${rawName}")`);
    byName.set(name, { name: rawName, tensor });
  }
  const missing = model.parameterNames.filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new Error(`${file}: missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  for (const [name, target] of model.params.tensors) {
    const { name: rawName, tensor } = byName.get(name)!;
    const conv = CONV1D.test(name);
    // Expected stored shape: Conv1D weights are (in, out), i.e. our (out, in) transposed.
    const expected = conv ? [target.shape[1], target.shape[0]] : [...target.shape];
    if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
      throw new Error(`${file}: tensor "${rawName}" has shape [${tensor.shape.join(', ')}] but config.json implies [${expected.join(', ')}]`);
    }
    const values = toFloat32(tensor);
    target.write(conv ? transpose(values, expected[0], expected[1]) : values);
  }
  const nonFinite = model.nonFiniteParameter();
  if (nonFinite !== null) {
    throw new NonFiniteError(`${file}: tensor "${byName.get(nonFinite)!.name}" holds NaN or infinite values (a diverged run's weights?); gptune does not load non-finite weights`);
  }
  if (lmHead) {
    const wte = model.params.get('wte.weight');
    if (lmHead.shape.length !== 2 || lmHead.shape[0] !== wte.shape[0] || lmHead.shape[1] !== wte.shape[1]) {
      throw new Error(`${file}: tensor "${lmHead.name}" has shape [${lmHead.shape.join(', ')}] but must equal wte's [${wte.shape.join(', ')}] (the LM head is tied to wte)`);
    }
    const w = wte.read();
    for (let i = 0; i < w.length; i++) {
      if (w[i] !== lmHead.data[i]) {
        throw new Error(`${file}: "${lmHead.name}" differs from wte.weight; gptune supports GPT-2 with the LM head tied to the token embedding only`);
      }
    }
  }
}

/** The tensors of a checkpoint, named and laid out as save_pretrained writes them. */
export function checkpointTensors(model: GPT2): Float32TensorToWrite[] {
  const out: Float32TensorToWrite[] = [];
  for (const [name, t] of model.params.tensors) {
    const values = t.read();
    if (CONV1D.test(name)) {
      out.push({ name: `transformer.${name}`, shape: [t.shape[1], t.shape[0]], data: transpose(values, t.shape[0], t.shape[1]) });
    } else {
      out.push({ name: `transformer.${name}`, shape: [...t.shape], data: values });
    }
  }
  return out;
}

export interface SaveOptions {
  /** Copy tokenizer files (vocab.json, merges.txt, ...) from this folder when present. */
  tokenizerFrom?: string | null;
  /** Extra files written into the same folder, in the same atomic step. */
  extraFiles?: Record<string, FileContents>;
}

/** Writes dir/{config.json, model.safetensors, tokenizer files} atomically (all or nothing). */
export function saveModel(model: GPT2, dir: string, options: SaveOptions = {}): void {
  writeDirAtomic(dir, modelFolderFiles(model, dir, options));
}

/** The files saveModel writes into `dir` (file name -> contents). */
export function modelFolderFiles(model: GPT2, dir: string, options: SaveOptions = {}): Record<string, FileContents> {
  checkInstance('saveModel', 'model', model, GPT2, 'a GPT2 model');
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`saveModel: expected dir to be a folder path but received ${describeValue(dir)}`);
  checkOptions('saveModel', 'options', options);
  const files: Record<string, FileContents> = {};
  files['config.json'] = JSON.stringify(configToJSON(model.config), null, 2) + '\n';
  // transformers refuses safetensors files whose metadata lacks format = "pt".
  files['model.safetensors'] = encodeSafetensors(checkpointTensors(model), { format: 'pt' }, path.join(dir, 'model.safetensors'));
  if (options.tokenizerFrom) {
    for (const name of TOKENIZER_FILES) {
      const src = path.join(options.tokenizerFrom, name);
      if (fs.existsSync(src)) files[name] = fs.readFileSync(src);
    }
  }
  Object.assign(files, options.extraFiles ?? {});
  return files;
}

/** The model files of `from` (MODEL_FILES that exist there, plus `extraNames` that do), read into memory. */
function readModelFiles(from: string, extraNames: readonly string[]): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const name of [...MODEL_FILES, ...extraNames]) {
    const file = path.join(from, name);
    if (fs.existsSync(file)) files[name] = fs.readFileSync(file);
  }
  if (!files['model.safetensors']) throw new Error(`${path.join(from, 'model.safetensors')}: not found (copying a model folder)`);
  return files;
}

/**
 * Copies a model folder (config, weights, tokenizer files, and `extraNames` such as a checkpoint's
 * trainer_state.json when present) to `to`, replacing the folder `to` as a whole atomically.
 */
export function copyModelFolder(from: string, to: string, extraNames: readonly string[] = []): void {
  writeDirAtomic(to, readModelFiles(from, extraNames));
}

/**
 * Writes model files into `dir` one by one, each atomically, the weights last; the folder itself
 * and anything else in it are left alone (a training output holds its checkpoints beside the model,
 * and is never swapped as a whole). A reader sees the old weights or the new ones, never a mix
 * within one file; config.json and the tokenizer files are the same for every checkpoint of a run.
 */
export function writeModelFiles(dir: string, files: Record<string, FileContents>): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of Object.keys(files).filter((n) => n !== 'model.safetensors')) writeFileAtomic(path.join(dir, name), files[name]);
  if (files['model.safetensors'] !== undefined) writeFileAtomic(path.join(dir, 'model.safetensors'), files['model.safetensors']);
}

/** Copies the model files of `from` into the folder `dir` with writeModelFiles (nothing else in `dir` is touched). */
export function copyModelFilesInto(from: string, dir: string): void {
  writeModelFiles(dir, readModelFiles(from, []));
}
