/** Float64 reference of the token + position embedding (kernels.inc: encoder_forward/backward). */

/** The position of row (b, t): positions[b*T + t] when given, else posOffset + t. */
export function positionOf(positions: ArrayLike<number> | null, row: number, T: number, posOffset: number): number {
  return positions ? positions[row] : posOffset + (row % T);
}

/** out (B,T,C) = wte[tokens[b,t]] + wpe[pos(b,t)]. */
export function encoderForward(
  tokens: ArrayLike<number>, positions: ArrayLike<number> | null, wte: ArrayLike<number>, wpe: ArrayLike<number>,
  B: number, T: number, C: number, posOffset: number,
): Float64Array {
  const out = new Float64Array(B * T * C);
  for (let row = 0; row < B * T; row++) {
    const tok = tokens[row], pos = positionOf(positions, row, T, posOffset);
    for (let c = 0; c < C; c++) out[row * C + c] = wte[tok * C + c] + wpe[pos * C + c];
  }
  return out;
}

/** dwte += scatter of dout by token id, dwpe += scatter by position (both updated in place). */
export function encoderBackward(
  dwte: Float64Array, dwpe: Float64Array, dout: ArrayLike<number>, tokens: ArrayLike<number>,
  positions: ArrayLike<number> | null, B: number, T: number, C: number, posOffset: number,
): void {
  for (let row = 0; row < B * T; row++) {
    const tok = tokens[row], pos = positionOf(positions, row, T, posOffset);
    for (let c = 0; c < C; c++) {
      dwte[tok * C + c] += dout[row * C + c];
      dwpe[pos * C + c] += dout[row * C + c];
    }
  }
}
