/**
 * Tokenizer loading: a model folder's tokenizer.json (Hugging Face's fast-tokenizer format, through
 * @huggingface/tokenizers), else its vocab.json + merges.txt (GPT-2's files), else GPT-2's encoding.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BPETokenizer } from './bpe';
import { HFTokenizer } from './hf';
import { gpt2Tokenizer } from './tiktoken';
import type { Tokenizer } from './types';

export { BPETokenizer, type BPEFiles } from './bpe';
export { trainBPE, trainBPENaive, bpeFiles, countWords, type TrainedBPE, type BPETrainOptions } from './bpe_trainer';
export { HFTokenizer } from './hf';
export { DecodeStream } from './stream';
export { parseMergesTxt, parseVocabJSON, type MergesFile } from './files';
export { GPT2_PRETOKENIZE_PATTERN, pretokenizeWithRegex, forEachPretoken } from './pretokenize';
export { TiktokenGPT2Tokenizer, gpt2Tokenizer, gpt2FilesFromTiktoken, deriveMergesFromRanks } from './tiktoken';
export { END_OF_TEXT, encodeSequence, type SpecialTokenText, type Tokenizer } from './types';

/**
 * The tokenizer for a model folder: its tokenizer.json when it has one (as transformers'
 * AutoTokenizer prefers the fast tokenizer), else its vocab.json + merges.txt, else GPT-2's standard
 * encoding (also when no folder is given). vocab.json without merges.txt (or the reverse) and no
 * tokenizer.json is an error: silently falling back to GPT-2's vocabulary could feed a model the wrong ids.
 */
export function loadTokenizer(dir?: string): Tokenizer {
  if (dir === undefined) return gpt2Tokenizer();
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`tokenizer: expected a folder but ${dir} ${fs.existsSync(dir) ? 'is a file' : 'does not exist'}`);
  }
  if (fs.existsSync(path.join(dir, 'tokenizer.json'))) return HFTokenizer.fromFolder(dir);
  const hasVocab = fs.existsSync(path.join(dir, 'vocab.json'));
  const hasMerges = fs.existsSync(path.join(dir, 'merges.txt'));
  if (hasVocab && hasMerges) return BPETokenizer.fromFolder(dir);
  if (hasVocab || hasMerges) {
    throw new Error(`${dir}: has ${hasVocab ? 'vocab.json' : 'merges.txt'} but not ${hasVocab ? 'merges.txt' : 'vocab.json'}; a GPT-2 BPE tokenizer needs both (or a tokenizer.json)`);
  }
  return gpt2Tokenizer();
}
