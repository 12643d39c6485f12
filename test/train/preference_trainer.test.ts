/**
 * `method: dpo | orpo` in the Trainer: rewards logged per step and per evaluation, resume bit for bit as
 * sft, gradient accumulation equal to one big batch, LoRA with the adapter-off reference, precompute_ref
 * equal to the per-batch reference, early stopping on the validation reward accuracy, and the config
 * checks that keep preference settings off sft runs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError, resolveConfig, TrainConfig } from '../../lib/config';
import { loadModel } from '../../lib/model/checkpoint';
import { EvalLog, FitResult, StepLog, Trainer } from '../../lib/train/trainer';
import { tempDir, TINY } from '../helpers';

let dir: string;
let pairsFile: string;
beforeAll(() => {
  dir = tempDir('gptune-dpo-trainer-');
  // A learnable preference: the answer that repeats the prompt's animal is preferred.
  const animals = ['whale', 'gull', 'shark', 'seal', 'crab', 'cod'];
  const lines: string[] = [];
  for (let i = 0; i < 18; i++) {
    const a = animals[i % animals.length], b = animals[(i + 2) % animals.length];
    const input = { messages: [{ role: 'user', content: `Name the ${a}.` }] };
    lines.push(JSON.stringify({ input, preferred_output: [{ role: 'assistant', content: `The ${a}.` }], non_preferred_output: [{ role: 'assistant', content: `The ${b} again.` }] }));
  }
  pairsFile = path.join(dir, 'pairs.jsonl');
  fs.writeFileSync(pairsFile, lines.join('\n') + '\n');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function run(config: Partial<TrainConfig>) {
  const trainer = new Trainer(config);
  const steps: StepLog[] = [], evals: EvalLog[] = [];
  trainer.on('step', (s) => steps.push(s));
  trainer.on('eval', (e) => evals.push(e));
  const result: FitResult = await trainer.fit();
  result.model.free();
  return { result, steps, evals };
}

const base = (out: string): Partial<TrainConfig> => ({
  model: TINY, data: pairsFile, output_dir: path.join(dir, out), method: 'dpo', max_steps: 6, batch_size: 2, seq_len: 40,
  learning_rate: 2e-3, validation_fraction: 0.25, eval_every: 2, seed: 5, shuffle: true,
});

function weightsOf(folder: string): Float32Array {
  const m = loadModel(folder);
  const w = m.params.arena.read(0, m.params.numel);
  m.free();
  return w;
}

describe('dpo in the Trainer', () => {
  test('logs loss and TRL\'s reward metrics per step and per evaluation; the first step is at the reference (loss log 2, rewards 0)', async () => {
    const r = await run(base('logs'));
    expect(r.result.reason).toBe('completed');
    expect(r.steps).toHaveLength(6);
    const first = r.steps[0];
    expect(Math.abs(first.loss - Math.log(2))).toBeLessThan(1e-6);
    expect(first['rewards/chosen']).toBe(0);
    expect(first['rewards/margins']).toBe(0);
    for (const s of r.steps) for (const k of ['rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'logps/chosen', 'logps/rejected'] as const) expect(Number.isFinite(s[k])).toBe(true);
    expect(r.evals.map((e) => e.step)).toEqual([2, 4, 6]);
    for (const e of r.evals) expect(e['val_rewards/accuracies']).toBeGreaterThanOrEqual(0);
    // Training moves the margin the preferred way.
    expect(r.steps[5]['rewards/margins']!).toBeGreaterThan(0);
    const lines = fs.readFileSync(path.join(dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => 'rewards/accuracies' in l)).toHaveLength(6);
    expect(lines.filter((l) => 'val_rewards/accuracies' in l)).toHaveLength(3);
  });

  test('resume == uninterrupted, bit for bit (losses, rewards, evaluations, weights)', async () => {
    const full = await run({ ...base('full'), save_every: 3 });
    const resumed = await run({ ...base('resumed'), resume_from: path.join(dir, 'full', 'checkpoints', 'step-3') });
    const pick = (s: StepLog) => [s.step, s.loss, s.grad_norm, s['rewards/chosen'], s['rewards/rejected'], s['rewards/accuracies']];
    expect(resumed.steps.map(pick)).toEqual(full.steps.slice(3).map(pick));
    expect(resumed.evals.map((e) => [e.step, e.val_loss, e['val_rewards/margins']])).toEqual(full.evals.filter((e) => e.step > 3).map((e) => [e.step, e.val_loss, e['val_rewards/margins']]));
    expect(weightsOf(path.join(dir, 'resumed', 'checkpoints', 'last'))).toEqual(weightsOf(path.join(dir, 'full', 'checkpoints', 'last')));
  });

  test('precompute_ref gives the same run as the per-batch reference', async () => {
    const perBatch = await run({ ...base('per-batch'), max_steps: 3, eval_every: 3 });
    const pre = await run({ ...base('pre'), max_steps: 3, eval_every: 3, precompute_ref: true });
    expect(pre.steps.map((s) => [s.loss, s['rewards/margins']])).toEqual(perBatch.steps.map((s) => [s.loss, s['rewards/margins']]));
    expect(pre.evals.map((e) => e.val_loss)).toEqual(perBatch.evals.map((e) => e.val_loss));
  });

  test('grad accumulation: 2 micro-batches of 1 pair = 1 batch of 2 pairs (the mean over the step\'s pairs)', async () => {
    const common = { max_steps: 2, eval_every: 0, validation_fraction: 0, shuffle: false, eval_at_end: false };
    const one = await run({ ...base('one'), ...common, batch_size: 2 });
    const two = await run({ ...base('two'), ...common, batch_size: 1, grad_accum_steps: 2 });
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(two.steps[i].loss - one.steps[i].loss)).toBeLessThan(1e-6);
      expect(Math.abs(two.steps[i].grad_norm - one.steps[i].grad_norm) / one.steps[i].grad_norm).toBeLessThan(1e-4);
    }
  });

  test('LoRA: the reference is the base with the adapter off (rewards 0 before the first update, then not)', async () => {
    const r = await run({ ...base('lora'), lora: true, lora_r: 4, lora_dropout: 0, lora_targets: 'all-linear', learning_rate: 1e-2, max_steps: 3, eval_every: 3 });
    // PEFT initialises B = 0: the adapted model is the base at step 1.
    expect(r.steps[0]['rewards/chosen']).toBe(0);
    expect(r.steps[2]['rewards/margins']).not.toBe(0);
    expect(fs.existsSync(path.join(dir, 'lora', 'adapter_model.safetensors'))).toBe(true);
  });

  test('orpo: no reference; loss = nll - lambda * mean logsigmoid(log odds), logged with nll_loss and log_odds_ratio', async () => {
    const r = await run({ ...base('orpo'), method: 'orpo', orpo_lambda: 0.5, max_steps: 2, eval_every: 2 });
    const s = r.steps[0];
    expect(Math.abs(s.loss - (s.nll_loss! - 0.5 * s.log_odds_ratio!))).toBeLessThan(1e-9);
    expect(s['rewards/chosen']).toBeCloseTo(0.5 * s['logps/chosen']!, 12);
    expect(r.evals[0].val_nll_loss).toBeGreaterThan(0);
  });

  test('early stopping and the best checkpoint on val_rewards/accuracies (higher is better)', async () => {
    const r = await run({ ...base('early'), max_steps: 12, eval_every: 1, best_metric: 'val_rewards/accuracies', early_stopping_patience: 2, learning_rate: 1e-5 });
    // At a learning rate this small the accuracy cannot keep rising: the run stops within a few evaluations.
    expect(r.result.reason).toBe('early_stopping');
    const best = r.evals.find((e) => e.step === r.result.bestStep)!;
    expect(r.result.bestValLoss).toBe(best['val_rewards/accuracies']);
    for (const e of r.evals) expect(e['val_rewards/accuracies']!).toBeLessThanOrEqual(r.result.bestValLoss!);
  });
});

describe('config checks', () => {
  const resolve = (c: Partial<TrainConfig>) => () => resolveConfig({}, { model: 'm', data: 'd', output_dir: 'o', ...c });
  test.each([
    [{ beta: 0.2 }, /beta needs method dpo or orpo/],
    [{ format: 'preference' as const }, /format preference .* trains with method dpo or orpo/],
    [{ method: 'dpo' as const, format: 'chat' as const }, /method dpo trains on preference pairs/],
    [{ method: 'orpo' as const, beta: 0.3 }, /beta is a DPO setting/],
    [{ method: 'dpo' as const, orpo_lambda: 0.3 }, /orpo_lambda \(--lambda\) needs method orpo/],
    [{ method: 'dpo' as const, loss_type: 'ipo' as const, label_smoothing: 0.1 }, /label_smoothing applies to loss_type sigmoid only/],
    [{ best_metric: 'val_rewards/accuracies' as const }, /best_metric val_rewards\/accuracies needs method dpo or orpo/],
    [{ method: 'dpo' as const, train_on_prompt: true }, /train_on_prompt does not apply to method dpo/],
  ])('%p is refused', (c, message) => {
    expect(resolve(c)).toThrow(ConfigError);
    expect(resolve(c)).toThrow(message);
  });
});
