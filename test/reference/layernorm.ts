/** Float64 reference of LayerNorm over the last dimension (nn.LayerNorm: biased variance, eps inside the sqrt). */

export interface LayerNormForward {
  out: Float64Array; // (N,C)
  mean: Float64Array; // (N)
  rstd: Float64Array; // (N) 1 / sqrt(var + eps)
}

export function layernormForward(
  inp: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number>, N: number, C: number, eps: number,
): LayerNormForward {
  const out = new Float64Array(N * C), mean = new Float64Array(N), rstd = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[r * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (inp[r * C + c] - m) ** 2;
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = (inp[r * C + c] - m) * s * weight[c] + bias[c];
    mean[r] = m;
    rstd[r] = s;
  }
  return { out, mean, rstd };
}

export interface LayerNormGrads {
  dinp: Float64Array; // (N,C)
  dweight: Float64Array; // (C)
  dbias: Float64Array; // (C)
}

/**
 * Gradients of sum(out * dout). With xhat = (x - mean) rstd and g = dout * weight:
 * dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), dweight = sum_rows dout xhat, dbias = sum_rows dout.
 */
export function layernormBackward(
  dout: ArrayLike<number>, inp: ArrayLike<number>, weight: ArrayLike<number>, N: number, C: number, eps: number,
): LayerNormGrads {
  const { mean, rstd } = layernormForward(inp, weight, new Float64Array(C), N, C, eps);
  const dinp = new Float64Array(N * C), dweight = new Float64Array(C), dbias = new Float64Array(C);
  for (let r = 0; r < N; r++) {
    let gMean = 0, gxMean = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (inp[r * C + c] - mean[r]) * rstd[r];
      const g = dout[r * C + c] * weight[c];
      gMean += g / C;
      gxMean += (g * xhat) / C;
      dweight[c] += dout[r * C + c] * xhat;
      dbias[c] += dout[r * C + c];
    }
    for (let c = 0; c < C; c++) {
      const xhat = (inp[r * C + c] - mean[r]) * rstd[r];
      const g = dout[r * C + c] * weight[c];
      dinp[r * C + c] = rstd[r] * (g - gMean - xhat * gxMean);
    }
  }
  return { dinp, dweight, dbias };
}
