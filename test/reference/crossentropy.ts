/** Float64 reference of softmax cross-entropy over the vocabulary, and of the temperature softmax. */

export interface CrossEntropyForward {
  losses: Float64Array; // (N) lse - logit[target], 0 for ignored rows
  lse: Float64Array; // (N) log-sum-exp of each row
  argmax: Int32Array; // (N) index of each row's first maximum
}

export function crossentropyForward(
  logits: ArrayLike<number>, targets: ArrayLike<number>, N: number, V: number, ignoreIndex: number,
): CrossEntropyForward {
  const losses = new Float64Array(N), lse = new Float64Array(N), argmax = new Int32Array(N);
  for (let r = 0; r < N; r++) {
    let max = -Infinity, arg = 0;
    for (let i = 0; i < V; i++) {
      if (logits[r * V + i] > max) {
        max = logits[r * V + i];
        arg = i;
      }
    }
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i] - max);
    lse[r] = max + Math.log(sum);
    argmax[r] = arg;
    losses[r] = targets[r] === ignoreIndex ? 0 : lse[r] - logits[r * V + targets[r]];
  }
  return { losses, lse, argmax };
}

/** Gradient of scale * sum(losses): scale (softmax - onehot(target)) per row, 0 for ignored rows. */
export function crossentropyBackward(
  logits: ArrayLike<number>, targets: ArrayLike<number>, scale: number, N: number, V: number, ignoreIndex: number,
  rowWeights: ArrayLike<number> | null = null,
): Float64Array {
  const { lse } = crossentropyForward(logits, targets, N, V, ignoreIndex);
  const d = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    if (targets[r] === ignoreIndex) continue;
    const rowScale = scale * (rowWeights ? rowWeights[r] : 1);
    for (let i = 0; i < V; i++) d[r * V + i] = rowScale * (Math.exp(logits[r * V + i] - lse[r]) - (i === targets[r] ? 1 : 0));
  }
  return d;
}

/** probs (N,V) = softmax(logits * invTemperature) per row. */
export function softmaxForward(logits: ArrayLike<number>, invTemperature: number, N: number, V: number): Float64Array {
  const probs = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i] * invTemperature);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += probs[r * V + i] = Math.exp(logits[r * V + i] * invTemperature - max);
    for (let i = 0; i < V; i++) probs[r * V + i] /= sum;
  }
  return probs;
}
