/**
 * The CLI contract (README) for a Llama-family folder, exactly as test/cli/cli.test.ts checks it for
 * GPT-2: eval's chunking and numbers, train's windows, log, output folder (Hugging Face's Llama layout,
 * --save-dtype, --max-shard-size) and --resume, generate's greedy decoding and seeds, eval --task
 * classify/generate and data inspect, and one-line errors with nothing written to --out. The
 * model's own numbers are checked against PyTorch in test/model/llama_reference.test.ts; here the
 * CLI must agree with the library's forward pass on the same folder.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensorsHeader } from '../../lib/io/safetensors';
import { loadModel } from '../../lib/model/checkpoint';
import { generate } from '../../lib/model/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, relError, tempDir } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { brokenModel, expectCleanFailure, gptune, lastJSON } from './run';

const TEXT = path.join(FIXTURES, 'eval-text.txt');

function logLines(file: string): Array<Record<string, number>> {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

const LLAMA = tinyLlamaFolder();
const tokenizer = loadTokenizer(LLAMA);
const ids = Int32Array.from(tokenizer.encode(fs.readFileSync(TEXT, 'utf8')));

/** The eval contract computed with the library: consecutive chunks of at most T tokens, no overlap. */
function chunkedLoss(dir: string, T: number): { loss: number; tokens: number } {
  const model = loadModel(dir);
  let sum = 0, count = 0;
  for (let start = 0; start + 1 < ids.length; start += T) {
    const chunk = ids.subarray(start, Math.min(start + T, ids.length));
    const r = model.forward(chunk.subarray(0, chunk.length - 1), 1, chunk.length - 1, chunk.subarray(1));
    sum += r.lossSum;
    count += r.count;
  }
  model.free();
  return { loss: sum / count, tokens: count };
}

test('eval --json: the contract\'s chunks, as the library computes them', () => {
  const r = gptune('eval', '--model', LLAMA, '--data', TEXT, '--seq-len', '24', '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const j = lastJSON(r.stdout);
  const want = chunkedLoss(LLAMA, 24);
  expect(j.tokens).toBe(want.tokens);
  expect(relError(j.loss as number, want.loss)).toBeLessThan(1e-6);
  expect(relError(j.perplexity as number, Math.exp(want.loss))).toBeLessThan(1e-6);
});

test('train --no-shuffle: step 1 is the forward on windows 0 and 1; the loss falls; the output is a Llama folder', () => {
  const dir = tempDir();
  const out = path.join(dir, 'out'), log = path.join(dir, 'log.jsonl');
  const r = gptune('train', '--model', LLAMA, '--data', TEXT, '--out', out, '--steps', '30', '--batch-size', '2', '--seq-len', '16',
    '--lr', '3e-3', '--weight-decay', '0', '--grad-clip', '0', '--no-shuffle', '--log', log, '--quiet');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const steps = logLines(log);
  expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  const model = loadModel(LLAMA);
  const inputs = new Int32Array(32), targets = new Int32Array(32);
  for (let b = 0; b < 2; b++) {
    inputs.set(ids.subarray(16 * b, 16 * b + 16), 16 * b);
    targets.set(ids.subarray(16 * b + 1, 16 * b + 17), 16 * b);
  }
  expect(relError(steps[0].loss, model.forward(inputs, 2, 16, targets).loss)).toBeLessThan(1e-6);
  model.free();
  expect(steps[29].loss).toBeLessThan(steps[0].loss - 1);
  expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'README.md', 'config.json', 'gptune_card.json', 'merges.txt', 'metrics.jsonl', 'model.safetensors', 'report.html', 'vocab.json']);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  expect(cfg).toMatchObject({ model_type: 'llama', architectures: ['LlamaForCausalLM'], num_key_value_heads: 2, torch_dtype: 'float32' });
  const names = readSafetensorsHeader(path.join(out, 'model.safetensors')).entries.map((e) => e.name);
  expect(names).toContain('model.layers.1.self_attn.k_proj.weight');
  expect(names).toContain('model.layers.0.mlp.up_proj.weight');
  expect(names).toContain('lm_head.weight');
  const e = gptune('eval', '--model', out, '--data', TEXT, '--seq-len', '16', '--json');
  expect(lastJSON(e.stdout).loss as number).toBeLessThan(chunkedLoss(LLAMA, 16).loss - 1);
});

test('--save-dtype bf16 --max-shard-size: BF16 shards with an index, and the folder is a valid --model', () => {
  const dir = tempDir();
  const out = path.join(dir, 'out');
  const r = gptune('train', '--model', LLAMA, '--data', TEXT, '--out', out, '--steps', '2', '--batch-size', '1', '--seq-len', '16',
    '--save-dtype', 'bf16', '--max-shard-size', '20KB', '--save-every', '2', '--quiet');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const files = fs.readdirSync(out);
  expect(files).toContain('model.safetensors.index.json');
  const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  expect(shards.length).toBeGreaterThan(1);
  for (const s of shards) expect(new Set(readSafetensorsHeader(path.join(out, s)).entries.map((e) => e.dtype))).toEqual(new Set(['BF16']));
  expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
  expect(gptune('eval', '--model', out, '--data', TEXT, '--seq-len', '16', '--json').code).toBe(0);
  // Checkpoints stay f32 in one file, so resuming is exact.
  expect(readSafetensorsHeader(path.join(out, 'checkpoints', 'step-2', 'model.safetensors')).entries[0].dtype).toBe('F32');
  // The shards are listed in the output manifest, so --overwrite with one file removes every one of them.
  const listed = JSON.parse(fs.readFileSync(path.join(out, '.gptune-output.json'), 'utf8')).entries as string[];
  for (const s of shards) expect(listed).toContain(s);
  const again = gptune('train', '--model', LLAMA, '--data', TEXT, '--out', out, '--steps', '1', '--batch-size', '1', '--seq-len', '16', '--overwrite', '--quiet');
  expect(again.stderr).toBe('');
  expect(again.code).toBe(0);
  expect(fs.readdirSync(out).filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json'))).toEqual(['model.safetensors']);
});

test('--resume continues exactly: the losses of an uninterrupted run', () => {
  const dir = tempDir();
  const common = ['--model', LLAMA, '--data', TEXT, '--batch-size', '2', '--seq-len', '16', '--lr', '2e-3', '--seed', '3', '--weight-decay', '0.1', '--quiet'];
  const first = gptune('train', ...common, '--out', path.join(dir, 'a'), '--steps', '6', '--save-every', '3', '--log', path.join(dir, 'a.jsonl'));
  expect(first.code).toBe(0);
  const r = gptune('train', '--resume', path.join(dir, 'a', 'checkpoints', 'step-3'), '--out', path.join(dir, 'b'), '--steps', '6', '--log', path.join(dir, 'b.jsonl'), '--quiet');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(logLines(path.join(dir, 'b.jsonl')).map((l) => [l.step, l.loss])).toEqual(logLines(path.join(dir, 'a.jsonl')).slice(3).map((l) => [l.step, l.loss]));
});

test('train a fresh Llama-family model from new:arch=...', () => {
  const dir = tempDir();
  const text = path.join(dir, 'data.txt');
  fs.writeFileSync(text, 'the quick brown fox jumps over the lazy dog. '.repeat(40));
  const out = path.join(dir, 'out');
  const r = gptune('train', '--model', 'new:arch=qwen3,n_layer=1,n_head=2,n_kv_head=1,n_embd=16,head_dim=16,n_positions=32', '--data', text,
    '--out', out, '--steps', '2', '--batch-size', '1', '--seq-len', '16', '--quiet');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  expect(cfg).toMatchObject({ model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], num_hidden_layers: 1, head_dim: 16, vocab_size: 50257 });
  expect(readSafetensorsHeader(path.join(out, 'model.safetensors')).entries.map((e) => e.name)).toContain('model.layers.0.self_attn.q_norm.weight');
});

test('generate: greedy equals the library\'s generate(), and a seed makes sampling reproducible', () => {
  const prompt = 'The sea';
  const g = gptune('generate', '--model', LLAMA, '--prompt', prompt, '--max-new-tokens', '10', '--temperature', '0', '--no-eos-stop', '--json');
  expect(g.stderr).toBe('');
  expect(g.code).toBe(0);
  const model = loadModel(LLAMA);
  expect(lastJSON(g.stdout).tokens).toEqual(generate(model, tokenizer.encode(prompt), { maxNewTokens: 10, greedy: true }).tokens);
  model.free();
  const sample = (seed: string) => lastJSON(gptune('generate', '--model', LLAMA, '--prompt', prompt, '--max-new-tokens', '12', '--seed', seed, '--top-k', '20', '--json').stdout).tokens;
  expect(sample('7')).toEqual(sample('7'));
  expect(sample('7')).not.toEqual(sample('8'));
});

test('eval --task classify and --task generate, sample and data inspect, run on a Llama folder', () => {
  const c = gptune('eval', '--task', 'classify', '--model', LLAMA, '--data', path.join(FIXTURES, 'data', 'classification.jsonl'), '--json');
  expect(c.stderr).toBe('');
  expect(c.code).toBe(0);
  expect(lastJSON(c.stdout).task).toBe('classify');
  const g = gptune('eval', '--task', 'generate', '--model', LLAMA, '--data', path.join(FIXTURES, 'eval', 'generate.jsonl'), '--json');
  expect(g.code).toBe(0);
  expect(typeof lastJSON(g.stdout).bleu).toBe('number');
  const review = path.join(tempDir(), 'review.jsonl');
  const s = gptune('sample', '--model', LLAMA, '--data', path.join(FIXTURES, 'eval', 'generate.jsonl'), '-n', '2', '--out', review);
  expect(s.stderr).toBe('');
  expect(s.code).toBe(0);
  expect(fs.readFileSync(review, 'utf8').trim().split('\n')).toHaveLength(2);
  const d = gptune('data', 'inspect', path.join(FIXTURES, 'data', 'classification.jsonl'), '--model', LLAMA, '--json');
  expect(d.code).toBe(0);
  expect(lastJSON(d.stdout).seq_len).toBe(64);
});

describe('bad input: one line naming the problem, nothing written', () => {
  const broken = (mutate: (dir: string) => void) => brokenModel(LLAMA, mutate);

  test('kv heads not dividing heads', () => {
    const model = broken((d) => {
      const f = path.join(d, 'config.json');
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), num_key_value_heads: 3 }));
    });
    const out = path.join(tempDir(), 'out');
    expectCleanFailure(['train', '--model', model, '--data', TEXT, '--out', out, '--steps', '1'], /config\.json: num_attention_heads \(4\) must be divisible by num_key_value_heads \(3\)/, out);
  });

  test('an unsupported rope_scaling type', () => {
    const model = broken((d) => {
      const f = path.join(d, 'config.json');
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), rope_scaling: { rope_type: 'yarn', factor: 4 } }));
    });
    expectCleanFailure(['eval', '--model', model, '--data', TEXT], /config\.json: rope_scaling: rope_type = the string "yarn" is not supported/);
  });

  test('a sequence longer than Mistral\'s sliding window', () => {
    const model = broken((d) => {
      const f = path.join(d, 'config.json');
      const cfg = JSON.parse(fs.readFileSync(f, 'utf8'));
      fs.writeFileSync(f, JSON.stringify({ ...cfg, model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 16 }));
    });
    expectCleanFailure(['eval', '--model', model, '--data', TEXT, '--seq-len', '24'], /--seq-len 24 exceeds the model's sliding_window \(16/);
    expectCleanFailure(['generate', '--model', model, '--prompt', 'The sea', '--max-new-tokens', '20'], /exceeds the model's sliding_window \(16/);
  });
});

test('a resumed run that saves in another layout leaves only the new weights in --out (no stale model.safetensors shadowing the shards)', () => {
  const dir = tempDir();
  const out = path.join(dir, 'out');
  const common = ['--model', LLAMA, '--data', TEXT, '--out', out, '--batch-size', '1', '--seq-len', '16', '--save-every', '1', '--quiet'];
  expect(gptune('train', ...common, '--steps', '2').code).toBe(0);
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
  const resumed = gptune('train', '--resume', path.join(out, 'checkpoints'), '--data', TEXT, '--out', out, '--batch-size', '1', '--seq-len', '16',
    '--save-every', '1', '--steps', '4', '--max-shard-size', '20KB', '--quiet');
  expect(resumed.stderr).toBe('');
  expect(resumed.code).toBe(0);
  const weights = fs.readdirSync(out).filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json'));
  expect(weights).not.toContain('model.safetensors');
  expect(weights).toContain('model.safetensors.index.json');
  // The published model is step 4's (checkpoints/last), not step 2's.
  const published = loadModel(out), last = loadModel(path.join(out, 'checkpoints', 'last'));
  expect(Buffer.from(published.params.arena.read(0, published.params.numel).buffer).equals(Buffer.from(last.params.arena.read(0, last.params.numel).buffer))).toBe(true);
  published.free();
  last.free();
});
