/**
 * Runs that diverge say so: a non-finite loss skips the update (parameters and AdamW moments stay as
 * they were), max_skipped_steps of them in a row or a loss far above the last 100 steps stop the run
 * as 'diverged' without publishing anything, a huge finite loss warns, and the z-score bound is the
 * one documented (checked against values worked out by hand). On the tiny fixture model.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { TrainConfig } from '../../lib/config';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { DivergenceMonitor, LOSS_WINDOW } from '../../lib/train/divergence';
import { StepLog, Trainer, TrainingWarning } from '../../lib/train/trainer';
import { FIXTURES, tempDir, TINY } from '../helpers';

const DATA = path.join(FIXTURES, 'eval-text.txt');

async function run(config: Partial<TrainConfig>, opts: ConstructorParameters<typeof Trainer>[1] = {}, onStep?: (s: StepLog, t: Trainer) => void) {
  const trainer = new Trainer({ data: DATA, batch_size: 2, seq_len: 16, shuffle: false, ...config }, opts);
  const steps: StepLog[] = [], warnings: TrainingWarning[] = [];
  trainer.on('step', (s) => { steps.push(s); onStep?.(s, trainer); });
  trainer.on('warning', (w) => warnings.push(w));
  const result = await trainer.fit();
  return { result, steps, warnings };
}

function sha(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function scaleTensor(model: Decoder, name: string, factor: number): void {
  const t = model.params.get(name);
  const v = t.read();
  for (let i = 0; i < v.length; i++) v[i] *= factor;
  t.write(v);
}

describe('non-finite steps', () => {
  test('NaN from step 2 (lr 1e10): updates skipped, stopped as diverged after max_skipped_steps, nothing published', async () => {
    const out = path.join(tempDir('gptune-diverge-'), 'out');
    const { result, steps, warnings } = await run({ model: TINY, output_dir: out, learning_rate: 1e10, max_steps: 20, save_every: 1 });
    expect(result.reason).toBe('diverged');
    // Step 1 is finite; steps 2-5 are skipped; step 6 is the fifth non-finite step in a row.
    expect(steps.map((s) => s.skipped ?? false)).toEqual([false, true, true, true, true]);
    expect(steps.slice(1).every((s) => Number.isNaN(s.loss))).toBe(true);
    expect(warnings.map((w) => [w.step, w.kind])).toEqual([[2, 'nonfinite'], [3, 'nonfinite'], [4, 'nonfinite'], [5, 'nonfinite']]);
    expect(result.divergence).toMatch(/^5 consecutive steps had a non-finite loss or gradient norm \(step 6: loss NaN; max_skipped_steps 5\)$/);
    // A skipped step leaves parameters and both AdamW moments (and its step count) as they were.
    const ckpt = (n: number) => path.join(out, 'checkpoints', `step-${n}`);
    for (const n of [2, 3, 4, 5]) {
      expect(sha(path.join(ckpt(n), 'model.safetensors'))).toBe(sha(path.join(ckpt(1), 'model.safetensors')));
      expect(sha(path.join(ckpt(n), 'optimizer.safetensors'))).toBe(sha(path.join(ckpt(1), 'optimizer.safetensors')));
    }
    // Nothing published: no model in --out, no checkpoints/last; the last good checkpoint is named.
    // The history and report stay beside the checkpoints: they show how the run diverged.
    expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'checkpoints', 'metrics.jsonl', 'report.html']);
    expect(fs.existsSync(path.join(out, 'checkpoints', 'last'))).toBe(false);
    expect(result.lastGoodCheckpoint).toBe(ckpt(5));
    expect(result.outputDir).toBeNull();
    result.model.free();
  });

  test('max_skipped_steps sets how many non-finite steps in a row stop the run', async () => {
    const { result, steps } = await run({ model: TINY, learning_rate: 1e10, max_steps: 20, max_skipped_steps: 2 });
    expect(result.reason).toBe('diverged');
    expect(steps.map((s) => s.skipped ?? false)).toEqual([false, true]);
    result.model.free();
  });

  test('parameters that an update makes non-finite are never saved or published', async () => {
    // NaN in a weight after the last step (as an overflowing update would leave it): the run is over before any
    // step could see it, so only the check before saving stands between the NaN and --out.
    const model = loadModel(TINY);
    const out2 = path.join(tempDir('gptune-diverge-'), 'out');
    const r = await run({ output_dir: out2, max_steps: 2 }, { model, tokenizer: loadTokenizer(TINY), tokenizerDir: TINY }, (s) => {
      if (s.step === 2) scaleTensor(model, 'h.1.mlp.c_fc.weight', NaN);
    });
    expect(r.result.reason).toBe('diverged');
    expect(r.result.divergence).toBe('after step 2 the parameter tensor h.1.mlp.c_fc.weight holds NaN or infinite values');
    expect(fs.existsSync(out2)).toBe(false);
    model.free();
  });
});

test('a non-finite validation loss stops the run as diverged', async () => {
  const model = loadModel(TINY);
  const { result, steps } = await run({ max_steps: 5, eval_every: 1, validation: DATA }, { model, tokenizer: loadTokenizer(TINY), tokenizerDir: TINY }, (s) => {
    if (s.step === 2) scaleTensor(model, 'ln_f.weight', 1e38); // finite weights whose logits overflow
  });
  expect(result.reason).toBe('diverged');
  expect(steps).toHaveLength(2);
  expect(result.divergence).toMatch(/^the validation loss after step 2 is (NaN|-?Infinity)$/);
  model.free();
});

test('resume_from with a different model is an error naming both', async () => {
  const out = path.join(tempDir('gptune-diverge-'), 'out');
  const first = await run({ model: TINY, output_dir: out, max_steps: 1, save_every: 1 });
  first.result.model.free();
  const other = 'new:n_layer=1,n_head=2,n_embd=8,n_positions=32';
  const checkpoints = path.join(out, 'checkpoints');
  await expect(new Trainer({ model: other, data: DATA, resume_from: checkpoints, max_steps: 2 }).fit()).rejects.toThrow(
    `model ${other} conflicts with resume_from ${checkpoints}: that checkpoint continues a run of ${TINY} and resuming loads its weights; leave model unset or equal to it`,
  );
});

describe('loss spikes', () => {
  test('a loss far above the last 100 steps stops the run; with divergence_zscore 0 it only warns', async () => {
    const spikeAfter = LOSS_WINDOW + 5;
    const inject = (s: StepLog, model: Decoder) => {
      if (s.step === spikeAfter) scaleTensor(model, 'wte.weight', 1e3);
    };
    const model = loadModel(TINY);
    const opts = { model, tokenizer: loadTokenizer(TINY), tokenizerDir: TINY };
    const stopped = await run({ learning_rate: 1e-3, max_steps: spikeAfter + 10 }, opts, (s) => inject(s, model));
    expect(stopped.result.reason).toBe('diverged');
    expect(stopped.steps).toHaveLength(spikeAfter);
    expect(stopped.warnings).toEqual([]);
    expect(stopped.result.divergence).toMatch(new RegExp(`^step ${spikeAfter + 1}: loss \\S+ is \\S+ standard deviations above the mean \\S+ of the last 100 steps \\(divergence_zscore 50\\)$`));
    model.free();

    const model2 = loadModel(TINY);
    const warned = await run({ learning_rate: 1e-3, max_steps: spikeAfter + 3, divergence_zscore: 0 },
      { model: model2, tokenizer: loadTokenizer(TINY), tokenizerDir: TINY }, (s) => inject(s, model2));
    expect(warned.result.reason).toBe('completed');
    expect(warned.warnings[0]).toMatchObject({ step: spikeAfter + 1, kind: 'loss_spike' });
    expect(warned.warnings[0].message).toMatch(/loss spike \S+, \S+ standard deviations above the last 100 steps/);
    model2.free();
  });

  test('a huge finite loss (3e9) warns from the first step, once per run of such steps', async () => {
    const model = loadModel(TINY);
    scaleTensor(model, 'wte.weight', 1e9);
    const { result, steps, warnings } = await run({ max_steps: 3, learning_rate: 0 }, { model, tokenizer: loadTokenizer(TINY), tokenizerDir: TINY });
    expect(steps[0].loss).toBeGreaterThan(1e9);
    expect(Number.isFinite(steps[0].loss)).toBe(true);
    expect(result.reason).toBe('completed');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ step: 1, kind: 'high_loss' });
    // ln(350) = 5.858: the tiny model's vocabulary.
    expect(warnings[0].message).toContain('is more than 3 times ln(vocab_size) = 5.86, the loss of uniform guessing');
    model.free();
  });
});

describe('DivergenceMonitor: the documented bounds', () => {
  const monitor = (zscore = 50) => {
    const m = new DivergenceMonitor({ maxSkippedSteps: 3, divergenceZscore: zscore, vocabSize: 1000 });
    // Losses 1 and 3 alternating: mean 2, population standard deviation 1.
    for (let i = 0; i < LOSS_WINDOW; i++) expect(m.check(i + 1, i % 2 === 0 ? 1 : 3, 1).action).toBe('update');
    return m;
  };

  test('no z-score until the window holds 100 losses', () => {
    const m = new DivergenceMonitor({ maxSkippedSteps: 3, divergenceZscore: 50, vocabSize: 1000 });
    for (let i = 0; i < LOSS_WINDOW - 1; i++) m.check(i + 1, 2, 1);
    expect(m.check(LOSS_WINDOW, 20, 1)).toMatchObject({ action: 'update', zscore: null, warning: null });
  });

  test('z = (loss - mean) / std over the window: 2.5 is fine, 9 warns (z 7 > 6), 60 stops (z 58 > 50)', () => {
    expect(monitor().check(101, 2.5, 1)).toMatchObject({ action: 'update', zscore: 0.5, warning: null });
    const spike = monitor().check(101, 9, 1);
    expect(spike.action).toBe('update');
    expect(spike.zscore).toBe(7);
    expect(spike.warning?.kind).toBe('loss_spike');
    const stop = monitor().check(101, 60, 1);
    expect(stop.action).toBe('stop');
    expect(stop.stopMessage).toBe('step 101: loss 60.0000 is 58.0000 standard deviations above the mean 2.0000 of the last 100 steps (divergence_zscore 50)');
    expect(monitor(0).check(101, 60, 1).action).toBe('update');
  });

  test('the deviation is at least 1% of the mean: a flat loss of 4 does not stop at 5 (z 25) but does at 7 (z 75)', () => {
    const flat = () => {
      const m = new DivergenceMonitor({ maxSkippedSteps: 3, divergenceZscore: 50, vocabSize: 1000 });
      for (let i = 0; i < LOSS_WINDOW; i++) m.check(i + 1, 4, 1);
      return m;
    };
    expect(flat().check(101, 5, 1)).toMatchObject({ action: 'update', zscore: 25 });
    expect(flat().check(101, 7, 1)).toMatchObject({ action: 'stop', zscore: 75 });
  });

  test('a finite step resets the count of non-finite ones; an infinite gradient norm counts like a NaN loss', () => {
    const m = new DivergenceMonitor({ maxSkippedSteps: 3, divergenceZscore: 50, vocabSize: 1000 });
    expect(m.check(1, NaN, 1).action).toBe('skip');
    expect(m.check(2, 2, Infinity).action).toBe('skip');
    expect(m.check(3, 2, 1).action).toBe('update');
    expect(m.check(4, Infinity, 1).action).toBe('skip');
    expect(m.check(5, NaN, NaN).action).toBe('skip');
    expect(m.check(6, 2, NaN)).toMatchObject({ action: 'stop', stopMessage: '3 consecutive steps had a non-finite loss or gradient norm (step 6: gradient norm NaN; max_skipped_steps 3)' });
    // A step that scored no tokens has no loss; it is not a non-finite one.
    expect(new DivergenceMonitor({ maxSkippedSteps: 1, divergenceZscore: 50, vocabSize: 1000 }).check(1, null, 0).action).toBe('update');
  });
});
