/**
 * Element-wise comparison of a float32 kernel result with a float64 reference, under a tolerance
 * |got - want| <= rel * |want| + abs that each test states with its reason. On failure the message
 * names the worst element, both values and the tolerance, so a failing test says what went wrong.
 */
export interface Tolerance {
  rel: number;
  abs: number;
}

/** The worst element: its index and |got - want| / (rel |want| + abs) (<= 1 passes; NaN -> Infinity). */
export function worstViolation(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): { index: number; ratio: number } {
  if (got.length !== want.length) throw new Error(`length mismatch: got ${got.length} values, reference has ${want.length}`);
  let index = -1;
  let ratio = 0;
  for (let i = 0; i < got.length; i++) {
    const diff = Math.abs(got[i] - want[i]);
    const r = diff === 0 ? 0 : Number.isNaN(diff) ? Infinity : diff / (tol.rel * Math.abs(want[i]) + tol.abs);
    if (r > ratio || index < 0) {
      ratio = r;
      index = i;
    }
  }
  return { index, ratio };
}

/** Throws unless every element of got is within tol of want. */
export function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): void {
  const { index, ratio } = worstViolation(got, want, tol);
  if (ratio > 1) {
    throw new Error(
      `${what}: element ${index} is ${got[index]} but the reference is ${want[index]} ` +
        `(|diff| = ${Math.abs(got[index] - want[index]).toExponential(3)}, ${ratio.toFixed(2)}x the tolerance rel ${tol.rel}, abs ${tol.abs})`,
    );
  }
}
