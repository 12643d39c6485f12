/**
 * Classification metrics against the examples printed in scikit-learn's docstrings
 * (scikit-learn/scikit-learn, sklearn/metrics/_classification.py: accuracy_score,
 * confusion_matrix, f1_score, fbeta_score, precision_recall_fscore_support, precision_score,
 * recall_score, classification_report), with each figure also derived by hand.
 *
 * Docstring outputs use doctest ELLIPSIS: "0.26..." means the printed repr starts with "0.26".
 * expectDoctest() checks exactly that against Python's float repr (shortest round-trip, which
 * is also JavaScript's) or numpy's array element format (8 decimals, trailing zeros dropped).
 */
import { accuracy, confusionMatrix, f1Score, precisionRecallF, sortedUniqueLabels } from '../../lib/metrics/classification';

/** Python's repr() of a float: integral values print with ".0". */
function pythonFloatRepr(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}

/** numpy's default array element format for floats: 8 decimals, trailing zeros dropped ("0." for 0). */
function numpyElementRepr(value: number): string {
  return value.toFixed(8).replace(/0+$/, '');
}

function expectDoctest(printed: string, expected: string): void {
  if (expected.endsWith('...')) expect(printed.startsWith(expected.slice(0, -3))).toBe(true);
  else expect(printed).toBe(expected);
}

function expectScalar(value: number, expected: string): void {
  expectDoctest(pythonFloatRepr(value), expected);
}

function expectArray(values: number[], expected: string[]): void {
  expect(values).toHaveLength(expected.length);
  values.forEach((value, i) => expectDoctest(numpyElementRepr(value), expected[i]));
}

// Exact-fraction checks: every figure here is a ratio of small integers, so float64 division
// gives the correctly rounded value; 14 decimals leaves room for one rounding in an average.
const FRACTION_DIGITS = 14;

describe('accuracy (accuracy_score docstring)', () => {
  test('[0, 1, 2, 3] vs [0, 2, 1, 3] -> 0.5, normalize=False -> 2', () => {
    expect(accuracy([0, 1, 2, 3], [0, 2, 1, 3])).toBe(0.5);
    expect(accuracy([0, 1, 2, 3], [0, 2, 1, 3], { normalize: false })).toBe(2);
  });
});

describe('confusionMatrix (confusion_matrix docstring)', () => {
  test('numbers, sorted label order', () => {
    const cm = confusionMatrix([2, 0, 2, 2, 0, 1], [0, 0, 2, 2, 0, 2]);
    expect(cm.labels).toEqual([0, 1, 2]);
    expect(cm.matrix).toEqual([
      [2, 0, 0],
      [0, 0, 1],
      [1, 0, 2],
    ]);
  });

  test('strings with labels=["ant", "bird", "cat"]', () => {
    const yTrue = ['cat', 'ant', 'cat', 'cat', 'ant', 'bird'];
    const yPred = ['ant', 'ant', 'cat', 'cat', 'ant', 'cat'];
    const expected = [
      [2, 0, 0],
      [0, 0, 1],
      [1, 0, 2],
    ];
    expect(confusionMatrix(yTrue, yPred, { labels: ['ant', 'bird', 'cat'] }).matrix).toEqual(expected);
    // Without labels the sorted union is the same order.
    expect(confusionMatrix(yTrue, yPred).labels).toEqual(['ant', 'bird', 'cat']);
  });

  test('binary: tn, fp, fn, tp = (0, 2, 1, 1)', () => {
    const [[tn, fp], [fn, tp]] = confusionMatrix([0, 1, 0, 1], [1, 1, 1, 0]).matrix;
    expect([tn, fp, fn, tp]).toEqual([0, 2, 1, 1]);
  });

  test('given labels reorder the matrix and drop samples outside them (hand-derived)', () => {
    // Samples: (2->0) dropped (0 not listed), (1->1), (2->2), (1->2).
    const cm = confusionMatrix([2, 1, 2, 1], [0, 1, 2, 2], { labels: [2, 1] });
    expect(cm.matrix).toEqual([
      [1, 0],
      [1, 1],
    ]);
  });
});

describe('precision / recall / F on y_true = [0, 1, 2, 0, 1, 2], y_pred = [0, 2, 1, 0, 0, 1]', () => {
  // By hand: class 0 tp 2, predicted 3, true 2 -> P 2/3, R 1, F1 4/5.
  //          classes 1 and 2: tp 0 -> P = R = F = 0 (predicted 2 and 1, true 2 each).
  const yTrue = [0, 1, 2, 0, 1, 2];
  const yPred = [0, 2, 1, 0, 0, 1];

  test('f1_score docstring: macro 0.26..., micro 0.33..., weighted 0.26..., None [0.8, 0., 0.]', () => {
    const macro = f1Score(yTrue, yPred, { average: 'macro' });
    const micro = f1Score(yTrue, yPred, { average: 'micro' });
    const weighted = f1Score(yTrue, yPred, { average: 'weighted' });
    const none = f1Score(yTrue, yPred, { average: null });
    expectScalar(macro.f, '0.26...');
    expectScalar(micro.f, '0.33...');
    expectScalar(weighted.f, '0.26...');
    expectArray(none.perClass.f, ['0.8', '0.', '0.']);
    expect(macro.f).toBeCloseTo(4 / 15, FRACTION_DIGITS); // (4/5) / 3
    expect(micro.f).toBeCloseTo(1 / 3, FRACTION_DIGITS); // tp 2 of 6 predicted and 6 true
    expect(macro.zeroDivision.f).toBe(false);
  });

  test('precision_score docstring: macro 0.22..., micro 0.33..., weighted 0.22..., None [0.66..., 0., 0.]', () => {
    const macro = precisionRecallF(yTrue, yPred, { average: 'macro' });
    expectScalar(macro.precision, '0.22...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'micro' }).precision, '0.33...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'weighted' }).precision, '0.22...');
    expectArray(precisionRecallF(yTrue, yPred, { average: null }).perClass.precision, ['0.66...', '0.', '0.']);
    expect(macro.precision).toBeCloseTo(2 / 9, FRACTION_DIGITS);
  });

  test('recall_score docstring: macro 0.33..., micro 0.33..., weighted 0.33..., None [1., 0., 0.]', () => {
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'macro' }).recall, '0.33...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'micro' }).recall, '0.33...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'weighted' }).recall, '0.33...');
    expectArray(precisionRecallF(yTrue, yPred, { average: null }).perClass.recall, ['1.', '0.', '0.']);
  });

  test('fbeta_score docstring (beta=0.5): macro 0.23..., micro 0.33..., weighted 0.23..., None [0.71..., 0., 0.]', () => {
    const macro = precisionRecallF(yTrue, yPred, { average: 'macro', beta: 0.5 });
    expectScalar(macro.f, '0.23...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'micro', beta: 0.5 }).f, '0.33...');
    expectScalar(precisionRecallF(yTrue, yPred, { average: 'weighted', beta: 0.5 }).f, '0.23...');
    expectArray(precisionRecallF(yTrue, yPred, { average: null, beta: 0.5 }).perClass.f, ['0.71...', '0.', '0.']);
    // By hand: class 0 F0.5 = 1.25*2 / (0.25*2 + 3) = 5/7; macro = 5/21.
    expect(macro.f).toBeCloseTo(5 / 21, FRACTION_DIGITS);
  });

  test('precision_score docstring: y_pred all 0 -> [0.33..., 0., 0.]; zero_division=1 -> [0.33..., 1., 1.]', () => {
    const allZero = [0, 0, 0, 0, 0, 0];
    const byDefault = precisionRecallF(yTrue, allZero, { average: null });
    expectArray(byDefault.perClass.precision, ['0.33...', '0.', '0.']);
    expect(byDefault.zeroDivision.precision).toBe(true);
    expect(byDefault.zeroDivision.labels).toEqual([1, 2]);
    expectArray(precisionRecallF(yTrue, allZero, { average: null, zeroDivision: 1 }).perClass.precision, ['0.33...', '1.', '1.']);
  });

  test('recall_score docstring: y_true all 0 -> [0.5, 0., 0.]; zero_division=1 -> [0.5, 1., 1.]', () => {
    const allZero = [0, 0, 0, 0, 0, 0];
    const byDefault = precisionRecallF(allZero, yPred, { average: null });
    expectArray(byDefault.perClass.recall, ['0.5', '0.', '0.']);
    expect(byDefault.zeroDivision.recall).toBe(true);
    expectArray(precisionRecallF(allZero, yPred, { average: null, zeroDivision: 1 }).perClass.recall, ['0.5', '1.', '1.']);
  });

  test('f1_score docstring: all-zero y_true and y_pred, zero_division=1 -> 1.0...', () => {
    // average='binary', pos_label=1 is absent from both: tp + fp + fn = 0 -> zero_division.
    const zeros = [0, 0, 0, 0, 0, 0];
    const result = f1Score(zeros, zeros, { zeroDivision: 1 });
    expectScalar(result.f, '1.0...');
    expect(result.zeroDivision.f).toBe(true);
    expect(f1Score(zeros, zeros).f).toBe(0);
  });
});

describe('precision_recall_fscore_support docstring (string labels)', () => {
  const yTrue = ['cat', 'dog', 'pig', 'cat', 'dog', 'pig'];
  const yPred = ['cat', 'pig', 'dog', 'cat', 'cat', 'dog'];

  test.each([
    ['macro', ['0.22...', '0.33...', '0.26...']],
    ['micro', ['0.33...', '0.33...', '0.33...']],
    ['weighted', ['0.22...', '0.33...', '0.26...']],
  ] as const)('average=%s -> (%j, None)', (average, [p, r, f]) => {
    const result = precisionRecallF(yTrue, yPred, { average });
    expectScalar(result.precision, p);
    expectScalar(result.recall, r);
    expectScalar(result.f, f);
  });

  test("average=None, labels=['pig', 'dog', 'cat'] -> ([0., 0., 0.66...], [0., 0., 1.], [0., 0., 0.8], [2, 2, 2])", () => {
    const { perClass } = precisionRecallF(yTrue, yPred, { average: null, labels: ['pig', 'dog', 'cat'] });
    expect(perClass.labels).toEqual(['pig', 'dog', 'cat']);
    expectArray(perClass.precision, ['0.', '0.', '0.66...']);
    expectArray(perClass.recall, ['0.', '0.', '1.']);
    expectArray(perClass.f, ['0.', '0.', '0.8']);
    expect(perClass.support).toEqual([2, 2, 2]);
  });
});

describe('classification_report docstring figures (2 decimals)', () => {
  test('y_true [0, 1, 2, 2, 2], y_pred [0, 0, 2, 2, 1]', () => {
    const yTrue = [0, 1, 2, 2, 2];
    const yPred = [0, 0, 2, 2, 1];
    const fmt = (values: number[]) => values.map((v) => v.toFixed(2));
    const { perClass } = precisionRecallF(yTrue, yPred, { average: null });
    expect(fmt(perClass.precision)).toEqual(['0.50', '0.00', '1.00']);
    expect(fmt(perClass.recall)).toEqual(['1.00', '0.00', '0.67']);
    expect(fmt(perClass.f)).toEqual(['0.67', '0.00', '0.80']);
    expect(perClass.support).toEqual([1, 1, 3]);
    expect(accuracy(yTrue, yPred).toFixed(2)).toBe('0.60');
    const macro = precisionRecallF(yTrue, yPred, { average: 'macro' });
    expect(fmt([macro.precision, macro.recall, macro.f])).toEqual(['0.50', '0.56', '0.49']);
    const weighted = precisionRecallF(yTrue, yPred, { average: 'weighted' });
    expect(fmt([weighted.precision, weighted.recall, weighted.f])).toEqual(['0.70', '0.60', '0.61']);
    expect(weighted.support).toBe(5);
  });

  test('y_true [1, 1, 1], y_pred [1, 1, 0], labels=[1, 2, 3]: absent labels score 0', () => {
    const yTrue = [1, 1, 1];
    const yPred = [1, 1, 0];
    const labels = [1, 2, 3];
    const fmt = (r: { precision: number; recall: number; f: number }) => [r.precision, r.recall, r.f].map((v) => v.toFixed(2));
    const { perClass, zeroDivision } = precisionRecallF(yTrue, yPred, { average: null, labels });
    expect(perClass.precision.map((v) => v.toFixed(2))).toEqual(['1.00', '0.00', '0.00']);
    expect(perClass.recall.map((v) => v.toFixed(2))).toEqual(['0.67', '0.00', '0.00']);
    expect(perClass.f.map((v) => v.toFixed(2))).toEqual(['0.80', '0.00', '0.00']);
    expect(perClass.support).toEqual([3, 0, 0]);
    expect(zeroDivision.labels).toEqual([2, 3]);
    // micro over labels 1..3 leaves out the prediction 0: tp 2, predicted 2, true 3.
    expect(fmt(precisionRecallF(yTrue, yPred, { average: 'micro', labels }))).toEqual(['1.00', '0.67', '0.80']);
    expect(fmt(precisionRecallF(yTrue, yPred, { average: 'macro', labels }))).toEqual(['0.33', '0.22', '0.27']);
    expect(fmt(precisionRecallF(yTrue, yPred, { average: 'weighted', labels }))).toEqual(['1.00', '0.67', '0.80']);
  });
});

describe('binary average (hand-derived)', () => {
  test('string labels with posLabel', () => {
    // spam is positive: tp 2 (idx 0, 3), fp 1 (idx 2), fn 1 (idx 4) -> P 2/3, R 2/3, F 2/3.
    const yTrue = ['spam', 'ham', 'ham', 'spam', 'spam'];
    const yPred = ['spam', 'ham', 'spam', 'spam', 'ham'];
    const result = f1Score(yTrue, yPred, { posLabel: 'spam' });
    expect(result.precision).toBeCloseTo(2 / 3, FRACTION_DIGITS);
    expect(result.recall).toBeCloseTo(2 / 3, FRACTION_DIGITS);
    expect(result.f).toBeCloseTo(2 / 3, FRACTION_DIGITS);
    expect(result.perClass.labels).toEqual(['spam']);
    // ham as positive: tp 1, fp 1, fn 1 -> 1/2 each.
    expect(f1Score(yTrue, yPred, { posLabel: 'ham' }).f).toBeCloseTo(1 / 2, FRACTION_DIGITS);
  });

  test('weighted recall equals accuracy (sklearn docs) on a seeded random multiclass sample', () => {
    let state = 12345;
    const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
    const yTrue = Array.from({ length: 37 }, () => Math.floor(next() * 5));
    const yPred = Array.from({ length: 37 }, () => Math.floor(next() * 5));
    const weighted = precisionRecallF(yTrue, yPred, { average: 'weighted' });
    expect(weighted.recall).toBeCloseTo(accuracy(yTrue, yPred), FRACTION_DIGITS);
    // And micro precision = micro recall = micro F = accuracy when every label is scored.
    const micro = precisionRecallF(yTrue, yPred, { average: 'micro' });
    expect(micro.precision).toBeCloseTo(accuracy(yTrue, yPred), FRACTION_DIGITS);
    expect(micro.f).toBeCloseTo(accuracy(yTrue, yPred), FRACTION_DIGITS);
  });
});

describe('zero-support weighted average (hand-derived; scikit-learn >= 1.3 _nanaverage)', () => {
  test('when no scored label has a true sample, weighted falls back to the unweighted mean', () => {
    // labels [1]: support 0, predicted 2, tp 0 -> P 0/2 = 0, R 0/0 -> zeroDivision, F 0/(0+2) = 0.
    // All weights are 0, so numpy.average raises ZeroDivisionError and sklearn averages unweighted.
    const byDefault = precisionRecallF([0, 0], [1, 1], { average: 'weighted', labels: [1] });
    expect([byDefault.precision, byDefault.recall, byDefault.f]).toEqual([0, 0, 0]);
    expect(byDefault.zeroDivision).toEqual({ precision: false, recall: true, f: false, labels: [1] });
    const withOne = precisionRecallF([0, 0], [1, 1], { average: 'weighted', labels: [1], zeroDivision: 1 });
    expect([withOne.precision, withOne.recall, withOne.f]).toEqual([0, 1, 0]);
  });

  test('zeroDivision NaN leaves the undefined entries out of macro averages', () => {
    // Per class (y_pred all 0 on y_true [0,1,2,0,1,2]): P = [1/3, NaN, NaN] -> macro P = 1/3.
    const result = precisionRecallF([0, 1, 2, 0, 1, 2], [0, 0, 0, 0, 0, 0], { average: 'macro', zeroDivision: NaN });
    expect(result.precision).toBeCloseTo(1 / 3, FRACTION_DIGITS);
  });
});

describe('label order and bad input', () => {
  test('sorted union: numbers ascending, strings by code point', () => {
    expect(sortedUniqueLabels([10, 2], [-1, 2])).toEqual([-1, 2, 10]);
    // UTF-16 order would put U+1F600 (surrogates D83D..) before U+FF21; code point order puts it after.
    expect(sortedUniqueLabels(['\u{1F600}', '\uFF21', 'b', 'B'])).toEqual(['B', 'b', '\uFF21', '\u{1F600}']);
  });
  test('binary average on multiclass targets is refused', () => {
    expect(() => f1Score([0, 1, 2], [0, 1, 2])).toThrow(/at most 2 distinct labels/);
  });
  test('posLabel not among two present labels is refused', () => {
    expect(() => f1Score(['a', 'b'], ['a', 'b'])).toThrow(/posLabel/);
  });
  test('mixed label types and length mismatch are refused', () => {
    expect(() => accuracy([0, '1'], [0, 1])).toThrow(/one type/);
    expect(() => accuracy([0, 1], [0])).toThrow(/same length/);
    expect(() => accuracy([0, 1], ['0', '1'])).toThrow(/same type/);
  });
  test('confusionMatrix with labels none of which occur in yTrue is refused (as scikit-learn)', () => {
    expect(() => confusionMatrix([0, 1], [0, 1], { labels: [5] })).toThrow(/at least one of labels/);
  });
});
