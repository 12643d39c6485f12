/**
 * BLEU as sacrebleu 2.x computes it (Post, 2018, "A Call for Clarity in Reporting BLEU Scores").
 *
 * corpusBleu() defaults = sacrebleu's BLEU(): tokenize '13a', smooth_method 'exp', max n-gram
 * order 4, effective_order false, lowercase false, brevity penalty against the closest
 * reference length (ties -> the shorter reference).
 * sentenceBleu() defaults = sacrebleu's recommended sentence-level setting: the same but with
 * effective_order true.
 *
 * References come as parallel streams, exactly like sacrebleu's API:
 *   hypotheses       = [h0, h1, h2]
 *   referenceStreams = [[r0a, r1a, r2a],   // first reference for every segment
 *                       [r0b, r1b, r2b]]   // second reference for every segment
 * A reference that is '' or null is skipped for that segment (variable number of references).
 *
 * Scores are on sacrebleu's 0..100 scale; precisions are percentages too.
 */
import { pyRstrip, pySplitWhitespace } from './python_text';

export type BleuTokenizer = '13a' | 'none' | 'char' | 'intl';
export type BleuSmoothMethod = 'exp' | 'none' | 'floor' | 'add-k';

export interface BleuOptions {
  /** Tokenizer applied to hypotheses and references (default '13a', as sacrebleu). */
  tokenize?: BleuTokenizer;
  /** 'exp' (default; NIST/mteval smoothing), 'none', 'floor' or 'add-k'. */
  smoothMethod?: BleuSmoothMethod;
  /** Value for 'floor' (default 0.1) and 'add-k' (default 1); ignored by the others. */
  smoothValue?: number;
  /** Highest n-gram order (default 4). */
  maxNgramOrder?: number;
  /** Average only over n-gram orders the hypothesis has at least one of (corpus default false). */
  effectiveOrder?: boolean;
  /** Lowercase everything before tokenizing (default false). */
  lowercase?: boolean;
}

/** The result, with sacrebleu's BLEUScore field names. */
export interface BleuScore {
  /** BLEU on the 0..100 scale. */
  score: number;
  /** Clipped n-gram matches per order, 1..maxNgramOrder. */
  counts: number[];
  /** Hypothesis n-grams per order, 1..maxNgramOrder. */
  totals: number[];
  /** n-gram precisions in percent, after smoothing. */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Total hypothesis length in tokens. */
  sys_len: number;
  /** Total effective (closest) reference length in tokens. */
  ref_len: number;
}

/** The sacrebleu release whose numbers and signature format gptune reproduces (the `version:` of a signature). */
export const SACREBLEU_VERSION = '2.4.3';

/**
 * sacrebleu's Signature.format(): `key:value` pairs joined by '|', the global nrefs first, then the
 * metric's own keys in order, and version always last. nrefs is 'var' when segments have different
 * numbers of references.
 */
export function formatSacrebleuSignature(nrefs: number | 'var', metricPairs: ReadonlyArray<[string, string | number]>): string {
  return [['nrefs', nrefs], ...metricPairs, ['version', SACREBLEU_VERSION]].map(([k, v]) => `${k}:${v}`).join('|');
}

const DEFAULT_MAX_NGRAM_ORDER = 4;
// sacrebleu's my_log(0): a very negative floor instead of -Infinity.
const LOG_OF_ZERO = -9999999999;
const DEFAULT_SMOOTH_VALUE: Record<BleuSmoothMethod, number | null> = {
  none: null,
  floor: 0.1,
  'add-k': 1,
  exp: null,
};

// ---------------------------------------------------------------------------------------
// Tokenizers

// mteval-v13a's language-dependent rules, in order (pattern, replacement). They run on the
// line padded with one space on each side.
const TOKENIZE_13A_RULES: Array<[RegExp, string]> = [
  // Every ASCII punctuation or symbol except ' - . , and the space itself becomes its own token:
  // the ranges { to ~, [ to `, space to &, ( to +, : to @, and /.
  [/([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40\x2F])/gu, ' $1 '],
  // Period and comma are split off unless preceded by a digit...
  [/([^0-9])([.,])/gu, '$1 $2 '],
  // ...or unless followed by a digit (so "1,000.5" survives, "end." does not).
  [/([.,])([^0-9])/gu, ' $1 $2'],
  // A dash directly after a digit is split off ("2-3" -> "2 - 3"); "a-b" stays one token.
  [/([0-9])(-)/gu, '$1 $2 '],
];

/** sacrebleu's '13a' tokenizer (mteval-v13a.pl). Returns the tokens joined by single spaces. */
export function tokenize13a(line: string): string {
  let text = line
    .replaceAll('<skipped>', '')
    .replaceAll('-\n', '')
    .replaceAll('\n', ' ')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>');
  text = ` ${text} `;
  for (const [pattern, replacement] of TOKENIZE_13A_RULES) text = text.replace(pattern, replacement);
  return pySplitWhitespace(text).join(' ');
}

// mteval-v14 "international" rules on Unicode categories: punctuation (P) is split off unless
// it sits between digits (N) on the relevant side; symbols (S) always are.
const TOKENIZE_INTL_RULES: Array<[RegExp, string]> = [
  [/(\P{N})(\p{P})/gu, '$1 $2 '],
  [/(\p{P})(\P{N})/gu, ' $1 $2'],
  [/(\p{S})/gu, ' $1 '],
];

/** sacrebleu's 'intl' tokenizer (mteval-v14 --international-tokenization). */
export function tokenizeIntl(line: string): string {
  let text = line;
  for (const [pattern, replacement] of TOKENIZE_INTL_RULES) text = text.replace(pattern, replacement);
  return pySplitWhitespace(text).join(' ');
}

/** sacrebleu's 'char' tokenizer: every code point (spaces included) separated by a space. */
export function tokenizeChar(line: string): string {
  return Array.from(line).join(' ');
}

function tokenizerFor(name: BleuTokenizer): (line: string) => string {
  switch (name) {
    case '13a':
      return tokenize13a;
    case 'intl':
      return tokenizeIntl;
    case 'char':
      return tokenizeChar;
    case 'none':
      return (line) => line;
    default:
      throw new Error(
        `bleu: expected tokenize to be one of '13a', 'intl', 'char', 'none' but received ${JSON.stringify(name)}`,
      );
  }
}

// ---------------------------------------------------------------------------------------
// Sufficient statistics

interface ResolvedOptions {
  tokenize: BleuTokenizer;
  smoothMethod: BleuSmoothMethod;
  smoothValue: number | null;
  maxNgramOrder: number;
  effectiveOrder: boolean;
  lowercase: boolean;
}

function resolveOptions(options: BleuOptions, defaultEffectiveOrder: boolean): ResolvedOptions {
  const smoothMethod = options.smoothMethod ?? 'exp';
  if (!(smoothMethod in DEFAULT_SMOOTH_VALUE)) {
    throw new Error(
      `bleu: expected smoothMethod to be one of 'exp', 'none', 'floor', 'add-k' but received ${JSON.stringify(smoothMethod)}`,
    );
  }
  const maxNgramOrder = options.maxNgramOrder ?? DEFAULT_MAX_NGRAM_ORDER;
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) {
    throw new Error(`bleu: expected maxNgramOrder to be an integer >= 1 but received ${maxNgramOrder}`);
  }
  const smoothValue = options.smoothValue ?? DEFAULT_SMOOTH_VALUE[smoothMethod];
  if (smoothValue !== null && !Number.isFinite(smoothValue)) {
    throw new Error(`bleu: expected smoothValue to be a finite number but received ${options.smoothValue}`);
  }
  const tokenize = options.tokenize ?? '13a';
  tokenizerFor(tokenize); // validates the name
  return {
    tokenize,
    smoothMethod,
    smoothValue,
    maxNgramOrder,
    effectiveOrder: options.effectiveOrder ?? defaultEffectiveOrder,
    lowercase: options.lowercase ?? false,
  };
}

/** Counts of every n-gram, one map per order (index 0 = unigrams); keys are space-joined tokens. */
type NgramCounts = Array<Map<string, number>>;

function countNgrams(tokens: string[], maxOrder: number): NgramCounts {
  const countsByOrder: NgramCounts = [];
  for (let n = 1; n <= maxOrder; n++) {
    const counts = new Map<string, number>();
    for (let i = 0; i + n <= tokens.length; i++) {
      // Tokens never contain whitespace (they come from a whitespace split), so joining with a
      // space is unambiguous.
      const key = tokens.slice(i, i + n).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    countsByOrder.push(counts);
  }
  return countsByOrder;
}

/** Same preprocessing as sacrebleu's BLEU._preprocess_segment: lowercase?, rstrip, tokenize. */
function preprocess(segment: string, opts: ResolvedOptions): string[] {
  const text = opts.lowercase ? segment.toLowerCase() : segment;
  return pySplitWhitespace(tokenizerFor(opts.tokenize)(pyRstrip(text)));
}

/** sacrebleu picks the reference length closest to the hypothesis length; ties go to the shorter. */
function closestReferenceLength(hypothesisLength: number, referenceLengths: number[]): number {
  let closestDiff = -1;
  let closestLength = -1;
  for (const refLength of referenceLengths) {
    const diff = Math.abs(hypothesisLength - refLength);
    if (closestDiff === -1 || diff < closestDiff) {
      closestDiff = diff;
      closestLength = refLength;
    } else if (diff === closestDiff && refLength < closestLength) {
      closestLength = refLength;
    }
  }
  return closestLength;
}

interface CorpusStatistics {
  sysLen: number;
  refLen: number;
  correct: number[]; // (maxOrder)
  total: number[]; // (maxOrder)
}

function segmentStatistics(
  hypothesis: string,
  references: string[],
  opts: ResolvedOptions,
  into: CorpusStatistics,
): void {
  const maxOrder = opts.maxNgramOrder;
  // Reference n-gram counts are merged by taking, for each n-gram, its largest count in any one
  // reference: that is the clipping ceiling for the hypothesis.
  const referenceCeilings: NgramCounts = Array.from({ length: maxOrder }, () => new Map<string, number>());
  const referenceLengths: number[] = [];
  for (const reference of references) {
    const tokens = preprocess(reference, opts);
    referenceLengths.push(tokens.length);
    const counts = countNgrams(tokens, maxOrder);
    for (let n = 0; n < maxOrder; n++) {
      for (const [ngram, count] of counts[n]) {
        const ceiling = referenceCeilings[n].get(ngram) ?? 0;
        if (count > ceiling) referenceCeilings[n].set(ngram, count);
      }
    }
  }

  const hypothesisTokens = preprocess(hypothesis, opts);
  const hypothesisCounts = countNgrams(hypothesisTokens, maxOrder);
  into.sysLen += hypothesisTokens.length;
  into.refLen += closestReferenceLength(hypothesisTokens.length, referenceLengths);
  for (let n = 0; n < maxOrder; n++) {
    for (const [ngram, count] of hypothesisCounts[n]) {
      into.total[n] += count;
      const ceiling = referenceCeilings[n].get(ngram);
      if (ceiling !== undefined) into.correct[n] += Math.min(count, ceiling);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Score from statistics

/**
 * BLEU from its sufficient statistics, line for line the arithmetic of sacrebleu's
 * BLEU.compute_bleu (including its quirks: no matches at all -> 0 without smoothing; 'add-k'
 * adds k to counts and totals of orders >= 2, and the returned counts/totals include it).
 * Defaults here are compute_bleu's own: smoothMethod 'none', effectiveOrder false.
 */
export function bleuFromStatistics(
  correct: readonly number[],
  total: readonly number[],
  sysLen: number,
  refLen: number,
  options: Omit<BleuOptions, 'tokenize' | 'lowercase'> = {},
): BleuScore {
  const smoothMethod = options.smoothMethod ?? 'none';
  if (!(smoothMethod in DEFAULT_SMOOTH_VALUE)) {
    throw new Error(
      `bleuFromStatistics: expected smoothMethod to be one of 'exp', 'none', 'floor', 'add-k' but received ${JSON.stringify(smoothMethod)}`,
    );
  }
  const smoothValue = options.smoothValue ?? DEFAULT_SMOOTH_VALUE[smoothMethod] ?? 0;
  const maxOrder = options.maxNgramOrder ?? DEFAULT_MAX_NGRAM_ORDER;
  const effectiveOrder = options.effectiveOrder ?? false;
  if (correct.length !== maxOrder || total.length !== maxOrder) {
    throw new Error(
      `bleuFromStatistics: expected correct and total to have maxNgramOrder=${maxOrder} entries but received ${correct.length} and ${total.length}`,
    );
  }
  const counts = correct.slice();
  const totals = total.slice();

  let bp = 1.0;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0.0;

  const precisions = new Array<number>(maxOrder).fill(0);
  // sacrebleu #141: with no matching n-gram of any order the score is 0 whatever the smoothing.
  if (!counts.some((c) => c !== 0)) {
    return { score: 0, counts, totals, precisions, bp, sys_len: sysLen, ref_len: refLen };
  }

  let expSmoothing = 1;
  let orderUsed = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smoothMethod === 'add-k' && n > 1) {
      counts[n - 1] += smoothValue;
      totals[n - 1] += smoothValue;
    }
    if (totals[n - 1] === 0) break;
    if (effectiveOrder) orderUsed = n;
    if (counts[n - 1] === 0) {
      if (smoothMethod === 'exp') {
        // NIST geometric smoothing: each further order without matches gets half the credit.
        expSmoothing *= 2;
        precisions[n - 1] = 100 / (expSmoothing * totals[n - 1]);
      } else if (smoothMethod === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / totals[n - 1];
      }
    } else {
      precisions[n - 1] = (100 * counts[n - 1]) / totals[n - 1];
    }
  }

  let logSum = 0;
  for (let n = 0; n < orderUsed; n++) logSum += precisions[n] === 0 ? LOG_OF_ZERO : Math.log(precisions[n]);
  const score = bp * Math.exp(logSum / orderUsed);
  return { score, counts, totals, precisions, bp, sys_len: sysLen, ref_len: refLen };
}

// ---------------------------------------------------------------------------------------
// Public entry points

/**
 * Corpus BLEU over parallel streams, like sacrebleu.corpus_bleu(hypotheses, referenceStreams).
 * Every stream must have one entry per hypothesis (sacrebleu's Python API silently truncates to
 * the shortest; we refuse instead). Each segment needs at least one non-empty reference.
 */
export function corpusBleu(
  hypotheses: readonly string[],
  referenceStreams: ReadonlyArray<ReadonlyArray<string | null>>,
  options: BleuOptions = {},
): BleuScore {
  const opts = resolveOptions(options, false);
  if (!Array.isArray(hypotheses) || hypotheses.length === 0) {
    throw new Error('corpusBleu: expected hypotheses to be a non-empty array of strings but received an empty or non-array value');
  }
  if (!Array.isArray(referenceStreams) || referenceStreams.length === 0) {
    throw new Error('corpusBleu: expected referenceStreams to be a non-empty array of reference streams but received none');
  }
  referenceStreams.forEach((stream, streamIndex) => {
    if (!Array.isArray(stream) || stream.length !== hypotheses.length) {
      throw new Error(
        `corpusBleu: expected referenceStreams[${streamIndex}] to have ${hypotheses.length} entries (one per hypothesis) but received ${Array.isArray(stream) ? stream.length : typeof stream}`,
      );
    }
  });

  const stats: CorpusStatistics = {
    sysLen: 0,
    refLen: 0,
    correct: new Array<number>(opts.maxNgramOrder).fill(0),
    total: new Array<number>(opts.maxNgramOrder).fill(0),
  };
  hypotheses.forEach((hypothesis, segment) => {
    if (typeof hypothesis !== 'string') {
      throw new Error(`corpusBleu: expected hypotheses[${segment}] to be a string but received ${typeof hypothesis}`);
    }
    const references: string[] = [];
    referenceStreams.forEach((stream, streamIndex) => {
      const reference = stream[segment];
      if (reference === null || reference === undefined || reference === '') return;
      if (typeof reference !== 'string') {
        throw new Error(
          `corpusBleu: expected referenceStreams[${streamIndex}][${segment}] to be a string or null but received ${typeof reference}`,
        );
      }
      references.push(reference);
    });
    if (references.length === 0) {
      throw new Error(`corpusBleu: expected at least one non-empty reference for segment ${segment} but all were empty or null`);
    }
    segmentStatistics(hypothesis, references, opts, stats);
  });

  return bleuFromStatistics(stats.correct, stats.total, stats.sysLen, stats.refLen, {
    smoothMethod: opts.smoothMethod,
    smoothValue: opts.smoothValue ?? undefined,
    maxNgramOrder: opts.maxNgramOrder,
    effectiveOrder: opts.effectiveOrder,
  });
}

/**
 * Sentence BLEU of one hypothesis against one or more references, like sacrebleu's
 * BLEU(effective_order=True).sentence_score(hypothesis, references).
 */
export function sentenceBleu(hypothesis: string, references: readonly string[], options: BleuOptions = {}): BleuScore {
  if (typeof hypothesis !== 'string') {
    throw new Error(`sentenceBleu: expected hypothesis to be a string but received ${typeof hypothesis}`);
  }
  if (!Array.isArray(references) || references.length === 0 || typeof references[0] !== 'string') {
    throw new Error('sentenceBleu: expected references to be a non-empty array of strings');
  }
  return corpusBleu([hypothesis], references.map((reference) => [reference]), {
    ...options,
    effectiveOrder: options.effectiveOrder ?? true,
  });
}
