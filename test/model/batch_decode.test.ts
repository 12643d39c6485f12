/**
 * The BatchDecoder options generate() stands on: its memory plan is what it allocates, bad options
 * are refused naming the option, and the model's own adapter selection is what a one-slot decode
 * (generate) applies.
 */
import * as path from 'path';
import { loadModel } from '../../lib/model/checkpoint';
import { loadAdapter } from '../../lib/lora/apply';
import { APPLIED_ADAPTERS, BatchDecoder, planBatchDecodeMemory } from '../../lib/model/batch_decode';
import { generate, planGenerationMemory } from '../../lib/model/generate';
import { FIXTURES } from '../helpers';

describe.each([
  ['tiny-gpt2', 'lora-gpt2'],
  ['tiny-llama', 'lora-llama'],
])('%s', (base, lora) => {
  const model = loadModel(path.join(FIXTURES, base));
  afterAll(() => model.free());

  test.each([[1, 1], [20, 7], [40, 40]])('the plan of maxT %i with a %i-token prompt is what the decoder allocates', (maxT, prompt) => {
    const decoder = new BatchDecoder(model, 1, maxT, { prefillRows: prompt, stackedAdapters: true });
    try {
      expect(planGenerationMemory(model.config, maxT, prompt)['KV cache']).toBe(decoder.bytes);
      expect(planBatchDecodeMemory(model.config, 1, maxT, prompt)['KV cache']).toBe(decoder.bytes);
    } finally {
      decoder.free();
    }
    const several = new BatchDecoder(model, 3, maxT);
    try {
      expect(planBatchDecodeMemory(model.config, 3, maxT)['KV cache']).toBe(several.bytes);
    } finally {
      several.free();
    }
  });

  test('prefillRows outside 1..maxT, the applied adapters without stackedAdapters, or a slot that is not one of the decoder\'s, are refused by name', () => {
    for (const bad of [0, 11, 2.5, NaN]) {
      expect(() => new BatchDecoder(model, 1, 10, { prefillRows: bad })).toThrow(
        new RangeError(`BatchDecoder: expected options.prefillRows to be a whole number from 1 to maxT (10) but received ${bad}`),
      );
    }
    const decoder = new BatchDecoder(model, 1, 10);
    try {
      expect(() => decoder.prefill(0, [1, 2], APPLIED_ADAPTERS)).toThrow('BatchDecoder: the applied adapters need a decoder built with stackedAdapters');
      for (const slot of [-1, 1, 0.5, NaN]) expect(() => decoder.prefill(slot, [1, 2], null)).toThrow(new RangeError(`BatchDecoder.prefill: slot ${slot} is outside [0, 1)`));
    } finally {
      decoder.free();
    }
  });

  test("generate() applies the model's adapter selection: the first of two loaded adapters alone gives that adapter's tokens", () => {
    const options = { seed: 5, maxNewTokens: 16, temperature: 1.3, eosTokenId: null };
    const first = loadAdapter(model, path.join(FIXTURES, lora));
    try {
      const alone = generate(model, [5, 17, 42], options).tokens;
      loadAdapter(model, path.join(FIXTURES, lora));
      const stacked = generate(model, [5, 17, 42], options).tokens;
      model.selectAdapters([first]);
      expect(generate(model, [5, 17, 42], options).tokens).toEqual(alone);
      expect(alone).not.toEqual(stacked); // the selection made a difference
    } finally {
      model.removeAdapters();
    }
  });
});
