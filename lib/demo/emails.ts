/**
 * Raw RFC 822 emails (the SpamAssassin corpus) -> subject and readable body text: headers unfolded,
 * RFC 2047 encoded words in the subject decoded, MIME multipart bodies reduced to their first
 * text/plain part (else the first text/html part), quoted-printable and base64 decoded with the
 * part's charset, HTML reduced to its text, and all whitespace collapsed to single spaces so that
 * short token budgets hold words rather than layout.
 *
 * This is a pragmatic reader for a demo corpus, not a full MIME implementation: nested multiparts
 * are followed, attachments (non-text parts) are dropped, unknown charsets fall back to Latin-1.
 */

export interface ParsedEmail {
  subject: string;
  /** The readable body text, whitespace collapsed. */
  body: string;
}

type Headers = Map<string, string>;

/** Splits at the first blank line; header continuation lines (leading whitespace) are unfolded. */
function splitHeaders(raw: string): { headers: Headers; body: string } {
  const text = raw.replace(/\r\n?/g, '\n');
  const blank = text.indexOf('\n\n');
  const head = blank < 0 ? text : text.slice(0, blank);
  const body = blank < 0 ? '' : text.slice(blank + 2);
  const headers: Headers = new Map();
  let name = '';
  for (const line of head.split('\n')) {
    if (/^[ \t]/.test(line) && name) {
      headers.set(name, headers.get(name) + ' ' + line.trim());
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // the mbox "From " line and anything malformed
    name = line.slice(0, colon).trim().toLowerCase();
    // The first occurrence wins (later Subject-like lines are usually forwarded noise).
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
    else name = '';
  }
  return { headers, body };
}

/** Bytes -> text in `charset`, Latin-1 when the charset is unknown to this Node. */
function decodeBytes(bytes: Uint8Array, charset: string): string {
  try {
    return new TextDecoder(charset.toLowerCase() || 'latin1').decode(bytes);
  } catch {
    return new TextDecoder('latin1').decode(bytes);
  }
}

/** A string whose code units are bytes (as the corpus stores 8-bit mail) -> those bytes. */
function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

function decodeQuotedPrintable(text: string): Uint8Array {
  const soft = text.replace(/=[ \t]*\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const c = soft.charCodeAt(i);
    if (c === 0x3d /* = */ && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x100) {
      bytes.push(c);
    } else {
      for (const b of Buffer.from(soft[i], 'utf8')) bytes.push(b);
    }
  }
  return Uint8Array.from(bytes);
}

/** RFC 2047 encoded words (=?charset?B|Q?text?=) in a header value. */
export function decodeHeaderWords(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?') // whitespace between adjacent encoded words is dropped
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_, charset: string, encoding: string, text: string) => {
      const bytes = encoding.toUpperCase() === 'B'
        ? new Uint8Array(Buffer.from(text, 'base64'))
        : decodeQuotedPrintable(text.replace(/_/g, ' '));
      return decodeBytes(bytes, charset);
    });
}

const ENTITIES: Record<string, string> = { nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", copy: '(c)', reg: '(R)' };

/** HTML -> its visible text (roughly: no comments, styles, scripts or head; tags become spaces). */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(style|script|head|title)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name: string) => {
      if (name[0] === '#') {
        const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : ' ';
      }
      return ENTITIES[name.toLowerCase()] ?? whole;
    });
}

function contentType(headers: Headers): { type: string; params: Map<string, string> } {
  const value = headers.get('content-type') ?? 'text/plain';
  const [type, ...rest] = value.split(';');
  const params = new Map<string, string>();
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
  }
  return { type: type.trim().toLowerCase() || 'text/plain', params };
}

/** The text of one MIME entity: { text, html } tells whether it came from HTML. */
function entityText(headers: Headers, body: string, depth: number): { text: string; html: boolean } | null {
  const { type, params } = contentType(headers);
  if (type.startsWith('multipart/') && depth < 5) {
    const boundary = params.get('boundary');
    if (!boundary) return { text: body, html: false };
    const parts = body.split('--' + boundary).slice(1);
    let html: { text: string; html: boolean } | null = null;
    for (const part of parts) {
      if (part.startsWith('--')) break; // the closing delimiter
      const inner = splitHeaders(part.replace(/^[ \t]*\n/, ''));
      const found = entityText(inner.headers, inner.body, depth + 1);
      if (found && !found.html && found.text.trim()) return found;
      if (found && found.html && !html) html = found;
    }
    return html;
  }
  if (!type.startsWith('text/')) return null;
  const encoding = (headers.get('content-transfer-encoding') ?? '').toLowerCase();
  const charset = params.get('charset') ?? 'latin1';
  let text = body;
  if (encoding.includes('quoted-printable')) text = decodeBytes(decodeQuotedPrintable(body), charset);
  else if (encoding.includes('base64')) text = decodeBytes(new Uint8Array(Buffer.from(body.replace(/\s+/g, ''), 'base64')), charset);
  else if (/[\x80-\xff]/.test(body) && !/[^\x00-\xff]/.test(body)) text = decodeBytes(latin1Bytes(body), charset);
  const isHtml = type === 'text/html' || /^\s*<(!doctype|html|body|table|div|p)\b/i.test(text);
  return { text: isHtml ? htmlToText(text) : text, html: isHtml };
}

/** Collapses every run of whitespace (line breaks included) to one space; drops control characters. */
export function collapseWhitespace(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/g, '').replace(/\s+/g, ' ').trim();
}

/** Subject and readable body of a raw email. */
export function parseEmail(raw: string): ParsedEmail {
  const { headers, body } = splitHeaders(raw);
  const subject = collapseWhitespace(decodeHeaderWords(headers.get('subject') ?? ''));
  const entity = entityText(headers, body, 0);
  return { subject, body: collapseWhitespace(entity?.text ?? '') };
}

/** The first `maxChars` characters of `text`, cut back to a word boundary when one is near. */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.slice(0, maxChars);
  const space = cut.lastIndexOf(' ');
  return (space > maxChars * 0.8 ? cut.slice(0, space) : cut).trimEnd();
}
