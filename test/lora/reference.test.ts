/**
 * gptune's LoRA against the independent float64 PyTorch LoRA (scripts/torch_lora.py, fixtures from
 * scripts/make_lora_fixtures.py): GPT-2's Conv1D modules (all-linear, fan_in_fan_out), a GQA Llama
 * with rsLoRA on all seven projections, and Qwen2 (q/k/v biases, tied head) with q_proj/v_proj and
 * lm_head as a module to save. The adapters are PEFT folders read by gptune's own reader; the loss,
 * every adapter gradient, 5 AdamW steps and the merged model must equal the reference.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../lib/io/safetensors';
import { loadAdapter, mergeAdapters } from '../../lib/lora/apply';
import { adapterFiles } from '../../lib/lora/files';
import { checkpointTensors, loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { AdamW } from '../../lib/train/adamw';
import { FIXTURES, fixtureTensors, relMaxError } from '../helpers';

interface LoraRef {
  base: string; adapter: string; B: number; T: number; tokens: number[]; targets: number[]; n_scored: number;
  loss: number; merged_loss: number; train_losses: number[];
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number };
}

const PEFT = 'base_model.model.';
const CASES = ['lora-gpt2', 'lora-llama', 'lora-qwen2'];

function readRef(name: string): LoraRef {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}-ref.json`), 'utf8')) as LoraRef;
}

/** The fixture's base with its adapter applied for training. */
function adapted(ref: LoraRef): Decoder {
  const model = loadModel(path.resolve(FIXTURES, '..', '..', ref.base));
  loadAdapter(model, path.resolve(FIXTURES, '..', '..', ref.adapter), { trainable: true });
  return model;
}

function step(model: Decoder, ref: LoraRef) {
  const tokens = Int32Array.from(ref.tokens), targets = Int32Array.from(ref.targets);
  model.zeroGrad();
  const r = model.forward(tokens, ref.B, ref.T, targets);
  model.backward(r.count);
  return r;
}

describe.each(CASES)('%s', (name) => {
  const ref = readRef(name);
  const tensors = fixtureTensors(`${name}-ref.safetensors`);

  test('loss and every adapter gradient equal the float64 reference', () => {
    const model = adapted(ref);
    try {
      const r = step(model, ref);
      expect(r.count).toBe(ref.n_scored);
      expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
      const adapter = model.trainingAdapter!;
      const names = [...adapter.arena.tensors.keys()];
      expect(names.map((n) => `grad.${PEFT}${n}`).sort()).toEqual([...tensors.keys()].filter((k) => k.startsWith('grad.')).sort());
      for (const n of names) {
        const want = tensors.get(`grad.${PEFT}${n}`)!.data;
        expect(relMaxError(model.grads!.get(n).read(), want)).toBeLessThan(1e-5);
      }
    } finally {
      model.free();
    }
  });

  test('5 AdamW steps on the adapter follow the reference (losses and final adapter weights)', () => {
    const model = adapted(ref);
    const a = ref.adamw;
    const optimizer = new AdamW(model, { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay });
    try {
      const losses: number[] = [];
      for (let i = 0; i < ref.train_losses.length; i++) {
        losses.push(step(model, ref).loss);
        optimizer.update(a.lr);
      }
      for (let i = 0; i < losses.length; i++) expect(Math.abs(losses[i] - ref.train_losses[i]) / ref.train_losses[i]).toBeLessThan(1e-4);
      for (const [n, t] of model.trainingAdapter!.arena.tensors) {
        expect(relMaxError(t.read(), tensors.get(`final.${PEFT}${n}`)!.data)).toBeLessThan(1e-4);
      }
    } finally {
      optimizer.free();
      model.free();
    }
  });

  test('merging the adapter gives the reference merged weights and the same loss as base + adapter', () => {
    const model = mergeAdapters(adapted(ref));
    try {
      expect(model.adapters).toHaveLength(0);
      const saved = new Map(checkpointTensors(model).map((t) => [t.name.replace(/^transformer\./, ''), t.data]));
      const merged = [...tensors.keys()].filter((k) => k.startsWith('merged.'));
      expect(merged.length).toBeGreaterThan(0);
      for (const k of merged) expect(relMaxError(saved.get(k.slice('merged.'.length))!, tensors.get(k)!.data)).toBeLessThan(1e-6);
      const r = model.forward(Int32Array.from(ref.tokens), ref.B, ref.T, Int32Array.from(ref.targets));
      expect(Math.abs(r.loss - ref.merged_loss) / ref.merged_loss).toBeLessThan(1e-5);
    } finally {
      model.free();
    }
  });

  test("the adapter written back has PEFT's tensors, shapes and config values", () => {
    const model = adapted(ref);
    const dir = path.resolve(FIXTURES, '..', '..', ref.adapter);
    try {
      const files = adapterFiles(model.trainingAdapter!, ref.base);
      const tmp = fs.mkdtempSync(path.join(require('os').tmpdir(), 'gptune-lora-'));
      for (const [file, contents] of Object.entries(files)) {
        fs.writeFileSync(path.join(tmp, file), typeof contents === 'string' || contents instanceof Uint8Array ? contents : Buffer.concat(contents as Uint8Array[]));
      }
      const ours = readSafetensors(path.join(tmp, 'adapter_model.safetensors')), theirs = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
      expect(ours.metadata).toEqual({ format: 'pt' });
      expect([...ours.tensors.keys()].sort()).toEqual([...theirs.tensors.keys()].sort());
      for (const [k, t] of theirs.tensors) {
        expect(ours.tensors.get(k)!.shape).toEqual(t.shape);
        expect(Buffer.compare(Buffer.from(ours.tensors.get(k)!.data), Buffer.from(t.data))).toBe(0);
      }
      const mine = JSON.parse(fs.readFileSync(path.join(tmp, 'adapter_config.json'), 'utf8'));
      const peft = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      for (const key of ['peft_type', 'task_type', 'r', 'lora_alpha', 'lora_dropout', 'bias', 'use_rslora', 'fan_in_fan_out', 'modules_to_save', 'inference_mode', 'init_lora_weights', 'use_dora']) {
        expect([key, mine[key]]).toEqual([key, peft[key]]);
      }
      expect([...mine.target_modules].sort()).toEqual([...peft.target_modules].sort());
      // PEFT's json.dumps(indent=2, sort_keys=True): keys in order.
      expect(Object.keys(mine)).toEqual([...Object.keys(mine)].sort());
      fs.rmSync(tmp, { recursive: true });
    } finally {
      model.free();
    }
  });
});
