/**
 * SQuAD v1.1 exact match and F1, as the official evaluation script (evaluate-v1.1.py) computes them:
 * both sides go through normalize_answer (lowercase, drop every character of Python's
 * string.punctuation, drop the whole words a/an/the, collapse whitespace), and each prediction takes
 * the best score over its gold answers.
 */
import { pySplitWhitespace } from './python_text';

// Python's string.punctuation: the 32 ASCII punctuation characters.
const PY_STRING_PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
// re.sub(r'\b(a|an|the)\b', ' ', text) on a str: Python's \b is Unicode-aware (a word character
// is a letter, a number or '_'), which JavaScript's \b is not, so the boundaries are spelled out.
const ARTICLE = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

/** The script's normalize_answer(s). */
export function normalizeSquadAnswer(s: string): string {
  if (typeof s !== 'string') throw new TypeError(`normalizeSquadAnswer: expected a string but received ${typeof s}`);
  let withoutPunctuation = '';
  for (const ch of s.toLowerCase()) if (!PY_STRING_PUNCTUATION.has(ch)) withoutPunctuation += ch;
  return pySplitWhitespace(withoutPunctuation.replace(ARTICLE, ' ')).join(' ');
}

function checkGolds(golds: readonly string[], fn: string): void {
  if (!Array.isArray(golds) || golds.length === 0) throw new TypeError(`${fn}: expected a non-empty array of gold answers`);
  golds.forEach((g, i) => {
    if (typeof g !== 'string') throw new TypeError(`${fn}: expected gold answer ${i} to be a string but received ${typeof g}`);
  });
}

function exactMatchOne(prediction: string, gold: string): number {
  return normalizeSquadAnswer(prediction) === normalizeSquadAnswer(gold) ? 1 : 0;
}

/** The script's f1_score: F1 of the multiset overlap of normalized tokens (0 when nothing overlaps). */
function f1One(prediction: string, gold: string): number {
  const predictionTokens = normalizeSquadAnswer(prediction).split(' ').filter((t) => t !== '');
  const goldTokens = normalizeSquadAnswer(gold).split(' ').filter((t) => t !== '');
  const goldCounts = new Map<string, number>();
  for (const token of goldTokens) goldCounts.set(token, (goldCounts.get(token) ?? 0) + 1);
  let same = 0;
  for (const token of predictionTokens) {
    const left = goldCounts.get(token) ?? 0;
    if (left > 0) {
      same++;
      goldCounts.set(token, left - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / predictionTokens.length;
  const recall = same / goldTokens.length;
  return (2 * precision * recall) / (precision + recall);
}

/** 1 when the normalized prediction equals some normalized gold answer, else 0. */
export function squadExactMatch(prediction: string, golds: readonly string[]): number {
  checkGolds(golds, 'squadExactMatch');
  return Math.max(...golds.map((gold) => exactMatchOne(prediction, gold)));
}

/** Token-overlap F1 (0..1) against the best gold answer. */
export function squadF1(prediction: string, golds: readonly string[]): number {
  checkGolds(golds, 'squadF1');
  return Math.max(...golds.map((gold) => f1One(prediction, gold)));
}

export interface SquadScores {
  /** Percent, as the script prints it. */
  exact_match: number;
  /** Percent. */
  f1: number;
  count: number;
}

/**
 * The script's evaluate(): the mean of exact match and F1 over the questions, in percent.
 * golds[i] holds every gold answer of question i.
 */
export function squadCorpus(predictions: readonly string[], golds: ReadonlyArray<readonly string[]>): SquadScores {
  if (!Array.isArray(predictions) || !Array.isArray(golds) || predictions.length !== golds.length) {
    throw new TypeError(
      `squadCorpus: expected predictions and golds of the same length but received ${Array.isArray(predictions) ? predictions.length : typeof predictions} and ${Array.isArray(golds) ? golds.length : typeof golds}`,
    );
  }
  if (predictions.length === 0) throw new TypeError('squadCorpus: expected at least one question but received none');
  let exact = 0, f1 = 0;
  predictions.forEach((prediction, i) => {
    if (typeof prediction !== 'string') throw new TypeError(`squadCorpus: expected prediction ${i} to be a string but received ${typeof prediction}`);
    exact += squadExactMatch(prediction, golds[i]);
    f1 += squadF1(prediction, golds[i]);
  });
  return { exact_match: (100 * exact) / predictions.length, f1: (100 * f1) / predictions.length, count: predictions.length };
}
