/**
 * Float64 reference of a whole GPT-2 forward pass (pre-LayerNorm blocks, causal multi-head attention,
 * tanh-GELU MLP, tied head), returning the log-probability of each next token. Weights are given in
 * gptune's layout (linear weights (out, in)). `gelu` can be swapped, e.g. for llama.cpp's CPU GELU,
 * which rounds its input to float16 and looks the result up in a float16 table (ggml-cpu/vec.h
 * GGML_GELU_FP16), so llama.cpp's GPT-2 can be compared with what it computes.
 */
import { halfBitsToFloat } from '../../lib/io/safetensors';
import { floatToHalfBits } from '../../lib/gguf/quant';
import { gelu } from './gelu';

export interface GPT2Weights {
  C: number;
  NH: number;
  layers: number;
  eps: number;
  /** By gptune's parameter name (wte.weight, h.0.attn.c_attn.weight, ...). */
  get: (name: string) => Float32Array;
}

/** ggml's float32 GELU on the CPU: x <= -10 -> 0, x >= 10 -> x, else f16(gelu(f16(x))). */
export function ggmlGelu(x: number): number {
  if (x <= -10) return 0;
  if (x >= 10) return x;
  const h = halfBitsToFloat(floatToHalfBits(x));
  return halfBitsToFloat(floatToHalfBits(Math.fround(gelu(h))));
}

function layerNorm(x: Float64Array, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  const n = x.length;
  const mean = x.reduce((a, v) => a + v, 0) / n;
  const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
  const rstd = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * rstd * w[i] + b[i]);
}

/** y (out) = W (out, in) x + b. */
function linear(x: Float64Array, W: Float32Array, b: Float32Array | null, out: number): Float64Array {
  const inF = x.length, y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inF; i++) s += W[o * inF + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** log p(ids[t+1] | ids[..t]) for t = 0 .. T-2. */
export function gpt2LogProbs(w: GPT2Weights, ids: readonly number[], geluFn: (x: number) => number = gelu): number[] {
  const { C, NH } = w, HS = C / NH, T = ids.length;
  const wte = w.get('wte.weight'), wpe = w.get('wpe.weight');
  let xs = ids.map((id, t) => Float64Array.from({ length: C }, (_, c) => wte[id * C + c] + wpe[t * C + c]));
  for (let l = 0; l < w.layers; l++) {
    const p = (n: string) => w.get(`h.${l}.${n}`);
    const qkv = xs.map((x) => linear(layerNorm(x, p('ln_1.weight'), p('ln_1.bias'), w.eps), p('attn.c_attn.weight'), p('attn.c_attn.bias'), 3 * C));
    xs = xs.map((x, t) => {
      const y = new Float64Array(C);
      for (let h = 0; h < NH; h++) {
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let d = 0;
          for (let i = 0; i < HS; i++) d += qkv[t][h * HS + i] * qkv[s][C + h * HS + i];
          return d / Math.sqrt(HS);
        });
        const max = Math.max(...scores);
        const e = scores.map((v) => Math.exp(v - max));
        const z = e.reduce((a, v) => a + v, 0);
        for (let s = 0; s <= t; s++) for (let i = 0; i < HS; i++) y[h * HS + i] += (e[s] / z) * qkv[s][2 * C + h * HS + i];
      }
      const r = linear(y, p('attn.c_proj.weight'), p('attn.c_proj.bias'), C).map((v, i) => v + x[i]);
      const hidden = linear(layerNorm(r, p('ln_2.weight'), p('ln_2.bias'), w.eps), p('mlp.c_fc.weight'), p('mlp.c_fc.bias'), 4 * C).map(geluFn);
      return linear(hidden, p('mlp.c_proj.weight'), p('mlp.c_proj.bias'), C).map((v, i) => v + r[i]);
    });
  }
  const V = wte.length / C;
  return ids.slice(1).map((next, t) => {
    const logits = linear(layerNorm(xs[t], w.get('ln_f.weight'), w.get('ln_f.bias'), w.eps), wte, null, V);
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((a, v) => a + Math.exp(v - max), 0));
    return logits[next] - lse;
  });
}
