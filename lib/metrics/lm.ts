/**
 * Language-model evaluation figures: perplexity from the mean token cross-entropy, and
 * token-level accuracy of next-token predictions with PyTorch's ignore_index convention.
 *
 * What token accuracy counts: every position whose target is not IGNORE_INDEX (prompt and padding
 * positions) and, when an appended end-of-sequence id is given, not that id either. gptune appends
 * the EOS token after every training example and between text documents; predicting it is easy and
 * says nothing about the text, so training and validation accuracy leave those positions out (the
 * loss still scores them, as transformers does). `eval --task lm` scores a text file as it is
 * (gptune appends nothing), so every position counts there.
 */

/** Targets equal to this are padding/prompt positions and are not scored (PyTorch's default). */
export const IGNORE_INDEX = -100;

type IntArrayLike = ArrayLike<number>;

/**
 * Perplexity = exp(mean cross-entropy in nats per token). The mean must be over scored tokens
 * only (the same tokens a cross-entropy with ignore_index averages over), not over batches of
 * different sizes.
 */
export function perplexity(meanLoss: number): number {
  if (typeof meanLoss !== 'number' || !Number.isFinite(meanLoss) || meanLoss < 0) {
    throw new Error(`perplexity: expected meanLoss to be a finite number >= 0 (nats per token) but received ${meanLoss}`);
  }
  return Math.exp(meanLoss);
}

/**
 * Perplexity from summed losses and token counts of several batches: exp(sum / count), the
 * token-weighted mean, which is what a single pass over all tokens would give.
 */
export function perplexityFromSums(lossSum: number, tokenCount: number): number {
  if (!Number.isInteger(tokenCount) || tokenCount <= 0) {
    throw new Error(`perplexityFromSums: expected tokenCount to be a positive integer but received ${tokenCount}`);
  }
  return perplexity(lossSum / tokenCount);
}

export interface TokenAccuracy {
  /** correct / counted; NaN when every target is ignored. */
  accuracy: number;
  /** Positions whose prediction equals the target. */
  correct: number;
  /** Positions whose target is neither the ignore index nor the appended EOS id. */
  counted: number;
}

/**
 * Fraction of positions where predictions[i] === targets[i], over positions whose target is not
 * `ignoreIndex` (default -100) and not `appendedEos` (the EOS id gptune appended to the data; null:
 * count it). predictions and targets are flat (B*T) arrays of token ids, e.g. Int32Array;
 * predictions are usually the argmax of the logits at each position.
 */
export function tokenAccuracy(
  predictions: IntArrayLike,
  targets: IntArrayLike,
  ignoreIndex: number = IGNORE_INDEX,
  appendedEos: number | null = null,
): TokenAccuracy {
  if (predictions == null || typeof predictions.length !== 'number') {
    throw new Error('tokenAccuracy: expected predictions to be an array of token ids');
  }
  if (targets == null || typeof targets.length !== 'number') {
    throw new Error('tokenAccuracy: expected targets to be an array of token ids');
  }
  if (predictions.length !== targets.length) {
    throw new Error(
      `tokenAccuracy: expected predictions and targets of the same length but received ${predictions.length} and ${targets.length}`,
    );
  }
  let correct = 0;
  let counted = 0;
  for (let i = 0; i < targets.length; i++) {
    const target = targets[i];
    if (target === ignoreIndex || target === appendedEos) continue;
    counted++;
    if (predictions[i] === target) correct++;
  }
  return { accuracy: counted === 0 ? NaN : correct / counted, correct, counted };
}

/**
 * Argmax over the last axis of row-major logits (N, V) -> (N) token ids, the usual predictions
 * for tokenAccuracy. Ties go to the lowest id and NaN counts as the maximum, as torch.argmax does.
 */
export function argmaxTokens(logits: ArrayLike<number>, vocabSize: number): Int32Array {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
    throw new Error(`argmaxTokens: expected vocabSize to be a positive integer but received ${vocabSize}`);
  }
  if (logits == null || logits.length % vocabSize !== 0) {
    throw new Error(
      `argmaxTokens: expected logits length to be a multiple of vocabSize=${vocabSize} but received ${logits == null ? logits : logits.length}`,
    );
  }
  const rows = logits.length / vocabSize;
  const tokens = new Int32Array(rows);
  for (let row = 0; row < rows; row++) {
    const base = row * vocabSize;
    let best = 0;
    let bestValue = logits[base];
    for (let v = 1; v < vocabSize && !Number.isNaN(bestValue); v++) {
      const value = logits[base + v];
      if (value > bestValue || Number.isNaN(value)) {
        best = v;
        bestValue = value;
      }
    }
    tokens[row] = best;
  }
  return tokens;
}
