/**
 * A model's tokenizer as llama.cpp reads it from GGUF (gguf-py vocab.py SpecialVocab and LlamaHfVocab,
 * convert_hf_to_gguf.py _set_vocab_gpt2 and _set_vocab_llama_hf, llama-vocab.cpp), in two kinds:
 *
 * byte-level BPE (tokenizer.ggml.model "gpt2": GPT-2, Llama 3, Qwen2/3, SmolLM2)
 *   tokens       every id's byte-level string ("Ġthe"), holes filled with "[PAD<id>]"
 *   token_type   NORMAL 1, CONTROL 3 (special tokens), USER_DEFINED 4 (non-special added tokens), UNUSED 5 (holes)
 *   merges       "left right", in rank order
 *   pre          llama.cpp's name for the pre-tokenizer's regex ("gpt-2", "llama-bpe", "qwen2")
 *
 * SentencePiece-style BPE with byte_fallback (tokenizer.ggml.model "llama": Llama 2, Mistral, TinyLlama)
 *   tokens       the pieces as stored ("▁the", "<0x0A>"), holes "[PAD<id>]"
 *   token_type   as above, and BYTE 6 for the 256 "<0xNN>" tokens
 *   scores       float32: -(rank of the first merge that makes the token); tokens no merge makes
 *                score -(number of merges), below all of them (see mergeScores)
 *   pre          "default", as the converter writes; no merges (llama.cpp's SPM reads none)
 *   add_space_prefix  whether a "▁" goes before the text (Prepend normalizer, Metaspace prepend_scheme)
 *
 * and, for both, the special ids, add_bos_token, add_eos_token and the chat template from the loaded Tokenizer.
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

/** The vocabulary's files as read: token -> id, merges in rank order, added tokens. */
interface VocabFiles {
  vocab: Map<string, number>;
  merges: Array<readonly [string, string]>;
  added: Array<{ id: number; content: string; special: boolean }>;
  /** How llama.cpp splits and merges the text: its byte-level BPE with a pre-tokenizer, or its SentencePiece BPE. */
  kind: { model: 'gpt2'; pre: string } | { model: 'llama'; addSpacePrefix: boolean };
  /** Where llama.cpp will tokenize some texts differently from the tokenizer.json, one line each. */
  notes: string[];
}

/** SentencePiece's whitespace mark, which replaces every space before the text is merged. */
export const METASPACE = '\u2581';

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

/**
 * Whether llama.cpp's SentencePiece tokenizer should put "▁" before the text (add_space_prefix), for
 * the two ways a SentencePiece-style tokenizer.json escapes spaces, which are all llama.cpp does to a
 * text before merging (llama_escape_whitespace): Llama 2's normalizer [Prepend "▁"], Replace " " -> "▁"
 * with no pre-tokenizer, or Mistral's Metaspace pre-tokenizer ("▁", prepend_scheme always, first or
 * never) with no normalizer. Anything else (NFKC, Lowercase, Split, ...) would tokenize differently
 * in llama.cpp: an ExportError naming the key.
 * llama.cpp puts " " before the text at its start and after every special token, always (llama_vocab::
 * impl::tokenize); Prepend does that too, but Metaspace adds no "▁" to a text that starts with a space,
 * and "first" none after a special token: those texts get other ids in llama.cpp (a note says so).
 */
function spaceEscaping(file: string, json: JSONObject): { addSpacePrefix: boolean; notes: string[] } {
  const { normalizer, pre_tokenizer: pre } = json;
  const unsupported = (key: string, value: unknown): never => {
    throw new ExportError(`${file}: ${key} ${JSON.stringify(value).slice(0, 200)} is not what llama.cpp's SentencePiece tokenizer does (GGUF export reads Llama 2's [Prepend "▁", Replace " " -> "▁"] normalizer or Mistral's Metaspace pre-tokenizer)`);
  };
  const isMetaspaceReplace = (n: unknown) => isObject(n) && n.type === 'Replace' && isObject(n.pattern) && n.pattern.String === ' ' && n.content === METASPACE;
  if (pre === null || pre === undefined) {
    const steps = isObject(normalizer) && normalizer.type === 'Sequence' && Array.isArray(normalizer.normalizers) ? normalizer.normalizers as unknown[] : [normalizer];
    const prepend = steps.length === 2 && isObject(steps[0]) && steps[0].type === 'Prepend' && steps[0].prepend === METASPACE;
    if (!isMetaspaceReplace(steps[steps.length - 1]) || steps.length !== (prepend ? 2 : 1)) return unsupported('normalizer', normalizer);
    return { addSpacePrefix: prepend, notes: [] };
  }
  if (normalizer !== null && normalizer !== undefined) return unsupported('normalizer', normalizer);
  if (!isObject(pre) || pre.type !== 'Metaspace' || pre.replacement !== METASPACE) return unsupported('pre_tokenizer', pre);
  const scheme = pre.prepend_scheme;
  if (scheme === 'never') return { addSpacePrefix: false, notes: [] };
  const where = scheme === 'first' ? 'a text that starts with a space or follows a special token' : 'a text that starts with a space';
  return { addSpacePrefix: true, notes: [`${file}: pre_tokenizer Metaspace prepend_scheme "${scheme}": llama.cpp puts "▁" before ${where}, where this tokenizer does not (other ids there)`] };
}

function readTokenizerJSON(file: string): VocabFiles {
  const json = readJSONFile(file);
  if (!isObject(json) || !isObject(json.model)) throw new ExportError(`${file}: expected an object with a "model" object`);
  const model = json.model;
  if (model.type !== 'BPE') {
    throw new ExportError(`${file}: model.type ${JSON.stringify(model.type)} is not supported by GGUF export (byte-level BPE, or SentencePiece-style BPE with byte_fallback)`);
  }
  const escaping = model.byte_fallback === true ? spaceEscaping(file, json) : null;
  const kind: VocabFiles['kind'] = escaping ? { model: 'llama', addSpacePrefix: escaping.addSpacePrefix } : { model: 'gpt2', pre: preTokenizerName(file, json.pre_tokenizer) };
  const vocab = new Map(Object.entries(model.vocab as Record<string, number>));
  // HFTokenizer checked each merge: [left, right] or "left right".
  const merges = (model.merges as unknown[]).map((m) => (Array.isArray(m) ? m : String(m).split(' ')) as [string, string]);
  const added = ((json.added_tokens as unknown[] | undefined) ?? []).map((t) => {
    const o = t as { id: number; content: string; special?: boolean };
    return { id: o.id, content: o.content, special: o.special === true };
  });
  return { vocab, merges, added, kind, notes: escaping?.notes ?? [] };
}

function readVocabFiles(dir: string | null): VocabFiles {
  if (dir !== null && fs.existsSync(path.join(dir, 'tokenizer.json'))) return readTokenizerJSON(path.join(dir, 'tokenizer.json'));
  if (dir !== null && fs.existsSync(path.join(dir, 'vocab.json'))) {
    const vocabFile = path.join(dir, 'vocab.json'), mergesFile = path.join(dir, 'merges.txt');
    const merges = parseMergesTxt(fs.readFileSync(mergesFile, 'utf8'), mergesFile).pairs;
    return { vocab: parseVocabJSON(fs.readFileSync(vocabFile, 'utf8'), vocabFile), merges, added: [], kind: { model: 'gpt2', pre: 'gpt-2' }, notes: [] };
  }
  const gpt2 = gpt2FilesFromTiktoken();
  return { vocab: new Map(Object.entries(gpt2.vocab)), merges: gpt2.merges, added: [], kind: { model: 'gpt2', pre: 'gpt-2' }, notes: [] };
}

/**
 * llama.cpp's SentencePiece tokenizer (llama-vocab.cpp llm_tokenizer_spm_session) starts from the
 * text's characters and merges, again and again, the adjacent pair whose concatenation is the token of
 * highest score (the leftmost of equal ones), where BPE merges the pair of lowest merge rank. Scoring a
 * token -(rank of the first merge that makes it) makes the two orders the same; a token no merge makes
 * (characters, byte and special tokens, holes) scores -(number of merges), below every merge, so that
 * llama.cpp, which merges any pair that spells a token, joins such a pair last.
 * convert_hf_to_gguf.py's _set_vocab_llama_hf writes -1000 for every token instead (LlamaHfVocab's
 * "placeholder" get_token_score): llama.cpp then merges leftmost first, not in the merges' order, and
 * tokenizes differently from the tokenizer.json.
 */
function mergeScores(files: VocabFiles, vocabSize: number, file: string): Float32Array {
  const scores = new Float32Array(vocabSize).fill(-files.merges.length);
  const scored = new Set<number>();
  files.merges.forEach(([left, right], rank) => {
    const id = files.vocab.get(left + right);
    if (id === undefined) throw new ExportError(`${file}: model.merges[${rank}] makes ${JSON.stringify(left + right)}, which is not in model.vocab`);
    if (scored.has(id)) return;
    scored.add(id);
    scores[id] = -rank;
  });
  return scores;
}

/** SentencePiece's byte-fallback tokens: "<0x00>" ... "<0xFF>" (LlamaHfVocab.get_token_type). */
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

/**
 * The tokenizer.* KV of a GGUF file for `tokenizer` (loaded from `dir`; null: GPT-2's own encoding),
 * with `vocabSize` tokens (the model's embedding rows; ids the tokenizer lacks become unused "[PAD<id>]"),
 * and the notes on texts llama.cpp will tokenize differently.
 */
export function tokenizerKV(tokenizer: Tokenizer, dir: string | null, vocabSize: number): { kv: Map<string, GGUFValue>; notes: string[] } {
  const files = readVocabFiles(dir);
  const tokens: string[] = Array.from({ length: vocabSize }, (_, i) => `[PAD${i}]`);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.UNUSED);
  const place = (token: string, id: number, type: number) => {
    if (id >= vocabSize) throw new ExportError(`${dir ?? 'GPT-2 tokenizer'}: token ${JSON.stringify(token)} has id ${id} but the model has only ${vocabSize} embedding rows`);
    tokens[id] = token;
    types[id] = type;
  };
  const sentencePiece = files.kind.model === 'llama';
  for (const [token, id] of files.vocab) place(token, id, sentencePiece && BYTE_TOKEN.test(token) ? TOKEN_TYPE.BYTE : TOKEN_TYPE.NORMAL);
  for (const t of files.added) place(t.content, t.id, t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED);
  // vocab.json tokenizers (and GPT-2's) have no added_tokens list: their special tokens are control tokens.
  const special = tokenizer.specialTokenText;
  const idOf = (text: string | null) => (text === null ? null : files.vocab.get(text) ?? files.added.find((t) => t.content === text)?.id ?? null);
  for (const text of [special.bos_token, special.eos_token, special.unk_token, special.pad_token]) {
    const id = idOf(text);
    if (id !== null && id < vocabSize) types[id] = TOKEN_TYPE.CONTROL;
  }
  const kv = new Map<string, GGUFValue>([
    ['tokenizer.ggml.model', { type: 'string', value: files.kind.model }],
    ['tokenizer.ggml.pre', { type: 'string', value: files.kind.model === 'gpt2' ? files.kind.pre : 'default' }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
  ]);
  if (files.kind.model === 'llama') kv.set('tokenizer.ggml.scores', { type: 'f32s', value: mergeScores(files, vocabSize, path.join(dir ?? '', 'tokenizer.json')) });
  kv.set('tokenizer.ggml.token_type', { type: 'i32s', value: types });
  if (files.kind.model === 'gpt2') kv.set('tokenizer.ggml.merges', { type: 'strings', value: files.merges.map((pair) => pair.join(' ')) });
  else kv.set('tokenizer.ggml.add_space_prefix', { type: 'bool', value: files.kind.addSpacePrefix });
  kv.set('tokenizer.ggml.eos_token_id', { type: 'u32', value: tokenizer.eosTokenId });
  if (tokenizer.bosTokenId !== null) kv.set('tokenizer.ggml.bos_token_id', { type: 'u32', value: tokenizer.bosTokenId });
  for (const [key, text] of [['unknown_token_id', special.unk_token], ['padding_token_id', special.pad_token]] as const) {
    const id = idOf(text);
    if (id !== null) kv.set(`tokenizer.ggml.${key}`, { type: 'u32', value: id });
  }
  kv.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: tokenizer.addBosToken });
  // tokenizer_config.json's add_eos_token (GPT-2's vocab.json/merges.txt files have none: false, llama.cpp's default for BPE).
  kv.set('tokenizer.ggml.add_eos_token', { type: 'bool', value: tokenizer instanceof HFTokenizer && tokenizer.addEosToken });
  if (tokenizer.chatTemplate !== null) kv.set('tokenizer.chat_template', { type: 'string', value: tokenizer.chatTemplate });
  return { kv, notes: files.notes };
}
