/**
 * The memory plan (planMemory, planGenerationMemory) of Llama-family models is what they allocate:
 * parameters, gradients, AdamW moments and activations of a training step, the RoPE tables, and a
 * KV cache of only the NKV key/value heads. Checked against the arenas a real step allocates and
 * against a closed-form count of the cache.
 */
import * as path from 'path';
import { loadModel } from '../../lib/model/checkpoint';
import { planMemory } from '../../lib/model/decoder';
import { planGenerationMemory } from '../../lib/model/generate';
import { AdamW } from '../../lib/train/adamw';
import { FIXTURES } from '../helpers';

test.each(['tiny-llama', 'tiny-qwen3'])('%s: the plan of a training step is what it allocates', (name) => {
  const model = loadModel(path.join(FIXTURES, name));
  const B = 2, T = 9;
  const optimizer = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
  model.zeroGrad();
  const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % model.config.vocabSize);
  const r = model.forward(tokens, B, T, tokens);
  model.backward(r.count);
  optimizer.update(1e-3);
  const plan = planMemory(model.config, { batch: { B, T }, training: true });
  const used = model.memory();
  expect(used.paramsBytes).toBe(plan.parts.parameters);
  expect(used.gradsBytes).toBe(plan.parts.gradients);
  expect(optimizer.m.bytes + optimizer.v.bytes).toBe(plan.parts['AdamW moments']);
  expect(used.activationsBytes).toBe(plan.parts.activations);
  // cos and sin, (max_position_embeddings, HS/2) floats each.
  expect(plan.parts['RoPE tables']).toBe(2 * 4 * model.config.maxPositions * (model.config.headDim / 2));
  optimizer.free();
  model.free();
});

test('the generation plan caches NKV heads only: 2 x layers x positions x NKV x HS floats', () => {
  const model = loadModel(path.join(FIXTURES, 'tiny-llama'));
  const { layers, kvHeads, headDim, heads } = model.config;
  expect(kvHeads).toBeLessThan(heads);
  const cache = planGenerationMemory(model.config, 40, 1)['KV cache'];
  const kvFloats = 2 * layers * 40 * kvHeads * headDim;
  expect(cache).toBeGreaterThanOrEqual(4 * kvFloats);
  // Beyond the cache: one position's block buffers, the last row's norm and logits (padding included).
  expect(cache).toBeLessThan(4 * (kvFloats + 2 * layers * 16) + planGenerationMemory(model.config, 1, 1)['KV cache']);
  model.free();
});
