/**
 * GPT-2 over the native kernels. The model holds three kinds of arenas:
 *   params / grads (same layout), allocated once;
 *   activations, sized for the largest (B, T) seen and reused for any smaller batch;
 *   AdamW moments live with the optimizer (lib/train/adamw.ts), in the params layout.
 * Linear weights are stored like nn.Linear, (out, in); Hugging Face's Conv1D stores (in, out), so
 * checkpoints are transposed on load and save (lib/model/checkpoint.ts).
 */
import { kernels } from '../native';
import type { DeviceName } from '../native';
import { Tensor, TensorArena, TensorSpec } from '../tensor';
import { Rng } from '../util/rng';
import { countParameters, GPT2Config } from './config';

export const IGNORE_INDEX = -100;

/** Per-layer parameter suffixes, in Hugging Face's naming (without the `h.N.` prefix). */
export const LAYER_MATRICES = ['attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight'] as const;
export const LAYER_VECTORS = [
  'ln_1.weight', 'ln_1.bias', 'attn.c_attn.bias', 'attn.c_proj.bias',
  'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.bias', 'mlp.c_proj.bias',
] as const;

export function innerSize(cfg: GPT2Config): number {
  return cfg.n_inner;
}

/**
 * Parameter specs in arena order: every tensor that takes weight decay (2+ dimensions: embeddings
 * and linear weights) first, then every bias / LayerNorm parameter. The two groups are contiguous,
 * so AdamW runs as two calls over the arena instead of one per tensor.
 */
export function parameterSpecs(cfg: GPT2Config): { specs: TensorSpec[]; decayCount: number } {
  const C = cfg.n_embd, I = innerSize(cfg);
  const matrices: TensorSpec[] = [
    { name: 'wte.weight', shape: [cfg.vocab_size, C] },
    { name: 'wpe.weight', shape: [cfg.n_positions, C] },
  ];
  const vectors: TensorSpec[] = [];
  const matrixShape: Record<string, number[]> = {
    'attn.c_attn.weight': [3 * C, C], 'attn.c_proj.weight': [C, C], 'mlp.c_fc.weight': [I, C], 'mlp.c_proj.weight': [C, I],
  };
  const vectorSize: Record<string, number> = {
    'ln_1.weight': C, 'ln_1.bias': C, 'attn.c_attn.bias': 3 * C, 'attn.c_proj.bias': C,
    'ln_2.weight': C, 'ln_2.bias': C, 'mlp.c_fc.bias': I, 'mlp.c_proj.bias': C,
  };
  for (let l = 0; l < cfg.n_layer; l++) {
    for (const m of LAYER_MATRICES) matrices.push({ name: `h.${l}.${m}`, shape: matrixShape[m] });
    for (const v of LAYER_VECTORS) vectors.push({ name: `h.${l}.${v}`, shape: [vectorSize[v]] });
  }
  vectors.push({ name: 'ln_f.weight', shape: [C] }, { name: 'ln_f.bias', shape: [C] });
  return { specs: [...matrices, ...vectors], decayCount: matrices.length };
}

interface LayerParams {
  ln1w: Tensor; ln1b: Tensor; qkvw: Tensor; qkvb: Tensor; attprojw: Tensor; attprojb: Tensor;
  ln2w: Tensor; ln2b: Tensor; fcw: Tensor; fcb: Tensor; fcprojw: Tensor; fcprojb: Tensor;
}

function layerViews(a: TensorArena, l: number): LayerParams {
  const g = (s: string) => a.get(`h.${l}.${s}`);
  return {
    ln1w: g('ln_1.weight'), ln1b: g('ln_1.bias'), qkvw: g('attn.c_attn.weight'), qkvb: g('attn.c_attn.bias'),
    attprojw: g('attn.c_proj.weight'), attprojb: g('attn.c_proj.bias'), ln2w: g('ln_2.weight'), ln2b: g('ln_2.bias'),
    fcw: g('mlp.c_fc.weight'), fcb: g('mlp.c_fc.bias'), fcprojw: g('mlp.c_proj.weight'), fcprojb: g('mlp.c_proj.bias'),
  };
}

/** Forward activations of one layer, each (B,T,·) unless noted. */
interface LayerActs {
  ln1: Tensor; ln1Mean: Tensor; ln1Rstd: Tensor; // (B,T,C), (B,T), (B,T)
  qkv: Tensor; // (B,T,3C)
  atty: Tensor; attLse: Tensor; // (B,T,C), (B,NH,T)
  attproj: Tensor; residual2: Tensor; // (B,T,C)
  ln2: Tensor; ln2Mean: Tensor; ln2Rstd: Tensor;
  fch: Tensor; fchGelu: Tensor; // (B,T,I)
  fcproj: Tensor; residual3: Tensor; // (B,T,C)
}

/** Activations and backward scratch for up to (B, T); reused for any smaller batch. */
class Activations {
  readonly arena: TensorArena;
  readonly layers: LayerActs[] = [];
  readonly encoded: Tensor; lnf: Tensor; lnfMean: Tensor; lnfRstd: Tensor;
  readonly logits: Tensor; losses: Tensor; ceLse: Tensor; // (B,T,V), (B,T), (B,T)
  // Backward scratch: the residual-stream gradient and one buffer per intermediate width.
  readonly dresidual: Tensor; dC: Tensor; dC2: Tensor; dqkv: Tensor; dI: Tensor; dI2: Tensor;

  constructor(device: DeviceName, cfg: GPT2Config, readonly B: number, readonly T: number, withBackward: boolean) {
    const C = cfg.n_embd, I = innerSize(cfg), V = cfg.vocab_size, NH = cfg.n_head, BT = B * T;
    const specs: TensorSpec[] = [{ name: 'encoded', shape: [BT, C] }];
    for (let l = 0; l < cfg.n_layer; l++) {
      specs.push(
        { name: `${l}.ln1`, shape: [BT, C] }, { name: `${l}.ln1Mean`, shape: [BT] }, { name: `${l}.ln1Rstd`, shape: [BT] },
        { name: `${l}.qkv`, shape: [BT, 3 * C] }, { name: `${l}.atty`, shape: [BT, C] }, { name: `${l}.attLse`, shape: [B * NH * T] },
        { name: `${l}.attproj`, shape: [BT, C] }, { name: `${l}.residual2`, shape: [BT, C] },
        { name: `${l}.ln2`, shape: [BT, C] }, { name: `${l}.ln2Mean`, shape: [BT] }, { name: `${l}.ln2Rstd`, shape: [BT] },
        { name: `${l}.fch`, shape: [BT, I] }, { name: `${l}.fchGelu`, shape: [BT, I] },
        { name: `${l}.fcproj`, shape: [BT, C] }, { name: `${l}.residual3`, shape: [BT, C] },
      );
    }
    specs.push(
      { name: 'lnf', shape: [BT, C] }, { name: 'lnfMean', shape: [BT] }, { name: 'lnfRstd', shape: [BT] },
      { name: 'logits', shape: [BT, V] }, { name: 'losses', shape: [BT] }, { name: 'ceLse', shape: [BT] },
    );
    const grad = withBackward ? 1 : 0;
    specs.push(
      { name: 'dresidual', shape: [grad * BT, C] }, { name: 'dC', shape: [grad * BT, C] }, { name: 'dC2', shape: [grad * BT, C] },
      { name: 'dqkv', shape: [grad * BT, 3 * C] }, { name: 'dI', shape: [grad * BT, I] }, { name: 'dI2', shape: [grad * BT, I] },
    );
    this.arena = new TensorArena(device, specs);
    const g = (n: string) => this.arena.get(n);
    this.encoded = g('encoded');
    for (let l = 0; l < cfg.n_layer; l++) {
      const n = (s: string) => g(`${l}.${s}`);
      this.layers.push({
        ln1: n('ln1'), ln1Mean: n('ln1Mean'), ln1Rstd: n('ln1Rstd'), qkv: n('qkv'), atty: n('atty'), attLse: n('attLse'),
        attproj: n('attproj'), residual2: n('residual2'), ln2: n('ln2'), ln2Mean: n('ln2Mean'), ln2Rstd: n('ln2Rstd'),
        fch: n('fch'), fchGelu: n('fchGelu'), fcproj: n('fcproj'), residual3: n('residual3'),
      });
    }
    this.lnf = g('lnf'); this.lnfMean = g('lnfMean'); this.lnfRstd = g('lnfRstd');
    this.logits = g('logits'); this.losses = g('losses'); this.ceLse = g('ceLse');
    this.dresidual = g('dresidual'); this.dC = g('dC'); this.dC2 = g('dC2'); this.dqkv = g('dqkv'); this.dI = g('dI'); this.dI2 = g('dI2');
  }

  get withBackward(): boolean {
    return this.dresidual.numel > 0;
  }
}

export interface ForwardOptions {
  /** (B,T) position ids; default 0..T-1 per row. Packed examples restart at 0. */
  positions?: Int32Array | null;
  /** (B,T) segment ids; attention never crosses segments (packed examples). */
  segmentIds?: Int32Array | null;
  /** Also compute the per-position argmax (token-level accuracy). */
  predictions?: boolean;
}

export interface ForwardResult {
  /** Mean loss over positions whose target is not IGNORE_INDEX (NaN when there are none). */
  loss: number;
  /** Sum of the per-position losses, and how many positions had a target. */
  lossSum: number;
  count: number;
  /** Per-position losses (B*T), 0 where ignored. */
  losses: Float32Array;
  /** Per-position argmax of the logits, when asked for. */
  predictions?: Int32Array;
}

export interface MemoryReport {
  paramsBytes: number;
  gradsBytes: number;
  activationsBytes: number;
}

export class GPT2 {
  readonly params: TensorArena;
  grads: TensorArena | null = null;
  readonly decayCount: number;
  private acts: Activations | null = null;
  private lastBatch: { B: number; T: number; tokens: Int32Array; targets: Int32Array; positions: Int32Array | null; segmentIds: Int32Array | null } | null = null;

  constructor(readonly config: GPT2Config, readonly device: DeviceName = 'cpu') {
    const { n_embd: C, n_head: NH } = config;
    if (C % NH !== 0) throw new Error(`config: n_embd (${C}) must be divisible by n_head (${NH})`);
    const { specs, decayCount } = parameterSpecs(config);
    this.decayCount = decayCount;
    this.params = new TensorArena(device, specs);
  }

  get numParameters(): number {
    return countParameters(this.config);
  }

  /** Parameter names in arena order. */
  get parameterNames(): string[] {
    return [...this.params.tensors.keys()];
  }

  /**
   * GPT-2's initialisation: N(0, 0.02) for embeddings and linear weights, the residual projections
   * (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2 * n_layer), zero biases, LayerNorm weight 1.
   */
  initRandom(seed: number, std = 0.02): void {
    const rng = new Rng(seed);
    const residualStd = std / Math.sqrt(2 * this.config.n_layer);
    for (const [name, t] of this.params.tensors) {
      const values = new Float32Array(t.numel);
      if (t.shape.length >= 2) {
        const s = name.endsWith('c_proj.weight') ? residualStd : std;
        for (let i = 0; i < values.length; i++) values[i] = rng.normal() * s;
      } else if (/ln_\w+\.weight$/.test(name)) {
        values.fill(1);
      }
      t.write(values);
    }
  }

  memory(): MemoryReport {
    return {
      paramsBytes: this.params.bytes,
      gradsBytes: this.grads ? this.grads.bytes : 0,
      activationsBytes: this.acts ? this.acts.arena.bytes : 0,
    };
  }

  /** Frees native memory now rather than at garbage collection. */
  free(): void {
    this.params.free();
    this.grads?.free();
    this.acts?.arena.free();
    this.grads = null;
    this.acts = null;
  }

  private ensureActivations(B: number, T: number, withBackward: boolean): Activations {
    // Every activation is used as a prefix of its buffer, so any (B, T) with B*T rows fits.
    const a = this.acts;
    const needBackward = withBackward || (a?.withBackward ?? false);
    if (a && a.B * a.T >= B * T && (a.withBackward || !withBackward)) return a;
    a?.arena.free();
    this.acts = new Activations(this.device, this.config, B, T, needBackward);
    return this.acts;
  }

  /** Allocates gradient storage (same layout as the parameters). */
  ensureGrads(): TensorArena {
    if (!this.grads) this.grads = new TensorArena(this.device, parameterSpecs(this.config).specs);
    return this.grads;
  }

  zeroGrad(): void {
    const g = this.ensureGrads();
    kernels.fill(g.all(), 0, g.numel);
  }

  private checkBatch(tokens: Int32Array, B: number, T: number, targets: Int32Array | null, opts: ForwardOptions): void {
    const cfg = this.config;
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`forward: expected batch size B >= 1 but received ${B}`);
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`forward: expected sequence length T >= 1 but received ${T}`);
    if (T > cfg.n_positions) throw new RangeError(`forward: sequence length ${T} exceeds the model's n_positions (${cfg.n_positions})`);
    if (tokens.length !== B * T) throw new RangeError(`forward: expected ${B * T} tokens (B=${B} x T=${T}) but received ${tokens.length}`);
    if (targets && targets.length !== B * T) throw new RangeError(`forward: expected ${B * T} targets but received ${targets.length}`);
    if (opts.positions && opts.positions.length !== B * T) throw new RangeError(`forward: expected ${B * T} positions but received ${opts.positions.length}`);
    if (opts.segmentIds && opts.segmentIds.length !== B * T) throw new RangeError(`forward: expected ${B * T} segment ids but received ${opts.segmentIds.length}`);
  }

  /**
   * Runs the model on tokens (B,T). With targets (B,T; IGNORE_INDEX where nothing is predicted)
   * the loss is computed and the batch is remembered for backward(). Logits stay in the activation
   * arena (see logitsRows()).
   */
  forward(tokens: Int32Array, B: number, T: number, targets: Int32Array | null = null, opts: ForwardOptions = {}): ForwardResult {
    this.checkBatch(tokens, B, T, targets, opts);
    const cfg = this.config, C = cfg.n_embd, NH = cfg.n_head, I = innerSize(cfg), V = cfg.vocab_size, BT = B * T;
    const eps = cfg.layer_norm_epsilon;
    const acts = this.ensureActivations(B, T, targets !== null && this.grads !== null);
    const p = this.params;
    const positions = opts.positions ?? null, segmentIds = opts.segmentIds ?? null;
    const k = kernels;

    k.encoder_forward(acts.encoded, tokens, positions, p.get('wte.weight'), p.get('wpe.weight'), B, T, C, 0);
    let residual = acts.encoded;
    for (let l = 0; l < cfg.n_layer; l++) {
      const w = layerViews(p, l), a = acts.layers[l];
      k.layernorm_forward(a.ln1, a.ln1Mean, a.ln1Rstd, residual, w.ln1w, w.ln1b, BT, C, eps);
      k.matmul_forward(a.qkv, a.ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
      k.attention_forward(a.atty, a.attLse, a.qkv, segmentIds, B, T, NH, NH, C / NH);
      k.matmul_forward(a.attproj, a.atty, w.attprojw, w.attprojb, BT, C, C);
      k.residual_forward(a.residual2, residual, a.attproj, BT * C);
      k.layernorm_forward(a.ln2, a.ln2Mean, a.ln2Rstd, a.residual2, w.ln2w, w.ln2b, BT, C, eps);
      k.matmul_forward(a.fch, a.ln2, w.fcw, w.fcb, BT, C, I);
      k.gelu_forward(a.fchGelu, a.fch, BT * I);
      k.matmul_forward(a.fcproj, a.fchGelu, w.fcprojw, w.fcprojb, BT, I, C);
      k.residual_forward(a.residual3, a.residual2, a.fcproj, BT * C);
      residual = a.residual3;
    }
    k.layernorm_forward(acts.lnf, acts.lnfMean, acts.lnfRstd, residual, p.get('ln_f.weight'), p.get('ln_f.bias'), BT, C, eps);
    // The LM head is tied to the token embedding: logits = lnf @ wte^T.
    k.matmul_forward(acts.logits, acts.lnf, p.get('wte.weight'), null, BT, C, V);

    if (!targets) {
      this.lastBatch = null;
      return { loss: NaN, lossSum: 0, count: 0, losses: new Float32Array(0) };
    }
    const predictions = opts.predictions ? new Int32Array(BT) : null;
    k.crossentropy_forward(acts.losses, acts.ceLse, predictions, acts.logits, targets, BT, V, IGNORE_INDEX);
    const losses = acts.losses.slice(0, [BT]).read();
    let lossSum = 0, count = 0;
    for (let i = 0; i < BT; i++) {
      if (targets[i] !== IGNORE_INDEX) {
        lossSum += losses[i];
        count++;
      }
    }
    this.lastBatch = { B, T, tokens, targets, positions, segmentIds };
    return { loss: count > 0 ? lossSum / count : NaN, lossSum, count, losses, predictions: predictions ?? undefined };
  }

  /** Host copy of logits rows [row, row + n) of the last forward (each row has V floats). */
  logitsRows(row: number, n = 1): Float32Array {
    if (!this.acts) throw new Error('logitsRows: no forward pass has run');
    const V = this.config.vocab_size;
    return this.acts.logits.slice(row * V, [n, V]).read();
  }

  /**
   * Backpropagates the last forward's loss and ACCUMULATES into model.grads. The gradient is that
   * of sum(per-position losses) / lossDenominator: pass the forward's count for this batch's mean
   * loss, or the token count of a whole accumulated batch so micro-batches sum to its mean.
   */
  backward(lossDenominator: number): void {
    const batch = this.lastBatch;
    if (!batch) throw new Error('backward: call forward() with targets first');
    if (!this.grads) throw new Error('backward: gradients are not allocated; call zeroGrad() before forward()');
    const acts = this.acts!;
    if (!acts.withBackward) throw new Error('backward: activations were allocated without backward buffers; call zeroGrad() before forward()');
    if (!(lossDenominator > 0)) throw new RangeError(`backward: lossDenominator must be > 0, received ${lossDenominator}`);
    const { B, T, tokens, targets, positions, segmentIds } = batch;
    const cfg = this.config, C = cfg.n_embd, NH = cfg.n_head, I = innerSize(cfg), V = cfg.vocab_size, BT = B * T;
    const p = this.params, g = this.grads, k = kernels;

    // dlogits overwrite the logits in place: the (B*T, V) buffer is the largest in the model.
    k.crossentropy_backward(acts.logits, acts.logits, acts.ceLse, targets, 1 / lossDenominator, BT, V, IGNORE_INDEX);
    const dlnf = acts.dC;
    k.fill(dlnf, 0, BT * C);
    k.matmul_backward(dlnf, g.get('wte.weight'), null, acts.logits, acts.lnf, p.get('wte.weight'), BT, C, V);
    const lastResidual = cfg.n_layer > 0 ? acts.layers[cfg.n_layer - 1].residual3 : acts.encoded;
    const dres = acts.dresidual;
    k.fill(dres, 0, BT * C);
    k.layernorm_backward(dres, g.get('ln_f.weight'), g.get('ln_f.bias'), dlnf, lastResidual, p.get('ln_f.weight'), acts.lnfMean, acts.lnfRstd, BT, C);

    for (let l = cfg.n_layer - 1; l >= 0; l--) {
      const w = layerViews(p, l), dw = layerViews(g, l), a = acts.layers[l];
      const layerInput = l === 0 ? acts.encoded : acts.layers[l - 1].residual3;
      // MLP branch: dres holds d(residual3); its copy into the branch is implicit (same buffer).
      const dfchGelu = acts.dI, dfch = acts.dI2;
      k.fill(dfchGelu, 0, BT * I);
      k.matmul_backward(dfchGelu, dw.fcprojw, dw.fcprojb, dres, a.fchGelu, w.fcprojw, BT, I, C);
      k.fill(dfch, 0, BT * I);
      k.gelu_backward(dfch, a.fch, dfchGelu, BT * I);
      const dln2 = acts.dC;
      k.fill(dln2, 0, BT * C);
      k.matmul_backward(dln2, dw.fcw, dw.fcb, dfch, a.ln2, w.fcw, BT, C, I);
      // dres becomes d(residual2) = d(residual3) + LN2's input gradient.
      k.layernorm_backward(dres, dw.ln2w, dw.ln2b, dln2, a.residual2, w.ln2w, a.ln2Mean, a.ln2Rstd, BT, C);
      // Attention branch.
      const datty = acts.dC2;
      k.fill(datty, 0, BT * C);
      k.matmul_backward(datty, dw.attprojw, dw.attprojb, dres, a.atty, w.attprojw, BT, C, C);
      k.fill(acts.dqkv, 0, BT * 3 * C);
      k.attention_backward(acts.dqkv, datty, a.qkv, a.atty, a.attLse, segmentIds, B, T, NH, NH, C / NH);
      const dln1 = acts.dC;
      k.fill(dln1, 0, BT * C);
      k.matmul_backward(dln1, dw.qkvw, dw.qkvb, acts.dqkv, a.ln1, w.qkvw, BT, C, 3 * C);
      // dres becomes d(layer input).
      k.layernorm_backward(dres, dw.ln1w, dw.ln1b, dln1, layerInput, w.ln1w, a.ln1Mean, a.ln1Rstd, BT, C);
    }
    k.encoder_backward(g.get('wte.weight'), g.get('wpe.weight'), dres, tokens, positions, B, T, C, 0);
    // The logits were overwritten: a second backward of the same forward would be wrong.
    this.lastBatch = null;
  }

  /** Global L2 norm of the gradients (padding between tensors is zero, so one reduction). */
  gradNorm(): number {
    if (!this.grads) throw new Error('gradNorm: no gradients');
    return Math.sqrt(kernels.sum_squares(this.grads.all(), this.grads.numel));
  }
}
