/**
 * Gradient checkpointing (Decoder.setGradientCheckpointing, Trainer's gradient_checkpointing) keeps
 * each block's input only and recomputes the block in backward with the same kernels in the same
 * order, so everything a user sees must be BITWISE what the full layout gives: losses, every
 * gradient (packed rows with positions/segment ids, micro-batch accumulation into one gradient),
 * AdamW steps, logits without targets and generation. The reference is the model without
 * checkpointing, itself checked against PyTorch (gpt2.test.ts, llama_reference.test.ts). The
 * activation arena must shrink by exactly (n_layer - 1) block sets less their outputs, counted in
 * closed form from the config (sizes chosen so no tensor needs alignment padding).
 */
import * as path from 'path';
import { MemoryBudgetError } from '../../lib/errors';
import { loadModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder, IGNORE_INDEX, planMemory } from '../../lib/model/decoder';
import { attentionWidth, ffnInputWidth, qkvWidth } from '../../lib/model/decoder_config';
import { DropoutRates } from '../../lib/model/dropout';
import { generate } from '../../lib/model/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { AdamW, clipScale } from '../../lib/train/adamw';
import { Trainer } from '../../lib/train/trainer';
import { FIXTURES, seededRandom, TINY } from '../helpers';

/** The fixtures of every family (2 layers each) and fresh 4-layer models, so middle blocks are recomputed too. */
const MODELS = [
  'tiny-gpt2', 'tiny-llama', 'tiny-qwen3', 'tiny-mistral',
  'new:n_layer=4,n_head=2,n_embd=16,n_positions=32,vocab_size=61',
  'new:arch=qwen3,n_layer=4,n_head=4,n_kv_head=2,n_embd=32,head_dim=8,n_positions=32,vocab_size=61',
];

function openModel(source: string): Decoder {
  if (!source.startsWith('new:')) return loadModel(path.join(FIXTURES, source));
  const model = new Decoder(parseDecoderSpec(source));
  model.initRandom(11);
  return model;
}

interface MicroBatch {
  B: number; T: number; tokens: Int32Array; targets: Int32Array;
  positions: Int32Array | null; segmentIds: Int32Array | null;
}

/**
 * Two micro-batches: (2, 8) packed rows (row 0 holds examples of 5 and 3 tokens, positions
 * restarting at 0, the last target of each example ignored; row 1 one example), then a plain
 * (1, 11) row, fewer positions than the first (it reuses a prefix of the activations).
 */
function microBatches(V: number): MicroBatch[] {
  const rand = seededRandom(5);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * V));
  const lengths = [[5, 3], [8]];
  const positions: number[] = [], segmentIds: number[] = [];
  const tokens = ids(16), targets = ids(16);
  let row = 0;
  for (const examples of lengths) {
    let at = row * 8;
    examples.forEach((n, segment) => {
      for (let t = 0; t < n; t++) {
        positions.push(t);
        segmentIds.push(segment);
      }
      targets[at + n - 1] = IGNORE_INDEX;
      at += n;
    });
    row++;
  }
  return [
    { B: 2, T: 8, tokens, targets, positions: Int32Array.from(positions), segmentIds: Int32Array.from(segmentIds) },
    { B: 1, T: 11, tokens: ids(11), targets: ids(11), positions: null, segmentIds: null },
  ];
}

/** Training-mode dropout of a forward: the seed (per micro-batch: + its index) and the rates. */
interface Dropout {
  seed: number;
  rates: DropoutRates;
}

/** One accumulated gradient over the micro-batches (of their mean loss); returns each micro-batch's loss sum. */
function accumulate(model: Decoder, batches: MicroBatch[], dropout: Dropout | null = null): number[] {
  const scored = batches.reduce((n, b) => n + b.targets.filter((t) => t !== IGNORE_INDEX).length, 0);
  model.zeroGrad();
  return batches.map((b, i) => {
    const drop = dropout ? { dropoutSeed: dropout.seed + i, dropout: dropout.rates } : {};
    const r = model.forward(b.tokens, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds, ...drop });
    model.backward(scored);
    return r.lossSum;
  });
}

/** a and b hold the same float32 bit patterns; the message names the first difference. */
function expectBitwiseEqual(what: string, a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) throw new Error(`${what}: element ${i} is ${a[i]} with checkpointing but ${b[i]} without`);
  }
}

function tensorsOf(arena: { tensors: Map<string, { read(): Float32Array }> }): Map<string, Float32Array> {
  return new Map([...arena.tensors].map(([name, t]) => [name, t.read()]));
}

describe.each(MODELS)('%s', (source) => {
  test('the accumulated gradients of packed and plain micro-batches are bitwise those without checkpointing, and so are the losses', () => {
    const model = openModel(source);
    const batches = microBatches(model.config.vocabSize);
    const plainLosses = accumulate(model, batches);
    const plainGrads = tensorsOf(model.grads!);
    model.setGradientCheckpointing(true);
    expect(model.gradientCheckpointing).toBe(true);
    const losses = accumulate(model, batches);
    expect(losses).toEqual(plainLosses);
    for (const [name, g] of tensorsOf(model.grads!)) expectBitwiseEqual(`gradient of ${name}`, g, plainGrads.get(name)!);
    // Every gradient took part: a test over zeros could not tell a missing recompute.
    for (const [name, g] of plainGrads) if (!g.some((x) => x !== 0)) throw new Error(`gradient of ${name} is all zeros`);
    model.free();
  });

  test('with dropout at every site, the recompute regenerates the masks: gradients and losses bitwise those without checkpointing', () => {
    const model = openModel(source);
    const batches = microBatches(model.config.vocabSize);
    const dropout = { seed: 2 ** 40 + 7, rates: { embedding: 0.2, residual: 0.2, attention: 0.2 } };
    const undropped = accumulate(model, batches);
    const plainLosses = accumulate(model, batches, dropout);
    // The masks change the result, or this test would say nothing about them.
    expect(plainLosses).not.toEqual(undropped);
    const plainGrads = tensorsOf(model.grads!);
    model.setGradientCheckpointing(true);
    expect(accumulate(model, batches, dropout)).toEqual(plainLosses);
    for (const [name, g] of tensorsOf(model.grads!)) expectBitwiseEqual(`gradient of ${name}`, g, plainGrads.get(name)!);
    model.free();
  });

  test('three AdamW steps give bitwise the same losses and weights', () => {
    const plain = openModel(source), checkpointed = openModel(source);
    checkpointed.setGradientCheckpointing(true);
    const batches = microBatches(plain.config.vocabSize);
    const options = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const optimizers = [new AdamW(plain, options), new AdamW(checkpointed, options)];
    for (let step = 0; step < 3; step++) {
      const [a, b] = [plain, checkpointed].map((model, i) => {
        const losses = accumulate(model, batches);
        const norm = model.gradNorm();
        optimizers[i].update(1e-2, clipScale(norm, 1.0));
        return { losses, norm };
      });
      expect(b).toEqual(a);
      const weights = tensorsOf(plain.params);
      for (const [name, w] of tensorsOf(checkpointed.params)) expectBitwiseEqual(`step ${step + 1}: ${name}`, w, weights.get(name)!);
    }
    for (const o of optimizers) o.free();
    plain.free();
    checkpointed.free();
  });

  test('the activation arena is smaller by (n_layer - 1) block sets less their outputs, as planned', () => {
    const model = openModel(source);
    const cfg = model.config;
    // B*T = 16 rows: every tensor is a multiple of 16 floats, so the arena has no padding to count.
    const B = 2, T = 8, rows = B * T;
    const C = cfg.width, NH = cfg.heads, NKV = cfg.kvHeads, QKV = qkvWidth(cfg);
    const meanAndRstd = cfg.norm === 'layernorm' ? 2 : 1;
    // One block's buffers but its output (B*T, C): ln1 and its statistics, q/k-norm input and rstd
    // (Qwen3), qkv, attention output and log-sum-exp (B, NH, T), attproj, residual2, ln2 and its
    // statistics, fch, its activation, fcproj.
    const blockFloats = rows * (C + meanAndRstd + (cfg.qkNorm ? QKV + NH + NKV : 0) + QKV + attentionWidth(cfg) + NH
      + C + C + C + meanAndRstd + ffnInputWidth(cfg) + cfg.ffnWidth + C);
    const tokens = new Int32Array(rows).fill(1);
    const arenaBytes = (checkpointing: boolean) => {
      model.setGradientCheckpointing(checkpointing);
      model.zeroGrad();
      const r = model.forward(tokens, B, T, tokens);
      model.backward(r.count);
      const bytes = model.memory().activationsBytes;
      expect(bytes).toBe(planMemory(cfg, { batch: { B, T }, training: true, gradientCheckpointing: checkpointing }).parts.activations);
      return bytes;
    };
    const full = arenaBytes(false);
    // Switching reallocates at the next forward, in both directions.
    expect(full - arenaBytes(true)).toBe(4 * (cfg.layers - 1) * blockFloats);
    expect(arenaBytes(false)).toBe(full);
    model.free();
  });

  test('logits without targets and greedy generation are unaffected', () => {
    const plain = openModel(source), checkpointed = openModel(source);
    checkpointed.setGradientCheckpointing(true);
    const [batch] = microBatches(plain.config.vocabSize);
    const prompt = Array.from(batch.tokens.subarray(0, 5));
    const outputs = [plain, checkpointed].map((model) => {
      // A checkpointed training step first: its shared buffers must not leak into what follows.
      accumulate(model, [batch]);
      model.forward(batch.tokens, batch.B, batch.T, null, { positions: batch.positions, segmentIds: batch.segmentIds });
      const logits = model.logitsRows(0, batch.B * batch.T);
      return { logits, tokens: generate(model, prompt, { greedy: true, maxNewTokens: 6, eosTokenId: null }).tokens };
    });
    expectBitwiseEqual('logits', outputs[1].logits, outputs[0].logits);
    expect(outputs[1].tokens).toEqual(outputs[0].tokens);
    plain.free();
    checkpointed.free();
  });
});

test('setGradientCheckpointing takes true or false only', () => {
  const model = openModel('tiny-gpt2');
  expect(() => model.setGradientCheckpointing('yes' as unknown as boolean)).toThrow(
    new TypeError('setGradientCheckpointing: expected true or false but received the string "yes"'),
  );
  expect(model.gradientCheckpointing).toBe(false);
  model.free();
});

describe('Trainer', () => {
  const DATA = path.join(FIXTURES, 'eval-text.txt');

  test("gradient_checkpointing sets the model's layout and its memory plan counts it", async () => {
    const activationsKB = async (gradient_checkpointing: boolean) => {
      const error = await new Trainer({ model: TINY, data: DATA, max_memory: '100KB', batch_size: 4, seq_len: 16, gradient_checkpointing }).fit().catch((e: Error) => e);
      expect(error).toBeInstanceOf(MemoryBudgetError);
      const m = /activations ([\d.]+) KB/.exec((error as Error).message);
      return { kb: Number(m![1]), message: (error as Error).message };
    };
    const cfg = loadModel(TINY).config;
    const kb = (bytes: number) => Number((bytes / 1000).toPrecision(3));
    const plan = (gradientCheckpointing: boolean) => planMemory(cfg, { batch: { B: 4, T: 16 }, training: true, gradientCheckpointing }).parts.activations;
    const without = await activationsKB(false), withIt = await activationsKB(true);
    expect(without.kb).toBe(kb(plan(false)));
    expect(withIt.kb).toBe(kb(plan(true)));
    expect(withIt.kb).toBeLessThan(without.kb);
    // Only a run without it is told it could turn it on.
    expect(without.message).toMatch(/, or turn on gradient_checkpointing$/);
    expect(withIt.message).not.toMatch(/gradient_checkpointing/);
  });

  test('a model passed in trains with the run\'s setting', async () => {
    const model = loadModel(TINY);
    const result = await new Trainer({ data: DATA, max_steps: 1, batch_size: 2, seq_len: 16, gradient_checkpointing: true }, { model, tokenizer: loadTokenizer(TINY) }).fit();
    expect(result.reason).toBe('completed');
    expect(model.gradientCheckpointing).toBe(true);
    model.free();
  });
});
