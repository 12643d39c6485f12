/**
 * The per-tensor type choice of quantized exports, on shapes the llama.cpp agreement test
 * (llama_quantize.test.ts) does not build: GPT-2 124M and SmolLM2-135M, whose layer counts make
 * use_more_bits pick layers by every clause. Expected values follow llama-quant.cpp's rules worked by
 * hand: use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2, integer division.
 */
import { ExportError } from '../../lib/errors';
import { chooseQuantizedTypes, TypedTensor, useMoreBits } from '../../lib/gguf/tensor_types';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

test('use_more_bits: GPT-2 124M (12 layers) and SmolLM2-135M (30 layers)', () => {
  expect(range(12).filter((i) => useMoreBits(i, 12))).toEqual([0, 3, 6, 9, 10, 11]);
  expect(range(30).filter((i) => useMoreBits(i, 30))).toEqual([0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
});

function gpt2_124M(): TypedTensor[] {
  const t: TypedTensor[] = [
    { name: 'token_embd.weight', ne: [768, 50257] }, { name: 'position_embd.weight', ne: [768, 1024] },
    { name: 'output_norm.weight', ne: [768] }, { name: 'output_norm.bias', ne: [768] }, { name: 'output.weight', ne: [768, 50257] },
  ];
  for (const l of range(12)) {
    t.push({ name: `blk.${l}.attn_norm.weight`, ne: [768] }, { name: `blk.${l}.attn_qkv.weight`, ne: [768, 2304] }, { name: `blk.${l}.attn_qkv.bias`, ne: [2304] },
      { name: `blk.${l}.attn_output.weight`, ne: [768, 768] }, { name: `blk.${l}.ffn_up.weight`, ne: [768, 3072] }, { name: `blk.${l}.ffn_down.weight`, ne: [3072, 768] });
  }
  return t;
}

test('GPT-2 124M as Q4_K_M: head Q6_K, embedding Q4_K, attn_qkv and ffn_down Q6_K on the use_more_bits layers, the rest Q4_K; 1-D and position_embd F32', () => {
  const tensors = gpt2_124M();
  const types = new Map(chooseQuantizedTypes(tensors, 'q4_k_m', { architecture: 'gpt2', layers: 12, heads: 12, kvHeads: 12 }).map((c, i) => [tensors[i].name, c]));
  expect(types.get('output.weight')).toEqual({ type: 'Q6_K' });
  expect(types.get('token_embd.weight')).toEqual({ type: 'Q4_K' });
  expect(types.get('position_embd.weight')).toEqual({ type: 'F32' });
  expect(types.get('blk.0.attn_qkv.bias')).toEqual({ type: 'F32' });
  expect(types.get('output_norm.weight')).toEqual({ type: 'F32' });
  const more = [0, 3, 6, 9, 10, 11];
  for (const l of range(12)) {
    const wanted = more.includes(l) ? 'Q6_K' : 'Q4_K';
    expect([l, types.get(`blk.${l}.attn_qkv.weight`)!.type, types.get(`blk.${l}.ffn_down.weight`)!.type]).toEqual([l, wanted, wanted]);
    expect(types.get(`blk.${l}.attn_output.weight`)!.type).toBe('Q4_K');
    expect(types.get(`blk.${l}.ffn_up.weight`)!.type).toBe('Q4_K');
  }
  // Q4_0 and Q8_0 are uniform but for the head (Q6_K; Q8_0 keeps Q8_0).
  const q4 = chooseQuantizedTypes(tensors, 'q4_0', { architecture: 'gpt2', layers: 12, heads: 12, kvHeads: 12 });
  expect(new Set(q4.map((c, i) => `${tensors[i].name === 'output.weight' ? 'head' : 'other'} ${c.type}`))).toEqual(new Set(['head Q6_K', 'other Q4_0', 'other F32']));
  const q8 = chooseQuantizedTypes(tensors, 'q8_0', { architecture: 'gpt2', layers: 12, heads: 12, kvHeads: 12 });
  expect(new Set(q8.map((c) => c.type))).toEqual(new Set(['Q8_0', 'F32']));
});

test('a tied head: token_embd is the head (Q6_K)', () => {
  const tied: TypedTensor[] = [{ name: 'token_embd.weight', ne: [576, 49152] }, { name: 'blk.0.attn_v.weight', ne: [576, 192] }];
  // 576 = 2.25 * 256: the tied head and attn_v of layer 0 (use_more_bits) want Q6_K and fall back to Q8_0.
  expect(chooseQuantizedTypes(tied, 'q4_k_m', { architecture: 'llama', layers: 30, heads: 9, kvHeads: 3 })[0]).toEqual({ type: 'Q8_0', fallback: 'token_embd.weight: Q6_K needs a row length multiple of 256, wrote Q8_0' });
  expect(chooseQuantizedTypes([{ name: 'token_embd.weight', ne: [512, 1000] }], 'q4_k_m', { architecture: 'qwen2', layers: 2, heads: 8, kvHeads: 8 })[0]).toEqual({ type: 'Q6_K' });
  expect(chooseQuantizedTypes(tied, 'q4_k_m', { architecture: 'llama', layers: 30, heads: 9, kvHeads: 3 })[1]).toEqual({ type: 'Q8_0', fallback: 'blk.0.attn_v.weight: Q6_K needs a row length multiple of 256, wrote Q8_0' });
});

describe("llama.cpp's 70B rule (LLM_TYPE_70B: a Llama of 80 layers with GQA, a Qwen2 of 80 layers): attn_v in Q5_K for Q4_K_M", () => {
  // Llama-2-70B's shapes: hidden 8192, 64 heads, 8 KV heads (attn_v 8192 -> 1024).
  const layer = (l: number): TypedTensor[] => [
    { name: `blk.${l}.attn_q.weight`, ne: [8192, 8192] }, { name: `blk.${l}.attn_v.weight`, ne: [8192, 1024] },
    { name: `blk.${l}.ffn_down.weight`, ne: [28672, 8192] },
  ];
  const types = (tensors: TypedTensor[], model: { architecture: string; layers: number; heads: number; kvHeads: number }, dtype: 'q4_k_m' | 'q4_0' = 'q4_k_m') =>
    new Map(chooseQuantizedTypes(tensors, dtype, model).map((c, i) => [tensors[i].name, c.type]));
  const llama70B = { architecture: 'llama', layers: 80, heads: 64, kvHeads: 8 };

  test('attn_v is Q5_K except on the use_more_bits layers (Q6_K); the other tensors keep Q4_K_M\'s types', () => {
    // use_more_bits(i, 80): i < 10, i >= 70, or (i - 10) % 3 == 2: layers 11 and 13 are not picked, 12 and 75 are.
    const t = types([11, 12, 13, 75].flatMap(layer), llama70B);
    expect([11, 12, 13, 75].map((l) => t.get(`blk.${l}.attn_v.weight`))).toEqual(['Q5_K', 'Q6_K', 'Q5_K', 'Q6_K']);
    expect([11, 12, 13, 75].map((l) => t.get(`blk.${l}.ffn_down.weight`))).toEqual(['Q4_K', 'Q6_K', 'Q4_K', 'Q6_K']);
    expect([11, 12, 13, 75].map((l) => t.get(`blk.${l}.attn_q.weight`))).toEqual(['Q4_K', 'Q4_K', 'Q4_K', 'Q4_K']);
  });

  test('Qwen2 of 80 layers counts as 70B with or without GQA; a Llama of 80 layers without GQA (65B) and of 79 layers do not', () => {
    expect(types(layer(11), { architecture: 'qwen2', layers: 80, heads: 64, kvHeads: 64 }).get('blk.11.attn_v.weight')).toBe('Q5_K');
    expect(types(layer(11), { architecture: 'llama', layers: 80, heads: 64, kvHeads: 64 }).get('blk.11.attn_v.weight')).toBe('Q4_K');
    // Of 79 layers, 12 is not a use_more_bits layer (79/8 = 9; (12 - 9) % 3 = 0).
    expect(types(layer(12), { ...llama70B, layers: 79 }).get('blk.12.attn_v.weight')).toBe('Q4_K');
    expect(types(layer(11), { architecture: 'qwen3', layers: 80, heads: 64, kvHeads: 8 }).get('blk.11.attn_v.weight')).toBe('Q4_K');
  });

  test('only Q4_K_M: Q4_0 keeps Q4_0', () => {
    expect(types(layer(11), llama70B, 'q4_0').get('blk.11.attn_v.weight')).toBe('Q4_0');
  });

  test("a row length that is not a multiple of 256: llama.cpp's Q5_1 fallback is refused naming the tensor, F16 where 32 does not divide it either", () => {
    const odd: TypedTensor[] = [{ name: 'blk.11.attn_v.weight', ne: [96, 32] }];
    expect(() => chooseQuantizedTypes(odd, 'q4_k_m', llama70B)).toThrow(ExportError);
    expect(() => chooseQuantizedTypes(odd, 'q4_k_m', llama70B)).toThrow(/^blk\.11\.attn_v\.weight: llama\.cpp stores this attn_v as Q5_1 \(Q5_K needs a row length multiple of 256, the row is 96\)/);
    expect(chooseQuantizedTypes([{ name: 'blk.11.attn_v.weight', ne: [48, 32] }], 'q4_k_m', llama70B)[0])
      .toEqual({ type: 'F16', fallback: 'blk.11.attn_v.weight: Q5_K needs a row length multiple of 256, wrote F16' });
  });
});
