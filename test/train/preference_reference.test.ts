/**
 * gptune's DPO and ORPO (lib/train/preference.ts) against the independent float64 PyTorch DPO/ORPO of
 * scripts/ref_dpo.py (fixtures dpo-ref.json / dpo-ref.safetensors): on a tiny GPT-2 and a tiny Llama, full
 * fine-tuning and LoRA, for the sigmoid, IPO and hinge losses, label smoothing (cDPO) and ORPO, the loss,
 * rewards and log-probabilities before each of 5 AdamW steps and the trained tensors after them; and the
 * beta -> 0 limits (loss log 2, gradient -beta/2 * d(mean logit)).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Batch } from '../../lib/data/types';
import { loadAdapter } from '../../lib/lora/apply';
import { checkpointTensors, loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { AdamW } from '../../lib/train/adamw';
import {
  AdapterOffReference, dpoPairTerms, FrozenReference, orpoPairTerms, PreferenceObjective, PreferenceSettings, ReferenceModel,
} from '../../lib/train/preference';
import { FIXTURES, fixtureTensors, relMaxError } from '../helpers';

interface RefCase {
  base: string; adapter?: string; method: 'dpo' | 'orpo'; loss_type?: 'sigmoid' | 'ipo' | 'hinge'; beta?: number; label_smoothing?: number; lam?: number;
  logit_grad?: boolean; tokens: number[]; targets: number[]; ref_logps: number[]; steps: Array<Record<string, number>>;
  /** Per tensor, [start, end) ranges of the elements whose first-step reference gradient is below 1e-5 (see scripts/ref_dpo.py). */
  ill_conditioned: Record<string, Array<[number, number]>>;
}
interface DpoRef {
  P: number; T: number; steps: number; peft_prefix: string;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number };
  cases: Record<string, RefCase>;
}

const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'dpo-ref.json'), 'utf8')) as DpoRef;
const tensors = fixtureTensors('dpo-ref.safetensors');

function settingsOf(c: RefCase): PreferenceSettings {
  return { method: c.method, beta: c.beta ?? 0.1, lossType: c.loss_type ?? 'sigmoid', labelSmoothing: c.label_smoothing ?? 0, lambda: c.lam ?? 0.1 };
}

function batchOf(c: RefCase): Batch {
  const targets = Int32Array.from(c.targets);
  return {
    B: 2 * ref.P, T: ref.T, inputs: Int32Array.from(c.tokens), targets, positions: null, segmentIds: null,
    scoredTokens: targets.filter((t) => t !== -100).length, pairs: Array.from({ length: ref.P }, (_, i) => i),
  };
}

/** The case's model (with its adapter, trainable) and its reference: the base with the adapter off, or a frozen copy. */
function setUp(c: RefCase): { model: Decoder; reference: ReferenceModel | null } {
  const model = loadModel(path.resolve(FIXTURES, c.base));
  if (c.adapter) {
    loadAdapter(model, path.resolve(FIXTURES, c.adapter), { trainable: true });
    return { model, reference: new AdapterOffReference(model) };
  }
  return { model, reference: c.method === 'orpo' ? null : FrozenReference.copyOf(model, (config, device) => new Decoder(config, device)) };
}

/** The trained tensors by the reference's names: PEFT keys for an adapter, checkpoint names otherwise. */
function trainedTensors(model: Decoder, arena = model.trainable): Map<string, Float32Array> {
  const adapter = model.trainingAdapter;
  if (adapter) return new Map([...arena.tensors].map(([n, t]) => [`${ref.peft_prefix}${n}`, t.read()]));
  // torch_gpt2's parameter names are the checkpoint's without GPT2LMHeadModel's "transformer." prefix.
  return new Map(checkpointTensors(model, arena).map((t) => [t.name.replace(/^transformer\./, ''), t.data]));
}

/** The tensor without the elements listed (ill-conditioned ones), and those apart. */
function splitElements(got: Float32Array, want: Float64Array, ranges: ReadonlyArray<[number, number]>) {
  const listed = ranges.flatMap(([start, end]) => Array.from({ length: end - start }, (_, k) => start + k));
  const skip = new Set(listed);
  const keep = (x: Float32Array | Float64Array) => [...x].filter((_, i) => !skip.has(i));
  return { checked: keep(got), reference: keep(want), apart: listed.map((i) => [got[i], want[i]]) };
}

// Rewards, log-probs and margins are sums of ~6 float32 log-probabilities of size ~5 (and beta times
// their differences): float32 rounding of the logits leaves ~1e-5 absolute in a log-prob sum.
const LOGP_ABS = 2e-5;

describe.each(Object.keys(ref.cases).filter((name) => !ref.cases[name].logit_grad))('%s', (name) => {
  const c = ref.cases[name];

  test('reference log-probs, then loss, rewards and log-probs before each of 5 AdamW steps, and the trained tensors, equal the float64 reference', () => {
    const { model, reference } = setUp(c);
    const objective = new PreferenceObjective(settingsOf(c), reference);
    const a = ref.adamw;
    const optimizer = new AdamW(model, { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay });
    const batch = batchOf(c);
    try {
      if (reference) {
        const logps = reference.logps(batch).sums;
        for (let i = 0; i < c.ref_logps.length; i++) expect(Math.abs(logps[i] - c.ref_logps[i])).toBeLessThan(LOGP_ABS);
      }
      for (const [step, want] of c.steps.entries()) {
        model.zeroGrad();
        const r = objective.step(model, [batch], () => ({}), null);
        expect(r.pairs).toBe(ref.P);
        expect(Math.abs(r.loss - want.loss) / Math.abs(want.loss)).toBeLessThan(step === 0 ? 1e-5 : 1e-4);
        const m = r.metrics as unknown as Record<string, number>;
        for (const key of ['rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected']) {
          // rewards are beta (or lambda) times log-prob differences
          const scale = key.startsWith('rewards') ? (c.method === 'orpo' ? c.lam! : c.beta!) : 1;
          expect(Math.abs(m[key] - want[key])).toBeLessThan(LOGP_ABS * Math.max(scale, 1e-3) * 4 + (step === 0 ? 0 : 1e-4 * Math.abs(want[key])));
        }
        expect(m['rewards/accuracies']).toBe(want['rewards/accuracies']);
        if (c.method === 'orpo') {
          for (const key of ['nll_loss', 'log_odds_ratio', 'log_odds_chosen']) expect(Math.abs(m[key] - want[key]) / Math.abs(want[key])).toBeLessThan(1e-4);
        }
        optimizer.update(a.lr);
      }
      let total = 0, illConditioned = 0;
      // (the small-beta case's gradients are all ~beta: it checks the limit below, not training)
      for (const [n, values] of c.logit_grad ? [] : trainedTensors(model)) {
        const want = tensors.get(`${name}.final.${n}`);
        if (!want) throw new Error(`no reference for ${n}`);
        const { checked, reference, apart } = splitElements(values, want.data, c.ill_conditioned[n] ?? []);
        expect(relMaxError(checked, reference)).toBeLessThan(1e-4);
        // Elements whose first gradient is below 1e-5 (GPT-2's key biases, exactly 0 in truth: softmax
        // ignores a constant added to a row's scores): Adam's first step moves them by up to lr on rounding
        // noise alone, so they are held to lr (1 + wd) per step.
        for (const [got, wanted] of apart) expect(Math.abs(got - wanted)).toBeLessThan(2 * c.steps.length * a.lr * (1 + a.weight_decay));
        total += values.length;
        illConditioned += apart.length;
      }
      // Most of the model is checked to 1e-4.
      expect(illConditioned).toBeLessThan(0.2 * total);
    } finally {
      objective.free();
      optimizer.free();
      model.free();
    }
  });
});

describe('beta -> 0', () => {
  const c = ref.cases['gpt2-small-beta'];

  test('the sigmoid loss tends to log 2 and its gradient to -beta/2 * d(mean logit) of the reference', () => {
    const { model, reference } = setUp(c);
    const objective = new PreferenceObjective(settingsOf(c), reference);
    try {
      model.zeroGrad();
      const r = objective.step(model, [batchOf(c)], () => ({}), null);
      // The policy is the reference at the start: logit 0, loss exactly log 2.
      expect(Math.abs(r.loss - Math.log(2))).toBeLessThan(1e-12);
      const beta = c.beta!;
      for (const [n, grad] of trainedTensors(model, model.grads!)) {
        const logitGrad = tensors.get(`gpt2-small-beta.logit_grad.${n}`)!.data;
        const want = logitGrad.map((g) => (-beta / 2) * g);
        // The exact gradient at logit 0 is -beta sigmoid(0) d(logit) = -beta/2 d(logit): float32 rounding only.
        expect(relMaxError(grad, want)).toBeLessThan(1e-4);
      }
    } finally {
      objective.free();
      model.free();
    }
  });

  test.each([1e-3, 1e-6, 1e-9])('pair terms at beta %p: loss -> log 2, dL/dlogit -> -beta/2', (beta) => {
    const logit = 1.7;
    const t = dpoPairTerms({ method: 'dpo', beta, lossType: 'sigmoid', labelSmoothing: 0, lambda: 0 }, -3, -3 - logit, -5, -5);
    // log(1 + exp(-x)) = log 2 - x/2 + x^2/8 - ...: the first correction is beta * logit / 2.
    expect(Math.abs(t.loss - (Math.log(2) - (beta * logit) / 2))).toBeLessThan((beta * logit) ** 2);
    expect(Math.abs(t.dChosen / beta + 0.5)).toBeLessThan(beta * logit);
  });
});

describe('pair terms against central differences', () => {
  const h = 1e-6;
  const cases: Array<[string, PreferenceSettings]> = [
    ['sigmoid', { method: 'dpo', beta: 0.3, lossType: 'sigmoid', labelSmoothing: 0, lambda: 0 }],
    ['cdpo', { method: 'dpo', beta: 0.3, lossType: 'sigmoid', labelSmoothing: 0.25, lambda: 0 }],
    ['ipo', { method: 'dpo', beta: 0.3, lossType: 'ipo', labelSmoothing: 0, lambda: 0 }],
    ['hinge', { method: 'dpo', beta: 0.3, lossType: 'hinge', labelSmoothing: 0, lambda: 0 }],
  ];
  test.each(cases)('%s: dL/dpi_c and dL/dpi_r', (_, s) => {
    const L = (pc: number, pr: number) => dpoPairTerms(s, pc, pr, -4.2, -3.1).loss;
    const pc = -2.5, pr = -4.75;
    const t = dpoPairTerms(s, pc, pr, -4.2, -3.1);
    expect(Math.abs(t.dChosen - (L(pc + h, pr) - L(pc - h, pr)) / (2 * h))).toBeLessThan(1e-7);
    expect(Math.abs(t.dRejected - (L(pc, pr + h) - L(pc, pr - h)) / (2 * h))).toBeLessThan(1e-7);
  });

  test('orpo: d(-lambda logsigmoid(log_odds))/da_c and /da_r, with mean log-probs near 0 and far below', () => {
    const s: PreferenceSettings = { method: 'orpo', beta: 0, lossType: 'sigmoid', labelSmoothing: 0, lambda: 0.7 };
    for (const [ac, ar] of [[-0.05, -2.5], [-6, -1e-3], [-1.2, -1.3]]) {
      const L = (x: number, y: number) => orpoPairTerms(s, x, y).loss;
      const t = orpoPairTerms(s, ac, ar);
      const hh = Math.min(h, Math.abs(ac) / 10, Math.abs(ar) / 10) / 10;
      expect(Math.abs(t.dChosen - (L(ac + hh, ar) - L(ac - hh, ar)) / (2 * hh))).toBeLessThan(1e-5 * Math.max(1, Math.abs(t.dChosen)));
      expect(Math.abs(t.dRejected - (L(ac, ar + hh) - L(ac, ar - hh)) / (2 * hh))).toBeLessThan(1e-5 * Math.max(1, Math.abs(t.dRejected)));
    }
  });
});
