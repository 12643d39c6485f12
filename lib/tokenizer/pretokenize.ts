/**
 * GPT-2's pre-tokenisation: the text is cut into "words" before BPE, so that merges never cross
 * a word boundary. The definition is GPT-2's regex (encoder.py, also HF's GPT2Tokenizer):
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * pretokenizeWithRegex is that regex, the reference. forEachPretoken is a hand-written scanner for
 * the same language, about twice as fast in V8 (no match objects, one class lookup per char); a
 * test compares the two on varied and random text.
 */

/**
 * The pattern with \s spelled \p{White_Space}: JavaScript's \s also matches U+FEFF and misses
 * U+0085, unlike Python's `regex` module (GPT-2, HF) and the Rust regex engines (tiktoken, HF fast).
 */
export const GPT2_PRETOKENIZE_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+";

/** The words of `text`, by the regex itself. */
export function pretokenizeWithRegex(text: string): string[] {
  return Array.from(text.matchAll(new RegExp(GPT2_PRETOKENIZE_PATTERN, 'gu')), (m) => m[0]);
}

const UNKNOWN = 0;
const LETTER = 1; // \p{L}
const NUMBER = 2; // \p{N}
const SPACE = 3; // \p{White_Space}
const OTHER = 4; // anything else, including lone surrogates

/** Character class per code point, filled on first sight (1.1 MB, shared by all tokenizers). */
let classByCodePoint: Uint8Array | undefined;
const letterPattern = /^\p{L}$/u;
const numberPattern = /^\p{N}$/u;
const spacePattern = /^\p{White_Space}$/u;

function classOf(codePoint: number, table: Uint8Array): number {
  let cls = table[codePoint];
  if (cls === UNKNOWN) {
    const char = String.fromCodePoint(codePoint);
    cls = letterPattern.test(char) ? LETTER : numberPattern.test(char) ? NUMBER : spacePattern.test(char) ? SPACE : OTHER;
    table[codePoint] = cls;
  }
  return cls;
}

const APOSTROPHE = 0x27;
const SPACE_CHAR = 0x20;

/** Length (2 or 3) of a contraction 's 't 'm 'd 're 've 'll starting at `i`, or 0. */
function contractionLength(text: string, i: number): number {
  const a = text.charCodeAt(i + 1); // NaN past the end, which matches nothing below
  if (a === 0x73 /* s */ || a === 0x74 /* t */ || a === 0x6d /* m */ || a === 0x64 /* d */) return 2;
  const b = text.charCodeAt(i + 2);
  if ((a === 0x72 /* r */ && b === 0x65 /* e */) || (a === 0x76 /* v */ && b === 0x65) || (a === 0x6c /* l */ && b === 0x6c)) return 3;
  return 0;
}

/** Calls onWord(start, end) for each word of `text`, in order; the words tile the text. */
export function forEachPretoken(text: string, onWord: (start: number, end: number) => void): void {
  const table = (classByCodePoint ??= new Uint8Array(0x110000));
  const n = text.length;
  let i = 0;
  while (i < n) {
    const start = i;
    const codePoint = text.codePointAt(i)!;
    if (codePoint === APOSTROPHE) {
      const length = contractionLength(text, i);
      if (length > 0) {
        onWord(start, start + length);
        i += length;
        continue;
      }
    }
    let cls = classOf(codePoint, table);
    let runStart = i;
    // " ?\p{L}+" and friends: one leading U+0020 joins a following non-space run.
    if (codePoint === SPACE_CHAR && i + 1 < n) {
      const nextClass = classOf(text.codePointAt(i + 1)!, table);
      if (nextClass !== SPACE) { cls = nextClass; runStart = i + 1; }
    }
    if (cls === SPACE) {
      // White_Space characters are all in the BMP: one code unit each.
      let end = i + 1;
      while (end < n && classOf(text.charCodeAt(end), table) === SPACE) end++;
      // "\s+(?!\S)": before a non-space, the run gives up its last character (which then becomes
      // " word" or a one-character "\s+" word); a run of one is matched by "\s+" alone.
      if (end < n && end - 1 > i) end--;
      onWord(start, end);
      i = end;
      continue;
    }
    let end = runStart;
    while (end < n) {
      const c = text.codePointAt(end)!;
      if (classOf(c, table) !== cls) break;
      end += c > 0xffff ? 2 : 1;
    }
    onWord(start, end);
    i = end;
  }
}
