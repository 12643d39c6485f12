/**
 * Text generation with a KV cache (a BatchDecoder of one slot): the prompt runs through the model
 * once, filling per-layer key and value caches; each new token then costs one position's forward
 * instead of the whole sequence's. Sampling follows Hugging Face's order: temperature, then top-k, then top-p.
 */
import { checkInstance, checkOptions, checkSeed, describeValue } from '../util/check';
import { Rng } from '../util/rng';
import { APPLIED_ADAPTERS, BatchDecoder, planBatchDecodeMemory } from './batch_decode';
import { Decoder, maxPositionsKey } from './decoder';
import { asDecoderConfig, GPT2Config } from './config';
import { contextLength, DecoderConfig } from './decoder_config';

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 (or greedy: true) picks the argmax; otherwise logits are divided by it. Default 1. */
  temperature?: number;
  greedy?: boolean;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP?: number;
  /**
   * Stop when this token is produced (it is not included in the output). null = never. Default:
   * the model's own (model.eosTokenIds: config.json's eos_token_id, and generation_config.json's
   * when loaded from a folder), as the CLI does.
   */
  eosTokenId?: number | null;
  /** Stop when any of these is produced too (generation_config.json's eos_token_id list); not included in the output. */
  stopTokenIds?: readonly number[];
  seed?: number;
  /** Called with each new token as it is produced (streaming). */
  onToken?: (token: number) => void;
}

export interface GenerateResult {
  tokens: number[];
  /** Why generation ended. */
  stop: 'eos' | 'max_new_tokens' | 'context_full';
}

function validateOptions(o: GenerateOptions): Required<Omit<GenerateOptions, 'onToken' | 'eosTokenId' | 'stopTokenIds'>> & { eosTokenId: number | null } {
  if (o.seed !== undefined) checkSeed('generate', 'options.seed', o.seed);
  if (o.onToken !== undefined && typeof o.onToken !== 'function') throw new TypeError(`generate: expected options.onToken to be a function but received ${describeValue(o.onToken)}`);
  if (o.eosTokenId !== undefined && o.eosTokenId !== null && !Number.isInteger(o.eosTokenId)) {
    throw new TypeError(`generate: expected options.eosTokenId to be a token id or null but received ${describeValue(o.eosTokenId)}`);
  }
  if (o.stopTokenIds !== undefined && !(Array.isArray(o.stopTokenIds) && o.stopTokenIds.every((id) => Number.isInteger(id)))) {
    throw new TypeError(`generate: expected options.stopTokenIds to be an array of token ids but received ${describeValue(o.stopTokenIds)}`);
  }
  const maxNewTokens = o.maxNewTokens ?? 50;
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new RangeError(`generate: maxNewTokens must be a whole number >= 0 but received ${maxNewTokens}`);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`generate: temperature must be a number >= 0 but received ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`generate: topK must be a whole number >= 0 but received ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`generate: topP must be in (0, 1] but received ${topP}`);
  return {
    maxNewTokens, temperature, topK, topP,
    greedy: o.greedy ?? temperature === 0,
    eosTokenId: o.eosTokenId === undefined ? null : o.eosTokenId,
    seed: o.seed ?? 0,
  };
}

/** Picks the next token from one row of logits (V floats). */
export function sampleToken(logits: Float32Array, o: { greedy: boolean; temperature: number; topK: number; topP: number }, rng: Rng): number {
  const V = logits.length;
  if (o.greedy || o.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Candidates sorted by logit (descending); ties keep the lower id first for determinism.
  let ids = Array.from({ length: V }, (_, i) => i);
  ids.sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK > 0 && o.topK < V) ids = ids.slice(0, o.topK);
  const maxLogit = logits[ids[0]];
  const probs = ids.map((i) => Math.exp((logits[i] - maxLogit) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    // Keep tokens until the cumulative probability reaches topP (at least one token).
    let cumulative = 0, keep = 0;
    while (keep < ids.length) {
      cumulative += probs[keep] / total;
      keep++;
      if (cumulative >= o.topP) break;
    }
    ids = ids.slice(0, keep);
    probs.length = keep;
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng.next() * total;
  for (let j = 0; j < ids.length; j++) {
    r -= probs[j];
    if (r < 0) return ids[j];
  }
  return ids[ids.length - 1];
}

/**
 * The memory plan of generation: the parameters and generate()'s decoder (one BatchDecoder slot)
 * for up to maxT positions, of which at most promptTokens are the prompt (default: maxT).
 */
export function planGenerationMemory(config: DecoderConfig | GPT2Config, maxT = contextLength(asDecoderConfig(config)), promptTokens = maxT): Record<string, number> {
  return planBatchDecodeMemory(config, 1, maxT, Math.min(promptTokens, maxT));
}

/** A prompt must have 1 to maxPositions tokens, each a token id of the vocabulary. */
export function checkPromptTokens(fn: string, cfg: DecoderConfig, prompt: ArrayLike<number>): void {
  if (prompt.length === 0) throw new RangeError(`${fn}: the prompt is empty (give at least one token)`);
  if (prompt.length > cfg.maxPositions) {
    throw new RangeError(`${fn}: the prompt has ${prompt.length} tokens but the model's context (${maxPositionsKey(cfg)}) is ${cfg.maxPositions}`);
  }
  for (let i = 0; i < prompt.length; i++) {
    const id = prompt[i];
    if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) throw new RangeError(`${fn}: prompt token ${id} is outside [0, ${cfg.vocabSize})`);
  }
}

/** Continues one prompt (token ids). */
export function generate(model: Decoder, prompt: readonly number[], options: GenerateOptions = {}): GenerateResult {
  checkInstance('generate', 'model', model, Decoder, 'a Decoder model');
  if (!Array.isArray(prompt) && !ArrayBuffer.isView(prompt)) throw new TypeError(`generate: expected prompt to be an array of token ids but received ${describeValue(prompt)}`);
  checkOptions('generate', 'options', options);
  const o = validateOptions(options);
  const cfg = model.config;
  checkPromptTokens('generate', cfg, prompt);
  const maxT = Math.min(cfg.maxPositions, prompt.length + o.maxNewTokens);
  // Every position the run may reach must be inside Mistral's sliding window (exact attention).
  model.checkSequenceLength(maxT, 'generate (prompt + max new tokens)');
  // One slot; the prompt runs in one prefill call, so its kernels see the whole prompt at once.
  const decoder = new BatchDecoder(model, 1, maxT, { prefillRows: prompt.length, stackedAdapters: true });
  const rng = new Rng(o.seed);
  const out: number[] = [];
  const stops = new Set(options.stopTokenIds ?? []);
  if (options.eosTokenId === undefined) for (const id of model.eosTokenIds) stops.add(id);
  else if (o.eosTokenId !== null) stops.add(o.eosTokenId);
  try {
    if (o.maxNewTokens === 0) return { tokens: out, stop: 'max_new_tokens' };
    let logits = decoder.prefill(0, Array.from(prompt), APPLIED_ADAPTERS);
    let length = prompt.length;
    for (;;) {
      const next = sampleToken(logits, o, rng);
      if (stops.has(next)) return { tokens: out, stop: 'eos' };
      out.push(next);
      options.onToken?.(next);
      if (out.length >= o.maxNewTokens) return { tokens: out, stop: 'max_new_tokens' };
      if (length >= cfg.maxPositions) return { tokens: out, stop: 'context_full' };
      logits = decoder.step(Int32Array.of(0), Int32Array.of(next), Int32Array.of(length), APPLIED_ADAPTERS);
      length++;
    }
  } finally {
    decoder.free();
  }
}
