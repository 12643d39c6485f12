/**
 * Float64 reference of one torch.optim.AdamW step (PyTorch 1.13 / 2.x single-tensor path):
 *   g = grad * gradScale;  p *= 1 - lr * weightDecay
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * params, m, v are updated in place; step is 1-based.
 */
export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export function adamwStep(
  params: Float64Array, m: Float64Array, v: Float64Array, grads: ArrayLike<number>, cfg: AdamWConfig, gradScale: number, step: number,
): void {
  const biasCorrection1 = 1 - cfg.beta1 ** step;
  const biasCorrection2 = 1 - cfg.beta2 ** step;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * gradScale;
    params[i] *= 1 - cfg.lr * cfg.weightDecay;
    m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
    v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
    params[i] -= ((cfg.lr / biasCorrection1) * m[i]) / (Math.sqrt(v[i]) / Math.sqrt(biasCorrection2) + cfg.eps);
  }
}
