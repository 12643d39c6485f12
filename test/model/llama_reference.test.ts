/**
 * The Llama family (llama, mistral, qwen2, qwen3) against the independent float64 PyTorch decoder of
 * scripts/torch_llama.py (fixtures by scripts/make_llama_fixtures.py; see scripts/README.md): RoPE
 * frequencies, logits, loss, every parameter's gradient by checkpoint name, 5 AdamW steps and greedy
 * generation, for every tiny config (GQA + llama3 scaling, MHA + linear scaling + all biases + tied,
 * Qwen2 biases, Qwen3 q/k norms with NH*HS != C, Mistral's window).
 * Tolerances are those of the GPT-2 test (test/model/gpt2.test.ts): loss and logits 1e-5 relative
 * (float32 against float64; torch's own float32 model is ~1e-7 away), gradients 1e-3 of the tensor's
 * largest entry, AdamW step losses and gradient norms 1e-4.
 */
import * as path from 'path';
import { checkpointTensors, loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { ropeInverseFrequencies } from '../../lib/model/rope';
import { AdamW, clipScale } from '../../lib/train/adamw';
import { fixtureTensors, FIXTURES, relError, relMaxError } from '../helpers';
import { argmax, LLAMA_FIXTURES, llamaRef } from '../llama_helpers';

describe.each(LLAMA_FIXTURES)('%s vs the float64 PyTorch reference', (name) => {
  const ref = llamaRef(name);
  const dir = path.join(FIXTURES, name);
  const tokens = Int32Array.from(ref.tokens.flat());
  const targets = Int32Array.from(ref.targets.flat());
  const tensors = fixtureTensors(`${name}-ref.safetensors`);

  test('RoPE frequencies after rope_scaling', () => {
    const model = loadModel(dir);
    expect(relMaxError(ropeInverseFrequencies(model.config), ref.rope_inv_freq)).toBeLessThan(1e-14);
    model.free();
  });

  test('loss and logits', () => {
    const model = loadModel(dir);
    const r = model.forward(tokens, ref.B, ref.T, targets);
    expect(r.count).toBe(ref.n_scored);
    expect(relError(r.loss, ref.loss_f64)).toBeLessThan(1e-5);
    expect(relMaxError(model.logitsRows(0, ref.B * ref.T), tensors.get('logits_f64')!.data)).toBeLessThan(1e-5);
    model.free();
  });

  test('every parameter gradient, by checkpoint name', () => {
    const model = loadModel(dir);
    model.zeroGrad();
    const r = model.forward(tokens, ref.B, ref.T, targets);
    model.backward(r.count);
    const grads = checkpointTensors(model, model.grads!);
    const referenced = [...tensors.keys()].filter((k) => k.startsWith('grads/')).map((k) => k.slice('grads/'.length)).sort();
    expect(grads.map((g) => g.name).sort()).toEqual(referenced);
    for (const g of grads) {
      const err = relMaxError(g.data, tensors.get(`grads/${g.name}`)!.data);
      if (!(err < 1e-3)) throw new Error(`gradient of ${g.name}: relative error ${err}`);
    }
    model.free();
  });

  test('weight decay falls on exactly the tensors the reference decays', () => {
    // With zero gradients an AdamW step moves nothing but the decayed tensors: p *= 1 - lr * wd.
    const model = loadModel(dir);
    const before = new Map(checkpointTensors(model).map((t) => [t.name, t.data]));
    model.zeroGrad();
    const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5 });
    opt.update(0.1);
    const changed = checkpointTensors(model).filter((t) => t.data.some((x, i) => x !== before.get(t.name)![i])).map((t) => t.name);
    expect(changed.sort()).toEqual([...ref.train.decayed].sort());
    opt.free();
    model.free();
  });

  test('5 AdamW steps: losses and gradient norms', () => {
    const model = loadModel(dir);
    const t = ref.train;
    const opt = new AdamW(model, { beta1: t.betas[0], beta2: t.betas[1], eps: t.eps, weightDecay: t.weight_decay });
    for (let s = 0; s < t.steps; s++) {
      model.zeroGrad();
      const r = model.forward(tokens, ref.B, ref.T, targets);
      model.backward(r.count);
      const norm = model.gradNorm();
      expect(relError(r.loss, t.losses_f64[s])).toBeLessThan(1e-4);
      expect(relError(norm, t.grad_norms_f64[s])).toBeLessThan(1e-4);
      opt.update(t.lr, clipScale(norm, 0));
    }
    opt.free();
    model.free();
  });

  test('greedy generation with the KV cache equals the reference and a full recomputation', () => {
    const model = loadModel(dir);
    const g = ref.generate;
    const { tokens: produced } = generate(model, g.prompt, { maxNewTokens: g.max_new_tokens, greedy: true, eosTokenId: null /* the reference has no EOS stop */ });
    expect(produced).toEqual(g.new_tokens);
    // Full recomputation: the whole sequence through forward() each step, argmax of its last row.
    const seq = [...g.prompt];
    for (let i = 0; i < g.max_new_tokens; i++) {
      model.forward(Int32Array.from(seq), 1, seq.length);
      seq.push(argmax(model.logitsRows(seq.length - 1)));
    }
    expect(seq.slice(g.prompt.length)).toEqual(g.new_tokens);
    model.free();
  });
});

describe('checkpoint layouts', () => {
  function params(model: Decoder): Map<string, Float32Array> {
    return new Map([...model.params.tensors].map(([n, t]) => [n, t.read()]));
  }

  test('the sharded copy loads to the same parameters as the single file', () => {
    const single = loadModel(path.join(FIXTURES, 'tiny-llama'));
    const sharded = loadModel(path.join(FIXTURES, 'tiny-llama-sharded'));
    expect(params(sharded)).toEqual(params(single));
    single.free();
    sharded.free();
  });
});
