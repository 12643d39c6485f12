/**
 * gptune models and LoRA adapters as llama.cpp's GGUF files (../shared/specs/lora-gguf-ddp.md §1, §2, §5;
 * convert_hf_to_gguf.py and convert_lora_to_gguf.py are the converters these files match).
 *
 * Tensors keep gptune's (out, in) layout, which is ggml's ne = {in, out}: GPT-2's Conv1D weights are
 * already transposed on load. The Llama family's packed q/k/v and gate/up are split into llama.cpp's
 * attn_q/attn_k/attn_v and ffn_gate/ffn_up. llama.cpp's "llama" graph (Llama, Mistral) rotates
 * interleaved pairs (Meta's layout) where Hugging Face rotates halves, so the rows of attn_q and attn_k
 * (weights, biases, LoRA B) are permuted within each head as LlamaModel.permute does; Qwen2/Qwen3 use
 * the rotate-half (NEOX) graph and are written as they are.
 * Norms, biases, position embeddings and rope factors are F32; 2-D weights take the chosen float type
 * (f32, f16, bf16), or for q8_0, q4_0 and q4_k_m the type llama.cpp's quantizer gives each of them
 * (tensor_types.ts), quantized by the native kernels one tensor at a time as the file is written.
 */
import * as path from 'path';
import { ExportError } from '../errors';
import type { AdapterFolder } from '../lora/files';
import { adapterSpecs, loraA, loraB } from '../lora/adapter';
import { LinearModule, loraScaling } from '../lora/modules';
import { Decoder, globalParamName, GlobalRole, LayerRole, layerParamName } from '../model/decoder';
import type { DecoderConfig } from '../model/decoder_config';
import { ropeInverseFrequencies } from '../model/rope';
import type { Tokenizer } from '../tokenizer';
import { GGMLTypeName, GGUFTensor, GGUFValue } from './format';
import { encodedBytes, encodeTensor } from './quant';
import { chooseQuantizedTypes, QUANTIZED_DTYPES, QuantizedDtype } from './tensor_types';
import { tokenizerKV } from './vocab';
import { VERSION } from '../version';

/** The KV key naming the gptune version that wrote a GGUF file. */
export const WRITER_KEY = 'gptune.version';

export const FLOAT_DTYPES = ['f32', 'f16', 'bf16'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];
export const EXPORT_DTYPES = [...FLOAT_DTYPES, ...QUANTIZED_DTYPES] as const;
export type ExportDtype = FloatDtype | QuantizedDtype;

const FLOAT_TYPE: Record<FloatDtype, GGMLTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
/** general.file_type (llama.cpp's llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_BF16, MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_K_M. */
const FILE_TYPE: Record<ExportDtype, number> = { f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_0: 2, q4_k_m: 15 };

function isQuantized(dtype: ExportDtype): dtype is QuantizedDtype {
  return (QUANTIZED_DTYPES as readonly string[]).includes(dtype);
}

/** llama.cpp's architecture name for a model_type (Mistral runs on llama.cpp's llama graph). */
export function ggufArchitecture(cfg: DecoderConfig): 'gpt2' | 'llama' | 'qwen2' | 'qwen3' {
  return cfg.modelType === 'mistral' ? 'llama' : cfg.modelType;
}

/** Whether llama.cpp's graph for this arch expects Meta's interleaved q/k rows (see the file comment). */
function permutesQK(cfg: DecoderConfig): boolean {
  return ggufArchitecture(cfg) === 'llama';
}

/**
 * Rows of (heads * HS, cols) reordered from rotate-half to interleaved pairs within each head:
 * new row h*HS + 2i + j = old row h*HS + j*HS/2 + i (convert_hf_to_gguf.py LlamaModel.permute);
 * `inverse` puts interleaved rows back in rotate-half order (loading a GGUF file).
 */
export function interleaveRopeRows(values: Float32Array, heads: number, headDim: number, cols: number, inverse = false): Float32Array {
  const out = new Float32Array(values.length), half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const rotateHalf = (h * headDim + j * half + i) * cols, interleaved = (h * headDim + 2 * i + j) * cols;
        const [from, to] = inverse ? [interleaved, rotateHalf] : [rotateHalf, interleaved];
        out.set(values.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

/** A tensor to write, before its type is chosen: the values row-major with numpy shape `shape`. */
interface Planned {
  name: string;
  shape: number[];
  values: () => Float32Array;
  /** Weights take the file's type; norms, biases and the like stay F32. */
  quantizable: boolean;
}

/** What was written for one tensor, for the summary. */
export interface ExportedTensor {
  name: string;
  type: GGMLTypeName;
  bytes: number;
  /** Why a weight is not in the type llama.cpp's quantizer wanted (its rows do not split into that type's blocks). */
  fallback?: string;
}

export interface GGUFPlan {
  kv: Map<string, GGUFValue>;
  tensors: GGUFTensor[];
  summary: ExportedTensor[];
  /** What llama.cpp will do differently with the file (texts its tokenizer splits otherwise), one line each. */
  notes: string[];
}

function chooseTypes(planned: readonly Planned[], dtype: ExportDtype, cfg: DecoderConfig): { tensors: GGUFTensor[]; summary: ExportedTensor[] } {
  const infos = planned.map((p) => ({ name: p.name, ne: [...p.shape].reverse() }));
  const choices = isQuantized(dtype)
    ? chooseQuantizedTypes(infos, dtype, { architecture: ggufArchitecture(cfg), layers: cfg.layers, heads: cfg.heads, kvHeads: cfg.kvHeads })
    : planned.map((p) => ({ type: p.quantizable ? FLOAT_TYPE[dtype] : ('F32' as GGMLTypeName), fallback: undefined }));
  const tensors: GGUFTensor[] = [], summary: ExportedTensor[] = [];
  planned.forEach((p, i) => {
    const { type, fallback } = choices[i];
    const ne = infos[i].ne;
    const nbytes = encodedBytes(type, ne.reduce((a, b) => a * b, 1));
    tensors.push({ name: p.name, ne, type, nbytes, data: () => encodeTensor(p.values(), type, ne[0]) });
    summary.push({ name: p.name, type, bytes: nbytes, ...(fallback ? { fallback } : {}) });
  });
  return { tensors, summary };
}

/** The architecture's hyperparameters (llama-model.cpp load_hparams reads these). */
function hyperparameterKV(cfg: DecoderConfig): Map<string, GGUFValue> {
  const a = ggufArchitecture(cfg);
  const u32 = (value: number): GGUFValue => ({ type: 'u32', value });
  const f32 = (value: number): GGUFValue => ({ type: 'f32', value });
  const kv = new Map<string, GGUFValue>([
    [`${a}.context_length`, u32(cfg.maxPositions)],
    [`${a}.embedding_length`, u32(cfg.width)],
    [`${a}.block_count`, u32(cfg.layers)],
    [`${a}.feed_forward_length`, u32(cfg.ffnWidth)],
    [`${a}.attention.head_count`, u32(cfg.heads)],
    [`${a}.attention.head_count_kv`, u32(cfg.kvHeads)],
  ]);
  if (cfg.norm === 'layernorm') {
    kv.set(`${a}.attention.layer_norm_epsilon`, f32(cfg.normEps));
    return kv;
  }
  kv.set(`${a}.attention.layer_norm_rms_epsilon`, f32(cfg.normEps));
  kv.set(`${a}.attention.key_length`, u32(cfg.headDim));
  kv.set(`${a}.attention.value_length`, u32(cfg.headDim));
  kv.set(`${a}.rope.dimension_count`, u32(cfg.headDim));
  kv.set(`${a}.rope.freq_base`, f32(cfg.ropeTheta));
  kv.set(`${a}.vocab_size`, u32(cfg.vocabSize));
  const s = cfg.ropeScaling;
  if (s?.rope_type === 'linear') {
    kv.set(`${a}.rope.scaling.type`, { type: 'string', value: 'linear' });
    kv.set(`${a}.rope.scaling.factor`, f32(s.factor));
  } else if (s?.rope_type === 'llama3' && a !== 'llama') {
    throw new ExportError(`rope_scaling llama3 on model_type ${cfg.modelType}: llama.cpp applies llama3 rope factors only to the llama architecture`);
  }
  return kv;
}

/**
 * llama3 rope scaling as llama.cpp takes it: rope_freqs.weight (HS/2), each frequency's divisor
 * (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors), i.e. unscaled / scaled inverse frequency.
 */
function ropeFactors(cfg: DecoderConfig): Float32Array {
  const scaled = ropeInverseFrequencies(cfg), unscaled = ropeInverseFrequencies({ ...cfg, ropeScaling: null });
  return Float32Array.from(unscaled, (f, i) => f / scaled[i]);
}

/** The base-model GGUF name of a linear module (without ".weight"), e.g. "blk.3.attn_k". */
export function moduleTensorName(cfg: DecoderConfig, m: Pick<LinearModule, 'layer' | 'role' | 'offset'>): string {
  const q = cfg.heads * cfg.headDim;
  let base: string;
  if (cfg.modelType === 'gpt2') base = { qkvw: 'attn_qkv', outw: 'attn_output', fcw: 'ffn_up', projw: 'ffn_down' }[m.role];
  else if (m.role === 'qkvw') base = m.offset === 0 ? 'attn_q' : m.offset === q ? 'attn_k' : 'attn_v';
  else if (m.role === 'fcw') base = m.offset === 0 ? 'ffn_gate' : 'ffn_up';
  else base = m.role === 'outw' ? 'attn_output' : 'ffn_down';
  return `blk.${m.layer}.${base}`;
}

/** The model's tensors under llama.cpp's names, in llama.cpp's layouts. */
function modelTensors(model: Decoder): Planned[] {
  const cfg = model.config;
  const planned: Planned[] = [];
  const read = (name: string) => () => model.readParameter(name);
  const global = (role: GlobalRole, name: string, quantizable: boolean) => {
    const param = globalParamName(cfg, role);
    planned.push({ name, shape: [...model.params.get(param).shape], values: read(param), quantizable });
  };
  global('embed', 'token_embd.weight', true);
  if (cfg.positions === 'learned') global('positions', 'position_embd.weight', false);
  if (cfg.positions === 'rope' && cfg.ropeScaling?.rope_type === 'llama3') {
    planned.push({ name: 'rope_freqs.weight', shape: [cfg.headDim / 2], values: () => ropeFactors(cfg), quantizable: false });
  }
  global('normw', 'output_norm.weight', false);
  if (cfg.norm === 'layernorm') global('normb', 'output_norm.bias', false);
  // llama.cpp's GPT-2 graph requires output.weight (a tied head is written twice); the others fall back to token_embd.
  if (!cfg.tiedHead) global('head', 'output.weight', true);
  else if (cfg.modelType === 'gpt2') global('embed', 'output.weight', true);

  const C = cfg.width, q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim, H = cfg.ffnWidth;
  for (let l = 0; l < cfg.layers; l++) {
    const blk = `blk.${l}.`;
    const param = (role: LayerRole) => layerParamName(cfg, l, role);
    const has = (role: LayerRole) => model.params.tensors.has(param(role));
    const whole = (role: LayerRole, name: string, quantizable: boolean) => {
      if (has(role)) planned.push({ name: blk + name, shape: [...model.params.get(param(role)).shape], values: read(param(role)), quantizable });
    };
    /** Row blocks [rows0, rows0+rows) of a packed weight (cols wide) or bias (cols 1), optionally q/k-permuted. */
    const rows = (role: LayerRole, name: string, from: number, count: number, cols: number, heads: number | null) => {
      if (!has(role)) return;
      const values = () => {
        const block = model.readParameter(param(role)).slice(from * cols, (from + count) * cols);
        return heads !== null && permutesQK(cfg) ? interleaveRopeRows(block, heads, cfg.headDim, cols) : block;
      };
      planned.push({ name: blk + name, shape: cols === 1 ? [count] : [count, cols], values, quantizable: cols !== 1 });
    };
    whole('norm1w', 'attn_norm.weight', false);
    whole('norm1b', 'attn_norm.bias', false);
    if (cfg.modelType === 'gpt2') {
      whole('qkvw', 'attn_qkv.weight', true);
      whole('qkvb', 'attn_qkv.bias', false);
      whole('fcw', 'ffn_up.weight', true);
      whole('fcb', 'ffn_up.bias', false);
    } else {
      for (const [role, cols] of [['qkvw', C], ['qkvb', 1]] as const) {
        const kind = cols === 1 ? 'bias' : 'weight';
        rows(role, `attn_q.${kind}`, 0, q, cols, cfg.heads);
        rows(role, `attn_k.${kind}`, q, kv, cols, cfg.kvHeads);
        rows(role, `attn_v.${kind}`, q + kv, kv, cols, null);
      }
      whole('qnorm', 'attn_q_norm.weight', false);
      whole('knorm', 'attn_k_norm.weight', false);
      for (const [role, cols] of [['fcw', C], ['fcb', 1]] as const) {
        const kind = cols === 1 ? 'bias' : 'weight';
        rows(role, `ffn_gate.${kind}`, 0, H, cols, null);
        rows(role, `ffn_up.${kind}`, H, H, cols, null);
      }
    }
    whole('outw', 'attn_output.weight', true);
    whole('outb', 'attn_output.bias', false);
    whole('norm2w', 'ffn_norm.weight', false);
    whole('norm2b', 'ffn_norm.bias', false);
    whole('projw', 'ffn_down.weight', true);
    whole('projb', 'ffn_down.bias', false);
  }
  return planned;
}

function generalKV(architecture: string, type: 'model' | 'adapter', name: string): Map<string, GGUFValue> {
  return new Map<string, GGUFValue>([
    ['general.architecture', { type: 'string', value: architecture }],
    ['general.type', { type: 'string', value: type }],
    ['general.name', { type: 'string', value: name }],
    // How `export` recognises a file it wrote (and may replace without --overwrite).
    [WRITER_KEY, { type: 'string', value: VERSION }],
  ]);
}

/**
 * The GGUF file of `model` (adapters already merged) stored as `dtype`, with the tokenizer loaded
 * from `tokenizerDir` (null: GPT-2's encoding). `name` becomes general.name.
 */
export function planModelGGUF(model: Decoder, tokenizer: Tokenizer, tokenizerDir: string | null, dtype: ExportDtype, name: string): GGUFPlan {
  if (model.adapters.length > 0) throw new ExportError('GGUF export: merge the adapters into the model first (mergeAdapters)');
  const cfg = model.config;
  const kv = generalKV(ggufArchitecture(cfg), 'model', name);
  kv.set('general.file_type', { type: 'u32', value: FILE_TYPE[dtype] });
  // GGML_QNT_VERSION, which llama-quantize writes into every quantized file.
  if (isQuantized(dtype)) kv.set('general.quantization_version', { type: 'u32', value: 2 });
  for (const [k, v] of hyperparameterKV(cfg)) kv.set(k, v);
  const vocab = tokenizerKV(tokenizer, tokenizerDir, cfg.vocabSize);
  for (const [k, v] of vocab.kv) kv.set(k, v);
  return { kv, ...chooseTypes(modelTensors(model), dtype, cfg), notes: vocab.notes };
}

/**
 * The LoRA adapter GGUF llama.cpp applies with --lora (llama-adapter.cpp): general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha, and per module `<base>.weight.lora_a` (r, in) and `.lora_b`
 * (out, r), PEFT's A and B as they are (ggml ne {in, r} and {r, out}), B's rows permuted like the base's
 * for attn_q/attn_k of the llama graph. llama.cpp scales by alpha / r, so rsLoRA's alpha / sqrt(r) is
 * written as alpha * sqrt(r).
 */
export function planAdapterGGUF(cfg: DecoderConfig, folder: AdapterFolder, dtype: FloatDtype): GGUFPlan {
  const s = folder.settings;
  if (s.modulesToSave.length > 0) {
    throw new ExportError(`${folder.dir}: the adapter trains ${s.modulesToSave.join(', ')} in full (modules_to_save); llama.cpp's LoRA GGUF holds only lora_a/lora_b pairs: merge it into the model with --model and --adapter instead`);
  }
  const kv = generalKV(ggufArchitecture(cfg), 'adapter', path.basename(path.resolve(folder.dir)));
  kv.set('adapter.type', { type: 'string', value: 'lora' });
  // llama.cpp computes alpha / r; this alpha makes that equal gptune's (and PEFT's) scaling.
  kv.set('adapter.lora.alpha', { type: 'f32', value: loraScaling(s) * s.r });
  const q = cfg.heads * cfg.headDim;
  const planned: Planned[] = [];
  for (const m of adapterSpecs(cfg, s).modules) {
    const base = moduleTensorName(cfg, m);
    const A = folder.tensors.get(loraA(m.key))!, B = folder.tensors.get(loraB(m.key))!;
    // B's rows are the base weight's rows: attn_q / attn_k of the llama graph are permuted (attn_v is not).
    const heads = m.role === 'qkvw' && permutesQK(cfg) ? (m.offset === 0 ? cfg.heads : m.offset === q ? cfg.kvHeads : null) : null;
    planned.push({ name: `${base}.weight.lora_a`, shape: [s.r, m.inFeatures], values: () => A, quantizable: true });
    planned.push({ name: `${base}.weight.lora_b`, shape: [m.outFeatures, s.r], values: () => (heads === null ? B : interleaveRopeRows(B, heads, cfg.headDim, s.r)), quantizable: true });
  }
  return { kv, ...chooseTypes(planned, dtype, cfg), notes: [] };
}
