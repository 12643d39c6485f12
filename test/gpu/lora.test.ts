/**
 * LoRA and QLoRA on CUDA, the CPU tests test/lora/reference.test.ts and test/lora/quantized_base.test.ts
 * on the GPU:
 *   node --test dist/test/gpu/        (on a GPU machine; skips with the reason elsewhere)
 *   - fp32: the PyTorch LoRA fixtures (GPT-2 Conv1D all-linear, GQA Llama with rsLoRA, Qwen2 with a
 *     saved head): loss 1e-5, every adapter gradient 1e-5 of its largest entry, 5 AdamW steps 1e-4;
 *   - a bf16 / int8 / nf4 frozen base on the device computes what the CPU computes for the same
 *     stored weights (loss 1e-5, adapter gradients 1e-4): the CUDA frozen-weight and LoRA kernels
 *     against the CPU ones;
 *   - dropout masks are the same function of the seed on both backends (equal losses with dropout);
 *   - gradient checkpointing with LoRA and dropout is bitwise the same as without, on the device.
 * GPTUNE_GPU_TEST_DEVICE=cpu runs the same tests on the CPU backend: a check of this file's own logic.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as nodeTest from 'node:test';
import { setPrecision } from '../../lib/device';
import { loadAdapter } from '../../lib/lora/apply';
import { LORA_DEFAULTS } from '../../lib/lora/modules';
import { loadModel } from '../../lib/model/checkpoint';
import type { Decoder } from '../../lib/model/decoder';
import type { BaseDtype } from '../../lib/model/frozen_base';
import type { DeviceName } from '../../lib/native';
import { AdamW } from '../../lib/train/adamw';
import { check, device, selfCheck, skip, underJest } from './target';
import { fixtureTensors, FIXTURES, relError, relMaxError } from '../helpers';


const ROOT = path.resolve(FIXTURES, '..', '..');
const PEFT = 'base_model.model.';

interface LoraRef {
  base: string; adapter: string; B: number; T: number; tokens: number[]; targets: number[];
  loss: number; train_losses: number[]; adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number };
}

function lossAndGrads(model: Decoder, tokens: Int32Array, targets: Int32Array, B: number, T: number, dropoutSeed: number | null = null) {
  model.zeroGrad();
  const r = model.forward(tokens, B, T, targets, { dropoutSeed });
  model.backward(r.count);
  return { loss: r.loss, grads: new Map([...model.trainingAdapter!.arena.tensors.keys()].map((n) => [n, model.grads!.get(n).read()])) };
}

if (underJest) {
  (globalThis as unknown as { test: { skip: (n: string, f: () => void) => void } }).test.skip(
    'GPU LoRA tests: run `node --test dist/test/gpu/` on a GPU machine (skipped under jest)', () => undefined);
} else {
  if (skip) console.log(`# GPU LoRA tests skipped: ${skip}`);
  if (selfCheck) console.log('# GPU LoRA tests on the CPU backend (GPTUNE_GPU_TEST_DEVICE=cpu): a self-check of the test logic');

  nodeTest.describe(`LoRA on ${device}`, { skip }, () => {
    for (const name of ['lora-gpt2', 'lora-llama', 'lora-qwen2']) {
      const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}-ref.json`), 'utf8')) as LoraRef;
      const tokens = Int32Array.from(ref.tokens), targets = Int32Array.from(ref.targets);
      const open = () => {
        const model = loadModel(path.join(ROOT, ref.base), { device });
        loadAdapter(model, path.join(ROOT, ref.adapter), { trainable: true });
        return model;
      };

      nodeTest.it(`${name} fp32: loss, adapter gradients and 5 AdamW steps match the float64 PyTorch LoRA`, () => {
        setPrecision('fp32');
        const tensors = fixtureTensors(`${name}-ref.safetensors`);
        const model = open();
        const r = lossAndGrads(model, tokens, targets, ref.B, ref.T);
        check(relError(r.loss, ref.loss) < 1e-5, `loss ${r.loss} vs ${ref.loss}`);
        for (const [n, g] of r.grads) {
          const err = relMaxError(g, tensors.get(`grad.${PEFT}${n}`)!.data);
          check(err < 1e-5, `gradient of ${n}: relative error ${err}`);
        }
        const a = ref.adamw;
        const opt = new AdamW(model, { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay });
        const losses: number[] = [];
        for (let s = 0; s < ref.train_losses.length; s++) {
          losses.push(lossAndGrads(model, tokens, targets, ref.B, ref.T).loss);
          opt.update(a.lr);
        }
        losses.forEach((l, s) => check(relError(l, ref.train_losses[s]) < 1e-4, `step ${s} loss ${l} vs ${ref.train_losses[s]}`));
        opt.free();
        model.free();
      });
    }

    const B = 2, T = 9;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 29 + 3) % 127);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 41 + 5) % 127);
    const settings = { ...LORA_DEFAULTS, r: 4, dropout: 0.2, targets: 'all-linear' as const };
    const adapted = (dev: DeviceName, baseDtype: BaseDtype) => {
      const model = loadModel(path.join(FIXTURES, 'tiny-llama'), { device: dev, baseDtype });
      const adapter = model.addAdapter(settings, { trainable: true, seed: 4 });
      for (const m of adapter.modules) m.B.write(Float32Array.from({ length: m.B.numel }, (_, i) => Math.sin(0.7 * i + m.index) / 4));
      return model;
    };

    for (const baseDtype of ['bf16', 'int8', 'nf4'] as const) {
      nodeTest.it(`a ${baseDtype} base with dropout computes on the device what it computes on the CPU`, () => {
        setPrecision('fp32');
        const cpu = adapted('cpu', baseDtype), gpu = adapted(device, baseDtype);
        const a = lossAndGrads(cpu, tokens, targets, B, T, 17), b = lossAndGrads(gpu, tokens, targets, B, T, 17);
        check(relError(b.loss, a.loss) < 1e-5, `loss ${b.loss} vs CPU ${a.loss}`);
        for (const [n, g] of a.grads) {
          const err = relMaxError(b.grads.get(n)!, g);
          check(err < 1e-4, `gradient of ${n}: relative error ${err} against the CPU`);
        }
        cpu.free();
        gpu.free();
      });
    }

    nodeTest.it('gradient checkpointing with LoRA and dropout is bitwise the same as without', () => {
      setPrecision('fp32');
      const plain = adapted(device, 'nf4'), checkpointed = adapted(device, 'nf4');
      checkpointed.setGradientCheckpointing(true);
      const a = lossAndGrads(plain, tokens, targets, B, T, 23), b = lossAndGrads(checkpointed, tokens, targets, B, T, 23);
      assert.strictEqual(b.loss, a.loss);
      for (const [n, g] of a.grads) assert.deepStrictEqual(b.grads.get(n), g, `gradient of ${n} differs`);
      plain.free();
      checkpointed.free();
    });
  });
}
