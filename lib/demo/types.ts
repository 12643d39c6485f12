/**
 * The demo's shared types: its options and the report (report.json) that run.ts fills and
 * report.ts / names.ts read. A module of its own so that those read it without importing run.ts.
 */
import type { AugmentationStudy } from './augment';
import type { SPLIT_FRACTIONS } from './corpora';
import type { PreferenceSummary } from './preference';
import type { DemoPreset, PresetName } from './presets';
import type { TasksDemoReport } from './tasks';
import type { DemoProbe } from './probe';
import type { RunRecord } from './training';
import type { AuditReport } from '../data';

export interface DemoOptions {
  outDir: string;
  preset: PresetName;
  seed: number;
  /** Kernel threads (default: all cores). */
  threads: number | null;
  /** Reuse / store the pretrained base model in cacheDir. */
  cache: boolean;
  cacheDir: string;
  /** Progress on stderr: stage lines and the Trainer's progress display. */
  progress: boolean;
  /** The command line, for the report. */
  command: string;
  /** A model to start from instead of pretraining one (--base); null: the built-in pretraining. */
  base: GivenBase | null;
}

/** --base: a model folder, or a Hub model already resolved to its snapshot folder in the HF cache. */
export interface GivenBase {
  /** What --base named: org/name[@revision] or a folder. */
  given: string;
  /** The model folder to load (a Hub model's snapshots/<commit>). */
  dir: string;
  /** The Hub repository, revision and commit, when the model came from the Hub (or is a snapshot folder of the HF cache). */
  repoId: string | null;
  revision: string | null;
  commit: string | null;
  /** Seconds spent finding (and, when not cached, downloading) it; whether anything was downloaded. */
  seconds: number;
  downloaded: boolean;
}

/** report.json's base.source: the model --base named, what it is, and where it was loaded from. */
export interface BaseSource {
  given: string;
  repo_id: string | null;
  revision: string | null;
  commit: string | null;
  dir: string;
  model_type: string;
  layers: number;
  heads: number;
  kv_heads: number;
  width: number;
  /** The base's own context length (positions, or a shorter sliding window). */
  context_length: number;
  obtained_s: number;
  downloaded: boolean;
  /** What the demo's compute figures do not include: the base's own pretraining. */
  training_cost: string;
}

export interface ClassificationRow {
  accuracy: number;
  f1: number;
  precision: number;
  recall: number;
  spam_recall: number;
  spam_precision: number;
  examples: number;
  /** rows: true ham, true spam; columns: predicted ham, predicted spam. */
  confusion: number[][];
  eval_s: number;
}

export interface GenerationRow {
  bleu: number;
  rouge1: number;
  rouge2: number;
  rougeL: number;
  examples: number;
  /** Outputs that stopped at a line break / EOS / the token limit. */
  stops: Record<string, number>;
  eval_s: number;
}

export interface StageCost {
  stage: string;
  wall_s: number;
  train_tokens: number;
  tokens_per_s: number;
  peak_rss_mb: number;
  /** True when the numbers come from the earlier run that filled the cache. */
  cached: boolean;
}

export interface LoraSummary {
  /** alpha / r. */
  scaling: number;
  /** Linear modules adapted, over all layers. */
  modules: number;
  /** The adapter's A and B values, against every parameter (full fine-tuning), and the first as a percentage of the second. */
  trainable_parameters: number;
  full_trainable_parameters: number;
  trainable_percent: number;
  /** Every learning rate tried, in order; the lowest best_val_loss was kept (the test split never saw the others). */
  candidates: Array<{ learning_rate: number; best_val_loss: number; best_step: number; steps: number; wall_s: number }>;
  chosen_learning_rate: number;
}

export interface DemoReport {
  gptune_version: string;
  command: string;
  preset: PresetName;
  seed: number;
  date: string;
  machine: { cpu: string; cores: number; memory_gb: number; platform: string; node: string; threads: number; simd: string; load_average_start: number[]; load_average_end: number[] };
  settings: DemoPreset & { split_seed: number; split_fractions: typeof SPLIT_FRACTIONS; classification_template: string };
  data: {
    /** The general text (SOTU + Moby-Dick) and how much of it pretraining used (absent with --base: no pretraining). */
    general: { documents: number; chars: number; pretrain_chars?: number };
    emails: {
      read: number; duplicates: number; conflicting: number;
      /** The label of most training emails: the majority-class baseline's constant answer. */
      majority_label: string;
      train: { available: number; used: number; spam: number };
      /** The first emails of train, the labelled data of the low-data runs. */
      train_few: { used: number; spam: number };
      validation: { available: number; used: number; spam: number };
      test: { available: number; used: number; spam: number };
      generation_train: number; generation_validation: number; generation_test: number;
    };
  };
  /** The audit of the classification splits (lib/demo/audit.ts); absent in reports written before it existed. */
  data_audit?: AuditReport;
  /**
   * The tokenizer every run used: the BPE the demo learned (merges, learned_from_chars, seconds), or
   * with --base the base's own (name; no learned figures).
   */
  tokenizer: { vocab_size: number; merges?: number; learned_from_chars?: number; seconds?: number; name?: string; general_chars_per_token: number; email_chars_per_token: number };
  /** cache_key and trained_on: the demo's own base cache; source: the model --base named (then there is no pretrain run). */
  base: { cached: boolean; cache_key?: string; trained_on?: string; parameters: number; config: Record<string, unknown>; source?: BaseSource };
  /** task_lora: the LoRA candidate validation picked (lora.candidates has every one tried); pretrain: absent with --base. */
  runs: Record<'task' | 'task_lora' | 'domain' | 'combined' | 'scratch' | 'task_few' | 'scratch_few' | 'subject', RunRecord> & { pretrain?: RunRecord };
  classification: Record<'majority' | 'naive_bayes' | 'base_zero_shot' | 'domain_zero_shot' | 'task' | 'task_lora' | 'combined' | 'scratch' | 'task_few' | 'scratch_few', ClassificationRow>;
  generation: Record<'base' | 'domain' | 'subject', GenerationRow>;
  /** LoRA beside full task fine-tuning (settings.lora has r, alpha, dropout, targets and the learning rates tried). */
  lora: LoraSummary;
  /** The task section (lib/demo/tasks.ts): NER of URLs, email addresses and numbers, base vs fine-tuned. */
  tasks: TasksDemoReport;
  /** The counterfactual bias probe of the task model on the test emails (absent from reports of gptune before it). */
  probe?: DemoProbe;
  /** DPO on the subject model: reward and log-prob accuracy on held-out pairs before and after (lib/demo/preference.ts). */
  preference?: PreferenceSummary;
  /**
   * B - A differences the report states: for classifiers (CLASSIFIER_COMPARISONS) accuracy, macro-F1,
   * the test emails only B / only A gets right and McNemar's exact p; for subjects ROUGE-L and BLEU.
   */
  deltas: Record<string, number>;
  /** The task_few GPT run repeated on the few-label set augmented by `gptune data augment`, each arm McNemar-tested against task_few (augment.ts); absent in reports of earlier versions. */
  augmentation?: AugmentationStudy;
  samples: {
    generation: Array<{ body: string; reference: string; base: string; domain: string; finetuned: string }>;
    classification: Array<{ email: string; label: string; base: string; task: string; lora: string; scratch: string; naive_bayes: string }>;
  };
  findings: string[];
  /** The significance level and p-value floor the findings use. */
  stats: { readonly alpha: number; readonly p_floor: number };
  compute: StageCost[];
  total_wall_s: number;
}
