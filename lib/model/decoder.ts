/**
 * The decoder-only transformer over the native kernels, one model whose blocks the config chooses:
 *   norm        LayerNorm (GPT-2) | RMSNorm (Llama family)
 *   positions   learned table added to the embedding (GPT-2) | RoPE on q and k (Llama family)
 *   attention   NH query heads, NKV key/value heads of size HS, packed q/k/v ((NH+2NKV)*HS, C)
 *               with optional biases and Qwen3's per-head q/k RMSNorm
 *   MLP         c_fc -> GELU -> c_proj (GPT-2) | [gate|up] -> silu(gate)*up -> down (SwiGLU)
 *   LM head     tied to the token embedding, or a separate (V, C) lm_head
 * GPT-2 is the configuration (layernorm, learned, NKV = NH, gelu, biases, tied); one forward,
 * one backward and one block function serve every family (and generation, lib/model/generate.ts).
 *
 * Memory: params / grads (same layout) allocated once; activations sized for the largest (B, T)
 * seen and reused for any smaller batch; AdamW moments live with the optimizer (lib/train/adamw.ts)
 * in the params layout. The (B*T, V) logits exist once: backward overwrites them with dlogits.
 * With gradient checkpointing (setGradientCheckpointing) a training step keeps only each block's
 * output (B*T, C) and one shared set of block buffers; backward recomputes each block's forward
 * from its kept input into the shared set just before that block's backward.
 * Linear weights are stored like nn.Linear, (out, in); lib/model/checkpoint.ts maps each family's
 * checkpoint names and layouts (GPT-2's Conv1D (in, out), Llama's separate q/k/v and gate/up).
 */
import { NonFiniteError, UsageError } from '../errors';
import { AdapterShape, adapterShape, adapterSpecs, LoraAdapter } from '../lora/adapter';
import { LinearRole, LoraSettings, SavedModule } from '../lora/modules';
import { IGNORE_INDEX } from '../metrics/lm';
import { kernels } from '../native';
import type { DeviceName } from '../native';
import { arenaBytes, Tensor, TensorArena, TensorSpec } from '../tensor';
import { describeValue } from '../util/check';
import { Rng } from '../util/rng';
import { asDecoderConfig, countParameters, GPT2Config } from './config';
import { attentionWidth, contextLength, DecoderConfig, ffnInputWidth, qkvWidth } from './decoder_config';
import { DropoutRates, embeddingDropoutSeed, layerDropoutSeed, LayerDropoutSite, moduleDropoutSeed, NO_DROPOUT } from './dropout';
import { BaseDtype, fallbackNote, FrozenLinears, StoredShape, storedWeightBytes, weightFormat, WeightFormat } from './frozen_base';
import { ropeTables } from './rope';

/** The model's targets follow PyTorch's ignore_index: one constant for the whole library (lib/metrics/lm.ts). */
export { IGNORE_INDEX };

/** What a block's parameters are, whatever a family calls them. */
export type LayerRole =
  | 'norm1w' | 'norm1b' | 'qkvw' | 'qkvb' | 'qnorm' | 'knorm' | 'outw' | 'outb'
  | 'norm2w' | 'norm2b' | 'fcw' | 'fcb' | 'projw' | 'projb';
export type GlobalRole = 'embed' | 'positions' | 'head' | 'normw' | 'normb';

/**
 * Arena names of each role. GPT-2's are its checkpoint names (without `transformer.`); the Llama
 * family's are its checkpoint names too, except the packed q/k/v (`qkv_proj`, rows q, then k, then
 * v) and [gate | up] (`gate_up_proj`) that checkpoint.ts splits on save.
 */
const NAMES: Record<'gpt2' | 'llama', { global: Record<GlobalRole, string>; layer: (l: number) => Record<LayerRole, string> }> = {
  gpt2: {
    global: { embed: 'wte.weight', positions: 'wpe.weight', head: 'lm_head.weight', normw: 'ln_f.weight', normb: 'ln_f.bias' },
    layer: (l) => {
      const h = `h.${l}.`;
      return {
        norm1w: `${h}ln_1.weight`, norm1b: `${h}ln_1.bias`, qkvw: `${h}attn.c_attn.weight`, qkvb: `${h}attn.c_attn.bias`,
        qnorm: `${h}attn.q_norm.weight`, knorm: `${h}attn.k_norm.weight`, outw: `${h}attn.c_proj.weight`, outb: `${h}attn.c_proj.bias`,
        norm2w: `${h}ln_2.weight`, norm2b: `${h}ln_2.bias`, fcw: `${h}mlp.c_fc.weight`, fcb: `${h}mlp.c_fc.bias`,
        projw: `${h}mlp.c_proj.weight`, projb: `${h}mlp.c_proj.bias`,
      };
    },
  },
  llama: {
    global: { embed: 'model.embed_tokens.weight', positions: 'model.embed_positions.weight', head: 'lm_head.weight', normw: 'model.norm.weight', normb: 'model.norm.bias' },
    layer: (l) => {
      const h = `model.layers.${l}.`;
      return {
        norm1w: `${h}input_layernorm.weight`, norm1b: `${h}input_layernorm.bias`,
        qkvw: `${h}self_attn.qkv_proj.weight`, qkvb: `${h}self_attn.qkv_proj.bias`,
        qnorm: `${h}self_attn.q_norm.weight`, knorm: `${h}self_attn.k_norm.weight`,
        outw: `${h}self_attn.o_proj.weight`, outb: `${h}self_attn.o_proj.bias`,
        norm2w: `${h}post_attention_layernorm.weight`, norm2b: `${h}post_attention_layernorm.bias`,
        fcw: `${h}mlp.gate_up_proj.weight`, fcb: `${h}mlp.gate_up_proj.bias`, projw: `${h}mlp.down_proj.weight`, projb: `${h}mlp.down_proj.bias`,
      };
    },
  },
};

function naming(cfg: DecoderConfig) {
  return NAMES[cfg.modelType === 'gpt2' ? 'gpt2' : 'llama'];
}

export function globalParamName(cfg: DecoderConfig, role: GlobalRole): string {
  return naming(cfg).global[role];
}

export function layerParamName(cfg: DecoderConfig, l: number, role: LayerRole): string {
  return naming(cfg).layer(l)[role];
}

/** How a fresh parameter is initialised (initRandom). */
export type ParamInit = 'normal' | 'residual' | 'one' | 'zero';
export interface ParamSpec extends TensorSpec {
  init: ParamInit;
}

/**
 * Parameter specs in arena order: every tensor that takes weight decay (2+ dimensions: embeddings
 * and linear weights) first, then every bias and norm weight. The two groups are contiguous, so
 * AdamW runs as two calls over the arena instead of one per tensor.
 */
export function parameterSpecs(cfg: DecoderConfig): { specs: ParamSpec[]; decayCount: number } {
  const C = cfg.width, QKV = qkvWidth(cfg), AW = attentionWidth(cfg), FI = ffnInputWidth(cfg), H = cfg.ffnWidth;
  const layerNorm = cfg.norm === 'layernorm';
  const global = naming(cfg).global;
  // GPT-2 scales its residual projections' init by 1/sqrt(2L); the Llama family does not.
  const residual: ParamInit = cfg.modelType === 'gpt2' ? 'residual' : 'normal';
  const matrices: ParamSpec[] = [{ name: global.embed, shape: [cfg.vocabSize, C], init: 'normal' }];
  if (cfg.positions === 'learned') matrices.push({ name: global.positions, shape: [cfg.maxPositions, C], init: 'normal' });
  if (!cfg.tiedHead) matrices.push({ name: global.head, shape: [cfg.vocabSize, C], init: 'normal' });
  const vectors: ParamSpec[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const n = naming(cfg).layer(l);
    matrices.push(
      { name: n.qkvw, shape: [QKV, C], init: 'normal' }, { name: n.outw, shape: [C, AW], init: residual },
      { name: n.fcw, shape: [FI, C], init: 'normal' }, { name: n.projw, shape: [C, H], init: residual },
    );
    const v = (name: string, size: number, init: ParamInit) => vectors.push({ name, shape: [size], init });
    v(n.norm1w, C, 'one');
    if (layerNorm) v(n.norm1b, C, 'zero');
    if (cfg.qkvBias) v(n.qkvb, QKV, 'zero');
    if (cfg.qkNorm) {
      v(n.qnorm, cfg.headDim, 'one');
      v(n.knorm, cfg.headDim, 'one');
    }
    if (cfg.outBias) v(n.outb, C, 'zero');
    v(n.norm2w, C, 'one');
    if (layerNorm) v(n.norm2b, C, 'zero');
    if (cfg.mlpBias) {
      v(n.fcb, FI, 'zero');
      v(n.projb, C, 'zero');
    }
  }
  vectors.push({ name: global.normw, shape: [C], init: 'one' });
  if (layerNorm) vectors.push({ name: global.normb, shape: [C], init: 'zero' });
  return { specs: [...matrices, ...vectors], decayCount: matrices.length };
}

/** One block's parameters (or gradients): null where the config has no such tensor. */
export type LayerParams = Record<LayerRole, Tensor | null>;

export function layerViews(arena: TensorArena, cfg: DecoderConfig, l: number): LayerParams {
  const names = naming(cfg).layer(l);
  const views = {} as LayerParams;
  for (const role of Object.keys(names) as LayerRole[]) views[role] = arena.tensors.get(names[role]) ?? null;
  return views;
}

/**
 * Buffers one block writes, each (rows, ·): per layer in training (kept for backward), one shared
 * set in generation. Statistics the backward pass needs are null where nothing will read them.
 */
export interface BlockBuffers {
  ln1: Tensor; ln1Mean: Tensor | null; ln1Rstd: Tensor | null; // (N,C), (N), (N)
  qkvRaw: Tensor | null; // (N,QKV) before the q/k norms (Qwen3), null otherwise
  qkv: Tensor; qkRstd: Tensor | null; // (N,QKV) after q/k norm and RoPE, (N,NH+NKV)
  atty: Tensor; attLse: Tensor | null; // (N,NH*HS), (B,NH,T)
  attproj: Tensor; residual2: Tensor; // (N,C)
  ln2: Tensor; ln2Mean: Tensor | null; ln2Rstd: Tensor | null;
  fch: Tensor; fchAct: Tensor; // (N,I) or (N,2H); (N,I) or (N,H)
  fcproj: Tensor; residual3: Tensor; // (N,C)
  /** LoRA: u (N,r) = dropout(x) @ A^T of each adapter's modules in this block, [adapter][slot]. */
  loraU: Tensor[][];
}

/** Buffer shapes of one block for `rows` token positions (B*T) and batch B. */
export function blockBufferSpecs(cfg: DecoderConfig, prefix: string, rows: number, B: number, T: number, withStats: boolean, lora: readonly AdapterShape[] = []): TensorSpec[] {
  const C = cfg.width, QKV = qkvWidth(cfg), AW = attentionWidth(cfg), FI = ffnInputWidth(cfg), H = cfg.ffnWidth;
  const stats = withStats ? rows : 0, mean = withStats && cfg.norm === 'layernorm' ? rows : 0;
  const qk = cfg.qkNorm ? rows : 0;
  return [
    { name: `${prefix}ln1`, shape: [rows, C] }, { name: `${prefix}ln1Mean`, shape: [mean] }, { name: `${prefix}ln1Rstd`, shape: [stats] },
    { name: `${prefix}qkvRaw`, shape: [qk, QKV] }, { name: `${prefix}qkv`, shape: [rows, QKV] }, { name: `${prefix}qkRstd`, shape: [qk, cfg.heads + cfg.kvHeads] },
    { name: `${prefix}atty`, shape: [rows, AW] }, { name: `${prefix}attLse`, shape: [withStats ? B * cfg.heads * T : 0] },
    { name: `${prefix}attproj`, shape: [rows, C] }, { name: `${prefix}residual2`, shape: [rows, C] },
    { name: `${prefix}ln2`, shape: [rows, C] }, { name: `${prefix}ln2Mean`, shape: [mean] }, { name: `${prefix}ln2Rstd`, shape: [stats] },
    { name: `${prefix}fch`, shape: [rows, FI] }, { name: `${prefix}fchAct`, shape: [rows, H] },
    { name: `${prefix}fcproj`, shape: [rows, C] }, { name: `${prefix}residual3`, shape: [rows, C] },
    ...lora.flatMap((a, i) => Array.from({ length: a.perLayer }, (_, j) => ({ name: `${prefix}lora${i}.${j}`, shape: [rows, a.r] }))),
  ];
}

/** The buffer a block writes its output (B*T, C) into: what a checkpointed layout keeps per layer. */
const BLOCK_OUTPUT = 'residual3';
/** The prefix of the one block set a checkpointed layout shares between the layers. */
const SHARED_BLOCK = 'block.';

/** Views of the buffers blockBufferSpecs laid out; empty tensors become null. */
export function blockBuffers(arena: TensorArena, prefix: string, lora: readonly AdapterShape[] = []): BlockBuffers {
  const g = (n: string) => arena.get(`${prefix}${n}`);
  const opt = (n: string) => {
    const t = g(n);
    return t.numel > 0 ? t : null;
  };
  return {
    ln1: g('ln1'), ln1Mean: opt('ln1Mean'), ln1Rstd: opt('ln1Rstd'), qkvRaw: opt('qkvRaw'), qkv: g('qkv'), qkRstd: opt('qkRstd'),
    atty: g('atty'), attLse: opt('attLse'), attproj: g('attproj'), residual2: g('residual2'),
    ln2: g('ln2'), ln2Mean: opt('ln2Mean'), ln2Rstd: opt('ln2Rstd'), fch: g('fch'), fchAct: g('fchAct'),
    fcproj: g('fcproj'), residual3: g('residual3'),
    loraU: lora.map((a, i) => Array.from({ length: a.perLayer }, (_, j) => g(`lora${i}.${j}`))),
  };
}

/**
 * The activation arena's specs for (B, T), in arena order: the embedding output, every block's
 * buffers (blockBufferSpecs), the final norm, the logits (B*T, V: usually the largest buffer) and
 * the cross-entropy's, then the backward scratch (the residual-stream gradient and one buffer per
 * intermediate width; empty without backward). A memory plan sizes activations from this.
 *
 * Checkpointed, the blocks' buffers are instead each block's output `${l}.residual3` (B*T, C: the
 * next block's input, or the final norm's) and ONE set `block.` that every block writes, its own
 * output buffer empty (a block writes its output into its kept one): backward recomputes a block
 * from its kept input into `block.`. This saves (layers - 1) block sets less the outputs.
 */
export function activationSpecs(cfg: DecoderConfig, B: number, T: number, withBackward: boolean, checkpointed = false, lora: readonly AdapterShape[] = []): TensorSpec[] {
  const C = cfg.width, V = cfg.vocabSize, BT = B * T;
  const specs: TensorSpec[] = [{ name: 'encoded', shape: [BT, C] }];
  if (checkpointed) {
    for (let l = 0; l < cfg.layers; l++) specs.push({ name: `${l}.${BLOCK_OUTPUT}`, shape: [BT, C] });
    const shared = blockBufferSpecs(cfg, SHARED_BLOCK, BT, B, T, true, lora);
    specs.push(...shared.map((s) => (s.name === `${SHARED_BLOCK}${BLOCK_OUTPUT}` ? { name: s.name, shape: [0, C] } : s)));
  } else {
    for (let l = 0; l < cfg.layers; l++) specs.push(...blockBufferSpecs(cfg, `${l}.`, BT, B, T, true, lora));
  }
  specs.push(
    { name: 'lnf', shape: [BT, C] }, { name: 'lnfMean', shape: [cfg.norm === 'layernorm' ? BT : 0] }, { name: 'lnfRstd', shape: [BT] },
    { name: 'logits', shape: [BT, V] }, { name: 'losses', shape: [BT] }, { name: 'ceLse', shape: [BT] },
  );
  const grad = withBackward ? BT : 0;
  specs.push(
    { name: 'dresidual', shape: [grad, C] }, { name: 'dC', shape: [grad, C] }, { name: 'dAtt', shape: [grad, attentionWidth(cfg)] },
    { name: 'dqkv', shape: [grad, qkvWidth(cfg)] }, { name: 'dqkvRaw', shape: [cfg.qkNorm ? grad : 0, qkvWidth(cfg)] },
    { name: 'dH', shape: [grad, cfg.ffnWidth] }, { name: 'dFI', shape: [grad, ffnInputWidth(cfg)] },
    { name: 'loraDu', shape: [grad, Math.max(0, ...lora.map((a) => a.r))] },
  );
  return specs;
}

/** What a run does with the model, for its memory plan. */
export interface ModelUse {
  /** Forward (and backward, when training) on batches of up to B rows of T positions; null: no batch activations (generation). */
  batch: { B: number; T: number } | null;
  /** Gradients and the two AdamW moments (each the size of the parameters) are needed. */
  training: boolean;
  /** Whether the parameters are already allocated (only what is still to come is planned). */
  parametersAllocated?: boolean;
  /** LoRA: the adapter applied (and trained, when training: the base then takes no gradients or moments). */
  lora?: LoraSettings | null;
  /** How the base's linear weights (and the LM head) are stored (DecoderOptions); default f32. */
  baseDtype?: BaseDtype;
  quantizeHead?: boolean;
  formats?: ReadonlyMap<string, WeightFormat>;
  /** Activations in the gradient-checkpointing layout (Decoder.setGradientCheckpointing). Default false. */
  gradientCheckpointing?: boolean;
}

/** Bytes of native memory a run allocates, by what they hold (see planMemory). */
export interface MemoryPlan {
  parts: Record<string, number>;
  total: number;
}

/**
 * The bytes of every arena a run of this model allocates: parameters, gradients and AdamW moments
 * (training), activations with their backward scratch for B*T rows (the logits included), and the
 * RoPE tables. The sizes come from the same spec functions the allocations use (parameterSpecs,
 * activationSpecs), so the plan cannot drift from them.
 */
export function planMemory(config: DecoderConfig | GPT2Config, use: ModelUse): MemoryPlan {
  const cfg = asDecoderConfig(config);
  const { specs } = parameterSpecs(cfg);
  const storedShapes = storedLayout(cfg, use);
  const stored = new Set(storedShapes.map((w) => w.name));
  const parameters = arenaBytes(specs.filter((x) => !stored.has(x.name))) + storedWeightBytes(storedShapes);
  const adapter = use.lora ? adapterSpecs(cfg, use.lora) : null;
  const adapterBytes = adapter ? arenaBytes(adapter.specs) : 0;
  const trainableBytes = adapter ? adapterBytes : parameters;
  const parts: Record<string, number> = {};
  if (!use.parametersAllocated) {
    parts.parameters = parameters;
    if (adapter) parts['LoRA adapter'] = adapterBytes;
    if (cfg.positions === 'rope') parts['RoPE tables'] = arenaBytes(ropeTableSpecs(cfg));
  }
  if (use.training) {
    parts.gradients = trainableBytes;
    parts['AdamW moments'] = 2 * trainableBytes;
  }
  const shapes: AdapterShape[] = adapter ? [adapterShape(use.lora!.r, adapter.modules)] : [];
  if (use.batch) parts.activations = arenaBytes(activationSpecs(cfg, use.batch.B, use.batch.T, use.training, use.gradientCheckpointing ?? false, shapes));
  return { parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
}

/** The four linear weights of every block: what a low-precision frozen base stores (frozen_base.ts). */
export function linearWeightNames(cfg: DecoderConfig): string[] {
  const names: string[] = [];
  for (let l = 0; l < cfg.layers; l++) for (const role of ['qkvw', 'outw', 'fcw', 'projw'] as const) names.push(layerParamName(cfg, l, role));
  return names;
}

/**
 * The weights a model built with `options` keeps in its low-precision store (lib/model/frozen_base.ts),
 * each with its format: the blocks' linear weights in baseDtype (llama.cpp's fallbacks leave some
 * float32), the LM head too with quantizeHead (under the head's parameter name, also when tied), or
 * exactly the weights `formats` lists (a GGUF file's). Every other parameter stays float32.
 */
export function storedLayout(cfg: DecoderConfig, options: DecoderOptions): StoredShape[] {
  const candidates = storableWeights(cfg, Boolean(options.quantizeHead || options.formats));
  const formatOf = (w: { OC: number; C: number; name: string }): WeightFormat | null => {
    if (options.formats) return options.formats.get(w.name) ?? null;
    const dtype = options.baseDtype ?? 'f32';
    return dtype === 'f32' ? null : weightFormat(dtype, w.OC, w.C);
  };
  return candidates.flatMap((w) => {
    const format = formatOf(w);
    return format ? [{ ...w, format }] : [];
  });
}

/** The (OC, C) weights a low-precision store may hold: the blocks' linear weights, and the LM head (under its name, also when tied). */
function storableWeights(cfg: DecoderConfig, withHead: boolean): Array<{ name: string; OC: number; C: number }> {
  const shapes = new Map(parameterSpecs(cfg).specs.map((x) => [x.name, x.shape]));
  const weights = linearWeightNames(cfg).map((name) => ({ name, OC: shapes.get(name)![0], C: shapes.get(name)![1] }));
  if (withHead) weights.push({ name: globalParamName(cfg, 'head'), OC: cfg.vocabSize, C: cfg.width });
  return weights;
}

/** The RoPE cos/sin tables (maxPositions, HS/2) each. */
function ropeTableSpecs(cfg: DecoderConfig): TensorSpec[] {
  const shape = [cfg.maxPositions, cfg.headDim / 2];
  return [{ name: 'cos', shape }, { name: 'sin', shape }];
}

/** Activations and backward scratch for up to (B, T); reused for any smaller batch. */
class Activations {
  readonly arena: TensorArena;
  readonly layers: BlockBuffers[] = [];
  readonly encoded: Tensor; lnf: Tensor; lnfMean: Tensor | null; lnfRstd: Tensor; // (N,C), (N), (N)
  readonly logits: Tensor; losses: Tensor; ceLse: Tensor; // (N,V), (N), (N)
  // Backward scratch: the residual-stream gradient and one buffer per intermediate width.
  readonly dresidual: Tensor; dC: Tensor; dAtt: Tensor; dqkv: Tensor; dqkvRaw: Tensor; dH: Tensor; dFI: Tensor;
  readonly loraDu: Tensor; // (N, largest adapter rank): lora_backward's scratch

  constructor(device: DeviceName, cfg: DecoderConfig, readonly B: number, readonly T: number, withBackward: boolean, readonly checkpointed: boolean, lora: readonly AdapterShape[]) {
    this.arena = new TensorArena(device, activationSpecs(cfg, B, T, withBackward, checkpointed, lora));
    const g = (n: string) => this.arena.get(n);
    this.encoded = g('encoded');
    if (checkpointed) {
      // Every layer writes the shared set, its output into its own kept buffer.
      const shared = blockBuffers(this.arena, SHARED_BLOCK, lora);
      for (let l = 0; l < cfg.layers; l++) this.layers.push({ ...shared, [BLOCK_OUTPUT]: g(`${l}.${BLOCK_OUTPUT}`) });
    } else {
      for (let l = 0; l < cfg.layers; l++) this.layers.push(blockBuffers(this.arena, `${l}.`, lora));
    }
    this.lnf = g('lnf'); this.lnfMean = cfg.norm === 'layernorm' ? g('lnfMean') : null; this.lnfRstd = g('lnfRstd');
    this.logits = g('logits'); this.losses = g('losses'); this.ceLse = g('ceLse');
    this.dresidual = g('dresidual'); this.dC = g('dC'); this.dAtt = g('dAtt'); this.dqkv = g('dqkv'); this.dqkvRaw = g('dqkvRaw');
    this.dH = g('dH'); this.dFI = g('dFI'); this.loraDu = g('loraDu');
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
  /**
   * Training: dropout is applied with masks drawn from this seed (an integer in [0, 2^53); the trainer
   * derives it from the run's seed, the step and the micro-batch, so a resumed run draws the same
   * masks): the model's at the `dropout` rates, and the trainable LoRA adapter's at its own rate.
   * Absent: no dropout (evaluation, generation).
   */
  dropoutSeed?: number | null;
  /** The model's dropout rates with dropoutSeed (lib/model/dropout.ts trainingDropout); default none. */
  dropout?: DropoutRates;
}

/** A training forward's dropout: the seed every mask derives from, and the model's rates. */
interface TrainingDropout {
  seed: number;
  rates: DropoutRates;
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

/** Where a block's positions come from: per-token ids (packed examples) or offset + t. */
export interface BlockPositions {
  positions: Int32Array | null;
  offset: number;
}

/** The config.json key that bounds the sequence length, for messages. */
export function maxPositionsKey(cfg: DecoderConfig): string {
  return cfg.modelType === 'gpt2' ? 'n_positions' : 'max_position_embeddings';
}

/** What a Decoder is built with besides its config. */
export interface DecoderOptions {
  /**
   * How the blocks' linear weights are stored: f32 (default; trainable), or bf16 / int8 / nf4 /
   * q8_0 / q4_k for a frozen base that only LoRA adapters train on, or for quantized inference
   * (lib/model/frozen_base.ts).
   */
  baseDtype?: BaseDtype;
  /**
   * Also store the LM head in baseDtype (`--quantize`, as llama.cpp quantizes output.weight): a
   * quantized copy of a tied head for the head matmul while the embedding lookup stays float32.
   */
  quantizeHead?: boolean;
  /**
   * The stored format of each weight, by parameter name (the LM head under the head's name, also
   * when tied): a GGUF file's own block types (lib/gguf/load.ts). Replaces baseDtype; the weights
   * not listed stay float32.
   */
  formats?: ReadonlyMap<string, WeightFormat>;
  /**
   * Tokens that end generation by default (generate() without eosTokenId): config.json's
   * eos_token_id (one id or a list) unless given; loadModel adds generation_config.json's.
   */
  eosTokenIds?: readonly number[];
}

/** config.json's eos_token_id (one id or a list) as the ids inside the vocabulary; [] when absent. */
export function configEosTokenIds(cfg: DecoderConfig): number[] {
  const eos = cfg.json.eos_token_id;
  const ids = Array.isArray(eos) ? eos : [eos];
  return ids.filter((id): id is number => Number.isInteger(id) && (id as number) >= 0 && (id as number) < cfg.vocabSize);
}

const BIAS_OF: Record<LinearRole, LayerRole> = { qkvw: 'qkvb', outw: 'outb', fcw: 'fcb', projw: 'projb' };

/** The attention-probability dropout of layer l as the kernels take it: (p, seed), (0, 0) for none. */
function attentionDropout(dropout: TrainingDropout | null, l: number): { p: number; seed: number } {
  const p = dropout?.rates.attention ?? 0;
  return p > 0 ? { p, seed: layerDropoutSeed(dropout!.seed, l, 'attention') } : { p: 0, seed: 0 };
}

/**
 * Told by backward() that [offset, offset + numel) of model.grads holds its final value for the step (the
 * overlapped gradient all-reduce, lib/train/distributed.ts, starts reducing it while the backward goes on).
 */
export type GradientRegionListener = (offset: number, numel: number) => void;

/** A stretch [offset, offset + numel) of an arena. */
export interface ArenaRange {
  offset: number;
  numel: number;
}

/**
 * The gradient arena split by when backward() finishes each part: `top` (the untied LM head and the final
 * norm: final right after their backward, before the blocks'), `layers[l]` (block l's tensors, LoRA's A and
 * B of its modules included: final after block l's backward) and `bottom` (the embeddings, which take the
 * tied head's gradient too, and anything not named above: final at the end). Each tensor's span runs to the
 * next tensor's offset (its 16-float padding included), so the ranges cover the arena exactly once. A block's
 * tensors are two runs in the arena (its matrices among the decayed tensors, its vectors among the rest).
 */
export interface GradientRegions {
  top: ArenaRange[];
  layers: ArenaRange[][];
  bottom: ArenaRange[];
}

export class Decoder {
  readonly config: DecoderConfig;
  /** Float32 parameters: all of them, or, with a low-precision base, all but the blocks' linear weights. */
  readonly params: TensorArena;
  /** Gradients, laid out like trainableSpecs() (the parameters, or the trainable LoRA adapter). */
  grads: TensorArena | null = null;
  /** gradientRegions() of `grads` (recomputed when the gradient arena changes). */
  private regionPlan: { grads: TensorArena; regions: GradientRegions } | null = null;
  /** Parameters of the params arena that take weight decay (they come first). */
  readonly decayCount: number;
  /** How the blocks' linear weights are stored; 'gguf' when a GGUF file's own formats are (DecoderOptions.formats). */
  readonly baseDtype: BaseDtype | 'gguf';
  /** Where generate() stops unless told otherwise (DecoderOptions.eosTokenIds). */
  readonly eosTokenIds: readonly number[];
  /** The weights storedLayout() keeps in low precision, or null when every weight is float32. */
  private readonly frozen: FrozenLinears | null;
  /**
   * What the chosen dtype could not store as asked (llama.cpp's per-weight fallbacks), in one line
   * for the user, or null.
   */
  readonly storageNote: string | null;
  /** LoRA adapters applied on top of the base, in order; at most one is trainable. */
  readonly adapters: LoraAdapter[] = [];
  /** The adapters the forward applies (selectAdapters), or null for all of them. */
  private selected: readonly LoraAdapter[] | null = null;
  private trainableAdapter: LoraAdapter | null = null;
  private acts: Activations | null = null;
  private checkpointing = false;
  private rope: { arena: TensorArena; cos: Tensor; sin: Tensor; positions: number } | null = null;
  private lastBatch: {
    B: number; T: number; tokens: Int32Array; targets: Int32Array; positions: Int32Array | null; segmentIds: Int32Array | null; dropout: TrainingDropout | null;
  } | null = null;

  /** A GPT2Config (from parseGPT2Config / parseModelSpec) is taken as the GPT-2 configuration. */
  constructor(config: DecoderConfig | GPT2Config, readonly device: DeviceName = 'cpu', options: DecoderOptions = {}) {
    this.config = asDecoderConfig(config);
    this.baseDtype = options.formats ? 'gguf' : options.baseDtype ?? 'f32';
    this.eosTokenIds = [...new Set(options.eosTokenIds ?? configEosTokenIds(this.config))];
    const { specs, decayCount } = parameterSpecs(this.config);
    const shapes = storedLayout(this.config, options);
    const stored = new Set(shapes.map((w) => w.name));
    this.frozen = shapes.length > 0 ? new FrozenLinears(device, shapes) : null;
    const asked = options.formats ? 'f32' : options.baseDtype ?? 'f32';
    this.storageNote = asked === 'f32' ? null : fallbackNote(asked, storableWeights(this.config, Boolean(options.quantizeHead)));
    this.decayCount = decayCount - specs.slice(0, decayCount).filter((x) => stored.has(x.name)).length;
    this.params = new TensorArena(device, specs.filter((x) => !stored.has(x.name)));
  }

  /** Writes parameter `name` (a parameterSpecs name) from float32 values, storing it in the base's format. */
  setParameter(name: string, values: Float32Array): void {
    const t = this.params.tensors.get(name);
    if (t) {
      t.write(values);
      this.copyTiedHead(name, values);
      return;
    }
    if (!this.frozen?.has(name)) throw new Error(`no parameter named ${name}`);
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw new NonFiniteError(`parameter ${name} holds NaN or infinite values; gptune does not load non-finite weights`);
    }
    this.frozen.set(name, values);
  }

  /**
   * A tied head stored in low precision is a quantized copy of the embedding, made when embedding
   * `name` is written (a GGUF file's head blocks are written as the file stores them instead).
   */
  private copyTiedHead(name: string, values: Float32Array): void {
    const cfg = this.config, head = globalParamName(cfg, 'head');
    if (cfg.tiedHead && name === globalParamName(cfg, 'embed') && this.baseDtype !== 'gguf' && this.frozen?.has(head)) this.frozen.set(head, values);
  }

  /**
   * Stores row range `part` (storedLayout's order) of GGML weight `name` from a GGUF file's blocks,
   * copied as they are (no float32 copy of the weight exists).
   */
  setParameterBlocks(name: string, part: number, blocks: Uint8Array): void {
    if (!this.frozen?.has(name)) throw new Error(`no GGML weight named ${name}`);
    this.frozen.setBlocks(name, part, blocks);
  }

  /** Parameter `name` as float32 (a low-precision base weight dequantized). */
  readParameter(name: string): Float32Array {
    const t = this.params.tensors.get(name);
    if (t) return t.read();
    if (!this.frozen?.has(name)) throw new Error(`no parameter named ${name}`);
    return this.frozen.read(name);
  }

  /**
   * Applies a LoRA adapter on top of the model (PEFT semantics, lib/lora/). A trainable adapter
   * (at most one) becomes what the optimizer trains and the base is frozen; its modules to save
   * start as copies of the base's embedding / head, and its lora_A/B as PEFT initialises them when
   * `seed` is given (otherwise the caller writes them, e.g. from adapter_model.safetensors).
   */
  addAdapter(settings: LoraSettings, options: { trainable?: boolean; seed?: number; labels?: { targets?: string; modulesToSave?: string } } = {}): LoraAdapter {
    if (options.trainable && this.trainableAdapter) throw new UsageError('only one LoRA adapter can be trained at a time');
    const adapter = new LoraAdapter(this.config, settings, this.device, options.labels);
    for (const [which, t] of adapter.saved) t.write(which === 'embed' ? this.embedTensor().read() : this.adapterCopy('head')?.read() ?? this.readParameter(this.baseModuleName('head')));
    if (options.seed !== undefined) adapter.initPeft(options.seed);
    this.adapters.push(adapter);
    if (options.trainable) {
      this.trainableAdapter = adapter;
      this.grads?.free();
      this.grads = null;
    }
    // The per-block buffers depend on the adapters.
    this.acts?.arena.free();
    this.acts = null;
    return adapter;
  }

  /**
   * Applies only `adapters` (some of the loaded ones, in this order; [] for the base) until called
   * again; null applies every loaded adapter (the default). A server holding several adapters on one
   * base picks the request's one this way. Block buffers passed to blockForward must then hold, per
   * selected adapter i, loraU[i] for its modules (blockBufferSpecs with an AdapterShape that covers it).
   */
  selectAdapters(adapters: readonly LoraAdapter[] | null): void {
    for (const a of adapters ?? []) if (!this.adapters.includes(a)) throw new Error('selectAdapters: an adapter that is not loaded on this model');
    this.selected = adapters;
  }

  /** What the forward applies: the selected adapters, or all. */
  private get applied(): readonly LoraAdapter[] {
    return this.selected ?? this.adapters;
  }

  /** Frees every adapter: the model is its base again. */
  removeAdapters(): void {
    for (const a of this.adapters) a.free();
    this.adapters.length = 0;
    this.selected = null;
    this.trainableAdapter = null;
    this.grads?.free();
    this.grads = null;
    this.acts?.arena.free();
    this.acts = null;
  }

  /** The adapter being trained, or null (full fine-tuning, or inference). */
  get trainingAdapter(): LoraAdapter | null {
    return this.trainableAdapter;
  }

  /** Tensor specs of what the optimizer trains (and the gradients' layout) with the decayed ones first, and how many decay. */
  trainableSpecs(): { specs: TensorSpec[]; decayCount: number } {
    if (this.trainableAdapter) {
      const specs = [...this.trainableAdapter.arena.tensors.values()].map((t) => ({ name: t.name, shape: t.shape }));
      return { specs, decayCount: specs.length };
    }
    if (this.frozen) {
      throw new UsageError(`a ${this.baseDtype} base is frozen: train it with LoRA (--lora), or load it with --base-dtype f32 for full fine-tuning`);
    }
    const specs = [...this.params.tensors.values()].map((t) => ({ name: t.name, shape: t.shape }));
    return { specs, decayCount: this.decayCount };
  }

  /** What the optimizer updates: the parameters, or the trainable adapter. */
  get trainable(): TensorArena {
    if (this.trainableAdapter) return this.trainableAdapter.arena;
    this.trainableSpecs();
    return this.params;
  }

  /** The per-block buffer shapes the applied adapters need (blockBufferSpecs' lora). */
  adapterShapes(): AdapterShape[] {
    return this.adapters.map((a) => a.shape);
  }

  /** The last applied adapter's trained copy of the embedding or the LM head, or null when none trained one. */
  adapterCopy(which: SavedModule): Tensor | null {
    const applied = this.applied;
    for (let i = applied.length - 1; i >= 0; i--) {
      const t = applied[i].saved.get(which);
      if (t) return t;
    }
    return null;
  }

  /** The base's embedding or LM head (the embedding when tied), by parameter name. */
  private baseModuleName(which: SavedModule): string {
    return globalParamName(this.config, which === 'head' && !this.config.tiedHead ? 'head' : 'embed');
  }

  /** The token embedding the forward uses: the last adapter's trained copy, or the base's. */
  embedTensor(): Tensor {
    return this.adapterCopy('embed') ?? this.params.get(this.baseModuleName('embed'));
  }

  /** The gradient of the embedding or the LM head (the embedding's when tied), or null when it is frozen. */
  private moduleGrad(which: SavedModule): Tensor | null {
    const g = this.grads;
    if (!g) return null;
    if (this.trainableAdapter) {
      const t = this.trainableAdapter.saved.get(which);
      return t ? g.get(t.name) : null;
    }
    return g.get(this.baseModuleName(which));
  }

  get numParameters(): number {
    return countParameters(this.config);
  }

  /** Parameter names in arena order. */
  get parameterNames(): string[] {
    return [...this.params.tensors.keys()];
  }

  /**
   * The LM head, logits (N, V) = inp (N, C) @ W^T with W an adapter's trained copy, the base's stored
   * in low precision (--quantize, GGUF files), or the base's float32 (the token embedding when tied).
   */
  headForward(logits: Tensor, inp: Tensor, N: number): void {
    const copy = this.adapterCopy('head'), stored = globalParamName(this.config, 'head');
    if (!copy && this.frozen?.has(stored)) this.frozen.forward(stored, logits, inp, null, N);
    else kernels.matmul_forward(logits, inp, copy ?? this.params.get(this.baseModuleName('head')), null, N, this.config.width, this.config.vocabSize);
  }

  /** headForward's backward: dinp (N, C) += dlogits @ W, and the head's gradient when it trains. */
  private headBackward(dinp: Tensor, dlogits: Tensor, inp: Tensor, N: number): void {
    const copy = this.adapterCopy('head'), stored = globalParamName(this.config, 'head');
    if (!copy && this.frozen?.has(stored)) this.frozen.backward(stored, dinp, dlogits, N);
    else kernels.matmul_backward(dinp, this.moduleGrad('head'), null, dlogits, inp, copy ?? this.params.get(this.baseModuleName('head')), N, this.config.width, this.config.vocabSize);
  }

  /**
   * Fresh weights: N(0, std) for embeddings and linear weights (GPT-2 scales its residual
   * projections by 1/sqrt(2 * n_layer)), zero biases, norm weights 1.
   */
  initRandom(seed: number, std = this.config.initializerRange): void {
    const rng = new Rng(seed);
    const residualStd = std / Math.sqrt(2 * this.config.layers);
    for (const spec of parameterSpecs(this.config).specs) {
      // On the CPU a float32 parameter is drawn in place: a JS copy of the (V, C) embedding would
      // double the peak RSS of building the model (519 MB more for the Qwen2.5-0.5B shape).
      const resident = this.device === 'cpu' ? this.params.tensors.get(spec.name) : undefined;
      const values = resident ? resident.view() : new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
      if (spec.init === 'normal' || spec.init === 'residual') {
        const s = spec.init === 'residual' ? residualStd : std;
        for (let i = 0; i < values.length; i++) values[i] = rng.normal() * s;
      } else {
        values.fill(spec.init === 'one' ? 1 : 0);
      }
      if (!resident) this.setParameter(spec.name, values);
      else this.copyTiedHead(spec.name, values);
    }
  }

  /**
   * Gradient checkpointing: training keeps each block's input only and recomputes the block in
   * backward (one more block forward per layer but the last, for (layers - 1) block sets of
   * activations less). Gradients are bitwise those without it. Takes effect at the next forward,
   * which reallocates the activations in the other layout.
   */
  setGradientCheckpointing(enabled: boolean): void {
    if (typeof enabled !== 'boolean') throw new TypeError(`setGradientCheckpointing: expected true or false but received ${describeValue(enabled)}`);
    this.checkpointing = enabled;
  }

  get gradientCheckpointing(): boolean {
    return this.checkpointing;
  }

  memory(): MemoryReport {
    return {
      paramsBytes: this.params.bytes + (this.frozen?.bytes ?? 0) + this.adapters.reduce((n, a) => n + a.arena.bytes, 0),
      gradsBytes: this.grads ? this.grads.bytes : 0,
      activationsBytes: this.acts ? this.acts.arena.bytes : 0,
    };
  }

  /** Frees native memory now rather than at garbage collection. */
  free(): void {
    this.params.free();
    this.frozen?.free();
    for (const a of this.adapters) a.free();
    this.grads?.free();
    this.acts?.arena.free();
    this.rope?.arena.free();
    this.grads = null;
    this.acts = null;
    this.rope = null;
  }

  private ensureActivations(B: number, T: number, withBackward: boolean): Activations {
    // Every activation is used as a prefix of its buffer, so any (B, T) with B*T rows fits.
    const a = this.acts;
    const needBackward = withBackward || (a?.withBackward ?? false);
    if (a && a.B * a.T >= B * T && (a.withBackward || !withBackward) && a.checkpointed === this.checkpointing) return a;
    a?.arena.free();
    this.acts = new Activations(this.device, this.config, B, T, needBackward, this.checkpointing, this.adapterShapes());
    return this.acts;
  }

  /** Allocates gradient storage (same layout as the parameters). */
  ensureGrads(): TensorArena {
    if (!this.grads) this.grads = new TensorArena(this.device, this.trainableSpecs().specs);
    return this.grads;
  }

  zeroGrad(): void {
    const g = this.ensureGrads();
    kernels.fill(g.all(), 0, g.numel);
  }

  /**
   * The RoPE cos/sin tables (maxPositions, HS/2) on the model's device, built on first use
   * (lib/model/rope.ts: float64, rounded once).
   */
  ropeTables(): { cos: Tensor; sin: Tensor; positions: number } {
    if (!this.rope) {
      const cfg = this.config, n = cfg.maxPositions;
      const { cos, sin } = ropeTables(cfg, n);
      const arena = new TensorArena(this.device, ropeTableSpecs(cfg));
      arena.get('cos').write(cos);
      arena.get('sin').write(sin);
      this.rope = { arena, cos: arena.get('cos'), sin: arena.get('sin'), positions: n };
    }
    return this.rope;
  }

  /** The longest sequence the model computes exactly (decoder_config.ts contextLength). */
  get contextLength(): number {
    return contextLength(this.config);
  }

  /**
   * What bounds contextLength, for messages: "the model's n_positions (1024)", or "the model's
   * sliding_window (4096) ..." for Mistral.
   */
  get contextLimit(): string {
    const cfg = this.config;
    return this.contextLength === cfg.maxPositions
      ? `the model's ${maxPositionsKey(cfg)} (${cfg.maxPositions})`
      : `the model's sliding_window (${cfg.slidingWindow}, config.json; gptune's attention is exact only up to the window)`;
  }

  checkSequenceLength(T: number, what: string): void {
    if (T > this.contextLength) throw new RangeError(`${what}: sequence length ${T} exceeds ${this.contextLimit}`);
  }

  private checkBatch(tokens: Int32Array, B: number, T: number, targets: Int32Array | null, opts: ForwardOptions): void {
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`forward: expected batch size B >= 1 but received ${B}`);
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`forward: expected sequence length T >= 1 but received ${T}`);
    this.checkSequenceLength(T, 'forward');
    if (tokens.length !== B * T) throw new RangeError(`forward: expected ${B * T} tokens (B=${B} x T=${T}) but received ${tokens.length}`);
    if (targets && targets.length !== B * T) throw new RangeError(`forward: expected ${B * T} targets but received ${targets.length}`);
    if (opts.positions && opts.positions.length !== B * T) throw new RangeError(`forward: expected ${B * T} positions but received ${opts.positions.length}`);
    if (opts.segmentIds && opts.segmentIds.length !== B * T) throw new RangeError(`forward: expected ${B * T} segment ids but received ${opts.segmentIds.length}`);
    const seed = opts.dropoutSeed;
    if (seed != null && !(Number.isSafeInteger(seed) && seed >= 0)) throw new RangeError(`forward: expected dropoutSeed to be an integer in [0, 2^53) but received ${seed}`);
    for (const [site, p] of Object.entries(opts.dropout ?? NO_DROPOUT)) {
      if (!(typeof p === 'number' && p >= 0 && p < 1)) throw new RangeError(`forward: expected dropout.${site} to be a probability in [0, 1) but received ${describeValue(p)}`);
    }
  }

  /** out = norm(inp) with the config's norm; mean/rstd saved when given. */
  normForward(out: Tensor, mean: Tensor | null, rstd: Tensor | null, inp: Tensor, w: Tensor, b: Tensor | null, N: number): void {
    const cfg = this.config;
    if (cfg.norm === 'layernorm') kernels.layernorm_forward(out, mean, rstd, inp, w, b!, N, cfg.width, cfg.normEps);
    else kernels.rmsnorm_forward(out, rstd, inp, w, N, cfg.width, cfg.normEps);
  }

  private normBackward(dinp: Tensor, dw: Tensor | null, db: Tensor | null, dout: Tensor, inp: Tensor, w: Tensor, mean: Tensor | null, rstd: Tensor | null, N: number): void {
    const C = this.config.width;
    if (this.config.norm === 'layernorm') kernels.layernorm_backward(dinp, dw, db, dout, inp, w, mean!, rstd!, N, C);
    else kernels.rmsnorm_backward(dinp, dw, dout, inp, w, rstd!, N, C);
  }

  /**
   * The token embedding (B,T,C) into `out`: wte[token], plus the learned position table at
   * `at` (GPT-2); RoPE models add no positions here.
   */
  embed(out: Tensor, tokens: Int32Array, B: number, T: number, at: BlockPositions): void {
    const cfg = this.config, p = this.params;
    const wpe = cfg.positions === 'learned' ? p.get(globalParamName(cfg, 'positions')) : null;
    kernels.encoder_forward(out, tokens, wpe ? at.positions : null, this.embedTensor(), wpe, B, T, cfg.width, at.offset);
  }

  /**
   * One transformer block on rows = B*T positions: input -> a.residual3. `attend` computes
   * a.atty from a.qkv for layer l (full causal attention in training, the KV cache in generation).
   * `dropout` (training) drops the branches' outputs before the residual adds and LoRA's inputs.
   */
  blockForward(
    l: number, a: BlockBuffers, input: Tensor, B: number, T: number, at: BlockPositions, attend: (a: BlockBuffers, l: number) => void, dropout: TrainingDropout | null = null,
  ): void {
    const cfg = this.config, k = kernels, w = layerViews(this.params, cfg, l);
    const rows = B * T, C = cfg.width;
    const NH = cfg.heads, NKV = cfg.kvHeads, HS = cfg.headDim;
    const dropoutSeed = dropout?.seed ?? null;
    const linear = (role: LinearRole, out: Tensor, inp: Tensor) => this.linearForward(l, role, w, a, out, inp, rows, dropoutSeed);
    // residual + dropout(branch) (GPT-2's resid_pdrop), or the plain sum.
    const addBranch = (out: Tensor, residual: Tensor, branch: Tensor, site: LayerDropoutSite) => {
      const p = dropout?.rates.residual ?? 0;
      if (p > 0) k.dropout_forward(out, branch, residual, rows * C, p, layerDropoutSeed(dropout!.seed, l, site));
      else k.residual_forward(out, residual, branch, rows * C);
    };
    this.normForward(a.ln1, a.ln1Mean, a.ln1Rstd, input, w.norm1w!, w.norm1b, rows);
    linear('qkvw', a.qkvRaw ?? a.qkv, a.ln1);
    if (cfg.qkNorm) k.qknorm_forward(a.qkv, a.qkRstd!, a.qkvRaw!, w.qnorm!, w.knorm!, rows, NH, NKV, HS, cfg.normEps);
    if (cfg.positions === 'rope') {
      const rope = this.ropeTables();
      k.rope_forward(a.qkv, rope.cos, rope.sin, at.positions, B, T, NH, NKV, HS, rope.positions, at.offset);
    }
    attend(a, l);
    linear('outw', a.attproj, a.atty);
    addBranch(a.residual2, input, a.attproj, 'attentionOutput');
    this.normForward(a.ln2, a.ln2Mean, a.ln2Rstd, a.residual2, w.norm2w!, w.norm2b, rows);
    linear('fcw', a.fch, a.ln2);
    if (cfg.mlp === 'swiglu') k.swiglu_forward(a.fchAct, a.fch, rows, cfg.ffnWidth);
    else k.gelu_forward(a.fchAct, a.fch, rows * cfg.ffnWidth);
    linear('projw', a.fcproj, a.fchAct);
    addBranch(a.residual3, a.residual2, a.fcproj, 'mlpOutput');
  }

  /** The dropout probability of adapter i in a forward with this seed (only the trained adapter drops, only in training). */
  private dropoutOf(adapter: LoraAdapter, dropoutSeed: number | null): number {
    return dropoutSeed !== null && adapter === this.trainableAdapter ? adapter.settings.dropout : 0;
  }

  /**
   * One of block l's linear layers, out (rows, OUT) = inp (rows, IN) @ W^T + b, from the float32 or
   * the low-precision base, plus every adapter's update on its modules (column slices of out).
   */
  private linearForward(l: number, role: LinearRole, w: LayerParams, a: BlockBuffers, out: Tensor, inp: Tensor, rows: number, dropoutSeed: number | null): void {
    const name = layerParamName(this.config, l, role), bias = w[BIAS_OF[role]];
    if (this.frozen?.has(name)) {
      this.frozen.forward(name, out, inp, bias, rows);
    } else {
      const weight = w[role]!;
      kernels.matmul_forward(out, inp, weight, bias, rows, weight.shape[1], weight.shape[0]);
    }
    this.applied.forEach((adapter, i) => {
      const p = this.dropoutOf(adapter, dropoutSeed);
      for (const m of adapter.on(l, role)) {
        kernels.lora_forward(out, a.loraU[i][m.slot], inp, m.A, m.B, rows, m.inFeatures, adapter.settings.r, m.outFeatures, m.rowWidth, m.offset,
          adapter.scaling * adapter.weight, p, p > 0 ? moduleDropoutSeed(dropoutSeed!, m.index) : 0);
      }
    });
  }

  /**
   * The backward of linearForward: dinp (rows, IN) += dout @ W (+ each adapter's path); the weight
   * and bias gradients when the base trains; the trainable adapter's dA, dB.
   */
  private linearBackward(
    l: number, role: LinearRole, w: LayerParams, dw: LayerParams, a: BlockBuffers, dinp: Tensor, dout: Tensor, inp: Tensor, rows: number, dropoutSeed: number | null,
  ): void {
    const name = layerParamName(this.config, l, role);
    if (this.frozen?.has(name)) {
      this.frozen.backward(name, dinp, dout, rows);
    } else {
      const weight = w[role]!;
      kernels.matmul_backward(dinp, dw[role], dw[BIAS_OF[role]], dout, inp, weight, rows, weight.shape[1], weight.shape[0]);
    }
    const g = this.grads!, du = this.acts!.loraDu;
    this.applied.forEach((adapter, i) => {
      const p = this.dropoutOf(adapter, dropoutSeed), trained = adapter === this.trainableAdapter;
      for (const m of adapter.on(l, role)) {
        kernels.lora_backward(dinp, trained ? g.get(m.A.name) : null, trained ? g.get(m.B.name) : null, du, dout, a.loraU[i][m.slot], inp, m.A, m.B,
          rows, m.inFeatures, adapter.settings.r, m.outFeatures, m.rowWidth, m.offset, adapter.scaling * adapter.weight, p, p > 0 ? moduleDropoutSeed(dropoutSeed!, m.index) : 0);
      }
    });
  }

  /**
   * blockForward's attention in training: full causal attention over (B,T), within segments, saving
   * the log-sum-exp for backward, with the attention-probability dropout of layer l.
   */
  private causalAttention(segmentIds: Int32Array | null, B: number, T: number, dropout: TrainingDropout | null): (a: BlockBuffers, l: number) => void {
    const cfg = this.config;
    return (a, l) => {
      const { p, seed } = attentionDropout(dropout, l);
      kernels.attention_forward(a.atty, a.attLse!, a.qkv, segmentIds, B, T, cfg.heads, cfg.kvHeads, cfg.headDim, p, seed);
    };
  }

  /**
   * Runs the model on tokens (B,T). With targets (B,T; IGNORE_INDEX where nothing is predicted)
   * the loss is computed and the batch is remembered for backward(). Logits stay in the activation
   * arena (see logitsRows()).
   */
  forward(tokens: Int32Array, B: number, T: number, targets: Int32Array | null = null, opts: ForwardOptions = {}): ForwardResult {
    this.checkBatch(tokens, B, T, targets, opts);
    const cfg = this.config, C = cfg.width, V = cfg.vocabSize, BT = B * T;
    const acts = this.ensureActivations(B, T, targets !== null && this.grads !== null);
    const p = this.params, k = kernels;
    const positions = opts.positions ?? null, segmentIds = opts.segmentIds ?? null;
    const dropout = opts.dropoutSeed != null ? { seed: opts.dropoutSeed, rates: opts.dropout ?? NO_DROPOUT } : null;
    const at = { positions, offset: 0 };

    this.embed(acts.encoded, tokens, B, T, at);
    const pEmbed = dropout?.rates.embedding ?? 0;
    if (pEmbed > 0) k.dropout_forward(acts.encoded, acts.encoded, null, BT * C, pEmbed, embeddingDropoutSeed(dropout!.seed));
    let residual = acts.encoded;
    const attend = this.causalAttention(segmentIds, B, T, dropout);
    for (let l = 0; l < cfg.layers; l++) {
      this.blockForward(l, acts.layers[l], residual, B, T, at, attend, dropout);
      residual = acts.layers[l].residual3;
    }
    this.normForward(acts.lnf, acts.lnfMean, acts.lnfRstd, residual, p.get(globalParamName(cfg, 'normw')), p.tensors.get(globalParamName(cfg, 'normb')) ?? null, BT);
    this.headForward(acts.logits, acts.lnf, BT);

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
    this.lastBatch = { B, T, tokens, targets, positions, segmentIds, dropout };
    return { loss: count > 0 ? lossSum / count : NaN, lossSum, count, losses, predictions: predictions ?? undefined };
  }

  /** Host copy of logits rows [row, row + n) of the last forward (each row has V floats). */
  logitsRows(row: number, n = 1): Float32Array {
    if (!this.acts) throw new Error('logitsRows: no forward pass has run');
    const V = this.config.vocabSize;
    return this.acts.logits.slice(row * V, [n, V]).read();
  }

  /**
   * Backpropagates the last forward's loss and ACCUMULATES into model.grads. The gradient is that
   * of sum(per-position losses) / lossDenominator: pass the forward's count for this batch's mean
   * loss, or the token count of a whole accumulated batch so micro-batches sum to its mean.
   * positionWeights (B*T), when given, weigh each position's loss: the gradient is that of
   * sum(w[i] * loss[i]) / lossDenominator (a preference loss passes dL/d(loss[i]) per position).
   * onFinal, given for the last backward before the gradients are used (the last micro-batch of a step),
   * hears each region of model.grads as soon as it is final (gradientRegions(): the head and final norm,
   * then block L-1 down to 0, then the embeddings); the regions cover the arena exactly once.
   */
  backward(lossDenominator: number, positionWeights: Float32Array | null = null, onFinal: GradientRegionListener | null = null): void {
    const batch = this.lastBatch;
    if (!batch) throw new Error('backward: call forward() with targets first');
    if (!this.grads) throw new Error('backward: gradients are not allocated; call zeroGrad() before forward()');
    const acts = this.acts!;
    if (!acts.withBackward) throw new Error('backward: activations were allocated without backward buffers; call zeroGrad() before forward()');
    if (!(lossDenominator > 0)) throw new RangeError(`backward: lossDenominator must be > 0, received ${lossDenominator}`);
    const { B, T, tokens, targets, positions, segmentIds, dropout } = batch;
    const dropoutSeed = dropout?.seed ?? null, pResidual = dropout?.rates.residual ?? 0;
    const cfg = this.config, C = cfg.width, V = cfg.vocabSize, BT = B * T;
    if (positionWeights && positionWeights.length !== BT) throw new RangeError(`backward: expected ${BT} position weights (B=${B} x T=${T}) but received ${positionWeights.length}`);
    const QKV = qkvWidth(cfg), AW = attentionWidth(cfg), FI = ffnInputWidth(cfg), H = cfg.ffnWidth;
    const NH = cfg.heads, NKV = cfg.kvHeads, HS = cfg.headDim;
    const p = this.params, g = this.grads, k = kernels;
    const gp = (role: GlobalRole) => g.tensors.get(globalParamName(cfg, role)) ?? null;
    const regions = onFinal ? this.gradientRegions() : null;
    const publish = (ranges: readonly ArenaRange[]) => {
      for (const r of ranges) onFinal!(r.offset, r.numel);
    };

    // dlogits overwrite the logits in place: the (B*T, V) buffer is the largest in the model. The
    // weights go through the per-position losses' buffer, which forward() has copied out already.
    let weights: Tensor | null = null;
    if (positionWeights) {
      weights = acts.losses.slice(0, [BT]);
      weights.write(positionWeights);
    }
    k.crossentropy_backward(acts.logits, acts.logits, acts.ceLse, targets, weights, 1 / lossDenominator, BT, V, IGNORE_INDEX);
    const dlnf = acts.dC;
    k.fill(dlnf, 0, BT * C);
    this.headBackward(dlnf, acts.logits, acts.lnf, BT);
    const lastResidual = cfg.layers > 0 ? acts.layers[cfg.layers - 1].residual3 : acts.encoded;
    const dres = acts.dresidual;
    k.fill(dres, 0, BT * C);
    this.normBackward(dres, gp('normw'), gp('normb'), dlnf, lastResidual, p.get(globalParamName(cfg, 'normw')), acts.lnfMean, acts.lnfRstd, BT);
    if (regions) publish(regions.top);

    const at = { positions, offset: 0 }, attend = this.causalAttention(segmentIds, B, T, dropout);
    // d(branch) of a residual add: dres itself, or (resid_pdrop) dres through the forward's mask, in dC
    // (free until the branch's linear backward has read it).
    const branchGrad = (l: number, site: LayerDropoutSite): Tensor => {
      if (pResidual === 0) return acts.dresidual;
      k.fill(acts.dC, 0, BT * C);
      k.dropout_backward(acts.dC, acts.dresidual, BT * C, pResidual, layerDropoutSeed(dropout!.seed, l, site));
      return acts.dC;
    };
    for (let l = cfg.layers - 1; l >= 0; l--) {
      const w = layerViews(p, cfg, l), dw = layerViews(g, cfg, l), a = acts.layers[l];
      const linearBackward = (role: LinearRole, dinp: Tensor, dout: Tensor, inp: Tensor) => this.linearBackward(l, role, w, dw, a, dinp, dout, inp, BT, dropoutSeed);
      const layerInput = l === 0 ? acts.encoded : acts.layers[l - 1].residual3;
      // Checkpointed: the shared buffers hold the block above's values (the last block's are still
      // the forward's); recompute this block's from its kept input (same kernels: bitwise the same).
      if (acts.checkpointed && l < cfg.layers - 1) this.blockForward(l, a, layerInput, B, T, at, attend, dropout);
      // MLP branch: dres holds d(residual3); without dropout its copy into the branch is implicit (same buffer).
      const dfchAct = acts.dH, dfch = acts.dFI;
      k.fill(dfchAct, 0, BT * H);
      linearBackward('projw', dfchAct, branchGrad(l, 'mlpOutput'), a.fchAct);
      k.fill(dfch, 0, BT * FI);
      if (cfg.mlp === 'swiglu') k.swiglu_backward(dfch, dfchAct, a.fch, BT, H);
      else k.gelu_backward(dfch, a.fch, dfchAct, BT * H);
      const dln2 = acts.dC;
      k.fill(dln2, 0, BT * C);
      linearBackward('fcw', dln2, dfch, a.ln2);
      // dres becomes d(residual2) = d(residual3) + the norm's input gradient.
      this.normBackward(dres, dw.norm2w, dw.norm2b, dln2, a.residual2, w.norm2w!, a.ln2Mean, a.ln2Rstd, BT);
      // Attention branch.
      const datty = acts.dAtt;
      k.fill(datty, 0, BT * AW);
      linearBackward('outw', datty, branchGrad(l, 'attentionOutput'), a.atty);
      k.fill(acts.dqkv, 0, BT * QKV);
      const attnDrop = attentionDropout(dropout, l);
      k.attention_backward(acts.dqkv, datty, a.qkv, a.atty, a.attLse!, segmentIds, B, T, NH, NKV, HS, attnDrop.p, attnDrop.seed);
      if (cfg.positions === 'rope') {
        const rope = this.ropeTables();
        k.rope_backward(acts.dqkv, rope.cos, rope.sin, positions, B, T, NH, NKV, HS, rope.positions, 0);
      }
      let dqkvProjected = acts.dqkv;
      if (cfg.qkNorm) {
        k.fill(acts.dqkvRaw, 0, BT * QKV);
        k.qknorm_backward(acts.dqkvRaw, dw.qnorm, dw.knorm, acts.dqkv, a.qkvRaw!, w.qnorm!, w.knorm!, a.qkRstd!, BT, NH, NKV, HS);
        dqkvProjected = acts.dqkvRaw;
      }
      const dln1 = acts.dC;
      k.fill(dln1, 0, BT * C);
      linearBackward('qkvw', dln1, dqkvProjected, a.ln1);
      // dres becomes d(layer input).
      this.normBackward(dres, dw.norm1w, dw.norm1b, dln1, layerInput, w.norm1w!, a.ln1Mean, a.ln1Rstd, BT);
      if (regions) publish(regions.layers[l]);
    }
    const learned = cfg.positions === 'learned';
    const dwte = this.moduleGrad('embed'), dwpe = learned && !this.trainableAdapter ? gp('positions') : null;
    let dEncoded = dres;
    const pEmbed = dropout?.rates.embedding ?? 0;
    if ((dwte || dwpe) && pEmbed > 0) {
      dEncoded = acts.dC;
      k.fill(dEncoded, 0, BT * C);
      k.dropout_backward(dEncoded, dres, BT * C, pEmbed, embeddingDropoutSeed(dropout!.seed));
    }
    if (dwte || dwpe) k.encoder_backward(dwte, dwpe, dEncoded, tokens, learned ? positions : null, B, T, C, 0);
    if (regions) publish(regions.bottom);
    // The logits were overwritten: a second backward of the same forward would be wrong.
    this.lastBatch = null;
  }

  /**
   * The first parameter tensor holding a NaN or an infinity, or null when all are finite. One
   * reduction over the arena (a sum of squares in float64 is finite exactly when every value is);
   * the tensors are searched only when it is not.
   */
  nonFiniteParameter(): string | null {
    for (const arena of [this.params, ...this.adapters.map((a) => a.arena)]) {
      if (Number.isFinite(kernels.sum_squares(arena.all(), arena.numel))) continue;
      for (const [name, t] of arena.tensors) if (!Number.isFinite(kernels.sum_squares(t, t.numel))) return name;
    }
    return null;
  }

  /** The regions of model.grads in the order backward() finishes them (GradientRegions); cached per gradient arena. */
  gradientRegions(): GradientRegions {
    const g = this.grads;
    if (!g) throw new Error('gradientRegions: gradients are not allocated; call zeroGrad() first');
    if (this.regionPlan?.grads === g) return this.regionPlan.regions;
    const cfg = this.config;
    // Which part each gradient tensor belongs to, by the same accessors backward() writes through.
    const owner = new Map<Tensor, number | 'top'>();
    const head = this.moduleGrad('head');
    if (head && head !== this.moduleGrad('embed')) owner.set(head, 'top');
    for (const role of ['normw', 'normb'] as const) {
      const t = g.tensors.get(globalParamName(cfg, role));
      if (t) owner.set(t, 'top');
    }
    for (let l = 0; l < cfg.layers; l++) {
      for (const t of Object.values(layerViews(g, cfg, l))) if (t) owner.set(t, l);
    }
    for (const m of this.trainableAdapter?.modules ?? []) {
      owner.set(g.get(m.A.name), m.layer);
      owner.set(g.get(m.B.name), m.layer);
    }
    const regions: GradientRegions = { top: [], layers: Array.from({ length: cfg.layers }, () => []), bottom: [] };
    const tensors = [...g.tensors.values()].sort((a, b) => a.offset - b.offset);
    tensors.forEach((t, i) => {
      const end = i + 1 < tensors.length ? tensors[i + 1].offset : g.numel;
      const o = owner.get(t);
      const list = o === undefined ? regions.bottom : o === 'top' ? regions.top : regions.layers[o];
      const last = list[list.length - 1];
      if (last && last.offset + last.numel === t.offset) last.numel = end - last.offset;
      else list.push({ offset: t.offset, numel: end - t.offset });
    });
    if (tensors.length > 0 && tensors[0].offset > 0) regions.bottom.unshift({ offset: 0, numel: tensors[0].offset });
    this.regionPlan = { grads: g, regions };
    return regions;
  }

  /** Global L2 norm of the gradients (padding between tensors is zero, so one reduction). */
  gradNorm(): number {
    if (!this.grads) throw new Error('gradNorm: no gradients');
    return Math.sqrt(kernels.sum_squares(this.grads.all(), this.grads.numel));
  }
}
