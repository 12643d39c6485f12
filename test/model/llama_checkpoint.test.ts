/**
 * Llama-family checkpoints in Hugging Face's layout: q/k/v and gate/up are separate tensors on disk
 * and packed in the arena, so a save must give back exactly the tensors that were loaded (F32: bit
 * for bit; BF16: each value rounded to the nearest bfloat16), the config.json keys of the file, and
 * shards with an index above the shard size. Broken folders fail with one line naming the file and
 * the tensor. Expected tensors come from the fixture files themselves (written by PyTorch).
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, readSafetensorsHeader, toFloat32, writeSafetensors } from '../../lib/io/safetensors';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { FIXTURES, tempDir } from '../helpers';

const LLAMA = path.join(FIXTURES, 'tiny-llama');
const TIED = path.join(FIXTURES, 'tiny-llama-mha');

function fixtureWeights(dir: string): Map<string, { shape: number[]; data: Float32Array }> {
  const st = readSafetensors(path.join(dir, 'model.safetensors'));
  return new Map([...st.tensors].map(([n, t]) => [n, { shape: t.shape, data: toFloat32(t) }]));
}

function copyFolder(from: string): string {
  const dir = path.join(tempDir(), 'model');
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  return dir;
}

/** Rewrites dir/model.safetensors with `edit` applied to its tensors (name -> tensor). */
function editWeights(dir: string, edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void): void {
  const tensors = fixtureWeights(dir);
  edit(tensors);
  writeSafetensors(path.join(dir, 'model.safetensors'), [...tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data })), { format: 'pt' });
}

describe.each([['untied, GQA', LLAMA], ['tied, MHA, all biases', TIED], ['qwen3', path.join(FIXTURES, 'tiny-qwen3')], ['qwen2', path.join(FIXTURES, 'tiny-qwen2')]])('%s: save after load', (_, source) => {
  test('f32 gives back every tensor bit for bit, under its Hugging Face name, and the config keys', () => {
    const model = loadModel(source);
    const out = path.join(tempDir(), 'saved');
    saveModel(model, out);
    model.free();
    expect(fs.readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    const saved = readSafetensors(path.join(out, 'model.safetensors'));
    expect(saved.metadata).toEqual({ format: 'pt' });
    const original = fixtureWeights(source);
    expect([...saved.tensors.keys()].sort()).toEqual([...original.keys()].sort());
    for (const [name, t] of saved.tensors) {
      expect([name, t.dtype, t.shape]).toEqual([name, 'F32', original.get(name)!.shape]);
      expect(toFloat32(t)).toEqual(original.get(name)!.data);
    }
    const config = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8'));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))).toEqual({ ...config, torch_dtype: 'float32' });
  });
});

test('bf16: each weight rounded to the nearest bfloat16, config says bfloat16, and it loads back', () => {
  const model = loadModel(LLAMA);
  const out = path.join(tempDir(), 'saved');
  saveModel(model, out, { dtype: 'bf16' });
  model.free();
  const header = readSafetensorsHeader(path.join(out, 'model.safetensors'));
  expect(new Set(header.entries.map((e) => e.dtype))).toEqual(new Set(['BF16']));
  const saved = readSafetensors(path.join(out, 'model.safetensors')).tensors;
  const bits = new Uint32Array(1), value = new Float32Array(bits.buffer);
  for (const [name, { data }] of fixtureWeights(LLAMA)) {
    const got = toFloat32(saved.get(name)!);
    for (let i = 0; i < data.length; i++) {
      // The two bfloat16 neighbours of x: its top 16 bits, and one unit further from zero.
      value[0] = data[i];
      bits[0] &= 0xffff0000;
      const down = value[0];
      bits[0] += 0x10000;
      const up = value[0];
      const best = Math.abs(data[i] - down) <= Math.abs(up - data[i]) ? [down] : [up];
      if (Math.abs(data[i] - down) === Math.abs(up - data[i])) best.push(up);
      if (!best.includes(got[i])) throw new Error(`${name}[${i}]: ${data[i]} saved as ${got[i]}, not the nearest bfloat16 (${down}, ${up})`);
    }
  }
  expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
  const again = loadModel(out);
  expect(again.config.modelType).toBe('llama');
  again.free();
});

test('above the shard size: shards and an index, as save_pretrained writes them, loading to the same model', () => {
  const model = loadModel(LLAMA);
  const out = path.join(tempDir(), 'saved');
  saveModel(model, out, { maxShardSize: '20KB' });
  const files = fs.readdirSync(out).sort();
  expect(files).toContain('model.safetensors.index.json');
  expect(files).not.toContain('model.safetensors');
  const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  expect(shards.length).toBeGreaterThan(1);
  const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
  expect(Object.keys(index.weight_map).sort()).toEqual([...fixtureWeights(LLAMA).keys()].sort());
  const again = loadModel(out);
  for (const [name, t] of model.params.tensors) expect([name, again.params.get(name).read()]).toEqual([name, t.read()]);
  model.free();
  again.free();
});

describe('broken Llama-family checkpoints: one line naming the file and the tensor', () => {
  function expectOneLine(fn: () => unknown, pattern: RegExp | string): void {
    let message = '';
    try {
      fn();
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).not.toBe('');
    expect(message).not.toContain('\n');
    if (typeof pattern === 'string') expect(message).toContain(pattern);
    else expect(message).toMatch(pattern);
  }

  test('a missing projection', () => {
    const dir = copyFolder(LLAMA);
    editWeights(dir, (t) => t.delete('model.layers.1.self_attn.k_proj.weight'));
    expectOneLine(() => loadModel(dir), `${path.join(dir, 'model.safetensors')}: missing 1 tensor(s): model.layers.1.self_attn.k_proj.weight`);
  });

  test('a tensor of the wrong shape for config.json', () => {
    const dir = copyFolder(LLAMA);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: cfg.intermediate_size + 1 }));
    expectOneLine(() => loadModel(dir), /model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[64, 48\] but config\.json implies \[65, 48\]/);
  });

  test('a tensor the config has no place for', () => {
    const dir = copyFolder(TIED);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, mlp_bias: false }));
    expectOneLine(() => loadModel(dir), /model\.safetensors: unexpected tensor "model\.layers\.0\.mlp\.(gate|up|down)_proj\.bias"/);
  });

  test('a tied model whose stored lm_head is not the embedding', () => {
    const dir = copyFolder(TIED);
    editWeights(dir, (t) => {
      const embed = t.get('model.embed_tokens.weight')!;
      const head = Float32Array.from(embed.data);
      head[3] += 1;
      t.set('lm_head.weight', { shape: embed.shape, data: head });
    });
    expectOneLine(() => loadModel(dir), '"lm_head.weight" differs from the token embedding');
  });

  test('a missing shard', () => {
    const dir = copyFolder(path.join(FIXTURES, 'tiny-llama-sharded'));
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expectOneLine(() => loadModel(dir), /model\.safetensors\.index\.json: shard "model-00002-of-00002\.safetensors" \(holding "[^"]+"\) not found/);
  });

  test('an index naming a tensor in the wrong shard', () => {
    const dir = copyFolder(path.join(FIXTURES, 'tiny-llama-sharded'));
    const file = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(file, 'utf8'));
    index.weight_map['model.norm.weight'] = index.weight_map['model.norm.weight'] === 'model-00001-of-00002.safetensors'
      ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
    fs.writeFileSync(file, JSON.stringify(index));
    expectOneLine(() => loadModel(dir), /model\.safetensors\.index\.json: weight_map puts "model\.norm\.weight" in model-0000\d-of-00002\.safetensors but it is in/);
  });

  test('a config contradiction names the file and key', () => {
    const dir = copyFolder(LLAMA);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, num_key_value_heads: 3 }));
    expectOneLine(() => loadModel(dir), `${path.join(dir, 'config.json')}: num_attention_heads (4) must be divisible by num_key_value_heads (3)`);
  });
});
