/**
 * One training run of the demo, measured: the Trainer on batches from lib/data, validation before
 * the first step and evenly through the run, the best model (lowest validation loss) restored at
 * the end, and the run's cost (wall time, tokens per second, peak RSS).
 */
import { resolveConfig, TrainConfig } from '../config';
import { Batch, buildDatasets, DataKind, DataReport } from '../data';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import { evaluate } from '../train/lm';
import { Trainer } from '../train/trainer';
import { LoraPlan, TrainingPlan } from './presets';

export interface CurvePoint {
  step: number;
  /** Training token positions processed before this point (B*T per micro-batch). */
  tokens: number;
  loss: number;
}

export interface RunRecord {
  name: string;
  /** Training examples (documents for plain text) and rows of T tokens per epoch. */
  train_examples: number;
  train_rows: number;
  /** Examples longer than T, cut to T. */
  truncated_examples: number;
  validation_tokens: number;
  steps: number;
  planned_steps: number;
  batch_size: number;
  seq_len: number;
  learning_rate: number;
  /** What the optimizer updated: every parameter, or a LoRA adapter's A and B (absent from a base cached before it was recorded). */
  trainable_parameters?: number;
  stop_reason: string;
  /** Validation loss before the first step, at its best, and where the best was. */
  initial_val_loss: number;
  best_val_loss: number;
  best_step: number;
  final_val_loss: number;
  /** Validation loss curve (step 0 = before training) and the training loss (averaged in buckets). */
  val_curve: CurvePoint[];
  train_curve: CurvePoint[];
  /** Seconds: the whole run (data preparation, steps, evaluations), the steps alone, validation alone. */
  wall_s: number;
  train_s: number;
  eval_s: number;
  /** Token positions processed by training steps, and per second of step time. */
  train_tokens: number;
  tokens_per_s: number;
  /** process.resourceUsage().maxRSS after the run, MB: the process's high-water mark so far. */
  peak_rss_mb: number;
}

export interface RunSpec {
  name: string;
  /** Trained in place; on return it holds the best weights. */
  model: Decoder;
  tokenizer: Tokenizer;
  format: DataKind;
  trainFile: string;
  /** A validation file, or the held-out fraction of a text file. */
  validation: { file: string } | { fraction: number };
  template?: string;
  plan: TrainingPlan;
  /** Train a LoRA adapter on the frozen model instead of every weight; the adapter stays applied to `model`. */
  lora?: Omit<LoraPlan, 'learningRates'>;
  seed: number;
  threads: number | null;
  progress: boolean;
  /** T: the length of every training and validation row (at most the model's context). */
  seqLen: number;
}

export function peakRssMB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** At most `n` points: the curve averaged over equal runs of consecutive steps. */
export function bucketCurve(points: readonly CurvePoint[], n: number): CurvePoint[] {
  if (points.length <= n) return points.slice();
  const out: CurvePoint[] = [];
  for (let b = 0; b < n; b++) {
    const from = Math.floor((b * points.length) / n), to = Math.floor(((b + 1) * points.length) / n);
    let loss = 0;
    for (let i = from; i < to; i++) loss += points[i].loss;
    const last = points[to - 1];
    out.push({ step: last.step, tokens: last.tokens, loss: loss / (to - from) });
  }
  return out;
}

function positions(batches: readonly Batch[]): number {
  return batches.reduce((n, b) => n + b.scoredTokens, 0);
}

export async function trainRun(spec: RunSpec): Promise<{ record: RunRecord; data: DataReport; config: TrainConfig }> {
  const started = Date.now();
  const { model, plan } = spec;
  const T = spec.seqLen;
  if (T > model.contextLength) throw new Error(`demo run ${spec.name}: seqLen ${T} is longer than the model's context of ${model.contextLength} tokens`);
  const datasets = buildDatasets({
    train: spec.trainFile,
    ...('file' in spec.validation ? { validation: spec.validation.file } : { validationFraction: spec.validation.fraction }),
    tokenizer: spec.tokenizer, seqLen: T, batchSize: plan.batchSize, packing: true, trainOnPrompt: false,
    shuffle: true, seed: spec.seed, format: spec.format, template: spec.template,
  });
  const steps = plan.steps ?? Math.max(1, Math.ceil((plan.epochs ?? 1) * datasets.train.batchesPerEpoch));
  const evalEvery = Math.max(1, Math.ceil(steps / plan.evaluations));
  const config = resolveConfig({}, {
    max_steps: steps, batch_size: plan.batchSize, learning_rate: plan.learningRate, warmup_ratio: plan.warmupRatio,
    schedule: 'cosine', min_lr: plan.learningRate / 10, weight_decay: plan.weightDecay, seq_len: T, seed: spec.seed,
    eval_every: evalEvery, early_stopping_patience: plan.patience, threads: spec.threads, output_dir: null,
    // No dropout: the demo's runs and the results docs/demo reports were measured without it (as
    // nanoGPT pretrains with dropout 0); a `new:` GPT-2 spec would otherwise train with 0.1.
    dropout: 0,
    // The batches come from options.validation below; the Trainer's config check wants to see where
    // validation data comes from before it allows eval_every.
    ...('file' in spec.validation ? { validation: spec.validation.file } : { validation_fraction: spec.validation.fraction }),
    ...(spec.lora ? { lora: true, lora_r: spec.lora.r, lora_alpha: spec.lora.alpha, lora_dropout: spec.lora.dropout, lora_targets: spec.lora.targets } : {}),
  }, { require: [] });

  let evalSeconds = 0;
  const timedEval = () => {
    const t0 = process.hrtime.bigint();
    const r = evaluate(model, datasets.validation, spec.tokenizer.eosTokenId);
    evalSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    return r;
  };
  const initial = timedEval();
  const valCurve: CurvePoint[] = [{ step: 0, tokens: 0, loss: initial.loss }];
  const trainCurve: CurvePoint[] = [];
  let tokensSeen = 0, stepSeconds = 0;
  // The best weights (every parameter, or the LoRA adapter) live in memory: the runs are small, and
  // the test split never sees them. The Trainer applies the adapter in fit(), so `trainable` is read then.
  let best: Float32Array | null = null;
  const trainer = new Trainer(config, {
    model, tokenizer: spec.tokenizer, train: datasets.train, validation: datasets.validation, progress: spec.progress,
  });
  trainer.on('step', (s) => {
    tokensSeen += s.tokens_per_s * (s.ms / 1000);
    stepSeconds += s.ms / 1000;
    trainCurve.push({ step: s.step, tokens: Math.round(tokensSeen), loss: s.loss });
  });
  trainer.on('eval', (e) => {
    evalSeconds += e.ms / 1000;
    valCurve.push({ step: e.step, tokens: Math.round(tokensSeen), loss: e.val_loss });
    if (e.improved) best = model.trainable.all().read();
  });
  const result = await trainer.fit();
  if (best) model.trainable.all().write(best);
  const wall = (Date.now() - started) / 1000;
  const report = datasets.report;
  const record: RunRecord = {
    name: spec.name,
    train_examples: report.trainSplit.examples,
    train_rows: report.trainSplit.rows,
    truncated_examples: report.trainSplit.truncatedExamples,
    validation_tokens: positions(datasets.validation),
    steps: result.step,
    planned_steps: steps,
    batch_size: plan.batchSize,
    seq_len: T,
    learning_rate: plan.learningRate,
    trainable_parameters: model.trainable.numel,
    stop_reason: result.reason,
    initial_val_loss: initial.loss,
    best_val_loss: result.bestValLoss ?? initial.loss,
    best_step: result.bestStep ?? 0,
    final_val_loss: valCurve[valCurve.length - 1].loss,
    val_curve: valCurve,
    train_curve: bucketCurve(trainCurve, 200),
    wall_s: wall,
    train_s: stepSeconds,
    eval_s: evalSeconds,
    train_tokens: Math.round(tokensSeen),
    tokens_per_s: stepSeconds > 0 ? tokensSeen / stepSeconds : 0,
    peak_rss_mb: peakRssMB(),
  };
  return { record, data: report, config };
}
