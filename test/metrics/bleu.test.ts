/**
 * BLEU against the numbers sacrebleu itself publishes (its tests and README), plus a few
 * hand-derived tokenizer and statistics cases where no published value exists.
 *
 * Sources (mjpost/sacrebleu):
 *   test/test_bleu.py           (commit 785d26bb, sacrebleu 2.x): EPSILON = 1e-8 on scores
 *   test/test_sentence_bleu.py  (commit 27bec349): EPSILON = 1e-3 on scores
 *   README.md "Using the Python API" and "Variable Number of References" examples
 */
import {
  bleuFromStatistics,
  corpusBleu,
  sentenceBleu,
  tokenize13a,
  tokenizeChar,
  tokenizeIntl,
} from '../../lib/metrics/bleu';

// sacrebleu test_bleu.py compares |ours - published| < EPSILON with EPSILON = 1e-8; we keep
// their tolerance so a failure here means a real divergence from sacrebleu.
const SACREBLEU_TEST_BLEU_EPSILON = 1e-8;
// test_sentence_bleu.py publishes scores to 3-4 decimals and checks with EPSILON = 1e-3.
const SACREBLEU_TEST_SENTENCE_EPSILON = 1e-3;

function expectWithin(actual: number, expected: number, epsilon: number): void {
  expect(Math.abs(actual - expected)).toBeLessThan(epsilon);
}

// The README example shared by test_bleu.py (_hyps, _refs): two reference streams.
const README_REFS = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const README_HYPS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

describe('tokenize13a (mteval-v13a rules; expected outputs derived by hand from the rules)', () => {
  test.each([
    // Final period split off, apostrophe kept inside the word: ' is not in the punctuation ranges.
    ["It wasn't surprising.", "It wasn't surprising ."],
    // Comma/period between digits stay; a dash after a digit is split; a dash between letters is not.
    ['It costs 1,000.50 for 2-3 well-known items.', 'It costs 1,000.50 for 2 - 3 well-known items .'],
    // A period preceded by a letter is split off even when a digit follows (rule 2).
    ['v.5', 'v . 5'],
    // Every character in the ranges {-~ [-` space-& (-+ :-@ and / is isolated.
    ['a{b}c|d~e[f]g\\h^i_j`k!l"m#n$o%p&q(r)s*t+u:v;w<x=y>z?A@B/C', 'a { b } c | d ~ e [ f ] g \\ h ^ i _ j ` k ! l " m # n $ o % p & q ( r ) s * t + u : v ; w < x = y > z ? A @ B / C'],
    // Entities are decoded before splitting: &quot; first, then &amp;, so "&amp;quot;" becomes the
    // literal text &quot; (not a quote), whose & and ; are then split off.
    ['&quot;hi&quot; &lt;b&gt; A&amp;B &amp;quot;', '" hi " < b > A & B & quot ;'],
    // <skipped> is deleted, "-\n" joins a hyphenated line break, other newlines become spaces.
    ['re-\nturn <skipped>now\nthen', 'return now then'],
    // Runs of whitespace collapse; Python's str.split also splits on U+0085 and U+001F.
    ['  a \t b\u0085c\u001fd  ', 'a b c d'],
    // U+FEFF is not whitespace for Python, so it stays inside the token.
    ['a\ufeffb', 'a\ufeffb'],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(tokenize13a(input)).toBe(expected);
  });
});

describe('tokenizeIntl and tokenizeChar (expected outputs derived by hand from the rules)', () => {
  test('intl splits Unicode punctuation unless between digits, and every symbol', () => {
    // '«' '»' are P (Pi/Pf), '€' is S (Sc); "3,5" keeps its comma (digits on both sides);
    // "fin." at the end: '.' preceded by a non-digit -> split.
    expect(tokenizeIntl('«Prix» 3,5€ fin.')).toBe('« Prix » 3,5 € fin .');
  });
  test('char puts a space between every code point, surrogate pairs kept whole', () => {
    expect(tokenizeChar('ab c\u{1F600}')).toBe('a b   c \u{1F600}');
  });
});

describe('corpusBleu reproduces sacrebleu test_bleu.py::test_corpus_bleu', () => {
  test.each([
    ['default BLEU settings', {}, 48.530827],
    ["{'tokenize': 'none'}", { tokenize: 'none' as const }, 49.1919566],
    ["{'tokenize': '13a'}", { tokenize: '13a' as const }, 48.530827],
    ["{'tokenize': 'intl'}", { tokenize: 'intl' as const }, 43.91623493],
    ["{'smooth_method': 'none'}", { smoothMethod: 'none' as const }, 48.530827],
  ])('%s -> %d', (_name, options, expected) => {
    expectWithin(corpusBleu(README_HYPS, README_REFS, options).score, expected, SACREBLEU_TEST_BLEU_EPSILON);
  });

  test("empty hypotheses are scored, not removed: ('', '', '') -> 0.0", () => {
    const result = corpusBleu(['', '', ''], README_REFS);
    expect(result.score).toBe(0);
    expect(result.sys_len).toBe(0);
  });
});

describe('corpusBleu reproduces the sacrebleu README examples', () => {
  test('BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)', () => {
    const result = corpusBleu(README_HYPS, README_REFS);
    expect(result.score.toFixed(2)).toBe('48.53');
    expect(result.precisions.map((p) => p.toFixed(1))).toEqual(['82.4', '50.0', '45.5', '37.5']);
    expect(result.bp.toFixed(3)).toBe('0.943');
    expect((result.sys_len / result.ref_len).toFixed(3)).toBe('0.944');
    expect(result.sys_len).toBe(17);
    expect(result.ref_len).toBe(18);
    // The percentages above pin these ratios exactly (derived by hand from the tokenized text):
    // 14/17 = 82.35, 7/14 = 50.0, 5/11 = 45.45, 3/8 = 37.5.
    expect(result.counts).toEqual([14, 7, 5, 3]);
    expect(result.totals).toEqual([17, 14, 11, 8]);
  });

  test("variable number of references ('' for a missing one): BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)", () => {
    const refs = [
      ['', 'It was not unexpected.', 'The man bit him first.'],
      ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
    ];
    for (const missing of ['', null]) {
      const result = corpusBleu(README_HYPS, [[missing, refs[0][1], refs[0][2]], refs[1]]);
      expect(result.score.toFixed(2)).toBe('29.44');
      expect(result.precisions.map((p) => p.toFixed(1))).toEqual(['82.4', '42.9', '27.3', '12.5']);
      expect(result.bp.toFixed(3)).toBe('0.889');
      expect((result.sys_len / result.ref_len).toFixed(3)).toBe('0.895');
      expect(result.sys_len).toBe(17);
      expect(result.ref_len).toBe(19);
    }
  });
});

describe('corpusBleu reproduces sacrebleu test_bleu.py::test_max_ngram_order', () => {
  test.each([
    [1, '77.65'],
    [2, '60.50'],
    [3, '53.93'],
    [4, '48.53'],
    [5, '46.14'],
    [6, '43.28'],
  ])('max_ngram_order=%d -> %s', (order, expected) => {
    const result = corpusBleu(README_HYPS, README_REFS, { maxNgramOrder: order });
    expect(result.score.toFixed(2)).toBe(expected);
    expect(result.precisions).toHaveLength(order);
  });
});

// sacrebleu.raw_corpus_bleu(hyps, refs, smooth_value) = corpus_bleu(..., smooth_method='floor',
// smooth_value=smooth_value (default 0.1), tokenize='none', use_effective_order=True).
function rawCorpusBleu(hyps: string[], refs: string[][], smoothValue?: number) {
  return corpusBleu(hyps, refs, { tokenize: 'none', smoothMethod: 'floor', smoothValue, effectiveOrder: true });
}

describe('raw corpus BLEU cases of sacrebleu test_bleu.py', () => {
  test.each([
    // test_raw_bleu: "This now returns 0.0 score (#141)"
    [['this is a test', 'another test'], [['ref1', 'ref2']], 0.0],
    [['this is a test'], [['this is a test']], 1.0],
    [['this is a fest'], [['this is a test']], 0.223606797749979],
    // test_effective_order
    [['test'], [['a test']], 0.3678794411714425],
    [['a test'], [['a test']], 1.0],
    [['a little test'], [['a test']], 0.03218297948685433],
  ])('raw_corpus_bleu(%j, %j, .01) / 100 -> %d', (hyps, refs, expected) => {
    expectWithin(rawCorpusBleu(hyps, refs, 0.01).score / 100, expected, SACREBLEU_TEST_BLEU_EPSILON);
  });

  test('test_offset: smooth_value 0.0 -> 0, default floor 0.1 -> 0.1555722182', () => {
    const hyps = ['am I am a character sequence'];
    const refs = [['I am a symbol string sequence a a']];
    expectWithin(rawCorpusBleu(hyps, refs, 0.0).score / 100, 0, SACREBLEU_TEST_BLEU_EPSILON);
    expectWithin(rawCorpusBleu(hyps, refs).score / 100, 0.1555722182, SACREBLEU_TEST_BLEU_EPSILON);
  });

  test('test_statistics: counts [4, 2, 1, 0], totals [6, 5, 4, 3]', () => {
    const result = rawCorpusBleu(['am I am a character sequence'], [['I am a symbol string sequence a a']], 0.01);
    expect(result.counts).toEqual([4, 2, 1, 0]);
    expect(result.totals).toEqual([6, 5, 4, 3]);
  });
});

describe('bleuFromStatistics reproduces sacrebleu BLEU.compute_bleu cases', () => {
  test('test_scoring: compute_bleu([9,7,5,3], [10,8,6,4], 11, 11) / 100 -> 0.8375922397', () => {
    const result = bleuFromStatistics([9, 7, 5, 3], [10, 8, 6, 4], 11, 11);
    expectWithin(result.score / 100, 0.8375922397, SACREBLEU_TEST_BLEU_EPSILON);
  });

  // test_degenerate_statistics: floor smoothing with the given value; every expected score is
  // exactly 0.0 (sacrebleu asserts ==).
  test.each([
    [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
    [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
    [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
    [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
  ])('correct %j total %j sys %d ref %d floor %d -> 0', (correct, total, sysLen, refLen, floor) => {
    const result = bleuFromStatistics(correct, total, sysLen, refLen, { smoothMethod: 'floor', smoothValue: floor });
    expect(result.score).toBe(0);
  });

  test('does not mutate the caller arrays even when add-k adds to them', () => {
    const correct = [3, 1, 0, 0];
    const total = [4, 3, 2, 1];
    const result = bleuFromStatistics(correct, total, 4, 4, { smoothMethod: 'add-k', smoothValue: 1 });
    expect(correct).toEqual([3, 1, 0, 0]);
    // Like sacrebleu, the returned counts/totals carry the +k on orders >= 2.
    expect(result.counts).toEqual([3, 2, 1, 1]);
    expect(result.totals).toEqual([4, 4, 3, 2]);
  });
});

describe('sentenceBleu reproduces sacrebleu test_sentence_bleu.py (effective_order=True)', () => {
  // Example from sacrebleu issue #98 (note the different t-with-cedilla / t-with-comma letters).
  const REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
  const SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';

  test.each([
    ['exp', undefined, false, '13a', 8.493],
    ['none', undefined, false, '13a', 0.0],
    ['floor', undefined, false, '13a', 4.51688],
    ['floor', 0.1, false, '13a', 4.51688],
    ['floor', 0.5, false, '13a', 10.1],
    ['add-k', undefined, false, '13a', 14.882],
    ['add-k', 1, false, '13a', 14.882],
    ['add-k', 2, false, '13a', 21.389],
    ['exp', undefined, false, 'none', 7.347],
    ['exp', undefined, false, 'intl', 8.493],
    ['exp', undefined, false, 'char', 40.8759],
    ['exp', undefined, true, 'char', 42.0267],
  ] as const)('smooth %s value %s lowercase %s tok %s -> %d', (smoothMethod, smoothValue, lowercase, tokenize, expected) => {
    const result = sentenceBleu(SYS, [REF], { smoothMethod, smoothValue, lowercase, tokenize });
    expectWithin(result.score, expected, SACREBLEU_TEST_SENTENCE_EPSILON);
  });

  test.each(['exp', 'none', 'floor', 'add-k'] as const)('no match at all (#141) -> 0.0 with smoothing %s', (smoothMethod) => {
    expect(sentenceBleu('this is a cat', ['okay thanks'], { smoothMethod }).score).toBe(0);
  });

  test('defaults are exp smoothing + effective order (hand-derived: "a test" vs "a test" = 100)', () => {
    // Only unigrams and one bigram exist; with effective_order the 3- and 4-gram orders (total 0)
    // are not averaged in, so the score is exactly 100. Without it, the zero 3/4-gram
    // precisions would drive corpus BLEU to 0.
    expect(sentenceBleu('a test', ['a test']).score).toBeCloseTo(100, 10);
    expect(corpusBleu(['a test'], [['a test']]).score).toBe(0);
  });
});

describe('published value from torchmetrics SacreBLEUScore docstring (tokenize 13a, no smoothing)', () => {
  // torchmetrics: preds ['the cat is on the mat'], target [['there is a cat on the mat',
  // 'a cat is on the mat']] -> tensor(0.7598). By hand: precisions 5/6, 4/5, 3/4, 2/3, closest
  // reference length 6 = hypothesis length so BP = 1; BLEU = (1/3)^(1/4) = 0.759836.
  test('0.7598', () => {
    const result = corpusBleu(['the cat is on the mat'], [['there is a cat on the mat'], ['a cat is on the mat']]);
    expect((result.score / 100).toFixed(4)).toBe('0.7598');
    expect(result.score).toBeCloseTo(100 * Math.pow(3, -0.25), 12);
    expect(result.counts).toEqual([5, 4, 3, 2]);
    expect(result.totals).toEqual([6, 5, 4, 3]);
  });
});

describe('closest reference length and clipping (hand-derived)', () => {
  test('ties between a shorter and a longer reference go to the shorter one', () => {
    // hyp length 4, refs of length 3 and 5 are both 1 away: sacrebleu takes 3 -> BP = 1.
    const result = corpusBleu(['a b c d'], [['a b c'], ['a b c d e']], { tokenize: 'none' });
    expect(result.ref_len).toBe(3);
    expect(result.bp).toBe(1);
  });

  test('hypothesis counts are clipped by the largest count in any single reference', () => {
    // "the" x4 in the hypothesis; refs have it 2x and 1x -> clipped at 2 (not 3).
    const result = corpusBleu(['the the the the'], [['the cat the'], ['the dog']], { tokenize: 'none' });
    expect(result.counts[0]).toBe(2);
    expect(result.totals[0]).toBe(4);
    // Closest reference length to 4: 3 (|4-3| = 1 < |4-2| = 2), so BP = 1.
    expect(result.ref_len).toBe(3);
  });

  test('brevity penalty is exp(1 - r/c) when the hypothesis is shorter', () => {
    const result = corpusBleu(['a b'], [['a b c d']], { tokenize: 'none' });
    expect(result.bp).toBeCloseTo(Math.exp(1 - 4 / 2), 15);
  });
});

describe('bad input', () => {
  test('reference stream of the wrong length names the stream and both lengths', () => {
    expect(() => corpusBleu(['a', 'b'], [['a']])).toThrow(/referenceStreams\[0\].*2 entries.*received 1/);
  });
  test('a segment whose references are all empty is refused', () => {
    expect(() => corpusBleu(['a'], [[''], [null]])).toThrow(/segment 0/);
  });
  test('unknown tokenizer and smoothing are refused', () => {
    expect(() => corpusBleu(['a'], [['a']], { tokenize: 'zh' as never })).toThrow(/tokenize/);
    expect(() => corpusBleu(['a'], [['a']], { smoothMethod: 'lin' as never })).toThrow(/smoothMethod/);
  });
  test('empty corpus is refused', () => {
    expect(() => corpusBleu([], [[]])).toThrow(/hypotheses/);
  });
});
