/**
 * Log-likelihood of completions after prompts: the scoring step of classification evaluation
 * (each candidate label is a completion) and of any "how likely is this continuation" question.
 *
 * Each (prompt, completion) pair becomes one row: inputs = full[0 .. L-1), targets = full[1 .. L)
 * with IGNORE_INDEX wherever the target is a prompt token, so the forward pass's per-position
 * losses are exactly -log p(completion token | everything before it). Rows are batched B at a
 * time, right-padded to the longest row of their batch: attention is causal, so padding after a
 * row's end cannot change any of its real positions, and padded targets are ignored.
 */
import { Decoder, IGNORE_INDEX } from '../model/decoder';

export interface CompletionItem {
  /** Prompt token ids (may be empty: then `contextTokenId` is the only context). */
  prompt: readonly number[];
  /** Completion token ids, at least one. */
  completion: readonly number[];
}

export interface CompletionScore {
  /** Sum over completion tokens of log p(token | earlier tokens), in nats (<= 0). */
  logProb: number;
  /** How many completion tokens were scored. */
  tokens: number;
  /** Prompt tokens dropped from the left to fit the model's context (0 when it fit). */
  truncatedPromptTokens: number;
}

/** The default bound on B*T per forward pass of scoreCompletions. */
export const DEFAULT_MAX_BATCH_TOKENS = 4096;

/**
 * The most rows (B*T) one forward pass of scoreCompletions takes: B*T stays within maxBatchTokens
 * unless a single row (at most n_positions) is longer; memory plans size activations with it.
 */
export function maxScoringRows(nPositions: number, batchSize: number, maxBatchTokens = DEFAULT_MAX_BATCH_TOKENS): number {
  return Math.min(batchSize * nPositions, Math.max(maxBatchTokens, nPositions));
}

export interface ScoreCompletionsOptions {
  /** Rows per forward pass (default 16). */
  batchSize?: number;
  /**
   * Upper bound on B*T per forward pass (default 4096): the logits buffer alone is B*T*vocab
   * floats, 0.8 GB for GPT-2's vocabulary at 4096 positions.
   */
  maxBatchTokens?: number;
  /** Token that stands in front of an empty prompt (GPT-2 has no BOS; its EOS serves). */
  contextTokenId: number;
  /** Called after each forward pass with the items scored so far and the total (a progress line). */
  onProgress?: (done: number, total: number) => void;
}

interface PreparedRow {
  index: number;
  /** Context + completion ids, at most n_positions + 1 long. */
  full: number[];
  /** Index in `full` of the first completion token. */
  completionStart: number;
  truncated: number;
}

/** Fits prompt + completion into n_positions + 1 tokens by dropping prompt tokens from the left. */
function prepareRow(item: CompletionItem, index: number, nPositions: number, contextTokenId: number): PreparedRow {
  if (item.completion.length === 0) throw new RangeError(`scoreCompletions: item ${index} has an empty completion (nothing to score)`);
  const context = item.prompt.length > 0 ? item.prompt : [contextTokenId];
  // The forward pass sees L-1 positions (the last token is only a target), so L <= n_positions + 1;
  // at least one context token must remain to predict the first completion token from.
  const maxContext = nPositions + 1 - item.completion.length;
  if (maxContext < 1) {
    throw new RangeError(`scoreCompletions: item ${index}'s completion has ${item.completion.length} tokens, more than the model's context of ${nPositions} (n_positions) allows`);
  }
  const kept = context.length > maxContext ? context.slice(context.length - maxContext) : context;
  return { index, full: [...kept, ...item.completion], completionStart: kept.length, truncated: context.length - kept.length };
}

/**
 * log p(completion | prompt) for every item, from batched forward passes. Results are in the
 * items' order. Rows are sorted by length before batching so that padding stays small.
 */
export function scoreCompletions(model: Decoder, items: readonly CompletionItem[], options: ScoreCompletionsOptions): CompletionScore[] {
  const batchSize = options.batchSize ?? 16;
  const maxBatchTokens = options.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`scoreCompletions: batchSize must be a whole number >= 1 but received ${batchSize}`);
  const nPositions = model.contextLength;
  const rows = items.map((item, i) => prepareRow(item, i, nPositions, options.contextTokenId));
  const order = rows.slice().sort((a, b) => b.full.length - a.full.length || a.index - b.index);
  const results: CompletionScore[] = new Array(items.length);

  let start = 0;
  while (start < order.length) {
    // Longest row first, so T is fixed by the batch's first row.
    const T = order[start].full.length - 1;
    const B = Math.max(1, Math.min(batchSize, Math.floor(maxBatchTokens / T), order.length - start));
    const batch = order.slice(start, start + B);
    start += B;
    const inputs = new Int32Array(B * T).fill(options.contextTokenId); // padding: any valid id
    const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
    batch.forEach((row, b) => {
      const L = row.full.length;
      for (let t = 0; t < L - 1; t++) inputs[b * T + t] = row.full[t];
      // Position t predicts full[t+1]; completion tokens sit at completionStart .. L-1.
      for (let t = row.completionStart - 1; t < L - 1; t++) targets[b * T + t] = row.full[t + 1];
    });
    const { losses } = model.forward(inputs, B, T, targets);
    batch.forEach((row, b) => {
      let logProb = 0;
      for (let t = row.completionStart - 1; t < row.full.length - 1; t++) logProb -= losses[b * T + t];
      results[row.index] = { logProb, tokens: row.full.length - row.completionStart, truncatedPromptTokens: row.truncated };
    });
    options.onProgress?.(start, order.length);
  }
  return results;
}
