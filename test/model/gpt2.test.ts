/**
 * GPT-2 against an independent PyTorch implementation (scripts/torch_gpt2.py, fixtures made by
 * scripts/make_fixtures.py): logits, loss, every parameter's gradient, and the losses of the
 * first AdamW steps (plain, clipped, and with gradient accumulation).
 * Tolerances: the contract (loss 1e-5 relative, gradients 1e-3, step losses 1e-4). The
 * float32 noise floor measured by the fixture (float32 vs float64 torch) is ~5e-9 on the loss.
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { AdamW, clipScale } from '../../lib/train/adamw';
import { fixtureTensors, FIXTURES, relError, relMaxError, tempDir, TINY, tinyRef, transpose } from '../helpers';

const ref = tinyRef();
const tokens = Int32Array.from(ref.tokens.flat());
const targets = Int32Array.from(ref.targets.flat());
const masked = Int32Array.from(ref.targets_masked.flat());
const CONV1D = /\.(c_attn|c_proj|c_fc)\.weight$/;

describe('GPT-2 forward vs PyTorch', () => {
  const tensors = fixtureTensors('tiny-gpt2-ref.safetensors');

  test.each(['tiny-gpt2', 'tiny-gpt2-hf'])('%s: loss and logits', (dir) => {
    const model = loadModel(path.join(FIXTURES, dir));
    const r = model.forward(tokens, ref.B, ref.T, targets);
    expect(relError(r.loss, ref.loss_f64)).toBeLessThan(1e-5);
    expect(r.count).toBe(ref.n_scored);
    const logits = model.logitsRows(0, ref.B * ref.T);
    expect(relMaxError(logits, tensors.get('logits_f64')!.data)).toBeLessThan(1e-5);
    const rm = model.forward(tokens, ref.B, ref.T, masked);
    expect(relError(rm.loss, ref.loss_masked_f64)).toBeLessThan(1e-5);
    expect(rm.count).toBe(ref.n_scored_masked);
    model.free();
  });

  test.each(['tiny-gpt2-f16', 'tiny-gpt2-bf16'])('%s: half-precision weights are read exactly', (dir) => {
    const model = loadModel(path.join(FIXTURES, dir));
    const v = ref.variants[dir];
    const r = model.forward(tokens, ref.B, ref.T, targets);
    expect(relError(r.loss, v.loss)).toBeLessThan(1e-5);
    expect(relMaxError(model.logitsRows(0, ref.B * ref.T), tensors.get(v.logits_key)!.data)).toBeLessThan(1e-5);
    // The rounding changes the loss measurably, so reading F16/BF16 as F32 bytes would fail above.
    expect(relError(v.loss, ref.loss)).toBeGreaterThan(1e-6);
    model.free();
  });
});

describe('GPT-2 backward vs PyTorch', () => {
  const grads = fixtureTensors('tiny-gpt2-ref-grads.safetensors');

  test.each([
    ['full_f64', targets, ref.n_scored],
    ['masked', masked, ref.n_scored_masked],
  ] as const)('every parameter gradient (%s)', (set, tgt, count) => {
    const model = loadModel(TINY);
    model.zeroGrad();
    const r = model.forward(tokens, ref.B, ref.T, tgt);
    expect(r.count).toBe(count);
    model.backward(r.count);
    for (const [name, g] of model.grads!.tensors) {
      const expected = grads.get(`${set}/${name}`);
      expect(expected).toBeDefined();
      let want = expected!.data;
      if (CONV1D.test(name)) want = transpose(want, expected!.shape[0], expected!.shape[1]);
      const err = relMaxError(g.read(), want);
      if (err >= 1e-3) throw new Error(`gradient of ${name}: relative error ${err}`);
    }
    model.free();
  });

  test('backward accumulates: two backward passes give twice the gradient', () => {
    const model = loadModel(TINY);
    model.zeroGrad();
    model.backward.bind(model);
    let r = model.forward(tokens, ref.B, ref.T, targets);
    model.backward(r.count);
    const once = model.grads!.get('h.1.mlp.c_fc.weight').read();
    r = model.forward(tokens, ref.B, ref.T, targets);
    model.backward(r.count);
    const twice = model.grads!.get('h.1.mlp.c_fc.weight').read();
    expect(relMaxError(twice, Float64Array.from(once, (x) => 2 * x))).toBeLessThan(1e-6);
    model.free();
  });

  test('backward without a forward with targets is an error', () => {
    const model = loadModel(TINY);
    model.zeroGrad();
    expect(() => model.backward(1)).toThrow(/call forward\(\) with targets first/);
    model.forward(tokens, ref.B, ref.T, null);
    expect(() => model.backward(1)).toThrow(/call forward\(\) with targets first/);
    model.free();
  });
});

describe('AdamW training steps vs PyTorch', () => {
  const t = ref.train;
  function train(model: Decoder, steps: number, maxNorm: number, micro: number): { losses: number[]; norms: number[] } {
    const opt = new AdamW(model, { beta1: t.betas[0], beta2: t.betas[1], eps: t.eps, weightDecay: t.weight_decay });
    const losses: number[] = [], norms: number[] = [];
    const rows = ref.B / micro;
    for (let s = 0; s < steps; s++) {
      model.zeroGrad();
      let sum = 0;
      for (let m = 0; m < micro; m++) {
        const slice = (a: Int32Array) => a.subarray(m * rows * ref.T, (m + 1) * rows * ref.T);
        const r = model.forward(slice(tokens), rows, ref.T, slice(targets));
        model.backward(ref.B * ref.T);
        sum += r.lossSum;
      }
      losses.push(sum / (ref.B * ref.T));
      const norm = model.gradNorm();
      norms.push(norm);
      opt.update(t.lr, clipScale(norm, maxNorm));
    }
    opt.free();
    return { losses, norms };
  }

  test('first steps: losses and gradient norms', () => {
    const model = loadModel(TINY);
    const { losses, norms } = train(model, t.steps, 0, 1);
    losses.forEach((l, i) => expect(relError(l, t.losses[i])).toBeLessThan(1e-4));
    norms.forEach((n, i) => expect(relError(n, t.grad_norms[i])).toBeLessThan(1e-4));
    model.free();
  });

  test('parameters after one step', () => {
    // Adam's first update is lr * g / (|g| + eps) per element (plus decay), whose sensitivity to
    // rounding in g is lr * eps / (|g| + eps)^2: negligible where |g| >= 1e-5 (1000 eps), but of
    // order lr where |g| is near eps. So elements whose float64 reference gradient is >= 1e-5 must
    // match to 1e-3 * lr; the rest (e.g. the key biases, whose true gradient is exactly zero since
    // softmax ignores a constant added to a row's scores) must only move by at most lr(1 + wd).
    const model = loadModel(TINY);
    const before = new Map([...model.params.tensors].map(([n, p]) => [n, p.read()]));
    train(model, 1, 0, 1);
    const after = fixtureTensors('tiny-gpt2-ref.safetensors');
    const refGrads = fixtureTensors('tiny-gpt2-ref-grads.safetensors');
    const layout = (name: string, e: { shape: number[]; data: Float64Array }) =>
      (CONV1D.test(name) ? transpose(e.data, e.shape[0], e.shape[1]) : e.data);
    let worst = 0, conditioned = 0;
    for (const [name, p] of model.params.tensors) {
      const want = layout(name, after.get(`adamw_step1/${name}`)!);
      const g = layout(name, refGrads.get(`full_f64/${name}`)!);
      const got = p.read(), prev = before.get(name)!;
      for (let i = 0; i < got.length; i++) {
        expect(Math.abs(got[i] - prev[i])).toBeLessThan(t.lr * (1 + t.weight_decay) + 1e-7);
        if (Math.abs(g[i]) < 1e-5) continue;
        conditioned++;
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
      }
    }
    expect(worst).toBeLessThan(1e-3 * t.lr);
    expect(conditioned).toBeGreaterThan(0.9 * model.numParameters);
    model.free();
  });

  test('with global-norm clipping', () => {
    const model = loadModel(TINY);
    const { losses, norms } = train(model, t.steps, t.clipped.max_norm, 1);
    losses.forEach((l, i) => expect(relError(l, t.clipped.losses[i])).toBeLessThan(1e-4));
    norms.forEach((n, i) => expect(relError(n, t.clipped.grad_norms_before_clip[i])).toBeLessThan(1e-4));
    model.free();
  });

  test('two micro-batches accumulate to the full batch', () => {
    const model = loadModel(TINY);
    const { losses } = train(model, t.steps, 0, t.accumulation.micro_batches);
    losses.forEach((l, i) => expect(relError(l, t.accumulation.losses[i])).toBeLessThan(1e-4));
    model.free();
  });
});

describe('checkpoints', () => {
  test('save then load gives the identical loss, and the file is what transformers expects', () => {
    const model = loadModel(TINY);
    const dir = path.join(tempDir(), 'saved');
    saveModel(model, dir, { tokenizerFrom: TINY });
    const again = loadModel(dir);
    const a = model.forward(tokens, ref.B, ref.T, targets).loss;
    const b = again.forward(tokens, ref.B, ref.T, targets).loss;
    expect(b).toBe(a);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'vocab.json']);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe('gpt2');
    expect(cfg.architectures).toEqual(['GPT2LMHeadModel']);
    const header = fixtureHeader(path.join(dir, 'model.safetensors'));
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header['transformer.h.0.attn.c_attn.weight'].shape).toEqual([32, 96]); // Conv1D (in, out)
    expect(header['transformer.wte.weight'].dtype).toBe('F32');
    model.free();
    again.free();
  });

  test('missing and mis-shaped tensors are named', () => {
    const dir = tempDir();
    fs.copyFileSync(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    const cfg = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
    cfg.n_layer = 3;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.copyFileSync(path.join(TINY, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    expect(() => loadModel(dir)).toThrow(/missing \d+ tensor\(s\): h\.2\./);
    cfg.n_layer = 2;
    cfg.n_inner = 64;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    expect(() => loadModel(dir)).toThrow(/has shape \[32, 128\] but config.json implies \[32, 64\]/);
  });
});

function fixtureHeader(file: string): Record<string, { dtype: string; shape: number[] } & Record<string, unknown>> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
}
