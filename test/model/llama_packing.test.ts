/**
 * Packed examples on a RoPE model: with per-example positions (restarting at 0) and segment ids,
 * two sequences sharing one row must give each the logits, losses and gradients it gets alone,
 * so packing changes nothing but speed. The reference is the same model run on each example
 * separately, a property of the definition (attention never crosses a segment, RoPE angles
 * depend only on a token's own position). Tolerance 1e-5 relative: float32 sums in another order.
 */
import * as path from 'path';
import { loadModel } from '../../lib/model/checkpoint';
import { IGNORE_INDEX } from '../../lib/model/decoder';
import { FIXTURES, relMaxError } from '../helpers';

test.each(['tiny-llama', 'tiny-qwen3'])('%s: a packed row equals its examples run alone', (name) => {
  const model = loadModel(path.join(FIXTURES, name));
  const V = model.config.vocabSize;
  const a = [5, 17, 3, 99, 42], b = [7, 61, 8, 23];
  const targetsOf = (seq: number[]) => [...seq.slice(1), IGNORE_INDEX];
  // Alone: logits of each position, and the summed gradient of both examples' summed losses.
  model.zeroGrad();
  const alone: Float32Array[] = [];
  for (const seq of [a, b]) {
    model.forward(Int32Array.from(seq), 1, seq.length, Int32Array.from(targetsOf(seq)));
    alone.push(model.logitsRows(0, seq.length));
    model.backward(1);
  }
  const aloneGrads = new Map([...model.grads!.tensors].map(([n, t]) => [n, t.read()]));
  // Packed: one row [a | b], positions restarting at b's start, segments 0 and 1.
  const T = a.length + b.length;
  const positions = Int32Array.from([...a.keys(), ...b.keys()]);
  const segmentIds = Int32Array.from([...a.map(() => 0), ...b.map(() => 1)]);
  model.zeroGrad();
  model.forward(Int32Array.from([...a, ...b]), 1, T, Int32Array.from([...targetsOf(a), ...targetsOf(b)]), { positions, segmentIds });
  const packed = model.logitsRows(0, T);
  expect(relMaxError(packed.subarray(0, a.length * V), alone[0])).toBeLessThan(1e-5);
  expect(relMaxError(packed.subarray(a.length * V), alone[1])).toBeLessThan(1e-5);
  model.backward(1);
  for (const [n, t] of model.grads!.tensors) {
    const err = relMaxError(t.read(), aloneGrads.get(n)!);
    if (!(err < 1e-5)) throw new Error(`gradient of ${n}: relative error ${err}`);
  }
  model.free();
});
