/**
 * Llama-family config.json parsing (lib/model/llama_config.ts), the normalized DecoderConfig of both
 * families, "new:" specs, and the RoPE tables. Expected parameter counts are the published sizes of
 * the models (their model cards / transformers' num_parameters()); expected RoPE frequencies are
 * worked out by hand from transformers' definitions (modeling_rope_utils.py).
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  countParameters, decoderConfigFromGPT2, loadModelConfig, parseDecoderSpec, parseModelConfig, presetConfig,
} from '../../lib/model/config';
import { ropeInverseFrequencies, ropeTables } from '../../lib/model/rope';
import { tempDir } from '../helpers';

/** The architecture keys of published config.json files. */
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, attention_dropout: 0.0, bos_token_id: 1,
  eos_token_id: 2, hidden_act: 'silu', hidden_size: 576, initializer_range: 0.041666666666666664, intermediate_size: 1536,
  max_position_embeddings: 8192, mlp_bias: false, num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3,
  pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true,
  torch_dtype: 'bfloat16', use_cache: true, vocab_size: 49152,
};
const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643,
  hidden_act: 'silu', hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768,
  max_window_layers: 24, num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6,
  rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};
const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643,
  eos_token_id: 151645, head_dim: 128, hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072,
  max_position_embeddings: 40960, max_window_layers: 28, num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8,
  rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true,
  torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const LLAMA32_1B = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: 128001, head_dim: 64, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192,
  max_position_embeddings: 131072, mlp_bias: false, num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8,
  pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 128256,
};
const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'], model_type: 'mistral', bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
  hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768, num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096,
  tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 32000,
};

describe('Llama-family config.json', () => {
  test.each([
    ['SmolLM2-135M', SMOLLM2_135M, 134515008],
    ['Qwen2.5-0.5B', QWEN25_05B, 494032768],
    ['Qwen3-0.6B', QWEN3_06B, 596049920],
    ['Llama-3.2-1B', LLAMA32_1B, 1235814400],
    ['Mistral-7B-v0.1', MISTRAL_7B, 7241732096],
  ])('%s parses to its published parameter count', (_, json, params) => {
    expect(countParameters(parseModelConfig(json, 'config.json'))).toBe(params);
  });

  test('each family gets its blocks: biases, q/k norms, heads, window, tying', () => {
    const smol = parseModelConfig(SMOLLM2_135M, 'c');
    expect(smol).toMatchObject({
      modelType: 'llama', norm: 'rmsnorm', normEps: 1e-5, positions: 'rope', ropeTheta: 100000, ropeScaling: null, mlp: 'swiglu',
      heads: 9, kvHeads: 3, headDim: 64, ffnWidth: 1536, qkvBias: false, outBias: false, mlpBias: false, qkNorm: false,
      tiedHead: true, slidingWindow: null, maxPositions: 8192,
    });
    expect(parseModelConfig(QWEN25_05B, 'c')).toMatchObject({ qkvBias: true, outBias: false, qkNorm: false, slidingWindow: null, kvHeads: 2 });
    expect(parseModelConfig(QWEN3_06B, 'c')).toMatchObject({ qkvBias: false, qkNorm: true, headDim: 128, width: 1024 });
    expect(parseModelConfig({ ...QWEN3_06B, attention_bias: true }, 'c')).toMatchObject({ qkvBias: true, outBias: true });
    expect(parseModelConfig({ ...SMOLLM2_135M, attention_bias: true, mlp_bias: true }, 'c')).toMatchObject({ qkvBias: true, outBias: true, mlpBias: true });
    expect(parseModelConfig(MISTRAL_7B, 'c')).toMatchObject({ slidingWindow: 4096, tiedHead: false });
    expect(parseModelConfig({ ...MISTRAL_7B, sliding_window: null }, 'c').slidingWindow).toBeNull();
    expect(parseModelConfig({ ...QWEN25_05B, use_sliding_window: true, sliding_window: 512 }, 'c').slidingWindow).toBe(512);
    expect(parseModelConfig(LLAMA32_1B, 'c').ropeScaling).toEqual(LLAMA32_1B.rope_scaling);
    // transformers' older spelling of rope_type.
    expect(parseModelConfig({ ...SMOLLM2_135M, rope_scaling: { type: 'linear', factor: 2 } }, 'c').ropeScaling).toEqual({ rope_type: 'linear', factor: 2 });
    expect(parseModelConfig({ ...SMOLLM2_135M, rope_scaling: { rope_type: 'default' } }, 'c').ropeScaling).toBeNull();
    // The saved config.json keeps every key of the file.
    expect(parseModelConfig(QWEN25_05B, 'c').json).toEqual(QWEN25_05B);
  });

  test('GPT-2 is one configuration of the same decoder', () => {
    expect(decoderConfigFromGPT2(presetConfig('gpt2'))).toMatchObject({
      modelType: 'gpt2', norm: 'layernorm', positions: 'learned', mlp: 'gelu', heads: 12, kvHeads: 12, headDim: 64,
      ffnWidth: 3072, qkvBias: true, outBias: true, mlpBias: true, qkNorm: false, tiedHead: true, maxPositions: 1024,
    });
    expect(countParameters(decoderConfigFromGPT2(presetConfig('gpt2')))).toBe(124439808);
  });

  const { head_dim: _unused, ...llamaNoHeadDim } = LLAMA32_1B;
  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['yarn scaling', { ...QWEN25_05B, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'config.json: rope_scaling: rope_type = the string "yarn" is not supported (gptune implements rope scaling types linear and llama3)'],
    ['dynamic scaling', { ...SMOLLM2_135M, rope_scaling: { type: 'dynamic', factor: 2 } }, 'config.json: rope_scaling: type = the string "dynamic" is not supported'],
    ['llama3 without its keys', { ...SMOLLM2_135M, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'config.json: rope_scaling: missing required key "low_freq_factor"'],
    ['scaling factor below 1', { ...SMOLLM2_135M, rope_scaling: { rope_type: 'linear', factor: 0.5 } }, 'config.json: rope_scaling: factor must be a number in [1, 1000000000] but is 0.5'],
    ['unknown model type', { ...SMOLLM2_135M, model_type: 'phi3' }, 'config.json: model_type = the string "phi3" is not supported (expected one of gpt2, llama, mistral, qwen2, qwen3)'],
    ['gelu activation', { ...SMOLLM2_135M, hidden_act: 'gelu' }, 'config.json: hidden_act = the string "gelu" is not supported'],
    ['kv heads not dividing heads', { ...SMOLLM2_135M, num_key_value_heads: 4 }, 'config.json: num_attention_heads (9) must be divisible by num_key_value_heads (4)'],
    ['heads not dividing width', { ...SMOLLM2_135M, num_attention_heads: 7, num_key_value_heads: 7 }, 'config.json: hidden_size (576) must be divisible by num_attention_heads (7) when head_dim is not given'],
    ['missing intermediate_size', { ...SMOLLM2_135M, intermediate_size: undefined }, 'config.json: missing required key "intermediate_size" (a positive integer)'],
    ['missing max_position_embeddings', { ...SMOLLM2_135M, max_position_embeddings: undefined }, 'config.json: missing required key "max_position_embeddings"'],
    ['odd head_dim', { ...llamaNoHeadDim, head_dim: 63 }, 'config.json: head_dim (63) must be even for rotary embeddings'],
    ['sequence classification checkpoint', { ...SMOLLM2_135M, architectures: ['LlamaForSequenceClassification'] }, 'config.json: architectures = ["LlamaForSequenceClassification"] is not supported (gptune trains LlamaForCausalLM'],
    ['mistral with biases', { ...MISTRAL_7B, attention_bias: true }, 'config.json: attention_bias = true is not supported for model_type "mistral"'],
    ['tensor-parallel slicing', { ...SMOLLM2_135M, pretraining_tp: 2 }, 'config.json: pretraining_tp = 2 is not supported'],
    ['string size', { ...SMOLLM2_135M, hidden_size: '576' }, 'config.json: hidden_size must be a positive integer but is the string "576"'],
  ];
  test.each(bad)('%s: one line naming the key and value', (_, json, message) => {
    let error: Error | null = null;
    try {
      parseModelConfig(json, 'config.json');
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toContain(message);
    expect(error!.message).not.toContain('\n');
  });

  test('loadModelConfig names the file', () => {
    const dir = tempDir('gptune-llama-config-');
    try {
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...SMOLLM2_135M, num_key_value_heads: 2 }));
      expect(() => loadModelConfig(dir)).toThrow(`${path.join(dir, 'config.json')}: num_attention_heads (9) must be divisible by num_key_value_heads (2)`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('new: specs for the Llama family', () => {
  test('arch= with GPT-2-style size names', () => {
    const cfg = parseDecoderSpec('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=64,n_positions=128');
    expect(cfg).toMatchObject({
      modelType: 'llama', layers: 2, heads: 4, kvHeads: 2, width: 64, headDim: 16, maxPositions: 128, ffnWidth: 256,
      vocabSize: 50257, tiedHead: false, norm: 'rmsnorm',
    });
    expect(cfg.json).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, num_key_value_heads: 2 });
    expect(parseDecoderSpec('new:arch=qwen3,n_layer=1,n_head=2,n_embd=32,head_dim=32,tie_word_embeddings=true'))
      .toMatchObject({ qkNorm: true, headDim: 32, tiedHead: true, modelType: 'qwen3' });
  });

  test('presets of published shapes', () => {
    expect(countParameters(parseDecoderSpec('new:smollm2-135m'))).toBe(134515008);
    expect(countParameters(parseDecoderSpec('new:qwen2.5-0.5b'))).toBe(494032768);
    // Qwen2.5-1.5B's model card: 1.54B parameters, 1.31B of them outside the (tied) embedding; 28 layers,
    // 12 query / 2 KV heads of 128. 1543714304 is transformers' num_parameters() of the published checkpoint.
    const qwen15 = parseDecoderSpec('new:qwen2.5-1.5b');
    expect(qwen15).toMatchObject({ layers: 28, width: 1536, heads: 12, kvHeads: 2, headDim: 128, ffnWidth: 8960, vocabSize: 151936, tiedHead: true, qkvBias: true });
    expect(countParameters(qwen15)).toBe(1543714304);
    expect(((countParameters(qwen15) - 151936 * 1536) / 1e9).toFixed(2)).toBe('1.31');
    expect(parseDecoderSpec('new:smollm2-135m,num_hidden_layers=2').layers).toBe(2);
  });

  test('GPT-2 specs are unchanged, with or without arch=gpt2', () => {
    expect(parseDecoderSpec('new:n_layer=2,n_head=4,n_embd=64')).toEqual(parseDecoderSpec('new:arch=gpt2,n_layer=2,n_head=4,n_embd=64'));
    expect(parseDecoderSpec('new:n_layer=2,n_head=4,n_embd=64').modelType).toBe('gpt2');
  });

  test.each([
    ['new:arch=llma', 'model spec "new:arch=llma": arch must be one of gpt2, llama, mistral, qwen2, qwen3 but received "llma"'],
    ['new:arch=llama,n_kv_head=5', 'model spec "new:arch=llama,n_kv_head=5": num_attention_heads (12) must be divisible by num_key_value_heads (5)'],
    ['new:arch=llama,tie_word_embeddings=yes', 'model spec "new:arch=llama,tie_word_embeddings=yes": tie_word_embeddings must be true or false but received "yes"'],
    ['new:arch=llama,n_layers=2', 'model spec "new:arch=llama,n_layers=2": unknown key "n_layers"'],
  ])('%s is an error naming the problem', (spec, message) => {
    expect(() => parseDecoderSpec(spec)).toThrow(message);
  });
});

describe('RoPE tables', () => {
  const base = { headDim: 8, ropeTheta: 10000 };

  test('default, linear and llama3 frequencies', () => {
    const plain = ropeInverseFrequencies({ ...base, ropeScaling: null });
    [1, 0.1, 0.01, 0.001].forEach((x, i) => expect(plain[i]).toBeCloseTo(x, 15));
    const linear = ropeInverseFrequencies({ ...base, ropeScaling: { rope_type: 'linear', factor: 4 } });
    [0.25, 0.025, 0.0025, 0.00025].forEach((x, i) => expect(linear[i]).toBeCloseTo(x, 15));
    // llama3 with original context 1000, low/high factors 1/4: wavelengths 2pi/inv are 6.3, 63, 628, 6283;
    // below 1000/4 = 250 kept, above 1000/1 divided by the factor, 628 interpolated with
    // smooth = (1000 / 628.3 - 1) / (4 - 1).
    const llama3 = ropeInverseFrequencies({
      ...base,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 1000 },
    });
    const smooth = (1000 / (2 * Math.PI / 0.01) - 1) / 3;
    expect(llama3[0]).toBeCloseTo(1, 15);
    expect(llama3[1]).toBeCloseTo(0.1, 15);
    expect(llama3[2]).toBeCloseTo((1 - smooth) * 0.01 / 8 + smooth * 0.01, 15);
    expect(llama3[3]).toBeCloseTo(0.001 / 8, 15);
  });

  test('cos/sin tables: (positions, HS/2), angle p * inv_freq[i], float32', () => {
    const { cos, sin } = ropeTables({ ...base, ropeScaling: null }, 5);
    expect(cos.length).toBe(5 * 4);
    expect(cos[3 * 4 + 1]).toBe(Math.fround(Math.cos(3 * 0.1)));
    expect(sin[4 * 4 + 2]).toBe(Math.fround(Math.sin(4 * 0.01)));
    expect(cos[0]).toBe(1);
    expect(sin[0]).toBe(0);
  });
});
