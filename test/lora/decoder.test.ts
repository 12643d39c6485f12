/**
 * LoRA inside the decoder, beyond the PyTorch fixtures: dropout masks that are a function of the
 * forward's seed (so gradient checkpointing's recompute and a resumed run see the same ones), the
 * frozen base taking no gradient memory, several adapters at once, and the memory plan equal to
 * what is allocated.
 */
import * as path from 'path';
import { loadAdapter } from '../../lib/lora/apply';
import { LORA_DEFAULTS } from '../../lib/lora/modules';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder, planMemory } from '../../lib/model/decoder';
import { AdamW } from '../../lib/train/adamw';
import { FIXTURES, TINY } from '../helpers';

const B = 2, T = 10;
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 29 + 3) % 127);
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 41 + 5) % 127);

function lossAndGrads(model: Decoder, dropoutSeed: number | null) {
  model.zeroGrad();
  const r = model.forward(tokens, B, T, targets, { dropoutSeed });
  model.backward(r.count);
  return { loss: r.loss, grads: model.grads!.all().read() };
}

function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

describe.each([['tiny-gpt2', TINY], ['tiny-qwen3', path.join(FIXTURES, 'tiny-qwen3')]])('%s', (_name, dir) => {
  const settings = { ...LORA_DEFAULTS, r: 4, dropout: 0.25, targets: 'all-linear' as const };

  test('dropout: the same seed gives the same masks, another seed others, no seed none', () => {
    const model = loadModel(dir);
    try {
      const adapter = model.addAdapter(settings, { trainable: true, seed: 7 });
      // B = 0 makes the adapter a no-op; give it weights so the dropout on its input shows.
      for (const m of adapter.modules) m.B.write(Float32Array.from({ length: m.B.numel }, (_, i) => Math.sin(i + m.index)));
      const a = lossAndGrads(model, 11), b = lossAndGrads(model, 11), c = lossAndGrads(model, 12), none = lossAndGrads(model, null);
      expect(a.loss).toBe(b.loss);
      expect(bitwiseEqual(a.grads, b.grads)).toBe(true);
      expect(c.loss).not.toBe(a.loss);
      expect(none.loss).not.toBe(a.loss);
      expect(none.loss).toBe(model.forward(tokens, B, T, targets).loss);
    } finally {
      model.free();
    }
  });

  test('gradient checkpointing gives bitwise the same loss and adapter gradients, dropout included', () => {
    const plain = loadModel(dir), checkpointed = loadModel(dir);
    try {
      for (const model of [plain, checkpointed]) {
        const adapter = model.addAdapter(settings, { trainable: true, seed: 7 });
        for (const m of adapter.modules) m.B.write(Float32Array.from({ length: m.B.numel }, (_, i) => Math.cos(i * 0.3 + m.index)));
      }
      checkpointed.setGradientCheckpointing(true);
      const a = lossAndGrads(plain, 5), b = lossAndGrads(checkpointed, 5);
      expect(b.loss).toBe(a.loss);
      expect(bitwiseEqual(b.grads, a.grads)).toBe(true);
    } finally {
      plain.free();
      checkpointed.free();
    }
  });

  test('the base is frozen: gradients and AdamW moments exist for the adapter only, and the base never changes', () => {
    const model = loadModel(dir);
    try {
      const before = model.params.all().read();
      model.addAdapter({ ...settings, dropout: 0 }, { trainable: true, seed: 3 });
      const optimizer = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
      for (let i = 0; i < 3; i++) {
        lossAndGrads(model, null);
        optimizer.update(1e-2);
      }
      expect(model.grads!.numel).toBe(model.trainingAdapter!.arena.numel);
      expect(optimizer.m.numel).toBe(model.trainingAdapter!.arena.numel);
      expect(bitwiseEqual(model.params.all().read(), before)).toBe(true);
      optimizer.free();
    } finally {
      model.free();
    }
  });

  test('the memory plan of LoRA training on an nf4 base equals what is allocated', () => {
    const model = loadModel(dir, { baseDtype: 'nf4' });
    try {
      const lora = { ...settings };
      model.addAdapter(lora, { trainable: true, seed: 1 });
      lossAndGrads(model, 9);
      const plan = planMemory(model.config, { batch: { B, T }, training: true, lora, baseDtype: 'nf4' }).parts;
      const m = model.memory();
      expect(plan.parameters + plan['LoRA adapter']).toBe(m.paramsBytes);
      expect(plan.gradients).toBe(m.gradsBytes);
      expect(plan.activations).toBe(m.activationsBytes);
    } finally {
      model.free();
    }
  });
});

test('several adapters at once: each applied with its weight, in order', () => {
  const dir = path.join(FIXTURES, 'tiny-llama'), adapter = path.join(FIXTURES, 'lora-llama');
  const one = loadModel(dir), two = loadModel(dir), base = loadModel(dir);
  try {
    loadAdapter(one, adapter, { weight: 1 });
    loadAdapter(two, adapter, { weight: 0.5 });
    loadAdapter(two, adapter, { weight: 0.5 });
    const l1 = one.forward(tokens, B, T, targets).loss, l2 = two.forward(tokens, B, T, targets).loss, l0 = base.forward(tokens, B, T, targets).loss;
    // Two halves of the same adapter are the adapter (up to float32 rounding); the base differs.
    expect(Math.abs(l2 - l1)).toBeLessThan(1e-5 * l1);
    expect(Math.abs(l0 - l1)).toBeGreaterThan(1e-3);
  } finally {
    one.free();
    two.free();
    base.free();
  }
});

test("PEFT's initialisation: A uniform in ±1/sqrt(in), B zero, so the adapted model is the base bitwise", () => {
  const base = loadModel(TINY), model = loadModel(TINY);
  try {
    const adapter = model.addAdapter({ ...LORA_DEFAULTS, r: 8, targets: 'all-linear' }, { trainable: true, seed: 21 });
    for (const m of adapter.modules) {
      const a = m.A.read(), bound = 1 / Math.sqrt(m.inFeatures);
      let sum = 0, sq = 0, max = 0;
      for (const x of a) {
        max = Math.max(max, Math.abs(x));
        sum += x;
        sq += x * x;
      }
      expect(max).toBeLessThanOrEqual(bound);
      // U(-b, b) has mean 0 and variance b^2/3: loose bounds over r * in draws.
      expect(Math.abs(sum / a.length)).toBeLessThan(0.2 * bound);
      expect(Math.abs(sq / a.length / (bound * bound / 3) - 1)).toBeLessThan(0.3);
      expect(m.B.read().every((x) => x === 0)).toBe(true);
    }
    const t = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 350);
    expect(model.forward(t, 1, 16, t).loss).toBe(base.forward(t, 1, 16, t).loss);
    expect(bitwiseEqual(model.logitsRows(0, 16), base.logitsRows(0, 16))).toBe(true);
  } finally {
    base.free();
    model.free();
  }
});

test('modules_to_save on a tied head: a trainable copy of the embedding that trains while the embedding stays frozen', () => {
  const model = loadModel(TINY);
  try {
    const embed = model.params.get('wte.weight').read();
    const adapter = model.addAdapter({ ...LORA_DEFAULTS, r: 2, dropout: 0, modulesToSave: ['lm_head'] }, { trainable: true, seed: 2 });
    const head = adapter.saved.get('head')!;
    expect(bitwiseEqual(head.read(), embed)).toBe(true);
    const optimizer = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    const t = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 350);
    model.zeroGrad();
    model.backward(model.forward(t, 1, 16, t).count);
    expect(model.grads!.get(head.name).read().some((x) => x !== 0)).toBe(true);
    optimizer.update(1e-2);
    optimizer.free();
    expect(bitwiseEqual(head.read(), embed)).toBe(false);
    expect(bitwiseEqual(model.params.get('wte.weight').read(), embed)).toBe(true);
  } finally {
    model.free();
  }
});
