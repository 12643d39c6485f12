/**
 * GPT-2 on the GPU against the CPU backend and the PyTorch fixtures: loss, every gradient, the
 * first AdamW steps and greedy generation, in fp32 (tight) and bf16 (mixed precision) modes.
 *   node --test dist/test/gpu/        (on a GPU machine; skips with the reason elsewhere)
 * Tolerances: fp32 as the CPU tests (loss 1e-5, gradients 1e-3 relative to each tensor's scale,
 * step losses 1e-4); bf16 operands carry 8 mantissa bits, so the loss is held to 1e-2 relative.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as nodeTest from 'node:test';
import { loadModel } from '../../lib/model/checkpoint';
import { generate } from '../../lib/model/generate';
import { Decoder } from '../../lib/model/decoder';
import { addon } from '../../lib/native';
import { AdamW } from '../../lib/train/adamw';

const ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
const TINY = path.join(ROOT, 'test/fixtures/tiny-gpt2');
const cuda = addon.cuda;
const count = cuda.compiled && cuda.deviceCount ? cuda.deviceCount() : 0;
const skip = !cuda.compiled ? 'built without CUDA' : count === 0 ? `no GPU: ${cuda.unavailableReason?.()}` : undefined;
const underJest = process.env.JEST_WORKER_ID !== undefined;

function setPrecision(p: 'fp32' | 'bf16'): void {
  cuda.setMatmulPrecision?.(p);
  cuda.setAttentionPrecision?.(p);
}

function relMax(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / (m || 1);
}

function trainSteps(model: Decoder, tokens: Int32Array, targets: Int32Array, steps: number): number[] {
  const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    model.zeroGrad();
    const r = model.forward(tokens, 2, 16, targets);
    model.backward(r.count);
    opt.update(1e-3);
    losses.push(r.loss);
  }
  opt.free();
  return losses;
}

if (underJest) {
  // Registered for jest's discovery only; this file runs under `node --test` on a GPU machine.
  (globalThis as unknown as { test: { skip: (n: string, f: () => void) => void } }).test.skip(
    'GPU model tests: run `node --test dist/test/gpu/` on a GPU machine (skipped under jest)', () => undefined);
} else {
  const ref = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/tiny-gpt2-ref.json'), 'utf8'));
  const tokens = Int32Array.from(ref.tokens.flat() as number[]);
  const targets = Int32Array.from(ref.targets.flat() as number[]);
  if (skip) console.log(`# GPU model tests skipped: ${skip}`);

  nodeTest.describe('GPT-2 on CUDA', { skip }, () => {
    nodeTest.it('fp32: loss, every gradient and 8 AdamW steps match the CPU and PyTorch', () => {
      setPrecision('fp32');
      const cpu = loadModel(TINY), gpu = loadModel(TINY, { device: 'cuda' });
      for (const m of [cpu, gpu]) m.zeroGrad();
      const rc = cpu.forward(tokens, 2, 16, targets), rg = gpu.forward(tokens, 2, 16, targets);
      assert.ok(Math.abs(rg.loss - ref.loss_f64) / ref.loss_f64 < 1e-5, `loss ${rg.loss} vs ${ref.loss_f64}`);
      cpu.backward(rc.count);
      gpu.backward(rg.count);
      for (const [name, g] of cpu.grads!.tensors) {
        const err = relMax(gpu.grads!.get(name).read(), g.read());
        assert.ok(err < 1e-3, `gradient ${name}: ${err}`);
      }
      const losses = trainSteps(loadModel(TINY, { device: 'cuda' }), tokens, targets, 8);
      losses.forEach((l, i) => assert.ok(Math.abs(l - ref.train.losses[i]) / ref.train.losses[i] < 1e-4, `step ${i}: ${l} vs ${ref.train.losses[i]}`));
      cpu.free();
      gpu.free();
    });

    nodeTest.it('bf16 mixed precision: loss within 1e-2 and training still descends', () => {
      setPrecision('bf16');
      const gpu = loadModel(TINY, { device: 'cuda' });
      const r = gpu.forward(tokens, 2, 16, targets);
      assert.ok(Math.abs(r.loss - ref.loss_f64) / ref.loss_f64 < 1e-2, `bf16 loss ${r.loss} vs ${ref.loss_f64}`);
      const losses = trainSteps(gpu, tokens, targets, 8);
      losses.forEach((l, i) => assert.ok(Math.abs(l - ref.train.losses[i]) / ref.train.losses[i] < 2e-2, `bf16 step ${i}: ${l} vs ${ref.train.losses[i]}`));
      gpu.free();
      setPrecision('fp32');
    });

    nodeTest.it('greedy generation with the KV cache on the GPU equals the reference', () => {
      setPrecision('fp32');
      const gpu = loadModel(TINY, { device: 'cuda' });
      const out = generate(gpu, ref.generate.prompt, { maxNewTokens: ref.generate.max_new_tokens, greedy: true, eosTokenId: null /* the reference has no EOS stop */ });
      assert.deepStrictEqual(out.tokens, ref.generate.new_tokens);
      gpu.free();
    });

    nodeTest.it('training is bitwise reproducible on the GPU (fp32 and bf16), so --resume can be exact', () => {
      // Repeated token ids make the embedding backward sum several rows into one: with float
      // atomics that order (and its rounding) would change from run to run.
      const repeated = Int32Array.from(tokens, (t, i) => (i % 3 === 0 ? 7 : t));
      for (const precision of ['fp32', 'bf16'] as const) {
        setPrecision(precision);
        const runs = [0, 1].map(() => {
          const m = loadModel(TINY, { device: 'cuda' });
          const losses = trainSteps(m, repeated, targets, 6);
          const params = m.params.all().read();
          m.free();
          return { losses, params };
        });
        assert.deepStrictEqual(runs[1].losses, runs[0].losses, `${precision}: losses differ between identical runs`);
        const a = runs[0].params, b = runs[1].params;
        let differing = 0;
        for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) differing++;
        assert.strictEqual(differing, 0, `${precision}: ${differing} parameters differ between identical runs`);
      }
      setPrecision('fp32');
    });

    nodeTest.it('asking for more GPU memory than exists is an error, not a crash', () => {
      assert.throws(() => new addon.Arena('cuda', 2 ** 39), /out of memory|allocate/i);
    });
  });
}
