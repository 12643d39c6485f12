/**
 * SQuAD v1.1 exact match and F1. The official script (evaluate-v1.1.py, kept verbatim as Hugging Face
 * evaluate's metrics/squad/compute_score.py) publishes no worked examples, so the expected values
 * below are derived by hand from its definitions (normalize_answer, f1_score, exact_match_score,
 * metric_max_over_ground_truths), the working in each comment, and every normalize_answer and F1
 * value was also checked by running those functions under Python 3 (Unicode-aware \b included). The
 * one published example is evaluate's squad metric card ('1976' vs ['1976'] -> 100/100).
 */
import { normalizeSquadAnswer, squadCorpus, squadExactMatch, squadF1 } from '../../lib/metrics/squad';

describe('normalize_answer', () => {
  test.each([
    // lower -> remove punctuation -> remove articles -> white_space_fix.
    ['The  Quick, brown fox!', 'quick brown fox'],
    ['An apple a day', 'apple day'],
    // Articles go only as whole words.
    ['theater another banana', 'theater another banana'],
    // Punctuation is deleted, not replaced by a space, so "the-end" becomes one word "theend"
    // before the articles are looked for.
    ['the-end', 'theend'],
    ["don't  stop\tnow\n", 'dont stop now'],
    // Only string.punctuation's 32 ASCII characters go: the curly apostrophe and the em dash stay.
    ['l\u2019the \u2014 x', 'l\u2019 \u2014 x'],
    // Python's \b is Unicode-aware: "é" is a word character, so "éthe" keeps its "the" (no
    // boundary between é and t); the standalone "the" goes.
    ['\u00e9the the \u00e9', '\u00e9the \u00e9'],
    ['THE', ''],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(normalizeSquadAnswer(input)).toBe(expected);
  });
});

describe('exact match and F1 of one prediction', () => {
  test('evaluate metric card: "1976" against ["1976"] scores 1 and 1', () => {
    expect(squadExactMatch('1976', ['1976'])).toBe(1);
    expect(squadF1('1976', ['1976'])).toBe(1);
  });

  test('exact match compares normalized strings', () => {
    expect(squadExactMatch('The Eiffel Tower.', ['eiffel tower'])).toBe(1);
    expect(squadExactMatch('Eiffel', ['eiffel tower'])).toBe(0);
  });

  test('F1 is the overlap of normalized tokens: "the cat sat on the mat" vs "a cat on a mat" -> 6/7', () => {
    // pred tokens [cat, sat, on, mat], gold [cat, on, mat]: 3 common, P 3/4, R 1, F1 = 1.5/1.75 = 6/7.
    expect(squadF1('the cat sat on the mat', ['a cat on a mat'])).toBeCloseTo(6 / 7, 15);
  });

  test('repeated tokens count as a multiset: "b b b" vs "b" -> 1/2', () => {
    // Counter & Counter: min(3, 1) = 1 common; P 1/3, R 1, F1 = (2/3)/(4/3) = 1/2.
    expect(squadF1('b b b', ['b'])).toBeCloseTo(0.5, 15);
  });

  test('the best gold answer counts (max over ground truths)', () => {
    // vs "red car": P 1/2 R 1/2 F 1/2; vs "a blue car": tokens [blue, car], both match -> F 1.
    expect(squadF1('blue car', ['red car', 'a blue car'])).toBe(1);
    expect(squadExactMatch('blue car', ['red car', 'a blue car'])).toBe(1);
    // vs "red car": 1/2; vs "green bicycle": 0 -> max 1/2.
    expect(squadF1('blue car', ['red car', 'green bicycle'])).toBeCloseTo(0.5, 15);
  });

  test('a gold answer that normalizes to nothing: exact match 1 with an empty prediction, F1 0', () => {
    // Both normalize to '' so exact_match_score is True; f1_score has num_same == 0 -> 0.
    expect(squadExactMatch('', ['The'])).toBe(1);
    expect(squadF1('', ['The'])).toBe(0);
  });

  test('no gold answer is an error', () => {
    expect(() => squadF1('x', [])).toThrow(/gold answers/);
  });
});

describe('corpus scores (evaluate(): percent over questions)', () => {
  test('mean EM and F1 in percent, with the count', () => {
    // Q1: EM 1, F1 1. Q2: EM 0, F1 6/7. Q3: EM 0, F1 0. EM = 100/3, F1 = 100 (1 + 6/7) / 3 = 1300/21.
    const scores = squadCorpus(
      ['Eiffel Tower', 'the cat sat on the mat', 'nothing'],
      [['the Eiffel Tower'], ['a cat on a mat', 'dog'], ['something']],
    );
    expect(scores.count).toBe(3);
    expect(scores.exact_match).toBeCloseTo(100 / 3, 12);
    expect(scores.f1).toBeCloseTo(1300 / 21, 12);
  });

  test('mismatched lengths and empty input are errors', () => {
    expect(() => squadCorpus(['a'], [['a'], ['b']])).toThrow(/same length/);
    expect(() => squadCorpus([], [])).toThrow(/at least one/);
  });
});
