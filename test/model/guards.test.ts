/**
 * What the library refuses before doing any work: memory plans that do not fit (computed from the
 * allocation specs, checked here against a closed-form count and against what is then allocated),
 * absurd model sizes, non-finite or integer weights, non-finite evaluation losses, invalid AdamW
 * options, and ill-typed options, seeds and models given to the public functions.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '../../lib/config';
import { MemoryBudgetError, NonFiniteError } from '../../lib/errors';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { countParameters, loadModelConfig, parseGPT2Config, parseModelSpec } from '../../lib/model/config';
import { generate, planGenerationMemory } from '../../lib/model/generate';
import { Decoder, planMemory } from '../../lib/model/decoder';
import { AdamW } from '../../lib/train/adamw';
import { evalLM, trainLM } from '../../lib/train/lm';
import { Trainer } from '../../lib/train/trainer';
import { parseByteSize } from '../../lib/util/memory';
import { Rng } from '../../lib/util/rng';
import { FIXTURES, tempDir, TINY } from '../helpers';

const DATA = path.join(FIXTURES, 'eval-text.txt');

/** A copy of the tiny model folder whose safetensors file is rewritten by `edit` (raw tensors by name). */
function editedTinyCopy(edit: (tensors: Map<string, { dtype: string; shape: number[]; data: Uint8Array }>) => void): string {
  const dir = tempDir('gptune-guard-model-');
  for (const name of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, name), path.join(dir, name));
  const st = readSafetensors(path.join(TINY, 'model.safetensors'));
  const tensors = new Map([...st.tensors].map(([n, t]) => [n, { dtype: t.dtype as string, shape: t.shape, data: t.data }]));
  edit(tensors);
  // Written by hand (not writeSafetensors, which writes F32 only): header length, JSON header, data.
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([length, json, ...[...tensors.values()].map((t) => Buffer.from(t.data))]));
  return dir;
}

function f32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer.slice(0));
}

describe('memory plan', () => {
  const cfg = parseModelSpec('new:n_layer=3,n_head=4,n_embd=40,n_positions=24,vocab_size=300');

  test('parameters and activations match a closed-form count of floats (plus at most 15 floats of alignment per tensor)', () => {
    const B = 3, T = 7, BT = B * T, C = 40, I = 160, V = 300, NH = 4, L = 3;
    const plan = planMemory(cfg, { batch: { B, T }, training: true });
    const params = countParameters(cfg);
    const tensorsPerModel = 2 + 12 * L + 2;
    expect(plan.parts.parameters).toBeGreaterThanOrEqual(4 * params);
    expect(plan.parts.parameters).toBeLessThanOrEqual(4 * (params + 15 * tensorsPerModel));
    expect(plan.parts.gradients).toBe(plan.parts.parameters);
    expect(plan.parts['AdamW moments']).toBe(2 * plan.parts.parameters);
    // Per block: ln1, attproj, atty, residual2, ln2, fcproj, residual3 (C each), qkv (3C), fch and fchGelu (I each),
    // four LayerNorm statistics (1 each), the attention log-sum-exp (NH); then encoded, lnf (C each), its two
    // statistics, logits (V), losses and the cross-entropy's lse; backward: 3 C-wide, one 3C, two I-wide buffers.
    const perBlock = BT * (10 * C + 2 * I + 4 + NH);
    const outer = BT * (2 * C + 2 + V + 2) + BT * (3 * C + 3 * C + 2 * I);
    const floats = L * perBlock + outer;
    const tensorsPerActivation = 15 * L + 1 + 6 + 6;
    expect(plan.parts.activations).toBeGreaterThanOrEqual(4 * floats);
    expect(plan.parts.activations).toBeLessThanOrEqual(4 * (floats + 15 * tensorsPerActivation));
    expect(plan.total).toBe(plan.parts.parameters * 4 + plan.parts.activations);
    // Forward only: no gradients, no moments, no backward scratch.
    const forward = planMemory(cfg, { batch: { B, T }, training: false });
    expect(Object.keys(forward.parts)).toEqual(['parameters', 'activations']);
    expect(forward.parts.activations).toBeLessThan(plan.parts.activations - 4 * BT * (6 * C + 2 * I) + 4 * 15 * 6 + 1);
  });

  test('the plan is what a training step then allocates', () => {
    const B = 3, T = 7;
    const model = new Decoder(cfg);
    model.initRandom(1);
    const optimizer = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    model.zeroGrad();
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 300);
    const r = model.forward(tokens, B, T, tokens);
    model.backward(r.count);
    optimizer.update(1e-3);
    const used = model.memory();
    const plan = planMemory(cfg, { batch: { B, T }, training: true });
    expect(used.paramsBytes).toBe(plan.parts.parameters);
    expect(used.gradsBytes).toBe(plan.parts.gradients);
    expect(optimizer.m.bytes + optimizer.v.bytes).toBe(plan.parts['AdamW moments']);
    expect(used.activationsBytes).toBe(plan.parts.activations);
    optimizer.free();
    model.free();
  });

  test('generation plans the parameters, a KV cache of 2 x n_layer x n_positions x n_embd floats and one step\'s buffers (10 C-wide, 2 I-wide)', () => {
    const parts = planGenerationMemory(cfg);
    expect(parts.parameters).toBe(planMemory(cfg, { batch: null, training: false }).total);
    expect(parts['KV cache']).toBeGreaterThanOrEqual(4 * 2 * 3 * 24 * 40);
    expect(parts['KV cache']).toBeLessThanOrEqual(4 * (2 * 3 * 24 * 40 + 24 * (10 * 40 + 2 * 160) + 40 + 300 + 15 * 16));
  });

  test('a Trainer whose plan exceeds max_memory refuses before allocating, naming the bytes and what to lower', async () => {
    const trainer = new Trainer({ model: TINY, data: DATA, max_memory: '1MB', batch_size: 4, seq_len: 16 });
    await expect(trainer.fit()).rejects.toThrow(MemoryBudgetError);
    await expect(new Trainer({ model: TINY, data: DATA, max_memory: '1MB', batch_size: 4, seq_len: 16 }).fit()).rejects.toThrow(
      /^training needs [\d.]+ MB \(parameters [\d.]+ KB, gradients [\d.]+ KB, AdamW moments [\d.]+ KB, activations [\d.]+ KB\) but 1.00 MB is allowed by max_memory \(--max-memory\); lower batch_size \(--batch-size\), seq_len \(--seq-len\) or the model size/,
    );
    // Saving is planned too: a checkpointing run holds the parameters and both AdamW moments read back
    // and encoded (4x the parameter bytes), a run that only publishes output_dir a copy and its encoding (2x).
    const params = planMemory(loadModelConfig(TINY), { batch: null, training: false }).parts.parameters;
    const saving = async (config: object) => {
      const error = await new Trainer({ model: TINY, data: DATA, max_memory: '1MB', batch_size: 4, seq_len: 16, ...config }).fit().catch((e: Error) => e);
      const m = /checkpoint writing ([\d.]+) KB/.exec((error as Error).message);
      return m === null ? null : Number(m[1]);
    };
    const kb = (bytes: number) => Number((bytes / 1000).toPrecision(3));
    expect(await saving({})).toBeNull();
    expect(await saving({ output_dir: path.join(tempDir(), 'out') })).toBe(kb(2 * params));
    expect(await saving({ output_dir: path.join(tempDir(), 'out'), save_every: 5 })).toBe(kb(4 * params));
    // A batch size no machine holds is refused at once, before the data is built.
    const started = Date.now();
    await expect(new Trainer({ model: TINY, data: DATA, batch_size: 100000000 }).fit()).rejects.toThrow(/^training needs [\d.]+ TB .* lower batch_size/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(() => new Trainer({ model: TINY, data: DATA, max_memory: 'lots' })).toThrow(
      new ConfigError('Trainer config: key \'max_memory\': expected a size such as "8GB" or "512MiB" or null but received the string "lots"'),
    );
  });

  test('byte sizes: decimal and binary units', () => {
    expect([parseByteSize('8GB'), parseByteSize('512MiB'), parseByteSize('1.5G'), parseByteSize('1000'), parseByteSize('2 kb')]).toEqual([8e9, 512 * 2 ** 20, 1.5 * 2 ** 30, 1000, 2000]);
    for (const bad of ['', 'GB', '-1GB', '0', '8 parsecs', '1e9']) expect(parseByteSize(bad)).toBeNull();
  });
});

describe('model sizes', () => {
  test('absurd sizes in new:... and config.json name the key and its bound', () => {
    expect(() => parseModelSpec('new:n_layer=100000,n_head=4,n_embd=64')).toThrow('model spec "new:n_layer=100000,n_head=4,n_embd=64": n_layer must be at most 1024 but is 100000');
    expect(() => parseModelSpec('new:n_layer=-1')).toThrow('n_layer must be a non-negative integer but received "-1"');
    expect(() => parseModelSpec('new:n_embd=1.5')).toThrow('n_embd must be a non-negative integer but received "1.5"');
    const base = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
    expect(() => parseGPT2Config({ ...base, n_embd: 1e9, n_head: 1 }, 'config.json')).toThrow('config.json: n_embd must be at most 65536 but is 1000000000');
    expect(() => parseGPT2Config({ ...base, vocab_size: 2 ** 30 }, 'config.json')).toThrow('config.json: vocab_size must be at most 16777216 but is 1073741824');
    expect(() => parseGPT2Config({ ...base, n_positions: 0 }, 'config.json')).toThrow('config.json: n_positions must be a positive integer but is 0');
  });
});

describe('weights that cannot be trusted', () => {
  test('a NaN weight is an error naming the tensor, at load', () => {
    const dir = editedTinyCopy((t) => {
      const name = [...t.keys()].find((n) => n.endsWith('h.1.mlp.c_proj.weight'))!;
      const values = new Float32Array(t.get(name)!.data.buffer.slice(0));
      values[5] = NaN;
      t.get(name)!.data = f32Bytes(values);
    });
    expect(() => loadModel(dir)).toThrow(NonFiniteError);
    expect(() => loadModel(dir)).toThrow(/model\.safetensors: tensor "(transformer\.)?h\.1\.mlp\.c_proj\.weight" holds NaN or infinite values/);
  });

  test('an integer tensor is an error naming the tensor and its dtype, not cast to float', () => {
    const dir = editedTinyCopy((t) => {
      const name = [...t.keys()].find((n) => n.endsWith('ln_f.bias'))!;
      const entry = t.get(name)!;
      entry.dtype = 'I32';
      entry.data = new Uint8Array(new Int32Array(entry.shape[0]).fill(1).buffer);
    });
    expect(() => loadModel(dir)).toThrow(/tensor "(transformer\.)?ln_f\.bias" has dtype I32 but model weights must be floating point \(F32, F16, BF16, F64\)/);
  });

  test('evaluation whose loss is not finite is an error, not NaN', () => {
    const model = loadModel(TINY);
    const lnf = model.params.get('ln_f.weight');
    const v = lnf.read();
    for (let i = 0; i < v.length; i++) v[i] *= 1e38; // finite weights whose logits overflow
    lnf.write(v);
    const tokens = Int32Array.from({ length: 40 }, (_, i) => (i * 13) % 300);
    expect(() => evalLM(model, tokens, 16, 2)).toThrow(/^evaluation: the loss over \d+ tokens is NaN: the model's outputs are not finite/);
    model.free();
  });
});

describe('the public API checks its arguments', () => {
  test('generate: options, seed, model and prompt', () => {
    const model = loadModel(TINY);
    expect(() => generate(model, [1, 2], null as never)).toThrow(new TypeError('generate: expected options to be an object (or omitted) but received null'));
    expect(() => generate(model, [1, 2], { seed: NaN })).toThrow(new TypeError('generate: expected options.seed to be a whole number >= 0 but received number NaN'));
    expect(() => generate(model, [1, 2], { seed: '7' as never })).toThrow(new TypeError('generate: expected options.seed to be a whole number >= 0 but received the string "7"'));
    expect(() => generate({} as never, [1, 2])).toThrow(new TypeError('generate: expected model to be a Decoder model but received an object'));
    expect(() => generate(model, null as never)).toThrow(new TypeError('generate: expected prompt to be an array of token ids but received null'));
    expect(generate(model, [1, 2], { maxNewTokens: 2, seed: 3 }).tokens).toHaveLength(2);
    model.free();
  });

  test('AdamW: invalid options are refused when it is made, not by the kernel at the first update', () => {
    const model = loadModel(TINY);
    const ok = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
    expect(() => new AdamW(model, { ...ok, eps: 0 })).toThrow(new RangeError('AdamW: expected options.eps to be a number > 0 but received number 0'));
    expect(() => new AdamW(model, { ...ok, beta1: 1 })).toThrow(new RangeError('AdamW: expected options.beta1 to be a number in [0, 1) but received number 1'));
    expect(() => new AdamW(model, { ...ok, beta2: -0.1 })).toThrow(new RangeError('AdamW: expected options.beta2 to be a number in [0, 1) but received number -0.1'));
    expect(() => new AdamW(model, { ...ok, weightDecay: -1 })).toThrow(new RangeError('AdamW: expected options.weightDecay to be a number >= 0 but received number -1'));
    expect(() => new AdamW(model, null as never)).toThrow(new TypeError('AdamW: expected options to be an object (or omitted) but received null'));
    model.free();
  });

  test('loadModel, saveModel, trainLM, Trainer and Rng', async () => {
    expect(() => loadModel(TINY, null as never)).toThrow(new TypeError('loadModel: expected options to be an object (or omitted) but received null'));
    expect(() => saveModel(null as never, tempDir())).toThrow(new TypeError('saveModel: expected model to be a Decoder model but received null'));
    const model = loadModel(TINY);
    const o = { steps: 1, batchSize: 1, seqLen: 8, gradAccum: 1, lr: 1e-3, minLr: 0, warmup: 0, schedule: 'constant' as const, gradClip: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, shuffle: true };
    const tokens = Int32Array.from({ length: 40 }, (_, i) => i % 300);
    await expect(trainLM(model, tokens, { ...o, seed: NaN }, () => undefined)).rejects.toThrow(new TypeError('trainLM: expected options.seed to be a whole number >= 0 but received number NaN'));
    await expect(trainLM(model, tokens, { ...o, seed: 1 }, null as never)).rejects.toThrow(new TypeError('trainLM: expected onStep to be a function but received null'));
    expect(() => new Trainer({ data: DATA }, { model: {} as never })).toThrow(new TypeError('Trainer: expected options.model to be a Decoder model but received an object'));
    expect(() => new Trainer({ model: TINY, data: DATA, seed: NaN })).toThrow(new ConfigError('Trainer config: key \'seed\': expected a whole number >= 0 but received number NaN'));
    expect(() => new Trainer({ model: TINY, data: DATA, seed: 'x' as never })).toThrow(new ConfigError('Trainer config: key \'seed\': expected a whole number >= 0 but received the string "x"'));
    expect(() => new Rng(NaN)).toThrow(new TypeError('Rng: expected a finite number as the seed but received NaN'));
    expect(() => new Rng('3' as never)).toThrow(new TypeError('Rng: expected a finite number as the seed but received "3"'));
    model.free();
  });
});
