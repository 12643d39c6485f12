/**
 * PEFT's adapter folder: adapter_config.json and adapter_model.safetensors, read and written as
 * Hugging Face PEFT does (see ../shared/specs/lora-gguf-ddp.md §1):
 *   - the config is every LoraConfig key, json.dumps(indent=2, sort_keys=True);
 *   - tensors are `base_model.model.<module>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r),
 *     for GPT-2's Conv1D too (fan_in_fan_out only changes how PEFT merges); modules to save are
 *     `base_model.model.<module>.weight`; the file's metadata is {"format": "pt"}.
 * Reading checks everything against the base model, so a wrong adapter is a one-line error naming
 * the file and the key, never a silently different model.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CheckpointError } from '../errors';
import { isHubModelSpec, parseHubModelId } from '../hub/cache';
import type { FileContents } from '../io/atomic';
import { encodeSafetensors, readSafetensors, toFloat32 } from '../io/safetensors';
import type { DecoderConfig } from '../model/decoder_config';
import { adapterSpecs, LoraAdapter } from './adapter';
import { checkLoraSettings, defaultTargets, LoraSettings } from './modules';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const ADAPTER_FILES = [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE];
/** PEFT's prefix of every state-dict key of a PeftModelForCausalLM. */
const PREFIX = 'base_model.model.';

/** Whether `dir` holds a PEFT adapter (rather than a model). */
export function isAdapterFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE));
}

/**
 * The names target_modules holds: as given, the family's defaults, or for all-linear the full module
 * keys PEFT expands it to (tuners_utils.py _maybe_include_all_linear_layers).
 */
function targetNames(adapter: LoraAdapter): string[] {
  const t = adapter.settings.targets;
  if (t === 'all-linear') return adapter.modules.map((m) => m.key);
  if (t === null) return defaultTargets(adapter.config);
  return [...t];
}

/** JSON with every object's keys sorted, as Python's json.dumps(sort_keys=True, indent=2). */
function sortedJSON(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2);
}

/** adapter_config.json's object as PEFT's LoraConfig saves it (inference_mode true, as save_pretrained sets). */
export function adapterConfigJSON(adapter: LoraAdapter, baseModel: string | null): Record<string, unknown> {
  const s = adapter.settings;
  // A Hub base recorded as org/name@<commit>: PEFT keeps the repo id and the commit apart.
  const hub = baseModel !== null && baseModel.includes('@') && isHubModelSpec(baseModel) ? parseHubModelId(baseModel) : null;
  return {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: hub?.repoId ?? baseModel, bias: 'none', eva_config: null, exclude_modules: null,
    // PEFT forces fan_in_fan_out for transformers' Conv1D (GPT-2) and saves the forced value.
    fan_in_fan_out: adapter.config.modelType === 'gpt2', inference_mode: true, init_lora_weights: true, layer_replication: null,
    layers_pattern: null, layers_to_transform: null, loftq_config: {}, lora_alpha: s.alpha, lora_bias: false, lora_dropout: s.dropout,
    megatron_config: null, megatron_core: 'megatron.core', modules_to_save: s.modulesToSave.length > 0 ? [...s.modulesToSave] : null,
    peft_type: 'LORA', r: s.r, rank_pattern: {}, revision: hub?.revision ?? null, target_modules: targetNames(adapter), task_type: 'CAUSAL_LM',
    use_dora: false, use_rslora: s.useRslora,
  };
}

/** The two files of a PEFT adapter folder for `adapter` (the model's adapter arena, read now). */
export function adapterFiles(adapter: LoraAdapter, baseModel: string | null, dir = '.'): Record<string, FileContents> {
  const tensors = [...adapter.arena.tensors.values()].map((t) => ({ name: PREFIX + t.name, shape: [...t.shape], data: t.read() }));
  return {
    [ADAPTER_CONFIG_FILE]: sortedJSON(adapterConfigJSON(adapter, baseModel)) + '\n',
    [ADAPTER_WEIGHTS_FILE]: encodeSafetensors(tensors, { format: 'pt' }, path.join(dir, ADAPTER_WEIGHTS_FILE)),
  };
}

/** An adapter folder as read: its settings, the base it names, and its tensors by arena name. */
export interface AdapterFolder {
  dir: string;
  settings: LoraSettings;
  baseModel: string | null;
  tensors: Map<string, Float32Array>;
}

/**
 * Reads and checks the adapter folder `dir` against the base model's config: PEFT's LoRA with
 * features gptune implements, and exactly the tensors (names and shapes) that config and base imply.
 */
export function readAdapterFolder(dir: string, cfg: DecoderConfig, label = '--adapter'): AdapterFolder {
  const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CheckpointError(`${label} ${dir}: folder not found`);
  if (!fs.existsSync(configFile)) throw new CheckpointError(`${label} ${dir}: no ${ADAPTER_CONFIG_FILE} (not a PEFT adapter folder)`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${configFile}: does not parse as JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(`${configFile}: expected a JSON object`);
  const bad = (key: string, expected: string) => new CheckpointError(`${configFile}: "${key}" ${expected} but is ${JSON.stringify(json[key])}`);
  if (json.peft_type !== 'LORA') throw bad('peft_type', 'must be "LORA" (gptune reads LoRA adapters)');
  if (json.task_type != null && json.task_type !== 'CAUSAL_LM') throw bad('task_type', 'must be "CAUSAL_LM"');
  const number = (key: string, fallback: number) => {
    const v = json[key] ?? fallback;
    if (typeof v !== 'number') throw bad(key, 'must be a number');
    return v;
  };
  for (const key of ['use_dora', 'lora_bias']) if (json[key] === true) throw bad(key, 'must be false (gptune implements plain LoRA)');
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = json[key];
    if (v != null && (typeof v !== 'object' || Object.keys(v as object).length > 0)) throw bad(key, 'must be empty (per-module ranks are not supported)');
  }
  for (const key of ['layers_to_transform', 'layer_replication', 'exclude_modules']) if (json[key] != null) throw bad(key, 'must be null (not supported)');
  if (json.bias != null && json.bias !== 'none') throw bad('bias', 'must be "none" (trained biases are not supported)');
  const rawTargets = json.target_modules;
  let targets: LoraSettings['targets'];
  if (rawTargets === 'all-linear') targets = 'all-linear';
  else if (Array.isArray(rawTargets) && rawTargets.every((t) => typeof t === 'string')) targets = rawTargets as string[];
  else throw bad('target_modules', 'must be a list of module names or "all-linear" (regular expressions are not supported)');
  const rawSave = json.modules_to_save ?? [];
  if (!Array.isArray(rawSave) || !rawSave.every((t) => typeof t === 'string')) throw bad('modules_to_save', 'must be null or a list of module names');
  const useRslora = json.use_rslora ?? false;
  if (typeof useRslora !== 'boolean') throw bad('use_rslora', 'must be true or false');
  const settings: LoraSettings = {
    r: number('r', 8), alpha: number('lora_alpha', 8), dropout: number('lora_dropout', 0), targets, useRslora, modulesToSave: rawSave as string[],
  };
  checkLoraSettings(settings, (key) => `${configFile}: "${({ r: 'r', alpha: 'lora_alpha', dropout: 'lora_dropout' } as Record<string, string>)[key] ?? key}"`);
  const baseModel = typeof json.base_model_name_or_path === 'string' ? json.base_model_name_or_path : null;
  const trainedOn = baseModel ? ` (the adapter was trained on ${baseModel})` : '';
  let specs;
  try {
    specs = adapterSpecs(cfg, settings, { targets: `${configFile}: "target_modules"`, modulesToSave: `${configFile}: "modules_to_save"` }).specs;
  } catch (e) {
    throw new CheckpointError(`${(e as Error).message}${trainedOn}`);
  }
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  if (!fs.existsSync(weightsFile)) {
    const bin = fs.existsSync(path.join(dir, 'adapter_model.bin')) ? ' (only adapter_model.bin is there; gptune reads safetensors: save with safe_serialization=True)' : '';
    throw new CheckpointError(`${weightsFile}: not found${bin}`);
  }
  const stored = readSafetensors(weightsFile).tensors;
  const tensors = new Map<string, Float32Array>();
  for (const spec of specs) {
    const key = PREFIX + spec.name;
    const t = stored.get(key);
    if (!t) throw new CheckpointError(`${weightsFile}: missing tensor "${key}"${trainedOn}`);
    if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) throw new CheckpointError(`${weightsFile}: tensor "${key}" has dtype ${t.dtype}; expected a float type`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new CheckpointError(`${weightsFile}: tensor "${key}" has shape [${t.shape.join(', ')}] but this base model needs [${spec.shape.join(', ')}]${trainedOn}`);
    }
    const data = toFloat32(t);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new CheckpointError(`${weightsFile}: tensor "${key}" holds NaN or infinite values`);
    }
    tensors.set(spec.name, data);
  }
  for (const key of stored.keys()) {
    if (!tensors.has(key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key)) {
      throw new CheckpointError(`${weightsFile}: unexpected tensor "${key}" (not a LoRA tensor of ${ADAPTER_CONFIG_FILE}'s target_modules / modules_to_save for this base)`);
    }
  }
  return { dir, settings, baseModel, tensors };
}
