/**
 * Central finite differences in float64, to check a reference backward against its own forward:
 * d loss / d x[i] ~ (loss(x + h e_i) - loss(x - h e_i)) / (2h), error O(h^2) plus rounding
 * O(eps * |loss| / h). With h = 1e-5 on O(1) functions both are ~1e-10.
 */
export function centralDifferences(
  loss: (x: Float64Array) => number,
  x: Float64Array,
  indices: Iterable<number> = x.keys(),
  h = 1e-5,
): Map<number, number> {
  const grads = new Map<number, number>();
  const probe = Float64Array.from(x);
  for (const i of indices) {
    probe[i] = x[i] + h;
    const up = loss(probe);
    probe[i] = x[i] - h;
    const down = loss(probe);
    probe[i] = x[i];
    grads.set(i, (up - down) / (2 * h));
  }
  return grads;
}

/** sum_i a[i] * b[i]: the scalar loss <out, dout> whose gradient a backward with dout computes. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
