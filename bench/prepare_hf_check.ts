/**
 * Writes the inputs of scripts/hf_compat_check.py into DIR: a checkpoint saved by gptune after a
 * few training steps (saved/), the original-name fixture (original/), and gptune's logits for a
 * token sequence (expected.json).  node dist/bench/prepare_hf_check.js DIR
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, saveModel } from '../lib/model/checkpoint';
import { AdamW } from '../lib/train/adamw';

const out = process.argv[2];
const fixture = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..', 'test/fixtures/tiny-gpt2');
fs.mkdirSync(out, { recursive: true });
fs.cpSync(fixture, path.join(out, 'original'), { recursive: true });
const model = loadModel(fixture);
const tokens = Int32Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % 349);
const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
for (let s = 0; s < 3; s++) {
  model.zeroGrad();
  const r = model.forward(tokens.subarray(0, 23), 1, 23, tokens.subarray(1));
  model.backward(r.count);
  opt.update(1e-2);
}
saveModel(model, path.join(out, 'saved'), { tokenizerFrom: fixture });
model.forward(tokens, 1, tokens.length, null);
const logits = Array.from(model.logitsRows(0, tokens.length));
// The original fixture's logits are checked too, from an untrained copy.
const original = loadModel(fixture);
original.forward(tokens, 1, tokens.length, null);
fs.writeFileSync(path.join(out, 'expected.json'), JSON.stringify({ tokens: Array.from(tokens), logits }));
fs.writeFileSync(path.join(out, 'expected-original.json'), JSON.stringify({ tokens: Array.from(tokens), logits: Array.from(original.logitsRows(0, tokens.length)) }));
console.log(`wrote ${out}`);
