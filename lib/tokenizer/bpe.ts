/**
 * GPT-2's byte-level BPE tokenizer, built from a Hugging Face vocab.json + merges.txt pair.
 *
 * encode(text):
 *   1. split out the special token "<|endoftext|>" (-> eosTokenId);
 *   2. pre-tokenise the rest with GPT-2's regex into "words" (" hello", "'s", " 123", "\n\n", ...);
 *   3. each word -> its UTF-8 bytes -> one symbol (token id) per byte;
 *   4. repeatedly merge the adjacent pair with the lowest merges.txt line number (rank), all its
 *      occurrences left to right, until no adjacent pair is in merges.txt.
 * This is the algorithm of GPT-2's original encoder.py and HF's GPT2Tokenizer; ids match them.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BYTE_TO_CHAR, byteLevelToBytes } from './byte_level';
import { MAX_TOKEN_ID, parseMergesTxt, parseVocabJSON } from './files';
import { PairHeap } from './pair_heap';
import { forEachPretoken } from './pretokenize';
import { END_OF_TEXT, gpt2SpecialTokens, type SpecialTokenText, type Tokenizer } from './types';

/** Words at least this long use the O(n log n) heap merge; shorter ones the simple rescan. */
const HEAP_MERGE_MIN_SYMBOLS = 48;

/** Forget the word cache when it grows past this many words (bounded memory on 100 MB corpora). */
const WORD_CACHE_LIMIT = 500_000;

// Module-level copies of globals used in hot loops: under jest's vm sandbox every global lookup
// goes through an interceptor, which made the rescan merge 10x slower there.
const imul = Math.imul;
const isInteger = Number.isInteger;

const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export interface BPEFiles {
  /** vocab.json contents: byte-level token string -> id. */
  vocab: Map<string, number> | Record<string, number>;
  /** merges.txt lines after the header, each [left, right] in the byte-level alphabet, rank order. */
  merges: Array<[string, string]>;
  /** Line of each merge in merges.txt, for error messages (default: rank + 2, after "#version"). */
  mergeLineNumbers?: number[];
  /** Names used in error messages. */
  vocabName?: string;
  mergesName?: string;
  /** Shown by Tokenizer.name. */
  name?: string;
}

/**
 * (left id, right id) -> merge rank, as an open-addressing hash table in typed arrays. A Map keyed
 * by left * 2^21 + right works too but is 2-3x slower: such keys are heap numbers, not small ints.
 */
class PairRankTable {
  private readonly mask: number;
  private readonly lefts: Int32Array; // -1 marks an empty slot
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;

  constructor(expectedEntries: number) {
    let capacity = 16;
    while (capacity < expectedEntries * 2) capacity *= 2; // load factor <= 1/2 keeps probes short
    this.mask = capacity - 1;
    this.lefts = new Int32Array(capacity).fill(-1);
    this.rights = new Int32Array(capacity);
    this.ranks = new Int32Array(capacity);
  }

  private slotOf(left: number, right: number): number {
    return (imul(left, 0x9e3779b1) ^ imul(right + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  }

  /** The rank of (left, right), or -1 if the pair is not a merge. */
  get(left: number, right: number): number {
    for (let slot = this.slotOf(left, right) & this.mask; ; slot = (slot + 1) & this.mask) {
      const l = this.lefts[slot];
      if (l === -1) return -1;
      if (l === left && this.rights[slot] === right) return this.ranks[slot];
    }
  }

  set(left: number, right: number, rank: number): void {
    for (let slot = this.slotOf(left, right) & this.mask; ; slot = (slot + 1) & this.mask) {
      if (this.lefts[slot] === -1 || (this.lefts[slot] === left && this.rights[slot] === right)) {
        this.lefts[slot] = left;
        this.rights[slot] = right;
        this.ranks[slot] = rank;
        return;
      }
    }
  }
}

/** (rank, position) pairs come out by rank, then position: merges of one rank left to right. */
function lowerRankFirst(rankA: number, positionA: number, rankB: number, positionB: number): boolean {
  return rankA < rankB || (rankA === rankB && positionA < positionB);
}

export class BPETokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly bosTokenId: number | null;
  readonly addBosToken: boolean;
  readonly stopTokenIds: readonly number[];
  readonly encodesInPieces: boolean;
  readonly chatTemplate: string | null;
  readonly specialTokenText: SpecialTokenText;
  readonly name: string;

  /** byte -> id of the single-byte token. */
  private readonly byteTokenIds = new Int32Array(256);
  /** (left id, right id) -> merge rank (its line index in merges.txt). */
  private readonly pairRank: PairRankTable;
  /** rank -> left id, right id, merged id. */
  private readonly mergeLeft: Int32Array;
  private readonly mergeRight: Int32Array;
  private readonly mergeResult: Int32Array;
  /** id -> the bytes it stands for (undefined for ids vocab.json does not use). */
  private readonly tokenBytes: Array<Uint8Array | undefined>;
  /** Special token text -> id; found in the input text before pre-tokenisation. */
  private readonly specialTokens: Map<string, number>;
  private readonly wordCache = new Map<string, number[]>();

  constructor(files: BPEFiles) {
    const vocabName = files.vocabName ?? 'vocab.json';
    const mergesName = files.mergesName ?? 'merges.txt';
    this.name = files.name ?? `bpe (${vocabName})`;

    // A Map, not an object: vocab["constructor"] on a plain object finds Object.prototype's.
    const vocab = files.vocab instanceof Map ? files.vocab : new Map(Object.entries(files.vocab));
    // id -> token, rejecting two tokens with one id (decode would be ambiguous).
    const idToToken: string[] = [];
    let maxId = -1;
    for (const [token, id] of vocab) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
        throw new Error(`${vocabName}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; expected an integer in [0, ${MAX_TOKEN_ID}]`);
      }
      if (idToToken[id] !== undefined) {
        throw new Error(`${vocabName}: tokens ${JSON.stringify(idToToken[id])} and ${JSON.stringify(token)} both have id ${id}`);
      }
      idToToken[id] = token;
      if (id > maxId) maxId = id;
    }
    this.vocabSize = maxId + 1;

    for (let byte = 0; byte < 256; byte++) {
      const id = vocab.get(BYTE_TO_CHAR[byte]);
      if (id === undefined) {
        throw new Error(`${vocabName}: missing the byte-level token ${JSON.stringify(BYTE_TO_CHAR[byte])} for byte 0x${byte.toString(16).padStart(2, '0')}; a GPT-2 byte-level vocabulary needs all 256`);
      }
      this.byteTokenIds[byte] = id;
    }

    const eos = vocab.get(END_OF_TEXT);
    if (eos === undefined) throw new Error(`${vocabName}: missing the token ${END_OF_TEXT}, which gptune uses to separate documents`);
    this.eosTokenId = eos;
    ({ encodesInPieces: this.encodesInPieces, stopTokenIds: this.stopTokenIds, bosTokenId: this.bosTokenId, addBosToken: this.addBosToken, chatTemplate: this.chatTemplate, specialTokenText: this.specialTokenText } = gpt2SpecialTokens(eos));
    this.specialTokens = new Map([[END_OF_TEXT, eos]]);

    this.tokenBytes = idToToken.map((token) => (token === undefined ? undefined : byteLevelToBytes(token) ?? new Uint8Array(Buffer.from(token, 'utf8'))));

    const mergeCount = files.merges.length;
    this.pairRank = new PairRankTable(mergeCount);
    this.mergeLeft = new Int32Array(mergeCount);
    this.mergeRight = new Int32Array(mergeCount);
    this.mergeResult = new Int32Array(mergeCount);
    const lineNumber = (rank: number) => files.mergeLineNumbers?.[rank] ?? rank + 2;
    files.merges.forEach(([left, right], rank) => {
      const where = `${mergesName} line ${lineNumber(rank)} ("${left} ${right}")`;
      const leftId = vocab.get(left);
      const rightId = vocab.get(right);
      const mergedId = vocab.get(left + right);
      if (leftId === undefined) throw new Error(`${where}: token ${JSON.stringify(left)} is not in ${vocabName}`);
      if (rightId === undefined) throw new Error(`${where}: token ${JSON.stringify(right)} is not in ${vocabName}`);
      if (mergedId === undefined) throw new Error(`${where}: merged token ${JSON.stringify(left + right)} is not in ${vocabName}`);
      const earlier = this.pairRank.get(leftId, rightId);
      if (earlier >= 0) throw new Error(`${where}: duplicate of line ${lineNumber(earlier)}`);
      this.pairRank.set(leftId, rightId, rank);
      this.mergeLeft[rank] = leftId;
      this.mergeRight[rank] = rightId;
      this.mergeResult[rank] = mergedId;
    });
  }

  /** Build from a folder's vocab.json and merges.txt (Hugging Face's GPT-2 tokenizer files). */
  static fromFolder(dir: string): BPETokenizer {
    const vocabPath = path.join(dir, 'vocab.json');
    const mergesPath = path.join(dir, 'merges.txt');
    const merges = parseMergesTxt(readText(mergesPath), mergesPath);
    return new BPETokenizer({
      vocab: parseVocabJSON(readText(vocabPath), vocabPath),
      merges: merges.pairs,
      mergeLineNumbers: merges.lineNumbers,
      vocabName: vocabPath,
      mergesName: mergesPath,
      name: `bpe:${dir}`,
    });
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    let start = 0;
    for (;;) {
      // The next special token, if any; text between special tokens is encoded as ordinary text.
      let nextAt = -1;
      let nextToken = '';
      for (const token of this.specialTokens.keys()) {
        const at = text.indexOf(token, start);
        if (at >= 0 && (nextAt < 0 || at < nextAt)) { nextAt = at; nextToken = token; }
      }
      const end = nextAt < 0 ? text.length : nextAt;
      if (end > start) this.appendOrdinary(text.slice(start, end), ids);
      if (nextAt < 0) return ids;
      ids.push(this.specialTokens.get(nextToken)!);
      start = nextAt + nextToken.length;
    }
  }

  /**
   * Encode treating "<|endoftext|>" as ordinary text (like GPT-2's encoder.py and tiktoken's
   * encode_ordinary): for text that must not be able to inject a document boundary.
   */
  encodeOrdinary(text: string): number[] {
    const ids: number[] = [];
    this.appendOrdinary(text, ids);
    return ids;
  }

  private appendOrdinary(text: string, out: number[]): void {
    const cache = this.wordCache;
    forEachPretoken(text, (start, end) => {
      const word = text.slice(start, end);
      let ids = cache.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(word);
        if (cache.size >= WORD_CACHE_LIMIT) cache.clear();
        cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    });
  }

  /** One pre-tokenised word -> token ids. */
  encodeWord(word: string): number[] {
    const symbols = this.initialSymbols(word);
    if (symbols.length < 2) return symbols;
    return symbols.length >= HEAP_MERGE_MIN_SYMBOLS ? this.mergeWithHeap(symbols) : this.mergeByRescan(symbols);
  }

  /** The word's UTF-8 bytes as single-byte token ids. */
  private initialSymbols(word: string): number[] {
    const symbols: number[] = [];
    let ascii = true;
    for (let i = 0; i < word.length; i++) {
      const code = word.charCodeAt(i);
      if (code >= 0x80) { ascii = false; break; }
      symbols.push(this.byteTokenIds[code]);
    }
    if (ascii) return symbols;
    // Lone surrogates (invalid UTF-16) become U+FFFD's bytes, as in any UTF-8 encoder.
    const bytes = Buffer.from(word, 'utf8');
    symbols.length = 0;
    for (let i = 0; i < bytes.length; i++) symbols.push(this.byteTokenIds[bytes[i]]);
    return symbols;
  }


  /**
   * Reference merge, exactly GPT-2's encoder.py: find the lowest-ranked adjacent pair, merge every
   * occurrence of it left to right, repeat. O(n^2) map lookups for an n-byte word, fine for words.
   */
  mergeByRescan(initial: readonly number[]): number[] {
    let symbols = initial.slice();
    while (symbols.length > 1) {
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.pairRank.get(symbols[i], symbols[i + 1]);
        if (rank >= 0 && rank < bestRank) bestRank = rank;
      }
      if (bestRank === Infinity) break;
      const left = this.mergeLeft[bestRank];
      const right = this.mergeRight[bestRank];
      const merged: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          merged.push(this.mergeResult[bestRank]);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols;
  }

  /**
   * The same result in O(n log n) for long words (a 1 MB run of letters would take hours above):
   * symbols form a linked list, candidate pairs sit in a heap ordered by (rank, position). All
   * occurrences of one rank are merged before pairs they create are pushed, which keeps the result
   * identical to mergeByRescan even for merges.txt files whose ranks are not in creation order.
   */
  mergeWithHeap(initial: readonly number[]): number[] {
    const n = initial.length;
    const symbol = Int32Array.from(initial); // -1 once merged into its left neighbour
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }

    const heap = new PairHeap(lowerRankFirst);
    for (let i = 0; i + 1 < n; i++) {
      const rank = this.pairRank.get(symbol[i], symbol[i + 1]);
      if (rank >= 0) heap.push(rank, i);
    }
    const createdAt: number[] = []; // positions whose pairs changed during the current rank
    while (heap.size > 0) {
      const rank = heap.topA();
      createdAt.length = 0;
      while (heap.size > 0 && heap.topA() === rank) {
        const i = heap.topB();
        heap.pop();
        const j = symbol[i] < 0 ? -1 : next[i];
        // Stale entries: the left symbol was absorbed, or the pair at i is no longer this merge.
        if (j < 0 || symbol[i] !== this.mergeLeft[rank] || symbol[j] !== this.mergeRight[rank]) continue;
        symbol[i] = this.mergeResult[rank];
        symbol[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (prev[i] >= 0) createdAt.push(prev[i]);
        createdAt.push(i);
      }
      for (const i of createdAt) {
        if (symbol[i] < 0 || next[i] < 0) continue;
        const newRank = this.pairRank.get(symbol[i], symbol[next[i]]);
        if (newRank >= 0) heap.push(newRank, i);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(symbol[i]);
    return out;
  }

  decode(ids: number[]): string {
    let length = 0;
    for (const id of ids) {
      const bytes = isInteger(id) ? this.tokenBytes[id] : undefined;
      if (bytes === undefined) {
        throw new Error(`${this.name}: cannot decode token id ${id}; expected an id in ${this.name}'s vocabulary (0..${this.vocabSize - 1})`);
      }
      length += bytes.length;
    }
    const all = new Uint8Array(length);
    let offset = 0;
    for (const id of ids) {
      // A plain loop: tokens are a few bytes, too short for set() to pay off.
      const bytes = this.tokenBytes[id]!;
      for (let k = 0; k < bytes.length; k++) all[offset++] = bytes[k];
    }
    return utf8Decoder.decode(all);
  }
}

function readText(filePath: string): string {
  try {
    return fs.readFileSync(filePath, 'utf8');
  } catch (err) {
    throw new Error(`${filePath}: cannot read tokenizer file (${(err as Error).message})`);
  }
}
