/**
 * Text as words and the whitespace between them, so that word-level augmentation (EDA, word
 * dropout) changes words and keeps the text's layout (line breaks, indentation) around them:
 *
 *   text = gaps[0] + words[0] + gaps[1] + words[1] + ... + words[n-1] + gaps[n]
 *
 * A word is a run of non-whitespace characters, punctuation included ("car," is one word); its
 * core is the run of letters inside it that WordNet and the stop-word list are asked about.
 */
import { Rng } from '../../util/rng';

export interface WordSequence {
  /** n words. */
  words: string[];
  /** n + 1 gaps (whitespace; the first and last may be empty). */
  gaps: string[];
}

export function splitWords(text: string): WordSequence {
  const words: string[] = [];
  const gaps: string[] = [];
  let last = 0;
  for (const m of text.matchAll(/\S+/g)) {
    gaps.push(text.slice(last, m.index));
    words.push(m[0]);
    last = m.index! + m[0].length;
  }
  gaps.push(text.slice(last));
  return { words, gaps };
}

export function joinWords(s: WordSequence): string {
  let text = s.gaps[0];
  for (let i = 0; i < s.words.length; i++) text += s.words[i] + s.gaps[i + 1];
  return text;
}

/** A word's letters-only core with what surrounds it: "(Cars," -> {before "(", core "Cars", after ","}; null without one. */
export function wordCore(word: string): { before: string; core: string; after: string } | null {
  const m = /^([^\p{L}]*)(\p{L}+)([^\p{L}]*)$/u.exec(word);
  return m ? { before: m[1], core: m[2], after: m[3] } : null;
}

function lineBreaks(gap: string): number {
  return (gap.match(/\n/g) ?? []).length;
}

/**
 * Removes word i; its two gaps become one. The text's leading and trailing whitespace stay as they
 * were (the first word takes the gap after it along, the last the gap before it); between words, the
 * gap with more line breaks stays (a paragraph break survives), else the shorter (no doubled spaces).
 */
export function removeWord(s: WordSequence, i: number): void {
  const before = s.gaps[i], after = s.gaps[i + 1];
  const last = s.words.length - 1;
  let kept: string;
  if (i === 0 && i !== last) kept = before;
  else if (i === last && i !== 0) kept = after;
  else if (lineBreaks(before) !== lineBreaks(after)) kept = lineBreaks(before) > lineBreaks(after) ? before : after;
  else kept = after.length < before.length ? after : before;
  s.words.splice(i, 1);
  s.gaps.splice(i, 2, kept);
}

/** Inserts `word` before word k (k = n: at the end), separated by one space. */
export function insertWord(s: WordSequence, k: number, word: string): void {
  const n = s.words.length;
  s.words.splice(k, 0, word);
  s.gaps.splice(k < n ? k + 1 : n, 0, ' ');
}

/**
 * Word dropout / EDA's random deletion: each word is removed with probability p; when every word
 * would go, one of them, chosen at random, stays (EDA keeps a sentence non-empty).
 */
export function dropWords(text: string, p: number, rng: Rng): string {
  const s = splitWords(text);
  if (s.words.length === 0) return text;
  const dropped = s.words.map(() => rng.next() < p);
  if (dropped.every(Boolean)) dropped[rng.int(dropped.length)] = false;
  for (let i = s.words.length - 1; i >= 0; i--) if (dropped[i]) removeWord(s, i);
  return joinWords(s);
}

/** `replacement` written with the capitalisation of `original` (all caps, first capital, or as it is). */
export function matchCase(original: string, replacement: string): string {
  if (original.length > 1 && original === original.toUpperCase() && original !== original.toLowerCase()) return replacement.toUpperCase();
  if (original[0] !== original[0].toLowerCase()) return replacement[0].toUpperCase() + replacement.slice(1);
  return replacement;
}
