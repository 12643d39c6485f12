/**
 * Textual noise: the mistakes people make typing. Each operation takes its rate (a probability per
 * character or per word) and a seeded Rng, and works on code points (never half a surrogate pair).
 * Characters that count are letters and digits (\p{L}, \p{N}); whitespace and punctuation stay.
 *
 *   char swap     each adjacent pair of word characters (that differ) is swapped with probability
 *                 rate, left to right; a swapped pair is not swapped again ("form" -> "from")
 *   char delete   each word character is deleted with probability rate
 *   typo          each letter a-z (either case) is replaced with probability rate by one of its
 *                 neighbours on a US QWERTY keyboard, chosen uniformly (case kept)
 *   word dropout  each word is removed with probability rate (words.ts: dropWords)
 */
import { Rng } from '../../util/rng';
import { dropWords } from './words';

const isWordChar = (c: string) => /^[\p{L}\p{N}]$/u.test(c);

/**
 * QWERTY neighbours of each letter: the keys left and right on its row, the two above it and the two
 * below it. Rows are staggered (each sits half a key right of the one above), so key c of a row
 * touches keys c and c+1 of the row above and c-1 and c of the row below.
 */
const QWERTY_ROWS = ['qwertyuiop', 'asdfghjkl', 'zxcvbnm'];

export const QWERTY_NEIGHBOURS: Readonly<Record<string, string>> = (() => {
  const table: Record<string, string> = {};
  QWERTY_ROWS.forEach((row, r) => {
    for (let c = 0; c < row.length; c++) {
      const near = [row[c - 1], row[c + 1], QWERTY_ROWS[r - 1]?.[c], QWERTY_ROWS[r - 1]?.[c + 1], QWERTY_ROWS[r + 1]?.[c - 1], QWERTY_ROWS[r + 1]?.[c]];
      table[row[c]] = near.filter((k): k is string => k !== undefined).sort().join('');
    }
  });
  return table;
})();

export function swapCharacters(text: string, rate: number, rng: Rng): string {
  const chars = Array.from(text);
  for (let i = 0; i + 1 < chars.length; i++) {
    if (!isWordChar(chars[i]) || !isWordChar(chars[i + 1]) || chars[i] === chars[i + 1]) continue;
    if (rng.next() < rate) {
      [chars[i], chars[i + 1]] = [chars[i + 1], chars[i]];
      i++;
    }
  }
  return chars.join('');
}

export function deleteCharacters(text: string, rate: number, rng: Rng): string {
  return Array.from(text).filter((c) => !isWordChar(c) || rng.next() >= rate).join('');
}

export function keyboardTypos(text: string, rate: number, rng: Rng): string {
  return Array.from(text).map((c) => {
    const neighbours = QWERTY_NEIGHBOURS[c.toLowerCase()];
    if (neighbours === undefined || rng.next() >= rate) return c;
    const typed = neighbours[rng.int(neighbours.length)];
    return c === c.toLowerCase() ? typed : typed.toUpperCase();
  }).join('');
}

export interface NoiseRates {
  charSwap: number;
  charDelete: number;
  typo: number;
  wordDropout: number;
}

/** All four, in this order: word dropout, then swaps, deletions and typos on the words that stay; a rate of 0 skips its step. */
export function addNoise(text: string, rates: NoiseRates, rng: Rng): string {
  let t = text;
  if (rates.wordDropout > 0) t = dropWords(t, rates.wordDropout, rng);
  if (rates.charSwap > 0) t = swapCharacters(t, rates.charSwap, rng);
  if (rates.charDelete > 0) t = deleteCharacters(t, rates.charDelete, rng);
  if (rates.typo > 0) t = keyboardTypos(t, rates.typo, rng);
  return t;
}
