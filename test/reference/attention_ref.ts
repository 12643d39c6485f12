/**
 * Float64 reference of GPT-2's causal multi-head self-attention, one full softmax per query row.
 * qkv (B,T,3C): q at channels [0,C), k at [C,2C), v at [2C,3C); head h owns [h*hs, (h+1)*hs) of each,
 * hs = C/NH. Query t attends keys j <= t, and with segmentIds (B,T) only keys of its own segment.
 */

export interface AttentionForward {
  out: Float64Array; // (B,T,C)
  lse: Float64Array; // (B,NH,T) log-sum-exp of each query row's scaled, masked scores
}

/** Whether query t of batch row b may attend key j <= t. */
function visible(segmentIds: ArrayLike<number> | null, b: number, T: number, t: number, j: number): boolean {
  return segmentIds === null || segmentIds[b * T + j] === segmentIds[b * T + t];
}

/** p (T): the softmax probabilities of query (b, h, t) over keys 0..t (0 where masked); returns lse. */
function rowProbabilities(
  p: Float64Array, qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null,
  b: number, h: number, t: number, T: number, C: number, hs: number,
): number {
  const scale = 1 / Math.sqrt(hs);
  const q = (b * T + t) * 3 * C + h * hs;
  let max = -Infinity;
  for (let j = 0; j <= t; j++) {
    if (!visible(segmentIds, b, T, t, j)) continue;
    const k = (b * T + j) * 3 * C + C + h * hs;
    let s = 0;
    for (let d = 0; d < hs; d++) s += qkv[q + d] * qkv[k + d];
    p[j] = s * scale;
    max = Math.max(max, p[j]);
  }
  let sum = 0;
  for (let j = 0; j <= t; j++) {
    p[j] = visible(segmentIds, b, T, t, j) ? Math.exp(p[j] - max) : 0;
    sum += p[j];
  }
  for (let j = 0; j <= t; j++) p[j] /= sum;
  return max + Math.log(sum);
}

export function attentionForward(
  qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null, B: number, T: number, C: number, NH: number,
): AttentionForward {
  const hs = C / NH;
  const out = new Float64Array(B * T * C), lse = new Float64Array(B * NH * T);
  const p = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++) {
        lse[(b * NH + h) * T + t] = rowProbabilities(p, qkv, segmentIds, b, h, t, T, C, hs);
        const o = (b * T + t) * C + h * hs;
        for (let j = 0; j <= t; j++) {
          const v = (b * T + j) * 3 * C + 2 * C + h * hs;
          for (let d = 0; d < hs; d++) out[o + d] += p[j] * qkv[v + d];
        }
      }
  return { out, lse };
}

/**
 * dqkv (B,T,3C): the gradient of sum(out * dout). Per query row, with dp_j = dout . v_j and
 * ds_j = p_j (dp_j - sum_k p_k dp_k) (the softmax Jacobian): dq = ds . k / sqrt(hs),
 * dk_j = ds_j q / sqrt(hs), dv_j = p_j dout.
 */
export function attentionBackward(
  dout: ArrayLike<number>, qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null,
  B: number, T: number, C: number, NH: number,
): Float64Array {
  const hs = C / NH, scale = 1 / Math.sqrt(hs);
  const dqkv = new Float64Array(B * T * 3 * C);
  const p = new Float64Array(T), dp = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++) {
        rowProbabilities(p, qkv, segmentIds, b, h, t, T, C, hs);
        const o = (b * T + t) * C + h * hs;
        const q = (b * T + t) * 3 * C + h * hs;
        let pDotDp = 0;
        for (let j = 0; j <= t; j++) {
          const v = (b * T + j) * 3 * C + 2 * C + h * hs;
          let s = 0;
          for (let d = 0; d < hs; d++) s += dout[o + d] * qkv[v + d];
          dp[j] = s;
          pDotDp += p[j] * s;
        }
        for (let j = 0; j <= t; j++) {
          if (p[j] === 0) continue;
          const ds = p[j] * (dp[j] - pDotDp) * scale;
          const k = (b * T + j) * 3 * C + C + h * hs;
          for (let d = 0; d < hs; d++) {
            dqkv[q + d] += ds * qkv[k + d];
            dqkv[k + d] += ds * qkv[q + d];
            dqkv[k + C + d] += p[j] * dout[o + d];
          }
        }
      }
  return dqkv;
}
