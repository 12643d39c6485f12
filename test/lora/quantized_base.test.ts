/**
 * A frozen base stored as bf16 / int8 / NF4 (QLoRA's --base-dtype): the decoder must compute exactly the
 * model whose linear weights are the format's dequantized values. The expected model is built from
 * test/reference/quant.ts (the formats written from their definitions), not from the kernels.
 */
import * as path from 'path';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder, linearWeightNames } from '../../lib/model/decoder';
import { UsageError } from '../../lib/errors';
import { FIXTURES, relMaxError, TINY } from '../helpers';
import { dequantizeInt8Ref, dequantizeNf4Ref, quantizeInt8Ref, quantizeNf4Ref } from '../reference/quant';

/** x rounded to the nearest bfloat16, ties to even (finite weights only): the top 16 bits of the float32 after rounding. */
function bf16(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer)[0];
  const lsb = (bits >>> 16) & 1;
  const rounded = (bits + 0x7fff + lsb) >>> 0;
  return new Float32Array(Uint32Array.of(rounded & 0xffff0000).buffer)[0];
}

function referenceModel(dir: string, dtype: 'bf16' | 'int8' | 'nf4'): Decoder {
  const model = loadModel(dir);
  for (const name of linearWeightNames(model.config)) {
    const t = model.params.get(name), w = t.read();
    const [OC, C] = t.shape;
    if (dtype === 'bf16') {
      t.write(w.map(bf16));
    } else if (dtype === 'int8') {
      const q = quantizeInt8Ref(w, OC, C);
      t.write(Float32Array.from(dequantizeInt8Ref(q.q, q.scale, OC, C)));
    } else {
      const q = quantizeNf4Ref(w, OC * C);
      t.write(Float32Array.from(dequantizeNf4Ref(q.packed, q.qabsmax, q.absmax2, q.offset[0], OC * C)));
    }
  }
  return model;
}

const T = 12;
const tokens = Int32Array.from({ length: 2 * T }, (_, i) => (i * 37 + 11) % 131);
const targets = Int32Array.from({ length: 2 * T }, (_, i) => (i * 53 + 7) % 131);

describe.each([
  ['tiny-gpt2', TINY],
  ['tiny-llama', path.join(FIXTURES, 'tiny-llama')],
  ['tiny-qwen3', path.join(FIXTURES, 'tiny-qwen3')],
])('%s', (_name, dir) => {
  test.each(['bf16', 'int8', 'nf4'] as const)('a %s base computes the model of its dequantized weights', (dtype) => {
    const quantized = loadModel(dir, { baseDtype: dtype });
    const reference = referenceModel(dir, dtype);
    try {
      expect(quantized.baseDtype).toBe(dtype);
      // The stored weights read back as the format's values exactly.
      for (const name of linearWeightNames(quantized.config)) {
        const got = quantized.readParameter(name), want = reference.params.get(name).read();
        expect(relMaxError(got, want)).toBe(0);
      }
      // Nothing but the blocks' linear weights left the float32 arena.
      expect(quantized.params.numel).toBeLessThan(reference.params.numel);
      const a = quantized.forward(tokens, 2, T, targets), b = reference.forward(tokens, 2, T, targets);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(b.loss));
      expect(relMaxError(quantized.logitsRows(0, 2 * T), reference.logitsRows(0, 2 * T))).toBeLessThan(1e-5);
    } finally {
      quantized.free();
      reference.free();
    }
  });
});

test('a low-precision base is frozen: full fine-tuning is refused with what to do instead', () => {
  const model = loadModel(TINY, { baseDtype: 'nf4' });
  try {
    expect(() => model.zeroGrad()).toThrow(UsageError);
    expect(() => model.zeroGrad()).toThrow(/a nf4 base is frozen: train it with LoRA \(--lora\)/);
  } finally {
    model.free();
  }
});
