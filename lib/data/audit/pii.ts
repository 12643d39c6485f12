/**
 * Personal and secret data found by pattern and checksum, with the span of each find in the text.
 *
 * Each detector looks for a candidate by pattern and keeps it only when the checks its format
 * defines pass (Luhn for card numbers, ISO 7064 mod 97-10 for IBANs, octet ranges for IPv4, the
 * RFC 4291 grammar for IPv6), so that look-alikes (a 16-digit order number, an IBAN with a wrong
 * check digit, 999.1.1.1, a version 1.2.3.4.5, an ISO date) do not fire. The formats, stated:
 *
 *   email            local@domain.tld (RFC 5322's common form: no quoted local parts, no IP literals)
 *   phone            E.164 ("+" country code, 8-15 digits, optional single spaces, dots, dashes or a
 *                    parenthesised group); North American (NXX) NXX-XXXX with separators or parentheses,
 *                    optionally after 1; European national forms with a trunk 0 (0xx xxxx xxxx,
 *                    030/1234567, 01 23 45 67 89), 9-12 digits in groups. Plain digit runs without a
 *                    "+", dates (2024-01-31, 31/01/2024, 31.01.2024) and date paths (02/09/17/1212)
 *                    are not phone numbers here.
 *   credit_card      13-19 digits, optionally grouped by single spaces or dashes, passing Luhn and
 *                    starting with a known issuer (IIN) prefix
 *   iban             country code + 2 check digits + BBAN, the registry's length for that country,
 *                    mod 97 = 1; upper case, compact or in groups of four
 *   ipv4             four decimal octets 0-255, not part of a longer dotted run (1.2.3.4.5) nor after "v";
 *                    the detail says loopback, private, link_local or public. Four-part revision
 *                    numbers (CVS's 1.68.2.12) cannot be told from addresses and are reported.
 *   ipv6             RFC 4291 text forms: eight groups, "::" compression, an embedded IPv4 tail; at
 *                    least one decimal digit (so that C++ names like "ab::cd" are not addresses)
 *   url_credentials  scheme://user:password@host
 *   api_key          published token prefixes (each cited where it is matched below)
 *   private_key      PEM private key blocks (RFC 7468 labels ending in "PRIVATE KEY")
 */

export type PIIKind = 'email' | 'phone' | 'credit_card' | 'iban' | 'ipv4' | 'ipv6' | 'url_credentials' | 'api_key' | 'private_key';
export const PII_KINDS: readonly PIIKind[] = ['email', 'phone', 'credit_card', 'iban', 'ipv4', 'ipv6', 'url_credentials', 'api_key', 'private_key'];

/** What --redact puts in place of each find. */
export const PII_PLACEHOLDERS: Record<PIIKind, string> = {
  email: '[EMAIL]', phone: '[PHONE]', credit_card: '[CREDIT_CARD]', iban: '[IBAN]', ipv4: '[IPV4]', ipv6: '[IPV6]',
  url_credentials: '[URL_WITH_CREDENTIALS]', api_key: '[API_KEY]', private_key: '[PRIVATE_KEY]',
};

export interface PIISpan {
  kind: PIIKind;
  /** [start, end) in UTF-16 code units of the text searched. */
  start: number;
  end: number;
  /** The matched text. */
  text: string;
  /** Which token or card issuer, when the kind has several ("aws_access_key", "visa"). */
  detail?: string;
}

type Candidate = Omit<PIISpan, 'kind'>;

/** Runs `re` (global) over the text and keeps the matches `accept` returns a span for. */
function scan(text: string, re: RegExp, accept: (m: RegExpExecArray) => Candidate | null): Candidate[] {
  const found: Candidate[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const c = accept(m);
    if (c !== null) found.push(c);
    if (m[0].length === 0) re.lastIndex++;
  }
  return found;
}

const whole = (m: RegExpExecArray, detail?: string): Candidate => ({ start: m.index, end: m.index + m[0].length, text: m[0], ...(detail ? { detail } : {}) });

// ---- emails --------------------------------------------------------------------------------

const EMAIL = /(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])/g;

function findEmails(text: string): Candidate[] {
  return scan(text, EMAIL, (m) => (/\.\.|\.@/.test(m[0]) ? null : whole(m)));
}

// ---- phone numbers -------------------------------------------------------------------------

/** "+" then groups of digits separated by at most one space, dot or dash, one group may be in parentheses. */
const PHONE_E164 = /(?<![\w+])\+[1-9](?:[ .-]?(?:\(\d{1,4}\)|\d)){7,18}(?![\w]|[.-]\d)/g;
/** (NXX) NXX-XXXX, NXX-NXX-XXXX, NXX.NXX.XXXX, NXX NXX XXXX, optionally after "1-" / "1 ". */
const PHONE_NANP = /(?<![\w.+-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([ .-]))[2-9]\d{2}[ .-]\d{4}(?![\w]|[.-]\d)/g;
/**
 * Trunk-0 national numbers: 0 + area code, then groups of 2-8 digits separated by single spaces or
 * dashes, a slash only after the area code (030/1234567; so that dates and paths like 02/09/17 are
 * not numbers); French pairs may use dots. Not after ":" or "=" (times 13:06, ids sid=02).
 */
const PHONE_EUROPE = /(?<![\w.+/:=-])(?:0[1-9]\d{0,3}[ /-]\d{2,8}(?:[ -]\d{2,8}){0,3}|0[1-9](?:\.\d{2}){4})(?![\w]|[./-]\d)/g;

const digitCount = (s: string) => s.replace(/\D/g, '').length;

function findPhones(text: string): Candidate[] {
  return [
    ...scan(text, PHONE_E164, (m) => { const n = digitCount(m[0]); return n >= 8 && n <= 15 ? whole(m, 'e164') : null; }),
    ...scan(text, PHONE_NANP, (m) => {
      // The two separators of NXX-NXX-XXXX agree (415-555.2671 is rarer than a list of numbers).
      const sep = m[1];
      if (sep !== undefined && m[0][m[0].length - 5] !== sep) return null;
      return whole(m, 'north_american');
    }),
    ...scan(text, PHONE_EUROPE, (m) => { const n = digitCount(m[0]); return n >= 9 && n <= 12 ? whole(m, 'european') : null; }),
  ];
}

// ---- payment cards -------------------------------------------------------------------------

/** Luhn's mod-10 check (ISO/IEC 7812-1, annex B) over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * Issuer prefixes and lengths, from the IIN ranges ISO/IEC 7812 issuers publish (as tabulated in
 * Wikipedia's "Payment card number": Visa 4; Mastercard 51-55 and 2221-2720; American Express 34,
 * 37; Discover 6011, 644-649, 65; Diners Club 36, 300-305, 38-39; JCB 3528-3589; UnionPay 62;
 * Maestro 50, 56-58, 6x).
 */
const CARD_ISSUERS: ReadonlyArray<{ name: string; prefix: (d: string) => boolean; lengths: readonly number[] }> = [
  { name: 'visa', prefix: (d) => d[0] === '4', lengths: [13, 16, 19] },
  { name: 'mastercard', prefix: (d) => inRange(d, 2, 51, 55) || inRange(d, 4, 2221, 2720), lengths: [16] },
  { name: 'amex', prefix: (d) => inRange(d, 2, 34, 34) || inRange(d, 2, 37, 37), lengths: [15] },
  { name: 'discover', prefix: (d) => d.startsWith('6011') || inRange(d, 3, 644, 649) || d.startsWith('65'), lengths: [16, 17, 18, 19] },
  { name: 'diners', prefix: (d) => d.startsWith('36') || inRange(d, 3, 300, 305) || inRange(d, 2, 38, 39), lengths: [14, 15, 16, 17, 18, 19] },
  { name: 'jcb', prefix: (d) => inRange(d, 4, 3528, 3589), lengths: [16, 17, 18, 19] },
  { name: 'unionpay', prefix: (d) => d.startsWith('62'), lengths: [16, 17, 18, 19] },
  { name: 'maestro', prefix: (d) => d.startsWith('50') || inRange(d, 2, 56, 69), lengths: [13, 14, 15, 16, 17, 18, 19] },
];

function inRange(digits: string, width: number, lo: number, hi: number): boolean {
  const v = Number(digits.slice(0, width));
  return v >= lo && v <= hi;
}

export function cardIssuer(digits: string): string | null {
  if (!/^\d{13,19}$/.test(digits) || !luhnValid(digits)) return null;
  for (const issuer of CARD_ISSUERS) if (issuer.prefix(digits) && issuer.lengths.includes(digits.length)) return issuer.name;
  return null;
}

/** Runs of digit groups joined by single spaces or dashes; a card is any run of consecutive groups that checks out. */
const DIGIT_GROUPS = /(?<![\w.,-])\d+(?:[ -]\d+)*(?![\w]|[.,]\d)/g;

function findCards(text: string): Candidate[] {
  return scan(text, DIGIT_GROUPS, (m) => {
    // (start offset in the match, digits) per group, so that "ref 12 4111 1111 1111 1111" finds the card.
    const groups: Array<{ at: number; end: number; digits: string }> = [];
    const re = /\d+/g;
    for (let g = re.exec(m[0]); g !== null; g = re.exec(m[0])) groups.push({ at: g.index, end: g.index + g[0].length, digits: g[0] });
    for (let i = 0; i < groups.length; i++) {
      let digits = '';
      for (let j = i; j < groups.length && digits.length + groups[j].digits.length <= 19; j++) {
        digits += groups[j].digits;
        if (digits.length < 13) continue;
        const issuer = cardIssuer(digits);
        if (issuer !== null) {
          const start = m.index + groups[i].at, end = m.index + groups[j].end;
          return { start, end, text: text.slice(start, end), detail: issuer };
        }
      }
    }
    return null;
  });
}

// ---- IBAN ----------------------------------------------------------------------------------

/** IBAN length per country, from the SWIFT IBAN Registry (release 2024; FK, MN, NI, SO, YE are recent additions). */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21, CR: 22,
  CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18, FR: 27, GB: 22,
  GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HN: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30,
  KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20,
  MR: 27, MT: 31, MU: 30, NI: 28, NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22,
  RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};

/** ISO 7064 mod 97-10 as ISO 13616 applies it: the first four characters moved to the end, letters as 10..35. */
export function ibanValid(compact: string): boolean {
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(compact) || IBAN_LENGTHS[compact.slice(0, 2)] !== compact.length) return false;
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let rest = 0;
  for (const c of rearranged) {
    const v = c >= 'A' ? c.charCodeAt(0) - 55 : c.charCodeAt(0) - 48;
    rest = (v >= 10 ? rest * 100 + v : rest * 10 + v) % 97;
  }
  return rest === 1;
}

const IBAN_START = /(?<![A-Za-z0-9])([A-Z]{2})\d{2}/g;

function findIbans(text: string): Candidate[] {
  return scan(text, IBAN_START, (m) => {
    const length = IBAN_LENGTHS[m[1]];
    if (length === undefined) return null;
    // Take exactly `length` letters and digits, single spaces allowed between them (groups of four).
    let compact = '', i = m.index;
    while (i < text.length && compact.length < length) {
      const c = text[i];
      if (/[A-Z0-9]/.test(c)) compact += c;
      else if (!(c === ' ' && compact.length > 0 && /[A-Z0-9]/.test(text[i + 1] ?? ''))) break;
      i++;
    }
    if (compact.length !== length || /[A-Za-z0-9]/.test(text[i] ?? '') || !ibanValid(compact)) return null;
    return { start: m.index, end: i, text: text.slice(m.index, i), detail: m[1] };
  });
}

// ---- IP addresses --------------------------------------------------------------------------

const IPV4 = /(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)/g;

/** Which IPv4 block an address is in: RFC 1122 loopback, RFC 1918 private, RFC 3927 link-local, or public. */
function ipv4Scope(a: number, b: number): string {
  if (a === 127) return 'loopback';
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 169 && b === 254) return 'link_local';
  return 'public';
}

function findIPv4(text: string): Candidate[] {
  return scan(text, IPV4, (m) => {
    const octets = [m[1], m[2], m[3], m[4]].map(Number);
    return octets.every((o) => o <= 255) ? whole(m, ipv4Scope(octets[0], octets[1])) : null;
  });
}

/** Whether `s` is an IPv6 address in one of RFC 4291 section 2.2's text forms (no zone index). */
export function ipv6Valid(s: string): boolean {
  let head = s, groupsFromIPv4 = 0;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    const tail = s.slice(lastColon + 1);
    const octets = tail.split('.');
    if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) return false;
    head = s.slice(0, lastColon + 1);
    // "::1.2.3.4" or "a:b:c:d:e:f:1.2.3.4": the colon before the IPv4 part belongs to it.
    head = head.endsWith('::') ? head : head.slice(0, -1);
    groupsFromIPv4 = 2;
  }
  const halves = head.split('::');
  if (halves.length > 2) return false;
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const all = halves.flatMap(groups);
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  const count = all.length + groupsFromIPv4;
  return halves.length === 2 ? count <= 7 : count === 8;
}

const IPV6_CANDIDATE = /(?<![\w:.])[0-9A-Fa-f:][0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![\w:])/g;

function findIPv6(text: string): Candidate[] {
  return scan(text, IPV6_CANDIDATE, (m) => {
    const s = m[0].replace(/\.+$/, ''); // a sentence's full stop
    if (!/\d/.test(s) || !/[0-9A-Fa-f]/.test(s) || !ipv6Valid(s)) return null;
    return { start: m.index, end: m.index + s.length, text: s };
  });
}

// ---- credentials in URLs, API keys, private keys ---------------------------------------------

/** RFC 3986 userinfo "user:password@" in an authority; the span runs to the end of the host. */
const URL_CREDENTIALS = /\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s/?#@:]+:[^\s/?#@]+@[^\s/?#'"<>]+/g;

/** Published token formats: a prefix and the characters that follow it. */
const API_KEYS: ReadonlyArray<{ detail: string; re: RegExp }> = [
  // AWS IAM user guide, "IAM identifiers" / unique ID prefixes: AKIA = access key, ASIA = temporary (STS) access key; 20 characters.
  { detail: 'aws_access_key', re: /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/g },
  // GitHub blog "Behind GitHub's new authentication token formats" (2021): ghp_ personal, gho_ OAuth, ghu_ user-to-server,
  // ghs_ server-to-server, ghr_ refresh; 36 characters after the prefix. github_pat_: fine-grained personal tokens (2022).
  { detail: 'github_token', re: /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])/g },
  { detail: 'github_token', re: /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,251}(?![A-Za-z0-9_])/g },
  // Slack API docs, "Token types": xoxb- bot, xoxp- user, xoxa- app (workspace), xoxr- refresh tokens.
  { detail: 'slack_token', re: /(?<![A-Za-z0-9-])xox[abpr]-[A-Za-z0-9-]{10,}(?![A-Za-z0-9-])/g },
  // OpenAI API reference, "Authentication": secret keys start with sk- (project keys sk-proj-); at least 20 characters
  // after the prefix, and the prefix starts a word (so "task-oriented", "desk-bound" never fire).
  { detail: 'openai_key', re: /(?<![A-Za-z0-9_-])sk-(?:proj-)?[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])/g },
  // Stripe docs, "API keys": sk_live_/sk_test_ secret keys, rk_live_/rk_test_ restricted keys.
  { detail: 'stripe_key', re: /(?<![A-Za-z0-9_])[sr]k_(?:live|test)_[A-Za-z0-9]{16,}(?![A-Za-z0-9_])/g },
  // Google Cloud docs, "Manage API keys": keys are "AIza" followed by 35 characters.
  { detail: 'google_api_key', re: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g },
];

/** RFC 7468 PEM: "-----BEGIN <label>-----" ... "-----END <label>-----", label PRIVATE KEY, RSA/EC/DSA/OPENSSH/ENCRYPTED PRIVATE KEY. */
const PRIVATE_KEY = /-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----(?:[\s\S]*?-----END \1-----)?/g;

// ---- all together --------------------------------------------------------------------------

/** Detectors in the order that breaks ties between finds with the same span (the first wins). */
const DETECTORS: ReadonlyArray<{ kind: PIIKind; find: (text: string) => Candidate[] }> = [
  { kind: 'private_key', find: (t) => scan(t, PRIVATE_KEY, (m) => whole(m, m[1].toLowerCase().replace(/ /g, '_'))) },
  { kind: 'url_credentials', find: (t) => scan(t, URL_CREDENTIALS, (m) => whole(m)) },
  { kind: 'api_key', find: (t) => API_KEYS.flatMap(({ detail, re }) => scan(t, re, (m) => whole(m, detail))) },
  { kind: 'email', find: findEmails },
  { kind: 'iban', find: findIbans },
  { kind: 'credit_card', find: findCards },
  { kind: 'ipv6', find: findIPv6 },
  { kind: 'ipv4', find: findIPv4 },
  { kind: 'phone', find: findPhones },
];

/**
 * Every find in `text`, in order, without overlaps: where two overlap, the one that starts first
 * wins, then the longer, then the earlier detector (a URL's password@host is not also an email).
 */
export function findPII(text: string): PIISpan[] {
  const all: Array<PIISpan & { rank: number }> = [];
  DETECTORS.forEach(({ kind, find }, rank) => {
    for (const c of find(text)) all.push({ kind, ...c, rank });
  });
  all.sort((a, b) => a.start - b.start || (b.end - b.start) - (a.end - a.start) || a.rank - b.rank);
  const kept: PIISpan[] = [];
  let covered = 0;
  for (const { rank: _rank, ...span } of all) {
    if (span.start < covered) continue;
    kept.push(span);
    covered = span.end;
  }
  return kept;
}

/** The text with each find replaced by its kind's placeholder. */
export function redactPII(text: string): { text: string; spans: PIISpan[] } {
  const spans = findPII(text);
  if (spans.length === 0) return { text, spans };
  let out = '', at = 0;
  for (const s of spans) {
    out += text.slice(at, s.start) + PII_PLACEHOLDERS[s.kind];
    at = s.end;
  }
  return { text: out + text.slice(at), spans };
}

/** A find shown without giving it away: the first and last two characters, the rest as "*". */
export function maskPII(value: string): string {
  if (value.length <= 6) return '*'.repeat(value.length);
  const shown = value.length > 40 ? `${value.slice(0, 2)}${'*'.repeat(8)}...(${value.length} chars)` : `${value.slice(0, 2)}${'*'.repeat(value.length - 4)}${value.slice(-2)}`;
  return shown.replace(/\s/g, ' ');
}
