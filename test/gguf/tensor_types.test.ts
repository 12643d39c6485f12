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

test('a tied head: token_embd is the head (Q6_K); a 70B-size Llama (80 layers, GQA) is refused for Q4_K_M, naming Q5_K', () => {
  const tied: TypedTensor[] = [{ name: 'token_embd.weight', ne: [576, 49152] }, { name: 'blk.0.attn_v.weight', ne: [576, 192] }];
  // 576 = 2.25 * 256: the tied head and attn_v of layer 0 (use_more_bits) want Q6_K and fall back to Q8_0.
  expect(chooseQuantizedTypes(tied, 'q4_k_m', { architecture: 'llama', layers: 30, heads: 9, kvHeads: 3 })[0]).toEqual({ type: 'Q8_0', fallback: 'token_embd.weight: Q6_K needs a row length multiple of 256, wrote Q8_0' });
  expect(chooseQuantizedTypes([{ name: 'token_embd.weight', ne: [512, 1000] }], 'q4_k_m', { architecture: 'qwen2', layers: 2, heads: 8, kvHeads: 8 })[0]).toEqual({ type: 'Q6_K' });
  expect(chooseQuantizedTypes(tied, 'q4_k_m', { architecture: 'llama', layers: 30, heads: 9, kvHeads: 3 })[1]).toEqual({ type: 'Q8_0', fallback: 'blk.0.attn_v.weight: Q6_K needs a row length multiple of 256, wrote Q8_0' });
  // Layer 11 of 80 is not a use_more_bits layer ((11 - 10) % 3 = 1): llama.cpp would write Q5_K.
  const big: TypedTensor[] = [{ name: 'blk.11.attn_v.weight', ne: [8192, 1024] }];
  expect(() => chooseQuantizedTypes(big, 'q4_k_m', { architecture: 'llama', layers: 80, heads: 64, kvHeads: 8 })).toThrow(ExportError);
  expect(() => chooseQuantizedTypes(big, 'q4_k_m', { architecture: 'llama', layers: 80, heads: 64, kvHeads: 8 })).toThrow(/Q5_K/);
  expect(chooseQuantizedTypes(big, 'q4_0', { architecture: 'llama', layers: 80, heads: 64, kvHeads: 8 })[0]).toEqual({ type: 'Q4_0' });
});
