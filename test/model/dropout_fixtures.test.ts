/**
 * Training with dropout against an independent float64 PyTorch reference (scripts/make_dropout_fixtures.py)
 * that draws the same masks with its own numpy implementation of the mask's definition and applies them
 * where transformers' nn.Dropout layers sit in train mode: the tiny GPT-2 with embd_pdrop, attn_pdrop and
 * resid_pdrop 0.1, the tiny Llama with attention_dropout 0.1. Three AdamW steps, each drawing its masks
 * from the seed gptune's Trainer gives that step; every parameter's step-0 gradient.
 * Tolerances are those of the dropout-free fixture tests (test/model/gpt2.test.ts, llama_reference.test.ts):
 * gradients 1e-3 of the tensor's largest entry, step losses and gradient norms 1e-4.
 */
import * as fs from 'fs';
import * as path from 'path';
import { checkpointTensors, loadModel } from '../../lib/model/checkpoint';
import { DropoutRates } from '../../lib/model/dropout';
import { AdamW } from '../../lib/train/adamw';
import { fixtureTensors, FIXTURES, relError, relMaxError, tinyRef } from '../helpers';
import { llamaRef } from '../llama_helpers';

interface DropoutRef {
  steps: number;
  p: number;
  step_seeds: number[];
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
  losses: number[];
  grad_norms: number[];
  loss_without_dropout: number;
}

const cases: Array<[string, string, { B: number; T: number; tokens: number[][]; targets: number[][] }, (p: number) => DropoutRates]> = [
  ['gpt2', 'tiny-gpt2', tinyRef(), (p) => ({ embedding: p, residual: p, attention: p })],
  ['llama', 'tiny-llama', llamaRef('tiny-llama'), (p) => ({ embedding: 0, residual: 0, attention: p })],
];

describe.each(cases)('%s with dropout vs the float64 PyTorch reference', (name, folder, batch, rates) => {
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, `dropout-${name}-ref.json`), 'utf8')) as DropoutRef;
  const grads = fixtureTensors(`dropout-${name}-ref.safetensors`);
  const tokens = Int32Array.from(batch.tokens.flat()), targets = Int32Array.from(batch.targets.flat());
  const dropout = rates(ref.p);

  test('the step-0 gradient of every parameter, by checkpoint name', () => {
    const model = loadModel(path.join(FIXTURES, folder));
    model.zeroGrad();
    const r = model.forward(tokens, batch.B, batch.T, targets, { dropoutSeed: ref.step_seeds[0], dropout });
    expect(relError(r.loss, ref.losses[0])).toBeLessThan(1e-4);
    // The masks matter: without them the loss is another one.
    expect(relError(ref.loss_without_dropout, ref.losses[0])).toBeGreaterThan(1e-3);
    model.backward(r.count);
    const got = checkpointTensors(model, model.grads!);
    const key = (n: string) => n.replace(/^transformer\./, '');
    expect(got.map((g) => key(g.name)).sort()).toEqual([...grads.keys()].sort());
    for (const g of got) {
      const err = relMaxError(g.data, grads.get(key(g.name))!.data);
      if (!(err < 1e-3)) throw new Error(`gradient of ${g.name}: relative error ${err}`);
    }
    model.free();
  });

  test('three AdamW steps, each with the masks of its step: losses and gradient norms', () => {
    const model = loadModel(path.join(FIXTURES, folder));
    const a = ref.adamw;
    const opt = new AdamW(model, { beta1: a.betas[0], beta2: a.betas[1], eps: a.eps, weightDecay: a.weight_decay });
    for (let k = 0; k < ref.steps; k++) {
      model.zeroGrad();
      const r = model.forward(tokens, batch.B, batch.T, targets, { dropoutSeed: ref.step_seeds[k], dropout });
      model.backward(r.count);
      expect(relError(r.loss, ref.losses[k])).toBeLessThan(1e-4);
      const norm = model.gradNorm();
      expect(relError(norm, ref.grad_norms[k])).toBeLessThan(1e-4);
      opt.update(a.lr, 1);
    }
    opt.free();
    model.free();
  });
});
