/**
 * Float64 references for the linear layer and sgemm, written as the textbook sums. Each result comes
 * with a per-element magnitude (the same sum with every term made positive), because a float32
 * sum's rounding error scales with that, not with the result, which may cancel to near zero.
 */

type Arr = ArrayLike<number>;

// |x| without Math.abs: under jest's vm sandbox Math.abs is not inlined and makes these O(MNK)
// loops ~20x slower (7.4 s instead of 0.4 s for 17M terms).
const abs = (x: number) => (x < 0 ? -x : x);

/** Unit roundoff of float32 (2^-24). */
export const FLOAT32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * Worst-case rounding error bound of a float32 result assembled from `terms` rounded additions
 * (products, partial sums, alpha/beta/bias): Higham's gamma_n = n u / (1 - n u) times the
 * magnitude, doubled to cover fused vs separate multiply-add rounding in the blocked kernel.
 */
export function float32SumTolerance(terms: number, magnitude: number): number {
  const nu = (terms + 3) * FLOAT32_UNIT_ROUNDOFF;
  return (2 * nu / (1 - nu)) * magnitude;
}

/** Throws unless |got[i] - want[i]| <= float32SumTolerance(terms, magnitude[i]) + abs for all i. */
export function expectWithinRounding(
  what: string, got: ArrayLike<number>, want: ArrayLike<number>, magnitude: ArrayLike<number>, terms: number, abs = 0,
): void {
  expect(got.length).toBe(want.length);
  let worst = -1, worstRatio = 0;
  for (let i = 0; i < got.length; i++) {
    const tol = float32SumTolerance(terms, magnitude[i]) + abs + 1e-30;
    const diff = Math.abs(got[i] - want[i]);
    const ratio = Number.isNaN(diff) ? Infinity : diff / tol;
    if (ratio > worstRatio || worst < 0) {
      worstRatio = ratio;
      worst = i;
    }
  }
  if (worstRatio > 1) {
    throw new Error(
      `${what}: element ${worst} is ${got[worst]} but the reference is ${want[worst]} ` +
        `(${worstRatio.toFixed(2)}x the float32 rounding bound for ${terms} terms of total magnitude ${magnitude[worst]})`,
    );
  }
}

/** out (N,OC) = inp (N,C) @ weight^T + bias, with |inp| @ |weight|^T + |bias| as magnitude. */
export function matmulForwardRef(inp: Arr, weight: Arr, bias: Arr | null, N: number, C: number, OC: number) {
  const out = new Float64Array(N * OC);
  const magnitude = new Float64Array(N * OC);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      let sum = bias ? bias[o] : 0;
      let absSum = bias ? abs(bias[o]) : 0;
      for (let c = 0; c < C; c++) {
        const p = inp[n * C + c] * weight[o * C + c];
        sum += p;
        absSum += abs(p);
      }
      out[n * OC + o] = sum;
      magnitude[n * OC + o] = absSum;
    }
  }
  return { out, magnitude };
}

/**
 * Gradients of loss = <out, dout> for out = inp @ weight^T + bias:
 * dinp (N,C) = dout @ weight, dweight (OC,C) = dout^T @ inp, dbias (OC) = column sums of dout;
 * each with its magnitude.
 */
export function matmulBackwardRef(dout: Arr, inp: Arr, weight: Arr, N: number, C: number, OC: number) {
  const dinp = new Float64Array(N * C), dinpMagnitude = new Float64Array(N * C);
  const dweight = new Float64Array(OC * C), dweightMagnitude = new Float64Array(OC * C);
  const dbias = new Float64Array(OC), dbiasMagnitude = new Float64Array(OC);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      const d = dout[n * OC + o];
      dbias[o] += d;
      dbiasMagnitude[o] += abs(d);
      for (let c = 0; c < C; c++) {
        const pIn = d * weight[o * C + c];
        dinp[n * C + c] += pIn;
        dinpMagnitude[n * C + c] += abs(pIn);
        const pW = d * inp[n * C + c];
        dweight[o * C + c] += pW;
        dweightMagnitude[o * C + c] += abs(pW);
      }
    }
  }
  return { dinp, dinpMagnitude, dweight, dweightMagnitude, dbias, dbiasMagnitude };
}

/**
 * C (M,N) = alpha * op(A) op(B) + beta * C0, row-major with leading dimensions; op(A) is (M,K)
 * (A stored (K,M) when transA), op(B) is (K,N) (B stored (N,K) when transB). beta == 0 ignores C0
 * entirely (BLAS semantics: it may hold NaN). Columns N..ldc-1 of each row keep C0's values.
 */
export function sgemmRef(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Arr, lda: number, B: Arr, ldb: number, beta: number, C0: Arr, ldc: number,
) {
  const c = Float64Array.from(C0 as ArrayLike<number>);
  const magnitude = new Float64Array(c.length);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum = 0, absSum = 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * lda + i] : A[i * lda + k];
        const b = transB ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
        absSum += abs(a * b);
      }
      const old = beta === 0 ? 0 : beta * C0[i * ldc + j];
      c[i * ldc + j] = alpha * sum + old;
      magnitude[i * ldc + j] = abs(alpha) * absSum + abs(old);
    }
  }
  return { c, magnitude };
}
