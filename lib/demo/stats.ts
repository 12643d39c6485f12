/**
 * Is a difference between two classifiers on the same test emails more than chance? McNemar's
 * exact test: of the emails where exactly one of the two is right (b where only B is, c where
 * only A is), under "equally good" each is B's with probability 1/2, so the two-sided p-value is
 * min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2).
 */

export interface PairedComparison {
  /** Emails only B classifies correctly, and only A. */
  onlyB: number;
  onlyA: number;
  /** McNemar's exact two-sided p-value (1 when the two never disagree on correctness). */
  p: number;
}

/** log(exp(a) + exp(b)) without overflow. */
function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  const hi = Math.max(a, b), lo = Math.min(a, b);
  return hi + Math.log1p(Math.exp(lo - hi));
}

/** min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2), summed in log space (2^-n underflows past n = 1074). */
export function mcnemarExactP(b: number, c: number): number {
  for (const [name, v] of [['b', b], ['c', c]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`mcnemarExactP: ${name} must be a whole number >= 0 but is ${v}`);
  }
  const n = b + c, k = Math.min(b, c);
  if (n === 0) return 1;
  let logTerm = -n * Math.LN2; // log P(X = 0)
  let logTail = logTerm;
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log((n - i + 1) / i); // C(n, i) = C(n, i - 1) (n - i + 1) / i
    logTail = logAddExp(logTail, logTerm);
  }
  return Math.min(1, 2 * Math.exp(logTail));
}

/** McNemar's test of B against A on the same examples. */
export function comparePaired(truth: readonly string[], predictedA: readonly string[], predictedB: readonly string[]): PairedComparison {
  if (predictedA.length !== truth.length || predictedB.length !== truth.length) {
    throw new RangeError(`comparePaired: expected ${truth.length} predictions from each model but received ${predictedA.length} and ${predictedB.length}`);
  }
  let onlyA = 0, onlyB = 0;
  for (let i = 0; i < truth.length; i++) {
    const a = predictedA[i] === truth[i], b = predictedB[i] === truth[i];
    if (a && !b) onlyA++;
    else if (b && !a) onlyB++;
  }
  return { onlyB, onlyA, p: mcnemarExactP(onlyB, onlyA) };
}
