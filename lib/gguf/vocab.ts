/**
 * A model's tokenizer as llama.cpp reads it from GGUF (convert_hf_to_gguf.py _set_vocab_gpt2,
 * gguf-py vocab.py SpecialVocab, llama-vocab.cpp): byte-level BPE only in this slice
 * (tokenizer.ggml.model "gpt2": GPT-2, Llama 3, Qwen2/3, SmolLM2), with
 *   tokens       every id's byte-level string ("Ġthe"), holes filled with "[PAD<id>]"
 *   token_type   NORMAL 1, CONTROL 3 (special tokens), USER_DEFINED 4 (non-special added tokens), UNUSED 5 (holes)
 *   merges       "left right", in rank order
 *   pre          llama.cpp's name for the pre-tokenizer's regex ("gpt-2", "llama-bpe", "qwen2")
 * and the special ids, add_bos_token, add_eos_token and the chat template from the loaded Tokenizer.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ExportError } from '../errors';
import { readJSONFile } from '../io/json';
import { gpt2FilesFromTiktoken, HFTokenizer, parseMergesTxt, parseVocabJSON, Tokenizer } from '../tokenizer';
import { GPT2_PRETOKENIZE_PATTERN } from '../tokenizer/pretokenize';
import type { GGUFValue } from './format';

export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Split regexes of byte-level pre-tokenizers and llama.cpp's names for them (llama-vocab.cpp LLAMA_VOCAB_PRE_TYPE_*). */
export const PRE_TOKENIZERS: ReadonlyArray<{ pattern: string; name: string }> = [
  { pattern: GPT2_PRETOKENIZE_PATTERN, name: 'gpt-2' },
  { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", name: 'llama-bpe' },
  { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", name: 'qwen2' },
];

type JSONObject = Record<string, unknown>;

function isObject(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The vocabulary's files as read: token -> id, merges in rank order, added tokens, pre-tokenizer name. */
interface VocabFiles {
  vocab: Map<string, number>;
  merges: string[];
  added: Array<{ id: number; content: string; special: boolean }>;
  pre: string;
}

/** llama.cpp's name for a tokenizer.json pre_tokenizer, or an ExportError naming what it is. */
function preTokenizerName(file: string, pre: unknown): string {
  const unsupported = (): never => {
    throw new ExportError(`${file}: pre_tokenizer ${JSON.stringify(pre).slice(0, 200)} has no llama.cpp pre-tokenizer name gptune knows (GGUF export supports GPT-2's, Llama 3's and Qwen2's byte-level BPE)`);
  };
  if (!isObject(pre)) return unsupported();
  if (pre.type === 'ByteLevel' && pre.use_regex !== false) return 'gpt-2';
  if (pre.type !== 'Sequence' || !Array.isArray(pre.pretokenizers) || pre.pretokenizers.length !== 2) return unsupported();
  const [split, byteLevel] = pre.pretokenizers as unknown[];
  if (!isObject(split) || split.type !== 'Split' || !isObject(byteLevel) || byteLevel.type !== 'ByteLevel' || byteLevel.use_regex !== false) return unsupported();
  const regex = isObject(split.pattern) ? split.pattern.Regex : undefined;
  return PRE_TOKENIZERS.find((p) => p.pattern === regex)?.name ?? unsupported();
}

function readTokenizerJSON(file: string): VocabFiles {
  const json = readJSONFile(file);
  if (!isObject(json) || !isObject(json.model)) throw new ExportError(`${file}: expected an object with a "model" object`);
  const model = json.model;
  if (model.type !== 'BPE' || model.byte_fallback === true) {
    throw new ExportError(`${file}: model.type ${JSON.stringify(model.type)}${model.byte_fallback === true ? ' with byte_fallback (SentencePiece-style)' : ''} is not supported by GGUF export yet (byte-level BPE only)`);
  }
  const pre = preTokenizerName(file, json.pre_tokenizer);
  const vocab = new Map(Object.entries(model.vocab as Record<string, number>));
  const merges = (model.merges as unknown[]).map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  const added = ((json.added_tokens as unknown[] | undefined) ?? []).map((t) => {
    const o = t as { id: number; content: string; special?: boolean };
    return { id: o.id, content: o.content, special: o.special === true };
  });
  return { vocab, merges, added, pre };
}

function readVocabFiles(dir: string | null): VocabFiles {
  if (dir !== null && fs.existsSync(path.join(dir, 'tokenizer.json'))) return readTokenizerJSON(path.join(dir, 'tokenizer.json'));
  if (dir !== null && fs.existsSync(path.join(dir, 'vocab.json'))) {
    const vocabFile = path.join(dir, 'vocab.json'), mergesFile = path.join(dir, 'merges.txt');
    const merges = parseMergesTxt(fs.readFileSync(mergesFile, 'utf8'), mergesFile).pairs.map((p) => p.join(' '));
    return { vocab: parseVocabJSON(fs.readFileSync(vocabFile, 'utf8'), vocabFile), merges, added: [], pre: 'gpt-2' };
  }
  const gpt2 = gpt2FilesFromTiktoken();
  return { vocab: new Map(Object.entries(gpt2.vocab)), merges: gpt2.merges.map((p) => p.join(' ')), added: [], pre: 'gpt-2' };
}

/**
 * The tokenizer.* KV of a GGUF file for `tokenizer` (loaded from `dir`; null: GPT-2's own encoding),
 * with `vocabSize` tokens (the model's embedding rows; ids the tokenizer lacks become unused "[PAD<id>]").
 */
export function tokenizerKV(tokenizer: Tokenizer, dir: string | null, vocabSize: number): Map<string, GGUFValue> {
  const files = readVocabFiles(dir);
  const tokens: string[] = Array.from({ length: vocabSize }, (_, i) => `[PAD${i}]`);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.UNUSED);
  const place = (token: string, id: number, type: number) => {
    if (id >= vocabSize) throw new ExportError(`${dir ?? 'GPT-2 tokenizer'}: token ${JSON.stringify(token)} has id ${id} but the model has only ${vocabSize} embedding rows`);
    tokens[id] = token;
    types[id] = type;
  };
  for (const [token, id] of files.vocab) place(token, id, TOKEN_TYPE.NORMAL);
  for (const t of files.added) place(t.content, t.id, t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED);
  // vocab.json tokenizers (and GPT-2's) have no added_tokens list: their special tokens are control tokens.
  const special = tokenizer.specialTokenText;
  const idOf = (text: string | null) => (text === null ? null : files.vocab.get(text) ?? files.added.find((t) => t.content === text)?.id ?? null);
  for (const text of [special.bos_token, special.eos_token, special.unk_token, special.pad_token]) {
    const id = idOf(text);
    if (id !== null && id < vocabSize) types[id] = TOKEN_TYPE.CONTROL;
  }
  const kv = new Map<string, GGUFValue>([
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: files.pre }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: types }],
    ['tokenizer.ggml.merges', { type: 'strings', value: files.merges }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: tokenizer.eosTokenId }],
  ]);
  if (tokenizer.bosTokenId !== null) kv.set('tokenizer.ggml.bos_token_id', { type: 'u32', value: tokenizer.bosTokenId });
  const pad = idOf(special.pad_token);
  if (pad !== null) kv.set('tokenizer.ggml.padding_token_id', { type: 'u32', value: pad });
  kv.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: tokenizer.addBosToken });
  // tokenizer_config.json's add_eos_token (GPT-2's vocab.json/merges.txt files have none: false, llama.cpp's default for BPE).
  kv.set('tokenizer.ggml.add_eos_token', { type: 'bool', value: tokenizer instanceof HFTokenizer && tokenizer.addEosToken });
  if (tokenizer.chatTemplate !== null) kv.set('tokenizer.chat_template', { type: 'string', value: tokenizer.chatTemplate });
  return kv;
}
