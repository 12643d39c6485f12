/**
 * The fine-tuning hyperparameters: one typed TrainConfig with a documented default on every key,
 * loaded from a JSON or YAML file (`--config FILE`) and overridden by command-line flags.
 * Precedence, lowest first: DEFAULT_CONFIG < the checkpoint's train_config.json (when resuming from
 * the CLI) < the config file < flags. Unknown keys and wrong types are errors that name the file (or
 * flag), the key, the expected type and the received value. Relative paths are relative to the
 * current directory, as for flags, not to the config file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseDocument } from 'yaml';
import { DATA_KINDS, DataKind } from '../data/records';
import { BASE_DTYPES } from '../model/frozen_base';
import { describeValue } from '../util/check';
import { parseByteSize } from '../util/memory';

export type DataFormat = 'auto' | DataKind | 'preference';
export const DATA_FORMATS: readonly DataFormat[] = ['auto', ...DATA_KINDS, 'preference'];
export type TrainMethod = 'sft' | 'dpo' | 'orpo';
export const TRAIN_METHODS: readonly TrainMethod[] = ['sft', 'dpo', 'orpo'];
/** What early stopping and the best checkpoint compare: the validation loss (lower is better) or DPO/ORPO's reward accuracy (higher). */
export type BestMetric = 'val_loss' | 'val_rewards/accuracies';
export const BEST_METRICS: readonly BestMetric[] = ['val_loss', 'val_rewards/accuracies'];
export type ScheduleChoice = 'constant' | 'linear' | 'cosine';
export const SCHEDULE_CHOICES: readonly ScheduleChoice[] = ['constant', 'linear', 'cosine'];
export type DeviceSetting = 'cpu' | 'cuda' | 'auto';
export const DEVICE_SETTINGS: readonly DeviceSetting[] = ['cpu', 'cuda', 'auto'];
export type PrecisionSetting = 'bf16' | 'fp32';
export const PRECISION_SETTINGS: readonly PrecisionSetting[] = ['bf16', 'fp32'];

export interface TrainConfig {
  // --- what to train, on what, and where the result goes ---
  /** Model folder (Hugging Face GPT-2) or "new:n_layer=..,n_head=..,n_embd=.." for fresh weights. Required. */
  model: string | null;
  /** Training data: a .txt/.jsonl/.csv file, or a folder of .txt files. Required. */
  data: string | null;
  /** A separate validation file. Default null: no validation unless validation_fraction > 0. */
  validation: string | null;
  /** Fraction of the training data held out for validation, in [0, 1): a seeded random subset of the examples, or the end of a text's token stream. Default 0. */
  validation_fraction: number;
  /** Data format; "auto" detects it from the file (extension and first record). Default "auto". */
  format: DataFormat;
  /** Prompt template overriding the format's default (see lib/data). Default null = the format's default. */
  template: string | null;
  /** Translation data: the source language's name the template writes ({source_lang}). Default null = "Source". */
  source_lang: string | null;
  /** Translation data: the target language's name the template writes ({target_lang}). Default null = "Target". */
  target_lang: string | null;
  /** Take the loss on prompt tokens too, not only on the completion / assistant turns. Default false. */
  train_on_prompt: boolean;
  /** Pack several short examples into each sequence (attention never crosses examples); false pads. Default true. */
  packing: boolean;
  /** Skip (and count) invalid data lines instead of stopping with an error. Default false. */
  skip_invalid: boolean;
  /** Output folder: at the end it holds the best model (lowest validation loss) in Hugging Face format. Required. */
  output_dir: string | null;
  /** Where checkpoints go (step-N, last, best). Default null = <output_dir>/checkpoints. */
  checkpoint_dir: string | null;
  /** Replace a previous gptune output in output_dir (only the files gptune listed in its manifest; anything else there is refused). Default false: output_dir must be new or empty. */
  overwrite: boolean;

  // --- optimisation ---
  /** Peak learning rate. Default 3e-4. */
  learning_rate: number;
  /** Sequences per micro-batch. Default 4. */
  batch_size: number;
  /** Micro-batches per optimizer step; the gradient is that of the mean loss over all their scored tokens. Default 1. */
  grad_accum_steps: number;
  /** Passes over the training data; fractional values allowed. Ignored when max_steps is set. Default 1. */
  epochs: number;
  /** Optimizer steps to run; overrides epochs when set (as in Hugging Face's Trainer). Default null. */
  max_steps: number | null;
  /** Linear warmup steps from 0 to learning_rate. Default 0. */
  warmup_steps: number;
  /** Warmup as a fraction of all steps (ceil(ratio * steps)); give this or warmup_steps, not both. Default 0. */
  warmup_ratio: number;
  /** Learning-rate schedule after warmup: constant, linear or cosine decay to min_lr. Default "constant". */
  schedule: ScheduleChoice;
  /** Final learning rate of the linear and cosine schedules. Default 0. */
  min_lr: number;
  /** AdamW decoupled weight decay, applied to 2D+ tensors only (not biases or LayerNorm). Default 0. */
  weight_decay: number;
  /**
   * Dropout in training at every site the model has, in [0, 1); 0 = none. GPT-2's sites are the
   * embedding, the attention probabilities and the two residual branches; the Llama family's the
   * attention probabilities. Default null: the model's config.json rates (GPT-2's embd_pdrop,
   * attn_pdrop, resid_pdrop, 0.1 in Hugging Face's configs; the Llama family's attention_dropout,
   * usually 0). Evaluation and generation never drop.
   */
  dropout: number | null;
  /** AdamW beta1, in [0, 1). Default 0.9. */
  beta1: number;
  /** AdamW beta2, in [0, 1). Default 0.999. */
  beta2: number;
  /** AdamW epsilon, > 0. Default 1e-8. */
  eps: number;
  /** Global gradient-norm clip; 0 = no clipping. Default 1.0. */
  grad_clip: number;
  /** Sequence length T. Default null = min(n_positions, 256). */
  seq_len: number | null;
  /** Seed for shuffling, the validation split and fresh weights. Default 1337. */
  seed: number;
  /** Shuffle the training items each epoch (false: in file order, wrapping). Default true. */
  shuffle: boolean;

  // --- evaluation, early stopping, checkpoints ---
  /** Evaluate on the validation data every N optimizer steps; 0 = only at the end. Default 0. */
  eval_every: number;
  /** Evaluate after the last step (unless that step was just evaluated). Default true. */
  eval_at_end: boolean;
  /** Stop after this many evaluations without improvement of the validation loss; 0 = never. Default 0. */
  early_stopping_patience: number;
  /** An evaluation improves when val_loss < best - min_delta. Default 0. */
  early_stopping_min_delta: number;
  /** Write a resumable checkpoint (checkpoints/step-N) every N optimizer steps; 0 = none. Default 0. */
  save_every: number;
  /** Keep at most this many step-N checkpoints (oldest deleted; best and last are always kept). Default null = all. */
  save_total_limit: number | null;
  /** Resume from this checkpoint folder (or from the newest checkpoint inside it). Default null. */
  resume_from: string | null;
  /** Dtype of the weights in output_dir: f32, or bf16 (rounded; checkpoints stay f32 for exact resuming). Default "f32". */
  save_dtype: 'f32' | 'bf16';
  /** Shard output_dir's weights above this size, as save_pretrained's max_shard_size ("5GB", "500MB", bytes). Default "5GB". */
  max_shard_size: string;

  // --- LoRA / QLoRA (lib/lora; PEFT's LoraConfig) ---
  /** Train a LoRA adapter on the frozen base instead of every weight. Default false. */
  lora: boolean;
  /** LoRA rank r (>= 1). Default 8. */
  lora_r: number;
  /** LoRA alpha: the update is scaled by alpha / r (alpha / sqrt(r) with use_rslora). Default 16. */
  lora_alpha: number;
  /** Dropout on the adapter's input, in [0, 1). Default 0.05. */
  lora_dropout: number;
  /** Modules to adapt, comma-separated as PEFT matches them (a name matches a module equal to it or ending in ".name"), or all-linear. Default null: GPT-2 c_attn, the Llama family q_proj,v_proj. */
  lora_targets: string | null;
  /** rsLoRA: scale by alpha / sqrt(r). Default false. */
  use_rslora: boolean;
  /** Modules trained in full and saved with the adapter, comma-separated (lm_head, embed_tokens / wte). Default null. */
  lora_modules_to_save: string | null;

  // --- preference tuning (lib/train/preference.ts; TRL's DPOConfig / ORPOConfig) ---
  /** sft: next-token loss on the data (the default); dpo or orpo: preference pairs (format preference). Default "sft". */
  method: TrainMethod;
  /** DPO's beta: how far the model may move from the reference (smaller: further). Default 0.1. */
  beta: number;
  /** DPO's loss: sigmoid (the DPO paper), ipo or hinge. Default "sigmoid". */
  loss_type: 'sigmoid' | 'ipo' | 'hinge';
  /** cDPO: the assumed probability that a pair's preference is wrong, in [0, 0.5); sigmoid loss only. Default 0. */
  label_smoothing: number;
  /** ORPO's weight of the odds-ratio term (TRL's ORPOConfig beta). Default 0.1. */
  orpo_lambda: number;
  /** DPO: compute the reference model's log-probabilities of every pair once before training (then free the reference copy). Default false. */
  precompute_ref: boolean;
  /** The validation metric of the best checkpoint and early stopping: val_loss, or val_rewards/accuracies (dpo, orpo). Default "val_loss". */
  best_metric: BestMetric;
  /** How the frozen base's linear weights are stored: f32, bf16, int8 (per-channel absmax) or nf4 (QLoRA); anything but f32 needs lora. Default "f32". */
  base_dtype: 'f32' | 'bf16' | 'int8' | 'nf4';
  /** Continue training this PEFT adapter folder (its config sets r, alpha, targets; implies lora). Default null. */
  adapter: string | null;

  // --- divergence and memory guards ---
  /**
   * A step whose loss or gradient norm is not finite is skipped (no update); this many consecutive
   * skipped steps stop the run as diverged (nothing published, checkpoints on disk kept). Default 5.
   */
  max_skipped_steps: number;
  /**
   * Stop the run as diverged when a step's loss is more than this many standard deviations above
   * the mean of the previous 100 steps' losses (llm.c's outlier test; the deviation is taken at
   * least 1% of the mean, so a flat loss does not stop on a small change); 0 = never. Default 50.
   */
  divergence_zscore: number;
  /** Refuse to start when the run's memory plan exceeds this many bytes ("8GB", "512MiB"); null = the memory available. Default null. */
  max_memory: string | null;
  /**
   * Gradient checkpointing: keep only each block's input and recompute the block in backward, for
   * (n_layer - 1) blocks' activations less at the cost of about one more forward per step; the
   * gradients are bitwise the same. Default false.
   */
  gradient_checkpointing: boolean;

  // --- data-parallel training (mpirun / srun; lib/train/distributed.ts) ---
  /**
   * Sequences per optimizer step over all ranks (ranks x batch_size x grad_accum_steps; the GPUs of devices
   * count as ranks): grad_accum_steps follows from it and the number of ranks, so a run's losses do not
   * depend on how many ranks run it. Default null: grad_accum_steps as given, on each rank.
   */
  global_batch_size: number | null;
  /** 1: ZeRO-1, AdamW's moments sharded over the ranks (reduce-scatter, update the shard, all-gather); 0: all-reduce. Default 0. */
  zero: number;
  /** Seconds a collective may wait for the other ranks before the job ends with an error naming the missing ones. Default 300. */
  collective_timeout: number;
  /**
   * Overlap the gradient all-reduce with the backward of earlier layers (ZeRO-0 under mpirun): "on", "off",
   * or "auto", off for now: on CPU ranks the communication thread takes a core from the backward and the step
   * got slower where measured; on GPU ranks it is not measured yet (docs/scaling.md). Default "auto".
   */
  overlap_comm: 'auto' | 'on' | 'off';

  // --- machine and logging ---
  /** Backend: cpu, cuda, or auto (cuda when a GPU is usable). Default "cpu". */
  device: DeviceSetting;
  /**
   * CUDA devices one process trains on data-parallel, comma-separated ("0,1"): one copy of the model per
   * GPU, gradients summed with NCCL (lib/train/distributed.ts). Implies device cuda; not under mpirun
   * (there each rank drives one GPU). Default null: one device.
   */
  devices: string | null;
  /** GPU matmul/attention precision: bf16 operands with fp32 accumulation (weights, gradients and AdamW state stay fp32), or fp32. The CPU always computes in fp32. Default "bf16". */
  precision: PrecisionSetting;
  /** CPU threads for the kernels. Default null = all cores. */
  threads: number | null;
  /** Append one JSON line per step and per evaluation to this file. Default null. */
  log_file: string | null;

  // --- watching a run (lib/dashboard) ---
  /**
   * Serve a live dashboard of the run on http://127.0.0.1:PORT/ while it trains (0 = any free port;
   * the flag without a number: 6066). Not recorded in checkpoints: a resumed run serves one only
   * when asked again. Default null: none.
   */
  dashboard: number | null;
  /**
   * Prompts (one per line) that the model continues greedily at each evaluation and at the end,
   * shown on the dashboard and kept in OUT/metrics.jsonl; greedy decoding draws no random numbers,
   * so the run trains exactly as without them. Default null: none.
   */
  sample_prompts: string | null;
  /** Tokens generated for each sample prompt. Default 32. */
  sample_tokens: number;
}

export type ConfigKey = keyof TrainConfig;

type ValueType = 'string' | 'int' | 'number' | 'bool';

/** How one key is checked and how it appears on the command line. */
export interface KeySpec<V> {
  type: ValueType;
  default: V;
  /** null is an allowed value. */
  nullable?: boolean;
  choices?: readonly string[];
  min?: number;
  /** Lower bound, exclusive. */
  above?: number;
  /** Upper bound, exclusive. */
  below?: number;
  /** A string that must read as a byte size ("8GB", "512MiB"). */
  byteSize?: boolean;
  /** Flag name on the command line (without --). */
  flag: string;
  /** The value of the flag given without one (e.g. --dashboard alone is --dashboard 6066). */
  flagWithoutValue?: V;
  /** One line of help for --help. */
  help: string;
}

/** The port of `--dashboard` without a number and of `gptune dashboard` (TensorBoard's 6006 stays free). */
export const DEFAULT_DASHBOARD_PORT = 6066;

/** Every key, its check and its flag; the type makes sure no key of TrainConfig is missing here. */
export const CONFIG_SCHEMA: { [K in ConfigKey]: KeySpec<TrainConfig[K]> } = {
  model: { type: 'string', nullable: true, default: null, flag: 'model', help: 'model folder, a Hugging Face model id (gpt2, org/name@revision; downloaded into the HF cache), or new:n_layer=2,n_head=4,n_embd=64,n_positions=128 for a fresh model (required)' },
  data: { type: 'string', nullable: true, default: null, flag: 'data', help: 'training file (.txt, .jsonl, .csv) or folder of .txt files (required)' },
  validation: { type: 'string', nullable: true, default: null, flag: 'validation', help: 'validation file' },
  validation_fraction: { type: 'number', min: 0, below: 1, default: 0, flag: 'validation-fraction', help: 'fraction of the training data held out for validation' },
  format: { type: 'string', choices: DATA_FORMATS, default: 'auto', flag: 'format', help: 'data format' },
  template: { type: 'string', nullable: true, default: null, flag: 'template', help: "prompt template (default: the format's)" },
  source_lang: { type: 'string', nullable: true, default: null, flag: 'source-lang', help: 'translation: the source language\'s name in the template ({source_lang}; default "Source")' },
  target_lang: { type: 'string', nullable: true, default: null, flag: 'target-lang', help: 'translation: the target language\'s name in the template ({target_lang}; default "Target")' },
  train_on_prompt: { type: 'bool', default: false, flag: 'train-on-prompt', help: 'take the loss on prompt tokens too' },
  packing: { type: 'bool', default: true, flag: 'packing', help: 'pack short examples into full sequences (--no-packing pads)' },
  skip_invalid: { type: 'bool', default: false, flag: 'skip-invalid', help: 'skip and count invalid data lines instead of failing' },
  output_dir: { type: 'string', nullable: true, default: null, flag: 'out', help: 'output folder: the best model at the end (required)' },
  checkpoint_dir: { type: 'string', nullable: true, default: null, flag: 'checkpoint-dir', help: 'checkpoint folder (default: OUT/checkpoints)' },
  overwrite: { type: 'bool', default: false, flag: 'overwrite', help: 'replace a previous gptune output in --out (only the files gptune wrote there; a folder holding anything else is refused)' },
  learning_rate: { type: 'number', min: 0, default: 3e-4, flag: 'lr', help: 'peak learning rate' },
  batch_size: { type: 'int', min: 1, default: 4, flag: 'batch-size', help: 'sequences per micro-batch (B)' },
  grad_accum_steps: { type: 'int', min: 1, default: 1, flag: 'grad-accum', help: 'micro-batches per optimizer step' },
  epochs: { type: 'number', above: 0, default: 1, flag: 'epochs', help: 'passes over the training data (ignored with --steps)' },
  max_steps: { type: 'int', min: 1, nullable: true, default: null, flag: 'steps', help: 'optimizer steps (overrides --epochs)' },
  warmup_steps: { type: 'int', min: 0, default: 0, flag: 'warmup', help: 'linear warmup steps' },
  warmup_ratio: { type: 'number', min: 0, below: 1, default: 0, flag: 'warmup-ratio', help: 'warmup as a fraction of all steps' },
  schedule: { type: 'string', choices: SCHEDULE_CHOICES, default: 'constant', flag: 'schedule', help: 'learning-rate schedule after warmup' },
  min_lr: { type: 'number', min: 0, default: 0, flag: 'min-lr', help: 'final learning rate of linear/cosine schedules' },
  weight_decay: { type: 'number', min: 0, default: 0, flag: 'weight-decay', help: 'AdamW decoupled weight decay (2D+ tensors only)' },
  dropout: { type: 'number', min: 0, below: 1, nullable: true, default: null, flag: 'dropout', help: "dropout in training at every site the model has (0 = none; default: config.json's embd_pdrop, attn_pdrop, resid_pdrop, or attention_dropout)" },
  beta1: { type: 'number', min: 0, below: 1, default: 0.9, flag: 'beta1', help: 'AdamW beta1' },
  beta2: { type: 'number', min: 0, below: 1, default: 0.999, flag: 'beta2', help: 'AdamW beta2' },
  eps: { type: 'number', above: 0, default: 1e-8, flag: 'eps', help: 'AdamW epsilon (> 0)' },
  grad_clip: { type: 'number', min: 0, default: 1.0, flag: 'grad-clip', help: 'global gradient-norm clip (0 = none)' },
  seq_len: { type: 'int', min: 1, nullable: true, default: null, flag: 'seq-len', help: 'sequence length T (default: min(n_positions, 256))' },
  seed: { type: 'int', min: 0, default: 1337, flag: 'seed', help: 'seed for shuffling, the validation split and fresh weights' },
  shuffle: { type: 'bool', default: true, flag: 'shuffle', help: 'shuffle each epoch (--no-shuffle: in order, wrapping)' },
  eval_every: { type: 'int', min: 0, default: 0, flag: 'eval-every', help: 'evaluate every N steps (0 = only at the end)' },
  eval_at_end: { type: 'bool', default: true, flag: 'eval-at-end', help: 'evaluate after the last step' },
  early_stopping_patience: { type: 'int', min: 0, default: 0, flag: 'early-stopping-patience', help: 'stop after N evaluations without improvement (0 = never)' },
  early_stopping_min_delta: { type: 'number', min: 0, default: 0, flag: 'early-stopping-min-delta', help: 'smallest decrease of the validation loss that counts as improvement' },
  save_every: { type: 'int', min: 0, default: 0, flag: 'save-every', help: 'write a resumable checkpoint every N steps (0 = none)' },
  save_total_limit: { type: 'int', min: 1, nullable: true, default: null, flag: 'save-total-limit', help: 'keep at most N step checkpoints (default: all)' },
  resume_from: { type: 'string', nullable: true, default: null, flag: 'resume', help: 'resume from a checkpoint folder (or the newest one inside it)' },
  save_dtype: { type: 'string', choices: ['f32', 'bf16'] as const, default: 'f32', flag: 'save-dtype', help: "dtype of the output model's weights (checkpoints stay f32)" },
  max_shard_size: { type: 'string', default: '5GB', flag: 'max-shard-size', help: 'shard the output weights above this size (5GB, 500MB, or bytes), as save_pretrained' },
  lora: { type: 'bool', default: false, flag: 'lora', help: 'train a LoRA adapter on the frozen base (PEFT-compatible adapter_config.json + adapter_model.safetensors in --out)' },
  lora_r: { type: 'int', min: 1, default: 8, flag: 'lora-r', help: 'LoRA rank r' },
  lora_alpha: { type: 'number', above: 0, default: 16, flag: 'lora-alpha', help: 'LoRA alpha (scaling alpha / r)' },
  lora_dropout: { type: 'number', min: 0, below: 1, default: 0.05, flag: 'lora-dropout', help: "dropout on the adapter's input" },
  lora_targets: { type: 'string', nullable: true, default: null, flag: 'lora-targets', help: 'modules to adapt, comma-separated (PEFT matching), or all-linear (default: GPT-2 c_attn; Llama family q_proj,v_proj)' },
  use_rslora: { type: 'bool', default: false, flag: 'use-rslora', help: 'rsLoRA scaling alpha / sqrt(r)' },
  lora_modules_to_save: { type: 'string', nullable: true, default: null, flag: 'lora-modules-to-save', help: 'modules trained in full with the adapter, comma-separated (lm_head, embed_tokens / wte)' },
  method: { type: 'string', choices: TRAIN_METHODS, default: 'sft', flag: 'method', help: 'sft (next-token loss), dpo or orpo (preference pairs: OpenAI preference JSONL or TRL prompt/chosen/rejected)' },
  beta: { type: 'number', above: 0, default: 0.1, flag: 'beta', help: "DPO's beta (strength of the pull towards the reference model)" },
  loss_type: { type: 'string', choices: ['sigmoid', 'ipo', 'hinge'] as const, default: 'sigmoid', flag: 'loss-type', help: "DPO's loss: sigmoid, ipo or hinge" },
  label_smoothing: { type: 'number', min: 0, below: 0.5, default: 0, flag: 'label-smoothing', help: 'cDPO label smoothing (sigmoid loss): the probability that a preference is flipped' },
  orpo_lambda: { type: 'number', above: 0, default: 0.1, flag: 'lambda', help: "ORPO's weight of the odds-ratio term" },
  precompute_ref: { type: 'bool', default: false, flag: 'precompute-ref', help: "DPO: the reference model's log-probabilities of every pair once, before training" },
  best_metric: { type: 'string', choices: BEST_METRICS, default: 'val_loss', flag: 'best-metric', help: 'validation metric for the best checkpoint and early stopping: val_loss (lower) or val_rewards/accuracies (higher; dpo, orpo)' },
  base_dtype: { type: 'string', choices: BASE_DTYPES, default: 'f32', flag: 'base-dtype', help: "storage of the frozen base's linear weights: f32, bf16, int8, nf4 (QLoRA), q8_0 or q4_k (ggml's blocks); anything but f32 needs --lora" },
  adapter: { type: 'string', nullable: true, default: null, flag: 'adapter', help: 'continue training this PEFT adapter: a folder, or a Hugging Face id org/name[@revision] downloaded into the HF cache (implies --lora; r, alpha and targets come from it)' },
  max_skipped_steps: { type: 'int', min: 1, default: 5, flag: 'max-skipped-steps', help: 'stop as diverged after N consecutive steps with a non-finite loss or gradient norm (each is skipped)' },
  divergence_zscore: { type: 'number', min: 0, default: 50, flag: 'divergence-zscore', help: 'stop as diverged when a loss is more than Z standard deviations above the last 100 steps (0 = never)' },
  max_memory: { type: 'string', nullable: true, byteSize: true, default: null, flag: 'max-memory', help: 'refuse to start when the run needs more memory than this (e.g. 8GB, 512MiB; default: what is available)' },
  gradient_checkpointing: { type: 'bool', default: false, flag: 'gradient-checkpointing', help: 'keep only each block\'s input and recompute it in backward: less activation memory, about one more forward per step, the same gradients' },
  global_batch_size: { type: 'int', min: 1, nullable: true, default: null, flag: 'global-batch-size', help: 'sequences per optimizer step over all MPI ranks or --devices (sets grad-accum = this / (ranks or devices x batch-size))' },
  zero: { type: 'int', min: 0, below: 2, default: 0, flag: 'zero', help: 'under mpirun: 1 shards AdamW\'s state over the ranks (ZeRO-1), 0 all-reduces the gradients' },
  collective_timeout: { type: 'number', above: 0, default: 300, flag: 'collective-timeout', help: 'under mpirun (or with --devices): seconds a rank waits for the others in a collective before the job ends, naming the missing ranks' },
  overlap_comm: { type: 'string', choices: ['auto', 'on', 'off'] as const, default: 'auto', flag: 'overlap-comm', help: 'under mpirun: reduce each layer\'s gradients while the backward of earlier layers runs (on, off; auto: off until measured to pay, docs/scaling.md)' },
  device: { type: 'string', choices: DEVICE_SETTINGS, default: 'cpu', flag: 'device', help: 'backend: cpu, cuda, or auto' },
  devices: { type: 'string', nullable: true, default: null, flag: 'devices', help: 'train data-parallel on these CUDA devices from one process, comma-separated (0,1; implies --device cuda; without mpirun)' },
  precision: { type: 'string', choices: PRECISION_SETTINGS, default: 'bf16', flag: 'precision', help: 'GPU matmul/attention precision (the CPU always uses fp32)' },
  threads: { type: 'int', min: 1, nullable: true, default: null, flag: 'threads', help: 'CPU threads for the kernels (default: all cores)' },
  log_file: { type: 'string', nullable: true, default: null, flag: 'log', help: 'append one JSON line per step and evaluation to this file' },
  dashboard: {
    type: 'int', min: 0, below: 65536, nullable: true, default: null, flagWithoutValue: DEFAULT_DASHBOARD_PORT, flag: 'dashboard',
    help: 'serve a live page of the curves, best step and samples on http://127.0.0.1:N/ while training (--dashboard alone: 6066; 0: any free port)',
  },
  sample_prompts: { type: 'string', nullable: true, default: null, flag: 'sample-prompts', help: 'prompts, one per line, continued greedily at each evaluation and at the end (dashboard, OUT/metrics.jsonl)' },
  sample_tokens: { type: 'int', min: 1, default: 32, flag: 'sample-tokens', help: 'tokens generated per sample prompt' },
};

export const CONFIG_KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

export const DEFAULT_CONFIG: Readonly<TrainConfig> = Object.freeze(
  Object.fromEntries(CONFIG_KEYS.map((k) => [k, CONFIG_SCHEMA[k].default])) as unknown as TrainConfig,
);

export class ConfigError extends Error {}

/** The source name of values that came from command-line flags: errors then name the flag. */
export const FLAGS_SOURCE = 'command line';


function expectedText(spec: KeySpec<unknown>): string {
  let text: string;
  switch (spec.type) {
    case 'string':
      text = spec.choices ? `one of ${spec.choices.map((c) => JSON.stringify(c)).join(', ')}` : spec.byteSize ? 'a size such as "8GB" or "512MiB"' : 'a non-empty string';
      break;
    case 'bool': text = 'true or false'; break;
    case 'int': case 'number': {
      const noun = spec.type === 'int' ? 'a whole number' : 'a number';
      if (spec.min !== undefined && spec.below !== undefined) text = `${noun} in [${spec.min}, ${spec.below})`;
      else if (spec.above !== undefined) text = `${noun} > ${spec.above}`;
      else if (spec.min !== undefined) text = `${noun} >= ${spec.min}`;
      else text = noun;
      break;
    }
  }
  return spec.nullable ? `${text} or null` : text;
}

/** Edit distance, for "did you mean" on unknown keys. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

function unknownKeyMessage(source: string, key: string): string {
  const byFlag = CONFIG_KEYS.find((k) => CONFIG_SCHEMA[k].flag === key || CONFIG_SCHEMA[k].flag === key.replace(/_/g, '-'));
  const closest = CONFIG_KEYS.map((k) => ({ k, d: editDistance(key, k) })).sort((x, y) => x.d - y.d)[0];
  const hint = byFlag ? ` (did you mean '${byFlag}'?)` : closest.d <= 3 ? ` (did you mean '${closest.k}'?)` : '';
  return `${source}: unknown key '${key}'${hint}; known keys: ${CONFIG_KEYS.join(', ')}`;
}

/** Checks one value against its key's spec. */
export function checkValue<K extends ConfigKey>(source: string, key: K, value: unknown): TrainConfig[K] {
  const spec = CONFIG_SCHEMA[key] as KeySpec<unknown>;
  // Flags are named as typed (--lr); file keys with the file (config.yaml: key 'learning_rate').
  const name = source === FLAGS_SOURCE ? `--${spec.flag}` : `${source}: key '${key}'`;
  const fail = () => new ConfigError(`${name}: expected ${expectedText(spec)} but received ${describeValue(value)}`);
  if (value === null) {
    if (spec.nullable) return value as TrainConfig[K];
    throw fail();
  }
  switch (spec.type) {
    case 'string':
      if (typeof value !== 'string' || value === '' || (spec.choices && !spec.choices.includes(value))) throw fail();
      if (spec.byteSize && parseByteSize(value) === null) throw fail();
      return value as TrainConfig[K];
    case 'bool':
      if (typeof value !== 'boolean') throw fail();
      return value as TrainConfig[K];
    case 'int':
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw fail();
      if (spec.type === 'int' && !Number.isSafeInteger(value)) throw fail();
      if (spec.min !== undefined && value < spec.min) throw fail();
      if (spec.above !== undefined && !(value > spec.above)) throw fail();
      if (spec.below !== undefined && !(value < spec.below)) throw fail();
      return value as TrainConfig[K];
  }
}

/** Validates a partial config (from a file, flags or code): every key known, every value well typed. */
export function checkPartialConfig(source: string, raw: unknown): Partial<TrainConfig> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${source}: expected a mapping of config keys to values but received ${describeValue(raw)}`);
  }
  const out: Partial<TrainConfig> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (!(key in CONFIG_SCHEMA)) throw new ConfigError(unknownKeyMessage(source, key));
    if (value === undefined) continue;
    (out as Record<string, unknown>)[key] = checkValue(source, key as ConfigKey, value);
  }
  return out;
}

/** Reads a JSON (.json) or YAML (.yaml, .yml; anything else is tried as YAML, which includes JSON) config file. */
export function loadConfigFile(file: string): Partial<TrainConfig> {
  if (!fs.existsSync(file)) throw new ConfigError(`--config ${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new ConfigError(`--config ${file}: expected a JSON or YAML file but found a folder`);
  const text = fs.readFileSync(file, 'utf8');
  let raw: unknown;
  if (path.extname(file).toLowerCase() === '.json') {
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`${file}: invalid JSON (${(e as Error).message})`);
    }
  } else {
    const doc = parseDocument(text, { uniqueKeys: true });
    if (doc.errors.length > 0) {
      const err = doc.errors[0];
      const where = err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
      throw new ConfigError(`${file}: invalid YAML${where} (${err.message.split('\n')[0]})`);
    }
    try {
      // Resolving aliases can still fail after a clean parse (an undefined alias, an alias bomb).
      raw = doc.toJS();
    } catch (e) {
      throw new ConfigError(`${file}: invalid YAML (${(e as Error).message.split('\n')[0]})`);
    }
    // An empty file is an empty config, not an error.
    if (raw === null || raw === undefined) raw = {};
  }
  return checkPartialConfig(file, raw);
}

/**
 * Merges DEFAULT_CONFIG < base < fileConfig < overrides (each validated, each layer's defined keys
 * win) and checks the keys that depend on each other. `sources` names the layers in errors.
 */
export function resolveConfig(
  fileConfig: Partial<TrainConfig> = {},
  overrides: Partial<TrainConfig> = {},
  opts: {
    base?: Partial<TrainConfig>;
    sources?: { base?: string; file?: string; overrides?: string };
    /** Keys that must end up non-empty; a program that hands the Trainer a model or data objects needs fewer. */
    require?: readonly ('model' | 'data' | 'output_dir')[];
    /** Validation batches are supplied by the program (Trainer options), not by a file or fraction. */
    validationProvided?: boolean;
  } = {},
): TrainConfig {
  const names = { base: 'checkpoint config', file: 'config file', overrides: 'config', ...opts.sources };
  const config: TrainConfig = { ...DEFAULT_CONFIG };
  for (const [layer, name] of [[opts.base ?? {}, names.base], [fileConfig, names.file], [overrides, names.overrides]] as const) {
    Object.assign(config, checkPartialConfig(name, layer));
  }
  const where = names.overrides;
  const required = new Set(opts.require ?? ['model', 'data', 'output_dir']);
  if (required.has('model') && config.model === null) throw new ConfigError(`${where}: 'model' is required (--model DIR or "model" in the config file)`);
  if (required.has('data') && config.data === null) throw new ConfigError(`${where}: 'data' is required (--data FILE or "data" in the config file)`);
  if (required.has('output_dir') && config.output_dir === null) throw new ConfigError(`${where}: 'output_dir' is required (--out DIR or "output_dir" in the config file)`);
  if (config.warmup_steps > 0 && config.warmup_ratio > 0) {
    throw new ConfigError(`${where}: give warmup_steps (${config.warmup_steps}) or warmup_ratio (${config.warmup_ratio}), not both`);
  }
  if (config.validation !== null && config.validation_fraction > 0) {
    throw new ConfigError(`${where}: give validation (${config.validation}) or validation_fraction (${config.validation_fraction}), not both`);
  }
  const hasValidation = opts.validationProvided === true || config.validation !== null || config.validation_fraction > 0;
  if (!hasValidation && (config.eval_every > 0 || config.early_stopping_patience > 0)) {
    const key = config.eval_every > 0 ? 'eval_every' : 'early_stopping_patience';
    throw new ConfigError(`${where}: ${key} needs validation data (validation FILE or validation_fraction > 0)`);
  }
  if (config.early_stopping_patience > 0 && config.eval_every === 0) {
    throw new ConfigError(`${where}: early_stopping_patience needs eval_every > 0 (evaluations during training to compare)`);
  }
  if (config.sample_tokens !== CONFIG_SCHEMA.sample_tokens.default && config.sample_prompts === null) {
    throw new ConfigError(`${where}: sample_tokens needs sample_prompts (the prompts to continue)`);
  }
  if (config.sample_prompts !== null && samplePrompts(config.sample_prompts).length === 0) {
    throw new ConfigError(`${where}: sample_prompts holds no prompt (give one per line)`);
  }
  if (config.global_batch_size !== null) {
    if (config.grad_accum_steps !== 1) throw new ConfigError(`${where}: give grad_accum_steps (${config.grad_accum_steps}) or global_batch_size (${config.global_batch_size}), not both`);
    if (config.global_batch_size % config.batch_size !== 0) {
      throw new ConfigError(`${where}: global_batch_size ${config.global_batch_size} is not a multiple of batch_size ${config.batch_size}`);
    }
  }
  if (config.devices !== null) {
    // A key named as the layer that set it names keys: --devices on the command line, else the file's key.
    const setBy = (key: 'devices' | 'device') => (overrides[key] !== undefined ? names.overrides : fileConfig[key] !== undefined ? names.file : names.base);
    const label = (key: 'devices' | 'device') => (setBy(key) === FLAGS_SOURCE ? `--${CONFIG_SCHEMA[key].flag}` : `${setBy(key)}: key '${key}'`);
    const from = setBy('devices');
    parseDevices(config.devices, label('devices'));
    // devices implies cuda; a cpu the user wrote (not the default, not a resumed run's record) contradicts
    // devices the user wrote too, and overrules a resumed run's (a GPU run continued on the CPU).
    const saidCpu = [fileConfig, overrides].some((layer) => (layer as Partial<TrainConfig>).device === 'cpu');
    if (saidCpu && from === names.base) config.devices = null;
    else if (saidCpu) throw new ConfigError(`${label('devices')} ${config.devices} lists CUDA devices, but ${label('device')} is cpu; leave it unset or give cuda`);
    else config.device = 'cuda';
  }
  if (config.min_lr > config.learning_rate) {
    throw new ConfigError(`${where}: min_lr (${config.min_lr}) must not exceed learning_rate (${config.learning_rate})`);
  }
  checkPreferenceConfig(config, where);
  if (!config.lora && config.adapter === null) {
    // A LoRA setting without LoRA would be silently ignored: a forgotten --lora.
    const loraKeys = (['lora_r', 'lora_alpha', 'lora_dropout', 'lora_targets', 'use_rslora', 'lora_modules_to_save'] as const)
      .filter((k) => config[k] !== CONFIG_SCHEMA[k].default);
    if (loraKeys.length > 0) throw new ConfigError(`${where}: ${loraKeys[0]} needs lora (--lora)`);
    if (config.base_dtype !== 'f32') throw new ConfigError(`${where}: base_dtype ${config.base_dtype} needs lora (--lora): a ${config.base_dtype} base is frozen and only an adapter trains on it`);
  }
  return config;
}

/**
 * The CUDA device indices of the devices key ("0,1" -> [0, 1]): whole numbers >= 0, each once.
 * `label` starts the error line (e.g. "--devices").
 */
export function parseDevices(value: string, label = 'devices'): number[] {
  const parts = value.split(',').map((p) => p.trim());
  const devices: number[] = [];
  for (const part of parts) {
    if (!/^\d+$/.test(part) || Number(part) > 1023) throw new ConfigError(`${label} ${value}: expected CUDA device indices separated by commas (e.g. 0,1) but found ${JSON.stringify(part)}`);
    const index = Number(part);
    if (devices.includes(index)) throw new ConfigError(`${label} ${value}: device ${index} is listed twice (each GPU holds one copy of the model)`);
    devices.push(index);
  }
  return devices;
}

/** The preference-tuning keys against method and format: a setting the method would ignore is an error. */
function checkPreferenceConfig(config: TrainConfig, where: string): void {
  const changed = (keys: ReadonlyArray<'beta' | 'loss_type' | 'label_smoothing' | 'orpo_lambda' | 'precompute_ref'>) => keys.filter((k) => config[k] !== CONFIG_SCHEMA[k].default);
  if (config.method === 'sft') {
    const set = changed(['beta', 'loss_type', 'label_smoothing', 'orpo_lambda', 'precompute_ref']);
    if (set.length > 0) throw new ConfigError(`${where}: ${set[0]} needs method dpo or orpo (--method); it has no effect on sft`);
    if (config.format === 'preference') throw new ConfigError(`${where}: format preference (pairs of answers) trains with method dpo or orpo (--method), not sft`);
    if (config.best_metric !== 'val_loss') throw new ConfigError(`${where}: best_metric ${config.best_metric} needs method dpo or orpo (sft logs no rewards)`);
    return;
  }
  if (config.format !== 'auto' && config.format !== 'preference') throw new ConfigError(`${where}: method ${config.method} trains on preference pairs (format preference or auto), not ${config.format} data`);
  if (config.train_on_prompt) throw new ConfigError(`${where}: train_on_prompt does not apply to method ${config.method}: the preference loss is on the answers only`);
  if (config.method === 'orpo') {
    const set = changed(['beta', 'loss_type', 'label_smoothing', 'precompute_ref']);
    if (set.length > 0) throw new ConfigError(`${where}: ${set[0]} is a DPO setting; ORPO has no reference model and weighs its odds-ratio term with orpo_lambda (--lambda)`);
  } else {
    if (config.orpo_lambda !== CONFIG_SCHEMA.orpo_lambda.default) throw new ConfigError(`${where}: orpo_lambda (--lambda) needs method orpo; DPO's strength is beta (--beta)`);
    if (config.label_smoothing > 0 && config.loss_type !== 'sigmoid') throw new ConfigError(`${where}: label_smoothing applies to loss_type sigmoid only (received loss_type ${config.loss_type})`);
  }
}

/** A comma-separated list setting ("q_proj, v_proj") as names. */
export function listSetting(value: string): string[] {
  return value.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

/** The sample prompts of a sample_prompts setting: its non-blank lines. */
export function samplePrompts(value: string): string[] {
  return value.split('\n').filter((line) => line.trim() !== '');
}

/** The config as saved beside checkpoints: every key, in schema order. */
export function configToJSON(config: TrainConfig): string {
  const ordered = Object.fromEntries(CONFIG_KEYS.map((k) => [k, config[k]]));
  return JSON.stringify(ordered, null, 2) + '\n';
}
