/**
 * The ggml type of each tensor of a quantized GGUF export, chosen as llama.cpp's quantizer chooses it
 * (src/llama-quant.cpp, llama_tensor_get_type with default parameters and no importance matrix), so
 * that `gptune export --dtype q4_k_m` writes what `llama-quantize model-f32.gguf out.gguf Q4_K_M` writes:
 *
 *   which tensors:  2-D tensors whose name ends in "weight", except *_norm.weight and position_embd
 *                   (tensor_allows_quantization); the rest stay F32.
 *   the head:       output.weight, or token_embd.weight when there is no output.weight (a tied head),
 *                   becomes Q6_K unless the file type is Q8_0 (kept), or Q8_0 when its rows do not split
 *                   into the file type's blocks.
 *   Q4_K_M:         attn_v (GPT-2's attn_qkv: llama.cpp counts it as attn_v) and ffn_down become Q6_K on
 *                   the layers use_more_bits picks (the first and last eighth, and every third between);
 *                   a 70B-type model's other attn_v become Q5_K (llama.cpp's LLM_TYPE_70B: a Llama of 80
 *                   layers with grouped-query attention, or a Qwen2 of 80 layers).
 *   fallbacks:      a row length (ne[0]) that is not a multiple of the type's block takes a type with
 *                   smaller blocks (tensor_type_fallback: Q4_K -> Q5_0, Q6_K -> Q8_0; Q5_K -> Q5_1,
 *                   a type gptune does not write, is refused), and F16 when that does not fit either.
 * The counters llama.cpp keeps (i_attention_wv, i_ffn_down) count tensors in its loader's order, which
 * sorts by layer number first (weight_name_comparer), so they are the layer index here.
 */
import { ExportError } from '../errors';
import type { GGMLTypeName } from './format';
import { blockValues } from './quant';

export const QUANTIZED_DTYPES = ['q8_0', 'q4_0', 'q4_k_m'] as const;
export type QuantizedDtype = (typeof QUANTIZED_DTYPES)[number];

/** The default type of each file type (llama_ftype_get_default_type). */
const DEFAULT_TYPE: Record<QuantizedDtype, GGMLTypeName> = { q8_0: 'Q8_0', q4_0: 'Q4_0', q4_k_m: 'Q4_K' };

/** tensor_type_fallback: the type with 32-value blocks a 256-value block type falls back to. */
const SMALLER_BLOCKS: Partial<Record<GGMLTypeName, GGMLTypeName>> = { Q4_K: 'Q5_0', Q6_K: 'Q8_0' };
/** Q5_K's fallback (tensor_type_fallback), a type gptune does not write: its 32-value blocks. */
const Q5_1_BLOCK = 32;

/** A tensor as the type choice sees it: its GGUF name and ggml dims (ne[0] = row length). */
export interface TypedTensor {
  name: string;
  ne: readonly number[];
}

export interface TypeChoice {
  type: GGMLTypeName;
  /** Why the tensor is not in the type llama.cpp wanted for it: "<tensor>: Q4_K needs a row length multiple of 256, wrote Q5_0". */
  fallback?: string;
}

/** Whether llama.cpp quantizes this tensor at all (tensor_allows_quantization, for the names gptune writes). */
export function allowsQuantization(t: TypedTensor): boolean {
  return t.ne.length >= 2 && t.name.endsWith('weight') && !t.name.includes('_norm.weight') && t.name !== 'position_embd.weight';
}

/** llama.cpp's use_more_bits(i_layer, n_layers), with C's integer division. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/** attn_v, and GPT-2's fused attn_qkv, which llama.cpp counts as attn_v (category_is_attn_v). */
function isAttnV(name: string): boolean {
  return /\.attn_(v|qkv)\.weight$/.test(name);
}

function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  if (!m) throw new Error(`expected a per-layer tensor name blk.N.* but received ${name}`);
  return Number(m[1]);
}

/**
 * The type of every tensor of a model file of `dtype` (same order as `tensors`). `architecture`, the
 * layer count and the head counts decide llama.cpp's 70B rule (attn_v in Q5_K for Q4_K_M).
 */
export function chooseQuantizedTypes(
  tensors: readonly TypedTensor[], dtype: QuantizedDtype,
  model: { architecture: string; layers: number; heads: number; kvHeads: number },
): TypeChoice[] {
  const base = DEFAULT_TYPE[dtype];
  const tied = !tensors.some((t) => t.name === 'output.weight');
  const is70B = model.layers === 80 && (model.architecture === 'qwen2' || (model.architecture === 'llama' && model.heads !== model.kvHeads));
  return tensors.map((t): TypeChoice => {
    if (!allowsQuantization(t)) return { type: 'F32' };
    const rowLength = t.ne[0];
    // The head's Q8_0-when-rows-do-not-split rule gives the same type as Q6_K's fallback below.
    let wanted = base;
    if (t.name === 'output.weight' || (tied && t.name === 'token_embd.weight')) {
      if (base !== 'Q8_0') wanted = 'Q6_K';
    } else if (dtype === 'q4_k_m' && (isAttnV(t.name) || t.name.endsWith('.ffn_down.weight')) && useMoreBits(layerOf(t.name), model.layers)) {
      wanted = 'Q6_K';
    }
    // "In the 70B model we have 8 heads sharing the same attn_v weights" (llama-quant.cpp): more bits for them.
    if (dtype === 'q4_k_m' && isAttnV(t.name) && is70B && wanted === 'Q4_K') wanted = 'Q5_K';
    // tensor_type_fallback: a smaller block type, then F16.
    if (rowLength % blockValues(wanted) === 0) return { type: wanted };
    if (wanted === 'Q5_K' && rowLength % Q5_1_BLOCK === 0) {
      throw new ExportError(`${t.name}: llama.cpp stores this attn_v as Q5_1 (Q5_K needs a row length multiple of 256, the row is ${rowLength}), a type gptune does not write; export f16 and quantize with llama-quantize`);
    }
    const smaller = SMALLER_BLOCKS[wanted];
    const type = smaller !== undefined && rowLength % blockValues(smaller) === 0 ? smaller : 'F16';
    return { type, fallback: `${t.name}: ${wanted} needs a row length multiple of ${blockValues(wanted)}, wrote ${type}` };
  });
}
