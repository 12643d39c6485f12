/** Float64 reference of the SwiGLU MLP's activation: inp (N,2H) = [gate | up], out (N,H) = silu(gate) * up. */

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function swigluForward(inp: ArrayLike<number>, N: number, H: number): Float64Array {
  const out = new Float64Array(N * H);
  for (let n = 0; n < N; n++)
    for (let i = 0; i < H; i++) {
      const g = inp[n * 2 * H + i], u = inp[n * 2 * H + H + i];
      out[n * H + i] = g * sigmoid(g) * u;
    }
  return out;
}

/** dinp (N,2H) of sum(out * dout): d up = dout silu(g), d gate = dout up sigmoid(g) (1 + g (1 - sigmoid(g))). */
export function swigluBackward(dout: ArrayLike<number>, inp: ArrayLike<number>, N: number, H: number): Float64Array {
  const dinp = new Float64Array(N * 2 * H);
  for (let n = 0; n < N; n++)
    for (let i = 0; i < H; i++) {
      const g = inp[n * 2 * H + i], u = inp[n * 2 * H + H + i], dy = dout[n * H + i], s = sigmoid(g);
      dinp[n * 2 * H + i] = dy * u * s * (1 + g * (1 - s));
      dinp[n * 2 * H + H + i] = dy * g * s;
    }
  return dinp;
}
