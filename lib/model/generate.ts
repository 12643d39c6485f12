/**
 * Text generation with a KV cache: the prompt runs through the model once, filling per-layer key
 * and value caches; each new token then costs one position's forward instead of the whole
 * sequence's. Sampling follows Hugging Face's order: temperature, then top-k, then top-p.
 */
import { kernels } from '../native';
import { Tensor, TensorArena, TensorSpec } from '../tensor';
import { Rng } from '../util/rng';
import { GPT2, innerSize } from './gpt2';

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 (or greedy: true) picks the argmax; otherwise logits are divided by it. Default 1. */
  temperature?: number;
  greedy?: boolean;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** Stop when this token is produced (it is not included in the output). null = never. */
  eosTokenId?: number | null;
  seed?: number;
  /** Called with each new token as it is produced (streaming). */
  onToken?: (token: number) => void;
}

export interface GenerateResult {
  tokens: number[];
  /** Why generation ended. */
  stop: 'eos' | 'max_new_tokens' | 'context_full';
}

function validateOptions(o: GenerateOptions): Required<Omit<GenerateOptions, 'onToken' | 'eosTokenId'>> & { eosTokenId: number | null } {
  const maxNewTokens = o.maxNewTokens ?? 50;
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new RangeError(`generate: maxNewTokens must be a whole number >= 0 but received ${maxNewTokens}`);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`generate: temperature must be a number >= 0 but received ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`generate: topK must be a whole number >= 0 but received ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`generate: topP must be in (0, 1] but received ${topP}`);
  return {
    maxNewTokens, temperature, topK, topP,
    greedy: o.greedy ?? temperature === 0,
    eosTokenId: o.eosTokenId === undefined ? null : o.eosTokenId,
    seed: o.seed ?? 0,
  };
}

/** Picks the next token from one row of logits (V floats). */
export function sampleToken(logits: Float32Array, o: { greedy: boolean; temperature: number; topK: number; topP: number }, rng: Rng): number {
  const V = logits.length;
  if (o.greedy || o.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Candidates sorted by logit (descending); ties keep the lower id first for determinism.
  let ids = Array.from({ length: V }, (_, i) => i);
  ids.sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK > 0 && o.topK < V) ids = ids.slice(0, o.topK);
  const maxLogit = logits[ids[0]];
  const probs = ids.map((i) => Math.exp((logits[i] - maxLogit) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    // Keep tokens until the cumulative probability reaches topP (at least one token).
    let cumulative = 0, keep = 0;
    while (keep < ids.length) {
      cumulative += probs[keep] / total;
      keep++;
      if (cumulative >= o.topP) break;
    }
    ids = ids.slice(0, keep);
    probs.length = keep;
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng.next() * total;
  for (let j = 0; j < ids.length; j++) {
    r -= probs[j];
    if (r < 0) return ids[j];
  }
  return ids[ids.length - 1];
}

/** Per-layer K/V caches and the decode-time activations, for batch B and up to maxT positions. */
class DecodeState {
  readonly arena: TensorArena;
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  readonly t: Record<string, Tensor> = {};
  length = 0;

  constructor(model: GPT2, readonly B: number, readonly maxT: number) {
    const cfg = model.config, C = cfg.n_embd, I = innerSize(cfg), rows = B * maxT;
    const specs: TensorSpec[] = [];
    for (let l = 0; l < cfg.n_layer; l++) specs.push({ name: `k${l}`, shape: [B, maxT, C] }, { name: `v${l}`, shape: [B, maxT, C] });
    for (const [name, width] of [['x', C], ['ln', C], ['qkv', 3 * C], ['atty', C], ['proj', C], ['fch', I], ['fchGelu', I], ['x2', C]] as const) {
      specs.push({ name, shape: [rows, width] });
    }
    specs.push({ name: 'lnLast', shape: [B, C] }, { name: 'logits', shape: [B, cfg.vocab_size] });
    this.arena = new TensorArena(model.device, specs);
    for (let l = 0; l < cfg.n_layer; l++) {
      this.k.push(this.arena.get(`k${l}`));
      this.v.push(this.arena.get(`v${l}`));
    }
    for (const name of ['x', 'ln', 'qkv', 'atty', 'proj', 'fch', 'fchGelu', 'x2', 'lnLast', 'logits']) this.t[name] = this.arena.get(name);
  }
}

/**
 * Runs tokens (B, Tq) at positions [past, past + Tq) through the model, appending to the caches,
 * and returns the logits of each row's last position, (B, V).
 */
function decodeStep(model: GPT2, s: DecodeState, tokens: Int32Array, Tq: number): Float32Array {
  const cfg = model.config, C = cfg.n_embd, NH = cfg.n_head, I = innerSize(cfg), V = cfg.vocab_size;
  const B = s.B, rows = B * Tq, eps = cfg.layer_norm_epsilon, p = model.params, k = kernels, t = s.t;
  if (s.length + Tq > s.maxT) throw new RangeError(`generate: ${s.length + Tq} positions exceed the cache's ${s.maxT}`);
  k.encoder_forward(t.x, tokens, null, p.get('wte.weight'), p.get('wpe.weight'), B, Tq, C, s.length);
  for (let l = 0; l < cfg.n_layer; l++) {
    const w = (name: string) => p.get(`h.${l}.${name}`);
    k.layernorm_forward(t.ln, null, null, t.x, w('ln_1.weight'), w('ln_1.bias'), rows, C, eps);
    k.matmul_forward(t.qkv, t.ln, w('attn.c_attn.weight'), w('attn.c_attn.bias'), rows, C, 3 * C);
    k.attention_cached_forward(t.atty, s.k[l], s.v[l], t.qkv, B, Tq, s.length, s.maxT, NH, NH, C / NH);
    k.matmul_forward(t.proj, t.atty, w('attn.c_proj.weight'), w('attn.c_proj.bias'), rows, C, C);
    k.residual_forward(t.x2, t.x, t.proj, rows * C);
    k.layernorm_forward(t.ln, null, null, t.x2, w('ln_2.weight'), w('ln_2.bias'), rows, C, eps);
    k.matmul_forward(t.fch, t.ln, w('mlp.c_fc.weight'), w('mlp.c_fc.bias'), rows, C, I);
    k.gelu_forward(t.fchGelu, t.fch, rows * I);
    k.matmul_forward(t.proj, t.fchGelu, w('mlp.c_proj.weight'), w('mlp.c_proj.bias'), rows, I, C);
    k.residual_forward(t.x, t.x2, t.proj, rows * C);
  }
  // Only each row's last position feeds the LM head.
  for (let b = 0; b < B; b++) {
    const last = t.x.slice((b * Tq + Tq - 1) * C, [1, C]);
    k.layernorm_forward(t.lnLast.slice(b * C, [1, C]), null, null, last, p.get('ln_f.weight'), p.get('ln_f.bias'), 1, C, eps);
  }
  k.matmul_forward(t.logits, t.lnLast, p.get('wte.weight'), null, B, C, V);
  s.length += Tq;
  return t.logits.slice(0, [B, V]).read();
}

/** Continues one prompt (token ids). */
export function generate(model: GPT2, prompt: readonly number[], options: GenerateOptions = {}): GenerateResult {
  const o = validateOptions(options);
  const cfg = model.config;
  if (prompt.length === 0) throw new RangeError('generate: the prompt is empty (give at least one token)');
  if (prompt.length > cfg.n_positions) {
    throw new RangeError(`generate: the prompt has ${prompt.length} tokens but the model's context (n_positions) is ${cfg.n_positions}`);
  }
  for (const id of prompt) {
    if (!Number.isInteger(id) || id < 0 || id >= cfg.vocab_size) throw new RangeError(`generate: prompt token ${id} is outside [0, ${cfg.vocab_size})`);
  }
  const maxT = Math.min(cfg.n_positions, prompt.length + o.maxNewTokens);
  const state = new DecodeState(model, 1, maxT);
  const rng = new Rng(o.seed);
  const out: number[] = [];
  try {
    if (o.maxNewTokens === 0) return { tokens: out, stop: 'max_new_tokens' };
    let logits = decodeStep(model, state, Int32Array.from(prompt), prompt.length);
    for (;;) {
      const next = sampleToken(logits, o, rng);
      if (o.eosTokenId !== null && next === o.eosTokenId) return { tokens: out, stop: 'eos' };
      out.push(next);
      options.onToken?.(next);
      if (out.length >= o.maxNewTokens) return { tokens: out, stop: 'max_new_tokens' };
      if (state.length >= cfg.n_positions) return { tokens: out, stop: 'context_full' };
      logits = decodeStep(model, state, Int32Array.of(next), 1);
    }
  } finally {
    state.arena.free();
  }
}
