/**
 * config.json of the Llama family (model_type llama, mistral, qwen2, qwen3), read as transformers'
 * LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config read it, into a DecoderConfig: RMSNorm,
 * RoPE, SwiGLU, grouped-query attention, and per family the biases, Qwen3's q/k norms and
 * Mistral's sliding window. Keys that would make transformers compute a different function than
 * gptune does are refused with one line naming the key and value; other unknown keys are ignored,
 * as transformers ignores them.
 */
import { ConfigKeys, DecoderConfig, describeValue, RopeScaling } from './decoder_config';

export const LLAMA_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
export type LlamaType = (typeof LLAMA_TYPES)[number];

/** The architectures entry of each family's causal LM, as save_pretrained writes it. */
export const CAUSAL_LM_ARCHITECTURE: Record<LlamaType, string> = {
  llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM',
};

export function isLlamaType(value: unknown): value is LlamaType {
  return typeof value === 'string' && (LLAMA_TYPES as readonly string[]).includes(value);
}

function parseRopeScaling(k: ConfigKeys): RopeScaling | null {
  const raw = k.raw.rope_scaling;
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) k.fail(`rope_scaling must be an object or null but is ${describeValue(raw)}`);
  const s = new ConfigKeys(raw as Record<string, unknown>, `${k.source}: rope_scaling`);
  // transformers renamed "type" to "rope_type"; configs in the wild carry either.
  const typeKey = s.has('rope_type') ? 'rope_type' : 'type';
  const type = s.raw[typeKey];
  if (type === 'default') return null;
  if (type === 'linear') return { rope_type: 'linear', factor: s.numberIn('factor', undefined, 1, 1e9, true) };
  if (type === 'llama3') {
    const scaling: RopeScaling = {
      rope_type: 'llama3',
      factor: s.numberIn('factor', undefined, 1, 1e9, true),
      low_freq_factor: s.numberIn('low_freq_factor', undefined, 0, 1e9, false),
      high_freq_factor: s.numberIn('high_freq_factor', undefined, 0, 1e9, false),
      original_max_position_embeddings: s.positiveInteger('original_max_position_embeddings'),
    };
    if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
      s.fail(`high_freq_factor (${scaling.high_freq_factor}) must be greater than low_freq_factor (${scaling.low_freq_factor})`);
    }
    return scaling;
  }
  return s.fail(`${typeKey} = ${describeValue(type)} is not supported (gptune implements rope scaling types linear and llama3)`);
}

/** Validates a Llama-family config.json object. `source` (the file) starts every error message. */
export function parseLlamaConfig(raw: Record<string, unknown>, source: string): DecoderConfig {
  const k = new ConfigKeys(raw, source);
  const modelType = raw.model_type;
  if (!isLlamaType(modelType)) return k.fail(`model_type = ${describeValue(modelType)} is not a Llama-family type (${LLAMA_TYPES.join(', ')})`);
  const architecture = CAUSAL_LM_ARCHITECTURE[modelType];
  if (raw.architectures !== undefined && raw.architectures !== null) {
    const list = raw.architectures;
    if (!Array.isArray(list) || !list.includes(architecture)) {
      k.fail(`architectures = ${JSON.stringify(list)} is not supported (gptune trains ${architecture} for model_type "${modelType}")`);
    }
  }

  const vocabSize = k.positiveInteger('vocab_size');
  const width = k.positiveInteger('hidden_size');
  const ffnWidth = k.positiveInteger('intermediate_size');
  const layers = k.positiveInteger('num_hidden_layers');
  const heads = k.positiveInteger('num_attention_heads');
  const maxPositions = k.positiveInteger('max_position_embeddings');
  const kvHeads = k.positiveInteger('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    k.fail(`num_attention_heads (${heads}) must be divisible by num_key_value_heads (${kvHeads})`);
  }
  let headDim: number;
  if (k.has('head_dim')) {
    headDim = k.positiveInteger('head_dim');
  } else {
    if (width % heads !== 0) k.fail(`hidden_size (${width}) must be divisible by num_attention_heads (${heads}) when head_dim is not given`);
    headDim = width / heads;
  }
  // Rotate-half RoPE pairs channel i with i + HS/2.
  if (headDim % 2 !== 0) k.fail(`head_dim (${headDim}) must be even for rotary embeddings`);

  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') k.fail(`hidden_act = ${describeValue(act)} is not supported (gptune's Llama-family MLP is SwiGLU with silu)`);
  k.requireValue('pretraining_tp', 1, 'pretraining_tp > 1 splits the linears in transformers; gptune implements only 1');
  if (k.has('partial_rotary_factor')) k.requireValue('partial_rotary_factor', 1, 'gptune rotates the whole head');

  const attentionBias = k.boolean('attention_bias', false);
  const mlpBias = k.boolean('mlp_bias', false);
  if (modelType !== 'llama' && mlpBias) k.fail(`mlp_bias = true is not supported for model_type "${modelType}" (transformers ignores it there)`);
  if (modelType === 'mistral' && attentionBias) k.fail('attention_bias = true is not supported for model_type "mistral" (MistralAttention has no biases)');
  // Qwen2 always has q/k/v biases and never an o_proj bias; Llama and Qwen3 follow attention_bias for all four.
  const qkvBias = modelType === 'qwen2' ? true : attentionBias;
  const outBias = modelType === 'qwen2' ? false : attentionBias;

  let slidingWindow: number | null = null;
  if (modelType === 'mistral') {
    if (k.has('sliding_window')) slidingWindow = k.positiveInteger('sliding_window');
  } else if (modelType === 'qwen2' || modelType === 'qwen3') {
    // Qwen keeps sliding_window in every config but applies it only with use_sliding_window.
    if (k.boolean('use_sliding_window', false)) slidingWindow = k.positiveInteger('sliding_window');
  }

  return {
    modelType,
    vocabSize,
    maxPositions,
    width,
    layers,
    heads,
    kvHeads,
    headDim,
    ffnWidth,
    norm: 'rmsnorm',
    normEps: k.numberIn('rms_norm_eps', 1e-6, 0, 1, false),
    positions: 'rope',
    ropeTheta: k.numberIn('rope_theta', 10000, 0, 1e12, false),
    ropeScaling: parseRopeScaling(k),
    mlp: 'swiglu',
    qkvBias,
    outBias,
    mlpBias,
    qkNorm: modelType === 'qwen3',
    tiedHead: k.boolean('tie_word_embeddings', false),
    slidingWindow,
    initializerRange: k.numberIn('initializer_range', 0.02, 0, 10, false),
    // Dropout on the attention probabilities in training; transformers' default 0.0.
    dropout: { embedding: 0, residual: 0, attention: k.numberIn('attention_dropout', 0, 0, 1, true) },
    json: { ...raw },
  };
}

/**
 * Shapes of published Llama-family models (their config.json's architecture keys), for
 * "new:<preset>,..." model specs and the benchmarks.
 */
export const LLAMA_PRESETS: Record<string, Record<string, unknown>> = {
  'smollm2-135m': {
    model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
    num_attention_heads: 9, num_key_value_heads: 3, max_position_embeddings: 8192, rms_norm_eps: 1e-5,
    rope_theta: 100000, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
  },
  'qwen2.5-0.5b': {
    model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
    num_attention_heads: 14, num_key_value_heads: 2, max_position_embeddings: 32768, rms_norm_eps: 1e-6,
    rope_theta: 1000000, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768,
    bos_token_id: 151643, eos_token_id: 151643,
  },
  'qwen2.5-1.5b': {
    model_type: 'qwen2', vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28,
    num_attention_heads: 12, num_key_value_heads: 2, max_position_embeddings: 131072, rms_norm_eps: 1e-6,
    rope_theta: 1000000, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 131072,
    bos_token_id: 151643, eos_token_id: 151643,
  },
  'qwen3-0.6b': {
    model_type: 'qwen3', vocab_size: 151936, hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 28,
    num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, max_position_embeddings: 40960, rms_norm_eps: 1e-6,
    rope_theta: 1000000, tie_word_embeddings: true, attention_bias: false, bos_token_id: 151643, eos_token_id: 151645,
  },
  'llama-3.2-1b': {
    model_type: 'llama', vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, max_position_embeddings: 131072, rms_norm_eps: 1e-5,
    rope_theta: 500000, tie_word_embeddings: true,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    bos_token_id: 128000, eos_token_id: 128001,
  },
};

/**
 * The base of "new:arch=<type>,..." without a preset: GPT-2 124M's sizes and GPT-2's tokenizer ids
 * (new: models are trained with GPT-2's tokenizer), transformers' defaults for the rest.
 */
export function llamaSpecBase(modelType: LlamaType): Record<string, unknown> {
  return {
    model_type: modelType, vocab_size: 50257, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
    max_position_embeddings: 1024, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false,
    bos_token_id: 50256, eos_token_id: 50256,
  };
}

/** "new:" spec keys that mean the same as in a GPT-2 spec, mapped to the Llama family's config.json key. */
export const LLAMA_SPEC_ALIASES: Record<string, string> = {
  n_layer: 'num_hidden_layers', n_head: 'num_attention_heads', n_kv_head: 'num_key_value_heads', n_embd: 'hidden_size',
  n_positions: 'max_position_embeddings', n_inner: 'intermediate_size',
};
export const LLAMA_SPEC_INTEGER_KEYS = [
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
  'head_dim', 'max_position_embeddings', 'sliding_window', 'bos_token_id', 'eos_token_id',
] as const;
export const LLAMA_SPEC_NUMBER_KEYS = ['rms_norm_eps', 'rope_theta', 'initializer_range'] as const;
export const LLAMA_SPEC_BOOLEAN_KEYS = ['tie_word_embeddings', 'attention_bias', 'mlp_bias', 'use_sliding_window'] as const;

/** The config.json a fresh Llama-family model is saved with. */
export function llamaJSON(values: Record<string, unknown>): Record<string, unknown> {
  const modelType = values.model_type as LlamaType;
  return {
    architectures: [CAUSAL_LM_ARCHITECTURE[modelType]],
    hidden_act: 'silu',
    initializer_range: 0.02,
    torch_dtype: 'float32',
    ...values,
  };
}
