/**
 * An independent BigInt implementation of the dropout mask's definition
 * (native/include/gptune/dropout_mask.h), for the tests of every kernel that drops (LoRA, activations,
 * attention probabilities): SplitMix64 over 64-bit integers,
 *   key = mix64(seed + GOLDEN), bits(i) = mix64(key + (i + 1) * GOLDEN), keep iff (bits >> 40) / 2^24 >= p.
 */

const MASK64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;

export function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The float32 factor of kept elements, 1 / (1 - p) with p, 1 - p and the quotient in float32. */
export function dropoutScale(p: number): number {
  return Math.fround(1 / Math.fround(1 - Math.fround(p)));
}

/**
 * Keep flags of elements first .. first + count - 1 for (seed, p): 1 kept, 0 dropped. p is rounded
 * to float32 as the kernels receive it; the comparison u >= p is exact in float64.
 */
export function dropoutKeep(seed: number, p: number, count: number, first = 0): Uint8Array {
  const p32 = Math.fround(p);
  const key = mix64((BigInt(seed) + GOLDEN) & MASK64);
  const keep = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const bits = mix64((key + (BigInt(first + i) + 1n) * GOLDEN) & MASK64);
    keep[i] = Number(bits >> 40n) / 2 ** 24 >= p32 ? 1 : 0;
  }
  return keep;
}

/** The dropout multiplier of each element of an (N,C) input: 0 or dropoutScale(p); all 1 when p == 0. */
export function dropoutMultipliers(seed: number, p: number, count: number): Float64Array {
  if (p === 0) return new Float64Array(count).fill(1);
  const scale = dropoutScale(p);
  return Float64Array.from(dropoutKeep(seed, p, count), (k) => k * scale);
}
