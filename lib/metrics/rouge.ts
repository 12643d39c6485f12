/**
 * ROUGE-N, ROUGE-L and ROUGE-Lsum as Google's rouge-score package computes them
 * (google-research/google-research, rouge/rouge_scorer.py), which replicates ROUGE-1.5.5
 * run as `-e data -n 2` (and `-m` with useStemmer).
 *
 * Tokenizer (rouge-score's DefaultTokenizer): lowercase, every run of characters outside
 * [a-z0-9] becomes a space, split on whitespace, optionally Porter-stem tokens longer than 3
 * characters, keep only tokens matching ^[a-z0-9]+$. Non-ASCII letters therefore vanish, as they
 * do in rouge-score.
 *
 * Argument order follows rouge-score: score(target, prediction), i.e. reference first.
 */
import { porterStem } from './porter_stemmer';

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export interface RougeOptions {
  /** 'rouge1'..'rouge9', 'rougeL' (sentence-level LCS), 'rougeLsum' (summary-level LCS over
   *  newline-separated sentences). Default ['rouge1', 'rouge2', 'rougeL']. */
  rougeTypes?: readonly string[];
  /** Porter-stem tokens longer than 3 characters (NLTK's PorterStemmer, as rouge-score). */
  useStemmer?: boolean;
}

export type RougeScores = Record<string, RougeScore>;

const DEFAULT_ROUGE_TYPES = ['rouge1', 'rouge2', 'rougeL'] as const;

/** rouge-score's DefaultTokenizer.tokenize. */
export function rougeTokenize(text: string, useStemmer = false): string[] {
  if (typeof text !== 'string') throw new Error(`rougeTokenize: expected text to be a string but received ${typeof text}`);
  const spaced = text.toLowerCase().replace(/[^a-z0-9]+/g, ' ');
  let tokens = spaced.split(/\s+/);
  if (useStemmer) tokens = tokens.map((token) => (token.length > 3 ? porterStem(token) : token));
  return tokens.filter((token) => /^[a-z0-9]+$/.test(token));
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    // Tokens are [a-z0-9]+, so a space separator cannot collide.
    const key = tokens.slice(i, i + n).join(' ');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function scoreNgrams(targetTokens: readonly string[], predictionTokens: readonly string[], n: number): RougeScore {
  const target = ngramCounts(targetTokens, n);
  const prediction = ngramCounts(predictionTokens, n);
  let overlap = 0;
  for (const [ngram, count] of target) overlap += Math.min(count, prediction.get(ngram) ?? 0);
  const targetTotal = Math.max(targetTokens.length - n + 1, 0);
  const predictionTotal = Math.max(predictionTokens.length - n + 1, 0);
  // rouge-score divides by max(count, 1) so an empty side gives 0, not NaN.
  const precision = overlap / Math.max(predictionTotal, 1);
  const recall = overlap / Math.max(targetTotal, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Dynamic-programming LCS table: table[i][j] = LCS length of ref[0..i) and can[0..j). (R+1, C+1) */
function lcsTable(ref: readonly string[], can: readonly string[]): Int32Array[] {
  const table = Array.from({ length: ref.length + 1 }, () => new Int32Array(can.length + 1));
  for (let i = 1; i <= ref.length; i++) {
    for (let j = 1; j <= can.length; j++) {
      table[i][j] = ref[i - 1] === can[j - 1] ? table[i - 1][j - 1] + 1 : Math.max(table[i - 1][j], table[i][j - 1]);
    }
  }
  return table;
}

function scoreLcs(targetTokens: readonly string[], predictionTokens: readonly string[]): RougeScore {
  if (targetTokens.length === 0 || predictionTokens.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcsLength = lcsTable(targetTokens, predictionTokens)[targetTokens.length][predictionTokens.length];
  const precision = lcsLength / predictionTokens.length;
  const recall = lcsLength / targetTokens.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/**
 * Indices into `ref` of one LCS of ref and can, read back from the table the way rouge-score's
 * _backtrack_norec does (which LCS is chosen matters for ROUGE-Lsum's union).
 */
export function lcsIndices(ref: readonly string[], can: readonly string[]): number[] {
  const table = lcsTable(ref, can);
  const indices: number[] = [];
  let i = ref.length;
  let j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      indices.push(i - 1);
      i--;
      j--;
    } else if (table[i][j - 1] > table[i - 1][j]) {
      j--;
    } else {
      i--;
    }
  }
  return indices.reverse();
}

/** ROUGE-Lsum: summary-level LCS (ROUGE paper section 3.2) with ROUGE-1.5.5's no-double-count rule. */
function scoreSummaryLevelLcs(targetSentences: string[][], predictionSentences: string[][]): RougeScore {
  const zero = { precision: 0, recall: 0, fmeasure: 0 };
  if (targetSentences.length === 0 || predictionSentences.length === 0) return zero;
  const targetLength = targetSentences.reduce((sum, s) => sum + s.length, 0);
  const predictionLength = predictionSentences.reduce((sum, s) => sum + s.length, 0);
  if (targetLength === 0 || predictionLength === 0) return zero;

  const countTokens = (sentences: string[][]) => {
    const counts = new Map<string, number>();
    for (const sentence of sentences) for (const token of sentence) counts.set(token, (counts.get(token) ?? 0) + 1);
    return counts;
  };
  const targetCounts = countTokens(targetSentences);
  const predictionCounts = countTokens(predictionSentences);

  let hits = 0;
  for (const targetSentence of targetSentences) {
    // Union of the LCS positions of this target sentence against every prediction sentence.
    const union = new Set<number>();
    for (const predictionSentence of predictionSentences) {
      for (const index of lcsIndices(targetSentence, predictionSentence)) union.add(index);
    }
    for (const index of Array.from(union).sort((a, b) => a - b)) {
      const token = targetSentence[index];
      // A token is credited at most as often as it occurs on each side.
      if ((predictionCounts.get(token) ?? 0) > 0 && (targetCounts.get(token) ?? 0) > 0) {
        hits++;
        predictionCounts.set(token, (predictionCounts.get(token) as number) - 1);
        targetCounts.set(token, (targetCounts.get(token) as number) - 1);
      }
    }
  }
  const recall = hits / targetLength;
  const precision = hits / predictionLength;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

function checkRougeTypes(rougeTypes: readonly string[]): void {
  if (!Array.isArray(rougeTypes) || rougeTypes.length === 0) {
    throw new Error('rouge: expected rougeTypes to be a non-empty array like ["rouge1", "rouge2", "rougeL"]');
  }
  for (const type of rougeTypes) {
    if (type === 'rougeL' || type === 'rougeLsum') continue;
    // rouge-score accepts rouge1..rouge9 only (rouge0 and rouge10 are errors).
    if (!/^rouge[1-9]$/.test(type)) {
      throw new Error(`rouge: expected each rouge type to be 'rouge1'..'rouge9', 'rougeL' or 'rougeLsum' but received ${JSON.stringify(type)}`);
    }
  }
}

/** rouge-score's RougeScorer(rougeTypes, useStemmer).score(target, prediction). */
export function rougeScore(target: string, prediction: string, options: RougeOptions = {}): RougeScores {
  const rougeTypes = options.rougeTypes ?? DEFAULT_ROUGE_TYPES;
  checkRougeTypes(rougeTypes);
  if (typeof target !== 'string') throw new Error(`rougeScore: expected target to be a string but received ${typeof target}`);
  if (typeof prediction !== 'string') throw new Error(`rougeScore: expected prediction to be a string but received ${typeof prediction}`);
  const useStemmer = options.useStemmer ?? false;
  const targetTokens = rougeTokenize(target, useStemmer);
  const predictionTokens = rougeTokenize(prediction, useStemmer);

  const result: RougeScores = {};
  for (const type of rougeTypes) {
    if (type === 'rougeL') {
      result[type] = scoreLcs(targetTokens, predictionTokens);
    } else if (type === 'rougeLsum') {
      // Sentences are the non-empty lines (rouge-score without split_summaries).
      const sentences = (text: string) =>
        text.split('\n').filter((line) => line.length > 0).map((line) => rougeTokenize(line, useStemmer));
      result[type] = scoreSummaryLevelLcs(sentences(target), sentences(prediction));
    } else {
      result[type] = scoreNgrams(targetTokens, predictionTokens, Number(type.slice(5)));
    }
  }
  return result;
}

/**
 * rouge-score's score_multi: score against every target and keep, per rouge type, the score of
 * the target with the highest F (the first one on ties, like numpy.argmax).
 */
export function rougeScoreMulti(targets: readonly string[], prediction: string, options: RougeOptions = {}): RougeScores {
  if (!Array.isArray(targets) || targets.length === 0) {
    throw new Error('rougeScoreMulti: expected targets to be a non-empty array of strings');
  }
  const perTarget = targets.map((target) => rougeScore(target, prediction, options));
  const best: RougeScores = {};
  for (const type of Object.keys(perTarget[0])) {
    let bestIndex = 0;
    for (let i = 1; i < perTarget.length; i++) {
      if (perTarget[i][type].fmeasure > perTarget[bestIndex][type].fmeasure) bestIndex = i;
    }
    best[type] = perTarget[bestIndex][type];
  }
  return best;
}

export interface RougeCorpusResult {
  /** One entry per (targets, prediction) pair. */
  perPair: RougeScores[];
  /** Mean over pairs of precision, recall and F, each averaged separately. */
  mean: RougeScores;
}

/**
 * Scores every pair and averages precision, recall and F over pairs separately (like averaging
 * rouge-score Score tuples; BootstrapAggregator's `mid` estimates the same mean by resampling).
 * targets[i] may be one string or several (then score_multi's best-F rule applies).
 */
export function rougeCorpus(
  targets: ReadonlyArray<string | readonly string[]>,
  predictions: readonly string[],
  options: RougeOptions = {},
): RougeCorpusResult {
  if (!Array.isArray(targets) || !Array.isArray(predictions) || targets.length !== predictions.length) {
    throw new Error(
      `rougeCorpus: expected targets and predictions arrays of the same length but received ${Array.isArray(targets) ? targets.length : typeof targets} and ${Array.isArray(predictions) ? predictions.length : typeof predictions}`,
    );
  }
  if (predictions.length === 0) throw new Error('rougeCorpus: expected at least one prediction but received none');
  const perPair = predictions.map((prediction, i) => {
    const target = targets[i];
    return typeof target === 'string' ? rougeScore(target, prediction, options) : rougeScoreMulti(target, prediction, options);
  });
  const mean: RougeScores = {};
  for (const type of Object.keys(perPair[0])) {
    const average = (field: keyof RougeScore) => perPair.reduce((sum, scores) => sum + scores[type][field], 0) / perPair.length;
    mean[type] = { precision: average('precision'), recall: average('recall'), fmeasure: average('fmeasure') };
  }
  return { perPair, mean };
}
