/** Tokenizer loading: a model folder's own vocab.json + merges.txt, else GPT-2's encoding. */
import * as fs from 'fs';
import * as path from 'path';
import { BPETokenizer } from './bpe';
import { gpt2Tokenizer } from './tiktoken';
import type { Tokenizer } from './types';

export { BPETokenizer, type BPEFiles } from './bpe';
export { parseMergesTxt, parseVocabJSON, type MergesFile } from './files';
export { GPT2_PRETOKENIZE_PATTERN, pretokenizeWithRegex, forEachPretoken } from './pretokenize';
export { TiktokenGPT2Tokenizer, gpt2Tokenizer, gpt2FilesFromTiktoken, deriveMergesFromRanks } from './tiktoken';
export { END_OF_TEXT, type Tokenizer } from './types';

/**
 * The tokenizer for a model folder: its vocab.json + merges.txt when it has them, GPT-2's standard
 * encoding when it has neither (or no folder is given). One file without the other is an error,
 * as is a folder holding only tokenizer.json (Hugging Face's fast-tokenizer format, not read here):
 * silently falling back to GPT-2's vocabulary could feed a model the wrong ids.
 */
export function loadTokenizer(dir?: string): Tokenizer {
  if (dir === undefined) return gpt2Tokenizer();
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`tokenizer: expected a folder but ${dir} ${fs.existsSync(dir) ? 'is a file' : 'does not exist'}`);
  }
  const hasVocab = fs.existsSync(path.join(dir, 'vocab.json'));
  const hasMerges = fs.existsSync(path.join(dir, 'merges.txt'));
  if (hasVocab && hasMerges) return BPETokenizer.fromFolder(dir);
  if (hasVocab || hasMerges) {
    throw new Error(`${dir}: has ${hasVocab ? 'vocab.json' : 'merges.txt'} but not ${hasVocab ? 'merges.txt' : 'vocab.json'}; a GPT-2 BPE tokenizer needs both`);
  }
  if (fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    throw new Error(`${dir}: has tokenizer.json but no vocab.json + merges.txt; gptune reads GPT-2 tokenizers from vocab.json + merges.txt (save them with tokenizer.save_pretrained from transformers' GPT2Tokenizer)`);
  }
  return gpt2Tokenizer();
}
