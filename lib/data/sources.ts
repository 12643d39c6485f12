/**
 * BatchSources: endless streams of training batches with a resumable position.
 *
 * The order is lib/train/lm.ts's WindowSampler's, so plain-text training keeps the `gptune train`
 * contract: without shuffle the items in order, B per batch, wrapping to the first item when they run
 * out; with shuffle a fresh permutation each epoch from one Rng(seed). A batch always has B rows;
 * the last batch of an epoch takes its missing rows from the next epoch.
 */
import { IGNORE_INDEX } from '../metrics/lm';
import { Rng } from '../util/rng';
import { buildRowBatch, ExampleStore } from './examples';
import type { TokenSequence } from './tokens';
import type { Batch, BatchSource, DataState } from './types';

/** The state of an ItemSampler, inside DataState. */
export interface SamplerState extends DataState {
  epoch: number;
  position: number;
  /** Rng state just before this epoch's permutation was drawn (null without shuffle). */
  orderRng: { state: number; spare: number | null } | null;
  items: number;
  shuffle: boolean;
}

/** Which item comes next: WindowSampler's order, with getState/setState for exact resumption. */
export class ItemSampler {
  private order: number[] = [];
  private position = 0;
  private readonly rng: Rng;
  private orderRng: { state: number; spare: number | null } | null = null;
  epoch = 0;

  constructor(readonly count: number, readonly shuffle: boolean, seed: number) {
    if (count < 1) throw new RangeError('ItemSampler: no items');
    this.rng = new Rng(seed);
    this.drawOrder();
  }

  private drawOrder(): void {
    const order = Array.from({ length: this.count }, (_, i) => i);
    if (this.shuffle) {
      this.orderRng = this.rng.getState();
      this.rng.shuffle(order);
    }
    this.order = order;
  }

  next(n: number): number[] {
    const out: number[] = [];
    while (out.length < n) {
      if (this.position >= this.order.length) {
        this.position = 0;
        this.epoch++;
        this.drawOrder();
      }
      out.push(this.order[this.position++]);
    }
    return out;
  }

  getState(): SamplerState {
    return { epoch: this.epoch, position: this.position, orderRng: this.orderRng, items: this.count, shuffle: this.shuffle };
  }

  setState(state: DataState): void {
    const s = state as SamplerState;
    if (s.items !== this.count || s.shuffle !== this.shuffle) {
      throw new Error(`data state: saved for ${s.items} items (shuffle ${s.shuffle}) but the data now has ${this.count} (shuffle ${this.shuffle}); resume with the same data and settings`);
    }
    if (!Number.isInteger(s.position) || s.position < 0 || s.position > this.count) throw new Error(`data state: position ${s.position} is outside [0, ${this.count}]`);
    if (this.shuffle) {
      if (!s.orderRng) throw new Error('data state: missing the shuffle state (orderRng)');
      this.rng.setState(s.orderRng);
    }
    this.epoch = s.epoch;
    this.drawOrder();
    this.position = s.position;
  }
}

/**
 * Plain text: windows of T+1 tokens at stride T (window i = tokens [iT, iT+T]; inputs its first T,
 * targets its last T), all tokens trained, no segments.
 */
export class TextWindowSource implements BatchSource {
  readonly itemsPerEpoch: number;
  readonly batchesPerEpoch: number;
  private readonly sampler: ItemSampler;

  constructor(private readonly tokens: TokenSequence, readonly B: number, readonly T: number, shuffle: boolean, seed: number) {
    this.itemsPerEpoch = tokens.length > 1 ? Math.floor((tokens.length - 1) / T) : 0;
    if (this.itemsPerEpoch < 1) throw new RangeError(`the training text has ${tokens.length} tokens, fewer than seq_len + 1 = ${T + 1} needed for one window`);
    this.batchesPerEpoch = Math.ceil(this.itemsPerEpoch / B);
    this.sampler = new ItemSampler(this.itemsPerEpoch, shuffle, seed);
  }

  next(): Batch {
    const { B, T } = this;
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    this.sampler.next(B).forEach((w, b) => {
      this.tokens.copyTo(w * T, T, inputs, b * T);
      this.tokens.copyTo(w * T + 1, T, targets, b * T);
    });
    return { B, T, inputs, targets, positions: null, segmentIds: null, scoredTokens: B * T };
  }

  getState(): DataState { return this.sampler.getState(); }
  setState(state: DataState): void { this.sampler.setState(state); }
}

/** Prompt/completion-style examples in rows (packed or padded); items are rows. */
export class RowSource implements BatchSource {
  readonly itemsPerEpoch: number;
  readonly batchesPerEpoch: number;
  private readonly sampler: ItemSampler;

  constructor(private readonly store: ExampleStore, private readonly rows: number[][], readonly B: number, readonly T: number,
    private readonly padId: number, private readonly packing: boolean, shuffle: boolean, seed: number) {
    this.itemsPerEpoch = rows.length;
    if (rows.length < 1) throw new RangeError('no training examples');
    this.batchesPerEpoch = Math.ceil(rows.length / B);
    this.sampler = new ItemSampler(rows.length, shuffle, seed);
  }

  next(): Batch {
    return buildRowBatch(this.store, this.sampler.next(this.B).map((r) => this.rows[r]), this.T, this.padId, this.packing);
  }

  getState(): DataState { return this.sampler.getState(); }
  setState(state: DataState): void { this.sampler.setState(state); }
}

/**
 * Validation batches of plain text, in order: windows of T+1 at stride T, then the tail (fewer than
 * T+1 tokens) in one row padded with targets -100, so every token but the first is scored exactly
 * once. The last batch may have fewer than B rows.
 */
export function textValidationBatches(tokens: TokenSequence, B: number, T: number, padId: number): Batch[] {
  const n = tokens.length;
  const windows = n > 1 ? Math.floor((n - 1) / T) : 0;
  const rowStarts: Array<{ start: number; length: number }> = [];
  for (let w = 0; w < windows; w++) rowStarts.push({ start: w * T, length: T });
  const tail = n - 1 - windows * T; // targets left after the full windows
  if (tail > 0) rowStarts.push({ start: windows * T, length: tail });
  const batches: Batch[] = [];
  for (let first = 0; first < rowStarts.length; first += B) {
    const rows = rowStarts.slice(first, first + B);
    const inputs = new Int32Array(rows.length * T).fill(padId), targets = new Int32Array(rows.length * T).fill(IGNORE_INDEX);
    let scoredTokens = 0;
    rows.forEach(({ start, length }, b) => {
      tokens.copyTo(start, length, inputs, b * T);
      tokens.copyTo(start + 1, length, targets, b * T);
      scoredTokens += length;
    });
    batches.push({ B: rows.length, T, inputs, targets, positions: null, segmentIds: null, scoredTokens });
  }
  return batches;
}

/** Validation batches of example rows, in order; the last batch may have fewer than B rows. */
export function rowValidationBatches(store: ExampleStore, rows: number[][], B: number, T: number, padId: number, packing: boolean): Batch[] {
  const batches: Batch[] = [];
  for (let first = 0; first < rows.length; first += B) batches.push(buildRowBatch(store, rows.slice(first, first + B), T, padId, packing));
  return batches;
}
