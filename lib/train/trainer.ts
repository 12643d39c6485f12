/**
 * The fine-tuning loop behind `gptune train` and the programmatic API:
 *
 *   const trainer = new Trainer({ model: './gpt2', data: ['train.jsonl'], validation: 'val.jsonl',
 *                                 output_dir: './out', eval_every: 50, early_stopping_patience: 3 });
 *   trainer.on('step', (s) => ...).on('eval', (e) => ...);
 *   const result = await trainer.fit();
 *
 * One optimizer step = grad_accum_steps micro-batches from the BatchSource; the gradient is that of
 * the mean loss over all their scored tokens. Every eval_every steps the validation batches are
 * evaluated (loss, perplexity, token accuracy); the lowest validation loss so far is kept in
 * checkpoints/best and early stopping counts evaluations without improvement. Resumable checkpoints
 * go to checkpoints/step-N (every save_every steps) and checkpoints/last (at the end and after
 * stop(), which the CLI calls on SIGINT/SIGTERM); output_dir receives the best model (or the last
 * one without validation data). Nothing is printed unless `progress` is asked for; messages name
 * config keys (options.nameKey renames them, as the CLI does with its flags).
 */
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { OutputError, UsageError } from '../errors';
import { isHubModelSpec, localModelFolder, parseHubModelId, pinnedModelId } from '../hub';
import type { HubOptions } from '../hub';
import { OpenedModel, openModel } from '../model/open';
import { ConfigError, ConfigKey, listSetting, parseDevices, resolveConfig, samplePrompts, TrainConfig } from '../config';
import { adapterSpecs } from '../lora/adapter';
import { loadAdapter } from '../lora/apply';
import { ADAPTER_FILES, adapterFiles, isAdapterFolder } from '../lora/files';
import type { LoraSettings } from '../lora/modules';
import { buildDatasets, DataReport } from '../data';
import type { Batch, BatchSource } from '../data/types';
import { resolveDevice, setPrecision, setThreads } from '../device';
import { isAtomicTemporary, removeStaleTemporaries, writeFileAtomic } from '../io/atomic';
import { appendLine } from '../io/jsonl';
import { checkSpace, claimOutputFolder, entryUnder, OUTPUT_MANIFEST, OutputFolder, OutputPlan, planOutputFolder } from '../io/output';
import { parseShardSize } from '../io/sharded';
import { copyModelFolder, MODEL_FILES, modelFolderFiles, readModelFiles, reencodedModelFiles, TOKENIZER_FILES, writeModelFiles } from '../model/checkpoint';
import { IGNORE_INDEX, tokenAccuracy } from '../metrics/lm';
import { Decoder, planMemory } from '../model/decoder';
import { contextLength, DecoderConfig } from '../model/decoder_config';
import { DropoutRates, trainingDropout } from '../model/dropout';
import { encodeSequence, Tokenizer } from '../tokenizer';
import { checkInstance, checkOptions } from '../util/check';
import { checkMemoryBudget, parseByteSize } from '../util/memory';
import { dashboardPage, REPORT_FILE } from '../dashboard/page';
import type { CardFacts } from '../card/card';
import { auditTrainingData, CARD_FILES, folderFacts, hyperparameters, trainingDataFacts, validationEval, writeModelCard } from '../card/folder';
import { DashboardServer, startDashboardServer } from '../dashboard/server';
import { generate } from '../model/generate';
import { AdamW, clipScale } from './adamw';
import { PreferenceSums, stepScope } from './preference';
import type { PreferenceObjective } from './preference';
import { metricFields, PreferenceData, preferenceData, preferenceObjective } from './preference_run';
import { evalResult, evaluateSums } from './lm';
import {
  baseModelName, CONFIG_FILE, findResumableCheckpoint, pruneStepCheckpoints, readCheckpointConfig, readTrainerState, STATE_FILE, stepCheckpoints,
  TrainerState, writeCheckpoint,
} from './checkpoint_state';
import { AnomalyKind, DivergenceMonitor } from './divergence';
import { DataParallel } from './distributed';
import { continueHistoryFile, EvalLog, HISTORY_FILE, HistoryLine, RunHistory, SampleLog, StepLog } from './history';
import { ProgressReporter, ProgressStream } from './progress';
import { learningRate } from './schedule';

export type { StepLog, EvalLog, SampleLog } from './history';

export interface CheckpointEvent {
  step: number;
  kind: 'step' | 'best' | 'last';
  dir: string;
}

export interface EarlyStopEvent {
  step: number;
  best_step: number;
  best_val_loss: number;
  patience: number;
}

/**
 * Something in a step that a person should see: a skipped update, a loss spike, a very high loss,
 * or ('history') that OUT/metrics.jsonl or report.html could not be written (the run goes on).
 */
export interface TrainingWarning {
  step: number;
  kind: AnomalyKind | 'history' | 'card';
  /** One line, without a "warning:" prefix. */
  message: string;
}

export interface TrainerEvents {
  /** Once, before the first step, when the Trainer built the data from files. */
  data: [DataReport];
  step: [StepLog];
  eval: [EvalLog];
  checkpoint: [CheckpointEvent];
  early_stop: [EarlyStopEvent];
  warning: [TrainingWarning];
  /** Greedy continuations of config.sample_prompts, after each evaluation and at the end. */
  sample: [SampleLog];
  /** The dashboard (config.dashboard) listens at this URL, before the model loads. */
  dashboard: [{ url: string }];
}

/**
 * 'diverged': non-finite losses or gradient norms for max_skipped_steps steps in a row, a loss
 * spike beyond divergence_zscore, a non-finite validation loss, or parameters that became
 * non-finite; nothing was written to output_dir and no checkpoint was written after the divergence.
 */
export type StopReason = 'completed' | 'early_stopping' | 'interrupted' | 'diverged';

export interface FitResult {
  reason: StopReason;
  /** Why the run was interrupted: stop()'s reason (the signal's name when the CLI stopped it on SIGINT/SIGTERM), 'stop()' by default. */
  signal?: string;
  step: number;
  totalSteps: number;
  lastEval: EvalLog | null;
  bestValLoss: number | null;
  bestStep: number | null;
  /** Where the final model went (null when output_dir is null or the run was interrupted). */
  outputDir: string | null;
  /**
   * Which model output_dir received: 'best' (lowest validation loss) or 'last'. 'last' with a best
   * step means the best model was not available (a resumed run whose best checkpoint was gone).
   */
  outputModel: 'best' | 'last' | null;
  /** The resumable checkpoint written last (checkpoints/last), if any. */
  lastCheckpoint: string | null;
  /** Why the run diverged (reason 'diverged'), one line. */
  divergence: string | null;
  /**
   * Reason 'diverged': the newest checkpoint from before the divergence (written by this run, or
   * the one it resumed from), null when there is none.
   */
  lastGoodCheckpoint: string | null;
  /** What lib/data made of the files (null when the batches came from options.train). */
  dataReport: DataReport | null;
  /** The model in its final state (after the last step, not the best one); the caller frees it. */
  model: Decoder;
}

export interface TrainerOptions {
  /** Train this model instead of loading config.model (the caller keeps ownership). */
  model?: Decoder;
  /** The tokenizer and the folder its files are copied from into checkpoints (with `model`). */
  tokenizer?: Tokenizer;
  tokenizerDir?: string | null;
  /** Training batches instead of building them from config.data. */
  train?: BatchSource;
  /** Validation batches instead of building them from config.validation / validation_fraction. */
  validation?: Batch[];
  /** Human-readable progress on stderr (or `progressStream`): a bar on a TTY, lines otherwise. Default false. */
  progress?: boolean;
  progressStream?: ProgressStream;
  /**
   * How messages name a config key, e.g. "output_dir" (the default: the key itself); the CLI names
   * its flag instead ("--out"), so the library never assumes a command line.
   */
  nameKey?: (key: ConfigKey) => string;
  /** How a model given as a Hugging Face id is fetched (offline, progress); see lib/hub. */
  hub?: HubOptions;
}

/** One copy of the model this process trains with its own optimizer (several with devices 0,1: one per GPU). */
interface Replica {
  model: Decoder;
  optimizer: AdamW;
}

/** Frees replicas 1.. (their models and optimizers, each while its device is current; replica 0's belong to the Setup). */
/**
 * Frees what the setup allocated beside replica 0's model: the preference objective's references, each
 * replica's AdamW (as many as were made) and the copies of replicas 1.., each with its device current.
 */
function freeTrainingState(models: readonly Decoder[], optimizers: readonly AdamW[], preference: PreferenceObjective | null, dp: DataParallel): void {
  preference?.free((j) => dp.useReplica(j));
  for (const [j, m] of models.entries()) {
    dp.useReplica(j);
    optimizers[j]?.free();
    if (j > 0) m.free();
  }
  dp.useReplica(0);
}

interface Setup {
  opened: OpenedModel;
  ownsModel: boolean;
  train: BatchSource;
  validation: Batch[] | null;
  /** What lib/data made of the files (null when the batches came from options.train). */
  dataReport: DataReport | null;
  /** The EOS id lib/data appended after each example/document, left out of token accuracy (null: batches from options). */
  appendedEos: number | null;
  optimizer: AdamW;
  /**
   * The copies of the model this process trains, replica order (dp.replicas of them): [0] is opened.model
   * with optimizer, which samples and saves use; every replica trains and evaluates its share on its GPU and updates
   * with identical gradient sums.
   */
  replicas: Replica[];
  /** The job this run is part of (a single process: size 1); rank 0 alone writes files. */
  dp: DataParallel;
  /** Micro-batches per step on each rank (grad_accum_steps, or global_batch_size / (ranks x batch_size)). */
  gradAccum: number;
  totalSteps: number;
  warmup: number;
  state: TrainerState;
  tokenizerFiles: Record<string, Uint8Array>;
  /** A resumed run's best model (a 'best' folder beside the resumed checkpoint, of the recorded best step). */
  inheritedBest: string | null;
  /** The model's dropout rates in training steps (config.json's, or the dropout key's). */
  dropout: DropoutRates;
  /** A checkpoint folder outside output_dir, claimed as its own gptune output (step-N names are recorded as they are written). */
  checkpointFolder: OutputFolder | null;
  /** output_dir as claimed for this run (null without one). */
  outFolder: OutputFolder | null;
  /** config.sample_prompts as text and token ids (empty without). */
  samplePrompts: Array<{ text: string; ids: number[] }>;
  /** method dpo/orpo: the preference loss (lib/train/preference.ts); null for sft. */
  preference: PreferenceObjective | null;
}

/** Bytes of the F32 weights of a model with `parameters` parameters (what saveModel writes), plus the small JSON and tokenizer files. */
function modelBytes(parameters: number, tokenizerFiles: Record<string, Uint8Array>): number {
  const headerAndConfig = 64 * 1024;
  return parameters * Float32Array.BYTES_PER_ELEMENT + Object.values(tokenizerFiles).reduce((n, f) => n + f.byteLength, headerAndConfig);
}

/**
 * Bytes the checkpoints of a run need at most: a resumable checkpoint holds the weights and AdamW's
 * two moments (3x a model), a best checkpoint the weights only. Kept at once: last, best, the
 * step-N ones save_total_limit keeps (or every one the run writes), and one more being written
 * (writeDirAtomic builds the new folder before it removes the old one).
 */
function checkpointBytes(c: TrainConfig, model: number, totalSteps: number, startStep: number, validation: boolean): number {
  const resumable = 3 * model;
  const written = c.save_every > 0 ? Math.floor(totalSteps / c.save_every) - Math.floor(startStep / c.save_every) : 0;
  const kept = c.save_total_limit === null ? written : Math.min(written, c.save_total_limit);
  return resumable * (1 + kept + 1) + (validation ? model : 0);
}

/** The LoRA settings of a config with lora on (null otherwise; with adapter, the adapter's own config rules). */
export function loraSettings(c: TrainConfig): LoraSettings | null {
  if (!c.lora || c.adapter !== null) return null;
  const targets = c.lora_targets === null ? null : c.lora_targets.trim() === 'all-linear' ? 'all-linear' : listSetting(c.lora_targets);
  return {
    r: c.lora_r, alpha: c.lora_alpha, dropout: c.lora_dropout, targets, useRslora: c.use_rslora,
    modulesToSave: c.lora_modules_to_save === null ? [] : listSetting(c.lora_modules_to_save),
  };
}

/** The base model a LoRA checkpoint's run trained on (its train_config.json's model). */
function baseOfCheckpoint(dir: string): string {
  const model = (readCheckpointConfig(dir) as { model?: unknown }).model;
  if (typeof model !== 'string') throw new ConfigError(`${path.join(dir, CONFIG_FILE)}: no model recorded; give the base model (model / --model)`);
  return model;
}

/** Whether `dir` is the best checkpoint that `state` refers to. */
function isBestOf(dir: string, state: TrainerState): boolean {
  if (state.best_step === null || !fs.existsSync(path.join(dir, STATE_FILE))) return false;
  const best = readTrainerState(dir);
  return best.step === state.best_step && best.best_val_loss === state.best_val_loss;
}

function readTokenizerFiles(dir: string | null): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  if (!dir) return files;
  for (const name of TOKENIZER_FILES) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) files[name] = fs.readFileSync(file);
  }
  return files;
}

/**
 * Whether the model `given` names the one a checkpoint recorded: the same folder, or the same Hub
 * repository (recorded pinned to its commit; `given` without a revision, or with that commit).
 */
function sameModel(recorded: string, given: string): boolean {
  const a = isHubModelSpec(recorded) ? parseHubModelId(recorded) : null;
  const b = isHubModelSpec(given) ? parseHubModelId(given) : null;
  if (a === null || b === null) return a === b && path.resolve(recorded) === path.resolve(given);
  return a.repoId === b.repoId && (a.revision === b.revision || !given.includes('@'));
}

/**
 * The model a resumed run is told to train when it is not the one the checkpoint's run trained
 * (resuming loads the checkpoint's own weights, so `model` would be ignored): that run's model
 * (or null when unrecorded), else undefined when there is no conflict.
 */
export function resumeModelConflict(resumeDir: string, model: string): string | null | undefined {
  const trained = (readCheckpointConfig(resumeDir) as { model?: unknown }).model;
  if (typeof trained === 'string' && sameModel(trained, model)) return undefined;
  return typeof trained === 'string' ? trained : null;
}

/** The dropout seed of micro-batch i of the step after `step`: a function of the run's seed too, so a resumed run draws the same masks. */
function stepDropoutSeed(seed: number, step: number, i: number): number {
  return (seed % 1048576) * 4294967296 + ((step * 1024 + i) % 4294967296);
}

export class Trainer extends EventEmitter<TrainerEvents> {
  readonly config: TrainConfig;
  private stopRequest: string | null = null;
  /** config.model as org/name@<commit> once a Hub id was resolved (what checkpoints record). */
  private pinnedModel: string | null = null;
  private running = false;

  /**
   * `config` is a partial TrainConfig: missing keys take their defaults, and it is validated like
   * a config file (unknown keys and wrong types throw ConfigError).
   */
  constructor(config: Partial<TrainConfig> | TrainConfig, private readonly opts: TrainerOptions = {}) {
    super();
    checkOptions('Trainer', 'options', opts);
    if (opts.model !== undefined) checkInstance('Trainer', 'options.model', opts.model, Decoder, 'a Decoder model');
    const required = (['model', 'data'] as const).filter((k) => (k === 'model' ? !opts.model : !opts.train));
    this.config = resolveConfig({}, config as Partial<TrainConfig>, {
      require: required, sources: { overrides: 'Trainer config' }, validationProvided: opts.validation !== undefined,
    });
    if (opts.model && this.config.resume_from) throw new ConfigError('Trainer: resume_from loads the model from the checkpoint; do not pass options.model as well');
    parseShardSize(this.config.max_shard_size, 'max_shard_size');
    if (opts.train && !opts.validation && (this.config.validation !== null || this.config.validation_fraction > 0)) {
      throw new ConfigError('Trainer: with options.train, give the validation batches as options.validation (config.validation / validation_fraction only apply to data built from files)');
    }
  }

  /** How messages name a config key: options.nameKey, else the key itself. */
  private nameKey(key: ConfigKey): string {
    return this.opts.nameKey ? this.opts.nameKey(key) : key;
  }

  /** Asks a running fit() to stop after the current step, writing checkpoints/last (the CLI calls it on SIGINT/SIGTERM). */
  stop(reason = 'stop()'): void {
    this.stopRequest ??= reason;
  }

  get checkpointDir(): string | null {
    const c = this.config;
    if (c.checkpoint_dir) return c.checkpoint_dir;
    return c.output_dir ? path.join(c.output_dir, 'checkpoints') : null;
  }

  async fit(): Promise<FitResult> {
    if (this.running) throw new Error('Trainer.fit: already running');
    this.running = true;
    let setup: Setup | null = null;
    let dashboard: DashboardServer | null = null;
    const history = new RunHistory();
    let dp: DataParallel | null = null;
    try {
      const c = this.config;
      dp = DataParallel.start({
        zero: c.zero as 0 | 1, collectiveTimeout: c.collective_timeout, devices: c.devices === null ? null : parseDevices(c.devices, this.nameKey('devices')),
        device: c.device, overlapComm: c.overlap_comm, nameKey: (k) => this.nameKey(k),
      });
      // Before the model loads: a port in use fails in the first second.
      if (this.config.dashboard !== null && dp.writes) {
        dashboard = await startDashboardServer(this.config.dashboard, { title: this.runTitle(), current: () => history }, this.nameKey('dashboard'));
        this.emit('dashboard', { url: dashboard.url });
      }
      setup = await this.setup(dp);
      return await this.loop(setup, history);
    } catch (e) {
      if (setup?.ownsModel) setup.opened.model.free();
      throw e;
    } finally {
      if (setup) freeTrainingState(setup.replicas.map((r) => r.model), setup.replicas.map((r) => r.optimizer), setup.preference, setup.dp);
      await dashboard?.close();
      this.running = false;
    }
  }

  /** How the dashboard and report.html name the run. */
  private runTitle(): string {
    return `gptune train: ${this.config.output_dir === null ? 'a run without output_dir' : path.resolve(this.config.output_dir)}`;
  }

  private async setup(dp: DataParallel): Promise<Setup> {
    const c = this.config;
    setThreads(c.threads ?? undefined);
    setPrecision(c.precision);
    dp.selectDevice(resolveDevice(c.device));
    const gradAccum = this.gradAccum(dp);
    if (!this.opts.train) {
      // Before the model loads: a typo in a path should not cost a multi-GB read first.
      for (const key of ['data', 'validation'] as const) {
        const file = c[key];
        if (file !== null && !fs.existsSync(file)) throw new UsageError(`${this.nameKey(key)} ${file}: file not found`);
        // A folder is read as its .txt files (format text); every other format reads one file.
        if (file !== null && fs.statSync(file).isDirectory() && c.format !== 'auto' && c.format !== 'text') {
          throw new UsageError(`${this.nameKey(key)} ${file}: is a folder; format ${c.format} reads one file (a folder is read as .txt files with format text)`);
        }
      }
    }
    if (c.log_file && fs.existsSync(c.log_file) && fs.statSync(c.log_file).isDirectory()) {
      throw new UsageError(`${this.nameKey('log_file')} ${c.log_file}: is a folder; expected a file to append JSON lines to`);
    }
    if (c.log_file && c.output_dir && path.resolve(c.log_file) === path.resolve(c.output_dir, HISTORY_FILE)) {
      throw new UsageError(`${this.nameKey('log_file')} ${c.log_file}: is where the run keeps its history (${HISTORY_FILE} in ${this.nameKey('output_dir')}); choose another file`);
    }
    const resumeDir = c.resume_from ? findResumableCheckpoint(c.resume_from, this.nameKey('resume_from')) : null;
    // A LoRA run's checkpoints hold the adapter only: the base is the run's model.
    const loraResume = resumeDir !== null && isAdapterFolder(resumeDir);
    const lora = loraSettings(c);
    const loraLabels = { targets: this.nameKey('lora_targets'), modulesToSave: this.nameKey('lora_modules_to_save') };
    if (resumeDir && c.model !== null) {
      const trained = resumeModelConflict(resumeDir, c.model);
      if (trained !== undefined) {
        throw new ConfigError(`model ${c.model} conflicts with resume_from ${c.resume_from}: that checkpoint continues a run of ${trained ?? 'another model'} and resuming loads its weights; leave model unset or equal to it`);
      }
    }
    // Rank 0 alone writes, so it alone checks and claims the folders.
    const outputs = dp.writes ? this.planOutputs(resumeDir) : { out: null, checkpoints: null };
    // Training needs parameters, gradients, two AdamW moments and the activations of one
    // micro-batch; checked before anything is allocated (or, with options.model, before the rest).
    const maxBytes = c.max_memory === null ? null : parseByteSize(c.max_memory);
    // Saving copies the weights to the host and encodes them: a checkpoint reads the parameters and
    // both AdamW moments and encodes them (up to 4x the parameter bytes held at once), publishing
    // output_dir a copy of the parameters and its encoding (2x).
    const validationGiven = this.opts.validation != null || c.validation !== null || c.validation_fraction > 0;
    const checkpointing = this.checkpointDir !== null && (c.save_every > 0 || validationGiven || c.resume_from !== null);
    const saveCopies = checkpointing ? 4 : c.output_dir ? 2 : 0;
    const plan = (config: DecoderConfig, parametersAllocated: boolean) => {
      // Unknown target names fail here, named as the user wrote them, before anything loads.
      if (lora) adapterSpecs(config, lora, loraLabels);
      const use = { lora, baseDtype: c.base_dtype };
      const batch = { B: c.batch_size, T: c.seq_len ?? Math.min(contextLength(config), 256) };
      const parts = planMemory(config, { batch, training: true, parametersAllocated, gradientCheckpointing: c.gradient_checkpointing, ...use }).parts;
      const saved = planMemory(config, { batch: null, training: false, ...use }).parts;
      if (saveCopies > 0) parts['checkpoint writing'] = saveCopies * (lora ? saved['LoRA adapter'] : saved.parameters);
      return parts;
    };
    const gradientCheckpointingHint = c.gradient_checkpointing ? '' : `, or turn on ${this.nameKey('gradient_checkpointing')}`;
    const lower = `batch_size (--batch-size), seq_len (--seq-len) or the model size (use --grad-accum to keep the effective batch)${gradientCheckpointingHint}`;
    let opened: OpenedModel;
    // Where every replica opens its copy from (the folder, the checkpoint, or new:...).
    let modelSpec: string | null = null;
    if (this.opts.model && dp.replicas > 1) throw new ConfigError(`Trainer: ${this.nameKey('devices')} opens one copy of config.model per device; options.model is a single copy (give config.model instead)`);
    if (this.opts.model) {
      if (!this.opts.tokenizer && !this.opts.train) throw new ConfigError('Trainer: with options.model, give options.tokenizer (or options.train batches)');
      if (this.opts.model.device === 'cpu') checkMemoryBudget('training', plan(this.opts.model.config, true), maxBytes, lower);
      opened = { model: this.opts.model, tokenizer: this.opts.tokenizer!, tokenizerDir: this.opts.tokenizerDir ?? null };
    } else {
      const base = loraResume ? c.model ?? baseOfCheckpoint(resumeDir!) : resumeDir ?? c.model!;
      modelSpec = await this.localModel(base, base === c.model);
      opened = openModel(modelSpec, c.device, c.seed, { what: 'training', plan: (config) => plan(config, false), maxBytes, lower },
        this.nameKey(resumeDir && !loraResume ? 'resume_from' : 'model'), { baseDtype: c.base_dtype });
    }
    const ownsModel = !this.opts.model;
    try {
      const { model } = opened;
      dp.attach(model, c.collective_timeout);
      // Every replica is made by the same steps from the same files and seed, so the copies start identical.
      const prepare = (m: Decoder) => {
        if (loraResume) loadAdapter(m, resumeDir!, { trainable: true, label: this.nameKey('resume_from') });
        else if (c.adapter !== null) loadAdapter(m, c.adapter, { trainable: true, label: this.nameKey('adapter') });
        else if (lora) m.addAdapter(lora, { trainable: true, seed: c.seed, labels: loraLabels });
        // The run's setting, also on a model the caller passed (the memory plan above assumed it).
        m.setGradientCheckpointing(c.gradient_checkpointing);
      };
      prepare(model);
      // As transformers in train mode: the base model's dropout applies also under a LoRA adapter (PEFT
      // leaves the frozen base in train mode).
      const dropout = trainingDropout(model.config, c.dropout);
      const T = c.seq_len ?? Math.min(model.contextLength, 256);
      if (T > model.contextLength) throw new ConfigError(`seq_len ${T} exceeds ${model.contextLimit}`);
      let train = this.opts.train;
      let validation = this.opts.validation ?? null;
      let dataReport: DataReport | null = null;
      let pairs: PreferenceData | null = null;
      if (!train && c.method !== 'sft') {
        pairs = preferenceData(c, opened.tokenizer, T);
        ({ train, validation, report: dataReport } = pairs);
      } else if (!train) {
        const data = buildDatasets({
          train: c.data!, validation: c.validation ?? undefined, validationFraction: c.validation_fraction > 0 ? c.validation_fraction : undefined,
          tokenizer: opened.tokenizer, seqLen: T, batchSize: c.batch_size, packing: c.packing, trainOnPrompt: c.train_on_prompt,
          shuffle: c.shuffle, seed: c.seed, format: c.format === 'auto' || c.format === 'preference' ? undefined : c.format, template: c.template ?? undefined,
          templateVariables: { sourceLang: c.source_lang ?? undefined, targetLang: c.target_lang ?? undefined },
          skipInvalid: c.skip_invalid,
        });
        train = data.train;
        validation = data.validation;
        dataReport = data.report;
      }
      if (validation !== null && validation.length === 0) validation = null;
      const stepsPerEpoch = train.batchesPerEpoch / (gradAccum * dp.size);
      const totalSteps = c.max_steps ?? Math.max(1, Math.ceil(c.epochs * stepsPerEpoch));
      const warmup = c.warmup_steps > 0 ? c.warmup_steps : Math.ceil(c.warmup_ratio * totalSteps);
      const adamw = { beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay };
      // The copies first, then the reference (DPO: the starting model, one per replica; precompute_ref frees its
      // full copy before the optimizers' moments exist), then every replica's AdamW.
      const models: Decoder[] = [model];
      const optimizers: AdamW[] = [];
      let preference: PreferenceObjective | null = null;
      try {
        for (let j = 1; j < dp.replicas; j++) {
          dp.useReplica(j);
          const copy = openModel(modelSpec!, c.device, c.seed, undefined, this.nameKey(resumeDir && !loraResume ? 'resume_from' : 'model'), { baseDtype: c.base_dtype }).model;
          try {
            prepare(copy);
          } catch (e) {
            copy.free();
            throw e;
          }
          models.push(copy);
        }
        preference = c.method === 'sft' ? null : await preferenceObjective(c, models, resumeDir !== null && !loraResume,
          async () => openModel(await this.localModel(c.model!, false), c.device, c.seed, undefined, this.nameKey('model')).model, pairs, validation, dp,
          (j) => dp.useReplica(j));
        for (const [j, m] of models.entries()) {
          dp.useReplica(j);
          optimizers.push(dp.optimizer(m, adamw));
        }
      } catch (e) {
        freeTrainingState(models, optimizers, preference, dp);
        throw e;
      } finally {
        dp.useReplica(0);
      }
      const replicas: Replica[] = models.map((m, j) => ({ model: m, optimizer: optimizers[j] }));
      const optimizer = optimizers[0];
      // Everything allocated since the optimizer is freed if the rest of the setup fails (a bad resume folder,
      // a sample prompt longer than the context, an output folder that cannot be claimed).
      try {
        let state: TrainerState = {
          step: 0, epoch: 0, total_steps: totalSteps, data_state: train.getState(), best_val_loss: null, best_step: null,
          evals_without_improvement: 0, last_eval_step: null, elapsed_s: 0, tokens_seen: 0, world_size: dp.size, global_batch: gradAccum * dp.size * c.batch_size,
        };
        if (resumeDir) {
          state = readTrainerState(resumeDir);
          this.checkResumedWorld(resumeDir, state, dp, gradAccum);
          for (const [j, r] of replicas.entries()) {
            dp.useReplica(j);
            dp.loadOptimizer(resumeDir, r.model, r.optimizer);
          }
          dp.useReplica(0);
          train.setState(state.data_state);
          state.total_steps = totalSteps;
        }
        const prompts = this.samplePrompts(opened.tokenizer, model);
        const bestBeside = resumeDir ? path.join(path.dirname(resumeDir), 'best') : null;
        const inheritedBest = bestBeside && isBestOf(bestBeside, state) ? bestBeside : null;
        const tokenizerFiles = readTokenizerFiles(opened.tokenizerDir);
        const saved = model.trainingAdapter?.parameterCount ?? model.numParameters;
        const folders = dp.writes ? this.claimOutputs(outputs, modelBytes(saved, tokenizerFiles), totalSteps, state.step, validation !== null, resumeDir) : { out: null, checkpoints: null };
        return {
          opened, ownsModel, train, validation, dataReport, appendedEos: dataReport === null ? null : opened.tokenizer.eosTokenId, optimizer, replicas, dp, gradAccum, totalSteps, warmup, state, tokenizerFiles, inheritedBest, dropout,
          checkpointFolder: folders.checkpoints, outFolder: folders.out, samplePrompts: prompts, preference,
        };
      } catch (e) {
        freeTrainingState(models, optimizers, preference, dp);
        throw e;
      }
    } catch (e) {
      if (ownsModel) opened.model.free();
      throw e;
    }
  }

  /** Micro-batches per step on each rank: grad_accum_steps, or global_batch_size split over the ranks' batches. */
  private gradAccum(dp: DataParallel): number {
    const c = this.config;
    if (c.global_batch_size === null) return c.grad_accum_steps;
    const perRound = dp.size * c.batch_size;
    if (c.global_batch_size % perRound !== 0) {
      throw new ConfigError(`${this.nameKey('global_batch_size')} ${c.global_batch_size} does not split over ${dp.workers} x ${this.nameKey('batch_size')} ${c.batch_size}: give a multiple of ${perRound}`);
    }
    return c.global_batch_size / perRound;
  }

  /**
   * A checkpoint continues with any number of ranks (its optimizer state is whole, ZeRO-1 shards gathered),
   * as long as a step still takes the same global batch: otherwise the data position and the schedule
   * would mean other things.
   */
  private checkResumedWorld(dir: string, state: TrainerState, dp: DataParallel, gradAccum: number): void {
    const global = gradAccum * dp.size * this.config.batch_size;
    const recorded = state.global_batch ?? null;
    if (recorded !== null && recorded !== global) {
      throw new ConfigError(`${this.nameKey('resume_from')} ${dir}: its run took ${recorded} sequences per step (${state.world_size ?? 1} rank(s) or device(s)); this one would take ${global} (${dp.workers} x ${this.nameKey('batch_size')} ${this.config.batch_size} x ${gradAccum} micro-batches): set ${this.nameKey('global_batch_size')} ${recorded} to continue it`);
    }
    state.world_size = dp.size;
    state.global_batch = global;
  }

  /** config.sample_prompts tokenized; each must leave room for sample_tokens in the model's context. */
  private samplePrompts(tokenizer: Tokenizer, model: Decoder): Setup['samplePrompts'] {
    const c = this.config;
    if (c.sample_prompts === null) return [];
    return samplePrompts(c.sample_prompts).map((text) => {
      const ids = encodeSequence(tokenizer, text);
      if (ids.length + c.sample_tokens > model.contextLength) {
        throw new ConfigError(`${this.nameKey('sample_prompts')}: the prompt "${text.slice(0, 40)}" has ${ids.length} tokens; with ${this.nameKey('sample_tokens')} ${c.sample_tokens} it exceeds the model's context of ${model.contextLength}`);
      }
      return { text, ids };
    });
  }

  /**
   * Checks, before anything loads, that output_dir (and a checkpoint_dir outside it) may be written:
   * new, empty, or gptune's own previous output (replaced with overwrite, continued by a resumed
   * run). Nothing is changed yet.
   */
  private planOutputs(resumeDir: string | null): { out: OutputPlan | null; checkpoints: OutputPlan | null } {
    const c = this.config;
    const mode = c.resume_from ? 'continue' : c.overwrite ? 'replace' : 'new';
    const checkpointDir = this.checkpointDir;
    const inside = (dir: string | null, p: string | null): string | null => (dir === null || p === null ? null : entryUnder(dir, p));
    let out: OutputPlan | null = null;
    if (c.output_dir) {
      const entries = [...MODEL_FILES, ...ADAPTER_FILES, HISTORY_FILE, REPORT_FILE, ...CARD_FILES, inside(c.output_dir, checkpointDir), inside(c.output_dir, c.log_file)].filter((n): n is string => n !== null);
      out = planOutputFolder(c.output_dir, {
        label: this.nameKey('output_dir'), writer: 'gptune train', mode, entries, adoptUnlisted: resumeDir !== null && inside(c.output_dir, resumeDir) !== null,
        replaceHint: 'add --overwrite (config key overwrite) to replace it, or --resume to continue it',
      });
    }
    let checkpoints: OutputPlan | null = null;
    if (checkpointDir !== null && inside(c.output_dir, checkpointDir) === null) {
      checkpoints = planOutputFolder(checkpointDir, {
        label: this.nameKey('checkpoint_dir'), writer: 'gptune train', mode, entries: ['best', 'last'], adoptUnlisted: false,
        replaceHint: 'add --overwrite (config key overwrite) to replace them, or --resume to continue',
      });
    }
    return { out, checkpoints };
  }

  /**
   * Before the first step: checks free space for the model and the checkpoints this run will write,
   * then claims the output folders (removing a replaced previous output) and removes the temporary
   * folders that killed runs left in the checkpoint folders. Returns output_dir's folder and the
   * checkpoint folder to record step-N names in when it lies outside output_dir.
   */
  private claimOutputs(
    plans: { out: OutputPlan | null; checkpoints: OutputPlan | null }, model: number, totalSteps: number, startStep: number, validation: boolean, resumeDir: string | null,
  ): { out: OutputFolder | null; checkpoints: OutputFolder | null } {
    const c = this.config;
    const checkpointDir = this.checkpointDir;
    const checkpointing = checkpointDir !== null && (c.save_every > 0 || validation || c.resume_from !== null);
    const needs = [];
    if (c.output_dir) needs.push({ target: c.output_dir, label: this.nameKey('output_dir'), bytes: model });
    const checkpointKey = checkpointDir === path.join(c.output_dir ?? '', 'checkpoints') ? 'output_dir' : 'checkpoint_dir';
    if (checkpointing) needs.push({ target: checkpointDir!, label: this.nameKey(checkpointKey), bytes: checkpointBytes(c, model, totalSteps, startStep, validation) });
    checkSpace(needs);
    const out = plans.out ? claimOutputFolder(plans.out) : null;
    const checkpointFolder = plans.checkpoints ? claimOutputFolder(plans.checkpoints) : null;
    // A run killed while saving leaves .<name>.gptune-tmp-<pid>-* folders of a checkpoint's size.
    if (checkpointDir !== null) removeStaleTemporaries(checkpointDir);
    if (resumeDir !== null) removeStaleTemporaries(path.dirname(resumeDir));
    return { out, checkpoints: checkpointFolder };
  }

  private async loop(s: Setup, history: RunHistory): Promise<FitResult> {
    const c = this.config;
    const { model } = s.opened;
    const { state } = s;
    const writes = s.dp.writes;
    const progress = this.opts.progress && writes ? new ProgressReporter(this.opts.progressStream ?? process.stderr, s.totalSteps) : null;
    const checkpointDir = this.checkpointDir;
    // Checkpoints exist when asked for (save_every), when there is a best model to keep (validation),
    // or when this run continues one; a plain run writes only output_dir, as `gptune train` always did.
    const checkpointing = checkpointDir !== null && (c.save_every > 0 || s.validation !== null || c.resume_from !== null);
    // Whether checkpoints/best holds the model of state.best_step.
    let bestSaved = false;
    if (checkpointing && s.inheritedBest && writes) {
      const here = path.join(checkpointDir!, 'best');
      if (path.resolve(here) !== path.resolve(s.inheritedBest)) copyModelFolder(s.inheritedBest, here, [STATE_FILE, CONFIG_FILE]);
      bestSaved = true;
    }
    if (s.dataReport) {
      const r = s.dataReport;
      const skipped = r.skipped.length > 0 ? `; skipped ${r.skipped.length} invalid line(s), first: ${r.skipped[0].error}` : '';
      const truncated = r.trainSplit.truncatedExamples > 0 ? `; ${r.trainSplit.truncatedExamples} example(s) truncated to ${r.seqLen} tokens` : '';
      const validation = r.validationSplit ? `, validation ${r.validationSplit.rows} rows` : '';
      const warned = r.warnings.length > 0 ? `; ${r.warnings.length} warning(s), first: ${r.warnings[0].warning}` : '';
      progress?.message(`data: ${r.kind}, ${r.trainSplit.examples} example(s) in ${r.trainSplit.rows} rows of ${r.seqLen} tokens${validation}${truncated}${skipped}${warned}`);
      this.emit('data', r);
    }
    const overlapNote = s.dp.decideOverlap();
    if (overlapNote !== null) progress?.message(`note: ${overlapNote}`);
    const startedAt = Date.now();
    const elapsedBefore = state.elapsed_s;
    const elapsed = () => elapsedBefore + (Date.now() - startedAt) / 1000;
    // The run's history: in memory for the dashboard, appended to output_dir's metrics.jsonl; a
    // resumed run cuts the file back to its checkpoint's step and continues it.
    const historyFile = c.output_dir && writes ? path.join(c.output_dir, HISTORY_FILE) : null;
    if (historyFile !== null && c.resume_from) for (const line of continueHistoryFile(historyFile, state.step)) history.add(line);
    // The history files are for watching the run: failing to write them (a full disk) warns once
    // and the run goes on (the model's own saves report their errors as before).
    let historyWritable = historyFile !== null;
    const writeHistory = (write: () => void) => {
      if (!historyWritable) return;
      try {
        write();
      } catch (e) {
        historyWritable = false;
        const warning: TrainingWarning = { step: state.step, kind: 'history', message: `${(e as Error).message}; ${HISTORY_FILE} and ${REPORT_FILE} are no longer updated in this run` };
        progress?.message(`warning: ${warning.message}`);
        this.emit('warning', warning);
      }
    };
    const record = (line: HistoryLine) => {
      history.add(line);
      writeHistory(() => appendLine(historyFile!, JSON.stringify(line)));
    };
    record({ start: { step: state.step, total_steps: s.totalSteps, model: this.recordedConfig().model, output_dir: c.output_dir && path.resolve(c.output_dir), time: new Date().toISOString() } });
    const writeReport = () => writeHistory(() => writeFileAtomic(path.join(c.output_dir!, REPORT_FILE), dashboardPage(history, { title: this.runTitle(), live: false })));
    const log = (entry: StepLog | EvalLog) => {
      if (c.log_file && writes) appendLine(c.log_file, JSON.stringify(entry));
      record(entry);
    };
    const sample = () => {
      if (s.samplePrompts.length === 0 || !writes) return;
      const tokenizer = s.opened.tokenizer;
      // Greedy: no random numbers drawn, and the model's weights are only read, so training is unchanged.
      // Stopping as `gptune generate --greedy` does, so the text is what that command gives for this model.
      const options = { maxNewTokens: c.sample_tokens, greedy: true, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds };
      const samples = s.samplePrompts.map(({ text, ids }) => ({ prompt: text, text: tokenizer.decode(generate(model, ids, options).tokens) }));
      const entry: SampleLog = { step: state.step, samples };
      record(entry);
      this.emit('sample', entry);
    };
    if (c.log_file && writes) fs.mkdirSync(path.dirname(path.resolve(c.log_file)), { recursive: true });
    const epochOf = () => {
      const d = s.train.getState();
      return d.epoch + d.position / s.train.itemsPerEpoch;
    };
    // The newest checkpoint holding finite weights from before any divergence.
    let lastGood: string | null = c.resume_from ? findResumableCheckpoint(c.resume_from, this.nameKey('resume_from')) : null;
    let divergence: string | null = null;
    // Every save is preceded by this check, so no checkpoint and no output holds non-finite weights.
    const parametersFinite = (): boolean => {
      const bad = model.nonFiniteParameter();
      if (bad !== null) divergence = `after step ${state.step} the parameter tensor ${bad} holds NaN or infinite values`;
      return bad === null;
    };
    const save = (kind: 'step' | 'best' | 'last') => {
      if (checkpointDir === null) return null;
      const dir = path.join(checkpointDir, kind === 'step' ? `step-${state.step}` : kind);
      state.data_state = s.train.getState();
      state.elapsed_s = elapsed();
      // Every rank reaches every save (ZeRO-1 gathers the optimizer's shards here); rank 0 writes.
      const gathered = kind === 'best' ? null : s.dp.gatheredOptimizer(model, s.optimizer);
      try {
        if (!writes) return null;
        s.checkpointFolder?.record([path.basename(dir)]);
        writeCheckpoint(dir, { model, optimizer: gathered?.optimizer ?? null, state, config: this.recordedConfig(), tokenizerFiles: s.tokenizerFiles });
      } finally {
        gathered?.release();
      }
      if (kind === 'step') pruneStepCheckpoints(checkpointDir, c.save_total_limit);
      // The best checkpoint's report follows its evaluation's line (runEval), the others' here.
      if (kind !== 'best') writeReport();
      this.emit('checkpoint', { step: state.step, kind, dir });
      lastGood = dir;
      return dir;
    };
    let lastEval: EvalLog | null = null;
    const runEval = (): EvalLog | null => {
      const started = process.hrtime.bigint();
      let r: { loss: number; perplexity: number; tokenAccuracy: number; tokens: number };
      let preferenceFields: Record<string, number> = {};
      // Each worker (replica j of rank r) evaluates its share of the validation batches; the sums, added in
      // float64 over the replicas (in replica order), then over the ranks, are the same on every rank, so every
      // rank takes the same decisions (improvement, early stopping, saves). The replicas run one after another:
      // each forward reads its losses back, so GPU replicas do not overlap here.
      const shares = s.replicas.map((_, j) => s.dp.replicaPart(s.validation!, j));
      if (s.preference) {
        const sums = new PreferenceSums();
        for (const [j, { model: m }] of s.replicas.entries()) {
          s.dp.useReplica(j);
          sums.add(s.preference.evaluateSums(m, shares[j], s.appendedEos, j));
        }
        s.dp.useReplica(0);
        const p = s.preference.result(sums.overRanks(s.dp));
        r = { loss: p.loss, perplexity: NaN, tokenAccuracy: p.counted > 0 ? p.correct / p.counted : NaN, tokens: p.tokens };
        preferenceFields = metricFields(p.metrics, 'val_');
      } else {
        const local = [0, 0, 0, 0];
        for (const [j, { model: m }] of s.replicas.entries()) {
          s.dp.useReplica(j);
          const e = evaluateSums(m, shares[j], s.appendedEos);
          [e.lossSum, e.tokens, e.correct, e.counted].forEach((x, k) => (local[k] += x));
        }
        s.dp.useReplica(0);
        const [lossSum, tokens, correct, counted] = s.dp.sum(local);
        r = evalResult({ lossSum, tokens, correct, counted });
      }
      if (r.tokens > 0 && !Number.isFinite(r.loss)) {
        divergence = `the validation loss after step ${state.step} is ${r.loss}`;
        return null;
      }
      // best_val_loss holds the best value of best_metric: the loss (lower is better) or the reward accuracy (higher).
      const metric = c.best_metric === 'val_loss' ? r.loss : preferenceFields[c.best_metric];
      const sign = c.best_metric === 'val_loss' ? 1 : -1;
      const improved = state.best_val_loss === null || sign * metric < sign * state.best_val_loss - c.early_stopping_min_delta;
      if (improved) {
        state.best_val_loss = metric;
        state.best_step = state.step;
        state.evals_without_improvement = 0;
      } else {
        state.evals_without_improvement++;
      }
      state.last_eval_step = state.step;
      const entry: EvalLog = {
        step: state.step, epoch: epochOf(), val_loss: r.loss, val_perplexity: r.perplexity, val_token_accuracy: r.tokenAccuracy,
        val_tokens: r.tokens, improved, best_val_loss: state.best_val_loss!, best_step: state.best_step!,
        ms: Number(process.hrtime.bigint() - started) / 1e6, elapsed_s: elapsed(), ...preferenceFields,
      };
      if (improved && checkpointing) {
        if (!parametersFinite()) return null;
        save('best');
        bestSaved = true;
      }
      log(entry);
      progress?.eval(entry);
      this.emit('eval', entry);
      lastEval = entry;
      sample();
      if (improved && checkpointing) writeReport();
      return entry;
    };

    const monitor = new DivergenceMonitor({ maxSkippedSteps: c.max_skipped_steps, divergenceZscore: c.divergence_zscore, vocabSize: model.config.vocabSize });
    let reason: StopReason = 'completed';
    while (state.step < s.totalSteps) {
      divergence = this.trainStep(s, monitor, elapsed, epochOf, log, progress);
      if (divergence !== null) break;
      if (s.validation && c.eval_every > 0 && state.step % c.eval_every === 0) {
        if (runEval() === null) break;
        if (c.early_stopping_patience > 0 && state.evals_without_improvement >= c.early_stopping_patience) {
          reason = 'early_stopping';
          const event: EarlyStopEvent = { step: state.step, best_step: state.best_step!, best_val_loss: state.best_val_loss!, patience: c.early_stopping_patience };
          progress?.message(`early stopping at step ${state.step}: no improvement of ${c.best_metric === 'val_loss' ? 'the validation loss' : c.best_metric} for ${c.early_stopping_patience} evaluations (best ${state.best_val_loss!.toFixed(4)} at step ${state.best_step})`);
          this.emit('early_stop', event);
        }
      }
      if (c.save_every > 0 && state.step % c.save_every === 0) {
        if (!parametersFinite()) break;
        save('step');
      }
      if (reason !== 'completed') break;
      // Let signals, timers and I/O through between steps (the kernels run synchronously).
      await new Promise((resolve) => setImmediate(resolve));
      // A signal may reach the ranks at different steps: they stop together when any of them got one.
      if (s.dp.sum([this.stopRequest !== null ? 1 : 0])[0] > 0 && state.step < s.totalSteps) {
        this.stopRequest ??= 'another rank';
        reason = 'interrupted';
        break;
      }
    }
    progress?.finish();

    if (divergence === null && reason === 'completed' && s.validation && c.eval_at_end && state.last_eval_step !== state.step) runEval();
    if (divergence === null) parametersFinite();
    const ended = (why: StopReason) => record({ end: { step: state.step, reason: why, time: new Date().toISOString() } });
    if (divergence !== null) {
      ended('diverged');
      this.releaseDivergedOutputs(s, history, writeReport);
      return this.result(s, 'diverged', lastEval, null, null, null, divergence, lastGood);
    }
    if (reason === 'interrupted') {
      ended(reason);
      const dir = save('last');
      if (dir === null) writeReport();
      progress?.message(`interrupted (${this.stopRequest}) after step ${state.step}${dir ? `; checkpoint written to ${dir}` : ''}`);
      return this.result(s, reason, lastEval, null, null, dir);
    }
    if (history.samples[history.samples.length - 1]?.step !== state.step) sample();
    ended(reason);
    const outputModel = bestSaved ? 'best' : 'last';
    // The best checkpoint is published from its folder; the final weights are in memory already, so
    // they are encoded from the model rather than read back from checkpoints/last.
    const lastDir = this.saveFinal(s, checkpointing ? () => save('last') : null, checkpointing && bestSaved ? path.join(checkpointDir!, 'best') : null);
    // (checkpoints/last wrote it already, the end line included)
    if (lastDir === null) writeReport();
    if (c.output_dir) this.writeCard(s, history, reason, progress);
    return this.result(s, reason, lastEval, c.output_dir, c.output_dir ? outputModel : null, lastDir);
  }

  /**
   * A diverged run publishes nothing. When output_dir keeps checkpoints from before the divergence,
   * the history and report.html stay beside them (they show how the run diverged); otherwise the
   * history this run started is removed too, and a folder that then holds only the manifest this
   * run wrote goes back to how it was.
   */
  private releaseDivergedOutputs(s: Setup, history: RunHistory, writeReport: () => void): void {
    const out = this.config.output_dir;
    if (out !== null && s.outFolder !== null) {
      const kept = fs.readdirSync(out).filter((n) => ![OUTPUT_MANIFEST, HISTORY_FILE, REPORT_FILE].includes(n) && !isAtomicTemporary(n));
      const startedHere = history.starts.length === 1 && history.starts[0].step === 0;
      if (kept.length > 0 || !startedHere) {
        writeReport();
      } else {
        for (const name of [HISTORY_FILE, REPORT_FILE]) fs.rmSync(path.join(out, name), { force: true });
      }
    }
    s.outFolder?.releaseIfUnused();
    s.checkpointFolder?.releaseIfUnused();
  }

  /**
   * One optimizer step. A non-finite loss or gradient norm skips the update (parameters and AdamW
   * moments untouched; the step still counts and its data is consumed); returns why the run
   * diverged when the monitor says so, else null.
   */
  private trainStep(
    s: Setup, monitor: DivergenceMonitor, elapsed: () => number, epochOf: () => number, log: (entry: StepLog) => void, progress: ProgressReporter | null,
  ): string | null {
    const c = this.config;
    const { model } = s.opened;
    const started = process.hrtime.bigint();
    // Every rank draws the step's whole global batch (the same on every rank) and trains on its part.
    const global: Batch[] = [];
    for (let i = 0; i < s.gradAccum * s.dp.size; i++) global.push(s.train.next());
    // The gradient of the mean loss over every scored token of the step, however they are spread
    // over micro-batches, replicas and ranks (packed or padded examples score different numbers of tokens).
    const scored = global.reduce((n, b) => n + b.scoredTokens, 0);
    const positions = global.reduce((n, b) => n + b.B * b.T, 0);
    let lossSum = 0, count = 0, correct = 0, counted = 0;
    // Each local replica (one, except with devices) trains on its run of micro-batches on its own device.
    const runs = s.replicas.map(({ model: m }, replica) => {
      s.dp.useReplica(replica);
      m.zeroGrad();
      return s.dp.mine(global, replica);
    });
    // method dpo/orpo: each micro-batch's forward/backward is the preference loss's (lib/train/preference.ts),
    // normalised by the step's global pair and chosen-token counts; its sums are added over the replicas here
    // and over the ranks after the loop.
    const scope = s.preference ? stepScope(global) : null;
    const preferenceSums = new PreferenceSums();
    // Micro-batch j of every replica in turn: forward reads its loss and predictions back (the host waits for
    // that GPU), while the backward just queued on the previous replica's GPU runs on (docs/scaling.md).
    try {
      for (let j = 0; j < runs[0].items.length; j++) {
        for (const [replica, { model: m }] of s.replicas.entries()) {
          s.dp.useReplica(replica);
          const b = runs[replica].items[j], i = runs[replica].first + j;
          // Dropout masks (the model's and LoRA's): a function of the run's seed, the step and the micro-batch, so a resumed run draws the same ones.
          const dropoutSeed = stepDropoutSeed(c.seed, s.state.step, i);
          if (s.preference) {
            preferenceSums.add(s.preference.stepSums(m, [b], () => ({ dropoutSeed, dropout: s.dropout }), s.appendedEos, scope!, replica));
            continue;
          }
          const r = m.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds, predictions: true, dropoutSeed, dropout: s.dropout });
          // The last micro-batch's backward starts each region's all-reduce as it is final (overlap_comm; ranks only).
          if (scored > 0) m.backward(scored, null, j === runs[0].items.length - 1 ? s.dp.gradientListener(m) : null);
          lossSum += r.lossSum;
          count += r.count;
          const accuracy = tokenAccuracy(r.predictions!, b.targets, IGNORE_INDEX, s.appendedEos);
          correct += accuracy.correct;
          counted += accuracy.counted;
        }
      }
    } catch (e) {
      s.dp.settle();
      throw e;
    }
    s.dp.useReplica(0);
    // The gradients first: while overlapped regions are in flight no other collective may start.
    s.dp.reduceGradients(s.replicas.map((r) => r.model));
    const preference = s.preference ? this.preferenceStepResult(s.preference, preferenceSums.overRanks(s.dp)) : null;
    if (preference) ({ lossSum, count, correct, counted } = preference);
    else [lossSum, count, correct, counted] = s.dp.sum([lossSum, count, correct, counted]);
    // Replica 0's norm: every replica holds bitwise the same gradient sum.
    const gradNorm = s.dp.gradNorm(model);
    const lr = learningRate(s.state.step, { lr: c.learning_rate, schedule: c.schedule, warmup: s.warmup, totalSteps: s.totalSteps, minLr: c.min_lr });
    const verdict = monitor.check(s.state.step + 1, count > 0 ? lossSum / count : null, gradNorm);
    if (verdict.action === 'stop') return verdict.stopMessage;
    if (verdict.action === 'update') {
      // Every replica updates its own copy (its own AdamW) from the same sums, so the copies stay equal.
      for (const [replica, r] of s.replicas.entries()) {
        s.dp.useReplica(replica);
        r.optimizer.update(lr, clipScale(gradNorm, c.grad_clip));
      }
      s.dp.useReplica(0);
      s.dp.afterUpdate(model);
    }
    s.state.step++;
    s.state.tokens_seen += positions;
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const entry: StepLog = {
      step: s.state.step, epoch: epochOf(), loss: count > 0 ? lossSum / count : NaN, token_accuracy: counted > 0 ? correct / counted : NaN,
      lr, grad_norm: gradNorm, ms, tokens_per_s: positions / (ms / 1000), tokens: count, elapsed_s: elapsed(), ...preference?.fields,
      ...(s.dp.size > 1 ? { allreduce_ms: s.dp.lastReduction.exposedMs } : {}),
      ...(verdict.action === 'skip' ? { skipped: true as const } : {}),
    };
    s.state.epoch = entry.epoch;
    log(entry);
    progress?.step(entry);
    this.emit('step', entry);
    if (verdict.warning) {
      progress?.message(`warning: ${verdict.warning.message}`);
      this.emit('warning', { step: entry.step, ...verdict.warning });
    }
    return null;
  }

  /**
   * A dpo/orpo step's sums over every worker (replicas, then ranks) as trainStep's sums (lossSum / count is
   * the step's preference loss; the counts are the answer tokens, accuracy that of the chosen ones) and the
   * step line's reward fields.
   */
  private preferenceStepResult(objective: PreferenceObjective, sums: PreferenceSums) {
    const r = objective.result(sums);
    return {
      lossSum: r.loss * r.tokens, count: r.tokens, correct: r.correct, counted: r.counted, fields: metricFields(r.metrics, ''),
    };
  }

  /**
   * The end of a run: checkpoints/last (when checkpointing), then the model into output_dir. A
   * failure names the file and where the trained weights are: output_dir when only checkpoints/last
   * failed; checkpoints/last when only output_dir failed, or a checkpoints/last written now as a
   * fallback (a plain run writes no checkpoints); else the newest checkpoint on disk, or that they
   * could not be kept. Returns checkpoints/last or null.
   */
  private saveFinal(s: Setup, saveLast: (() => string | null) | null, source: string | null): string | null {
    const c = this.config;
    let lastDir: string | null = null;
    try {
      if (saveLast) lastDir = saveLast();
    } catch (e) {
      // The weights are still in memory: output_dir can still receive them (from the best checkpoint, or these).
      let kept = `the final checkpoint was not saved${this.newestCheckpointNote()}`;
      if (c.output_dir) {
        try {
          this.publish(s, source !== null && path.basename(source) === 'best' ? source : null);
          kept += `; the model is in ${c.output_dir}`;
        } catch (publishError) {
          kept += `; writing ${c.output_dir} failed too (${(publishError as Error).message})`;
        }
      }
      throw new OutputError(`${(e as Error).message}; ${kept}`);
    }
    if (!c.output_dir || !s.dp.writes) return lastDir;
    try {
      this.publish(s, source);
    } catch (e) {
      const message = (e as Error).message;
      if (lastDir !== null) throw new OutputError(`${message}; the trained model is kept in ${lastDir} (a model folder; ${this.nameKey('resume_from')} ${lastDir} continues the run)`);
      const fallback = this.checkpointDir === null ? null : path.join(this.checkpointDir, 'last');
      let kept = 'the trained weights could not be kept';
      if (fallback !== null) {
        try {
          writeCheckpoint(fallback, { model: s.opened.model, optimizer: s.optimizer, state: s.state, config: this.recordedConfig(), tokenizerFiles: s.tokenizerFiles });
          kept = `the trained model was saved to ${fallback} instead (a model folder; ${this.nameKey('resume_from')} ${fallback} continues the run)`;
        } catch (fallbackError) {
          kept += ` (saving ${fallback} failed too: ${(fallbackError as Error).message})`;
        }
      }
      throw new OutputError(`${message}; ${kept}`);
    }
    return lastDir;
  }

  /**
   * The folder of `spec`: itself, or for a Hugging Face model id its snapshot in the cache (downloaded
   * as needed). When `spec` is config.model, checkpoints then record it pinned to the commit
   * (org/name@<commit>), so that resuming loads the same base even after the branch moves.
   */
  private async localModel(spec: string, isConfigModel: boolean): Promise<string> {
    const { dir, snapshot } = await localModelFolder(spec, this.nameKey('model'), this.opts.hub);
    if (snapshot !== null && isConfigModel) this.pinnedModel = pinnedModelId(snapshot);
    return dir;
  }

  /** The config checkpoints and outputs record: config.model pinned to its Hub commit when it was a Hub id. */
  private recordedConfig(): TrainConfig {
    // A resumed run serves a dashboard only when asked again (the port may be taken by then).
    return { ...this.config, model: this.pinnedModel ?? this.config.model, dashboard: null };
  }

  /** "; the newest checkpoint on disk is DIR" when the checkpoint folder holds a step-N one. */
  private newestCheckpointNote(): string {
    const steps = this.checkpointDir === null ? [] : stepCheckpoints(this.checkpointDir);
    return steps.length > 0 ? `; the newest checkpoint on disk is ${steps[steps.length - 1].dir}` : '';
  }

  /**
   * output_dir gets the best model (checkpoints/best) when there was validation, else the final one.
   * The weights are written as save_dtype, sharded above max_shard_size (checkpoints are always
   * f32 in one file, for exact resuming). Each model file is replaced atomically on its own
   * (writeModelFiles, the weights' single file or the shard index last): output_dir is never swapped
   * as a whole, since it holds the checkpoints and may hold the log beside the model. The files are
   * listed in the output manifest before they are written, and weight files of an earlier save in
   * another layout that the manifest lists are removed (a resumed run with another max_shard_size).
   */
  private publish(s: Setup, source: string | null): void {
    const c = this.config, outDir = c.output_dir!;
    const saveOptions = { dtype: c.save_dtype, maxShardSize: c.max_shard_size };
    const adapter = s.opened.model.trainingAdapter;
    const files = adapter
      ? source === null
        ? { ...s.tokenizerFiles, ...adapterFiles(adapter, baseModelName(this.recordedConfig()), outDir) }
        : readModelFiles(source)
      : source === null
      ? modelFolderFiles(s.opened.model, outDir, { tokenizerFrom: null, extraFiles: s.tokenizerFiles, ...saveOptions })
      : reencodedModelFiles(source, saveOptions);
    s.outFolder?.record(Object.keys(files));
    writeModelFiles(outDir, files, { ownsStale: (name) => s.outFolder?.lists(name) ?? false });
  }

  /**
   * output_dir's model card (lib/card): the base, the training data with hashes, the resolved config,
   * the losses and the validation result. The model is saved by now, so a card that cannot be
   * written is a warning, not a failed run.
   */
  private writeCard(s: Setup, history: RunHistory, reason: StopReason, progress: ProgressReporter | null): void {
    const c = this.config, config = this.recordedConfig();
    try {
      const training = s.dataReport ? trainingDataFacts(s.dataReport) : null;
      let audit: string[] | null = null;
      try {
        audit = s.dataReport ? auditTrainingData(s.dataReport) : null;
      } catch (e) {
        progress?.message(`warning: the training data's audit for the model card failed: ${(e as Error).message}`);
      }
      const lastStep = [...history.steps].reverse().find((step) => !step.skipped && Number.isFinite(step.loss));
      const lastEval = history.evals[history.evals.length - 1];
      const facts: CardFacts = {
        ...folderFacts(c.output_dir!, 'gptune train', { spec: baseModelName(config), dir: s.opened.tokenizerDir }),
        training, hyperparameters: hyperparameters(config),
        results: {
          steps: s.state.step, stop_reason: reason, final_train_loss: lastStep?.loss ?? null, final_val_loss: lastEval?.val_loss ?? null,
          best_val_loss: s.state.best_val_loss, best_step: s.state.best_step,
        },
        evals: validationEval(training, s.state.best_val_loss), audit,
      };
      writeModelCard(c.output_dir!, facts);
    } catch (e) {
      const warning: TrainingWarning = { step: s.state.step, kind: 'card', message: `the model is saved, but its card was not written: ${(e as Error).message}` };
      progress?.message(`warning: ${warning.message}`);
      this.emit('warning', warning);
    }
  }

  private result(
    s: Setup, reason: StopReason, lastEval: EvalLog | null, outputDir: string | null, outputModel: FitResult['outputModel'], lastCheckpoint: string | null,
    divergence: string | null = null, lastGoodCheckpoint: string | null = null,
  ): FitResult {
    return {
      reason, signal: reason === 'interrupted' ? this.stopRequest! : undefined, step: s.state.step, totalSteps: s.totalSteps,
      lastEval, bestValLoss: s.state.best_val_loss, bestStep: s.state.best_step, outputDir, outputModel, lastCheckpoint, divergence, lastGoodCheckpoint,
      dataReport: s.dataReport, model: s.opened.model,
    };
  }
}
