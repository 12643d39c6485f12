/**
 * chrF and chrF++ against sacrebleu: the cases of its test/test_chrf.py (mjpost/sacrebleu v2.4.3, where
 * EPSILON = 1e-4 on scores), the signatures of its README, and chrF++/multi-reference cases whose
 * scores come from running sacrebleu 2.4.3's source (CHRF(...).corpus_score) under Python 3; the
 * small ones are also worked by hand in the comments.
 */
import { chrfSignature, chrfWords, corpusChrf, sentenceChrf } from '../../lib/metrics/chrf';
import { SACREBLEU_VERSION } from '../../lib/metrics/bleu';

// test_chrf.py: assert abs(score - expected_score) < EPSILON.
const SACREBLEU_TEST_CHRF_EPSILON = 1e-4;
const expectWithin = (actual: number, expected: number, epsilon = SACREBLEU_TEST_CHRF_EPSILON) =>
  expect(Math.abs(actual - expected)).toBeLessThan(epsilon);

describe('sacrebleu test_chrf.py', () => {
  // corpus_chrf(hyps, [refs], char_order=6, word_order=0, beta=3, eps_smoothing=True)
  test.each([
    [['abcdefg'], ['hijklmnop'], 0.0],
    [['a'], ['b'], 0.0],
    [[''], ['b'], 0.0],
    [[''], ['ref'], 0.0],
    [[''], ['reference'], 0.0],
    [['aa'], ['ab'], 8.3333],
    [['a', 'b'], ['a', 'c'], 8.3333],
    [['a'], ['a'], 16.6667],
    [['a b c'], ['a b c'], 50.0],
    [['a b c'], ['abc'], 50.0],
    [[' risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
      ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'], 63.361730],
    [[' Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. '],
      ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'], 64.1302698],
    [['Niemand hat die Absicht, eine Mauer zu errichten'], ['Niemand hat die Absicht, eine Mauer zu errichten'], 100.0],
  ])('test_chrf (eps smoothing, beta 3) %j vs %j -> %d', (hyps, refs, expected) => {
    expectWithin(corpusChrf(hyps, [refs], { charOrder: 6, wordOrder: 0, beta: 3, epsSmoothing: true }).score, expected);
  });

  // corpus_chrf(..., beta=3, eps_smoothing=False): sacreBLEU < 2.0 effective order.
  test.each([
    [['a'], ['a'], 100.0],
    [[''], ['reference'], 0.0],
    [['a b c'], ['a b c'], 100.0],
    [['a b c'], ['abc'], 100.0],
    [[''], ['c'], 0.0],
    [['a', 'b'], ['a', 'c'], 50.0],
    [['aa'], ['ab'], 25.0],
  ])('test_chrf_eff_order %j vs %j -> %d', (hyps, refs, expected) => {
    expectWithin(corpusChrf(hyps, [refs], { beta: 3 }).score, expected);
  });

  // corpus_chrf(..., beta=3, remove_whitespace=False)
  test.each([
    [['Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.'],
      ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'], 67.3481606],
    [['risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
      ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'], 65.2414427],
  ])('test_chrf_keep_whitespace %#', (hyps, refs, expected) => {
    expectWithin(corpusChrf(hyps, [refs], { beta: 3, whitespace: true }).score, expected);
  });

  // sentence_chrf(hyp, refs, eps_smoothing=True), default beta 2.
  test.each([
    ['Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.',
      ['Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.'], 39.14078509],
    ['Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.',
      ['A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.'], 31.22557079],
    ['Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.',
      ['Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.'], 57.15704367],
  ])('test_chrf_sentence_level %#', (hyp, refs, expected) => {
    expectWithin(sentenceChrf(hyp, refs, { epsSmoothing: true }).score, expected);
  });
});

describe('defaults, chrF++ and signatures (sacrebleu 2.4.3 run; hand-worked where small)', () => {
  test('chrF2 "ab cd" vs "ab ce" = 100 x 23/48 = 47.91666666666667', () => {
    // Characters "abcd" vs "abce": order 1 3/4, order 2 2/3, order 3 1/2, order 4 0/1 (P = R each);
    // orders 5 and 6 have no n-grams and drop out. P = R = (3/4 + 2/3 + 1/2 + 0) / 4 = 23/48.
    const s = corpusChrf(['ab cd'], [['ab ce']]);
    expect(s.score).toBe(47.91666666666667);
    expect(s.name).toBe('chrF2');
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION}`);
  });

  test('chrF2++ "ab cd" vs "ab ce" = 40.27777777777777', () => {
    // Adds word unigrams (ab matches: 1/2) and bigrams ("ab cd" vs "ab ce": 0/1):
    // P = R = (23/12 + 1/2 + 0) / 6 = 29/72.
    const s = corpusChrf(['ab cd'], [['ab ce']], { wordOrder: 2 });
    expect(s.score).toBe(40.27777777777777);
    expect(s.name).toBe('chrF2++');
    // The form of sacrebleu README's chrF++ signature (nw:2).
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:${SACREBLEU_VERSION}`);
  });

  test('beta 2 weighs recall: "ab cd" vs "ab c" = 115/128 = 89.84375', () => {
    // "abcd" vs "abc": P 3/4, 2/3, 1/2 and R 1 for orders 1-3; order 4 has no reference n-gram.
    // avg P = 23/36, R = 1: F2 = 5 P R / (4 P + R) = 115/128.
    expect(corpusChrf(['ab cd'], [['ab c']]).score).toBe(89.84375);
  });

  test('characters are code points: an emoji is one character', () => {
    // "😀ab😀" vs "😀ab" is the "abcd" vs "abc" case above with letters renamed.
    expect(corpusChrf(['😀ab 😀'], [['😀ab']]).score).toBe(89.84375);
  });

  test('several references: best-F reference per segment, statistics summed, nrefs:var', () => {
    const hyps = ['The cat (sat) on the mat.', 'Hello, world!'];
    const refs = [['The cat sat on a mat.', 'Hello world'], ['A cat was sitting on the mat.', null]];
    const plus = corpusChrf(hyps, refs, { wordOrder: 2 });
    expect(plus.score).toBeCloseTo(48.38566741635294, 12);
    expect(plus.signature).toBe(`nrefs:var|case:mixed|eff:yes|nc:6|nw:2|space:no|version:${SACREBLEU_VERSION}`);
    expect(corpusChrf(hyps, refs).score).toBeCloseTo(47.96067372589326, 12);
  });

  test('lowercase chrF++ and the case:lc signature', () => {
    const s = corpusChrf(['Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.'],
      [['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.']], { wordOrder: 2, lowercase: true });
    expect(s.score).toBeCloseTo(61.58723245629576, 12);
    expect(s.signature).toBe(`nrefs:1|case:lc|eff:yes|nc:6|nw:2|space:no|version:${SACREBLEU_VERSION}`);
  });

  test('eps smoothing and whitespace show in the signature', () => {
    expect(chrfSignature(1, { epsSmoothing: true, whitespace: true })).toBe(`nrefs:1|case:mixed|eff:no|nc:6|nw:0|space:yes|version:${SACREBLEU_VERSION}`);
    expect(SACREBLEU_VERSION).toBe('2.4.3');
  });

  test("chrF++'s word splitter peels one punctuation mark off a word's end, else off its start", () => {
    // sacrebleu _remove_punctuation; '(hi)' -> '(hi', ')' is its documented quirk (#124).
    expect(chrfWords('(hi) "quoted, a . ok')).toEqual(['(hi', ')', '"quoted', ',', 'a', '.', 'ok']);
    expect(chrfWords('"x')).toEqual(['"', 'x']);
  });

  test('bad input is refused with the argument named', () => {
    expect(() => corpusChrf(['a', 'b'], [['a']])).toThrow(/referenceStreams\[0\] to have 2 entries/);
    expect(() => corpusChrf(['a'], [[null]])).toThrow(/segment 0 has no reference/);
    expect(() => corpusChrf(['a'], [['a']], { charOrder: 0 })).toThrow(/charOrder/);
  });
});
