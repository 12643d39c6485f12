/**
 * Training checkpoints: a Hugging Face model folder (so any checkpoint is a valid --model) plus what
 * a resumed run needs to continue exactly where this one stopped:
 * (a LoRA run's checkpoint is its adapter folder instead, adapter_config.json + adapter_model.safetensors)
 *   optimizer.safetensors  AdamW's m and v per trained tensor (gptune's (out, in) layout), step in the metadata
 *   trainer_state.json     step, epoch, data position (BatchSource.getState(), which holds the shuffle
 *                          RNG), best validation loss, early-stopping counter, elapsed time
 *   train_config.json      the resolved TrainConfig
 * Each checkpoint folder is written with writeDirAtomic (temporary folder, fsync, rename), so a crash
 * or an error leaves either the previous checkpoint or the new one, never a mix.
 */
import * as fs from 'fs';
import * as path from 'path';
import { isHubModelSpec } from '../hub/cache';
import { configToJSON, TrainConfig } from '../config';
import type { DataState } from '../data/types';
import { FileContents, writeDirAtomic } from '../io/atomic';
import { adapterFiles } from '../lora/files';
import { encodeSafetensors, readSafetensors, toFloat32 } from '../io/safetensors';
import { saveModel } from '../model/checkpoint';
import { Decoder } from '../model/decoder';
import { AdamW } from './adamw';

export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const STATE_FILE = 'trainer_state.json';
export const CONFIG_FILE = 'train_config.json';

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Fractional epoch: items consumed / items per epoch. */
  epoch: number;
  /** Steps the run was planned for (the schedule's length). */
  total_steps: number;
  data_state: DataState;
  best_val_loss: number | null;
  best_step: number | null;
  /** Evaluations since the last improvement (early stopping). */
  evals_without_improvement: number;
  last_eval_step: number | null;
  /** Wall-clock seconds of training so far, over all resumed runs. */
  elapsed_s: number;
  /** Token positions processed so far. */
  tokens_seen: number;
  /** MPI ranks of the run that wrote the checkpoint (absent: written before data-parallel training, 1 rank). */
  world_size?: number;
  /** Sequences per optimizer step over all ranks (ranks x batch_size x micro-batches); a resumed run must keep it. */
  global_batch?: number;
}

export interface CheckpointContents {
  model: Decoder;
  /** null: a model-only checkpoint (best), not resumable. */
  optimizer: AdamW | null;
  state: TrainerState;
  config: TrainConfig;
  /** Tokenizer files (vocab.json, merges.txt, ...) copied into every checkpoint. */
  tokenizerFiles: Record<string, Uint8Array>;
}

function optimizerFile(optimizer: AdamW, file: string): FileContents {
  const tensors = [];
  for (const [name, m] of optimizer.m.tensors) {
    tensors.push({ name: `exp_avg.${name}`, shape: [...m.shape], data: m.read() });
    tensors.push({ name: `exp_avg_sq.${name}`, shape: [...m.shape], data: optimizer.v.get(name).read() });
  }
  return encodeSafetensors(tensors, { step: String(optimizer.step) }, file);
}

/** Config keys that hold file or folder paths ("new:..." in model is a model spec, not a path). */
const PATH_KEYS = ['model', 'data', 'validation', 'output_dir', 'checkpoint_dir', 'resume_from', 'log_file'] as const;

/**
 * The config with every path made absolute (against the working directory of the run that writes
 * it), so that `--resume` works from any directory: the checkpoint's config is the resumed run's
 * base layer.
 */
export function withAbsolutePaths(config: TrainConfig): TrainConfig {
  const out = { ...config };
  for (const key of PATH_KEYS) {
    const value = out[key];
    if (typeof value === 'string' && !(key === 'model' && (value.startsWith('new:') || isHubModelSpec(value)))) out[key] = path.resolve(value);
  }
  return out;
}

/**
 * What a LoRA run's adapter_config.json names as base_model_name_or_path: the model trained on (an
 * absolute folder path, the new: spec, or a Hub id as org/name@<commit>, which adapterConfigJSON splits
 * into base_model_name_or_path and revision as PEFT records them).
 */
export function baseModelName(config: TrainConfig): string | null {
  const m = config.model;
  return m === null ? null : m.startsWith('new:') || isHubModelSpec(m) ? m : path.resolve(m);
}

/** Writes one checkpoint folder atomically. */
export function writeCheckpoint(dir: string, c: CheckpointContents): void {
  const extraFiles: Record<string, FileContents> = { ...c.tokenizerFiles };
  if (c.optimizer) extraFiles[OPTIMIZER_FILE] = optimizerFile(c.optimizer, path.join(dir, OPTIMIZER_FILE));
  extraFiles[STATE_FILE] = JSON.stringify(c.state, null, 2) + '\n';
  extraFiles[CONFIG_FILE] = configToJSON(withAbsolutePaths(c.config));
  const adapter = c.model.trainingAdapter;
  if (adapter) {
    // A LoRA run's checkpoint is the adapter (a PEFT folder) and its optimizer state; the base is the run's model.
    writeDirAtomic(dir, { ...adapterFiles(adapter, baseModelName(c.config), dir), ...extraFiles });
    return;
  }
  saveModel(c.model, dir, { tokenizerFrom: null, extraFiles });
}

export function isResumable(dir: string): boolean {
  return fs.existsSync(path.join(dir, STATE_FILE)) && fs.existsSync(path.join(dir, OPTIMIZER_FILE));
}

export function readTrainerState(dir: string): TrainerState {
  const file = path.join(dir, STATE_FILE);
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the trainer state (${(e as Error).message})`);
  }
  if (!Number.isInteger(state.step) || state.step < 0 || typeof state.data_state !== 'object' || state.data_state === null) {
    throw new Error(`${file}: expected a trainer state with a whole-number step and a data_state object`);
  }
  return state;
}

export function readCheckpointConfig(dir: string): unknown {
  const file = path.join(dir, CONFIG_FILE);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the training config (${(e as Error).message})`);
  }
}

/** Restores AdamW's moments and step from a checkpoint written by writeCheckpoint. */
export function loadOptimizerState(dir: string, optimizer: AdamW): void {
  const file = path.join(dir, OPTIMIZER_FILE);
  const st = readSafetensors(file);
  const step = Number(st.metadata?.step);
  if (!Number.isInteger(step) || step < 0) throw new Error(`${file}: expected a whole-number "step" in the metadata but received ${JSON.stringify(st.metadata?.step)}`);
  for (const [moment, arena] of [['exp_avg', optimizer.m], ['exp_avg_sq', optimizer.v]] as const) {
    for (const [name, target] of arena.tensors) {
      const t = st.tensors.get(`${moment}.${name}`);
      if (!t) throw new Error(`${file}: missing tensor "${moment}.${name}" (was the checkpoint written for another model?)`);
      if (t.shape.length !== target.shape.length || t.shape.some((d, i) => d !== target.shape[i])) {
        throw new Error(`${file}: tensor "${moment}.${name}" has shape [${t.shape.join(', ')}] but the model needs [${target.shape.join(', ')}]`);
      }
      target.write(toFloat32(t));
    }
  }
  optimizer.step = step;
}

/** step-N folders in a checkpoint folder, oldest first. */
export function stepCheckpoints(checkpointDir: string): Array<{ step: number; dir: string }> {
  if (!fs.existsSync(checkpointDir)) return [];
  return fs.readdirSync(checkpointDir)
    .map((name) => ({ name, match: /^step-(\d+)$/.exec(name) }))
    .filter((e) => e.match !== null)
    .map((e) => ({ step: Number(e.match![1]), dir: path.join(checkpointDir, e.name) }))
    .sort((a, b) => a.step - b.step);
}

/** Deletes the oldest step-N checkpoints beyond `limit` (best and last are not step-N, so they stay). */
export function pruneStepCheckpoints(checkpointDir: string, limit: number | null): string[] {
  if (limit === null) return [];
  const all = stepCheckpoints(checkpointDir);
  const doomed = all.slice(0, Math.max(0, all.length - limit));
  for (const c of doomed) fs.rmSync(c.dir, { recursive: true, force: true });
  return doomed.map((c) => c.dir);
}

/**
 * The checkpoint to resume from: `dir` itself when it is one, otherwise the resumable checkpoint
 * inside it (or inside its checkpoints/ folder) with the highest step. `label` names `dir` in messages
 * (the config key resume_from, or the CLI's flag).
 */
export function findResumableCheckpoint(dir: string, label = 'resume_from'): string {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${label} ${dir}: folder not found`);
  if (isResumable(dir)) return dir;
  const candidates: Array<{ step: number; dir: string }> = [];
  for (const parent of [dir, path.join(dir, 'checkpoints')]) {
    if (!fs.existsSync(parent) || !fs.statSync(parent).isDirectory()) continue;
    for (const name of fs.readdirSync(parent)) {
      const sub = path.join(parent, name);
      if (!name.startsWith('.') && fs.statSync(sub).isDirectory() && isResumable(sub)) candidates.push({ step: readTrainerState(sub).step, dir: sub });
    }
  }
  if (candidates.length === 0) {
    throw new Error(`${label} ${dir}: not a training checkpoint (no ${STATE_FILE} + ${OPTIMIZER_FILE} in it or in its sub-folders)`);
  }
  // On a tie (last written at the same step as step-N) either is the same state.
  candidates.sort((a, b) => b.step - a.step);
  return candidates[0].dir;
}
