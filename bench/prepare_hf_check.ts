/**
 * Writes the inputs of scripts/hf_compat_check.py into DIR: for GPT-2, a checkpoint saved by gptune
 * after a few training steps (saved/) and the original-name fixture (original/); for each tiny
 * Llama-family fixture (llama with GQA, MHA with biases, qwen2, qwen3, mistral), the model saved by
 * gptune after a few training steps (llama/<name>/; tiny-llama also sharded, llama/tiny-llama-sharded/);
 * and gptune's logits for a token sequence beside each (expected*.json). cases.json lists them all.
 *   node dist/bench/prepare_hf_check.js DIR
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, saveModel, SaveOptions } from '../lib/model/checkpoint';
import type { Decoder } from '../lib/model/decoder';
import { AdamW } from '../lib/train/adamw';

const out = process.argv[2];
const FIXTURES = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..', 'test/fixtures');
const LLAMA_FAMILY = ['tiny-llama', 'tiny-llama-mha', 'tiny-qwen2', 'tiny-qwen3', 'tiny-mistral'];

/** A fixed token sequence of length T within the vocabulary. */
const tokensFor = (vocab: number, T: number) => Int32Array.from({ length: T }, (_, i) => (i * 37 + 11) % vocab);

/** Three AdamW steps on the sequence's next-token loss, so the saved weights differ from the fixture's. */
function trainALittle(model: Decoder, tokens: Int32Array): void {
  const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
  for (let s = 0; s < 3; s++) {
    model.zeroGrad();
    const r = model.forward(tokens.subarray(0, tokens.length - 1), 1, tokens.length - 1, tokens.subarray(1));
    model.backward(r.count);
    opt.update(1e-2);
  }
  opt.free();
}

function logitsOf(model: Decoder, tokens: Int32Array): number[] {
  model.forward(tokens, 1, tokens.length, null);
  return Array.from(model.logitsRows(0, tokens.length));
}

interface Case { name: string; dir: string; expected: string; tied: boolean }
const cases: Case[] = [];
function write(name: string, dir: string, tokens: Int32Array, logits: number[], tied: boolean): void {
  const expected = `expected-${name}.json`;
  fs.writeFileSync(path.join(out, expected), JSON.stringify({ tokens: Array.from(tokens), logits }));
  cases.push({ name, dir, expected, tied });
}

fs.mkdirSync(out, { recursive: true });
const gpt2Fixture = path.join(FIXTURES, 'tiny-gpt2');
fs.cpSync(gpt2Fixture, path.join(out, 'original'), { recursive: true });
{
  const model = loadModel(gpt2Fixture);
  const tokens = tokensFor(349, 24);
  trainALittle(model, tokens);
  saveModel(model, path.join(out, 'saved'), { tokenizerFrom: gpt2Fixture });
  write('saved', 'saved', tokens, logitsOf(model, tokens), true);
  model.free();
  // The original fixture's logits are checked too, from an untrained copy.
  const original = loadModel(gpt2Fixture);
  write('original', 'original', tokens, logitsOf(original, tokens), true);
  original.free();
}
for (const name of LLAMA_FAMILY) {
  const fixture = path.join(FIXTURES, name);
  const model = loadModel(fixture);
  // 12 tokens: within every fixture's context, tiny-mistral's 16-token sliding window included.
  const tokens = tokensFor(model.config.vocabSize, 12);
  trainALittle(model, tokens);
  const logits = logitsOf(model, tokens);
  const tied = JSON.parse(fs.readFileSync(path.join(fixture, 'config.json'), 'utf8')).tie_word_embeddings === true;
  const saves: Array<[string, SaveOptions]> = [[name, {}]];
  if (name === 'tiny-llama') saves.push([`${name}-sharded`, { maxShardSize: '20KB' }]);
  for (const [saved, options] of saves) {
    saveModel(model, path.join(out, 'llama', saved), { tokenizerFrom: fixture, ...options });
    write(saved, path.join('llama', saved), tokens, logits, tied);
  }
  model.free();
}
fs.writeFileSync(path.join(out, 'cases.json'), JSON.stringify(cases, null, 1));
console.log(`wrote ${out} (${cases.length} models)`);
