/**
 * Float64 reference of rotary position embedding in Hugging Face's rotate-half layout (Llama's
 * apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, with cos and sin repeated over both halves).
 */

/** cos, sin (maxPos, HS/2) for angles pos * theta^(-2i/HS): the unscaled default RoPE tables. */
export function ropeTables(maxPos: number, HS: number, theta: number): { cos: Float64Array; sin: Float64Array } {
  const half = HS / 2, cos = new Float64Array(maxPos * half), sin = new Float64Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const angle = p * theta ** (-(2 * i) / HS);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  return { cos, sin };
}

/**
 * qkv (B,T,(NH+2*NKV)*HS) with its q and k heads rotated (a new array; v copied): with
 * rotate_half(x) = [-x[HS/2:], x[:HS/2]] and c, s the position's table rows repeated twice,
 * x' = x c + rotate_half(x) s. Position of (b, t): positions[b*T+t], else posOffset + t.
 */
export function ropeForward(
  qkv: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, positions: ArrayLike<number> | null,
  B: number, T: number, NH: number, NKV: number, HS: number, posOffset: number,
): Float64Array {
  const W = (NH + 2 * NKV) * HS, half = HS / 2;
  const out = Float64Array.from(qkv);
  for (let r = 0; r < B * T; r++) {
    const p = positions ? positions[r] : posOffset + (r % T);
    for (let head = 0; head < NH + NKV; head++) {
      const x = r * W + head * HS;
      for (let d = 0; d < HS; d++) {
        const i = d % half;
        const c = cos[p * half + i], s = sin[p * half + i];
        const rotated = d < half ? -qkv[x + d + half] : qkv[x + d - half];
        out[x + d] = qkv[x + d] * c + rotated * s;
      }
    }
  }
  return out;
}
