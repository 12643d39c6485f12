/**
 * Compact token storage and streaming tokenisation of plain text.
 *
 * A TokenStore keeps ids in fixed-size typed-array chunks: 2 bytes per token when the vocabulary
 * fits in 16 bits (GPT-2's 50257 does), 4 otherwise; growing never copies what is stored. A 1 GB
 * corpus (~250M GPT-2 tokens) takes ~500 MB, and its text is never held whole.
 *
 * Streaming: the file is decoded in chunks and each piece is cut at a safe boundary before it is
 * encoded, so that encoding piece by piece gives exactly the ids of encoding the whole text. A cut
 * between a non-whitespace character and a whitespace character is safe for GPT-2's
 * pre-tokeniser: no pre-token crosses it (letters/digits/punctuation runs stop at whitespace; a
 * whitespace run starts there whatever came before; the optional leading space of " word" is
 * after the cut) and the special token <|endoftext|> holds no whitespace. BPE merges never cross a
 * pre-token, so the ids on both sides are unchanged. Tested against whole-file encoding. Tokenizers
 * without this property (tokenizer.encodesInPieces false: Llama 3's regex, SentencePiece) are given
 * each document whole.
 */
import * as fs from 'fs';
import type { Tokenizer } from '../tokenizer';
import { forEachTextChunk, READ_CHUNK_BYTES } from './read';

/** Tokens per chunk: 1M tokens = 2-4 MB per allocation. */
const STORE_CHUNK = 1 << 20;

/** Read access to a run of token ids (a TokenStore, or a range of one). */
export interface TokenSequence {
  readonly length: number;
  /** Copies tokens [start, start + count) into out at outOffset. */
  copyTo(start: number, count: number, out: Int32Array, outOffset?: number): void;
}

/** Tokens [start, end) of a sequence, without copying them. */
export class TokenRange implements TokenSequence {
  readonly length: number;
  constructor(private readonly base: TokenSequence, private readonly start: number, end: number) {
    if (start < 0 || end < start || end > base.length) throw new RangeError(`TokenRange: [${start}, ${end}) is outside [0, ${base.length})`);
    this.length = end - start;
  }

  copyTo(start: number, count: number, out: Int32Array, outOffset = 0): void {
    if (start < 0 || count < 0 || start + count > this.length) throw new RangeError(`TokenRange.copyTo: [${start}, ${start + count}) is outside [0, ${this.length})`);
    this.base.copyTo(this.start + start, count, out, outOffset);
  }
}

export class TokenStore implements TokenSequence {
  private readonly chunks: Array<Uint16Array | Int32Array> = [];
  private used = 0; // tokens in the last chunk
  private readonly wide: boolean;
  private readonly chunkSize: number;

  /** vocabSize decides the width: ids < 65536 fit in a Uint16Array. */
  constructor(vocabSize: number, chunkSize = STORE_CHUNK) {
    this.wide = vocabSize > 65536;
    this.chunkSize = chunkSize;
  }

  get length(): number {
    return this.chunks.length === 0 ? 0 : (this.chunks.length - 1) * this.chunkSize + this.used;
  }

  get bytesPerToken(): number {
    return this.wide ? 4 : 2;
  }

  push(id: number): void {
    if (this.chunks.length === 0 || this.used === this.chunkSize) {
      this.chunks.push(this.wide ? new Int32Array(this.chunkSize) : new Uint16Array(this.chunkSize));
      this.used = 0;
    }
    this.chunks[this.chunks.length - 1][this.used++] = id;
  }

  append(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) this.push(ids[i]);
  }

  get(index: number): number {
    return this.chunks[Math.floor(index / this.chunkSize)][index % this.chunkSize];
  }

  /** Copies tokens [start, start + count) into out at outOffset. */
  copyTo(start: number, count: number, out: Int32Array, outOffset = 0): void {
    if (start < 0 || count < 0 || start + count > this.length) throw new RangeError(`TokenStore.copyTo: [${start}, ${start + count}) is outside [0, ${this.length})`);
    let copied = 0;
    while (copied < count) {
      const index = start + copied;
      const chunk = this.chunks[Math.floor(index / this.chunkSize)];
      const from = index % this.chunkSize;
      const n = Math.min(count - copied, this.chunkSize - from);
      out.set(chunk.subarray(from, from + n), outOffset + copied);
      copied += n;
    }
  }

  /** Tokens [start, end) as a new Int32Array. */
  slice(start = 0, end = this.length): Int32Array {
    const out = new Int32Array(end - start);
    this.copyTo(start, end - start, out);
    return out;
  }

  static from(ids: ArrayLike<number>, vocabSize: number): TokenStore {
    const store = new TokenStore(vocabSize);
    store.append(ids);
    return store;
  }
}

const whitespace = /^\p{White_Space}$/u;
function isWhitespace(c: string): boolean {
  return whitespace.test(c);
}

/**
 * The largest index i such that text[0, i) can be encoded on its own: text[i] is whitespace and
 * text[i-1] is not (see the module comment), or 0 when there is none at or after `from`.
 */
export function safeCutIndex(text: string, from = 1): number {
  for (let i = text.length - 1; i >= Math.max(from, 1); i--) {
    // Every White_Space code point is in the BMP, so one code unit is one character here.
    if (isWhitespace(text[i]) && !isWhitespace(text[i - 1])) {
      // A low surrogate at i-1 belongs to a non-whitespace astral character: still safe.
      return i;
    }
  }
  return 0;
}

/**
 * Encodes a stream of text pieces, calling onIds with the ids of each encoded part. Pieces are
 * buffered until a safe cut; at most one piece plus the carried tail is held at a time.
 */
export class StreamingEncoder {
  private carry = '';
  private seconds = 0;
  private tokens = 0;
  private chars = 0;

  constructor(private readonly tokenizer: Tokenizer, private readonly onIds: (ids: number[]) => void) {}

  write(piece: string): void {
    if (!this.tokenizer.encodesInPieces) {
      this.carry += piece; // the whole document is encoded at end()
      return;
    }
    const text = this.carry + piece;
    // The carry has no safe cut of its own, so only cuts in the new piece need looking for.
    const cut = safeCutIndex(text, this.carry.length);
    if (cut === 0) {
      this.carry = text;
      return;
    }
    this.encode(text.slice(0, cut));
    this.carry = text.slice(cut);
  }

  /** Encodes what is left; call once at the end of a document. */
  end(): void {
    if (this.carry.length > 0) this.encode(this.carry);
    this.carry = '';
  }

  private encode(text: string): void {
    const started = process.hrtime.bigint();
    const ids = this.tokenizer.encode(text);
    this.seconds += Number(process.hrtime.bigint() - started) / 1e9;
    this.tokens += ids.length;
    this.chars += text.length;
    this.onIds(ids);
  }

  /** Time spent in tokenizer.encode, tokens produced and characters encoded so far. */
  get stats(): { seconds: number; tokens: number; chars: number } {
    return { seconds: this.seconds, tokens: this.tokens, chars: this.chars };
  }
}

export interface TextTokenizeStats {
  documents: number;
  /** Tokens of each document (without separators). */
  documentTokens: number[];
  tokens: number;
  bytes: number;
  /** Seconds spent in the tokenizer, and the whole read + tokenise. */
  encodeSeconds: number;
  seconds: number;
}

/**
 * Tokenises .txt files into a TokenStore, streaming. Several files (a folder's documents) are joined
 * by the EOS token, like "<|endoftext|>".join(documents); one file gives exactly tokenizer.encode(file).
 */
export function tokenizeTextFiles(files: readonly string[], tokenizer: Tokenizer, store: TokenStore, chunkBytes = READ_CHUNK_BYTES): TextTokenizeStats {
  const started = process.hrtime.bigint();
  const stats: TextTokenizeStats = { documents: 0, documentTokens: [], tokens: 0, bytes: 0, encodeSeconds: 0, seconds: 0 };
  files.forEach((file, i) => {
    if (i > 0) store.push(tokenizer.eosTokenId);
    let documentTokens = 0;
    const encoder = new StreamingEncoder(tokenizer, (ids) => {
      store.append(ids);
      documentTokens += ids.length;
    });
    stats.bytes += fs.statSync(file).size;
    forEachTextChunk(file, (piece) => encoder.write(piece), chunkBytes);
    encoder.end();
    stats.documents++;
    stats.documentTokens.push(documentTokens);
    stats.encodeSeconds += encoder.stats.seconds;
  });
  stats.tokens = store.length;
  stats.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return stats;
}
