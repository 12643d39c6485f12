/**
 * Decoding with a KV cache, one path for every caller: the caches hold `slots` sequences of up to
 * maxT positions; a sequence's prompt is prefilled into its slot on its own, then one step runs the
 * next position of every live sequence through the model together (one set of kernel calls for all
 * rows). generate() is one slot; lib/serve (continuous batching), beam search and batched greedy
 * evaluation use several. A row computes exactly what a one-slot decoder computes for its sequence
 * alone: the same kernels on the same values, with attention_cached_rows_forward reading each row's
 * own slot and length, and the positions (learned table or RoPE) given per row.
 */
import { kernels } from '../native';
import { arenaBytes, Tensor, TensorArena, TensorSpec } from '../tensor';
import type { AdapterShape, LoraAdapter } from '../lora/adapter';
import { asDecoderConfig, GPT2Config } from './config';
import { BlockBuffers, blockBuffers, blockBufferSpecs, BlockPositions, Decoder, globalParamName, planMemory } from './decoder';
import { DecoderConfig } from './decoder_config';

/**
 * Prompt positions per prefill call by default: a multiple of the attention kernels' 64-query tiles,
 * so a prompt cut into chunks is tiled exactly as it is whole (and its logits are those of a prompt
 * prefilled in one call, bit for bit).
 */
export const PREFILL_CHUNK = 256;

/** Per-layer K/V caches `k${l}`, `v${l}` (slots, maxT, NKV*HS): one slot per sequence; only the key/value heads are cached. */
function kvCacheSpecs(cfg: DecoderConfig, slots: number, maxT: number): TensorSpec[] {
  const kv = cfg.kvHeads * cfg.headDim;
  const specs: TensorSpec[] = [];
  for (let l = 0; l < cfg.layers; l++) specs.push({ name: `k${l}`, shape: [slots, maxT, kv] }, { name: `v${l}`, shape: [slots, maxT, kv] });
  return specs;
}

/**
 * The arena of a BatchDecoder: `slots` K/V caches of maxT positions; the block buffers `block.`
 * shared by the layers, for a prefill call (prefillRows positions) or one position of every slot,
 * whichever is more rows; and the last positions' norm `lnLast` (slots, C) and logits (slots, V).
 */
export function batchDecodeSpecs(cfg: DecoderConfig, slots: number, maxT: number, prefillRows = Math.min(PREFILL_CHUNK, maxT), lora: readonly AdapterShape[] = []): TensorSpec[] {
  const rows = Math.max(slots, prefillRows);
  return [
    ...kvCacheSpecs(cfg, slots, maxT),
    ...blockBufferSpecs(cfg, 'block.', rows, 1, rows, false, lora), // no statistics: the (B, T) split does not matter
    { name: 'lnLast', shape: [slots, cfg.width] }, { name: 'logits', shape: [slots, cfg.vocabSize] },
  ];
}

/**
 * The memory plan of decoding `slots` sequences of up to maxT positions at once, prompts prefilled
 * prefillRows positions per call (generate: 1 slot and its prompt whole; beam search, serve, batched
 * greedy: PREFILL_CHUNK).
 */
export function planBatchDecodeMemory(config: DecoderConfig | GPT2Config, slots: number, maxT: number, prefillRows = Math.min(PREFILL_CHUNK, maxT)): Record<string, number> {
  const cfg = asDecoderConfig(config);
  return { ...planMemory(cfg, { batch: null, training: false }).parts, 'KV cache': arenaBytes(batchDecodeSpecs(cfg, slots, maxT, prefillRows)) };
}

/**
 * What a prefill or step applies: one loaded adapter, null for the base, or APPLIED_ADAPTERS for
 * what the model applies on its own (selectAdapters; every loaded adapter, stacked, by default),
 * which needs a decoder built with `stackedAdapters`.
 */
export const APPLIED_ADAPTERS = 'applied';
export type DecodeAdapter = LoraAdapter | null | typeof APPLIED_ADAPTERS;

export interface BatchDecoderOptions {
  /** The most prompt positions one prefill call runs (1 to maxT). Default min(PREFILL_CHUNK, maxT). */
  prefillRows?: number;
  /**
   * Buffers for every loaded adapter at once, for APPLIED_ADAPTERS (generate). Default false:
   * buffers for one adapter at a time, chosen per call (a server holding several adapters).
   */
  stackedAdapters?: boolean;
}

export class BatchDecoder {
  private readonly arena: TensorArena;
  private readonly k: Tensor[] = [];
  private readonly v: Tensor[] = [];
  private readonly block: BlockBuffers;
  private readonly lnLast: Tensor; // (slots, C)
  private readonly logits: Tensor; // (slots, V)
  private readonly stacked: boolean;
  readonly prefillRows: number;

  /**
   * `slots` sequences of up to maxT positions each. Unless options.stackedAdapters, the block
   * buffers take one adapter at a time (the largest rank and module count of the model's loaded
   * adapters): a step runs rows that share one adapter, or none.
   */
  constructor(private readonly model: Decoder, readonly slots: number, readonly maxT: number, options: BatchDecoderOptions = {}) {
    const cfg = model.config;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`BatchDecoder: expected slots >= 1 but received ${slots}`);
    model.checkSequenceLength(maxT, 'BatchDecoder (maxT)');
    const prefillRows = options.prefillRows ?? Math.min(PREFILL_CHUNK, maxT);
    if (!Number.isInteger(prefillRows) || prefillRows < 1 || prefillRows > maxT) {
      throw new RangeError(`BatchDecoder: expected options.prefillRows to be a whole number from 1 to maxT (${maxT}) but received ${prefillRows}`);
    }
    this.prefillRows = prefillRows;
    this.stacked = options.stackedAdapters ?? false;
    const shapes = model.adapterShapes();
    const lora: AdapterShape[] = this.stacked || shapes.length === 0 ? shapes : [{ r: Math.max(...shapes.map((a) => a.r)), perLayer: Math.max(...shapes.map((a) => a.perLayer)) }];
    this.arena = new TensorArena(model.device, batchDecodeSpecs(cfg, slots, maxT, prefillRows, lora));
    for (let l = 0; l < cfg.layers; l++) {
      this.k.push(this.arena.get(`k${l}`));
      this.v.push(this.arena.get(`v${l}`));
    }
    this.block = blockBuffers(this.arena, 'block.', lora);
    this.lnLast = this.arena.get('lnLast');
    this.logits = this.arena.get('logits');
  }

  /** Bytes of the caches and buffers. */
  get bytes(): number {
    return this.arena.bytes;
  }

  /**
   * Writes a prompt (at most maxT tokens) into cache slot `slot`, from position 0, and returns the
   * logits (V) after its last token, prefillRows positions per call. `adapter` is applied (null: the base).
   */
  prefill(slot: number, prompt: readonly number[], adapter: DecodeAdapter): Float32Array {
    // Checked here: Int32Array.of would turn 1.5 into slot 1 (and NaN into slot 0) before the kernel's range check.
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) throw new RangeError(`BatchDecoder.prefill: slot ${slot} is outside [0, ${this.slots})`);
    if (prompt.length < 1 || prompt.length > this.maxT) throw new RangeError(`BatchDecoder.prefill: ${prompt.length} prompt tokens, expected 1 to ${this.maxT}`);
    let logits: Float32Array | null = null;
    for (let past = 0; past < prompt.length; past += this.prefillRows) {
      const chunk = Int32Array.from(prompt.slice(past, past + this.prefillRows));
      logits = this.run(chunk, 1, chunk.length, Int32Array.of(slot), Int32Array.of(past), { positions: null, offset: past }, adapter);
    }
    return logits!;
  }

  /**
   * One position for each of n rows: token tokens[i] at position pasts[i] of slot slots[i] (slots
   * distinct). Returns the logits (n, V).
   */
  step(slots: Int32Array, tokens: Int32Array, pasts: Int32Array, adapter: DecodeAdapter): Float32Array {
    const n = slots.length;
    if (tokens.length !== n || pasts.length !== n) throw new RangeError(`BatchDecoder.step: expected ${n} tokens and pasts`);
    return this.run(tokens, n, 1, slots, pasts, { positions: pasts, offset: 0 }, adapter);
  }

  /**
   * tokens (B, Tq) at positions `at` through the model, row b appending to slot slots[b] from
   * pasts[b]; the logits (B, V) of each row's last position.
   */
  private run(tokens: Int32Array, B: number, Tq: number, slots: Int32Array, pasts: Int32Array, at: BlockPositions, adapter: DecodeAdapter): Float32Array {
    const model = this.model;
    if (adapter === APPLIED_ADAPTERS) {
      if (!this.stacked) throw new Error('BatchDecoder: the applied adapters need a decoder built with stackedAdapters');
      return this.forward(tokens, B, Tq, slots, pasts, at);
    }
    model.selectAdapters(adapter ? [adapter] : []);
    try {
      return this.forward(tokens, B, Tq, slots, pasts, at);
    } finally {
      model.selectAdapters(null);
    }
  }

  /** run() with the adapters the model applies now. */
  private forward(tokens: Int32Array, B: number, Tq: number, slots: Int32Array, pasts: Int32Array, at: BlockPositions): Float32Array {
    // The block's output buffer doubles as the next block's input (the residual stream), (B*Tq, C).
    const model = this.model, cfg = model.config, C = cfg.width, s = this.block, x = s.residual3;
    model.embed(x, tokens, B, Tq, at);
    for (let l = 0; l < cfg.layers; l++) {
      model.blockForward(l, s, x, B, Tq, at, (a) =>
        kernels.attention_cached_rows_forward(a.atty, this.k[l], this.v[l], a.qkv, slots, pasts, B, Tq, this.slots, this.maxT, cfg.heads, cfg.kvHeads, cfg.headDim));
    }
    const normw = model.params.get(globalParamName(cfg, 'normw')), normb = model.params.tensors.get(globalParamName(cfg, 'normb')) ?? null;
    // Only each row's last position feeds the LM head.
    for (let b = 0; b < B; b++) {
      model.normForward(this.lnLast.slice(b * C, [1, C]), null, null, x.slice((b * Tq + Tq - 1) * C, [1, C]), normw, normb, 1);
    }
    model.headForward(this.logits, this.lnLast, B);
    return this.logits.slice(0, [B, cfg.vocabSize]).read();
  }

  /**
   * Copies the first `positions` cached positions of slot `from` into slot `to`, every layer's keys
   * and values, on the device (beam search: a beam continues another beam's history).
   */
  copySlot(from: number, to: number, positions: number): void {
    for (const s of [from, to]) if (!Number.isInteger(s) || s < 0 || s >= this.slots) throw new RangeError(`BatchDecoder.copySlot: slot ${s} is outside [0, ${this.slots})`);
    if (!Number.isInteger(positions) || positions < 0 || positions > this.maxT) throw new RangeError(`BatchDecoder.copySlot: ${positions} positions, expected 0 to ${this.maxT}`);
    if (from === to || positions === 0) return;
    const kv = this.model.config.kvHeads * this.model.config.headDim, slotFloats = this.maxT * kv;
    for (const cache of [...this.k, ...this.v]) cache.arena.copyFrom(cache.offset + to * slotFloats, cache.arena, cache.offset + from * slotFloats, positions * kv);
  }

  free(): void {
    this.arena.free();
  }
}
