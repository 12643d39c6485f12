/**
 * String helpers that behave like Python 3's str methods, for metrics whose reference
 * implementations are Python (sacrebleu, rouge-score). JavaScript's \s and trim() use a
 * different whitespace set than Python's str.split()/str.strip(): Python also treats
 * U+001C..U+001F and U+0085 as whitespace, and does NOT treat U+FEFF as whitespace.
 */

// Every code point for which Python's str.isspace() is true (Unicode bidi class WS/B/S or
// category Zs): \t \n \v \f \r, U+001C..U+001F, space, U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
const PY_WHITESPACE_CLASS =
  '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const PY_WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE_CLASS}]+`, 'u');
const PY_TRAILING_WHITESPACE = new RegExp(`[${PY_WHITESPACE_CLASS}]+$`, 'u');

/** Python's `s.split()` (no argument): split on runs of whitespace, drop empty pieces. */
export function pySplitWhitespace(s: string): string[] {
  return s.split(PY_WHITESPACE_RUN).filter((piece) => piece.length > 0);
}

/** Python's `s.rstrip()` (no argument). */
export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING_WHITESPACE, '');
}
