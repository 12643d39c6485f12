/**
 * The interfaces between the data pipeline (lib/data), the trainer (lib/train/trainer.ts) and the
 * evaluators (lib/eval). The pipeline turns files into Batches; the trainer consumes a BatchSource
 * and never looks at files.
 */

/** A batch ready for Decoder.forward: (B,T) arrays, row-major. */
export interface Batch {
  B: number;
  T: number;
  /** Input token ids (B*T). Padding positions hold any valid id (the EOS id by convention). */
  inputs: Int32Array;
  /** Target ids (B*T): the token each position must predict, or IGNORE_INDEX (-100) where no loss is taken. */
  targets: Int32Array;
  /** Position ids (B*T), restarting at 0 for each packed example; null = 0..T-1 in every row. */
  positions: Int32Array | null;
  /** Segment ids (B*T): attention never crosses segments (packed examples); null = one segment per row. */
  segmentIds: Int32Array | null;
  /** Positions whose target is not IGNORE_INDEX. */
  scoredTokens: number;
  /**
   * Preference batches (lib/data/preference.ts): the indices of the batch's P pairs; rows [0, P) are
   * their chosen sides and rows [P, 2P) their rejected sides. Absent in other batches.
   */
  pairs?: number[];
}

/** Where a BatchSource stands, saved in checkpoints so a resumed run sees exactly the same batches. */
export interface DataState {
  epoch: number;
  /** Index of the next item (window or example) in the current epoch's order. */
  position: number;
  /** Seed of the current epoch's permutation, or any data the source needs to rebuild its order. */
  [key: string]: unknown;
}

/** An endless stream of training batches (epochs roll over, reshuffling with the seed). */
export interface BatchSource {
  /** Items (windows or examples) per epoch, and how many batches an epoch makes. */
  readonly itemsPerEpoch: number;
  readonly batchesPerEpoch: number;
  next(): Batch;
  getState(): DataState;
  setState(state: DataState): void;
}
