/**
 * chrF (Popović 2015) and chrF++ (Popović 2017) as sacrebleu 2.x computes them (sacrebleu/metrics/chrf.py).
 *
 * Defaults = sacrebleu's CHRF(): character n-grams up to order 6, no word n-grams (wordOrder 2 is
 * chrF++), beta 2, case kept, whitespace removed before the character n-grams, and effective-order
 * averaging (eps_smoothing false): precision and recall are averaged over the orders that both the
 * hypothesis and the reference have n-grams of, and the F-beta is taken of those averages.
 * epsSmoothing true averages the per-order F-beta scores instead (chrF++.py, NLTK, Moses).
 *
 * Corpus level: each segment keeps the statistics of its best-F reference, the statistics are
 * summed over segments, and the score is computed once from the sums. Characters are Unicode code
 * points, as Python strings index them; whitespace is Python's str.split() set.
 *
 * References come as parallel streams, as for corpusBleu: referenceStreams[k][i] is the k-th
 * reference of segment i; null removes that reference (sacrebleu's None), while '' is kept.
 */
import { formatSacrebleuSignature } from './bleu';
import { pySplitWhitespace } from './python_text';

export interface ChrfOptions {
  /** Character n-gram order (default 6). */
  charOrder?: number;
  /** Word n-gram order (default 0; 2 = chrF++). */
  wordOrder?: number;
  /** Recall is beta times as important as precision (default 2). */
  beta?: number;
  /** Lowercase hypotheses and references first (default false). */
  lowercase?: boolean;
  /** Keep whitespace inside the character n-grams (default false). */
  whitespace?: boolean;
  /** Average per-order F scores with epsilon smoothing instead of effective order (default false). */
  epsSmoothing?: boolean;
}

export interface ChrfScore {
  /** sacrebleu's CHRFScore name: 'chrF2', 'chrF2++' (one '+' per word order). */
  name: string;
  /** 0..100. */
  score: number;
  char_order: number;
  word_order: number;
  beta: number;
  /** sacrebleu's signature, e.g. 'nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.3'. */
  signature: string;
}

type ResolvedChrfOptions = Required<ChrfOptions>;

// string.punctuation, which chrF++'s word splitter peels off word edges.
const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
const EPS = 1e-16;

function resolve(options: ChrfOptions): ResolvedChrfOptions {
  const o = {
    charOrder: options.charOrder ?? 6,
    wordOrder: options.wordOrder ?? 0,
    beta: options.beta ?? 2,
    lowercase: options.lowercase ?? false,
    whitespace: options.whitespace ?? false,
    epsSmoothing: options.epsSmoothing ?? false,
  };
  if (!Number.isInteger(o.charOrder) || o.charOrder < 1) throw new RangeError(`chrF: expected charOrder to be an integer >= 1 but received ${o.charOrder}`);
  if (!Number.isInteger(o.wordOrder) || o.wordOrder < 0) throw new RangeError(`chrF: expected wordOrder to be an integer >= 0 but received ${o.wordOrder}`);
  if (!Number.isFinite(o.beta) || o.beta < 0) throw new RangeError(`chrF: expected beta to be a number >= 0 but received ${o.beta}`);
  return o;
}

function countNgrams(items: readonly string[], n: number, joiner: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= items.length; i++) {
    const key = items.slice(i, i + n).join(joiner);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/**
 * sacrebleu's CHRF._remove_punctuation: split on whitespace, then one punctuation character is
 * peeled off the end of a word, or else off its start ('(hi)' -> '(hi', ')', as sacrebleu #124 notes).
 */
export function chrfWords(sentence: string): string[] {
  const words: string[] = [];
  for (const word of pySplitWhitespace(sentence)) {
    const chars = Array.from(word);
    if (chars.length === 1) words.push(word);
    else if (PUNCTUATION.has(chars[chars.length - 1])) words.push(chars.slice(0, -1).join(''), chars[chars.length - 1]);
    else if (PUNCTUATION.has(chars[0])) words.push(chars[0], chars.slice(1).join(''));
    else words.push(word);
  }
  return words;
}

/** The n-gram counts of every order: characters 1..charOrder, then words 1..wordOrder. */
function allNgrams(sentence: string, o: ResolvedChrfOptions): Map<string, number>[] {
  const text = o.lowercase ? sentence.toLowerCase() : sentence;
  const chars = Array.from(o.whitespace ? text : pySplitWhitespace(text).join(''));
  const result: Map<string, number>[] = [];
  for (let n = 1; n <= o.charOrder; n++) result.push(countNgrams(chars, n, ''));
  if (o.wordOrder > 0) {
    const words = chrfWords(text);
    for (let n = 1; n <= o.wordOrder; n++) result.push(countNgrams(words, n, ' '));
  }
  return result;
}

/** [hypothesis n-grams, reference n-grams, matches] per order, flattened (3 x orders). */
function matchStatistics(hypothesis: Map<string, number>[], reference: Map<string, number>[]): number[] {
  const stats: number[] = [];
  hypothesis.forEach((hyp, n) => {
    const ref = reference[n];
    let hypCount = 0, matches = 0, refCount = 0;
    for (const [ngram, count] of hyp) {
      hypCount += count;
      const r = ref.get(ngram);
      if (r !== undefined) matches += Math.min(count, r);
    }
    for (const count of ref.values()) refCount += count;
    // sacrebleu counts no hypothesis n-grams of an order the reference has none of.
    stats.push(ref.size > 0 ? hypCount : 0, refCount, matches);
  });
  return stats;
}

/** sacrebleu's CHRF._compute_f_score: the score (0..100) from summed statistics. */
export function chrfFromStatistics(statistics: readonly number[], options: ChrfOptions = {}): number {
  const o = resolve(options);
  const orders = o.charOrder + o.wordOrder;
  if (statistics.length !== 3 * orders) throw new RangeError(`chrF: expected ${3 * orders} statistics (3 per order) but received ${statistics.length}`);
  const factor = o.beta ** 2;
  let epsScore = 0, avgPrecision = 0, avgRecall = 0, effectiveOrder = 0;
  for (let i = 0; i < orders; i++) {
    const [nHyp, nRef, nMatch] = statistics.slice(3 * i, 3 * i + 3);
    const precision = nHyp > 0 ? nMatch / nHyp : EPS;
    const recall = nRef > 0 ? nMatch / nRef : EPS;
    const denominator = factor * precision + recall;
    epsScore += denominator > 0 ? ((1 + factor) * precision * recall) / denominator : EPS;
    if (nHyp > 0 && nRef > 0) {
      avgPrecision += precision;
      avgRecall += recall;
      effectiveOrder++;
    }
  }
  if (o.epsSmoothing) return (100 * epsScore) / orders;
  if (effectiveOrder === 0) return 0;
  avgPrecision /= effectiveOrder;
  avgRecall /= effectiveOrder;
  if (avgPrecision + avgRecall === 0) return 0;
  // In sacrebleu's operation order, so the last bit agrees too.
  return 100 * (((1 + factor) * avgPrecision * avgRecall) / (factor * avgPrecision + avgRecall));
}

/** sacrebleu's CHRFSignature for these options and reference count. */
export function chrfSignature(nrefs: number | 'var', options: ChrfOptions = {}): string {
  const o = resolve(options);
  return formatSacrebleuSignature(nrefs, [
    ['case', o.lowercase ? 'lc' : 'mixed'],
    ['eff', o.epsSmoothing ? 'no' : 'yes'],
    ['nc', o.charOrder],
    ['nw', o.wordOrder],
    ['space', o.whitespace ? 'yes' : 'no'],
  ]);
}

/** Corpus chrF over parallel reference streams, like sacrebleu.corpus_chrf / CHRF().corpus_score. */
export function corpusChrf(
  hypotheses: readonly string[],
  referenceStreams: ReadonlyArray<ReadonlyArray<string | null>>,
  options: ChrfOptions = {},
): ChrfScore {
  const o = resolve(options);
  if (!Array.isArray(hypotheses) || hypotheses.length === 0) throw new TypeError('corpusChrf: expected hypotheses to be a non-empty array of strings');
  if (!Array.isArray(referenceStreams) || referenceStreams.length === 0) throw new TypeError('corpusChrf: expected at least one reference stream');
  referenceStreams.forEach((stream, k) => {
    if (!Array.isArray(stream) || stream.length !== hypotheses.length) {
      throw new RangeError(`corpusChrf: expected referenceStreams[${k}] to have ${hypotheses.length} entries (one per hypothesis) but received ${Array.isArray(stream) ? stream.length : typeof stream}`);
    }
  });
  const orders = o.charOrder + o.wordOrder;
  const totals = new Array<number>(3 * orders).fill(0);
  const referenceCounts = new Set<number>();
  hypotheses.forEach((hypothesis, segment) => {
    if (typeof hypothesis !== 'string') throw new TypeError(`corpusChrf: expected hypotheses[${segment}] to be a string but received ${typeof hypothesis}`);
    const references: string[] = [];
    referenceStreams.forEach((stream, k) => {
      const reference = stream[segment];
      if (reference === null || reference === undefined) return;
      if (typeof reference !== 'string') throw new TypeError(`corpusChrf: expected referenceStreams[${k}][${segment}] to be a string or null but received ${typeof reference}`);
      references.push(reference);
    });
    if (references.length === 0) throw new RangeError(`corpusChrf: segment ${segment} has no reference (every stream has null there)`);
    referenceCounts.add(references.length);
    const hypothesisNgrams = allNgrams(hypothesis, o);
    // The best-F reference; the first on ties (sacrebleu keeps the first strictly better one).
    let best: number[] = [], bestF = -1;
    for (const reference of references) {
      const stats = matchStatistics(hypothesisNgrams, allNgrams(reference, o));
      const f = chrfFromStatistics(stats, o);
      if (f > bestF) {
        bestF = f;
        best = stats;
      }
    }
    best.forEach((value, i) => (totals[i] += value));
  });
  const nrefs = referenceCounts.size === 1 ? [...referenceCounts][0] : 'var';
  return {
    name: `chrF${o.beta}${'+'.repeat(o.wordOrder)}`,
    score: chrfFromStatistics(totals, o),
    char_order: o.charOrder,
    word_order: o.wordOrder,
    beta: o.beta,
    signature: chrfSignature(nrefs, o),
  };
}

/** Sentence chrF of one hypothesis against its references, like sacrebleu.sentence_chrf. */
export function sentenceChrf(hypothesis: string, references: readonly string[], options: ChrfOptions = {}): ChrfScore {
  if (!Array.isArray(references) || references.length === 0) throw new TypeError('sentenceChrf: expected a non-empty array of references');
  return corpusChrf([hypothesis], references.map((reference) => [reference]), options);
}
