/**
 * The Llama-family fixtures (scripts/make_llama_fixtures.py) are well formed: every config.json has the keys
 * transformers writes for its family, every checkpoint holds exactly the tensors the config implies (Hugging
 * Face names, shapes from the config), the references cover the same tensors, and the sharded copy is
 * tiny-llama split as save_pretrained splits it. A regenerated fixture that breaks any of this fails here,
 * before it can mislead the model tests. Expectations are written from Hugging Face's conventions, not from
 * gptune's model code.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, readSafetensorsHeader, TensorHeaderEntry } from '../../lib/io/safetensors';
import { FIXTURES } from '../helpers';

type HfConfig = Record<string, unknown> & {
  model_type: string; architectures: string[]; hidden_size: number; intermediate_size: number;
  num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; vocab_size: number;
  head_dim?: number; tie_word_embeddings: boolean; attention_bias?: boolean; mlp_bias?: boolean;
};

const NAMES = ['tiny-llama', 'tiny-llama-mha', 'tiny-qwen2', 'tiny-qwen3', 'tiny-mistral'];

const COMMON_KEYS = ['architectures', 'model_type', 'attention_dropout', 'bos_token_id', 'eos_token_id', 'hidden_act',
  'hidden_size', 'initializer_range', 'intermediate_size', 'max_position_embeddings', 'num_attention_heads',
  'num_hidden_layers', 'num_key_value_heads', 'rms_norm_eps', 'rope_theta', 'tie_word_embeddings', 'torch_dtype',
  'transformers_version', 'use_cache', 'vocab_size'];
const FAMILY: Record<string, { architecture: string; keys: string[] }> = {
  llama: { architecture: 'LlamaForCausalLM', keys: ['attention_bias', 'head_dim', 'mlp_bias', 'pretraining_tp', 'rope_scaling'] },
  mistral: { architecture: 'MistralForCausalLM', keys: ['head_dim', 'sliding_window'] },
  qwen2: { architecture: 'Qwen2ForCausalLM', keys: ['max_window_layers', 'rope_scaling', 'sliding_window', 'use_sliding_window'] },
  qwen3: {
    architecture: 'Qwen3ForCausalLM',
    keys: ['attention_bias', 'head_dim', 'max_window_layers', 'rope_scaling', 'sliding_window', 'use_sliding_window'],
  },
};

function readConfig(dir: string): HfConfig {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, dir, 'config.json'), 'utf8')) as HfConfig;
}

/** name -> shape of every tensor a transformers checkpoint of this config holds. */
function expectedTensors(c: HfConfig): Map<string, number[]> {
  const C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const HS = c.head_dim ?? C / c.num_attention_heads;
  const q = c.num_attention_heads * HS, kv = c.num_key_value_heads * HS;
  const qkvBias = c.model_type === 'qwen2' || c.attention_bias === true;
  const oBias = c.attention_bias === true && (c.model_type === 'llama' || c.model_type === 'qwen3');
  const mlpBias = c.model_type === 'llama' && c.mlp_bias === true;
  const out = new Map<string, number[]>([['model.embed_tokens.weight', [V, C]], ['model.norm.weight', [C]]]);
  if (!c.tie_word_embeddings) out.set('lm_head.weight', [V, C]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const linear = (name: string, outDim: number, inDim: number, bias: boolean) => {
      out.set(`${p}${name}.weight`, [outDim, inDim]);
      if (bias) out.set(`${p}${name}.bias`, [outDim]);
    };
    out.set(`${p}input_layernorm.weight`, [C]);
    out.set(`${p}post_attention_layernorm.weight`, [C]);
    linear('self_attn.q_proj', q, C, qkvBias);
    linear('self_attn.k_proj', kv, C, qkvBias);
    linear('self_attn.v_proj', kv, C, qkvBias);
    linear('self_attn.o_proj', C, q, oBias);
    if (c.model_type === 'qwen3') {
      out.set(`${p}self_attn.q_norm.weight`, [HS]);
      out.set(`${p}self_attn.k_norm.weight`, [HS]);
    }
    linear('mlp.gate_proj', F, C, mlpBias);
    linear('mlp.up_proj', F, C, mlpBias);
    linear('mlp.down_proj', C, F, mlpBias);
  }
  return out;
}

function shapes(entries: TensorHeaderEntry[], prefix = ''): Map<string, number[]> {
  return new Map(entries.filter((e) => e.name.startsWith(prefix)).map((e) => [e.name.slice(prefix.length), e.shape]));
}

describe.each(NAMES)('%s fixture', (name) => {
  const config = readConfig(name);
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}-ref.json`), 'utf8'));
  const expected = expectedTensors(config);

  test('config.json has every key transformers writes for its family, consistent dims', () => {
    const family = FAMILY[config.model_type];
    expect(family).toBeDefined();
    expect(config.architectures).toEqual([family.architecture]);
    for (const key of [...COMMON_KEYS, ...family.keys]) expect({ key, present: key in config }).toEqual({ key, present: true });
    expect(config.num_attention_heads % config.num_key_value_heads).toBe(0);
    if (config.head_dim === undefined) expect(config.hidden_size % config.num_attention_heads).toBe(0);
    expect(config.torch_dtype).toBe('float32');
  });

  test('model.safetensors holds exactly the tensors the config implies, F32', () => {
    const header = readSafetensorsHeader(path.join(FIXTURES, name, 'model.safetensors'));
    expect(shapes(header.entries)).toEqual(expected);
    expect(new Set(header.entries.map((e) => e.dtype))).toEqual(new Set(['F32']));
    expect(header.metadata).toEqual({ format: 'pt' });
  });

  test('references: batch, logits, a gradient for every tensor, 5 AdamW losses, greedy tokens', () => {
    const { B, T } = ref;
    const V = config.vocab_size;
    expect(ref.tokens).toHaveLength(B);
    expect(ref.targets).toHaveLength(B);
    const ids: number[] = ref.tokens.flat();
    const targets: number[] = ref.targets.flat();
    expect(ids).toHaveLength(B * T);
    expect(ids.every((t) => Number.isInteger(t) && t >= 0 && t < V)).toBe(true);
    expect(targets.every((t) => t === -100 || (Number.isInteger(t) && t >= 0 && t < V))).toBe(true);
    expect(targets.filter((t) => t !== -100)).toHaveLength(ref.n_scored);
    expect(ref.n_scored).toBeLessThan(B * T);  // some targets are ignored
    expect(Number.isFinite(ref.loss_f64)).toBe(true);
    expect(ref.train.losses_f64).toHaveLength(5);
    expect(ref.train.losses_f64[0]).toBe(ref.loss_f64);
    expect(ref.generate.new_tokens).toHaveLength(ref.generate.max_new_tokens);
    expect(ref.generate.new_tokens.every((t: number) => t >= 0 && t < V)).toBe(true);
    expect(ref.rope_inv_freq).toHaveLength((config.head_dim ?? config.hidden_size / config.num_attention_heads) / 2);

    const header = readSafetensorsHeader(path.join(FIXTURES, `${name}-ref.safetensors`));
    const byName = new Map(header.entries.map((e) => [e.name, e]));
    expect(byName.get('logits')).toMatchObject({ dtype: 'F32', shape: [B, T, V] });
    expect(byName.get('logits_f64')).toMatchObject({ dtype: 'F64', shape: [B, T, V] });
    expect(shapes(header.entries, 'grads/')).toEqual(expected);
    expect(ref.train.decayed.sort()).toEqual([...expected].filter(([, s]) => s.length >= 2).map(([n]) => n).sort());
  });
});

describe('tiny-llama-sharded', () => {
  const dir = path.join(FIXTURES, 'tiny-llama-sharded');
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));

  test('index, shards and tiny-llama hold the same tensors, bytes and total size', () => {
    expect(Object.keys(index).sort()).toEqual(['metadata', 'weight_map']);
    const files = [...new Set(Object.values(index.weight_map as Record<string, string>))].sort();
    expect(files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const whole = readSafetensors(path.join(FIXTURES, 'tiny-llama', 'model.safetensors')).tensors;
    const seen = new Set<string>();
    let totalBytes = 0;
    for (const file of files) {
      const shard = readSafetensors(path.join(dir, file));
      expect(shard.metadata).toEqual({ format: 'pt' });
      for (const [tensorName, tensor] of shard.tensors) {
        expect({ tensorName, file: index.weight_map[tensorName] }).toEqual({ tensorName, file });
        expect(seen.has(tensorName)).toBe(false);
        seen.add(tensorName);
        expect(tensor.shape).toEqual(whole.get(tensorName)!.shape);
        expect(Buffer.compare(tensor.data, whole.get(tensorName)!.data)).toBe(0);
        totalBytes += tensor.data.byteLength;
      }
    }
    expect([...seen].sort()).toEqual([...whole.keys()].sort());
    expect(Object.keys(index.weight_map).sort()).toEqual([...whole.keys()].sort());
    expect(index.metadata.total_size).toBe(totalBytes);
    expect(readConfig('tiny-llama-sharded')).toEqual(readConfig('tiny-llama'));
  });
});
