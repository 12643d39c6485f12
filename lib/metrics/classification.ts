/**
 * Classification metrics with scikit-learn's conventions (sklearn.metrics: accuracy_score,
 * confusion_matrix, precision_recall_fscore_support and friends), for single-label
 * (binary / multiclass) targets.
 *
 * Labels are strings or numbers, never a mix (scikit-learn refuses a mix too). When no label
 * list is given, the label order is the sorted union of the labels in yTrue and yPred: numbers
 * ascending, strings by Unicode code point (numpy's order for both).
 *
 * Zero division follows scikit-learn: precision with no predicted samples, recall with no true
 * samples, and F with neither, are set to `zeroDivision` (default 0), and the result says so in
 * `zeroDivision` so callers can tell "0 because undefined" from "0 because wrong".
 */

export type Label = string | number;

// ---------------------------------------------------------------------------------------
// Label handling

function compareCodePoints(a: string, b: string): number {
  // JavaScript's < compares UTF-16 code units, which orders astral characters before
  // U+E000..U+FFFF; numpy compares code points.
  const aPoints = Array.from(a, (ch) => ch.codePointAt(0) as number);
  const bPoints = Array.from(b, (ch) => ch.codePointAt(0) as number);
  const n = Math.min(aPoints.length, bPoints.length);
  for (let i = 0; i < n; i++) if (aPoints[i] !== bPoints[i]) return aPoints[i] - bPoints[i];
  return aPoints.length - bPoints.length;
}

function checkLabelArray(name: string, labels: readonly Label[]): 'string' | 'number' | 'empty' {
  if (!Array.isArray(labels)) throw new Error(`${name}: expected an array of labels but received ${typeof labels}`);
  let kind: 'string' | 'number' | 'empty' = 'empty';
  labels.forEach((label, i) => {
    const labelKind = typeof label;
    if (labelKind !== 'string' && labelKind !== 'number') {
      throw new Error(`${name}[${i}]: expected a string or number label but received ${labelKind}`);
    }
    if (labelKind === 'number' && !Number.isFinite(label)) {
      throw new Error(`${name}[${i}]: expected a finite number label but received ${label}`);
    }
    if (kind === 'empty') kind = labelKind as 'string' | 'number';
    else if (kind !== labelKind) {
      throw new Error(`${name}: expected labels of one type (all strings or all numbers) but received both`);
    }
  });
  return kind;
}

function checkPair(fn: string, yTrue: readonly Label[], yPred: readonly Label[]): void {
  const trueKind = checkLabelArray(`${fn}: yTrue`, yTrue);
  const predKind = checkLabelArray(`${fn}: yPred`, yPred);
  if (yTrue.length !== yPred.length) {
    throw new Error(`${fn}: expected yTrue and yPred of the same length but received ${yTrue.length} and ${yPred.length}`);
  }
  if (trueKind !== 'empty' && predKind !== 'empty' && trueKind !== predKind) {
    throw new Error(`${fn}: expected yTrue and yPred labels of the same type but received ${trueKind} and ${predKind}`);
  }
}

/** scikit-learn's unique_labels for 1-D targets: the sorted union of both label arrays. */
export function sortedUniqueLabels(...arrays: ReadonlyArray<readonly Label[]>): Label[] {
  const unique = new Set<Label>();
  for (const array of arrays) for (const label of array) unique.add(label);
  const labels = Array.from(unique);
  if (labels.length === 0) return labels;
  if (typeof labels[0] === 'number') return (labels as number[]).sort((a, b) => a - b);
  return (labels as string[]).sort(compareCodePoints);
}

function resolveLabels(fn: string, yTrue: readonly Label[], yPred: readonly Label[], labels?: readonly Label[]): Label[] {
  if (labels === undefined) return sortedUniqueLabels(yTrue, yPred);
  checkLabelArray(`${fn}: labels`, labels);
  if (labels.length === 0) throw new Error(`${fn}: expected labels to contain at least one label but received []`);
  if (new Set(labels).size !== labels.length) throw new Error(`${fn}: expected labels without duplicates but received ${JSON.stringify(labels)}`);
  return labels.slice();
}

// ---------------------------------------------------------------------------------------
// Accuracy and confusion matrix

/**
 * Fraction of samples whose predicted label equals the true label (sklearn accuracy_score).
 * With normalize = false, the number of correct samples instead.
 */
export function accuracy(yTrue: readonly Label[], yPred: readonly Label[], options: { normalize?: boolean } = {}): number {
  checkPair('accuracy', yTrue, yPred);
  let correct = 0;
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) correct++;
  if (options.normalize === false) return correct;
  // numpy's average of an empty array is nan (with a warning); we return NaN too.
  return yTrue.length === 0 ? NaN : correct / yTrue.length;
}

export interface ConfusionMatrix {
  /** Row/column order of `matrix`. */
  labels: Label[];
  /** matrix[i][j] = number of samples with true label labels[i] predicted as labels[j]. (L,L) */
  matrix: number[][];
}

/**
 * sklearn confusion_matrix: rows are true labels, columns predicted labels. With `labels`
 * given, samples whose true or predicted label is not in the list are left out, and (as in
 * scikit-learn) at least one given label must occur in yTrue when yTrue is non-empty.
 */
export function confusionMatrix(
  yTrue: readonly Label[],
  yPred: readonly Label[],
  options: { labels?: readonly Label[] } = {},
): ConfusionMatrix {
  checkPair('confusionMatrix', yTrue, yPred);
  const labels = resolveLabels('confusionMatrix', yTrue, yPred, options.labels);
  const index = new Map<Label, number>(labels.map((label, i) => [label, i]));
  if (options.labels !== undefined && yTrue.length > 0 && !yTrue.some((label) => index.has(label))) {
    throw new Error(`confusionMatrix: expected at least one of labels ${JSON.stringify(labels)} to occur in yTrue but none does`);
  }
  const matrix = labels.map(() => new Array<number>(labels.length).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const row = index.get(yTrue[i]);
    const col = index.get(yPred[i]);
    if (row !== undefined && col !== undefined) matrix[row][col]++;
  }
  return { labels, matrix };
}

// ---------------------------------------------------------------------------------------
// Precision, recall, F-beta

/** 'binary': the positive label only; null: per-class arrays only (sklearn average=None). */
export type Average = 'binary' | 'micro' | 'macro' | 'weighted' | null;

export interface PrfOptions {
  /** Default 'binary', like precision_score/recall_score/f1_score. */
  average?: Average;
  /** Positive label for average 'binary' (default 1). */
  posLabel?: Label;
  /** Labels to score and their order (default: sorted union); ignored for 'binary'. */
  labels?: readonly Label[];
  /** Value used where a ratio is 0/0: 0 (default), 1, or NaN (left out of averages). */
  zeroDivision?: number;
  /** F-beta's beta (default 1); 0 gives precision, Infinity gives recall. */
  beta?: number;
}

/** Which ratios were 0/0 and replaced by `zeroDivision`. */
export interface ZeroDivisionReport {
  /** True if any precision (per class, or the micro one) had no predicted samples. */
  precision: boolean;
  /** True if any recall had no true samples. */
  recall: boolean;
  /** True if any F had neither true nor predicted samples. */
  f: boolean;
  /** Labels with at least one undefined ratio (for micro: all scored labels, if any was). */
  labels: Label[];
}

export interface PerClassScores {
  labels: Label[];
  precision: number[];
  recall: number[];
  f: number[];
  /** Number of samples of each label in yTrue. */
  support: number[];
  truePositives: number[];
  predicted: number[];
}

export interface PrfResult {
  /** The averaged figure for 'micro'/'macro'/'weighted'/'binary'; NaN when average is null. */
  precision: number;
  recall: number;
  f: number;
  /** Sum of support over the scored labels (sklearn returns None for averaged support). */
  support: number;
  /** Per-label figures for the scored labels (for 'binary', just the positive label). */
  perClass: PerClassScores;
  zeroDivision: ZeroDivisionReport;
}

interface DivisionResult {
  values: number[];
  undefinedAt: boolean[];
}

function divideWithZeroDivision(numerator: number[], denominator: number[], zeroDivision: number): DivisionResult {
  const undefinedAt = denominator.map((d) => d === 0);
  const values = numerator.map((n, i) => (undefinedAt[i] ? zeroDivision : n / denominator[i]));
  return { values, undefinedAt };
}

/** Mean that skips NaN entries, weighted if weights are given (sklearn's _nanaverage). */
function nanAverage(values: number[], weights: number[] | null): number {
  const kept = values.map((v, i) => [v, weights ? weights[i] : 1] as const).filter(([v]) => !Number.isNaN(v));
  if (kept.length === 0) return NaN;
  const weightSum = kept.reduce((sum, [, w]) => sum + w, 0);
  // All-zero weights (no true samples for any scored label): sklearn's _nanaverage falls back
  // to the unweighted mean.
  if (weights === null || weightSum === 0) return kept.reduce((sum, [v]) => sum + v, 0) / kept.length;
  return kept.reduce((sum, [v, w]) => sum + v * w, 0) / weightSum;
}

function fBetaFromCounts(
  truePositives: number[],
  predicted: number[],
  support: number[],
  precision: DivisionResult,
  recall: DivisionResult,
  beta: number,
  zeroDivision: number,
): DivisionResult {
  if (beta === Infinity) return recall;
  if (beta === 0) return precision;
  // F = (1 + b^2) P R / (b^2 P + R) written with counts, as scikit-learn >= 1.3 does:
  // F = (1 + b^2) tp / (b^2 (tp + fn) + (tp + fp)); 0/0 only when no true and no predicted sample.
  const beta2 = beta * beta;
  const numerator = truePositives.map((tp) => (1 + beta2) * tp);
  const denominator = support.map((trueCount, i) => beta2 * trueCount + predicted[i]);
  return divideWithZeroDivision(numerator, denominator, zeroDivision);
}

/**
 * Precision, recall, F-beta and support (sklearn precision_recall_fscore_support, with the
 * default average of precision_score / f1_score: 'binary').
 *
 *   'binary'   scores posLabel only; the targets may hold at most two distinct labels.
 *   'micro'    pools true positives, predictions and supports over the scored labels.
 *   'macro'    unweighted mean of the per-label figures.
 *   'weighted' per-label figures weighted by support.
 *   null       per-label figures only (precision/recall/f of the result are NaN).
 */
export function precisionRecallF(yTrue: readonly Label[], yPred: readonly Label[], options: PrfOptions = {}): PrfResult {
  const fn = 'precisionRecallF';
  checkPair(fn, yTrue, yPred);
  const average = options.average === undefined ? 'binary' : options.average;
  if (!['binary', 'micro', 'macro', 'weighted', null].includes(average)) {
    throw new Error(`${fn}: expected average to be 'binary', 'micro', 'macro', 'weighted' or null but received ${JSON.stringify(average)}`);
  }
  const zeroDivision = options.zeroDivision ?? 0;
  if (!(zeroDivision === 0 || zeroDivision === 1 || Number.isNaN(zeroDivision))) {
    throw new Error(`${fn}: expected zeroDivision to be 0, 1 or NaN but received ${zeroDivision}`);
  }
  const beta = options.beta ?? 1;
  if (!(beta >= 0)) throw new Error(`${fn}: expected beta >= 0 but received ${beta}`);

  let labels: Label[];
  if (average === 'binary') {
    const posLabel = options.posLabel ?? 1;
    const present = sortedUniqueLabels(yTrue, yPred);
    if (present.length > 2) {
      throw new Error(
        `${fn}: expected at most 2 distinct labels for average 'binary' but received ${present.length} (${JSON.stringify(present)}); choose 'micro', 'macro', 'weighted' or null`,
      );
    }
    if (present.length === 2 && !present.includes(posLabel)) {
      throw new Error(`${fn}: expected posLabel to be one of ${JSON.stringify(present)} but received ${JSON.stringify(posLabel)}`);
    }
    labels = [posLabel];
  } else {
    labels = resolveLabels(fn, yTrue, yPred, options.labels);
  }

  // Per-label counts over the scored labels. (L)
  const index = new Map<Label, number>(labels.map((label, i) => [label, i]));
  const truePositives = new Array<number>(labels.length).fill(0);
  const predicted = new Array<number>(labels.length).fill(0);
  const support = new Array<number>(labels.length).fill(0);
  for (let i = 0; i < yTrue.length; i++) {
    const t = index.get(yTrue[i]);
    const p = index.get(yPred[i]);
    if (t !== undefined) support[t]++;
    if (p !== undefined) predicted[p]++;
    if (t !== undefined && yTrue[i] === yPred[i]) truePositives[t]++;
  }

  const perClassPrecision = divideWithZeroDivision(truePositives, predicted, zeroDivision);
  const perClassRecall = divideWithZeroDivision(truePositives, support, zeroDivision);
  const perClassF = fBetaFromCounts(truePositives, predicted, support, perClassPrecision, perClassRecall, beta, zeroDivision);

  const perClass: PerClassScores = {
    labels,
    precision: perClassPrecision.values,
    recall: perClassRecall.values,
    f: perClassF.values,
    support,
    truePositives,
    predicted,
  };
  const totalSupport = support.reduce((a, b) => a + b, 0);

  let precision = NaN;
  let recall = NaN;
  let f = NaN;
  let undefinedPrecision = perClassPrecision.undefinedAt;
  let undefinedRecall = perClassRecall.undefinedAt;
  let undefinedF = perClassF.undefinedAt;
  if (average === 'micro') {
    const sum = (values: number[]) => [values.reduce((a, b) => a + b, 0)];
    const microPrecision = divideWithZeroDivision(sum(truePositives), sum(predicted), zeroDivision);
    const microRecall = divideWithZeroDivision(sum(truePositives), sum(support), zeroDivision);
    const microF = fBetaFromCounts(sum(truePositives), sum(predicted), sum(support), microPrecision, microRecall, beta, zeroDivision);
    precision = microPrecision.values[0];
    recall = microRecall.values[0];
    f = microF.values[0];
    const spread = (flag: boolean) => labels.map(() => flag);
    undefinedPrecision = spread(microPrecision.undefinedAt[0]);
    undefinedRecall = spread(microRecall.undefinedAt[0]);
    undefinedF = spread(microF.undefinedAt[0]);
  } else if (average !== null) {
    // 'binary' has a single label, so macro and binary coincide.
    const weights = average === 'weighted' ? support : null;
    precision = nanAverage(perClass.precision, weights);
    recall = nanAverage(perClass.recall, weights);
    f = nanAverage(perClass.f, weights);
  }

  const undefinedLabels = labels.filter((_, i) => undefinedPrecision[i] || undefinedRecall[i] || undefinedF[i]);
  return {
    precision,
    recall,
    f,
    support: totalSupport,
    perClass,
    zeroDivision: {
      precision: undefinedPrecision.some(Boolean),
      recall: undefinedRecall.some(Boolean),
      f: undefinedF.some(Boolean),
      labels: undefinedLabels,
    },
  };
}

/** F1 (sklearn f1_score): precisionRecallF with beta = 1. */
export function f1Score(yTrue: readonly Label[], yPred: readonly Label[], options: Omit<PrfOptions, 'beta'> = {}): PrfResult {
  return precisionRecallF(yTrue, yPred, { ...options, beta: 1 });
}
