/**
 * The demo's preference-tuning study: DPO on the subject-line model. Each email's body becomes a pair:
 * its real subject preferred over the subject of another email of the same split (a seeded rotation;
 * pairs whose two subjects are the same text are dropped). The subject model (models/subject) is
 * tuned for a few steps on the training pairs with DPO (the reference: itself before the run), and the
 * held-out test pairs, which no run trains on or picks a model with, are scored before and after:
 *
 *   log-prob accuracy  how often the model gives the real subject a higher log-probability (summed
 *                      over its tokens) than the other email's subject; a longer subject has more
 *                      tokens, hence usually a lower sum, so this favours short subjects either way
 *   reward accuracy    DPO's rewards/accuracies: how often beta (logp - ref logp) of the real subject
 *                      is above the other's. Before the run the model is its reference: every reward
 *                      is 0 and the reward accuracy is 0 by definition, so only "after" says anything.
 */
import * as path from 'path';
import { buildPreferenceDatasets, loadRecords, pairValidationBatches } from '../data';
import type { Batch } from '../data/types';
import { writeFileAtomic } from '../io/atomic';
import { resolveConfig } from '../config';
import { Decoder } from '../model/decoder';
import type { Tokenizer } from '../tokenizer';
import { FrozenReference, PreferenceObjective, rowLogps } from '../train/preference';
import { Trainer } from '../train/trainer';
import { Rng } from '../util/rng';
import type { PreferencePlan } from './presets';
import { peakRssMB } from './training';

export interface PreferenceSummary {
  plan: PreferencePlan;
  seq_len: number;
  pairs: { train: number; validation: number; test: number };
  /** Test pairs: real subject more likely than the other email's, before and after DPO. */
  logp_accuracy_before: number;
  logp_accuracy_after: number;
  /** Test pairs after DPO: DPO's reward accuracy and mean reward margin (both 0 before, by definition). */
  reward_accuracy_after: number;
  reward_margin_after: number;
  /** Validation pairs during the run: DPO loss and reward accuracy per evaluation. */
  val_curve: Array<{ step: number; loss: number; reward_accuracy: number }>;
  steps: number;
  wall_s: number;
  train_tokens: number;
  tokens_per_s: number;
  peak_rss_mb: number;
}

/** Subject-line records (prompt_completion: body -> subject) as preference pairs, TRL's string form, one JSONL line each. */
function pairLines(subjectFile: string, seed: number): string[] {
  const records = loadRecords(subjectFile, { format: 'prompt_completion' }).records;
  const n = records.length;
  if (n < 2) return [];
  // Another email's subject: the one `offset` places on (never itself), with the offset drawn once per split.
  const offset = 1 + new Rng(seed).int(n - 1);
  const lines: string[] = [];
  records.forEach((r, i) => {
    const other = records[(i + offset) % n];
    if (r.kind !== 'prompt_completion' || other.kind !== 'prompt_completion' || other.completion === r.completion) return;
    lines.push(JSON.stringify({ prompt: r.prompt, chosen: r.completion, rejected: other.completion }));
  });
  return lines;
}

/** The fraction of pairs whose chosen side the model finds more likely (summed log-probs over the answer). */
function logpAccuracy(model: Decoder, batches: readonly Batch[]): number {
  let right = 0, total = 0;
  for (const b of batches) {
    const r = model.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds });
    const { sums } = rowLogps(r.losses, b.targets, b.B, b.T);
    const P = b.pairs!.length;
    for (let p = 0; p < P; p++) if (sums[p] > sums[P + p]) right++;
    total += P;
  }
  return total > 0 ? right / total : NaN;
}

export interface PreferenceStudyInput {
  /** The subject-line model: trained in place (the caller frees it). */
  model: Decoder;
  tokenizer: Tokenizer;
  files: { genTrain: string; genValidation: string; genTest: string };
  dataDir: string;
  plan: PreferencePlan;
  seqLen: number;
  seed: number;
  threads: number | null;
  progress: boolean;
  log: (line: string) => void;
}

export async function preferenceStudy(s: PreferenceStudyInput): Promise<PreferenceSummary> {
  const started = Date.now();
  const files = { train: path.join(s.dataDir, 'preference-train.jsonl'), validation: path.join(s.dataDir, 'preference-validation.jsonl'), test: path.join(s.dataDir, 'preference-test.jsonl') };
  const counts = { train: 0, validation: 0, test: 0 };
  for (const [split, source] of [['train', s.files.genTrain], ['validation', s.files.genValidation], ['test', s.files.genTest]] as const) {
    const lines = pairLines(source, s.seed + split.length);
    if (lines.length === 0) throw new Error(`demo: the ${split} split has fewer than 2 emails with distinct subjects, too few for preference pairs`);
    writeFileAtomic(files[split], lines.join('\n') + '\n');
    counts[split] = lines.length;
  }
  const { plan, seqLen: T } = s;
  const data = buildPreferenceDatasets({ train: files.train, validation: files.validation, tokenizer: s.tokenizer, seqLen: T, pairsPerBatch: plan.batchPairs, shuffle: true, seed: s.seed });
  const test = buildPreferenceDatasets({ train: files.test, tokenizer: s.tokenizer, seqLen: T, pairsPerBatch: plan.batchPairs, shuffle: false, seed: s.seed });
  const testBatches = pairValidationBatches(test.trainPairs, plan.batchPairs, T, s.tokenizer.eosTokenId);
  const settings = { method: 'dpo' as const, beta: plan.beta, lossType: 'sigmoid' as const, labelSmoothing: 0, lambda: 0 };
  // The test pairs' judge: DPO's rewards against a copy of the model as it is now (the run's reference too).
  const judge = new PreferenceObjective(settings, FrozenReference.copyOf(s.model, (config, device) => new Decoder(config, device)));
  try {
    const before = logpAccuracy(s.model, testBatches);
    s.log(`preference: ${counts.train} training pairs (real subject over another email's); test pairs: the model prefers the real subject in ${(100 * before).toFixed(1)}% before DPO`);
    const config = resolveConfig({}, {
      method: 'dpo', beta: plan.beta, max_steps: plan.steps, batch_size: plan.batchPairs, learning_rate: plan.learningRate, schedule: 'constant',
      seq_len: T, seed: s.seed, eval_every: Math.max(1, Math.ceil(plan.steps / plan.evaluations)), validation: files.validation, threads: s.threads,
      output_dir: null, dropout: 0, grad_clip: 1,
    }, { require: [] });
    const valCurve: PreferenceSummary['val_curve'] = [];
    let tokens = 0, stepSeconds = 0;
    const trainer = new Trainer(config, { model: s.model, tokenizer: s.tokenizer, train: data.train, validation: data.validation, progress: s.progress });
    trainer.on('step', (e) => {
      tokens += e.tokens_per_s * (e.ms / 1000);
      stepSeconds += e.ms / 1000;
    });
    trainer.on('eval', (e) => valCurve.push({ step: e.step, loss: e.val_loss, reward_accuracy: e['val_rewards/accuracies']! }));
    const result = await trainer.fit();
    const after = judge.evaluate(s.model, testBatches, s.tokenizer.eosTokenId);
    const summary: PreferenceSummary = {
      plan, seq_len: T, pairs: counts, logp_accuracy_before: before, logp_accuracy_after: logpAccuracy(s.model, testBatches),
      reward_accuracy_after: after.metrics['rewards/accuracies'], reward_margin_after: after.metrics['rewards/margins'], val_curve: valCurve,
      steps: result.step, wall_s: (Date.now() - started) / 1000, train_tokens: Math.round(tokens), tokens_per_s: stepSeconds > 0 ? tokens / stepSeconds : 0, peak_rss_mb: peakRssMB(),
    };
    s.log(`preference: after ${summary.steps} DPO steps the test pairs' reward accuracy is ${(100 * summary.reward_accuracy_after).toFixed(1)}%, log-prob accuracy ${(100 * summary.logp_accuracy_after).toFixed(1)}%, ${summary.wall_s.toFixed(1)} s`);
    return summary;
  } finally {
    judge.free();
  }
}

/** report.md's section on the study (nothing for a report without one). */
export function preferenceSection(p: PreferenceSummary | undefined): string[] {
  if (p === undefined) return [];
  const f4 = (x: number) => x.toFixed(4);
  const last = p.val_curve[p.val_curve.length - 1];
  return [
    `## Preference tuning (DPO) of the subject model (${p.pairs.test} held-out test pairs)`,
    '',
    `Each email body is a prompt; its real subject is preferred over the subject of another email of the same split. The subject model was tuned with DPO (sigmoid loss, beta ${p.plan.beta}, the model itself before the run as the reference) for ${p.steps} steps of ${p.plan.batchPairs} pairs at learning rate ${p.plan.learningRate} on ${p.pairs.train} training pairs (${p.pairs.validation} validation pairs), ${p.wall_s.toFixed(1)} s. The test pairs were never trained on or used to pick a model.`,
    '',
    'Before the run every DPO reward is 0 (the model is its own reference), so the reward accuracy and margin are 0 by definition; the log-prob accuracy is the fraction of pairs whose real subject the model finds more likely.',
    '',
    '| measure on the test pairs | before DPO | after DPO |',
    '| --- | ---: | ---: |',
    `| log-prob accuracy (real subject more likely) | ${f4(p.logp_accuracy_before)} | ${f4(p.logp_accuracy_after)} |`,
    `| DPO reward accuracy (rewards/accuracies) | 0 | ${f4(p.reward_accuracy_after)} |`,
    `| DPO reward margin (rewards/margins) | 0 | ${f4(p.reward_margin_after)} |`,
    '',
    `Validation during the run: reward accuracy ${p.val_curve.map((v) => `${f4(v.reward_accuracy)} (step ${v.step})`).join(', ')}${last ? `; DPO loss ${f4(last.loss)} at the end (log 2 at the start)` : ''}. The log-prob accuracy compares summed log-probabilities, so it also reflects the subjects' lengths, not only their fit to the body.`,
    '',
  ];
}
