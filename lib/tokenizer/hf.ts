/**
 * Hugging Face fast-tokenizer folders: tokenizer.json (+ tokenizer_config.json, special_tokens_map.json,
 * chat_template.jinja), encoded and decoded by @huggingface/tokenizers, the maintained pure-JS port of
 * HF tokenizers. What this file adds around the library:
 *
 *  - a check of tokenizer.json against the components gptune has verified against its reference
 *    (scripts/ref_bpe.py): a BPE model (byte-level as GPT-2 / Llama 3 / Qwen / SmolLM2, or
 *    SentencePiece-style with byte fallback as Llama 2 / Mistral / TinyLlama) and the normalizers,
 *    pre-tokenizers, post-processors and decoders those use. Anything else is a one-line
 *    FileFormatError naming the file and key, never a silently different tokenization;
 *  - the special tokens, add_bos_token and chat_template from tokenizer_config.json, as transformers
 *    resolves them (chat_template.jinja wins over the config's chat_template), and the stop tokens
 *    from generation_config.json;
 *  - a vocabulary that can encode every text (byte-level, byte fallback or an unk_token), and ids
 *    checked on decode.
 *
 * encode() never adds BOS/EOS (add_special_tokens=False in transformers); decode() writes special
 * tokens out and never "cleans up tokenization spaces", so decode(encode(text)) == text.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ByteFallbackDecoder, SequenceDecoder, Tokenizer as LibraryTokenizer } from '@huggingface/tokenizers';
import { FileFormatError } from '../errors';
import { GENERATION_CONFIG_FILE, readGenerationConfig } from '../io/generation_config';
import { readJSONFile } from '../io/json';
import { BYTE_TO_CHAR } from './byte_level';
import { GPT2_PRETOKENIZE_PATTERN } from './pretokenize';
import type { SpecialTokenText, Tokenizer } from './types';

/** The component types gptune accepts, by tokenizer.json key (the rest are untested or unsupported by the library). */
const SUPPORTED_TYPES = {
  normalizer: ['Sequence', 'Prepend', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase'],
  pre_tokenizer: ['Sequence', 'ByteLevel', 'Split', 'Metaspace', 'Digits'],
  post_processor: ['Sequence', 'ByteLevel', 'TemplateProcessing'],
  decoder: ['Sequence', 'ByteLevel', 'Metaspace', 'Replace', 'ByteFallback', 'Fuse', 'Strip'],
} as const;
type Component = keyof typeof SUPPORTED_TYPES;

/** The key holding a Sequence's children, per component. */
const SEQUENCE_CHILDREN: Record<Component, string> = {
  normalizer: 'normalizers', pre_tokenizer: 'pretokenizers', post_processor: 'processors', decoder: 'decoders',
};

/** tokenizer_config.json's model_max_length when none was set (transformers' VERY_LARGE_INTEGER = 1e30). */
const UNSET_MAX_LENGTH = 1e29;

type JSONObject = Record<string, unknown>;

function isObject(value: unknown): value is JSONObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail(file: string, key: string, problem: string): never {
  throw new FileFormatError(`${file}: ${key} ${problem}`);
}

/** Checks one component (and a Sequence's children) against SUPPORTED_TYPES and the options gptune verified. */
function checkComponent(file: string, component: Component, key: string, value: unknown): void {
  if (value === null || value === undefined) return;
  if (!isObject(value)) fail(file, key, `must be an object or null but is ${JSON.stringify(value)}`);
  const type = value.type;
  const supported: readonly string[] = SUPPORTED_TYPES[component];
  if (typeof type !== 'string' || !supported.includes(type)) {
    fail(file, `${key}.type`, `${JSON.stringify(type)} is not supported (gptune reads ${component} types ${supported.join(', ')})`);
  }
  if (type === 'Sequence') {
    const childrenKey = SEQUENCE_CHILDREN[component];
    const children = value[childrenKey];
    if (!Array.isArray(children)) fail(file, `${key}.${childrenKey}`, 'must be a list');
    children.forEach((child, i) => checkComponent(file, component, `${key}.${childrenKey}[${i}]`, child));
    return;
  }
  if (component === 'pre_tokenizer' && type === 'Split') {
    // The library implements only these: MergedWithPrevious/Next, Contiguous and inverted patterns would tokenize differently.
    if (value.behavior !== 'Isolated') fail(file, `${key}.behavior`, `${JSON.stringify(value.behavior)} is not supported (gptune reads Split with behavior "Isolated")`);
    if (value.invert !== false) fail(file, `${key}.invert`, `${JSON.stringify(value.invert)} is not supported (gptune reads Split with invert false)`);
  }
  if (component === 'pre_tokenizer' && type === 'Metaspace') {
    // The library's Metaspace never splits at "▁"; the older add_prefix_space form implied split: true.
    if (value.split !== false) fail(file, `${key}.split`, `${JSON.stringify(value.split)} is not supported (gptune reads Metaspace with split false, as Mistral's tokenizer.json)`);
    if (!['always', 'first', 'never'].includes(value.prepend_scheme as string)) {
      fail(file, `${key}.prepend_scheme`, `${JSON.stringify(value.prepend_scheme)} is not supported (expected "always", "first" or "never")`);
    }
  }
  if (component === 'pre_tokenizer' && type === 'ByteLevel' && value.add_prefix_space === true) {
    fail(file, `${key}.add_prefix_space`, 'true is not supported (gptune reads ByteLevel pre-tokenizers without a prefix space, as GPT-2, Llama 3 and Qwen)');
  }
  if (component === 'decoder' && type === 'Metaspace' && !['always', 'first'].includes(value.prepend_scheme as string)) {
    // The library strips the first space whatever the scheme; HF does not with "never".
    fail(file, `${key}.prepend_scheme`, `${JSON.stringify(value.prepend_scheme)} is not supported (gptune reads Metaspace decoders with "always" or "first")`);
  }
  if ((type === 'Split' || type === 'Replace') && !(isObject(value.pattern) && (typeof value.pattern.String === 'string' || typeof value.pattern.Regex === 'string'))) {
    fail(file, `${key}.pattern`, 'must be {"String": ...} or {"Regex": ...}');
  }
}

/** Checks tokenizer.json's model: BPE, with the options the library and gptune's reference both implement. */
function checkModel(file: string, model: unknown): void {
  if (!isObject(model)) fail(file, 'model', 'must be an object');
  if (model.type !== 'BPE') fail(file, 'model.type', `${JSON.stringify(model.type)} is not supported (gptune reads BPE tokenizers: byte-level and SentencePiece-style)`);
  if (!isObject(model.vocab)) fail(file, 'model.vocab', 'must be an object of token -> id');
  for (const [token, id] of Object.entries(model.vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) fail(file, `model.vocab[${JSON.stringify(token)}]`, `must be a whole number >= 0 but is ${JSON.stringify(id)}`);
  }
  if (!Array.isArray(model.merges)) fail(file, 'model.merges', 'must be a list of "left right" strings or [left, right] pairs');
  model.merges.forEach((merge, i) => {
    const ok = typeof merge === 'string' ? merge.split(' ').length === 2 : Array.isArray(merge) && merge.length === 2 && merge.every((s) => typeof s === 'string');
    if (!ok) fail(file, `model.merges[${i}]`, `must be "left right" or [left, right] but is ${JSON.stringify(merge)}`);
  });
  if (model.dropout !== null && model.dropout !== undefined) fail(file, 'model.dropout', `${JSON.stringify(model.dropout)} is not supported (BPE dropout makes encoding random; expected null)`);
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[key] !== null && model[key] !== undefined && model[key] !== '') fail(file, `model.${key}`, `${JSON.stringify(model[key])} is not supported (expected null)`);
  }
}

/** Whether a pre-tokenizer (or one in a Sequence) is ByteLevel: every text is then made of the 256 byte characters. */
function hasByteLevel(preTokenizer: unknown): boolean {
  if (!isObject(preTokenizer)) return false;
  if (preTokenizer.type === 'Sequence') return (preTokenizer.pretokenizers as unknown[]).some(hasByteLevel);
  return preTokenizer.type === 'ByteLevel';
}

/**
 * Every text must be encodable: the library silently drops a character that has no token when there is
 * neither byte fallback nor an unk_token (HF tokenizers refuses it), so a vocabulary must have all 256
 * byte-level characters, all 256 <0xNN> byte-fallback tokens, or an unk_token.
 */
function checkCoverage(file: string, json: JSONObject): void {
  const model = json.model as JSONObject;
  const vocab = model.vocab as JSONObject;
  const has = (token: string) => Object.prototype.hasOwnProperty.call(vocab, token);
  if (hasByteLevel(json.pre_tokenizer)) {
    for (let byte = 0; byte < 256; byte++) {
      if (!has(BYTE_TO_CHAR[byte])) fail(file, 'model.vocab', `lacks the byte-level token ${JSON.stringify(BYTE_TO_CHAR[byte])} for byte 0x${byte.toString(16).padStart(2, '0')}; a ByteLevel tokenizer needs all 256`);
    }
  } else if (model.byte_fallback === true) {
    for (let byte = 0; byte < 256; byte++) {
      const token = `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
      if (!has(token)) fail(file, 'model.vocab', `lacks the byte-fallback token ${token}; byte_fallback needs all 256`);
    }
  } else if (typeof model.unk_token !== 'string' || !has(model.unk_token)) {
    fail(file, 'model.unk_token', `is ${JSON.stringify(model.unk_token ?? null)} but there is no byte fallback and no ByteLevel pre-tokenizer: characters outside the vocabulary would have no token`);
  }
}

interface AddedTokenJSON { id: number; content: string; special: boolean }

function checkAddedTokens(file: string, value: unknown): AddedTokenJSON[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(file, 'added_tokens', 'must be a list');
  return value.map((t, i) => {
    if (!isObject(t) || typeof t.content !== 'string' || t.content === '' || !Number.isSafeInteger(t.id) || (t.id as number) < 0) {
      fail(file, `added_tokens[${i}]`, 'must be {"id": whole number, "content": non-empty string, ...}');
    }
    if (t.single_word === true) fail(file, `added_tokens[${i}].single_word`, 'true is not supported');
    return { id: t.id as number, content: t.content, special: t.special === true };
  });
}

/** A special token in tokenizer_config.json / special_tokens_map.json: "text" or {"content": "text", ...}. */
function tokenText(file: string, key: string, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return fail(file, key, `must be a string, {"content": string} or null but is ${JSON.stringify(value)}`);
}

/** The BOS token a TemplateProcessing post-processor puts before the text ($A), if any. */
function templateBos(file: string, processor: unknown, key = 'post_processor'): string | null {
  if (!isObject(processor)) return null;
  if (processor.type === 'Sequence') {
    const children = processor.processors as unknown[];
    for (let i = 0; i < children.length; i++) {
      const found = templateBos(file, children[i], `${key}.processors[${i}]`);
      if (found !== null) return found;
    }
    return null;
  }
  if (processor.type !== 'TemplateProcessing') return null;
  const single = processor.single;
  if (!Array.isArray(single)) fail(file, `${key}.single`, 'must be a list');
  const before: string[] = [];
  for (const item of single) {
    if (isObject(item) && isObject(item.Sequence)) break;
    if (!(isObject(item) && isObject(item.SpecialToken) && typeof item.SpecialToken.id === 'string')) {
      fail(file, `${key}.single`, `has an item gptune does not read: ${JSON.stringify(item)}`);
    }
    before.push(item.SpecialToken.id);
  }
  if (before.length > 1) fail(file, `${key}.single`, `puts ${before.length} tokens before the text; gptune reads at most one (BOS)`);
  return before[0] ?? null;
}

/** chat_template in tokenizer_config.json: a string, or a list of {name, template} of which "default" is used. */
function configChatTemplate(file: string, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => isObject(t) && t.name === 'default');
    if (isObject(named) && typeof named.template === 'string') return named.template;
    const names = value.map((t) => (isObject(t) ? JSON.stringify(t.name) : '?')).join(', ');
    return fail(file, 'chat_template', `is a list of templates (${names}) without one named "default"`);
  }
  return fail(file, 'chat_template', `must be a string or a list of {"name", "template"} but is ${JSON.stringify(value)}`);
}

/**
 * Two pre-tokenizers of the library split differently from HF tokenizers, and are given to it as the
 * Split pre-tokenizer that does what HF's do (the library's Split translates regexes faithfully):
 *  - ByteLevel splits with GPT-2's regex written with JavaScript's \s, which matches U+FEFF and misses
 *    U+0085, unlike HF's regex engines (White_Space): "two  \uFEFFx" gets other words and other ids.
 *    It becomes Split(GPT-2's pattern, Isolated) followed by a ByteLevel that does not split;
 *  - Digits tests JavaScript's \d (ASCII 0-9) where HF tests char::is_numeric (Unicode Nd, Nl, No:
 *    "５", "٣", "½"). It becomes Split(\p{N} one by one, or runs of them, Isolated).
 */
function withHFSplitting(preTokenizer: unknown): unknown {
  if (!isObject(preTokenizer)) return preTokenizer;
  const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
  switch (preTokenizer.type) {
    case 'Sequence':
      return { ...preTokenizer, pretokenizers: (preTokenizer.pretokenizers as unknown[]).map(withHFSplitting) };
    case 'ByteLevel':
      if (preTokenizer.use_regex === false) return preTokenizer;
      return { type: 'Sequence', pretokenizers: [split(GPT2_PRETOKENIZE_PATTERN), { ...preTokenizer, use_regex: false }] };
    case 'Digits':
      return split(preTokenizer.individual_digits === true ? '\\p{N}' : '\\p{N}+');
    default:
      return preTokenizer;
  }
}

const strictUTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * HF tokenizers' ByteFallback decoder turns a run of <0xNN> tokens into its text, or, when the bytes
 * are not valid UTF-8, into one U+FFFD per byte token. The library's version decodes with a default
 * TextDecoder, which drops a leading U+FEFF and replaces invalid bytes by maximal subparts; this gives
 * its ByteFallback decoders (also inside Sequences) a decoder with HF's behaviour.
 */
function useHFByteFallback(decoder: unknown): void {
  if (decoder instanceof SequenceDecoder) {
    for (const child of (decoder as unknown as { decoders: unknown[] }).decoders) useHFByteFallback(child);
  } else if (decoder instanceof ByteFallbackDecoder) {
    (decoder as unknown as { text_decoder: { decode(bytes: Uint8Array): string } }).text_decoder = {
      decode(bytes: Uint8Array): string {
        try {
          return strictUTF8.decode(bytes);
        } catch {
          return '\uFFFD'.repeat(bytes.length);
        }
      },
    };
  }
}

export class HFTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly stopTokenIds: readonly number[];
  readonly encodesInPieces: boolean;
  readonly bosTokenId: number | null;
  readonly addBosToken: boolean;
  /** add_eos_token from tokenizer_config.json. gptune's examples always end with EOS; recorded for callers that ask. */
  readonly addEosToken: boolean;
  readonly chatTemplate: string | null;
  readonly specialTokenText: SpecialTokenText;
  /** tokenizer_config.json's model_max_length, or null when unset. */
  readonly modelMaxLength: number | null;
  private readonly library: LibraryTokenizer;
  /** id -> whether the id is used by the vocabulary or an added token (decode rejects holes). */
  private readonly known: Uint8Array;

  /** Reads a model folder's tokenizer.json and, when present, tokenizer_config.json, special_tokens_map.json and chat_template.jinja. */
  static fromFolder(dir: string): HFTokenizer {
    const optional = (name: string) => (fs.existsSync(path.join(dir, name)) ? path.join(dir, name) : null);
    const jsonFile = path.join(dir, 'tokenizer.json');
    const configFile = optional('tokenizer_config.json');
    const mapFile = optional('special_tokens_map.json');
    const templateFile = optional('chat_template.jinja');
    const generation = readGenerationConfig(dir);
    const config = configFile === null ? {} : readJSONFile(configFile);
    if (!isObject(config)) fail(configFile!, '', 'must hold a JSON object');
    const map = mapFile === null ? {} : readJSONFile(mapFile);
    if (!isObject(map)) fail(mapFile!, '', 'must hold a JSON object');
    return new HFTokenizer({
      tokenizerJSON: readJSONFile(jsonFile), jsonFile,
      config, configFile: configFile ?? path.join(dir, 'tokenizer_config.json'),
      specialTokensMap: map, mapFile: mapFile ?? path.join(dir, 'special_tokens_map.json'),
      chatTemplate: templateFile === null ? undefined : fs.readFileSync(templateFile, 'utf8'),
      generationEosIds: generation?.eosTokenIds ?? undefined, generationFile: path.join(dir, GENERATION_CONFIG_FILE),
      name: `tokenizer.json:${dir}`,
    });
  }

  constructor(o: {
    tokenizerJSON: unknown; jsonFile: string;
    config: JSONObject; configFile: string;
    specialTokensMap?: JSONObject; mapFile?: string;
    /** chat_template.jinja's contents; it replaces the config's chat_template. */
    chatTemplate?: string;
    /** generation_config.json's eos_token_id(s). */
    generationEosIds?: readonly number[]; generationFile?: string;
    name: string;
  }) {
    const file = o.jsonFile;
    this.name = o.name;
    const json = o.tokenizerJSON;
    if (!isObject(json)) fail(file, '', 'must hold a JSON object (a Hugging Face tokenizer.json)');
    checkModel(file, json.model);
    const added = checkAddedTokens(file, json.added_tokens);
    for (const component of Object.keys(SUPPORTED_TYPES) as Component[]) checkComponent(file, component, component, json[component]);
    if (!isObject(json.decoder)) fail(file, 'decoder', 'is missing; gptune needs it to turn ids back into text');
    checkCoverage(file, json);

    // Every component key present (the library requires them), added_tokens a list.
    const normalized: JSONObject = { ...json, added_tokens: json.added_tokens ?? [] };
    for (const component of Object.keys(SUPPORTED_TYPES)) normalized[component] = json[component] ?? null;
    normalized.pre_tokenizer = withHFSplitting(normalized.pre_tokenizer);
    // An empty config: the fast tokenizer is defined by tokenizer.json alone (transformers ignores the
    // slow tokenizer's options such as remove_space), and decode() gets its options explicitly.
    try {
      this.library = new LibraryTokenizer(normalized, {});
    } catch (err) {
      // What the checks above let through but the library rejects, e.g. a Split regex it cannot translate.
      throw new FileFormatError(`${file}: @huggingface/tokenizers cannot read it: ${(err as Error).message.split('\n')[0]}`);
    }
    useHFByteFallback(this.library.decoder);
    // Only GPT-2's own pre-tokenization is known to allow lib/data/tokens.ts's cuts (an added token
    // with whitespace in it could be cut too).
    const preTokenizer = json.pre_tokenizer;
    this.encodesInPieces = isObject(preTokenizer) && preTokenizer.type === 'ByteLevel' && preTokenizer.use_regex !== false
      && (json.normalizer === null || json.normalizer === undefined) && added.every((t) => !/\p{White_Space}/u.test(t.content));

    const vocab = (json.model as JSONObject).vocab as Record<string, number>;
    let maxId = -1;
    for (const id of Object.values(vocab)) maxId = Math.max(maxId, id);
    for (const t of added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    this.known = new Uint8Array(this.vocabSize);
    for (const id of Object.values(vocab)) this.known[id] = 1;
    for (const t of added) this.known[t.id] = 1;

    // Special tokens: tokenizer_config.json first, then special_tokens_map.json (as transformers merges them).
    const special = (key: keyof SpecialTokenText): string | null =>
      tokenText(o.configFile, key, o.config[key]) ?? tokenText(o.mapFile ?? o.configFile, key, o.specialTokensMap?.[key]);
    const idOf = (key: string, text: string, where: string): number => {
      const id = this.library.token_to_id(text);
      if (id === undefined) fail(where, key, `${JSON.stringify(text)} is not a token of ${file}`);
      return id;
    };
    const eosText = special('eos_token');
    if (eosText === null) fail(o.configFile, 'eos_token', 'is missing (also from special_tokens_map.json); gptune needs an end-of-sequence token to separate documents and stop generation');
    this.eosTokenId = idOf('eos_token', eosText, o.configFile);
    const templateBosText = templateBos(file, json.post_processor);
    const bosText = special('bos_token') ?? templateBosText;
    this.bosTokenId = bosText === null ? null : idOf('bos_token', bosText, o.configFile);
    const addBos = o.config.add_bos_token;
    if (addBos !== undefined && addBos !== null && typeof addBos !== 'boolean') fail(o.configFile, 'add_bos_token', `must be true or false but is ${JSON.stringify(addBos)}`);
    // add_bos_token overrides the post-processor, as LlamaTokenizerFast does; without it the post-processor decides.
    this.addBosToken = typeof addBos === 'boolean' ? addBos : templateBosText !== null;
    if (this.addBosToken && this.bosTokenId === null) fail(o.configFile, 'add_bos_token', 'is true but there is no bos_token');
    const addEos = o.config.add_eos_token;
    if (addEos !== undefined && addEos !== null && typeof addEos !== 'boolean') fail(o.configFile, 'add_eos_token', `must be true or false but is ${JSON.stringify(addEos)}`);
    this.addEosToken = addEos === true;
    this.specialTokenText = { bos_token: bosText, eos_token: eosText, unk_token: special('unk_token'), pad_token: special('pad_token') };
    for (const key of ['unk_token', 'pad_token'] as const) {
      const text = this.specialTokenText[key];
      if (text !== null) idOf(key, text, o.configFile);
    }

    const maxLength = o.config.model_max_length;
    if (maxLength !== undefined && maxLength !== null && !(typeof maxLength === 'number' && maxLength > 0)) {
      fail(o.configFile, 'model_max_length', `must be a number > 0 but is ${JSON.stringify(maxLength)}`);
    }
    this.modelMaxLength = typeof maxLength === 'number' && maxLength < UNSET_MAX_LENGTH ? maxLength : null;
    this.chatTemplate = o.chatTemplate ?? configChatTemplate(o.configFile, o.config.chat_template);
    for (const id of o.generationEosIds ?? []) {
      if (id >= this.vocabSize || this.known[id] === 0) fail(o.generationFile ?? 'generation_config.json', 'eos_token_id', `${id} is not a token of ${file}`);
    }
    this.stopTokenIds = [...new Set([...(o.generationEosIds ?? []), this.eosTokenId])];
  }

  encode(text: string): number[] {
    // checkCoverage() made sure every character has a token, byte tokens or the unk_token.
    return text.length === 0 ? [] : this.library.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.known[id] === 0) {
        throw new RangeError(`${this.name}: cannot decode token id ${id}; expected an id of the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
    if (ids.length === 0) return '';
    return this.library.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
}
