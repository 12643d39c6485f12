import * as fs from 'fs';
import * as path from 'path';
import { BYTE_TO_CHAR } from '../../lib/tokenizer/byte_level';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, tempDir } from '../helpers';

const TINY_DIR = path.join(FIXTURES, 'tiny-gpt2');

describe('loadTokenizer', () => {
  let dir: string;
  beforeEach(() => { dir = tempDir('gptune-tok-'); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A small valid byte-level vocabulary: the 256 byte tokens, a few merges, <|endoftext|>. */
  function writeTokenizer(vocabText?: string, mergesText?: string): void {
    const vocab: Record<string, number> = {};
    BYTE_TO_CHAR.forEach((char, byte) => { vocab[char] = byte; });
    Object.assign(vocab, { 'Ġt': 256, he: 257, 'Ġthe': 258, '<|endoftext|>': 259 });
    fs.writeFileSync(path.join(dir, 'vocab.json'), vocabText ?? JSON.stringify(vocab));
    fs.writeFileSync(path.join(dir, 'merges.txt'), mergesText ?? '#version: 0.2\nĠ t\nh e\nĠt he\n');
  }

  test("a folder's vocab.json + merges.txt; GPT-2's encoding without them", () => {
    writeTokenizer();
    const own = loadTokenizer(dir);
    expect(own.name).toBe(`bpe:${dir}`);
    expect([own.vocabSize, own.eosTokenId]).toEqual([260, 259]);
    expect(own.encode(' the<|endoftext|>')).toEqual([258, 259]);
    expect(loadTokenizer(TINY_DIR).vocabSize).toBe(350);

    const empty = tempDir('gptune-tok-empty-');
    try {
      expect(loadTokenizer(empty).encode('Hello world')).toEqual([15496, 995]);
      expect(loadTokenizer().name).toBe('gpt2');
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('a folder with only one of the two files, or a tokenizer.json without a model, or no folder at all, is an error', () => {
    fs.writeFileSync(path.join(dir, 'vocab.json'), '{}');
    expect(() => loadTokenizer(dir)).toThrow(`${dir}: has vocab.json but not merges.txt; a GPT-2 BPE tokenizer needs both`);
    fs.rmSync(path.join(dir, 'vocab.json'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
    expect(() => loadTokenizer(dir)).toThrow(`${path.join(dir, 'tokenizer.json')}: model must be an object`);
    expect(() => loadTokenizer(path.join(dir, 'missing'))).toThrow(`tokenizer: expected a folder but ${path.join(dir, 'missing')} does not exist`);
  });

  const vocabPath = () => path.join(dir, 'vocab.json');
  const mergesPath = () => path.join(dir, 'merges.txt');

  const badVocab: Array<[string, string, (file: string) => string]> = [
    ['not JSON (missing value)', '{\n"a": 1,\n"b": }', (f) => `${f} line 3: expected an integer id for token "b" but found "}"`],
    ['trailing comma', '{\n"a": 1,\n}', (f) => `${f} line 3: expected a token string in double quotes but found "}"`],
    ['missing comma', '{\n"a": 1\n"b": 2}', (f) => `${f} line 3: expected "," or "}" after an id but found "\\"b\\": 2}"`],
    ['unterminated', '{"a": 1', (f) => `${f} line 1: expected "," or "}" after an id but found the end of the file`],
    ['an array', '[1, 2]', (f) => `${f} line 1: expected "{" starting an object of token -> id but found "[1, 2]"`],
    ['string id', '{\n  "a": "1"\n}', (f) => `${f} line 2: expected an integer id for token "a" but found "\\"1\\""`],
    ['negative id', '{"a": -1}', (f) => `${f} line 1: expected an integer id in [0, 16777215] for token "a"`],
    ['fractional id', '{"a": 1.5}', (f) => `${f} line 1: expected an integer id in [0, 16777215] for token "a"`],
    ['duplicate token', '{\n"a": 1,\n"b": 2,\n"a": 3}', (f) => `${f} line 4: token "a" appears twice (first on line 2)`],
    ['bad escape', '{"a\\x": 1}', (f) => `${f} line 1: expected a valid escape`],
    ['text after the object', '{"a": 1} x', (f) => `${f} line 1: expected nothing after the closing "}" but found "x"`],
  ];
  test.each(badVocab)('vocab.json %s: error names the file and line', (_, text, message) => {
    writeTokenizer(text);
    expect(() => loadTokenizer(dir)).toThrow(message(vocabPath()));
  });

  test('vocab.json missing a byte token or <|endoftext|>, or with two tokens on one id', () => {
    const withoutSpace = Object.fromEntries(BYTE_TO_CHAR.map((c, b) => [c, b]).filter(([, b]) => b !== 0x20));
    writeTokenizer(JSON.stringify({ ...withoutSpace, '<|endoftext|>': 256 }), '');
    expect(() => loadTokenizer(dir)).toThrow(`${vocabPath()}: missing the byte-level token "Ġ" for byte 0x20; a GPT-2 byte-level vocabulary needs all 256`);
    const bytes = Object.fromEntries(BYTE_TO_CHAR.map((c, b) => [c, b]));
    writeTokenizer(JSON.stringify(bytes), '');
    expect(() => loadTokenizer(dir)).toThrow(`${vocabPath()}: missing the token <|endoftext|>, which gptune uses to separate documents`);
    writeTokenizer(JSON.stringify({ ...bytes, '<|endoftext|>': 255 }), '');
    expect(() => loadTokenizer(dir)).toThrow(`${vocabPath()}: tokens "ÿ" and "<|endoftext|>" both have id 255`);
  });

  const badMerges: Array<[string, string, (file: string) => string]> = [
    ['one token', '#version: 0.2\nĠ t\nhe\n', (f) => `${f} line 3: expected two tokens separated by one space but found "he"`],
    ['three tokens', '#version: 0.2\nĠ t h\n', (f) => `${f} line 2: expected two tokens separated by one space but found "Ġ t h"`],
    ['blank line in the middle', '#version: 0.2\nĠ t\n\nh e\n', (f) => `${f} line 3: expected two tokens separated by one space but found ""`],
    ['two spaces', 'Ġ  t\n', (f) => `${f} line 1: expected two tokens separated by one space`],
    ['token not in vocab', '#version: 0.2\nĠ t\nĠt hex\n', (f) => `${f} line 3 ("Ġt hex"): token "hex" is not in ${vocabPath()}`],
    ['merged token not in vocab', '#version: 0.2\nh e\nĠ he\n', (f) => `${f} line 3 ("Ġ he"): merged token "Ġhe" is not in ${vocabPath()}`],
    ['duplicate merge', '#version: 0.2\nĠ t\nh e\nĠ t\n', (f) => `${f} line 4 ("Ġ t"): duplicate of line 2`],
  ];
  test.each(badMerges)('merges.txt %s: error names the file and line', (_, text, message) => {
    writeTokenizer(undefined, text);
    expect(() => loadTokenizer(dir)).toThrow(message(mergesPath()));
  });

  test('merges.txt without a #version line, with CRLF line ends and no final newline is accepted', () => {
    writeTokenizer(undefined, 'Ġ t\r\nh e\r\nĠt he');
    expect(loadTokenizer(dir).encode(' the')).toEqual([258]);
  });
});
