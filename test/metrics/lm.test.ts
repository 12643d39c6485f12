/**
 * Perplexity and token accuracy. No published reference values apply, so expected values are
 * derived by hand in the comments.
 */
import { argmaxTokens, IGNORE_INDEX, perplexity, perplexityFromSums, tokenAccuracy } from '../../lib/metrics/lm';

describe('perplexity', () => {
  test('a uniform model over V tokens has cross-entropy ln V and perplexity V', () => {
    // GPT-2's vocabulary (50257) and an odd small one. exp(log(V)) is within a few ulps of V.
    for (const vocab of [50257, 7]) expect(perplexity(Math.log(vocab))).toBeCloseTo(vocab, 8);
  });
  test('loss 0 (perfect prediction) gives perplexity 1; loss is in nats, not bits', () => {
    expect(perplexity(0)).toBe(1);
    // 1 nat -> e, not 2.
    expect(perplexity(1)).toBeCloseTo(Math.E, 15);
  });
  test('perplexityFromSums weights batches by token count', () => {
    // Batch A: 3 tokens, loss sum 3*ln 2; batch B: 1 token, loss ln 16. Token mean =
    // (3 ln 2 + 4 ln 2) / 4 = 7/4 ln 2 -> perplexity 2^(7/4); the mean of batch means would
    // give 2^(5/2) instead.
    const lossSum = 3 * Math.log(2) + Math.log(16);
    expect(perplexityFromSums(lossSum, 4)).toBeCloseTo(2 ** 1.75, 12);
  });
  test('bad input names the argument', () => {
    expect(() => perplexity(NaN)).toThrow(/meanLoss/);
    expect(() => perplexity(-0.5)).toThrow(/meanLoss/);
    expect(() => perplexityFromSums(1, 0)).toThrow(/tokenCount/);
  });
});

describe('tokenAccuracy', () => {
  test('ignores positions whose target is -100', () => {
    // Positions: 0 ok, 1 wrong, 2 ignored (prediction irrelevant), 3 ok, 4 ignored -> 2/3.
    const predictions = Int32Array.from([5, 1, 9, 0, 4]);
    const targets = Int32Array.from([5, 2, IGNORE_INDEX, 0, IGNORE_INDEX]);
    expect(tokenAccuracy(predictions, targets)).toEqual({ accuracy: 2 / 3, correct: 2, counted: 3 });
  });
  test('a prediction of -100 at an ignored position is not counted as correct', () => {
    expect(tokenAccuracy([IGNORE_INDEX, 3], [IGNORE_INDEX, 4])).toEqual({ accuracy: 0, correct: 0, counted: 1 });
  });
  test('custom ignore index, and all-ignored gives NaN rather than a misleading 0 or 1', () => {
    expect(tokenAccuracy([1, 2, 3], [0, 2, 0], 0)).toEqual({ accuracy: 1, correct: 1, counted: 1 });
    expect(tokenAccuracy([1], [IGNORE_INDEX]).accuracy).toBeNaN();
  });
  test('targets equal to the appended EOS id are not counted, right or wrong', () => {
    // Positions: 0 ok, 1 EOS predicted (not counted), 2 EOS missed (not counted), 3 wrong, 4 ignored -> 1/2.
    expect(tokenAccuracy([5, 9, 1, 7, 4], [5, 9, 9, 8, IGNORE_INDEX], IGNORE_INDEX, 9)).toEqual({ accuracy: 1 / 2, correct: 1, counted: 2 });
    expect(tokenAccuracy([9], [9], IGNORE_INDEX, 9).accuracy).toBeNaN();
  });
  test('length mismatch is refused', () => {
    expect(() => tokenAccuracy([1, 2], [1])).toThrow(/same length.*2 and 1/);
  });
});

describe('argmaxTokens', () => {
  test('row-wise argmax, first index on ties, NaN wins', () => {
    // (N=3, V=3): row 0 max at 2; row 1 tie between 0 and 1 -> 0; row 2 NaN at 1 -> 1.
    const logits = Float32Array.from([0.1, -2, 3.5, 7, 7, -1, 0, NaN, 9]);
    expect(Array.from(argmaxTokens(logits, 3))).toEqual([2, 0, 1]);
  });
  test('logits length must be a multiple of vocabSize', () => {
    expect(() => argmaxTokens(new Float32Array(7), 3)).toThrow(/multiple of vocabSize=3/);
  });
});
