import * as fs from 'fs';
import * as path from 'path';
import {
  configToJSON, countParameters, GPT2_PRESETS, loadGPT2Config, parseGPT2Config, parseModelSpec, presetConfig,
  type GPT2PresetName,
} from '../../lib/model/config';
import { FIXTURES, tempDir } from '../helpers';

/** config.json of Hugging Face's "gpt2" (124M) model, as published on the hub. */
const HF_GPT2_CONFIG = {
  activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256,
  embd_pdrop: 0.1, eos_token_id: 50256, initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2',
  n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024, resid_pdrop: 0.1,
  summary_activation: null, summary_first_dropout: 0.1, summary_proj_to_labels: true, summary_type: 'cls_index',
  summary_use_proj: true, task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } },
  vocab_size: 50257,
};

describe('parseGPT2Config', () => {
  test("Hugging Face's gpt2 config.json parses to GPT-2 124M, with defaults filled in", () => {
    const cfg = parseGPT2Config(HF_GPT2_CONFIG, 'config.json');
    expect(cfg).toEqual(presetConfig('gpt2'));
    expect(cfg.n_inner).toBe(3072);
    // Published size of GPT-2 small: 124,439,808 parameters (wte tied with the LM head).
    expect(countParameters(cfg)).toBe(124439808);
  });

  test('the tiny-gpt2 fixture config loads from its folder', () => {
    const cfg = loadGPT2Config(path.join(FIXTURES, 'tiny-gpt2'));
    expect(cfg).toMatchObject({ vocab_size: 350, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 4, n_inner: 128, eos_token_id: 349, resid_pdrop: 0 });
  });

  test('published sizes of the four GPT-2 presets', () => {
    // Parameter counts of gpt2 / -medium / -large / -xl (tied embeddings), as reported by transformers.
    const expected: Record<GPT2PresetName, number> = {
      'gpt2': 124439808, 'gpt2-medium': 354823168, 'gpt2-large': 774030080, 'gpt2-xl': 1557611200,
    };
    for (const name of Object.keys(GPT2_PRESETS) as GPT2PresetName[]) {
      expect(countParameters(presetConfig(name))).toBe(expected[name]);
    }
  });

  const base = { vocab_size: 100, n_positions: 16, n_embd: 12, n_layer: 1, n_head: 3 };
  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['n_embd not divisible by n_head', { ...base, n_embd: 100, n_head: 3 }, 'config.json: n_embd (100) must be divisible by n_head (3)'],
    ['missing vocab_size', { ...base, vocab_size: undefined }, 'config.json: missing required key "vocab_size" (a positive integer)'],
    ['string size', { ...base, n_layer: '2' }, 'config.json: n_layer must be a positive integer but is the string "2"'],
    ['zero heads', { ...base, n_head: 0 }, 'config.json: n_head must be a positive integer but is 0'],
    ['negative positions', { ...base, n_positions: -4 }, 'config.json: n_positions must be a positive integer but is -4'],
    ['fractional width', { ...base, n_embd: 12.5 }, 'config.json: n_embd must be a positive integer but is 12.5'],
    ['bad n_inner', { ...base, n_inner: 0 }, 'config.json: n_inner must be a positive integer but is 0'],
    ['exact GELU', { ...base, activation_function: 'gelu' }, 'config.json: activation_function the string "gelu" is not supported (expected one of gelu_new, gelu_pytorch_tanh, the tanh approximation of GELU)'],
    ['relu', { ...base, activation_function: 'relu' }, 'config.json: activation_function the string "relu" is not supported'],
    ['epsilon zero', { ...base, layer_norm_epsilon: 0 }, 'config.json: layer_norm_epsilon must be a number in (0, 1] but is 0'],
    ['dropout above one', { ...base, attn_pdrop: 1.5 }, 'config.json: attn_pdrop must be a number in [0, 1] but is 1.5'],
    ['negative eos', { ...base, eos_token_id: -1 }, 'config.json: eos_token_id must be a non-negative integer but is -1'],
    ['other model type', { ...base, model_type: 'llama' }, 'config.json: model_type must be "gpt2" but is the string "llama"'],
    ['layer-scaled attention', { ...base, scale_attn_by_inverse_layer_idx: true }, 'config.json: scale_attn_by_inverse_layer_idx = true is not supported (gptune implements only scale_attn_by_inverse_layer_idx = false)'],
    ['untied head', { ...base, tie_word_embeddings: false }, 'config.json: tie_word_embeddings = false is not supported'],
  ];
  test.each(bad)('%s is an error naming the key and value', (_, json, message) => {
    expect(() => parseGPT2Config(json, 'config.json')).toThrow(message);
  });

  test('non-objects and unreadable files are errors naming the source', () => {
    expect(() => parseGPT2Config([1, 2], 'x.json')).toThrow('x.json: expected a JSON object with GPT-2 settings but received an array');
    const dir = tempDir('gptune-config-');
    try {
      expect(() => loadGPT2Config(dir)).toThrow(`${path.join(dir, 'config.json')}: cannot read the model config`);
      fs.writeFileSync(path.join(dir, 'config.json'), '{"n_embd": 12,');
      expect(() => loadGPT2Config(dir)).toThrow(`${path.join(dir, 'config.json')}: not valid JSON`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('configToJSON', () => {
  test('writes the keys transformers reads, and parses back to the same config', () => {
    const cfg = parseModelSpec('new:n_layer=2,n_head=4,n_embd=64,n_positions=128,vocab_size=1000,eos_token_id=999');
    const json = configToJSON(cfg);
    expect(json).toMatchObject({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_ctx: 128, n_positions: 128, n_embd: 64, n_layer: 2,
      n_head: 4, n_inner: null, vocab_size: 1000, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5,
      resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1, eos_token_id: 999, tie_word_embeddings: true,
    });
    expect(parseGPT2Config(JSON.parse(JSON.stringify(json)), 'roundtrip')).toEqual(cfg);
    const wide = { ...cfg, n_inner: 100 };
    expect(configToJSON(wide).n_inner).toBe(100);
    expect(parseGPT2Config(configToJSON(wide), 'roundtrip')).toEqual(wide);
  });

  test("every key of Hugging Face's gpt2 config.json is written, with the same value for GPT-2 124M", () => {
    const json = configToJSON(presetConfig('gpt2'));
    for (const [key, value] of Object.entries(HF_GPT2_CONFIG)) {
      if (key === 'task_specific_params') continue; // generation hints, not model settings
      expect([key, json[key]]).toEqual([key, value]);
    }
  });
});

describe('parseModelSpec', () => {
  test('sets the given keys and takes GPT-2 124M values for the rest; n_inner follows n_embd', () => {
    const cfg = parseModelSpec('new:n_layer=2,n_head=4,n_embd=64,n_positions=128');
    expect(cfg).toEqual({ ...presetConfig('gpt2'), n_layer: 2, n_head: 4, n_embd: 64, n_positions: 128, n_inner: 256 });
    expect(parseModelSpec('new:')).toEqual(presetConfig('gpt2'));
    expect(parseModelSpec('new: n_layer = 3 , layer_norm_epsilon=1e-6').n_layer).toBe(3);
    expect(parseModelSpec('new:layer_norm_epsilon=1e-6').layer_norm_epsilon).toBe(1e-6);
  });

  test('a preset name may come first', () => {
    expect(parseModelSpec('new:gpt2-xl')).toEqual(presetConfig('gpt2-xl'));
    expect(parseModelSpec('new:gpt2-medium,n_layer=4')).toEqual({ ...presetConfig('gpt2-medium'), n_layer: 4 });
  });

  const bad: Array<[string, string]> = [
    ['n_layer=2', 'model spec: expected "new:key=value,..." (e.g. "new:n_layer=2,n_head=4,n_embd=64") but received "n_layer=2"'],
    ['new:n_layers=2', 'model spec "new:n_layers=2": unknown key "n_layers" (known keys: vocab_size, n_positions'],
    ['new:n_layer=two', 'model spec "new:n_layer=two": n_layer must be a non-negative integer but received "two"'],
    ['new:n_layer=2.5', 'model spec "new:n_layer=2.5": n_layer must be a non-negative integer but received "2.5"'],
    ['new:n_layer=', 'model spec "new:n_layer=": n_layer must be a non-negative integer but received ""'],
    ['new:initializer_range=abc', 'model spec "new:initializer_range=abc": initializer_range must be a number but received "abc"'],
    ['new:n_layer=2,n_layer=3', 'model spec "new:n_layer=2,n_layer=3": key "n_layer" is given twice'],
    ['new:gpt3', 'model spec "new:gpt3": expected key=value or a preset name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) as the first item but received "gpt3"'],
    ['new:n_embd=100,n_head=3', 'model spec "new:n_embd=100,n_head=3": n_embd (100) must be divisible by n_head (3)'],
    ['new:n_layer=0', 'model spec "new:n_layer=0": n_layer must be a positive integer but is 0'],
    ['new:activation_function=relu', 'model spec "new:activation_function=relu": activation_function the string "relu" is not supported'],
  ];
  test.each(bad)('%s is an error naming the problem', (spec, message) => {
    expect(() => parseModelSpec(spec)).toThrow(message);
  });
});
