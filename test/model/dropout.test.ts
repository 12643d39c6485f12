/**
 * The model's dropout settings (lib/model/dropout.ts): which config.json keys give which rates, the
 * override, the seeds of the sites, and that a forward drops only in training (with a dropout seed).
 * The masks themselves are checked by test/kernels/dropout.test.ts and attention.test.ts, training with
 * them against PyTorch by dropout_fixtures.test.ts.
 */
import * as path from 'path';
import { CheckpointError } from '../../lib/errors';
import { loadModel } from '../../lib/model/checkpoint';
import { parseModelConfig } from '../../lib/model/config';
import { dropoutStreamSeed, embeddingDropoutSeed, layerDropoutSeed, moduleDropoutSeed, trainingDropout } from '../../lib/model/dropout';
import { mix64 } from '../reference/dropout';
import { FIXTURES, tinyRef } from '../helpers';

const GPT2 = { model_type: 'gpt2', vocab_size: 10, n_positions: 8, n_embd: 4, n_layer: 1, n_head: 1 };
const LLAMA = { model_type: 'llama', vocab_size: 10, max_position_embeddings: 8, hidden_size: 4, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 8 };

describe('rates', () => {
  test("GPT-2: config.json's embd_pdrop, resid_pdrop, attn_pdrop (0.1 when absent, as transformers)", () => {
    expect(trainingDropout(parseModelConfig(GPT2, 'c'), null)).toEqual({ embedding: 0.1, residual: 0.1, attention: 0.1 });
    const cfg = parseModelConfig({ ...GPT2, embd_pdrop: 0.2, resid_pdrop: 0, attn_pdrop: 0.3 }, 'c');
    expect(trainingDropout(cfg, null)).toEqual({ embedding: 0.2, residual: 0, attention: 0.3 });
    expect(trainingDropout(cfg, 0.05)).toEqual({ embedding: 0.05, residual: 0.05, attention: 0.05 });
    expect(trainingDropout(cfg, 0)).toEqual({ embedding: 0, residual: 0, attention: 0 });
  });

  test("the Llama family: attention_dropout on the probabilities only (0 when absent); the override sets that site only", () => {
    expect(trainingDropout(parseModelConfig(LLAMA, 'c'), null)).toEqual({ embedding: 0, residual: 0, attention: 0 });
    expect(trainingDropout(parseModelConfig({ ...LLAMA, attention_dropout: 0.25 }, 'c'), null)).toEqual({ embedding: 0, residual: 0, attention: 0.25 });
    expect(trainingDropout(parseModelConfig(LLAMA, 'c'), 0.1)).toEqual({ embedding: 0, residual: 0, attention: 0.1 });
  });

  test('a rate of 1 (allowed by config.json) is refused for training, naming the key; the override replaces it', () => {
    const cfg = parseModelConfig({ ...GPT2, resid_pdrop: 1 }, 'c');
    expect(() => trainingDropout(cfg, null)).toThrow(CheckpointError);
    expect(() => trainingDropout(cfg, null)).toThrow(/resid_pdrop = 1 would drop every value in training; expected a probability in \[0, 1\)/);
    expect(trainingDropout(cfg, 0.1).residual).toBe(0.1);
    expect(() => parseModelConfig({ ...LLAMA, attention_dropout: 1.5 }, 'c')).toThrow(/attention_dropout must be a number in \[0, 1\] but is 1.5/);
  });
});

describe('seeds', () => {
  // The seed of stream s is the definition's bits(s) >> 11, restated here with the test reference's mix64.
  const GOLDEN = 0x9e3779b97f4a7c15n, M = (1n << 64n) - 1n;
  const bits = (seed: number, index: number) => mix64((mix64((BigInt(seed) + GOLDEN) & M) + (BigInt(index) + 1n) * GOLDEN) & M);

  test('stream seeds are the top 53 bits of the mask definition at the stream index', () => {
    for (const [seed, stream] of [[0, 0], [1337, 5], [2 ** 53 - 1, 2 ** 32 + 7]]) {
      expect(dropoutStreamSeed(seed, stream)).toBe(Number(bits(seed, stream) >> 11n));
    }
  });

  test('every site of every layer and every LoRA module draws from its own stream', () => {
    const seed = 5742089524897792;
    const seeds = [embeddingDropoutSeed(seed), ...[0, 1, 2].flatMap((l) => (['attention', 'attentionOutput', 'mlpOutput'] as const).map((s) => layerDropoutSeed(seed, l, s))),
      ...[0, 1, 2, 3].map((m) => moduleDropoutSeed(seed, m))];
    expect(new Set(seeds).size).toBe(seeds.length);
    expect(seeds.every((s) => Number.isSafeInteger(s) && s >= 0)).toBe(true);
  });
});

describe('a forward drops only in training', () => {
  const ref = tinyRef();
  const tokens = Int32Array.from(ref.tokens.flat()), targets = Int32Array.from(ref.targets.flat());
  const rates = { embedding: 0.1, residual: 0.1, attention: 0.1 };

  test('without a dropout seed (evaluation) the rates change nothing; with rates 0 a seed changes nothing; with both the loss moves', () => {
    const model = loadModel(path.join(FIXTURES, 'tiny-gpt2'));
    const plain = model.forward(tokens, ref.B, ref.T, targets).losses;
    expect(model.forward(tokens, ref.B, ref.T, targets, { dropout: rates }).losses).toEqual(plain);
    expect(model.forward(tokens, ref.B, ref.T, targets, { dropoutSeed: 3, dropout: { embedding: 0, residual: 0, attention: 0 } }).losses).toEqual(plain);
    const dropped = model.forward(tokens, ref.B, ref.T, targets, { dropoutSeed: 3, dropout: rates }).losses;
    expect(dropped).not.toEqual(plain);
    expect(model.forward(tokens, ref.B, ref.T, targets, { dropoutSeed: 3, dropout: rates }).losses).toEqual(dropped);
    expect(() => model.forward(tokens, ref.B, ref.T, targets, { dropoutSeed: 3, dropout: { ...rates, attention: 1 } })).toThrow(/dropout.attention to be a probability in \[0, 1\) but received number 1/);
    model.free();
  });
});
