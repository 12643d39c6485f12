/**
 * GPT-2 hyperparameters, named and interpreted exactly as in Hugging Face's config.json for
 * model_type "gpt2", so that checkpoints move between gptune and transformers unchanged.
 */
import * as fs from 'fs';
import * as path from 'path';

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
  /** Dropout on each block's residual-branch outputs (HF default 0.1); kept so a config round-trips. */
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

/**
 * Upper bounds of the size keys: far beyond any published model (Llama 3.1 405B: 126 layers, width
 * 16384, MLP 53248, vocabulary 128256, context 131072), low enough that a typo such as
 * n_layer=100000 is named as the key it is rather than found by the memory plan or the allocator.
 */
const SIZE_LIMITS = {
  vocab_size: 2 ** 24, n_positions: 2 ** 20, n_embd: 2 ** 16, n_layer: 1024, n_head: 1024, n_inner: 2 ** 18,
} as const;
type SizeKey = keyof typeof SIZE_LIMITS;

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

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/**
 * Validate a parsed config.json (or any object with its keys). `sourceName` (e.g. "config.json" or
 * a path) starts every error message. Unknown keys are ignored, as transformers ignores them.
 */
export function parseGPT2Config(json: unknown, sourceName: string): GPT2Config {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${sourceName}: expected a JSON object with GPT-2 settings but received ${typeName(json)}`);
  }
  const raw = json as Record<string, unknown>;

  const positiveInteger = (key: SizeKey): number => {
    const value = raw[key];
    const max = SIZE_LIMITS[key];
    if (value === undefined) throw new Error(`${sourceName}: missing required key "${key}" (a positive integer)`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`${sourceName}: ${key} must be a positive integer but is ${typeName(value)}`);
    }
    if (value > max) throw new Error(`${sourceName}: ${key} must be at most ${max} but is ${value}`);
    return value;
  };
  const nonNegativeInteger = (key: string, fallback: number): number => {
    const value = raw[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new Error(`${sourceName}: ${key} must be a non-negative integer but is ${typeName(value)}`);
    }
    return value;
  };
  const numberIn = (key: string, fallback: number, min: number, max: number, minInclusive: boolean): number => {
    const value = raw[key] ?? fallback;
    const ok = typeof value === 'number' && Number.isFinite(value) && (minInclusive ? value >= min : value > min) && value <= max;
    if (!ok) {
      throw new Error(`${sourceName}: ${key} must be a number in ${minInclusive ? '[' : '('}${min}, ${max}] but is ${typeName(value)}`);
    }
    return value as number;
  };

  if (raw.model_type !== undefined && raw.model_type !== 'gpt2') {
    throw new Error(`${sourceName}: model_type must be "gpt2" but is ${typeName(raw.model_type)}`);
  }
  for (const [key, expected] of Object.entries(REQUIRED_DEFAULTS)) {
    if (raw[key] !== undefined && raw[key] !== expected) {
      throw new Error(`${sourceName}: ${key} = ${typeName(raw[key])} is not supported (gptune implements only ${key} = ${expected})`);
    }
  }

  const vocab_size = positiveInteger('vocab_size');
  const n_positions = positiveInteger('n_positions');
  const n_embd = positiveInteger('n_embd');
  const n_layer = positiveInteger('n_layer');
  const n_head = positiveInteger('n_head');
  if (n_embd % n_head !== 0) {
    throw new Error(`${sourceName}: n_embd (${n_embd}) must be divisible by n_head (${n_head})`);
  }
  // null and absent both mean the GPT-2 default of 4 * n_embd.
  const n_inner = raw.n_inner === null || raw.n_inner === undefined ? 4 * n_embd : positiveInteger('n_inner');

  const activation = raw.activation_function ?? 'gelu_new';
  if (typeof activation !== 'string' || !SUPPORTED_ACTIVATIONS.includes(activation)) {
    throw new Error(`${sourceName}: activation_function ${typeName(activation)} is not supported (expected one of ${SUPPORTED_ACTIVATIONS.join(', ')}, the tanh approximation of GELU)`);
  }

  return {
    vocab_size,
    n_positions,
    n_embd,
    n_layer,
    n_head,
    n_inner,
    layer_norm_epsilon: numberIn('layer_norm_epsilon', 1e-5, 0, 1, false),
    activation_function: activation as GPT2Activation,
    bos_token_id: nonNegativeInteger('bos_token_id', 50256),
    eos_token_id: nonNegativeInteger('eos_token_id', 50256),
    initializer_range: numberIn('initializer_range', 0.02, 0, 10, false),
    resid_pdrop: numberIn('resid_pdrop', 0.1, 0, 1, true),
    embd_pdrop: numberIn('embd_pdrop', 0.1, 0, 1, true),
    attn_pdrop: numberIn('attn_pdrop', 0.1, 0, 1, true),
  };
}

/** Read and validate `<dir>/config.json`. */
export function loadGPT2Config(dir: string): GPT2Config {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read the model config (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseGPT2Config(json, file);
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

/**
 * Parse a fresh-model spec such as "new:n_layer=2,n_head=4,n_embd=64,n_positions=128" or
 * "new:gpt2-medium,n_layer=4". Unset keys take the preset's values (GPT-2 124M when no preset is
 * named). The result is validated like a config.json.
 */
export function parseModelSpec(spec: string): GPT2Config {
  const prefix = 'new:';
  if (typeof spec !== 'string' || !spec.startsWith(prefix)) {
    throw new Error(`model spec: expected "new:key=value,..." (e.g. "new:n_layer=2,n_head=4,n_embd=64") but received ${JSON.stringify(spec)}`);
  }
  const items = spec.slice(prefix.length).split(',').map((s) => s.trim()).filter((s) => s !== '');
  let base: GPT2Config = presetConfig('gpt2');
  const overrides: Record<string, unknown> = {};
  items.forEach((item, index) => {
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (index === 0 && Object.prototype.hasOwnProperty.call(GPT2_PRESETS, item)) {
        base = presetConfig(item as GPT2PresetName);
        return;
      }
      throw new Error(`model spec "${spec}": expected key=value or a preset name (${Object.keys(GPT2_PRESETS).join(', ')}) as the first item but received "${item}"`);
    }
    const key = item.slice(0, eq).trim();
    const valueText = item.slice(eq + 1).trim();
    if (Object.prototype.hasOwnProperty.call(overrides, key)) throw new Error(`model spec "${spec}": key "${key}" is given twice`);
    if ((SPEC_INTEGER_KEYS as readonly string[]).includes(key)) {
      const value = Number(valueText);
      if (!/^[0-9]+$/.test(valueText) || !Number.isSafeInteger(value)) {
        throw new Error(`model spec "${spec}": ${key} must be a non-negative integer but received "${valueText}"`);
      }
      overrides[key] = value;
    } else if ((SPEC_NUMBER_KEYS as readonly string[]).includes(key)) {
      const value = Number(valueText);
      if (valueText === '' || !Number.isFinite(value)) {
        throw new Error(`model spec "${spec}": ${key} must be a number but received "${valueText}"`);
      }
      overrides[key] = value;
    } else if ((SPEC_STRING_KEYS as readonly string[]).includes(key)) {
      overrides[key] = valueText;
    } else {
      const known = [...SPEC_INTEGER_KEYS, ...SPEC_NUMBER_KEYS, ...SPEC_STRING_KEYS].join(', ');
      throw new Error(`model spec "${spec}": unknown key "${key}" (known keys: ${known})`);
    }
  });
  // n_inner follows n_embd unless set explicitly, so "new:n_embd=64" gets a 256-wide MLP.
  const merged: Record<string, unknown> = { ...base, n_inner: null, ...overrides };
  return parseGPT2Config(merged, `model spec "${spec}"`);
}

/** Number of trainable parameters (weights tied between wte and the LM head, counted once). */
export function countParameters(cfg: GPT2Config): number {
  const C = cfg.n_embd;
  const perLayer =
    2 * C + // ln_1 weight + bias
    C * 3 * C + 3 * C + // attn.c_attn
    C * C + C + // attn.c_proj
    2 * C + // ln_2
    C * cfg.n_inner + cfg.n_inner + // mlp.c_fc
    cfg.n_inner * C + C; // mlp.c_proj
  return cfg.vocab_size * C + cfg.n_positions * C + cfg.n_layer * perLayer + 2 * C /* ln_f */;
}
