/**
 * The README's programmatic examples, run through the package's public entry point (lib/index.ts)
 * on the tiny fixture model, so the documented API cannot drift from the real one.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AdamW, clipScale, generate, loadModel, loadTokenizer, saveModel, Trainer } from '../lib';
import { tempDir, TINY } from './helpers';

test('README: load, train a few steps, generate, save', () => {
  const model = loadModel(TINY);
  const tokenizer = loadTokenizer(TINY);
  const ids = Int32Array.from(tokenizer.encode('Hello there, general Kenobi.'));
  const B = 1, T = ids.length - 1;
  const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
  const losses: number[] = [];
  for (let step = 0; step < 10; step++) {
    model.zeroGrad();
    const { loss, count } = model.forward(ids.subarray(0, T), B, T, ids.subarray(1));
    model.backward(count);
    opt.update(1e-2, clipScale(model.gradNorm(), 1.0));
    losses.push(loss);
  }
  expect(losses[9]).toBeLessThan(losses[0]);
  const { tokens } = generate(model, tokenizer.encode('Hello'), { maxNewTokens: 20, temperature: 0.8, topK: 40, seed: 1 });
  expect(tokens.length).toBeGreaterThan(0);
  expect(typeof tokenizer.decode(tokens)).toBe('string');
  const out = path.join(tempDir(), 'tuned');
  saveModel(model, out, { tokenizerFrom: TINY });
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
});

test('README: the Trainer fits silently and reports steps and evaluations', async () => {
  const dir = tempDir();
  const lines = Array.from({ length: 24 }, (_, i) => JSON.stringify({ text: `message number ${i} ${i % 2 ? 'win money now' : 'see you at lunch'}`, label: i % 2 ? 'spam' : 'ham' }));
  fs.writeFileSync(path.join(dir, 'train.jsonl'), lines.slice(0, 18).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'val.jsonl'), lines.slice(18).join('\n') + '\n');
  const trainer = new Trainer({
    model: TINY, data: path.join(dir, 'train.jsonl'), validation: path.join(dir, 'val.jsonl'), output_dir: path.join(dir, 'tuned'),
    epochs: 2, learning_rate: 1e-3, eval_every: 2, early_stopping_patience: 3, seq_len: 64, batch_size: 4,
  });
  const steps: number[] = [], evals: number[] = [];
  trainer.on('step', (s) => steps.push(s.loss));
  trainer.on('eval', (e) => evals.push(e.val_loss));
  const result = await trainer.fit();
  expect(steps.length).toBeGreaterThan(0);
  expect(evals.length).toBeGreaterThan(0);
  expect(['completed', 'early_stopping']).toContain(result.reason);
  expect(fs.existsSync(path.join(dir, 'tuned', 'model.safetensors'))).toBe(true);
});
