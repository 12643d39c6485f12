/**
 * BPE merge learning (lib/tokenizer/bpe_trainer.ts, the demo's tokenizer) against a
 * recount-everything reference and hand-worked examples, and the tokenizer files it writes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BPETokenizer } from '../../lib/tokenizer';
import { bpeFiles, trainBPE, trainBPENaive } from '../../lib/tokenizer/bpe_trainer';
import { Rng } from '../../lib/util/rng';

/** Seeded text with many repeated words from a small alphabet (so pair counts tie often), plus odd characters. */
function randomText(seed: number, words: number): string {
  const rng = new Rng(seed);
  const alphabet = ['a', 'b', 'c', 'ab', 'é', '日', '1', '.', "'s", '  ', '\n'];
  const parts: string[] = [];
  for (let w = 0; w < words; w++) {
    const n = 1 + rng.int(5);
    let word = rng.next() < 0.7 ? ' ' : '';
    for (let i = 0; i < n; i++) word += alphabet[rng.int(alphabet.length)];
    parts.push(word);
  }
  return parts.join('');
}

describe('BPE merge learning', () => {
  test('the most frequent pair is merged first; a pair below minPairCount ends learning (worked by hand)', () => {
    // Words "abab" and " abab": a-b occurs 4 times, b-a twice, " "-a once -> merge (a, b); then
    // ab-ab twice -> merge (ab, ab); then only " "-abab once, below the minimum of 2.
    const trained = trainBPE(['abab abab'], { vocabSize: 300 });
    expect(trained.merges).toEqual([['a', 'b'], ['ab', 'ab']]);
    expect(trained.vocab.get('ab')).toBe(256);
    expect(trained.vocab.get('abab')).toBe(257);
    expect(trained.vocab.get('<|endoftext|>')).toBe(258);
    expect(trained.vocab.size).toBe(259);
  });

  test('ties go to the smaller (left id, right id) pair', () => {
    // " cd" and "ab": every pair occurs once. Byte ids: " " = 32, "a" = 97, "c" = 99.
    const trained = trainBPE(['ab cd'], { vocabSize: 300, minPairCount: 1 });
    expect(trained.merges).toEqual([['Ġ', 'c'], ['a', 'b'], ['Ġc', 'd']]);
  });

  test.each([[1, 300], [2, 420], [3, 257]])('the incremental trainer learns exactly the merges of the recount reference (seed %i, vocabulary %i)', (seed, vocabSize) => {
    const texts = [randomText(seed, 3000), randomText(seed + 100, 777), 'Call me Ishmael. Some years ago<|endoftext|>never mind how long precisely'];
    const fast = trainBPE(texts, { vocabSize });
    const reference = trainBPENaive(texts, { vocabSize });
    expect(fast.merges).toEqual(reference.merges);
    expect([...fast.vocab]).toEqual([...reference.vocab]);
    expect(fast.vocab.size).toBeLessThanOrEqual(vocabSize);
    if (vocabSize === 257) expect(fast.merges).toEqual([]);
  });

  test('the vocabulary fills up to the size asked for when the text allows, even when merged strings repeat', () => {
    const trained = trainBPE([randomText(9, 20000)], { vocabSize: 333, minPairCount: 1 });
    expect(trained.vocab.size).toBe(333);
    expect(Math.max(...trained.vocab.values())).toBe(332);
    expect(new Set(trained.vocab.values()).size).toBe(333);
  });

  test('vocab.json + merges.txt load in BPETokenizer, which round-trips text and uses the merges', () => {
    const text = randomText(5, 4000);
    const files = bpeFiles(trainBPE([text], { vocabSize: 400 }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-bpe-'));
    try {
      for (const [name, contents] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), contents);
      const tokenizer = BPETokenizer.fromFolder(dir);
      expect(tokenizer.vocabSize).toBe(400);
      expect(tokenizer.eosTokenId).toBe(399);
      const probe = randomText(6, 500) + ' Ünïcödé 😀 <|endoftext|> tail';
      const ids = tokenizer.encode(probe);
      expect(tokenizer.decode(ids)).toBe(probe);
      expect(ids).toContain(399);
      // Learned on text like this, the merges must shorten it well below one token per byte.
      expect(ids.length).toBeLessThan(0.6 * Buffer.byteLength(probe, 'utf8'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a vocabulary smaller than bytes + <|endoftext|> is refused', () => {
    expect(() => trainBPE(['x'], { vocabSize: 256 })).toThrow(/vocabSize must be a whole number >= 257.*received 256/);
  });
});
