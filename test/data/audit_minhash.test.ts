/**
 * Near-duplicates: MinHash + LSH against exact all-pairs Jaccard computed here, independently, on
 * small seeded sets (texts and their edited copies, so that similarities spread across the threshold).
 */
import { candidateProbability, chooseBanding, nearDuplicatePairs, normalizeText } from '../../lib/data/audit';
import { Rng } from '../../lib/util/rng';

/** The reference: k-word shingles as a set of strings, and |A ∩ B| / |A ∪ B|, all pairs. */
function referencePairs(texts: readonly string[], k: number, threshold: number): Map<string, number> {
  const sets = texts.map((t) => {
    const w = t.split(' ');
    const s = new Set<string>();
    if (w.length <= k) s.add(w.join(' '));
    else for (let i = 0; i + k <= w.length; i++) s.add(w.slice(i, i + k).join(' '));
    return s;
  });
  const out = new Map<string, number>();
  for (let a = 0; a < texts.length; a++) {
    for (let b = a + 1; b < texts.length; b++) {
      const inter = [...sets[a]].filter((x) => sets[b].has(x)).length;
      const j = inter / (sets[a].size + sets[b].size - inter);
      if (j >= threshold) out.set(`${a},${b}`, j);
    }
  }
  return out;
}

/** 60 base texts of 30-80 words from a 300-word vocabulary, each with 3 copies edited at 2%, 6% and 15% of words. */
function corpus(seed: number): string[] {
  const rng = new Rng(seed);
  const vocab = Array.from({ length: 300 }, (_, i) => `w${i.toString(36)}`);
  const texts: string[] = [];
  for (let d = 0; d < 60; d++) {
    const words = Array.from({ length: 30 + rng.int(51) }, () => vocab[rng.int(vocab.length)]);
    texts.push(words.join(' '));
    for (const rate of [0.02, 0.06, 0.15]) texts.push(words.map((w) => (rng.next() < rate ? vocab[rng.int(vocab.length)] : w)).join(' '));
  }
  return texts;
}

describe('nearDuplicatePairs', () => {
  test.each([[0.8, 1], [0.5, 2], [0.9, 3]])('threshold %s: every pair at or above it is found, none below is reported (seed %s)', (threshold, seed) => {
    const texts = corpus(seed);
    const reference = referencePairs(texts, 3, threshold);
    // The set does test something: many pairs, some of them just above the threshold.
    expect(reference.size).toBeGreaterThan(30);
    expect([...reference.values()].filter((j) => j < threshold + 0.1).length).toBeGreaterThan(3);
    const result = nearDuplicatePairs(texts, threshold);
    const found = new Map(result.pairs.map((p) => [`${p.a},${p.b}`, p.jaccard]));
    expect([...reference.keys()].filter((k) => !found.has(k))).toEqual([]); // recall 1
    for (const [key, j] of found) expect([key, j]).toEqual([key, reference.get(key)]); // verified: exact values, none below
    // LSH compared far fewer pairs than all of them, and no bucket of ordinary data reaches the cap.
    expect(result.candidates).toBeLessThan((texts.length * (texts.length - 1)) / 2 / 4);
    expect(result.capped).toEqual({ maxPairsPerBucket: 50_000, buckets: 0, largestBucket: 0, pairsNotCompared: 0 });
  });

  test('thousands of near-identical texts: each bucket compares at most the cap, and says so', () => {
    // 2,000 copies of a 40-word boilerplate differing only in the last word: every pair has Jaccard
    // 37/39 (38 shingles each, 37 shared), so LSH puts nearly all of them in the same buckets.
    const boilerplate = Array.from({ length: 39 }, (_, i) => `b${i}`).join(' ');
    const texts = Array.from({ length: 2000 }, (_, i) => `${boilerplate} ref${i}`);
    const started = Date.now();
    const result = nearDuplicatePairs(texts, 0.8, undefined, 5_000);
    expect(Date.now() - started).toBeLessThan(20_000); // all pairs would be 1,999,000 Jaccard comparisons per bucket
    expect(result.capped.maxPairsPerBucket).toBe(5_000);
    expect(result.capped.buckets).toBeGreaterThan(0);
    expect(result.capped.largestBucket).toBeGreaterThan(1000);
    expect(result.capped.pairsNotCompared).toBeGreaterThan(result.capped.buckets * (1000 * 999 / 2 - 5_000));
    // At most the cap per bucket was compared; whatever was reported is right (a lower bound, never a wrong pair).
    expect(result.candidates).toBeLessThanOrEqual(5_000 * result.bands);
    expect(result.pairs.length).toBeGreaterThan(0);
    for (const p of result.pairs) expect(p.jaccard).toBe(37 / 39);
    expect(() => nearDuplicatePairs(texts.slice(0, 2), 0.8, undefined, 0)).toThrow('expected maxPairsPerBucket to be a whole number >= 1 but received 0');
  });

  test('pairs just below the threshold are not reported even when they are candidates', () => {
    // 10 shingles each, 8 shared: Jaccard 8/12 = 0.667.
    const a = 'a b c d e f g h i j k l', b = 'a b c d e f g h i j x y';
    expect(nearDuplicatePairs([a, b], 0.7).pairs).toEqual([]);
    expect(nearDuplicatePairs([a, b], 0.6).pairs).toEqual([{ a: 0, b: 1, jaccard: 8 / 12 }]);
  });

  test('banding: the largest rows per band with P(candidate | J = threshold) >= 0.999', () => {
    for (const t of [0.3, 0.5, 0.8, 0.9, 0.95]) {
      const { bands, rows } = chooseBanding(128, t);
      expect(bands * rows).toBe(128);
      // 1 - (1 - t^r)^b computed here for the next larger divisor: below 0.999.
      expect(1 - Math.pow(1 - Math.pow(t, rows), bands)).toBeGreaterThanOrEqual(0.999);
      if (rows < 128) expect(1 - Math.pow(1 - Math.pow(t, rows * 2), bands / 2)).toBeLessThan(0.999);
    }
    expect(chooseBanding(128, 0.8)).toEqual({ bands: 32, rows: 4 });
    expect(candidateProbability(0.8, 32, 4)).toBeCloseTo(1 - Math.pow(1 - 0.4096, 32), 12);
  });

  test('normalization: case, Unicode compatibility forms and whitespace', () => {
    expect(normalizeText('  Ｈello\tWORLD \n again ')).toBe('hello world again');
  });

  test('a threshold outside (0, 1] is refused', () => {
    expect(() => nearDuplicatePairs(['a'], 0)).toThrow('expected a number in (0, 1] but received 0');
    expect(() => nearDuplicatePairs(['a'], 1.5)).toThrow('received 1.5');
  });
});
