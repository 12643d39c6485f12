/**
 * Float64 reference of causal grouped-query self-attention, one full softmax per query row.
 * qkv (B,T,(NH+2*NKV)*HS): q heads at channels [0, NH*HS), k heads at [NH*HS, (NH+NKV)*HS), v heads at
 * [(NH+NKV)*HS, (NH+2*NKV)*HS), each head HS consecutive channels; query head h reads kv head
 * floor(h / (NH/NKV)). GPT-2 is NKV = NH, HS = C/NH. Query t attends keys j <= t, and with
 * segmentIds (B,T) only keys of its own segment.
 * With dropout (p, seed) the probabilities that multiply v are dropped, out = sum_j p_j z_j v_j with
 * z = 0 or 1/(1-p) drawn by reference/dropout.ts at index ((b*NH + h)*T + j)*T + t (kernels.inc);
 * lse stays that of the undropped probabilities.
 */
import { dropoutMultipliers } from './dropout';

/** Dropout on the attention probabilities: the rate and the mask's seed. */
export interface AttentionDropout {
  p: number;
  seed: number;
}

/** z(b, h, t, j): the multiplier of query t's probability of key j (1 without dropout). */
function multipliers(drop: AttentionDropout | null, B: number, T: number, NH: number): (b: number, h: number, t: number, j: number) => number {
  if (!drop || drop.p === 0) return () => 1;
  const z = dropoutMultipliers(drop.seed, drop.p, B * NH * T * T);
  return (b, h, t, j) => z[((b * NH + h) * T + j) * T + t];
}

export interface Heads {
  NH: number; // query heads
  NKV: number; // key/value heads, NH % NKV === 0
  HS: number; // head size
}

export interface AttentionForward {
  out: Float64Array; // (B,T,NH*HS)
  lse: Float64Array; // (B,NH,T) log-sum-exp of each query row's scaled, masked scores
}

/** Offsets of query head h's q, k and v inside a qkv row, and the row widths. */
function layout({ NH, NKV, HS }: Heads, h: number) {
  const kv = Math.floor(h / (NH / NKV));
  return { q: h * HS, k: (NH + kv) * HS, v: (NH + NKV + kv) * HS, row: (NH + 2 * NKV) * HS, outRow: NH * HS };
}

/** Whether query t of batch row b may attend key j <= t. */
function visible(segmentIds: ArrayLike<number> | null, b: number, T: number, t: number, j: number): boolean {
  return segmentIds === null || segmentIds[b * T + j] === segmentIds[b * T + t];
}

/** p (T): the softmax probabilities of query (b, h, t) over keys 0..t (0 where masked); returns lse. */
function rowProbabilities(
  p: Float64Array, qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null, heads: Heads,
  b: number, h: number, t: number, T: number,
): number {
  const L = layout(heads, h), HS = heads.HS;
  const scale = 1 / Math.sqrt(HS);
  const q = (b * T + t) * L.row + L.q;
  let max = -Infinity;
  for (let j = 0; j <= t; j++) {
    if (!visible(segmentIds, b, T, t, j)) continue;
    const k = (b * T + j) * L.row + L.k;
    let s = 0;
    for (let d = 0; d < HS; d++) s += qkv[q + d] * qkv[k + d];
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
  qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null, B: number, T: number, heads: Heads, drop: AttentionDropout | null = null,
): AttentionForward {
  const { NH, HS } = heads;
  const z = multipliers(drop, B, T, NH);
  const out = new Float64Array(B * T * NH * HS), lse = new Float64Array(B * NH * T);
  const p = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const L = layout(heads, h);
      for (let t = 0; t < T; t++) {
        lse[(b * NH + h) * T + t] = rowProbabilities(p, qkv, segmentIds, heads, b, h, t, T);
        const o = (b * T + t) * L.outRow + h * HS;
        for (let j = 0; j <= t; j++) {
          const v = (b * T + j) * L.row + L.v, w = p[j] * z(b, h, t, j);
          for (let d = 0; d < HS; d++) out[o + d] += w * qkv[v + d];
        }
      }
    }
  return { out, lse };
}

/**
 * dqkv (B,T,(NH+2*NKV)*HS): the gradient of sum(out * dout). Per query row, with dp_j = z_j dout . v_j
 * (z the dropout multipliers, 1 without dropout) and ds_j = p_j (dp_j - sum_k p_k dp_k) (the softmax
 * Jacobian): dq = ds . k / sqrt(HS), dk_j = ds_j q / sqrt(HS), dv_j = p_j z_j dout; a kv head sums
 * the contributions of its query heads.
 */
export function attentionBackward(
  dout: ArrayLike<number>, qkv: ArrayLike<number>, segmentIds: ArrayLike<number> | null, B: number, T: number, heads: Heads,
  drop: AttentionDropout | null = null,
): Float64Array {
  const { NH, NKV, HS } = heads, scale = 1 / Math.sqrt(HS);
  const z = multipliers(drop, B, T, NH);
  const dqkv = new Float64Array(B * T * (NH + 2 * NKV) * HS);
  const p = new Float64Array(T), dp = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const L = layout(heads, h);
      for (let t = 0; t < T; t++) {
        rowProbabilities(p, qkv, segmentIds, heads, b, h, t, T);
        const o = (b * T + t) * L.outRow + h * HS;
        const q = (b * T + t) * L.row + L.q;
        let pDotDp = 0;
        for (let j = 0; j <= t; j++) {
          const v = (b * T + j) * L.row + L.v;
          let s = 0;
          for (let d = 0; d < HS; d++) s += dout[o + d] * qkv[v + d];
          s *= z(b, h, t, j);
          dp[j] = s;
          pDotDp += p[j] * s;
        }
        for (let j = 0; j <= t; j++) {
          if (p[j] === 0) continue;
          const ds = p[j] * (dp[j] - pDotDp) * scale;
          const k = (b * T + j) * L.row + L.k, v = (b * T + j) * L.row + L.v;
          for (let d = 0; d < HS; d++) {
            dqkv[q + d] += ds * qkv[k + d];
            dqkv[k + d] += ds * qkv[q + d];
            dqkv[v + d] += p[j] * z(b, h, t, j) * dout[o + d];
          }
        }
      }
    }
  return dqkv;
}
