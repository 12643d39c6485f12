/**
 * GPT-2's published encoding, from the rank table that ships with js-tiktoken (the same 50257
 * tokens and ids as Hugging Face's gpt2 vocab.json/merges.txt). Used when a model folder has no
 * tokenizer files of its own.
 *
 * Two forms:
 *  - gpt2Tokenizer(): gptune's BPETokenizer built from vocab/merges derived from the rank table.
 *    About 10x faster than js-tiktoken's encoder (which keys every lookup by a joined byte
 *    string), and it pre-tokenises exactly like HF/tiktoken-Python (see pretokenize.ts). Default.
 *  - TiktokenGPT2Tokenizer: js-tiktoken's own encoder behind the Tokenizer interface; the
 *    independent reference the tests compare gpt2Tokenizer() against.
 */
import { getEncoding, type Tiktoken } from 'js-tiktoken';
import { BPETokenizer } from './bpe';
import { bytesToByteLevel } from './byte_level';
import { END_OF_TEXT, gpt2SpecialTokens, type SpecialTokenText, type Tokenizer } from './types';

const GPT2_VOCAB_SIZE = 50257;
const GPT2_END_OF_TEXT_ID = 50256;
/** Id of "!" in GPT-2, a one-byte ASCII token; see TiktokenGPT2Tokenizer.decode(). */
const EXCLAMATION_MARK_ID = 0;

export class TiktokenGPT2Tokenizer implements Tokenizer {
  readonly vocabSize = GPT2_VOCAB_SIZE;
  readonly eosTokenId = GPT2_END_OF_TEXT_ID;
  readonly name = 'gpt2 (js-tiktoken encoder)';
  readonly bosTokenId: number | null;
  readonly addBosToken: boolean;
  readonly stopTokenIds: readonly number[];
  readonly encodesInPieces: boolean;
  readonly chatTemplate: string | null;
  readonly specialTokenText: SpecialTokenText;
  private readonly encoding: Tiktoken = getEncoding('gpt2');

  constructor() {
    ({ encodesInPieces: this.encodesInPieces, stopTokenIds: this.stopTokenIds, bosTokenId: this.bosTokenId, addBosToken: this.addBosToken, chatTemplate: this.chatTemplate, specialTokenText: this.specialTokenText } = gpt2SpecialTokens(GPT2_END_OF_TEXT_ID));
  }

  encode(text: string): number[] {
    // Allow <|endoftext|> in the text: documents in training data are separated by it.
    return this.encoding.encode(text, [END_OF_TEXT]);
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= GPT2_VOCAB_SIZE) {
        throw new Error(`${this.name}: cannot decode token id ${id}; expected an integer in [0, ${GPT2_VOCAB_SIZE - 1}]`);
      }
    }
    // js-tiktoken decodes with a default TextDecoder, which drops a leading byte-order mark; a
    // leading "!" keeps a BOM that starts the text, and is removed again.
    return this.encoding.decode([EXCLAMATION_MARK_ID, ...ids]).slice(1);
  }
}

/**
 * js-tiktoken's compact rank table: lines "<ignored> <first rank> <base64 token> <base64 token> ...",
 * consecutive tokens having consecutive ranks. Returns rank -> token bytes as a latin1 string
 * (one char per byte), a cheap Map key.
 */
export function parseTiktokenRankTable(table: string): string[] {
  const tokens: string[] = [];
  for (const line of table.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const firstRank = Number(fields[1]);
    for (let i = 2; i < fields.length; i++) tokens[firstRank + i - 2] = Buffer.from(fields[i], 'base64').toString('latin1');
  }
  return tokens;
}

/** tiktoken's byte-pair merge of `bytes` restricted to tokens of rank below `maxRank`. */
function mergeBelowRank(bytes: string, rankOf: Map<string, number>, maxRank: number): string[] {
  const parts = bytes.split('');
  for (;;) {
    let best = -1;
    let bestRank = maxRank;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = rankOf.get(parts[i] + parts[i + 1]);
      if (rank !== undefined && rank < bestRank) { bestRank = rank; best = i; }
    }
    if (best < 0) return parts;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
}

/**
 * merges.txt from a tiktoken rank table. tiktoken merges by the rank of the concatenated bytes,
 * merges.txt lists pairs. The token of rank r (>= 256) is made by the merge that rank-based BPE,
 * allowed only ranks below r, leaves undone on the token's own bytes: exactly two parts remain,
 * its left and right halves. `tokens` is rank -> bytes (latin1); returns byte-level pairs in rank order.
 */
export function deriveMergesFromRanks(tokens: readonly string[]): Array<[string, string]> {
  const rankOf = new Map(tokens.map((bytes, rank) => [bytes, rank]));
  const toByteLevel = (latin1: string) => bytesToByteLevel(Buffer.from(latin1, 'latin1'));
  const merges: Array<[string, string]> = [];
  for (let rank = 256; rank < tokens.length; rank++) {
    const parts = mergeBelowRank(tokens[rank], rankOf, rank);
    if (parts.length !== 2) {
      throw new Error(`tiktoken rank table: token of rank ${rank} is not the merge of two lower-ranked tokens (${parts.length} parts)`);
    }
    merges.push([toByteLevel(parts[0]), toByteLevel(parts[1])]);
  }
  return merges;
}

/** GPT-2's vocab.json and merges.txt contents, rebuilt from js-tiktoken's gpt2 rank table. */
export function gpt2FilesFromTiktoken(): { vocab: Record<string, number>; merges: Array<[string, string]> } {
  // The CommonJS build exports the object itself; its .d.ts describes an ES default export.
  const rankModule = require('js-tiktoken/ranks/gpt2') as { bpe_ranks?: string; default?: { bpe_ranks: string } };
  const table = rankModule.bpe_ranks ?? rankModule.default?.bpe_ranks;
  if (typeof table !== 'string') throw new Error('js-tiktoken/ranks/gpt2: expected an object with a bpe_ranks string; is js-tiktoken ^1.0 installed?');
  const tokens = parseTiktokenRankTable(table);
  if (tokens.length !== GPT2_END_OF_TEXT_ID) {
    throw new Error(`js-tiktoken/ranks/gpt2: expected ${GPT2_END_OF_TEXT_ID} ranked tokens but found ${tokens.length}`);
  }
  const vocab: Record<string, number> = {};
  tokens.forEach((bytes, rank) => { vocab[bytesToByteLevel(Buffer.from(bytes, 'latin1'))] = rank; });
  vocab[END_OF_TEXT] = GPT2_END_OF_TEXT_ID;
  return { vocab, merges: deriveMergesFromRanks(tokens) };
}

let gpt2Singleton: BPETokenizer | undefined;

/** GPT-2's tokenizer, built once per process (~1 s) and shared: its only state is a word cache. */
export function gpt2Tokenizer(): BPETokenizer {
  if (!gpt2Singleton) {
    gpt2Singleton = new BPETokenizer({ ...gpt2FilesFromTiktoken(), vocabName: 'gpt2 vocab (js-tiktoken)', mergesName: 'gpt2 merges (derived)', name: 'gpt2' });
  }
  return gpt2Singleton;
}
