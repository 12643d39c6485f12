/**
 * The backward's gradient-region hook (Decoder.backward's onFinal, the overlapped all-reduce's source): the
 * regions it reports cover the trained gradient arena exactly once, each is final when reported (its values
 * then equal the values after the whole backward), block L-1's come before block 0's, and a backward with a
 * listener computes bitwise the gradients of one without. GPT-2 (tied head), the Llama family (tied, and
 * untied with QK-norm) and LoRA (adapters only, with modules_to_save).
 */
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder, layerParamName } from '../../lib/model/decoder';
import { loraA } from '../../lib/lora/adapter';
import { LoraSettings } from '../../lib/lora/modules';
import { Rng } from '../../lib/util/rng';
import { TINY_LLAMA_SPEC } from '../llama_helpers';

const GPT2_SPEC = 'new:n_layer=3,n_head=2,n_embd=16,n_positions=32,vocab_size=97,eos_token_id=96';
const B = 2, T = 9;

interface Case {
  name: string;
  build: () => Decoder;
  lora?: LoraSettings;
}

const lora = (modulesToSave: string[]): LoraSettings => ({ r: 2, alpha: 4, dropout: 0, targets: 'all-linear', useRslora: false, modulesToSave });

const CASES: Case[] = [
  { name: 'GPT-2 (tied head)', build: () => new Decoder(parseDecoderSpec(GPT2_SPEC)) },
  { name: 'Llama (tied head)', build: () => new Decoder(parseDecoderSpec(TINY_LLAMA_SPEC)) },
  { name: 'Llama (untied head, QK-norm)', build: () => new Decoder({ ...parseDecoderSpec(TINY_LLAMA_SPEC), tiedHead: false, qkNorm: true }) },
  { name: 'GPT-2 LoRA (lm_head saved)', build: () => new Decoder(parseDecoderSpec(GPT2_SPEC)), lora: lora(['lm_head']) },
  { name: 'Llama LoRA (untied, lm_head and embed_tokens saved)', build: () => new Decoder({ ...parseDecoderSpec(TINY_LLAMA_SPEC), tiedHead: false }), lora: lora(['lm_head', 'embed_tokens']) },
];

function batch(seed: number, V: number): { tokens: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(V));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(V));
  return { tokens, targets };
}

/** Two micro-batches accumulated; the second backward hands its regions to `onFinal`. */
function accumulate(model: Decoder, onFinal: ((offset: number, numel: number) => void) | null): Float32Array {
  model.zeroGrad();
  const V = model.config.vocabSize;
  for (const [i, seed] of [11, 12].entries()) {
    const { tokens, targets } = batch(seed, V);
    model.forward(tokens, B, T, targets);
    model.backward(2 * B * T, null, i === 1 ? onFinal : null);
  }
  return model.grads!.arena.read(0, model.grads!.numel);
}

describe.each(CASES)('gradient regions: $name', ({ build, lora: settings }) => {
  let model: Decoder;
  beforeAll(() => {
    model = build();
    model.initRandom(3, 0.2);
    if (settings) {
      model.addAdapter(settings, { trainable: true, seed: 4 });
      // PEFT starts B at 0; non-zero B gives every A a gradient.
      for (const t of model.trainingAdapter!.arena.tensors.values()) t.write(Float32Array.from({ length: t.numel }, (_, i) => 0.05 * Math.sin(i + t.offset)));
    }
  });
  afterAll(() => model.free());

  test('cover the arena once, each final when reported, the last block before the first, the same gradients', () => {
    const reported: { offset: number; numel: number; values: Float32Array }[] = [];
    const withListener = accumulate(model, (offset, numel) => reported.push({ offset, numel, values: model.grads!.arena.read(offset, numel) }));
    const n = model.grads!.numel;
    // Exactly once: sorted, the ranges tile [0, n).
    const sorted = [...reported].sort((a, b) => a.offset - b.offset);
    let at = 0;
    for (const r of sorted) {
      expect(r.offset).toBe(at);
      expect(r.numel).toBeGreaterThan(0);
      at += r.numel;
    }
    expect(at).toBe(n);
    // Final when reported: nothing the backward did afterwards changed it.
    for (const r of reported) expect(Array.from(r.values)).toEqual(Array.from(withListener.subarray(r.offset, r.offset + r.numel)));
    // The test can fail: the second micro-batch changed (almost) every region after the first one's backward.
    // Reporting a region before its backward would have recorded those values instead.
    const cfg = model.config;
    // Early: at least one report per block, and block L-1's before block 0's.
    expect(reported.length).toBeGreaterThanOrEqual(cfg.layers + 1);
    const g = model.grads!;
    const firstOf = (l: number) => {
      const name = settings ? loraA(model.trainingAdapter!.modules.find((m) => m.layer === l)!.key) : layerParamName(cfg, l, 'qkvw');
      const t = g.get(name);
      return reported.findIndex((r) => r.offset <= t.offset && t.offset < r.offset + r.numel);
    };
    expect(firstOf(cfg.layers - 1)).toBeGreaterThanOrEqual(0);
    expect(firstOf(cfg.layers - 1)).toBeLessThan(firstOf(0));
    // The hook changes nothing: the same two backwards without a listener give bitwise the same gradients.
    const without = accumulate(model, null);
    expect(Buffer.from(without.buffer).equals(Buffer.from(withListener.buffer))).toBe(true);
    // And they are not all zero (the comparison above would hold trivially).
    expect(withListener.some((x) => x !== 0)).toBe(true);
  });

  test('a region reported before its block\'s backward would be caught: the first micro-batch alone gives other values', () => {
    const first = (() => {
      model.zeroGrad();
      const { tokens, targets } = batch(11, model.config.vocabSize);
      model.forward(tokens, B, T, targets);
      model.backward(2 * B * T);
      return model.grads!.arena.read(0, model.grads!.numel);
    })();
    const both = accumulate(model, null);
    for (const r of model.gradientRegions().layers) {
      for (const { offset, numel } of r) {
        const a = first.subarray(offset, offset + numel), b = both.subarray(offset, offset + numel);
        if (a.some((x) => x !== 0)) expect(a.some((x, i) => x !== b[i])).toBe(true);
      }
    }
  });
});
