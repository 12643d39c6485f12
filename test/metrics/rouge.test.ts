/**
 * ROUGE against rouge-score's own tests (google-research/google-research,
 * rouge/rouge_scorer_test.py, whose "ground truth" comes from ROUGE-1.5.5 runs), using its test
 * data files copied to test/fixtures/metrics (rouge/testdata/target.txt, prediction.txt and
 * pyrouge_files/{target,prediction}_multi.0.txt). The Porter stemmer is checked against NLTK's
 * PorterStemmer doctest. Cases without a published value are derived by hand in comments.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { porterStem } from '../../lib/metrics/porter_stemmer';
import { lcsIndices, rougeCorpus, rougeScore, rougeScoreMulti, rougeTokenize } from '../../lib/metrics/rouge';

const FIXTURES = join(__dirname, '..', 'fixtures', 'metrics');
// Python's f.readlines(): lines keep their trailing newline.
const readLines = (name: string) => readFileSync(join(FIXTURES, name), 'utf8').split(/(?<=\n)/);
const TARGETS = readLines('rouge_score_target.txt');
const PREDICTIONS = readLines('rouge_score_prediction.txt');

// rouge-score uses assertAlmostEqual(expected, actual, 5): round(diff, 5) == 0, i.e. |diff| < 5e-6.
function expectAlmostEqualPlaces(actual: number, expected: number, places: number): void {
  expect(Math.abs(actual - expected)).toBeLessThan(0.5 * 10 ** -places);
}
// assertAlmostEqual without places defaults to 7.
const DEFAULT_PLACES = 7;

function expectScore(
  score: { precision: number; recall: number; fmeasure: number },
  [precision, recall, fmeasure]: [number, number, number],
  places = DEFAULT_PLACES,
): void {
  expectAlmostEqualPlaces(score.precision, precision, places);
  expectAlmostEqualPlaces(score.recall, recall, places);
  expectAlmostEqualPlaces(score.fmeasure, fmeasure, places);
}

describe('rouge-score rouge_scorer_test.py: small cases', () => {
  test('testRouge1: ("testing one two", "testing") -> P 1, R 1/3, F 1/2', () => {
    expectScore(rougeScore('testing one two', 'testing', { rougeTypes: ['rouge1'] }).rouge1, [1, 1 / 3, 1 / 2]);
  });

  test.each(['rouge1', 'rouge2', 'rougeL', 'rougeLsum'])('testRougeEmpty %s: empty prediction -> 0', (type) => {
    expectScore(rougeScore('testing one two', '', { rougeTypes: [type] })[type], [0, 0, 0]);
  });

  test('testRouge2: ("testing one two", "testing one") -> P 1, R 1/2, F 2/3', () => {
    expectScore(rougeScore('testing one two', 'testing one', { rougeTypes: ['rouge2'] }).rouge2, [1, 1 / 2, 2 / 3]);
  });

  test('testRougeLConsecutive / testRougeLNonConsecutive -> P 1, R 2/3, F 4/5', () => {
    expectScore(rougeScore('testing one two', 'testing one', { rougeTypes: ['rougeL'] }).rougeL, [1, 2 / 3, 4 / 5]);
    expectScore(rougeScore('testing one two', 'testing two', { rougeTypes: ['rougeL'] }).rougeL, [1, 2 / 3, 4 / 5]);
  });

  test('testMultipleRougeTypes: rouge1 and rougeL together', () => {
    const result = rougeScore('testing one two', 'testing one', { rougeTypes: ['rouge1', 'rougeL'] });
    expect(Object.keys(result).sort()).toEqual(['rouge1', 'rougeL']);
    expectScore(result.rouge1, [1, 2 / 3, 4 / 5]);
    expectScore(result.rougeL, [1, 2 / 3, 4 / 5]);
  });

  test.each(['rougen', 'rouge0', 'rouge10'])('testInvalidRougeTypes: %s is refused', (type) => {
    expect(() => rougeScore('testing one two', 'testing', { rougeTypes: [type] })).toThrow(/rouge type/);
  });

  test.each(['rouge1', 'rouge9', 'rougeL', 'rougeLsum'])('testValidRougeTypes: %s', (type) => {
    expect(Object.keys(rougeScore('testing one two', 'testing', { rougeTypes: [type] }))).toEqual([type]);
  });

  test('testLcsTable: LCS of [1,2,3,4,5] and [2,5,3,4] is at ref indices [1,2,3]; none with [8,9]', () => {
    const ref = ['1', '2', '3', '4', '5'];
    expect(lcsIndices(ref, ['2', '5', '3', '4'])).toEqual([1, 2, 3]);
    expect(lcsIndices(ref, ['8', '9'])).toEqual([]);
  });

  test('LCS read-back prefers moving up the reference on ties (hand-derived)', () => {
    // ref [a, b], can [b, a]: both one-token LCSs exist. At (i=2, j=2) the neighbours t[2][1]
    // and t[1][2] are both 1, and rouge-score only moves left when t[i][j-1] is strictly
    // larger, so it moves up and ends on ref index 0 ("a"), not 1 ("b").
    expect(lcsIndices(['a', 'b'], ['b', 'a'])).toEqual([0]);
  });

  test('testRougeLsum: "w1 w2 w3 w4 w5" vs "w1 w2 w6 w7 w8\\nw1 w3 w8 w9 w5" -> R 0.8, P 0.4, F 0.5333', () => {
    const score = rougeScore('w1 w2 w3 w4 w5', 'w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5', { rougeTypes: ['rougeLsum'] }).rougeLsum;
    expectAlmostEqualPlaces(score.recall, 0.8, DEFAULT_PLACES);
    expectAlmostEqualPlaces(score.precision, 0.4, DEFAULT_PLACES);
    expectAlmostEqualPlaces(score.fmeasure, 0.5333, 3);
    // Empty and all-punctuation cases all give 0.
    for (const [target, prediction] of [
      ['w1 w2 w3 w4 w5', ''],
      ['', 'w1'],
      ['w1 w2 w3 w4 w5', '/'],
    ]) {
      expectScore(rougeScore(target, prediction, { rougeTypes: ['rougeLsum'] }).rougeLsum, [0, 0, 0], 3);
    }
  });
});

describe('rouge-score rouge_scorer_test.py: against ROUGE-1.5.5 on testdata (5 places)', () => {
  // Published as (recall, precision, fmeasure); reordered here to (precision, recall, fmeasure).
  test.each([
    ['rouge1', false, 0, [0.6875, 0.40741, 0.51163]],
    ['rouge1', false, 1, [0.65385, 0.40476, 0.5]],
    ['rouge1', true, 0, [0.6875, 0.40741, 0.51163]],
    ['rouge1', true, 1, [0.69231, 0.42857, 0.52941]],
    ['rouge2', false, 0, [0.53333, 0.30769, 0.39024]],
    ['rouge2', false, 1, [0.48, 0.29268, 0.36364]],
    ['rouge2', true, 0, [0.53333, 0.30769, 0.39024]],
    ['rouge2', true, 1, [0.48, 0.29268, 0.36364]],
    ['rougeL', false, 0, [0.6875, 0.40741, 0.51163]],
    ['rougeL', false, 1, [0.65385, 0.40476, 0.5]],
  ] as const)('%s useStemmer=%s line %d -> (P, R, F) = %j', (type, useStemmer, line, expected) => {
    const score = rougeScore(TARGETS[line], PREDICTIONS[line], { rougeTypes: [type], useStemmer })[type];
    expectScore(score, expected as unknown as [number, number, number], 5);
  });

  test('testRougeLSumAgainstRouge155WithStemming: R 0.36538, P 0.66667, F 0.47205', () => {
    const target = readFileSync(join(FIXTURES, 'rouge_score_target_multi.0.txt'), 'utf8');
    const prediction = readFileSync(join(FIXTURES, 'rouge_score_prediction_multi.0.txt'), 'utf8');
    const score = rougeScore(target, prediction, { rougeTypes: ['rougeLsum'], useStemmer: true }).rougeLsum;
    expectScore(score, [0.66667, 0.36538, 0.47205], 5);
  });
});

describe('tokenizer (rouge-score DefaultTokenizer rules; expected tokens derived by hand)', () => {
  test('lowercase, non-[a-z0-9] runs split, non-ASCII letters dropped', () => {
    expect(rougeTokenize("The Quick-brown fox's 2nd café!")).toEqual(['the', 'quick', 'brown', 'fox', 's', '2nd', 'caf']);
    expect(rougeTokenize('  ...  ')).toEqual([]);
  });
  test('stemming applies to tokens longer than 3 characters only', () => {
    // "dies" (4 letters) -> "die" by NLTK's 4-letter ies rule; "was" (3 letters) is not stemmed.
    expect(rougeTokenize('Dies was caresses', true)).toEqual(['die', 'was', 'caress']);
  });
});

describe('Porter stemmer (NLTK PorterStemmer doctest: "Test the stemmer on various pluralised words")', () => {
  test('plurals -> singles', () => {
    const plurals = [
      'caresses', 'flies', 'dies', 'mules', 'denied', 'died', 'agreed', 'owned', 'humbled', 'sized',
      'meeting', 'stating', 'siezing', 'itemization', 'sensational', 'traditional', 'reference',
      'colonizer', 'plotted',
    ];
    const singles =
      'caress fli die mule deni die agre own humbl size meet state siez item sensat tradit refer colon plot';
    expect(plurals.map(porterStem).join(' ')).toBe(singles);
  });
  test('irregular forms and short words bypass the algorithm (NLTK_EXTENSIONS)', () => {
    expect(porterStem('skies')).toBe('sky');
    expect(porterStem('dying')).toBe('die');
    expect(porterStem('news')).toBe('news');
    expect(porterStem('is')).toBe('is');
  });
  test("NLTK's 'logi' rule measures the stem with its 'l' (hand-derived)", () => {
    // geology -> step 1c y->i: geologi -> step 2 'logi'->'log' if m('geol') > 0: 'geol' is
    // c-v-v-c, m = 1, so -> geolog; no later step applies. (Measuring 'geo' would give m = 0.)
    expect(porterStem('geology')).toBe('geolog');
  });
});

describe('multiple references and corpus mean (hand-derived)', () => {
  test('score_multi keeps, per type, the target with the best F', () => {
    // Prediction "the dog ran": vs "the cat sat" rouge1 overlap 1 -> F 1/3; vs "a dog ran far"
    // overlap 2 -> P 2/3, R 1/2, F 4/7 (best). rouge2: only "dog ran" matches in the second
    // target -> P 1/2, R 1/3, F 2/5.
    const best = rougeScoreMulti(['the cat sat', 'a dog ran far'], 'the dog ran', { rougeTypes: ['rouge1', 'rouge2'] });
    expectScore(best.rouge1, [2 / 3, 1 / 2, 4 / 7]);
    expectScore(best.rouge2, [1 / 2, 1 / 3, 2 / 5]);
  });

  test('score_multi ties go to the first target (numpy.argmax)', () => {
    // "a b" vs "a": P 1/2, R 1, F 2/3; vs "a b c d": P 1, R 1/2, F 2/3 — equal F, different P/R.
    expectScore(rougeScoreMulti(['a', 'a b c d'], 'a b', { rougeTypes: ['rouge1'] }).rouge1, [1 / 2, 1, 2 / 3]);
    expectScore(rougeScoreMulti(['a b c d', 'a'], 'a b', { rougeTypes: ['rouge1'] }).rouge1, [1, 1 / 2, 2 / 3]);
  });

  test('corpus mean averages precision, recall and F separately', () => {
    // Pair 1: P 1, R 1/3, F 1/2. Pair 2: P 1, R 2/3, F 4/5. Mean: P 1, R 1/2, F 13/20 — not
    // F(1, 1/2) = 2/3, which averaging P and R first would give.
    const { mean, perPair } = rougeCorpus(['testing one two', 'testing one two'], ['testing', 'testing one'], {
      rougeTypes: ['rouge1'],
    });
    expect(perPair).toHaveLength(2);
    expectScore(mean.rouge1, [1, 1 / 2, 13 / 20]);
  });

  test('corpus entries may carry several targets', () => {
    const { mean } = rougeCorpus([['the cat sat', 'a dog ran far'], 'testing one two'], ['the dog ran', 'testing'], {
      rougeTypes: ['rouge1'],
    });
    // Means of (2/3, 1/2, 4/7) and (1, 1/3, 1/2).
    expectScore(mean.rouge1, [(2 / 3 + 1) / 2, (1 / 2 + 1 / 3) / 2, (4 / 7 + 1 / 2) / 2]);
  });

  test('length mismatch is refused', () => {
    expect(() => rougeCorpus(['a'], ['a', 'b'])).toThrow(/same length/);
  });
});

describe('ROUGE-Lsum with and without the stemmer (hand-derived)', () => {
  test('stemming joins "cats"/"cat" and "dogs"/"dog" across sentences', () => {
    // Target sentences [cats sat] [the dogs ran], prediction [the cat sat] [dog ran]. Unstemmed,
    // the union LCS of each target sentence is {sat} and {the, ran}: 3 hits of 5 tokens a side.
    // Stemmed (tokens over 3 characters): {cat, sat} and {the, dog, ran}: all 5.
    const target = 'cats sat\nthe dogs ran', prediction = 'the cat sat\ndog ran';
    expectScore(rougeScore(target, prediction, { rougeTypes: ['rougeLsum'] }).rougeLsum, [3 / 5, 3 / 5, 3 / 5]);
    expectScore(rougeScore(target, prediction, { rougeTypes: ['rougeLsum'], useStemmer: true }).rougeLsum, [1, 1, 1]);
    // Sentence-level ROUGE-L sees one sequence: LCS(cat sat the dog ran, the cat sat dog ran) = 4.
    expectScore(rougeScore(target, prediction, { rougeTypes: ['rougeL'], useStemmer: true }).rougeL, [4 / 5, 4 / 5, 4 / 5]);
  });
});
