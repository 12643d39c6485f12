/**
 * GGUF export of SentencePiece-style tokenizers (BPE with byte_fallback: Llama 2's Prepend + Replace
 * normalizer, Mistral's Metaspace pre-tokenizer with prepend_scheme "first"), checked by llama.cpp
 * itself (node-llama-cpp 3.21.1 in a child process, its SPM tokenizer reading tokenizer.ggml.*): a tiny
 * Llama over each fixture tokenizer (vocab_size 566, the tokenizer's), exported F32 and F16. The texts
 * are the fixtures' 25 strings (ASCII, leading and repeated spaces, tabs and newlines, accents, CJK,
 * emoji and control characters through byte fallback, digits, special tokens written in the text).
 *
 * llama.cpp's SPM tokenizer puts " " before the text at the start and after every special token
 * (llama_vocab::impl::tokenize, add_space_prefix with is_prev_special) and then turns spaces into "▁".
 * Llama 2's Prepend normalizer does the same to each text between added tokens, so there the ids are
 * gptune's for every text. Mistral's Metaspace "first" puts "▁" only before the first text, and not
 * when it already starts with a space: there llama.cpp gives the ids gptune gives for the text with a
 * space before each of its texts (withLlamaCppSpaces), which differ for exactly three of the strings.
 */
import * as fs from 'fs';
import * as path from 'path';
import { planModelGGUF } from '../../lib/gguf/export';
import { writeGGUF } from '../../lib/gguf/format';
import { loadGGUFModel } from '../../lib/gguf/load';
import { readGGUFHeader } from '../../lib/gguf/read';
import { openModel } from '../../lib/model/open';
import { encodeSequence, HFTokenizer, loadTokenizer, Tokenizer } from '../../lib/tokenizer';
import { exportGGUF, gptuneGreedy, JobResult, runLlamaCpp } from './llama_cpp_helpers';
import { FIXTURES, tempDir } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const TOKENIZERS = path.join(FIXTURES, 'tokenizers');
const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>'];
const PROMPT = 'Once upon a time, there was';
const N = 20;

/** The text with " " put before its start and after each special token, where a text follows (llama.cpp's SPM rule above). */
function withLlamaCppSpaces(text: string): string {
  const parts = text.split(new RegExp(`(${SPECIAL_TOKENS.map((t) => t.replace(/[/]/g, '\\/')).join('|')})`));
  return parts.map((part) => (part === '' || SPECIAL_TOKENS.includes(part) ? part : ` ${part}`)).join('');
}

interface Fixture {
  name: string;
  /** Whether llama.cpp's ids are gptune's for the text as it is (Prepend normalizer) or with withLlamaCppSpaces (Metaspace "first"). */
  prependsEveryText: boolean;
}

const FIXTURE_TOKENIZERS: Fixture[] = [
  { name: 'sentencepiece-llama2', prependsEveryText: true },
  { name: 'sentencepiece-mistral', prependsEveryText: false },
];

interface Prepared {
  dir: string;
  f32File: string;
  texts: string[];
  prompt: number[];
  /** The export's notes (--json's "notes"). */
  notes: unknown;
  f32: JobResult;
  f16: JobResult;
}

const prepared = new Map<string, Prepared>();

beforeAll(async () => {
  const jobs = [];
  const pending: Array<Omit<Prepared, 'f32' | 'f16'>> = [];
  for (const [i, { name }] of FIXTURE_TOKENIZERS.entries()) {
    const dir = tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=566,bos_token_id=1,eos_token_id=2', 31 + i, path.join(TOKENIZERS, name));
    const texts = (JSON.parse(fs.readFileSync(path.join(TOKENIZERS, name, 'cases.json'), 'utf8')) as { cases: Array<{ text: string }> }).cases.map((c) => c.text);
    const prompt = encodeSequence(loadTokenizer(dir), PROMPT);
    const out = path.dirname(dir);
    let notes: unknown;
    for (const dtype of ['f32', 'f16']) {
      ({ notes } = await exportGGUF('--no-measure', '--model', dir, '--dtype', dtype, '--out', path.join(out, `${dtype}.gguf`)));
      jobs.push({ file: path.join(out, `${dtype}.gguf`), texts, prompt, n: N });
    }
    pending.push({ dir, f32File: path.join(out, 'f32.gguf'), texts, prompt, notes });
  }
  const results = runLlamaCpp(jobs);
  pending.forEach((p, i) => prepared.set(FIXTURE_TOKENIZERS[i].name, { ...p, f32: results[2 * i], f16: results[2 * i + 1] }));
}, 110000);

describe.each(FIXTURE_TOKENIZERS)('$name', ({ name, prependsEveryText }) => {
  const expectedIds = (tokenizer: Tokenizer, text: string) => tokenizer.encode(prependsEveryText ? text : withLlamaCppSpaces(text));

  test("llama.cpp's tokenizer gives gptune's ids for every text (Metaspace \"first\": with llama.cpp's spaces, three texts differ)", () => {
    const p = prepared.get(name)!;
    const tokenizer = loadTokenizer(p.dir);
    p.texts.forEach((text, i) => {
      expect([text, p.f32.ids[i]]).toEqual([text, expectedIds(tokenizer, text)]);
      expect(p.f16.ids[i]).toEqual(p.f32.ids[i]);
    });
    // Every CJK and emoji character is outside the 566-token vocabulary: these ids are byte fallback.
    const cjk = p.texts.findIndex((t) => t.startsWith('日本語'));
    expect(p.f32.ids[cjk].filter((id) => id >= 3 && id < 259).length).toBeGreaterThan(20);
    const differing = p.texts.filter((text, i) => JSON.stringify(p.f32.ids[i]) !== JSON.stringify(tokenizer.encode(text)));
    expect(differing).toEqual(prependsEveryText ? [] : ['   leading spaces', 'Hi</s>there <s> end', '  ']);
    // The export says so.
    expect(p.notes).toEqual(prependsEveryText ? undefined : [
      `${path.join(p.dir, 'tokenizer.json')}: pre_tokenizer Metaspace prepend_scheme "first": llama.cpp puts "▁" before a text that starts with a space or follows a special token, where this tokenizer does not (other ids there)`,
    ]);
  });

  test("llama.cpp detokenizes its ids to gptune's text of them", () => {
    const p = prepared.get(name)!;
    const tokenizer = loadTokenizer(p.dir);
    p.texts.forEach((text, i) => expect([text, p.f32.detokenized[i]]).toEqual([text, tokenizer.decode(p.f32.ids[i])]));
    // Texts without special tokens or leading spaces come back as they were.
    expect(p.f32.detokenized[p.texts.indexOf('日本語のテキスト、中文字符')]).toBe('日本語のテキスト、中文字符');
    expect(p.f32.detokenized[p.texts.indexOf('café naïve résumé Ünïcödé')]).toBe('café naïve résumé Ünïcödé');
  });

  test("the file's tokenizer keys: llama model, pieces as stored, merge-rank scores, BYTE tokens, special ids, add_bos_token, chat template", () => {
    const p = prepared.get(name)!;
    const json = JSON.parse(fs.readFileSync(path.join(TOKENIZERS, name, 'tokenizer.json'), 'utf8'));
    const vocab = json.model.vocab as Record<string, number>;
    const merges = (json.model.merges as Array<string | string[]>).map((m) => (typeof m === 'string' ? m.split(' ') : m));
    const tokens: string[] = [];
    for (const [token, id] of Object.entries(vocab)) tokens[id] = token;
    // Each token scores minus the rank of the first merge that makes it; the rest below every merge.
    const scores = tokens.map(() => -merges.length);
    for (let rank = merges.length - 1; rank >= 0; rank--) scores[vocab[merges[rank].join('')]] = -rank;
    const types = tokens.map((t, id) => (id < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1));
    const kv = readGGUFHeader(p.f32File).kv;
    const tokenizerKeys = Object.fromEntries([...kv].filter(([k]) => k.startsWith('tokenizer.')));
    const config = JSON.parse(fs.readFileSync(path.join(TOKENIZERS, name, 'tokenizer_config.json'), 'utf8'));
    expect(tokenizerKeys).toEqual({
      'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.pre': 'default',
      'tokenizer.ggml.tokens': tokens, 'tokenizer.ggml.scores': scores, 'tokenizer.ggml.token_type': types,
      'tokenizer.ggml.add_space_prefix': true,
      'tokenizer.ggml.bos_token_id': 1, 'tokenizer.ggml.eos_token_id': 2, 'tokenizer.ggml.unknown_token_id': 0,
      'tokenizer.ggml.add_bos_token': true, 'tokenizer.ggml.add_eos_token': false,
      'tokenizer.chat_template': config.chat_template,
    });
    expect(p.f32.tokenizer).toEqual({ eos: 2, bos: 1, addBos: true, addEos: false, template: config.chat_template });
  });

  test("greedy continuation from the F32 and F16 files is gptune's 20 tokens; F32 log-probabilities agree to 1e-3", () => {
    const p = prepared.get(name)!;
    const ref = gptuneGreedy(p.dir, p.prompt, N);
    expect(p.prompt[0]).toBe(1);
    expect(p.f32.tokens).toEqual(ref.tokens);
    expect(p.f16.tokens).toEqual(ref.tokens);
    p.f32.probabilities.forEach((prob, k) => expect(Math.abs(Math.log(prob) - ref.logprobs[k])).toBeLessThan(1e-3));
  });

  test("--model file.gguf: gptune's tokenizer from the file gives llama.cpp's ids (the folder's where llama.cpp's do), text and special tokens", () => {
    const p = prepared.get(name)!;
    const source = loadTokenizer(p.dir);
    const { model, tokenizer } = loadGGUFModel(p.f32File);
    model.free();
    p.texts.forEach((text, i) => {
      expect([text, tokenizer.encode(text)]).toEqual([text, p.f32.ids[i]]);
      expect([text, tokenizer.encode(text)]).toEqual([text, expectedIds(source, text)]);
      expect(tokenizer.decode(p.f32.ids[i])).toBe(p.f32.detokenized[i]);
    });
    for (const key of ['eosTokenId', 'bosTokenId', 'addBosToken', 'chatTemplate', 'specialTokenText', 'vocabSize'] as const) expect(tokenizer[key]).toEqual(source[key]);
    expect((tokenizer as HFTokenizer).addEosToken).toBe(false);
  });
});

test('a "llama" GGUF without tokenizer.ggml.scores: one line naming the file and the key', () => {
  const p = prepared.get('sentencepiece-llama2')!;
  const opened = openModel(p.dir, 'cpu', 0);
  const file = path.join(tempDir(), 'no-scores.gguf');
  try {
    const plan = planModelGGUF(opened.model, opened.tokenizer, opened.tokenizerDir, 'f32', 'test');
    plan.kv.delete('tokenizer.ggml.scores');
    writeGGUF(file, plan.kv, plan.tensors);
  } finally {
    opened.model.free();
  }
  expect(() => loadGGUFModel(file)).toThrow(/^\S+no-scores\.gguf: key tokenizer\.ggml\.scores: is missing$/);
});
