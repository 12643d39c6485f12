/**
 * Rebuild GPT-2's vocab.json and merges.txt from js-tiktoken's rank table, independently of
 * lib/tokenizer: tiktoken stores only "token bytes -> rank" and merges by the rank of the
 * concatenated bytes, while merges.txt lists pairs. A token of rank r was created by the merge that
 * the rank-based BPE, restricted to ranks below r, performs last on the token's own bytes; that
 * leaves exactly two parts, which are the merge's left and right halves.
 */
import gpt2Ranks = require('js-tiktoken/ranks/gpt2');
import { bytesToByteLevel } from '../../lib/tokenizer/byte_level';

export interface DerivedGPT2Files {
  vocab: Record<string, number>;
  merges: Array<[string, string]>;
  /** rank -> token bytes, as a latin1 string (one char per byte). */
  tokenBytes: string[];
}

/** js-tiktoken's compact table: lines "<ignored> <first rank> <base64 token> <base64 token> ...". */
function parseRankTable(table: string): string[] {
  const tokens: string[] = [];
  for (const line of table.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const firstRank = Number(fields[1]);
    fields.slice(2).forEach((b64, i) => { tokens[firstRank + i] = Buffer.from(b64, 'base64').toString('latin1'); });
  }
  return tokens;
}

/** tiktoken's byte-pair merge of `bytes`, using only tokens whose rank is below `maxRank`. */
function rankLimitedMerge(bytes: string, rankOf: Map<string, number>, maxRank: number): string[] {
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

let cached: DerivedGPT2Files | undefined;

export function deriveGPT2Files(): DerivedGPT2Files {
  if (cached) return cached;
  const tokenBytes = parseRankTable((gpt2Ranks as { bpe_ranks: string }).bpe_ranks);
  const rankOf = new Map(tokenBytes.map((bytes, rank) => [bytes, rank]));
  const toByteLevel = (latin1: string) => bytesToByteLevel(Buffer.from(latin1, 'latin1'));
  const merges: Array<[string, string]> = [];
  for (let rank = 256; rank < tokenBytes.length; rank++) {
    const parts = rankLimitedMerge(tokenBytes[rank], rankOf, rank);
    if (parts.length !== 2) throw new Error(`rank ${rank}: expected the restricted merge to leave 2 parts but got ${parts.length}`);
    merges.push([toByteLevel(parts[0]), toByteLevel(parts[1])]);
  }
  const vocab: Record<string, number> = {};
  tokenBytes.forEach((bytes, rank) => { vocab[toByteLevel(bytes)] = rank; });
  vocab['<|endoftext|>'] = 50256;
  cached = { vocab, merges, tokenBytes };
  return cached;
}
