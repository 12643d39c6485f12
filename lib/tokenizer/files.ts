/**
 * Readers for Hugging Face's GPT-2 tokenizer files, reporting every problem with file and line.
 *
 * vocab.json: one JSON object, byte-level token string -> id: {"!": 0, "\"": 1, ..., "<|endoftext|>": 50256}
 * merges.txt: "#version: 0.2" then one merge per line, "left right" (byte-level tokens, one space),
 *             most frequent first: the line order is the merge priority (rank).
 */

/** Largest token id accepted; real vocabularies are far smaller (GPT-2: 50256). */
export const MAX_TOKEN_ID = (1 << 24) - 1;

const SIMPLE_ESCAPES = new Map([['"', '"'], ['\\', '\\'], ['/', '/'], ['b', '\b'], ['f', '\f'], ['n', '\n'], ['r', '\r'], ['t', '\t']]);

function quoteShort(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}...` : text);
}

/**
 * Parse vocab.json. A dedicated parser for its flat shape (rather than JSON.parse) so that every
 * error, syntax included, names the line, and duplicate tokens (which JSON.parse would silently
 * collapse to the last) are caught.
 */
export function parseVocabJSON(text: string, fileName: string): Map<string, number> {
  const n = text.length;
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0; // tolerate a UTF-8 byte-order mark
  let line = 1;
  const fail = (what: string): never => {
    const found = pos >= n ? 'the end of the file' : quoteShort(text.slice(pos, pos + 12).split('\n')[0] || '\n');
    throw new Error(`${fileName} line ${line}: ${what} but found ${found}`);
  };
  const skipWhitespace = () => {
    for (; pos < n; pos++) {
      const c = text.charCodeAt(pos);
      if (c === 0x0a) line++;
      else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return;
    }
  };
  const readString = (): string => {
    pos++; // opening quote
    let out = '';
    let runStart = pos;
    for (;;) {
      if (pos >= n) fail('expected the closing " of a string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) { out += text.slice(runStart, pos); pos++; return out; }
      if (c < 0x20) fail('expected a string without raw control characters (escape them)');
      if (c !== 0x5c) { pos++; continue; }
      out += text.slice(runStart, pos);
      const escape = text[pos + 1];
      const unescaped = escape === undefined ? undefined : SIMPLE_ESCAPES.get(escape);
      if (unescaped !== undefined) {
        out += unescaped;
        pos += 2;
      } else if (escape === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) {
        out += String.fromCharCode(parseInt(text.slice(pos + 2, pos + 6), 16));
        pos += 6;
      } else {
        fail('expected a valid escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
      }
      runStart = pos;
    }
  };

  const vocab = new Map<string, number>();
  const lineOfToken = new Map<string, number>();
  skipWhitespace();
  if (text[pos] !== '{') fail('expected "{" starting an object of token -> id');
  pos++;
  skipWhitespace();
  if (text[pos] === '}') {
    pos++;
  } else {
    for (;;) {
      skipWhitespace();
      if (text[pos] !== '"') fail('expected a token string in double quotes');
      const tokenLine = line;
      const token = readString();
      skipWhitespace();
      if (text[pos] !== ':') fail(`expected ":" after token ${quoteShort(token)}`);
      pos++;
      skipWhitespace();
      const number = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(pos, pos + 32));
      if (number === null) fail(`expected an integer id for token ${quoteShort(token)}`);
      const id = Number(number![0]);
      if (!Number.isSafeInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
        fail(`expected an integer id in [0, ${MAX_TOKEN_ID}] for token ${quoteShort(token)}`);
      }
      pos += number![0].length;
      if (vocab.has(token)) {
        throw new Error(`${fileName} line ${tokenLine}: token ${quoteShort(token)} appears twice (first on line ${lineOfToken.get(token)})`);
      }
      vocab.set(token, id);
      lineOfToken.set(token, tokenLine);
      skipWhitespace();
      if (text[pos] === ',') { pos++; continue; }
      if (text[pos] === '}') { pos++; break; }
      fail('expected "," or "}" after an id');
    }
  }
  skipWhitespace();
  if (pos < n) fail('expected nothing after the closing "}"');
  return vocab;
}

export interface MergesFile {
  /** [left, right] byte-level tokens, in rank order (the first line is rank 0). */
  pairs: Array<[string, string]>;
  /** The 1-based line of each pair in the file, for error messages. */
  lineNumbers: number[];
}

/** Parse merges.txt: an optional "#version" first line, then one "left right" pair per line. */
export function parseMergesTxt(text: string, fileName: string): MergesFile {
  const lines = text.split('\n');
  // A final newline leaves one empty string; trailing blank lines carry no merges.
  while (lines.length > 0 && lines[lines.length - 1].replace(/\r$/, '') === '') lines.pop();
  const pairs: Array<[string, string]> = [];
  const lineNumbers: number[] = [];
  lines.forEach((rawLine, index) => {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (index === 0 && line.startsWith('#version')) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new Error(`${fileName} line ${index + 1}: expected two tokens separated by one space but found ${quoteShort(line)}`);
    }
    pairs.push([parts[0], parts[1]]);
    lineNumbers.push(index + 1);
  });
  return { pairs, lineNumbers };
}
