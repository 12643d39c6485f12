/**
 * Learning a byte-level BPE vocabulary from text (Sennrich et al. 2016, as GPT-2 applies it to
 * bytes): the text is cut into words with GPT-2's pre-tokeniser, every word starts as its UTF-8
 * bytes, and the most frequent adjacent pair of symbols (counted over all words, weighted by how
 * often each word occurs) is merged into a new symbol, again and again, until the vocabulary has
 * the size asked for. The merges, in the order they were learned, are merges.txt; the symbols are
 * vocab.json (256 bytes, then the merged symbols, then <|endoftext|>), the files BPETokenizer
 * (bpe.ts) reads. The demo trains its tokenizer with it.
 *
 * Ties (pairs with the same count) go to the smaller (left id, right id), so the result does not
 * depend on Map iteration order. trainBPENaive recounts every pair before each merge: the
 * reference the incremental trainBPE is tested against.
 */
import { BYTE_TO_CHAR } from './byte_level';
import { PairHeap } from './pair_heap';
import { forEachPretoken } from './pretokenize';
import { END_OF_TEXT } from './types';

export interface BPETrainOptions {
  /** Size of the vocabulary: 256 bytes + merged symbols + <|endoftext|>. At least 257. */
  vocabSize: number;
  /** Stop early when the most frequent pair occurs fewer times than this (default 2). */
  minPairCount?: number;
}

export interface TrainedBPE {
  /** Byte-level token string -> id (bytes 0..255 are ids 0..255; <|endoftext|> is the last id). */
  vocab: Map<string, number>;
  /** [left, right] in the byte-level alphabet, in the order learned (rank order). */
  merges: Array<[string, string]>;
  /** Distinct pre-tokenised words the merges were learned from, and their total count. */
  uniqueWords: number;
  totalWords: number;
}

/** Pair key: left id * 2^21 + right id (ids stay below 2^21, so keys are exact small doubles). */
const PAIR_SHIFT = 2 ** 21;
const pairKey = (left: number, right: number) => left * PAIR_SHIFT + right;

/** Word -> occurrences, over the words of GPT-2's pre-tokeniser. */
export function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    // The document separator is a special token, never part of a learned symbol.
    for (const part of text.split(END_OF_TEXT)) {
      forEachPretoken(part, (start, end) => {
        const word = part.slice(start, end);
        counts.set(word, (counts.get(word) ?? 0) + 1);
      });
    }
  }
  return counts;
}

function checkOptions(options: BPETrainOptions): number {
  if (!Number.isSafeInteger(options.vocabSize) || options.vocabSize < 257) {
    throw new RangeError(`trainBPE: vocabSize must be a whole number >= 257 (256 bytes + <|endoftext|>) but received ${options.vocabSize}`);
  }
  return options.minPairCount ?? 2;
}

/** The words as byte-id sequences, in first-seen order, with their counts. */
function initialSymbols(counts: Map<string, number>): { words: number[][]; freqs: number[] } {
  const encoder = new TextEncoder();
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [word, count] of counts) {
    words.push(Array.from(encoder.encode(word)));
    freqs.push(count);
  }
  return { words, freqs };
}

/** Grows the symbol table; a merge whose string already exists reuses that symbol's id. */
class SymbolTable {
  readonly strings: string[] = BYTE_TO_CHAR.slice();
  private readonly ids = new Map<string, number>(BYTE_TO_CHAR.map((c, i) => [c, i]));
  readonly merges: Array<[string, string]> = [];

  get size(): number {
    return this.strings.length;
  }

  /** Records the merge of (left, right) and returns the id of the merged symbol. */
  merge(left: number, right: number): number {
    const l = this.strings[left], r = this.strings[right];
    this.merges.push([l, r]);
    const merged = l + r;
    let id = this.ids.get(merged);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(merged);
      this.ids.set(merged, id);
    }
    return id;
  }

  result(uniqueWords: number, totalWords: number): TrainedBPE {
    const vocab = new Map(this.ids);
    vocab.set(END_OF_TEXT, this.strings.length);
    return { vocab, merges: this.merges.slice(), uniqueWords, totalWords };
  }
}

/** Replaces every non-overlapping (left, right), left to right, with `merged`. */
function mergeWord(symbols: readonly number[], left: number, right: number, merged: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
      out.push(merged);
      i++;
    } else {
      out.push(symbols[i]);
    }
  }
  return out;
}

/** (count desc, key asc): the first pair is the one to merge. */
function better(countA: number, keyA: number, countB: number, keyB: number): boolean {
  return countA > countB || (countA === countB && keyA < keyB);
}

/**
 * The reference: before each merge every pair of every word is counted again. O(merges x text);
 * fine for tests, too slow for a 10 MB corpus.
 */
export function trainBPENaive(texts: Iterable<string>, options: BPETrainOptions): TrainedBPE {
  const minPairCount = checkOptions(options);
  const counts = countWords(texts);
  const { words, freqs } = initialSymbols(counts);
  const table = new SymbolTable();
  while (table.size < options.vocabSize - 1) {
    const pairCounts = new Map<number, number>();
    words.forEach((symbols, w) => {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = pairKey(symbols[i], symbols[i + 1]);
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + freqs[w]);
      }
    });
    let bestKey = -1, bestCount = 0;
    for (const [key, count] of pairCounts) if (better(count, key, bestCount, bestKey)) [bestKey, bestCount] = [key, count];
    if (bestKey < 0 || bestCount < minPairCount) break;
    const left = Math.floor(bestKey / PAIR_SHIFT), right = bestKey % PAIR_SHIFT;
    const merged = table.merge(left, right);
    for (let w = 0; w < words.length; w++) words[w] = mergeWord(words[w], left, right, merged);
  }
  return table.result(words.length, freqs.reduce((a, b) => a + b, 0));
}

/**
 * The incremental trainer: pair counts and, for each pair, the words it occurs in are kept up to
 * date, so a merge touches only the words holding the merged pair. Same merges as trainBPENaive.
 */
export function trainBPE(texts: Iterable<string>, options: BPETrainOptions): TrainedBPE {
  const minPairCount = checkOptions(options);
  const counts = countWords(texts);
  const { words, freqs } = initialSymbols(counts);
  const pairCounts = new Map<number, number>();
  // pair -> words that held it when it was last added; may include words that no longer do
  // (checked when used), which is cheaper than removing them on every merge.
  const wordsWithPair = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1, touched: Set<number> | null) => {
    const symbols = words[w];
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = pairKey(symbols[i], symbols[i + 1]);
      const count = (pairCounts.get(key) ?? 0) + sign * freqs[w];
      if (count === 0) pairCounts.delete(key);
      else pairCounts.set(key, count);
      if (sign > 0) {
        let set = wordsWithPair.get(key);
        if (!set) wordsWithPair.set(key, (set = new Set()));
        set.add(w);
      }
      touched?.add(key);
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1, null);
  // Lazy deletion: a pair's count changes by pushing the new count; entries out of date are skipped.
  const heap = new PairHeap(better);
  for (const [key, count] of pairCounts) heap.push(count, key);

  const table = new SymbolTable();
  while (table.size < options.vocabSize - 1 && heap.size > 0) {
    const count = heap.topA(), key = heap.topB();
    heap.pop();
    if (pairCounts.get(key) !== count) continue; // stale entry: the current count was pushed too
    if (count < minPairCount) break;
    const left = Math.floor(key / PAIR_SHIFT), right = key % PAIR_SHIFT;
    const merged = table.merge(left, right);
    const touched = new Set<number>();
    for (const w of wordsWithPair.get(key) ?? []) {
      const next = mergeWord(words[w], left, right, merged);
      if (next.length === words[w].length) continue; // no longer holds the pair
      addPairs(w, -1, touched);
      words[w] = next;
      addPairs(w, 1, touched);
    }
    wordsWithPair.delete(key);
    for (const k of touched) {
      const c = pairCounts.get(k);
      if (c !== undefined) heap.push(c, k);
    }
  }
  return table.result(words.length, freqs.reduce((a, b) => a + b, 0));
}

/** vocab.json and merges.txt contents, as Hugging Face's GPT-2 tokenizer files. */
export function bpeFiles(trained: TrainedBPE): { 'vocab.json': string; 'merges.txt': string } {
  const entries = [...trained.vocab.entries()].sort((a, b) => a[1] - b[1]);
  const vocab = '{' + entries.map(([token, id]) => `${JSON.stringify(token)}: ${id}`).join(', ') + '}\n';
  const merges = ['#version: 0.2', ...trained.merges.map(([l, r]) => `${l} ${r}`)].join('\n') + '\n';
  return { 'vocab.json': vocab, 'merges.txt': merges };
}
