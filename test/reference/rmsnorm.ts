/**
 * Float64 references of RMSNorm (Llama's LlamaRMSNorm: no mean, no bias) and of Qwen3's per-head
 * q_norm / k_norm on a packed qkv row.
 */

export interface RmsNormForward {
  out: Float64Array; // (N,C)
  rstd: Float64Array; // (N) 1 / sqrt(mean(x^2) + eps)
}

/** out = x * rstd * weight per row of inp (N,C). */
export function rmsnormForward(inp: ArrayLike<number>, weight: ArrayLike<number>, N: number, C: number, eps: number): RmsNormForward {
  const out = new Float64Array(N * C), rstd = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    let ms = 0;
    for (let c = 0; c < C; c++) ms += inp[r * C + c] ** 2;
    const s = 1 / Math.sqrt(ms / C + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = inp[r * C + c] * s * weight[c];
    rstd[r] = s;
  }
  return { out, rstd };
}

export interface RmsNormGrads {
  dinp: Float64Array; // (N,C)
  dweight: Float64Array; // (C)
}

/**
 * Gradients of sum(out * dout). With xhat = x rstd and g = dout * weight, since d rstd / dx_j = -rstd^3 x_j / C:
 * dx = rstd (g - xhat mean_c(g xhat)), dweight = sum_rows dout xhat.
 */
export function rmsnormBackward(
  dout: ArrayLike<number>, inp: ArrayLike<number>, weight: ArrayLike<number>, N: number, C: number, eps: number,
): RmsNormGrads {
  const { rstd } = rmsnormForward(inp, weight, N, C, eps);
  const dinp = new Float64Array(N * C), dweight = new Float64Array(C);
  for (let r = 0; r < N; r++) {
    let gxMean = 0;
    for (let c = 0; c < C; c++) {
      const xhat = inp[r * C + c] * rstd[r];
      gxMean += (dout[r * C + c] * weight[c] * xhat) / C;
      dweight[c] += dout[r * C + c] * xhat;
    }
    for (let c = 0; c < C; c++) {
      const xhat = inp[r * C + c] * rstd[r];
      dinp[r * C + c] = rstd[r] * (dout[r * C + c] * weight[c] - xhat * gxMean);
    }
  }
  return { dinp, dweight };
}

/** The (N * heads, HS) head vectors of part [first, first + heads) of each qkv row (N, W). */
function heads(x: ArrayLike<number>, N: number, W: number, first: number, count: number, HS: number): Float64Array {
  const out = new Float64Array(N * count * HS);
  for (let n = 0; n < N; n++) for (let i = 0; i < count * HS; i++) out[(n * count) * HS + i] = x[n * W + first * HS + i];
  return out;
}

export interface QkNormForward {
  out: Float64Array; // (N,(NH+2*NKV)*HS)
  rstd: Float64Array; // (N,NH+NKV)
}

/** q heads normalised with qWeight (HS), k heads with kWeight (HS), v heads copied. */
export function qknormForward(
  inp: ArrayLike<number>, qWeight: ArrayLike<number>, kWeight: ArrayLike<number>,
  N: number, NH: number, NKV: number, HS: number, eps: number,
): QkNormForward {
  const W = (NH + 2 * NKV) * HS;
  const q = rmsnormForward(heads(inp, N, W, 0, NH, HS), qWeight, N * NH, HS, eps);
  const k = rmsnormForward(heads(inp, N, W, NH, NKV, HS), kWeight, N * NKV, HS, eps);
  const out = new Float64Array(N * W), rstd = new Float64Array(N * (NH + NKV));
  for (let n = 0; n < N; n++) {
    out.set(q.out.subarray(n * NH * HS, (n + 1) * NH * HS), n * W);
    out.set(k.out.subarray(n * NKV * HS, (n + 1) * NKV * HS), n * W + NH * HS);
    for (let i = (NH + NKV) * HS; i < W; i++) out[n * W + i] = inp[n * W + i];
    rstd.set(q.rstd.subarray(n * NH, (n + 1) * NH), n * (NH + NKV));
    rstd.set(k.rstd.subarray(n * NKV, (n + 1) * NKV), n * (NH + NKV) + NH);
  }
  return { out, rstd };
}

export interface QkNormGrads {
  dinp: Float64Array; // (N,(NH+2*NKV)*HS)
  dqWeight: Float64Array; // (HS)
  dkWeight: Float64Array; // (HS)
}

export function qknormBackward(
  dout: ArrayLike<number>, inp: ArrayLike<number>, qWeight: ArrayLike<number>, kWeight: ArrayLike<number>,
  N: number, NH: number, NKV: number, HS: number, eps: number,
): QkNormGrads {
  const W = (NH + 2 * NKV) * HS;
  const q = rmsnormBackward(heads(dout, N, W, 0, NH, HS), heads(inp, N, W, 0, NH, HS), qWeight, N * NH, HS, eps);
  const k = rmsnormBackward(heads(dout, N, W, NH, NKV, HS), heads(inp, N, W, NH, NKV, HS), kWeight, N * NKV, HS, eps);
  const dinp = new Float64Array(N * W);
  for (let n = 0; n < N; n++) {
    dinp.set(q.dinp.subarray(n * NH * HS, (n + 1) * NH * HS), n * W);
    dinp.set(k.dinp.subarray(n * NKV * HS, (n + 1) * NKV * HS), n * W + NH * HS);
    for (let i = (NH + NKV) * HS; i < W; i++) dinp[n * W + i] = dout[n * W + i];
  }
  return { dinp, dqWeight: q.dweight, dkWeight: k.dweight };
}
