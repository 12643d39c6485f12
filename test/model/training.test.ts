/**
 * Training end to end on the CPU: a fresh tiny model learns a small text (loss far below its
 * start), checkpoints round-trip exactly, and KV-cache decoding equals the full forward pass.
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { parseModelSpec } from '../../lib/model/config';
import { generate } from '../../lib/model/generate';
import { Decoder } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { evalLM, trainLM } from '../../lib/train/lm';
import { FIXTURES, tempDir, TINY } from '../helpers';

const text = fs.readFileSync(path.join(FIXTURES, 'eval-text.txt'), 'utf8');

test('a fresh tiny model trained for 300 steps reaches a loss far below its start', async () => {
  const tokenizer = loadTokenizer(TINY);
  const tokens = Int32Array.from(tokenizer.encode(text));
  const config = parseModelSpec('new:n_layer=2,n_head=2,n_embd=32,n_positions=64,vocab_size=350');
  const model = new Decoder(config);
  model.initRandom(42);
  const start = evalLM(model, tokens, 32).loss;
  expect(start).toBeGreaterThan(Math.log(350) - 0.5); // a fresh model is near-uniform: ln V = 5.86
  const losses: number[] = [];
  await trainLM(model, tokens, {
    steps: 300, batchSize: 4, seqLen: 32, gradAccum: 1, lr: 3e-3, minLr: 3e-4, warmup: 20, schedule: 'cosine',
    gradClip: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, shuffle: true, seed: 3,
  }, (log) => { losses.push(log.loss); });
  const end = evalLM(model, tokens, 32).loss;
  expect(end).toBeLessThan(0.25 * start);
  expect(losses[losses.length - 1]).toBeLessThan(0.25 * losses[0]);

  // Save then load: the identical eval loss, bit for bit.
  const dir = path.join(tempDir(), 'trained');
  saveModel(model, dir, { tokenizerFrom: TINY });
  const again = loadModel(dir);
  expect(evalLM(again, tokens, 32).loss).toBe(end);
  model.free();
  again.free();
});

test('greedy KV-cache decoding picks the full forward pass argmax at every step', () => {
  const model = loadModel(TINY);
  const ids = [297, 326, 309, 312, 279, 322, 220, 332, 68, 79, 264, 327, 334, 68, 158, 49, 49, 137];
  // Greedy generation with the cache picks, at every step, the argmax of the full forward's logits.
  const prompt = ids.slice(0, 5);
  const generated = generate(model, prompt, { maxNewTokens: 12, greedy: true }).tokens;
  const seq = [...prompt];
  for (const next of generated) {
    model.forward(Int32Array.from(seq), 1, seq.length, null);
    const logits = model.logitsRows(seq.length - 1, 1);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    expect(next).toBe(best);
    seq.push(next);
  }
  model.free();
});

test('sampling: a seed reproduces, top-k 1 is greedy, and bad options are rejected', () => {
  const model = loadModel(TINY);
  const prompt = [297, 326, 309];
  const a = generate(model, prompt, { maxNewTokens: 15, temperature: 1.2, topP: 0.9, seed: 5 }).tokens;
  const b = generate(model, prompt, { maxNewTokens: 15, temperature: 1.2, topP: 0.9, seed: 5 }).tokens;
  expect(a).toEqual(b);
  const greedy = generate(model, prompt, { maxNewTokens: 15, greedy: true }).tokens;
  expect(generate(model, prompt, { maxNewTokens: 15, topK: 1, seed: 9 }).tokens).toEqual(greedy);
  expect(() => generate(model, prompt, { topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
  expect(() => generate(model, [], {})).toThrow(/prompt is empty/);
  expect(() => generate(model, new Array(65).fill(1), {})).toThrow(/65 tokens but the model's context \(n_positions\) is 64/);
  // EOS stops generation and is not part of the output.
  const eos = greedy[2];
  const r = generate(model, prompt, { maxNewTokens: 15, greedy: true, eosTokenId: eos });
  expect(r.stop).toBe('eos');
  expect(r.tokens).toEqual(greedy.slice(0, greedy.indexOf(eos)));
  // The context is never exceeded: with 60 prompt tokens and n_positions 64, positions 60..63 are
  // fed back, and the 5th new token is predicted from the full 64-token context.
  const full = generate(model, new Array(60).fill(5), { maxNewTokens: 50, greedy: true });
  expect(full.tokens.length).toBe(5);
  expect(full.stop).toBe('context_full');
  model.free();
});
