/**
 * GPT-2 hyperparameters, named and interpreted exactly as in Hugging Face's config.json for
 * model_type "gpt2", so that checkpoints move between gptune and transformers unchanged.
 */
import * as path from 'path';
import { CheckpointError } from '../errors';
import {
  attentionWidth, ConfigKeys, DecoderConfig, describeValue, ffnInputWidth, MODEL_TYPES, qkvWidth, readConfigJSON,
} from './decoder_config';
import {
  isLlamaType, LLAMA_PRESETS, LLAMA_SPEC_ALIASES, LLAMA_SPEC_BOOLEAN_KEYS, LLAMA_SPEC_INTEGER_KEYS, LLAMA_SPEC_NUMBER_KEYS,
  llamaJSON, llamaSpecBase, parseLlamaConfig,
} from './llama_config';

export type { DecoderConfig, ModelType, RopeScaling } from './decoder_config';

export type GPT2Activation = 'gelu_new' | 'gelu_pytorch_tanh';

export interface GPT2Config {
  /** Number of token embeddings (rows of wte, columns of the tied LM head). GPT-2: 50257. */
  vocab_size: number;
  /** Longest sequence the model has position embeddings for (rows of wpe). GPT-2: 1024. */
  n_positions: number;
  /** Width of the residual stream, C. GPT-2 124M: 768. */
  n_embd: number;
  /** Number of transformer blocks. GPT-2 124M: 12. */
  n_layer: number;
  /** Attention heads per block; head size is n_embd / n_head. GPT-2 124M: 12. */
  n_head: number;
  /** Hidden width of the MLP. config.json's null means 4 * n_embd; always resolved to a number here. */
  n_inner: number;
  /** Epsilon added to the variance in every LayerNorm. GPT-2: 1e-5. */
  layer_norm_epsilon: number;
  /** MLP nonlinearity. Both names are the tanh approximation of GELU, the only one gptune implements. */
  activation_function: GPT2Activation;
  /** Id of the beginning-of-text token; GPT-2 uses <|endoftext|> = 50256 for both. */
  bos_token_id: number;
  /** Id of <|endoftext|>, used to separate documents in training data. GPT-2: 50256. */
  eos_token_id: number;
  /** Std of the normal init of fresh weights (GPT-2 paper: 0.02; residual projections are scaled by 1/sqrt(2*n_layer)). */
  initializer_range: number;
  /** Dropout on each block's residual-branch outputs, in training (HF default 0.1; lib/model/dropout.ts). */
  resid_pdrop: number;
  /** Dropout on token + position embeddings (HF default 0.1). */
  embd_pdrop: number;
  /** Dropout on attention probabilities (HF default 0.1). */
  attn_pdrop: number;
}

/** Sizes of the four published GPT-2 models (Radford et al. 2019; HF model cards). */
export const GPT2_PRESETS = {
  'gpt2': { n_layer: 12, n_head: 12, n_embd: 768 },
  'gpt2-medium': { n_layer: 24, n_head: 16, n_embd: 1024 },
  'gpt2-large': { n_layer: 36, n_head: 20, n_embd: 1280 },
  'gpt2-xl': { n_layer: 48, n_head: 25, n_embd: 1600 },
} as const;

export type GPT2PresetName = keyof typeof GPT2_PRESETS;

/** The full config of a published GPT-2 model. */
export function presetConfig(name: GPT2PresetName): GPT2Config {
  const sizes = GPT2_PRESETS[name];
  if (!sizes) throw new Error(`GPT-2 preset: expected one of ${Object.keys(GPT2_PRESETS).join(', ')} but received ${JSON.stringify(name)}`);
  return {
    vocab_size: 50257,
    n_positions: 1024,
    ...sizes,
    n_inner: 4 * sizes.n_embd,
    layer_norm_epsilon: 1e-5,
    activation_function: 'gelu_new',
    bos_token_id: 50256,
    eos_token_id: 50256,
    initializer_range: 0.02,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
  };
}

const SUPPORTED_ACTIVATIONS: readonly string[] = ['gelu_new', 'gelu_pytorch_tanh'];

/**
 * Keys of HF's GPT2Config that change what the network computes. gptune implements only their
 * default behaviour, so a config asking for anything else is refused rather than silently
 * computing a different function.
 */
const REQUIRED_DEFAULTS: Record<string, unknown> = {
  scale_attn_weights: true,
  scale_attn_by_inverse_layer_idx: false,
  tie_word_embeddings: true,
  add_cross_attention: false,
};

/**
 * Validate a parsed config.json (or any object with its keys). `sourceName` (e.g. "config.json" or
 * a path) starts every error message. Unknown keys are ignored, as transformers ignores them.
 */
export function parseGPT2Config(json: unknown, sourceName: string): GPT2Config {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new CheckpointError(`${sourceName}: expected a JSON object with GPT-2 settings but received ${describeValue(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const k = new ConfigKeys(raw, sourceName);

  if (raw.model_type !== undefined && raw.model_type !== 'gpt2') {
    k.fail(`model_type must be "gpt2" but is ${describeValue(raw.model_type)}`);
  }
  for (const [key, expected] of Object.entries(REQUIRED_DEFAULTS)) {
    k.requireValue(key, expected, `gptune implements only ${key} = ${expected}`);
  }

  const vocab_size = k.positiveInteger('vocab_size');
  const n_positions = k.positiveInteger('n_positions');
  const n_embd = k.positiveInteger('n_embd');
  const n_layer = k.positiveInteger('n_layer');
  const n_head = k.positiveInteger('n_head');
  if (n_embd % n_head !== 0) k.fail(`n_embd (${n_embd}) must be divisible by n_head (${n_head})`);
  // null and absent both mean the GPT-2 default of 4 * n_embd.
  const n_inner = raw.n_inner === null || raw.n_inner === undefined ? 4 * n_embd : k.positiveInteger('n_inner');

  const activation = raw.activation_function ?? 'gelu_new';
  if (typeof activation !== 'string' || !SUPPORTED_ACTIVATIONS.includes(activation)) {
    k.fail(`activation_function ${describeValue(activation)} is not supported (expected one of ${SUPPORTED_ACTIVATIONS.join(', ')}, the tanh approximation of GELU)`);
  }

  return {
    vocab_size,
    n_positions,
    n_embd,
    n_layer,
    n_head,
    n_inner,
    layer_norm_epsilon: k.numberIn('layer_norm_epsilon', 1e-5, 0, 1, false),
    activation_function: activation as GPT2Activation,
    bos_token_id: k.nonNegativeInteger('bos_token_id', 50256),
    eos_token_id: k.nonNegativeInteger('eos_token_id', 50256),
    initializer_range: k.numberIn('initializer_range', 0.02, 0, 10, false),
    resid_pdrop: k.numberIn('resid_pdrop', 0.1, 0, 1, true),
    embd_pdrop: k.numberIn('embd_pdrop', 0.1, 0, 1, true),
    attn_pdrop: k.numberIn('attn_pdrop', 0.1, 0, 1, true),
  };
}

/** Read and validate `<dir>/config.json`. */
export function loadGPT2Config(dir: string): GPT2Config {
  const file = path.join(dir, 'config.json');
  return parseGPT2Config(readConfigJSON(file), file);
}

/**
 * The config.json object that transformers' GPT2LMHeadModel.from_pretrained loads as this model.
 * n_inner is written as null when it is the default 4 * n_embd, as HF's own GPT-2 configs do.
 */
export function configToJSON(cfg: GPT2Config): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: cfg.vocab_size,
    n_positions: cfg.n_positions,
    // n_ctx: the pre-2021 name of n_positions, still read by older transformers versions.
    n_ctx: cfg.n_positions,
    n_embd: cfg.n_embd,
    n_layer: cfg.n_layer,
    n_head: cfg.n_head,
    n_inner: cfg.n_inner === 4 * cfg.n_embd ? null : cfg.n_inner,
    activation_function: cfg.activation_function,
    layer_norm_epsilon: cfg.layer_norm_epsilon,
    initializer_range: cfg.initializer_range,
    resid_pdrop: cfg.resid_pdrop,
    embd_pdrop: cfg.embd_pdrop,
    attn_pdrop: cfg.attn_pdrop,
    bos_token_id: cfg.bos_token_id,
    eos_token_id: cfg.eos_token_id,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    tie_word_embeddings: true,
    use_cache: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    summary_activation: null,
    summary_proj_to_labels: true,
    summary_first_dropout: 0.1,
    torch_dtype: 'float32',
  };
}

/** Keys a "new:" model spec may set, with how to parse each value. */
const SPEC_INTEGER_KEYS = ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head', 'n_inner', 'bos_token_id', 'eos_token_id'] as const;
const SPEC_NUMBER_KEYS = ['layer_norm_epsilon', 'initializer_range', 'resid_pdrop', 'embd_pdrop', 'attn_pdrop'] as const;
const SPEC_STRING_KEYS = ['activation_function'] as const;

type SpecKind = 'integer' | 'number' | 'boolean' | 'string';

/** One "key=value" of a spec, parsed as `kind`; errors name the spec, the key and the text. */
function specValue(spec: string, key: string, kind: SpecKind, text: string): unknown {
  const bad = (expected: string) => new CheckpointError(`model spec "${spec}": ${key} must be ${expected} but received "${text}"`);
  switch (kind) {
    case 'integer': {
      const value = Number(text);
      if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value)) throw bad('a non-negative integer');
      return value;
    }
    case 'number': {
      const value = Number(text);
      if (text === '' || !Number.isFinite(value)) throw bad('a number');
      return value;
    }
    case 'boolean':
      if (text !== 'true' && text !== 'false') throw bad('true or false');
      return text === 'true';
    case 'string':
      return text;
  }
}

/**
 * Splits "new:[preset,]key=value,..." into its optional leading preset name and its pairs, in
 * order. `isPreset` says which bare first items are presets; `presetNames` lists them in errors.
 */
function splitSpec(spec: string, isPreset: (name: string) => boolean, presetNames: readonly string[]): { preset: string | null; pairs: Array<[string, string]> } {
  const prefix = 'new:';
  if (typeof spec !== 'string' || !spec.startsWith(prefix)) {
    throw new CheckpointError(`model spec: expected "new:key=value,..." (e.g. "new:n_layer=2,n_head=4,n_embd=64") but received ${JSON.stringify(spec)}`);
  }
  const items = spec.slice(prefix.length).split(',').map((s) => s.trim()).filter((s) => s !== '');
  let preset: string | null = null;
  const pairs: Array<[string, string]> = [];
  items.forEach((item, index) => {
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (index === 0 && isPreset(item)) {
        preset = item;
        return;
      }
      throw new CheckpointError(`model spec "${spec}": expected key=value or a preset name (${presetNames.join(', ')}) as the first item but received "${item}"`);
    }
    pairs.push([item.slice(0, eq).trim(), item.slice(eq + 1).trim()]);
  });
  return { preset, pairs };
}

function isOwnKey(object: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/**
 * Parse a fresh GPT-2 spec such as "new:n_layer=2,n_head=4,n_embd=64,n_positions=128" or
 * "new:gpt2-medium,n_layer=4". Unset keys take the preset's values (GPT-2 124M when no preset is
 * named). The result is validated like a config.json.
 */
export function parseModelSpec(spec: string): GPT2Config {
  const { preset, pairs } = splitSpec(spec, (name) => isOwnKey(GPT2_PRESETS, name), Object.keys(GPT2_PRESETS));
  const base: GPT2Config = presetConfig((preset ?? 'gpt2') as GPT2PresetName);
  const kinds: Record<string, SpecKind> = {};
  for (const key of SPEC_INTEGER_KEYS) kinds[key] = 'integer';
  for (const key of SPEC_NUMBER_KEYS) kinds[key] = 'number';
  for (const key of SPEC_STRING_KEYS) kinds[key] = 'string';
  const overrides: Record<string, unknown> = {};
  for (const [key, text] of pairs) {
    if (isOwnKey(overrides, key)) throw new CheckpointError(`model spec "${spec}": key "${key}" is given twice`);
    if (!isOwnKey(kinds, key)) {
      throw new CheckpointError(`model spec "${spec}": unknown key "${key}" (known keys: ${Object.keys(kinds).join(', ')}, arch)`);
    }
    overrides[key] = specValue(spec, key, kinds[key], text);
  }
  // n_inner follows n_embd unless set explicitly, so "new:n_embd=64" gets a 256-wide MLP.
  const merged: Record<string, unknown> = { ...base, n_inner: null, ...overrides };
  return parseGPT2Config(merged, `model spec "${spec}"`);
}

/**
 * A Llama-family spec: "new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=64" or
 * "new:smollm2-135m,num_hidden_layers=4". Keys are the family's config.json keys, or the GPT-2
 * spec's names for the same sizes (LLAMA_SPEC_ALIASES). Without a preset, unset keys take GPT-2
 * 124M's sizes (llamaSpecBase) and intermediate_size follows hidden_size (4x), as n_inner does.
 */
function parseLlamaSpec(spec: string): DecoderConfig {
  const { preset, pairs } = splitSpec(spec, (name) => isOwnKey(LLAMA_PRESETS, name), [...Object.keys(GPT2_PRESETS), ...Object.keys(LLAMA_PRESETS)]);
  const kinds: Record<string, SpecKind> = { arch: 'string' };
  for (const key of LLAMA_SPEC_INTEGER_KEYS) kinds[key] = 'integer';
  for (const key of LLAMA_SPEC_NUMBER_KEYS) kinds[key] = 'number';
  for (const key of LLAMA_SPEC_BOOLEAN_KEYS) kinds[key] = 'boolean';
  const overrides: Record<string, unknown> = {};
  for (const [given, text] of pairs) {
    const key = LLAMA_SPEC_ALIASES[given] ?? given;
    if (isOwnKey(overrides, key)) throw new CheckpointError(`model spec "${spec}": key "${key}" is given twice`);
    if (!isOwnKey(kinds, key)) {
      const known = [...Object.keys(kinds), ...Object.keys(LLAMA_SPEC_ALIASES)].join(', ');
      throw new CheckpointError(`model spec "${spec}": unknown key "${given}" (known keys: ${known})`);
    }
    overrides[key] = specValue(spec, given, kinds[key], text);
  }
  const { arch, ...sizes } = overrides;
  const presetValues = preset !== null ? LLAMA_PRESETS[preset] : null;
  const modelType = arch ?? presetValues?.model_type;
  if (!isLlamaType(modelType)) throw new CheckpointError(`model spec "${spec}": arch must be one of ${MODEL_TYPES.join(', ')} but received ${JSON.stringify(modelType)}`);
  const base = presetValues ?? llamaSpecBase(modelType);
  const merged: Record<string, unknown> = { ...base, ...sizes, model_type: modelType };
  if (presetValues === null && sizes.intermediate_size === undefined) merged.intermediate_size = 4 * (merged.hidden_size as number);
  return parseLlamaConfig(llamaJSON(merged), `model spec "${spec}"`);
}

/** The "arch" a spec names (its value), or its leading Llama-family preset's model_type, else null. */
function specArch(spec: string): string | null {
  const items = spec.slice('new:'.length).split(',').map((s) => s.trim());
  if (isOwnKey(LLAMA_PRESETS, items[0] ?? '')) return LLAMA_PRESETS[items[0]].model_type as string;
  const arch = items.find((item) => /^arch\s*=/.test(item));
  return arch === undefined ? null : arch.slice(arch.indexOf('=') + 1).trim();
}

/**
 * Any fresh-model spec ("new:..."): GPT-2 unless it names a Llama-family preset or an arch other
 * than gpt2 (see parseModelSpec and parseLlamaSpec).
 */
export function parseDecoderSpec(spec: string): DecoderConfig {
  const arch = typeof spec === 'string' && spec.startsWith('new:') ? specArch(spec) : null;
  if (arch === null) return decoderConfigFromGPT2(parseModelSpec(spec));
  if (arch === 'gpt2') return decoderConfigFromGPT2(parseModelSpec(spec.replace(/(^new:|,)\s*arch\s*=\s*gpt2\s*(,|$)/, '$1')));
  return parseLlamaSpec(spec);
}

/** One "new:<preset>" shape, as train --help and the README list them. */
export interface PresetShape {
  name: string;
  modelType: string;
  layers: number;
  heads: number;
  kvHeads: number;
  width: number;
  ffnWidth: number;
  context: number;
  vocabSize: number;
  parameters: number;
}

/** Every "new:" preset (GPT-2's, then the Llama family's) with the shape it builds. */
export function presetShapes(): PresetShape[] {
  return [...Object.keys(GPT2_PRESETS), ...Object.keys(LLAMA_PRESETS)].map((name) => {
    const cfg = parseDecoderSpec(`new:${name}`);
    return {
      name, modelType: cfg.modelType, layers: cfg.layers, heads: cfg.heads, kvHeads: cfg.kvHeads, width: cfg.width,
      ffnWidth: cfg.ffnWidth, context: cfg.maxPositions, vocabSize: cfg.vocabSize, parameters: countParameters(cfg),
    };
  });
}

/** "gpt2-medium  gpt2   24 layers, 16 heads, width 1024, MLP 4096, context 1024, vocab 50257, 355M parameters" */
export function formatPresetShape(p: PresetShape): string {
  const heads = p.kvHeads === p.heads ? `${p.heads} heads` : `${p.heads} heads (${p.kvHeads} key/value)`;
  const millions = p.parameters >= 1e9 ? `${(p.parameters / 1e9).toFixed(2)}B` : `${Math.round(p.parameters / 1e6)}M`;
  return `${p.layers} layers, ${heads}, width ${p.width}, MLP ${p.ffnWidth}, context ${p.context}, vocab ${p.vocabSize}, ${millions} parameters`;
}

/** GPT-2 as one configuration of the decoder: LayerNorm, learned positions, GELU MLP, biases, tied head. */
export function decoderConfigFromGPT2(cfg: GPT2Config): DecoderConfig {
  return {
    modelType: 'gpt2',
    vocabSize: cfg.vocab_size,
    maxPositions: cfg.n_positions,
    width: cfg.n_embd,
    layers: cfg.n_layer,
    heads: cfg.n_head,
    kvHeads: cfg.n_head,
    headDim: cfg.n_embd / cfg.n_head,
    ffnWidth: cfg.n_inner,
    norm: 'layernorm',
    normEps: cfg.layer_norm_epsilon,
    positions: 'learned',
    ropeTheta: 0,
    ropeScaling: null,
    mlp: 'gelu',
    qkvBias: true,
    outBias: true,
    mlpBias: true,
    qkNorm: false,
    tiedHead: true,
    slidingWindow: null,
    initializerRange: cfg.initializer_range,
    dropout: { embedding: cfg.embd_pdrop, residual: cfg.resid_pdrop, attention: cfg.attn_pdrop },
    json: configToJSON(cfg),
  };
}

/** A DecoderConfig as is, or a GPT2Config (parseGPT2Config, parseModelSpec) as the GPT-2 configuration. */
export function asDecoderConfig(config: DecoderConfig | GPT2Config): DecoderConfig {
  return 'n_embd' in config ? decoderConfigFromGPT2(config) : config;
}

/** A parsed config.json of any supported model_type (absent: GPT-2, as early GPT-2 configs omit it). */
export function parseModelConfig(json: unknown, source: string): DecoderConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new CheckpointError(`${source}: expected a JSON object with model settings but received ${describeValue(json)}`);
  }
  const raw = json as Record<string, unknown>;
  if (raw.model_type === undefined || raw.model_type === 'gpt2') return decoderConfigFromGPT2(parseGPT2Config(raw, source));
  if (isLlamaType(raw.model_type)) return parseLlamaConfig(raw, source);
  throw new CheckpointError(`${source}: model_type = ${describeValue(raw.model_type)} is not supported (expected one of ${MODEL_TYPES.join(', ')})`);
}

/** Read and validate `<dir>/config.json` of any supported model. */
export function loadModelConfig(dir: string): DecoderConfig {
  const file = path.join(dir, 'config.json');
  return parseModelConfig(readConfigJSON(file), file);
}

/** Number of trainable parameters (a tied LM head counted once with the embedding). */
export function countParameters(config: GPT2Config | DecoderConfig): number {
  const cfg = asDecoderConfig(config);
  const C = cfg.width, H = cfg.ffnWidth, norm = cfg.norm === 'layernorm' ? 2 * C : C;
  const qkv = qkvWidth(cfg), att = attentionWidth(cfg), ffnIn = ffnInputWidth(cfg);
  const perLayer =
    2 * norm +
    C * qkv + (cfg.qkvBias ? qkv : 0) +
    att * C + (cfg.outBias ? C : 0) +
    (cfg.qkNorm ? 2 * cfg.headDim : 0) +
    C * ffnIn + H * C + (cfg.mlpBias ? ffnIn + C : 0);
  const embeddings = cfg.vocabSize * C * (cfg.tiedHead ? 1 : 2) + (cfg.positions === 'learned' ? cfg.maxPositions * C : 0);
  return embeddings + cfg.layers * perLayer + norm;
}
