/**
 * Float64 reference of the LoRA adapter kernels (kernels.inc lora_forward / lora_backward), PEFT's
 * y = base(x) + scaling * B(A(dropout(x))), the dropout mask drawn by reference/dropout.ts.
 * Each result comes with its magnitude (the same sums with every term made positive), which bounds
 * float32 rounding (reference/matmul.ts's expectWithinRounding).
 */

import { dropoutMultipliers } from './dropout';

type Arr = ArrayLike<number>;

const abs = (x: number) => (x < 0 ? -x : x);

export interface LoraShape {
  N: number;
  C: number;
  R: number;
  OC: number;
  ld: number;
  offset: number;
  scaling: number;
  dropout: number;
  seed: number;
}

/**
 * u (N,R) = dropout(inp) @ A^T and the adapter's contribution delta (N,OC) = scaling * u @ B^T (out's
 * columns [offset, offset + OC) are out0 + delta), each with its magnitude.
 */
export function loraForwardRef(inp: Arr, A: Arr, B: Arr, s: LoraShape) {
  const { N, C, R, OC, scaling } = s;
  const m = dropoutMultipliers(s.seed, s.dropout, N * C);
  const u = new Float64Array(N * R), uMagnitude = new Float64Array(N * R);
  for (let n = 0; n < N; n++)
    for (let r = 0; r < R; r++) {
      let sum = 0, mag = 0;
      for (let c = 0; c < C; c++) {
        const t = m[n * C + c] * inp[n * C + c] * A[r * C + c];
        sum += t;
        mag += abs(t);
      }
      u[n * R + r] = sum;
      uMagnitude[n * R + r] = mag;
    }
  const delta = new Float64Array(N * OC), deltaMagnitude = new Float64Array(N * OC);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OC; o++) {
      let sum = 0, mag = 0;
      for (let r = 0; r < R; r++) {
        sum += u[n * R + r] * B[o * R + r];
        mag += uMagnitude[n * R + r] * abs(B[o * R + r]);
      }
      delta[n * OC + o] = scaling * sum;
      deltaMagnitude[n * OC + o] = abs(scaling) * mag;
    }
  return { u, uMagnitude, delta, deltaMagnitude, multipliers: m };
}

/**
 * The gradients of loss = <out slice, dout slice> given the saved u (N,R): du (N,R), and the
 * increments of dB (OC,R), dA (R,C), dinp (N,C); dout rows have stride ld and the slice starts at
 * offset. Magnitudes include the propagated magnitude of du, which the kernel computes in float32
 * before using it.
 */
export function loraBackwardRef(dout: Arr, u: Arr, inp: Arr, A: Arr, B: Arr, s: LoraShape) {
  const { N, C, R, OC, ld, offset, scaling } = s;
  const m = dropoutMultipliers(s.seed, s.dropout, N * C);
  const g = (n: number, o: number) => dout[n * ld + offset + o];
  const du = new Float64Array(N * R), duMagnitude = new Float64Array(N * R);
  for (let n = 0; n < N; n++)
    for (let r = 0; r < R; r++) {
      let sum = 0, mag = 0;
      for (let o = 0; o < OC; o++) {
        const t = g(n, o) * B[o * R + r];
        sum += t;
        mag += abs(t);
      }
      du[n * R + r] = scaling * sum;
      duMagnitude[n * R + r] = abs(scaling) * mag;
    }
  const dB = new Float64Array(OC * R), dBMagnitude = new Float64Array(OC * R);
  for (let o = 0; o < OC; o++)
    for (let r = 0; r < R; r++) {
      let sum = 0, mag = 0;
      for (let n = 0; n < N; n++) {
        const t = g(n, o) * u[n * R + r];
        sum += t;
        mag += abs(t);
      }
      dB[o * R + r] = scaling * sum;
      dBMagnitude[o * R + r] = abs(scaling) * mag;
    }
  const dA = new Float64Array(R * C), dAMagnitude = new Float64Array(R * C);
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++) {
      let sum = 0, mag = 0;
      for (let n = 0; n < N; n++) {
        const x = m[n * C + c] * inp[n * C + c];
        sum += du[n * R + r] * x;
        mag += duMagnitude[n * R + r] * abs(x);
      }
      dA[r * C + c] = sum;
      dAMagnitude[r * C + c] = mag;
    }
  const dinp = new Float64Array(N * C), dinpMagnitude = new Float64Array(N * C);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      let sum = 0, mag = 0;
      for (let r = 0; r < R; r++) {
        sum += du[n * R + r] * A[r * C + c];
        mag += duMagnitude[n * R + r] * abs(A[r * C + c]);
      }
      dinp[n * C + c] = m[n * C + c] * sum;
      dinpMagnitude[n * C + c] = m[n * C + c] * mag;
    }
  return { du, duMagnitude, dB, dBMagnitude, dA, dAMagnitude, dinp, dinpMagnitude };
}
