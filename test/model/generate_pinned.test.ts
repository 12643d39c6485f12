/**
 * generate()'s outputs pinned, for tiny GPT-2 and tiny Llama: the greedy tokens against the PyTorch
 * fixtures (an independent reference), and seeded sampling, which reads every logit through the
 * softmax, as literals recorded from the generate() that kept its own KV cache (DecodeState) before
 * it became a one-slot BatchDecoder (commit ecd3871). The sampled tokens have no outside reference:
 * they pin that the decode path did not change a token, with top-k/top-p, a prompt of 40 tokens run
 * to the context's end, and one and two stacked LoRA adapters.
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel } from '../../lib/model/checkpoint';
import { loadAdapter } from '../../lib/lora/apply';
import { generate } from '../../lib/model/generate';
import { FIXTURES } from '../helpers';

interface Pinned {
  seeds: number[][]; // seeds 1, 2, 3: prompt [5, 17, 42], temperature 1.3, 16 tokens
  topKP: number[]; // the 40-token prompt, seed 9, temperature 0.8, topK 40, topP 0.9, 12 tokens
  full: number[]; // the 40-token prompt, seed 4, temperature 2, until the context is full
  lora: number[]; // as seeds[0] but seed 5, with the fixture's adapter
  lora2: number[]; // the same with the adapter loaded twice (stacked)
}

const PINNED: Record<string, Pinned> = {
  'tiny-gpt2': {
    seeds: [
      [187, 74, 264, 336, 66, 283, 129, 335, 29, 17, 335, 87, 317, 291, 284, 299],
      [145, 129, 30, 112, 281, 332, 349, 175, 245, 178, 9, 119, 268, 331, 188, 138],
      [227, 124, 199, 196, 53, 209, 158, 340, 255, 208, 25, 8, 50, 32, 145, 160],
    ],
    topKP: [1, 120, 285, 17, 239, 86, 240, 69, 332, 98, 117, 311],
    full: [26, 1, 110, 118, 173, 172, 106, 139, 183, 343, 299, 14, 320, 88, 326, 241, 168, 21, 71, 36, 248, 265, 48, 80, 224],
    lora: [79, 62, 298, 143, 224, 232, 177, 252, 86, 172, 313, 150, 177, 215, 306, 239],
    lora2: [183, 178, 199, 302, 334, 226, 221, 162, 82, 237, 153, 167, 295, 30, 66, 213],
  },
  'tiny-llama': {
    seeds: [
      [54, 124, 87, 128, 87, 123, 106, 124, 82, 100, 90, 106, 55, 7, 79, 47],
      [92, 19, 99, 42, 52, 34, 118, 86, 113, 59, 46, 129, 92, 58, 87, 31],
      [107, 1, 58, 36, 30, 50, 98, 84, 71, 59, 83, 59, 96, 0, 82, 114],
    ],
    topKP: [8, 66, 8, 37, 102, 106, 26, 76, 30, 118, 2, 84],
    full: [
      103, 92, 33, 108, 55, 40, 124, 54, 33, 88, 62, 89, 92, 97, 4, 83, 7, 34, 129, 18, 108, 23, 125, 78, 82, 122, 125, 24, 102, 95, 112, 108, 48, 24,
      24, 123, 46, 75, 114, 110, 72, 79, 49, 63, 14, 33, 99, 12, 118, 119, 9, 125, 48, 106, 33, 107, 20, 41, 48, 109, 48, 54, 120, 108, 56, 84, 100, 70,
      105, 41, 3, 6, 54, 9, 31, 113, 79, 39, 97, 48, 8, 25, 120, 84, 14, 20, 68, 0, 18,
    ],
    lora: [43, 53, 50, 3, 71, 83, 95, 37, 19, 19, 69, 34, 0, 103, 79, 58],
    lora2: [8, 51, 19, 49, 64, 81, 129, 32, 48, 108, 85, 116, 72, 18, 72, 6],
  },
};

describe.each([
  ['tiny-gpt2', 'lora-gpt2'],
  ['tiny-llama', 'lora-llama'],
])('%s: generate() keeps its tokens', (base, lora) => {
  const pinned = PINNED[base];
  const model = loadModel(path.join(FIXTURES, base));
  const V = model.config.vocabSize;
  const long = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % V);
  afterAll(() => model.free());

  test('greedy tokens equal the PyTorch fixture', () => {
    const g = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${base}-ref.json`), 'utf8')).generate;
    expect(generate(model, g.prompt, { greedy: true, maxNewTokens: g.max_new_tokens, eosTokenId: null }).tokens).toEqual(g.new_tokens);
  });

  test('seeded sampling, top-k/top-p, and a run to the end of the context', () => {
    const sampled = [1, 2, 3].map((seed) => generate(model, [5, 17, 42], { seed, maxNewTokens: 16, temperature: 1.3, eosTokenId: null }).tokens);
    expect(sampled).toEqual(pinned.seeds);
    expect(generate(model, long, { seed: 9, maxNewTokens: 12, temperature: 0.8, topK: 40, topP: 0.9, eosTokenId: null }).tokens).toEqual(pinned.topKP);
    const full = generate(model, long, { seed: 4, maxNewTokens: 1000, temperature: 2, eosTokenId: null });
    expect(full).toEqual({ tokens: pinned.full, stop: 'context_full' });
    expect(long.length + full.tokens.length).toBe(model.config.maxPositions + 1); // the last token needs no position
  });

  test('with one LoRA adapter, then two stacked', () => {
    const options = { seed: 5, maxNewTokens: 16, temperature: 1.3, eosTokenId: null };
    loadAdapter(model, path.join(FIXTURES, lora));
    try {
      expect(generate(model, [5, 17, 42], options).tokens).toEqual(pinned.lora);
      loadAdapter(model, path.join(FIXTURES, lora));
      expect(generate(model, [5, 17, 42], options).tokens).toEqual(pinned.lora2);
    } finally {
      model.removeAdapters();
    }
  });
});
