/**
 * The Llama family (llama, mistral, qwen2, qwen3) on CUDA against the float64 PyTorch fixtures of
 * scripts/make_llama_fixtures.py, the CPU test test/model/llama_reference.test.ts on the GPU:
 *   node --test dist/test/gpu/        (on a GPU machine; skips with the reason elsewhere)
 * For every tiny config (GQA + llama3 RoPE scaling, MHA + linear scaling + every bias + tied head,
 * Qwen2 q/k/v biases, Qwen3 per-head q/k RMSNorm with NH*HS != C, Mistral's sliding window):
 *   - fp32: logits, loss, every gradient by checkpoint name, 5 AdamW steps (losses and gradient norms),
 *     with the CPU test's tolerances (fp32 on CUDA is fp32 throughout, no TF32, so float32 against
 *     float64 as on the CPU): loss and logits 1e-5 relative, gradients 1e-3 of each tensor's largest
 *     entry, step losses and gradient norms 1e-4;
 *   - bf16 mixed precision (bf16 matmul/attention operands, fp32 accumulation, fp32 master weights):
 *     the first loss within 1e-2 and the 5 AdamW step losses within 2e-2 of the float64 reference (as
 *     the GPT-2 GPU test: operands carry 8 mantissa bits, 2^-9 relative each, ~3e-3 on a loss), and
 *     every step's loss below the one before: bf16 training learns;
 *   - greedy generation with the KV cache equals the reference tokens (fp32; the fixtures' smallest
 *     top-2 logit margin, 0.02 for qwen3, is far above fp32 rounding);
 *   - two identical runs (fp32 and bf16) give bitwise-identical losses and parameters, and so does a
 *     run with gradient checkpointing;
 * The fixtures' head sizes (8-16) keep attention on the fp32 kernels even in bf16 mode, so a seeded
 * GQA model with head size 64 checks the bf16 tensor-core attention against the CPU in fp32.
 * And the sharded copy of tiny-llama loads onto the GPU with exactly the single file's parameters.
 * Skips, with the reason printed, where CUDA is not compiled in or no GPU is present; under jest it
 * registers one skipped test. GPTUNE_GPU_TEST_DEVICE=cpu runs the same tests on the CPU backend (bf16
 * then means fp32, so the bf16 tests hold trivially): a check of this file's own logic without a GPU.
 */
import * as assert from 'node:assert';
import * as path from 'node:path';
import * as nodeTest from 'node:test';
import { setPrecision, type Precision } from '../../lib/device';
import { checkpointTensors, loadModel } from '../../lib/model/checkpoint';
import { loadModelConfig, parseDecoderSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import type { DeviceName } from '../../lib/native';
import { AdamW, clipScale } from '../../lib/train/adamw';
import { check, device, selfCheck, skip, underJest } from './target';
import { fixtureTensors, FIXTURES, relError, relMaxError, seededRandom } from '../helpers';
import { LLAMA_FIXTURES, LlamaRef, llamaRef } from '../llama_helpers';


/** ref.train.steps AdamW steps with the reference's hyperparameters; (loss, gradient norm) per step. */
function trainSteps(model: Decoder, ref: LlamaRef, tokens: Int32Array, targets: Int32Array): { losses: number[]; norms: number[] } {
  const t = ref.train;
  const opt = new AdamW(model, { beta1: t.betas[0], beta2: t.betas[1], eps: t.eps, weightDecay: t.weight_decay });
  const losses: number[] = [], norms: number[] = [];
  for (let s = 0; s < t.steps; s++) {
    model.zeroGrad();
    const r = model.forward(tokens, ref.B, ref.T, targets);
    model.backward(r.count);
    const norm = model.gradNorm();
    opt.update(t.lr, clipScale(norm, 0));
    losses.push(r.loss);
    norms.push(norm);
  }
  opt.free();
  return { losses, norms };
}

function withPrecision<R>(precision: Precision, fn: () => R): R {
  setPrecision(precision);
  try {
    return fn();
  } finally {
    setPrecision('fp32');
  }
}

if (underJest) {
  // Registered for jest's discovery only; this file runs under `node --test` on a GPU machine.
  (globalThis as unknown as { test: { skip: (n: string, f: () => void) => void } }).test.skip(
    'GPU Llama-family tests: run `node --test dist/test/gpu/` on a GPU machine (skipped under jest)', () => undefined);
} else {
  if (skip) console.log(`# GPU Llama-family tests skipped: ${skip}`);
  if (selfCheck) console.log('# GPU Llama-family tests on the CPU backend (GPTUNE_GPU_TEST_DEVICE=cpu): a self-check of the test logic');

  nodeTest.describe(`Llama family on ${device}`, { skip }, () => {
    nodeTest.it('the fixtures cover GQA, MHA, q/k/v biases, QK-norm, tied and untied heads and a sliding window', () => {
      const configs = LLAMA_FIXTURES.map((name) => loadModelConfig(path.join(FIXTURES, name)));
      check(configs.some((c) => c.kvHeads < c.heads), 'no fixture with grouped-query attention');
      check(configs.some((c) => c.kvHeads === c.heads), 'no fixture with multi-head attention');
      check(configs.some((c) => c.qkvBias), 'no fixture with q/k/v biases');
      check(configs.some((c) => c.qkNorm), 'no fixture with QK-norm');
      check(configs.some((c) => c.tiedHead) && configs.some((c) => !c.tiedHead), 'tied and untied heads not both covered');
      check(configs.some((c) => c.slidingWindow !== null), 'no fixture with a sliding window');
    });

    for (const name of LLAMA_FIXTURES) {
      const ref = llamaRef(name);
      const dir = path.join(FIXTURES, name);
      const tokens = Int32Array.from(ref.tokens.flat());
      const targets = Int32Array.from(ref.targets.flat());

      nodeTest.describe(name, () => {
        nodeTest.it('fp32: logits, loss and every gradient by checkpoint name match the float64 reference', () => {
          const tensors = fixtureTensors(`${name}-ref.safetensors`);
          setPrecision('fp32');
          const model = loadModel(dir, { device });
          model.zeroGrad();
          const r = model.forward(tokens, ref.B, ref.T, targets);
          assert.strictEqual(r.count, ref.n_scored);
          check(relError(r.loss, ref.loss_f64) < 1e-5, `loss ${r.loss} vs ${ref.loss_f64}`);
          const logitsErr = relMaxError(model.logitsRows(0, ref.B * ref.T), tensors.get('logits_f64')!.data);
          check(logitsErr < 1e-5, `logits: relative error ${logitsErr}`);
          model.backward(r.count);
          const grads = checkpointTensors(model, model.grads!);
          const referenced = [...tensors.keys()].filter((k) => k.startsWith('grads/')).map((k) => k.slice('grads/'.length)).sort();
          assert.deepStrictEqual(grads.map((g) => g.name).sort(), referenced);
          for (const g of grads) {
            const err = relMaxError(g.data, tensors.get(`grads/${g.name}`)!.data);
            check(err < 1e-3, `gradient of ${g.name}: relative error ${err}`);
          }
          model.free();
        });

        nodeTest.it('fp32: 5 AdamW steps, losses and gradient norms match the float64 reference', () => {
          setPrecision('fp32');
          const model = loadModel(dir, { device });
          const { losses, norms } = trainSteps(model, ref, tokens, targets);
          losses.forEach((l, s) => check(relError(l, ref.train.losses_f64[s]) < 1e-4, `step ${s} loss ${l} vs ${ref.train.losses_f64[s]}`));
          norms.forEach((n, s) => check(relError(n, ref.train.grad_norms_f64[s]) < 1e-4, `step ${s} gradient norm ${n} vs ${ref.train.grad_norms_f64[s]}`));
          model.free();
        });

        nodeTest.it('bf16: the loss is within 1e-2 of the reference and 5 AdamW steps train it down', () => {
          withPrecision('bf16', () => {
            const model = loadModel(dir, { device });
            const { losses } = trainSteps(model, ref, tokens, targets);
            check(relError(losses[0], ref.loss_f64) < 1e-2, `bf16 loss ${losses[0]} vs ${ref.loss_f64}`);
            losses.forEach((l, s) => {
              check(Number.isFinite(l) && relError(l, ref.train.losses_f64[s]) < 2e-2, `bf16 step ${s} loss ${l} vs ${ref.train.losses_f64[s]}`);
              if (s > 0) check(l < losses[s - 1], `bf16 step ${s} loss ${l} did not fall below ${losses[s - 1]}`);
            });
            model.free();
          });
        });

        nodeTest.it('greedy generation with the KV cache equals the reference tokens', () => {
          setPrecision('fp32');
          const model = loadModel(dir, { device });
          const g = ref.generate;
          const { tokens: produced } = generate(model, g.prompt, { maxNewTokens: g.max_new_tokens, greedy: true, eosTokenId: null /* the reference has no EOS stop */ });
          assert.deepStrictEqual(produced, g.new_tokens);
          model.free();
        });

        nodeTest.it('training is bitwise reproducible (fp32 and bf16), so --resume can be exact, and gradient checkpointing changes nothing', () => {
          // Repeated token ids make the embedding backward sum several rows into one: with float
          // atomics that order (and its rounding) would change from run to run. Checkpointing's
          // recompute runs the same kernels on the same inputs, so its run must not differ either.
          const repeated = Int32Array.from(tokens, (t, i) => (i % 3 === 0 ? 7 : t));
          for (const precision of ['fp32', 'bf16'] as const) {
            const runs = [false, false, true].map((checkpointing) => withPrecision(precision, () => {
              const model = loadModel(dir, { device });
              model.setGradientCheckpointing(checkpointing);
              const { losses, norms } = trainSteps(model, ref, repeated, targets);
              const params = model.params.all().read();
              model.free();
              return { losses, norms, params };
            }));
            for (const [run, what] of [[runs[1], 'between identical runs'], [runs[2], 'with gradient checkpointing']] as const) {
              assert.deepStrictEqual(run.losses, runs[0].losses, `${precision}: losses differ ${what}`);
              assert.deepStrictEqual(run.norms, runs[0].norms, `${precision}: gradient norms differ ${what}`);
              const a = runs[0].params, b = run.params;
              let differing = 0;
              for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) differing++;
              assert.strictEqual(differing, 0, `${precision}: ${differing} of ${a.length} parameters differ ${what}`);
            }
          }
        });
      });
    }

    nodeTest.it('bf16 grouped-query attention on the tensor-core path (head size 64) against the CPU in fp32', () => {
      // The fixtures' head sizes (8-16) take the fp32 attention kernels even in bf16 mode; the bf16
      // tensor-core attention runs for HS = 64 only. A seeded model with HS = 64, 4 query heads on 2 KV
      // heads, T = 80 (not a multiple of the 64-row tiles): the CPU's fp32 forward, itself checked
      // against the float64 fixtures, is the reference. Logits within 4e-2 of their largest entry:
      // rounding the weights alone to bf16 moves them 8e-3 on the CPU, rounding activations as well
      // at most doubles that, while attention's share of the logits is 1.4x that scale (zeroing it),
      // so a wrong head mapping or mask lands far outside. Loss within 1e-2, and 5 AdamW steps within
      // 2e-2 of the CPU's and falling, as for the fixtures.
      const config = parseDecoderSpec('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=256,n_inner=512,n_positions=128,vocab_size=350');
      const B = 2, T = 80, random = seededRandom(11);
      const tokens = Int32Array.from({ length: B * T }, () => Math.floor(random() * config.vocabSize));
      const targets = Int32Array.from({ length: B * T }, () => Math.floor(random() * config.vocabSize));
      const ref = { B, T, train: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, steps: 5 } } as unknown as LlamaRef;
      const fresh = (on: DeviceName) => {
        const model = new Decoder(config, on);
        const seeded = new Decoder(config);
        seeded.initRandom(3, 0.05);
        model.params.all().write(seeded.params.all().read());
        seeded.free();
        return model;
      };
      const cpu = fresh('cpu');
      const rc = cpu.forward(tokens, B, T, targets);
      const cpuLogits = cpu.logitsRows(0, B * T);
      const cpuSteps = trainSteps(cpu, ref, tokens, targets).losses;
      cpu.free();
      withPrecision('bf16', () => {
        const gpu = fresh(device);
        const rg = gpu.forward(tokens, B, T, targets);
        const logitsErr = relMaxError(gpu.logitsRows(0, B * T), cpuLogits);
        check(logitsErr < 4e-2, `bf16 logits: relative error ${logitsErr}`);
        check(relError(rg.loss, rc.loss) < 1e-2, `bf16 loss ${rg.loss} vs fp32 CPU ${rc.loss}`);
        const steps = trainSteps(gpu, ref, tokens, targets).losses;
        steps.forEach((l, s) => {
          check(relError(l, cpuSteps[s]) < 2e-2, `bf16 step ${s} loss ${l} vs fp32 CPU ${cpuSteps[s]}`);
          if (s > 0) check(l < steps[s - 1], `bf16 step ${s} loss ${l} did not fall below ${steps[s - 1]}`);
        });
        gpu.free();
      });
    });

    nodeTest.it('a sharded checkpoint loads onto the device with exactly the single file\'s parameters and loss', () => {
      setPrecision('fp32');
      const single = loadModel(path.join(FIXTURES, 'tiny-llama'));
      const sharded = loadModel(path.join(FIXTURES, 'tiny-llama-sharded'), { device });
      assert.strictEqual(sharded.device, device);
      for (const [name, t] of single.params.tensors) {
        assert.deepStrictEqual(sharded.params.get(name).read(), t.read(), `parameter ${name} differs`);
      }
      const ref = llamaRef('tiny-llama');
      const r = sharded.forward(Int32Array.from(ref.tokens.flat()), ref.B, ref.T, Int32Array.from(ref.targets.flat()));
      check(relError(r.loss, ref.loss_f64) < 1e-5, `sharded loss ${r.loss} vs ${ref.loss_f64}`);
      single.free();
      sharded.free();
    });
  });
}
