/**
 * GPT-2's byte-level alphabet: every byte 0..255 is given a printable Unicode character so that
 * vocab.json and merges.txt can store arbitrary byte strings as text without whitespace or control
 * characters. Bytes that are already printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
 * themselves; the remaining 68 bytes map, in increasing byte order, to U+0100, U+0101, ...
 * (so space 0x20 -> 'Ġ' U+0120, newline 0x0A -> 'Ċ' U+010A).
 */

function isPrintableLatin1(byte: number): boolean {
  return (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
}

/** byte -> the character that stands for it in vocab.json / merges.txt. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = [];
  let nextSubstitute = 0x100;
  for (let byte = 0; byte < 256; byte++) {
    table.push(String.fromCharCode(isPrintableLatin1(byte) ? byte : nextSubstitute++));
  }
  return table;
})();

/** The inverse: character code -> byte, or -1 for characters outside the alphabet. */
export const CHAR_CODE_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(0x144).fill(-1); // the largest substitute is U+0143
  BYTE_TO_CHAR.forEach((char, byte) => { table[char.charCodeAt(0)] = byte; });
  return table;
})();

/** Bytes of a token written in the byte-level alphabet, or null if some character is outside it. */
export function byteLevelToBytes(token: string): Uint8Array | null {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    const byte = code < CHAR_CODE_TO_BYTE.length ? CHAR_CODE_TO_BYTE[code] : -1;
    if (byte < 0) return null;
    bytes[i] = byte;
  }
  return bytes;
}

/** A byte string written in the byte-level alphabet (the inverse of byteLevelToBytes). */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += BYTE_TO_CHAR[byte];
  return text;
}
