/**
 * Near-duplicate texts: MinHash signatures over word shingles, LSH banding to find candidate pairs,
 * and the exact Jaccard similarity of every candidate's shingle sets as the verdict (so no pair
 * below the threshold is ever reported; MinHash/LSH only decides which pairs are compared).
 *
 * For a pair with Jaccard similarity J, one band of r rows agrees with probability J^r and the pair
 * becomes a candidate with probability 1 - (1 - J^r)^b (Leskovec, Rajaraman, Ullman, "Mining of
 * Massive Datasets", ch. 3.4). rowsPerBand picks the largest r (b = permutations / r) that still
 * makes a pair at the threshold a candidate with probability >= 0.999.
 */

export interface ShingleSettings {
  /** Shingles are runs of `k` consecutive words of the normalized text. */
  unit: 'word';
  k: number;
}

export interface MinHashSettings {
  permutations: number;
  seed: number;
  shingles: ShingleSettings;
}

export const DEFAULT_MINHASH: MinHashSettings = { permutations: 128, seed: 1234, shingles: { unit: 'word', k: 3 } };

/** The probability that LSH makes a pair of Jaccard similarity j a candidate. */
export function candidateProbability(j: number, bands: number, rows: number): number {
  return 1 - Math.pow(1 - Math.pow(j, rows), bands);
}

/** The banding for `permutations` hashes: the largest rows-per-band dividing it with P(candidate | threshold) >= 0.999. */
export function chooseBanding(permutations: number, threshold: number): { bands: number; rows: number } {
  let best = { bands: permutations, rows: 1 };
  for (let rows = 1; rows <= permutations; rows++) {
    if (permutations % rows !== 0) continue;
    const bands = permutations / rows;
    if (candidateProbability(threshold, bands, rows) >= 0.999) best = { bands, rows };
  }
  return best;
}

/**
 * Unicode NFKC, lower case, every run of whitespace one space, trimmed: the form exact duplicates
 * are compared in and shingles are cut from.
 */
export function normalizeText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();
}

/** The distinct k-word shingles of a normalized text (a text of fewer than k words is one shingle). */
export function shingles(normalized: string, k: number): Set<string> {
  const words = normalized.split(' ').filter((w) => w.length > 0);
  const out = new Set<string>();
  if (words.length === 0) return out;
  if (words.length <= k) {
    out.add(words.join(' '));
    return out;
  }
  for (let i = 0; i + k <= words.length; i++) out.add(words.slice(i, i + k).join(' '));
  return out;
}

/** |A ∩ B| / |A ∪ B|, 1 for two empty sets. */
export function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let common = 0;
  for (const s of small) if (large.has(s)) common++;
  return common / (a.size + b.size - common);
}

/** FNV-1a over UTF-16 code units, then murmur3's finalizer: a well-mixed 32-bit hash of a shingle. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seeds of the permutation family: permutation i of x is fmix32(x ^ seeds[i]) (a 32-bit mixing bijection). */
function permutationSeeds(permutations: number, seed: number): Uint32Array {
  const seeds = new Uint32Array(permutations);
  let state = fmix32(seed >>> 0 ^ 0x9e3779b9);
  for (let i = 0; i < permutations; i++) {
    state = fmix32((state + 0x6d2b79f5) >>> 0);
    seeds[i] = state;
  }
  return seeds;
}

/** The MinHash signature (permutations,) of a shingle set: per permutation, the smallest permuted hash. */
export function minHashSignature(set: ReadonlySet<string>, seeds: Uint32Array): Uint32Array {
  const sig = new Uint32Array(seeds.length).fill(0xffffffff);
  for (const s of set) {
    const h = hashString(s);
    for (let i = 0; i < seeds.length; i++) {
      const v = fmix32(h ^ seeds[i]);
      if (v < sig[i]) sig[i] = v;
    }
  }
  return sig;
}

export interface NearPair {
  /** Indices into the texts given, a < b. */
  a: number;
  b: number;
  /** Exact Jaccard similarity of the two shingle sets. */
  jaccard: number;
}

export interface NearDuplicateResult {
  pairs: NearPair[];
  /** Pairs LSH proposed (each compared exactly once). */
  candidates: number;
  bands: number;
  rowsPerBand: number;
  /** Buckets holding more candidate pairs than maxPairsPerBucket, where only that many were compared. */
  capped: BucketCap;
}

export interface BucketCap {
  maxPairsPerBucket: number;
  /** Buckets over the cap; the most texts one bucket held; pairs of capped buckets not compared there. */
  buckets: number;
  largestBucket: number;
  pairsNotCompared: number;
}

/**
 * Candidate pairs compared per LSH bucket at most. A bucket of m texts proposes m(m-1)/2 pairs, so
 * thousands of near-identical texts (boilerplate with a number changed) would cost millions of
 * Jaccard comparisons; 50,000 pairs is a bucket of 317 texts compared fully. Buckets of ordinary
 * data stay far below it; when one does not, the result says so and its near pairs are a lower bound.
 */
export const DEFAULT_MAX_PAIRS_PER_BUCKET = 50_000;

/**
 * Pairs of texts (already normalized) whose shingle sets have Jaccard >= threshold, found through
 * MinHash + LSH and verified exactly. Texts with no words take no part. Identical texts share every
 * bucket: callers with many copies should pass each distinct text once (the audit does).
 *
 * In a bucket over maxPairsPerBucket, pairs are compared row by row (text 1 with every later text,
 * then text 2, ...) until the cap: every text of the bucket is still compared with its first texts.
 */
export function nearDuplicatePairs(
  normalized: readonly string[], threshold: number, settings: MinHashSettings = DEFAULT_MINHASH, maxPairsPerBucket = DEFAULT_MAX_PAIRS_PER_BUCKET,
): NearDuplicateResult {
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`near-duplicate threshold: expected a number in (0, 1] but received ${threshold}`);
  if (!(Number.isSafeInteger(maxPairsPerBucket) && maxPairsPerBucket >= 1)) throw new RangeError(`near-duplicate search: expected maxPairsPerBucket to be a whole number >= 1 but received ${maxPairsPerBucket}`);
  const { bands, rows } = chooseBanding(settings.permutations, threshold);
  const seeds = permutationSeeds(settings.permutations, settings.seed);
  const sets = normalized.map((t) => shingles(t, settings.shingles.k));
  const buckets = new Map<string, number[]>();
  sets.forEach((set, index) => {
    if (set.size === 0) return;
    const sig = minHashSignature(set, seeds);
    for (let band = 0; band < bands; band++) {
      const key = `${band}:${Array.from(sig.subarray(band * rows, (band + 1) * rows)).join(',')}`;
      const bucket = buckets.get(key);
      if (bucket) bucket.push(index);
      else buckets.set(key, [index]);
    }
  });
  const compared = new Set<number>();
  const pairs: NearPair[] = [];
  const capped: BucketCap = { maxPairsPerBucket, buckets: 0, largestBucket: 0, pairsNotCompared: 0 };
  const n = normalized.length;
  for (const bucket of buckets.values()) {
    const m = bucket.length;
    const proposed = (m * (m - 1)) / 2;
    if (proposed > maxPairsPerBucket) {
      capped.buckets++;
      capped.largestBucket = Math.max(capped.largestBucket, m);
      capped.pairsNotCompared += proposed - maxPairsPerBucket;
    }
    let budget = maxPairsPerBucket;
    for (let i = 0; i < m && budget > 0; i++) {
      for (let j = i + 1; j < m && budget > 0; j++, budget--) {
        const a = Math.min(bucket[i], bucket[j]), b = Math.max(bucket[i], bucket[j]);
        const id = a * n + b;
        if (compared.has(id)) continue;
        compared.add(id);
        const similarity = jaccard(sets[a], sets[b]);
        if (similarity >= threshold) pairs.push({ a, b, jaccard: similarity });
      }
    }
  }
  pairs.sort((x, y) => x.a - y.a || x.b - y.b);
  return { pairs, candidates: compared.size, bands, rowsPerBand: rows, capped };
}
