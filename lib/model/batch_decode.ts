/**
 * Decoding many sequences at once, each at its own length (continuous batching, lib/serve): the KV
 * caches hold `slots` sequences of up to maxT positions; a sequence's prompt is prefilled into its
 * slot on its own, then one step runs the next position of every live sequence through the model
 * together (one set of kernel calls for all rows). A row computes exactly what generate() computes
 * for its sequence alone: the same kernels on the same values, with attention_cached_rows_forward
 * reading each row's own slot and length, and the positions (learned table or RoPE) given per row.
 */
import { kernels } from '../native';
import { arenaBytes, Tensor, TensorArena, TensorSpec } from '../tensor';
import type { AdapterShape, LoraAdapter } from '../lora/adapter';
import { asDecoderConfig, GPT2Config } from './config';
import { BlockBuffers, blockBuffers, BlockPositions, Decoder, globalParamName, planMemory } from './decoder';
import { DecoderConfig } from './decoder_config';
import { decodeBufferSpecs, kvCacheSpecs } from './generate';

/**
 * Prompt positions per prefill call: a multiple of the attention kernels' 64-query tiles, so a prompt
 * cut into chunks is tiled exactly as it is whole (and its logits are generate()'s bit for bit).
 */
export const PREFILL_CHUNK = 256;

/**
 * The arena of a BatchDecoder: `slots` K/V caches of maxT positions, and block buffers for a
 * prefill chunk or one position of every slot, whichever is more rows.
 */
export function batchDecodeSpecs(cfg: DecoderConfig, slots: number, maxT: number, lora: readonly AdapterShape[] = []): TensorSpec[] {
  return [...kvCacheSpecs(cfg, slots, maxT), ...decodeBufferSpecs(cfg, Math.max(slots, Math.min(PREFILL_CHUNK, maxT)), slots, lora)];
}

/** The memory plan of decoding `slots` sequences of up to maxT positions at once (beam search, batched greedy). */
export function planBatchDecodeMemory(config: DecoderConfig | GPT2Config, slots: number, maxT: number): Record<string, number> {
  const cfg = asDecoderConfig(config);
  return { ...planMemory(cfg, { batch: null, training: false }).parts, 'KV cache': arenaBytes(batchDecodeSpecs(cfg, slots, maxT)) };
}

export class BatchDecoder {
  private readonly arena: TensorArena;
  private readonly k: Tensor[] = [];
  private readonly v: Tensor[] = [];
  private readonly block: BlockBuffers;
  private readonly lnLast: Tensor; // (slots, C)
  private readonly logits: Tensor; // (slots, V)

  /**
   * `slots` sequences of up to maxT positions each. The block buffers take one adapter at a time
   * (the largest rank and module count of the model's loaded adapters): a step runs rows that share
   * one adapter, or none.
   */
  constructor(private readonly model: Decoder, readonly slots: number, readonly maxT: number) {
    const cfg = model.config;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`BatchDecoder: expected slots >= 1 but received ${slots}`);
    model.checkSequenceLength(maxT, 'BatchDecoder (maxT)');
    const shapes = model.adapterShapes();
    const lora: AdapterShape[] = shapes.length === 0 ? [] : [{ r: Math.max(...shapes.map((a) => a.r)), perLayer: Math.max(...shapes.map((a) => a.perLayer)) }];
    this.arena = new TensorArena(model.device, batchDecodeSpecs(cfg, slots, maxT, lora));
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
   * logits (V) after its last token. `adapter` is applied (null: the base).
   */
  prefill(slot: number, prompt: readonly number[], adapter: LoraAdapter | null): Float32Array {
    if (prompt.length < 1 || prompt.length > this.maxT) throw new RangeError(`BatchDecoder.prefill: ${prompt.length} prompt tokens, expected 1 to ${this.maxT}`);
    let logits: Float32Array | null = null;
    for (let past = 0; past < prompt.length; past += PREFILL_CHUNK) {
      const chunk = Int32Array.from(prompt.slice(past, past + PREFILL_CHUNK));
      logits = this.run(chunk, 1, chunk.length, Int32Array.of(slot), Int32Array.of(past), { positions: null, offset: past }, adapter);
    }
    return logits!;
  }

  /**
   * One position for each of n rows: token tokens[i] at position pasts[i] of slot slots[i] (slots
   * distinct). Returns the logits (n, V).
   */
  step(slots: Int32Array, tokens: Int32Array, pasts: Int32Array, adapter: LoraAdapter | null): Float32Array {
    const n = slots.length;
    if (tokens.length !== n || pasts.length !== n) throw new RangeError(`BatchDecoder.step: expected ${n} tokens and pasts`);
    return this.run(tokens, n, 1, slots, pasts, { positions: pasts, offset: 0 }, adapter);
  }

  /**
   * tokens (B, Tq) at positions `at` through the model, row b appending to slot slots[b] from
   * pasts[b]; the logits (B, V) of each row's last position.
   */
  private run(tokens: Int32Array, B: number, Tq: number, slots: Int32Array, pasts: Int32Array, at: BlockPositions, adapter: LoraAdapter | null): Float32Array {
    const model = this.model, cfg = model.config, C = cfg.width, s = this.block, x = s.residual3;
    model.selectAdapters(adapter ? [adapter] : []);
    try {
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
    } finally {
      model.selectAdapters(null);
    }
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
