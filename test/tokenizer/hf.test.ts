/**
 * Hugging Face tokenizer.json folders (lib/tokenizer/hf.ts, @huggingface/tokenizers underneath)
 * against scripts/ref_bpe.py: the expected ids and decoded texts in each fixture's cases.json come
 * from that reference BPE, written from the algorithms' definitions, never from the library.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FileFormatError } from '../../lib/errors';
import { DecodeStream, encodeSequence, HFTokenizer, loadTokenizer } from '../../lib/tokenizer';
import { tempDir } from '../helpers';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizers');
const NAMES = ['bytelevel-chatml', 'bytelevel-digits', 'bytelevel-llama3', 'sentencepiece-llama2', 'sentencepiece-mistral'];

interface Cases { style: string; vocab_size: number; cases: Array<{ text: string; ids: number[]; decoded: string }> }
const casesOf = (name: string): Cases => JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'cases.json'), 'utf8'));

describe.each(NAMES)('%s: ids and text of the reference BPE', (name) => {
  const dir = path.join(FIXTURES, name);
  const tokenizer = loadTokenizer(dir);
  const { cases, vocab_size, style } = casesOf(name);

  test('loaded from tokenizer.json, with the vocabulary size of the reference', () => {
    expect(tokenizer).toBeInstanceOf(HFTokenizer);
    expect(tokenizer.name).toBe(`tokenizer.json:${dir}`);
    expect(tokenizer.vocabSize).toBe(vocab_size);
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  test.each(cases.map((c, i) => [i, JSON.stringify(c.text).slice(0, 40), c] as const))('case %i %s: encode gives the reference ids', (_i, _label, c) => {
    expect(tokenizer.encode(c.text)).toEqual(c.ids);
  });

  test('decode gives the reference text; byte-level decoding gives back the input exactly', () => {
    for (const c of cases) {
      expect(tokenizer.decode(c.ids)).toBe(c.decoded);
      if (style === 'gpt2' || style === 'llama3') expect(c.decoded).toBe(c.text);
    }
  });

  test('streamed decoding: the pieces concatenate to the decoded text and never end in a broken character', () => {
    for (const c of cases) {
      const stream = new DecodeStream(tokenizer);
      const pieces = c.ids.map((id) => stream.push(id));
      pieces.push(stream.flush());
      expect(pieces.join('')).toBe(c.decoded);
      for (const piece of pieces) expect(piece.endsWith('\uFFFD')).toBe(false);
    }
  });
});

describe('what tokenizer_config.json, special_tokens_map.json and chat_template.jinja give', () => {
  // Ids by construction (scripts/ref_bpe.py): byte-level vocabularies are 256 bytes + 300 merges, then
  // the added tokens in order; the SentencePiece-style ones start <unk> <s> </s>.
  test('ChatML (Qwen-like): eos <|im_end|>, no BOS, the config chat template, model_max_length', () => {
    const t = loadTokenizer(path.join(FIXTURES, 'bytelevel-chatml')) as HFTokenizer;
    expect([t.eosTokenId, t.bosTokenId, t.addBosToken, t.addEosToken, t.modelMaxLength]).toEqual([556, null, false, false, 32768]);
    expect(t.specialTokenText).toEqual({ bos_token: null, eos_token: '<|im_end|>', unk_token: null, pad_token: '<|endoftext|>' });
    expect(t.chatTemplate).toContain("'<|im_start|>assistant\\n'");
    expect(encodeSequence(t, 'Hello world')).toEqual(t.encode('Hello world'));
    // A non-special added token is split out of the text too.
    expect(t.encode('<tool_call>')).toEqual([559]);
  });

  test('Llama 3-like: BOS from the TemplateProcessing post-processor, the template from chat_template.jinja', () => {
    const dir = path.join(FIXTURES, 'bytelevel-llama3');
    const t = loadTokenizer(dir) as HFTokenizer;
    expect([t.eosTokenId, t.bosTokenId, t.addBosToken, t.modelMaxLength]).toEqual([557, 556, true, 131072]);
    expect(t.chatTemplate).toBe(fs.readFileSync(path.join(dir, 'chat_template.jinja'), 'utf8'));
    expect(encodeSequence(t, 'Hello world')).toEqual([556, ...t.encode('Hello world')]);
  });

  test('SentencePiece-style: add_bos_token, a token given as {"content": ...}, model_max_length unset (1e30)', () => {
    const t = loadTokenizer(path.join(FIXTURES, 'sentencepiece-llama2')) as HFTokenizer;
    expect([t.eosTokenId, t.bosTokenId, t.addBosToken, t.addEosToken, t.modelMaxLength]).toEqual([2, 1, true, false, null]);
    expect(t.specialTokenText).toEqual({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null });
    expect(encodeSequence(t, 'Hello')).toEqual([1, ...t.encode('Hello')]);
  });

  test('add_bos_token: false overrides a post-processor that adds BOS (as LlamaTokenizerFast)', () => {
    const dir = copyFixture('sentencepiece-llama2', { 'tokenizer_config.json': (c) => ({ ...c, add_bos_token: false }) });
    expect(loadTokenizer(dir).addBosToken).toBe(false);
  });

  test('special tokens missing from tokenizer_config.json come from special_tokens_map.json', () => {
    const dir = copyFixture('sentencepiece-llama2', { 'tokenizer_config.json': (c) => ({ ...c, eos_token: undefined, unk_token: undefined }) });
    fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: { content: '</s>' }, unk_token: '<unk>' }));
    const t = loadTokenizer(dir);
    expect(t.eosTokenId).toBe(2);
    expect(t.specialTokenText.unk_token).toBe('<unk>');
  });

  test('byte fallback: bytes that are not UTF-8 decode to one U+FFFD per byte token, as HF tokenizers does', () => {
    const t = loadTokenizer(path.join(FIXTURES, 'sentencepiece-llama2'));
    // "日" is not in the vocabulary: <0xE6> <0x97> <0xA5> are ids 3 + 0xE6, 3 + 0x97, 3 + 0xA5.
    expect(t.encode('日')).toContain(3 + 0xe6);
    expect(t.decode([3 + 0xe6, 3 + 0x97, 3 + 0xa5])).toBe('日');
    expect(t.decode([3 + 0xe6, 3 + 0x97])).toBe('\uFFFD\uFFFD');
    expect(t.decode([3 + 0xef, 3 + 0xbb, 3 + 0xbf])).toBe('\uFEFF');
  });

  test('only the GPT-2-regex tokenizer is encoded in pieces when streaming text (the others get whole documents)', () => {
    expect(NAMES.map((name) => loadTokenizer(path.join(FIXTURES, name)).encodesInPieces)).toEqual([true, false, false, false, false]);
  });

  test('decode rejects ids outside the vocabulary; the empty list decodes to ""', () => {
    const t = loadTokenizer(path.join(FIXTURES, 'bytelevel-chatml'));
    expect(t.decode([])).toBe('');
    expect(() => t.decode([560])).toThrow(/cannot decode token id 560; expected an id of the vocabulary \(0\.\.559\)/);
    expect(() => t.decode([-1])).toThrow(/cannot decode token id -1/);
    expect(() => t.decode([1.5])).toThrow(/cannot decode token id 1.5/);
  });
});

/** A copy of a fixture folder with some JSON files changed (undefined values drop the key). */
function copyFixture(name: string, edits: Record<string, (json: Record<string, unknown>) => Record<string, unknown>> = {}): string {
  const dir = tempDir('gptune-hf-tok-');
  for (const file of fs.readdirSync(path.join(FIXTURES, name))) {
    const text = fs.readFileSync(path.join(FIXTURES, name, file), 'utf8');
    const edit = edits[file];
    fs.writeFileSync(path.join(dir, file), edit ? JSON.stringify(edit(JSON.parse(text))) : text);
  }
  return dir;
}

describe('bad tokenizer files: one line naming the file and key', () => {
  const tokenizerJSON = (f: (j: Record<string, any>) => void) => (j: Record<string, unknown>) => { f(j); return j; };
  const cases: Array<[string, string, Record<string, (j: Record<string, any>) => Record<string, unknown>>, RegExp]> = [
    ['unsupported model type', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { j.model.type = 'Unigram'; }) },
      /tokenizer\.json: model\.type "Unigram" is not supported \(gptune reads BPE tokenizers/],
    ['unsupported normalizer inside a Sequence', 'sentencepiece-llama2', { 'tokenizer.json': tokenizerJSON((j) => { j.normalizer.normalizers[1] = { type: 'Precompiled', precompiled_charsmap: '' }; }) },
      /tokenizer\.json: normalizer\.normalizers\[1\]\.type "Precompiled" is not supported \(gptune reads normalizer types Sequence, Prepend/],
    ['unsupported pre-tokenizer', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { j.pre_tokenizer = { type: 'BertPreTokenizer' }; }) },
      /tokenizer\.json: pre_tokenizer\.type "BertPreTokenizer" is not supported/],
    ['Split behavior the library lacks', 'bytelevel-llama3', { 'tokenizer.json': tokenizerJSON((j) => { j.pre_tokenizer.pretokenizers[0].behavior = 'MergedWithPrevious'; }) },
      /tokenizer\.json: pre_tokenizer\.pretokenizers\[0\]\.behavior "MergedWithPrevious" is not supported/],
    ['Metaspace that splits', 'sentencepiece-mistral', { 'tokenizer.json': tokenizerJSON((j) => { j.pre_tokenizer.split = true; }) },
      /tokenizer\.json: pre_tokenizer\.split true is not supported/],
    ['a Split regex that does not compile', 'bytelevel-llama3', { 'tokenizer.json': tokenizerJSON((j) => { j.pre_tokenizer.pretokenizers[0].pattern = { Regex: '(ab' }; }) },
      /tokenizer\.json: @huggingface\/tokenizers cannot read it: .*regular expression/i],
    ['a Metaspace decoder that keeps the first space', 'sentencepiece-mistral', { 'tokenizer.json': tokenizerJSON((j) => { j.decoder.decoders[1].prepend_scheme = 'never'; }) },
      /tokenizer\.json: decoder\.decoders\[1\]\.prepend_scheme "never" is not supported/],
    ['unsupported decoder', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { j.decoder = { type: 'WordPiece' }; }) },
      /tokenizer\.json: decoder\.type "WordPiece" is not supported/],
    ['no decoder', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { j.decoder = null; }) },
      /tokenizer\.json: decoder is missing/],
    ['BPE dropout', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { j.model.dropout = 0.1; }) },
      /tokenizer\.json: model\.dropout 0\.1 is not supported/],
    ['a malformed merge', 'bytelevel-llama3', { 'tokenizer.json': tokenizerJSON((j) => { j.model.merges[3] = 'abc'; }) },
      /tokenizer\.json: model\.merges\[3\] must be "left right" or \[left, right\] but is "abc"/],
    ['no byte fallback and no unk_token (characters could not be encoded)', 'sentencepiece-llama2', { 'tokenizer.json': tokenizerJSON((j) => { j.model.byte_fallback = false; j.model.unk_token = null; }) },
      /tokenizer\.json: model\.unk_token is null but there is no byte fallback and no ByteLevel pre-tokenizer/],
    ['a byte-level vocabulary without all 256 bytes', 'bytelevel-chatml', { 'tokenizer.json': tokenizerJSON((j) => { delete j.model.vocab['Ġ']; }) },
      /tokenizer\.json: model\.vocab lacks the byte-level token "Ġ" for byte 0x20/],
    ['no eos_token anywhere', 'bytelevel-chatml', { 'tokenizer_config.json': (c) => ({ ...c, eos_token: undefined }) },
      /tokenizer_config\.json: eos_token is missing/],
    ['a bos_token that is not a token', 'sentencepiece-llama2', { 'tokenizer_config.json': (c) => ({ ...c, bos_token: '<bos>' }) },
      /tokenizer_config\.json: bos_token "<bos>" is not a token of .*tokenizer\.json/],
    ['add_bos_token not a boolean', 'sentencepiece-llama2', { 'tokenizer_config.json': (c) => ({ ...c, add_bos_token: 'yes' }) },
      /tokenizer_config\.json: add_bos_token must be true or false but is "yes"/],
    ['a list of chat templates without "default"', 'bytelevel-chatml', { 'tokenizer_config.json': (c) => ({ ...c, chat_template: [{ name: 'tool_use', template: 'x' }] }) },
      /tokenizer_config\.json: chat_template is a list of templates \("tool_use"\) without one named "default"/],
  ];
  test.each(cases)('%s', (_what, fixture, edits, message) => {
    const dir = copyFixture(fixture, edits);
    let error: unknown;
    try { loadTokenizer(dir); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain(dir);
    expect((error as Error).message).not.toContain('\n');
  });

  test('tokenizer.json that does not parse: the file and the line', () => {
    const dir = copyFixture('bytelevel-chatml');
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{\n  "model": {\n    "type": "BPE",\n  }\n}\n');
    expect(() => loadTokenizer(dir)).toThrow(new RegExp(`^${path.join(dir, 'tokenizer.json').replace(/[.]/g, '\\.')}: not valid JSON.*line 4`));
  });

  test('GPT-2 folders with only vocab.json + merges.txt still use gptune\'s own BPE', () => {
    const t = loadTokenizer(path.join(__dirname, '..', 'fixtures', 'tiny-gpt2'));
    expect(t.name).toMatch(/^bpe:/);
    expect([t.addBosToken, t.chatTemplate, t.bosTokenId]).toEqual([false, null, t.eosTokenId]);
  });
});
