/**
 * The one normalized description of a decoder-only transformer that lib/model/decoder.ts runs.
 * GPT-2 and the Llama family (llama, mistral, qwen2, qwen3) are parsed from their own config.json
 * keys (lib/model/config.ts, lib/model/llama_config.ts) into this shape; the model never looks at
 * Hugging Face's key names again, except to write config.json back when it saves.
 */
import * as fs from 'fs';
import { CheckpointError } from '../errors';
import type { DropoutRates } from './dropout';

export const MODEL_TYPES = ['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

/** rope_scaling of config.json, the two types gptune implements (see lib/model/rope.ts). */
export type RopeScaling =
  | { rope_type: 'linear'; factor: number }
  | { rope_type: 'llama3'; factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };

export interface DecoderConfig {
  /** Hugging Face's model_type: selects the checkpoint's tensor names and the config.json written back. */
  modelType: ModelType;
  /** V: rows of the token embedding and of the LM head. */
  vocabSize: number;
  /** Longest sequence the model takes (GPT-2: rows of the position table; RoPE: max_position_embeddings). */
  maxPositions: number;
  /** C: width of the residual stream. */
  width: number;
  /** Number of transformer blocks. */
  layers: number;
  /** NH: query heads. */
  heads: number;
  /** NKV: key/value heads (grouped-query attention; NH % NKV == 0). GPT-2: NH. */
  kvHeads: number;
  /** HS: head size. GPT-2: C / NH; Qwen3 sets it explicitly (NH*HS may differ from C). */
  headDim: number;
  /** Hidden width of the MLP: I for GELU (c_fc is (I, C)); H for SwiGLU (gate and up are each (H, C)). */
  ffnWidth: number;
  /** LayerNorm (weight and bias) or RMSNorm (weight only), for both block norms and the final norm. */
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  /** A learned position table added to the token embedding, or rotary embeddings applied to q and k. */
  positions: 'learned' | 'rope';
  /** RoPE base (rope_theta); unused with learned positions. */
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** GELU MLP (c_fc, gelu, c_proj) or SwiGLU MLP (gate|up, silu(gate) * up, down). */
  mlp: 'gelu' | 'swiglu';
  /** Biases on the fused q/k/v projection, on the attention output projection, on the MLP's linears. */
  qkvBias: boolean;
  outBias: boolean;
  mlpBias: boolean;
  /** Qwen3: RMSNorm over each q and k head (weights (HS)) before RoPE. */
  qkNorm: boolean;
  /** The LM head is the token embedding (tie_word_embeddings); otherwise a separate (V, C) lm_head. */
  tiedHead: boolean;
  /** Mistral's sliding_window: attention is exact only for sequences no longer than it; null = none. */
  slidingWindow: number | null;
  /** Std of the normal init of fresh weights. */
  initializerRange: number;
  /**
   * config.json's dropout rates, applied in training only (lib/model/dropout.ts): GPT-2's embd_pdrop,
   * resid_pdrop, attn_pdrop; the Llama family's attention_dropout (its other sites are 0).
   */
  dropout: DropoutRates;
  /**
   * config.json as it will be written with the model: for the Llama family the file's own keys,
   * unchanged (so transformers reads back exactly what it wrote); for GPT-2 configToJSON's keys.
   */
  json: Record<string, unknown>;
}

/**
 * The longest sequence the model computes exactly: its positions, or Mistral's sliding window when
 * that is shorter (full causal attention equals sliding-window attention only while every query
 * sees at most the window).
 */
export function contextLength(cfg: DecoderConfig): number {
  return cfg.slidingWindow !== null && cfg.slidingWindow < cfg.maxPositions ? cfg.slidingWindow : cfg.maxPositions;
}

/** Width of the packed q/k/v projection: (NH + 2 NKV) * HS (GPT-2: 3C). */
export function qkvWidth(cfg: DecoderConfig): number {
  return (cfg.heads + 2 * cfg.kvHeads) * cfg.headDim;
}

/** Width of the attention output before its projection: NH * HS. */
export function attentionWidth(cfg: DecoderConfig): number {
  return cfg.heads * cfg.headDim;
}

/** Width of the MLP's first matmul output: I (GELU) or 2H ([gate | up], SwiGLU). */
export function ffnInputWidth(cfg: DecoderConfig): number {
  return cfg.mlp === 'swiglu' ? 2 * cfg.ffnWidth : cfg.ffnWidth;
}

export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/**
 * Upper bounds of the size keys of both families: far beyond any published model (Llama 3.1 405B: 126
 * layers, width 16384, MLP 53248, vocabulary 128256, context 131072), low enough that a typo such as
 * n_layer=100000 is named as the key it is rather than found by the memory plan or the allocator.
 */
const SIZE_LIMITS: Record<string, number> = {
  vocab_size: 2 ** 24, n_positions: 2 ** 20, n_embd: 2 ** 16, n_layer: 1024, n_head: 1024, n_inner: 2 ** 18,
  max_position_embeddings: 2 ** 20, hidden_size: 2 ** 16, num_hidden_layers: 1024, num_attention_heads: 1024,
  num_key_value_heads: 1024, head_dim: 2 ** 12, intermediate_size: 2 ** 18,
};

/**
 * Typed reads of config.json keys, each failing with one line naming the source and the key.
 * `fallback` is used when the key is absent (or null); without one a missing key is an error.
 */
export class ConfigKeys {
  constructor(readonly raw: Record<string, unknown>, readonly source: string) {}

  fail(message: string): never {
    throw new CheckpointError(`${this.source}: ${message}`);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  private value(key: string, fallback: unknown, expected: string): unknown {
    const value = this.raw[key] ?? fallback;
    if (value === undefined || value === null) this.fail(`missing required key "${key}" (${expected})`);
    return value;
  }

  positiveInteger(key: string, fallback?: number): number {
    const value = this.value(key, fallback, 'a positive integer');
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      this.fail(`${key} must be a positive integer but is ${describeValue(value)}`);
    }
    const max = SIZE_LIMITS[key];
    if (max !== undefined && value > max) this.fail(`${key} must be at most ${max} but is ${value}`);
    return value;
  }

  nonNegativeInteger(key: string, fallback?: number): number {
    const value = this.value(key, fallback, 'a non-negative integer');
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.fail(`${key} must be a non-negative integer but is ${describeValue(value)}`);
    }
    return value;
  }

  /** A finite number in (min, max] or [min, max]. */
  numberIn(key: string, fallback: number | undefined, min: number, max: number, minInclusive: boolean): number {
    const value = this.value(key, fallback, 'a number');
    const ok = typeof value === 'number' && Number.isFinite(value) && (minInclusive ? value >= min : value > min) && value <= max;
    if (!ok) this.fail(`${key} must be a number in ${minInclusive ? '[' : '('}${min}, ${max}] but is ${describeValue(value)}`);
    return value as number;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.raw[key] ?? fallback;
    if (typeof value !== 'boolean') this.fail(`${key} must be true or false but is ${describeValue(value)}`);
    return value;
  }

  /** A key whose only supported value is `expected` (when present). */
  requireValue(key: string, expected: unknown, why: string): void {
    const value = this.raw[key];
    if (value !== undefined && value !== expected) {
      this.fail(`${key} = ${describeValue(value)} is not supported (${why})`);
    }
  }
}

/** Reads and parses a config.json, failing with one line naming the file. */
export function readConfigJSON(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CheckpointError(`${file}: cannot read the model config (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return json;
}
