/**
 * Dropout in training, as transformers applies it in train mode (modeling_gpt2.py, modeling_llama.py):
 *   GPT-2        embd_pdrop on wte + wpe; attn_pdrop on the attention probabilities (softmax output,
 *                before @ V); resid_pdrop on the attention's output projection and on the MLP's output,
 *                each before its residual add
 *   Llama family attention_dropout on the attention probabilities only (usually 0)
 * Evaluation and generation never drop. Masks are the kernels' (native/include/gptune/dropout_mask.h),
 * a pure function of (seed, element index): each site of each layer draws from its own stream of the
 * forward's seed (dropoutStreamSeed), so a recomputed block (gradient checkpointing), the backward and
 * a resumed run regenerate exactly the masks of the first forward.
 */
import { CheckpointError } from '../errors';
import type { DecoderConfig } from './decoder_config';

/** Dropout probabilities of the three kinds of site, each in [0, 1). */
export interface DropoutRates {
  /** On the token (+ position) embedding. */
  embedding: number;
  /** On each block's attention output and MLP output, before the residual adds. */
  residual: number;
  /** On the attention probabilities. */
  attention: number;
}

export const NO_DROPOUT: Readonly<DropoutRates> = Object.freeze({ embedding: 0, residual: 0, attention: 0 });

/** The config.json keys each rate comes from, per family, for messages and for the override. */
function rateKeys(cfg: DecoderConfig): Record<keyof DropoutRates, string | null> {
  return cfg.modelType === 'gpt2'
    ? { embedding: 'embd_pdrop', residual: 'resid_pdrop', attention: 'attn_pdrop' }
    : { embedding: null, residual: null, attention: 'attention_dropout' };
}

/**
 * The rates a training run applies: config.json's (DecoderConfig.dropout), or `override` at every
 * site the family has (GPT-2's three, the Llama family's attention). A rate of 1 (which config.json
 * allows) would drop everything: refused, naming the key.
 */
export function trainingDropout(cfg: DecoderConfig, override: number | null): DropoutRates {
  const keys = rateKeys(cfg);
  const rates = { ...cfg.dropout };
  for (const site of Object.keys(keys) as (keyof DropoutRates)[]) {
    if (keys[site] === null) rates[site] = 0;
    else if (override !== null) rates[site] = override;
    else if (!(rates[site] < 1)) {
      throw new CheckpointError(`config.json: ${keys[site]} = ${rates[site]} would drop every value in training; expected a probability in [0, 1) (or set dropout / --dropout)`);
    }
  }
  return rates;
}

/** Whether any rate is non-zero. */
export function dropsAnything(rates: DropoutRates): boolean {
  return rates.embedding > 0 || rates.residual > 0 || rates.attention > 0;
}

/** A one-line description of the rates, for logs: "embedding 0.1, residual 0.1, attention 0.1" or "none". */
export function describeDropout(rates: DropoutRates): string {
  if (!dropsAnything(rates)) return 'none';
  return `embedding ${rates.embedding}, residual ${rates.residual}, attention ${rates.attention}`;
}

// ---- seeds ----

const MASK64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;

/** SplitMix64's output function (dropout_mask.h's mix64). */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * The mask seed of stream `stream` of a forward's dropout seed: the top 53 bits of the mask
 * definition's bits(stream) for that seed (mix64(mix64(seed + GOLDEN) + (stream + 1) * GOLDEN) >> 11),
 * an integer in [0, 2^53). Distinct streams give unrelated masks, as PyTorch's separate nn.Dropout
 * calls draw independent ones.
 */
export function dropoutStreamSeed(seed: number, stream: number): number {
  const key = mix64((BigInt(seed) + GOLDEN) & MASK64);
  return Number(mix64((key + (BigInt(stream) + 1n) * GOLDEN) & MASK64) >> 11n);
}

/**
 * The streams of a forward's dropout seed: LoRA adapter modules use their index (below 2^32), the
 * model's sites start at 2^32: the embedding, then three per layer.
 */
const MODEL_STREAMS = 2 ** 32;
export type LayerDropoutSite = 'attention' | 'attentionOutput' | 'mlpOutput';
const LAYER_SITES: Record<LayerDropoutSite, number> = { attention: 0, attentionOutput: 1, mlpOutput: 2 };

export function embeddingDropoutSeed(seed: number): number {
  return dropoutStreamSeed(seed, MODEL_STREAMS);
}

export function layerDropoutSeed(seed: number, layer: number, site: LayerDropoutSite): number {
  return dropoutStreamSeed(seed, MODEL_STREAMS + 1 + 3 * layer + LAYER_SITES[site]);
}

/** A LoRA module's dropout seed (its index among the adapter's modules). */
export function moduleDropoutSeed(seed: number, moduleIndex: number): number {
  return dropoutStreamSeed(seed, moduleIndex);
}
