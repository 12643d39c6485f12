/**
 * The three sizes of the demo. `quick` is what `npm start` runs: it must finish in well under 10
 * minutes on 2 CPU cores, base-model pretraining included (see docs/demo for the measured times
 * and the tokenizer measurement behind the vocabulary size). `full` is the larger version;
 * `tiny` is the seconds-long version the test runs end to end.
 */

export type PresetName = 'tiny' | 'quick' | 'full';
export const PRESET_NAMES: readonly PresetName[] = ['tiny', 'quick', 'full'];

export interface ModelShape {
  n_layer: number;
  n_head: number;
  n_embd: number;
  /** Context length; also the training sequence length T. */
  n_positions: number;
}

export interface TrainingPlan {
  /** Optimizer steps: a fixed count (pretraining) or passes over the data (fine-tuning). */
  steps?: number;
  epochs?: number;
  batchSize: number;
  learningRate: number;
  /** Linear warmup as a fraction of the steps, then cosine decay to learningRate / 10. */
  warmupRatio: number;
  weightDecay: number;
  /** Validation evaluations over the run (evenly spaced), plus one before the first step. */
  evaluations: number;
  /** Stop after this many evaluations without improvement (0 = never); the best model is kept either way. */
  patience: number;
}

/**
 * The LoRA run beside full task fine-tuning (issue 12): PEFT LoraConfig settings, given to the
 * Trainer as its lora_* config keys, and the peak learning rates tried with the task plan otherwise
 * unchanged. The candidate with the lowest validation loss is the one scored on the test emails.
 */
export interface LoraPlan {
  r: number;
  alpha: number;
  dropout: number;
  /** PEFT target_modules: all-linear = every block's c_attn, attn.c_proj, c_fc and mlp.c_proj (not the tied LM head). */
  targets: string;
  learningRates: number[];
}

export interface DemoPreset {
  name: PresetName;
  /** Byte-level BPE vocabulary learned from the general corpus (256 bytes + merges + <|endoftext|>). */
  vocabSize: number;
  /** Characters of the general corpus the BPE merges are learned from (null = all of it). */
  bpeTrainingChars: number | null;
  model: ModelShape;
  /** Characters of the general corpus used for pretraining (null = all of it), and the held-out fraction. */
  corpusChars: number | null;
  pretrainValidationFraction: number;
  pretrain: TrainingPlan;
  /** How many emails of each split are used (null = the whole split). */
  trainEmails: number | null;
  validationEmails: number | null;
  testEmails: number | null;
  /** Email bodies are cut to this many characters (at a word boundary), subjects to subjectChars. */
  bodyChars: number;
  subjectChars: number;
  /** Task and domain fine-tuning (the same plan for every run, so runs differ only in where they start). */
  finetune: TrainingPlan;
  /** The low-data runs: task fine-tuning on only the first fewLabelledEmails training emails. */
  fewLabelledEmails: number;
  fewLabelled: TrainingPlan;
  /** LoRA on the task plan (from the base, the same labelled emails). */
  lora: LoraPlan;
  domain: TrainingPlan;
  /** Subject-line generation: training plan, and how many test emails are decoded and scored. */
  generation: TrainingPlan;
  generationTestEmails: number;
  /** Longest generated subject, in tokens. */
  maxSubjectTokens: number;
  /** Sample generations shown in the report. */
  samples: number;
  /** DPO on the subject model: real subject preferred over another email's (lib/demo/preference.ts). */
  preference: PreferencePlan;
}

/** The demo's DPO run: steps of batchPairs pairs, constant learning rate, DPO's beta, evaluations on the validation pairs. */
export interface PreferencePlan {
  steps: number;
  batchPairs: number;
  learningRate: number;
  beta: number;
  evaluations: number;
}

const QUICK: DemoPreset = {
  name: 'quick',
  vocabSize: 4096,
  bpeTrainingChars: null,
  model: { n_layer: 4, n_head: 4, n_embd: 128, n_positions: 128 },
  corpusChars: null,
  pretrainValidationFraction: 0.01,
  pretrain: { steps: 600, batchSize: 16, learningRate: 2e-3, warmupRatio: 0.05, weightDecay: 0.1, evaluations: 10, patience: 0 },
  trainEmails: 1200,
  validationEmails: 200,
  testEmails: 600,
  bodyChars: 300,
  subjectChars: 80,
  finetune: { epochs: 2, batchSize: 16, learningRate: 5e-4, warmupRatio: 0.1, weightDecay: 0.01, evaluations: 8, patience: 3 },
  fewLabelledEmails: 100,
  // A small labelled set is trained until validation stops improving (not for a fixed budget):
  // the question is how good each starting point gets on few labels, not how fast.
  fewLabelled: { epochs: 20, batchSize: 16, learningRate: 1e-3, warmupRatio: 0.05, weightDecay: 0.01, evaluations: 10, patience: 3 },
  // A low-rank update moves the weights less per step than full fine-tuning, so LoRA is usually run
  // at about 10x full fine-tuning's learning rate (5e-3 here); 5x and 20x are tried beside it and
  // validation picks. All-linear adapts the MLP too, which c_attn alone (PEFT's GPT-2 default) would not.
  lora: { r: 16, alpha: 32, dropout: 0.05, targets: 'all-linear', learningRates: [2.5e-3, 5e-3, 1e-2] },
  domain: { epochs: 1, batchSize: 16, learningRate: 5e-4, warmupRatio: 0.1, weightDecay: 0.01, evaluations: 6, patience: 0 },
  generation: { epochs: 3, batchSize: 16, learningRate: 5e-4, warmupRatio: 0.1, weightDecay: 0.01, evaluations: 6, patience: 3 },
  generationTestEmails: 150,
  maxSubjectTokens: 24,
  samples: 6,
  // A short DPO run on the subject model (about 2 x 4 x 128 token positions a step, and a reference forward).
  preference: { steps: 40, batchPairs: 4, learningRate: 1e-4, beta: 0.1, evaluations: 4 },
};

const FULL: DemoPreset = {
  ...QUICK,
  name: 'full',
  // 3.4x the quick model's non-embedding parameters, 2.5x its pretraining steps, every email of
  // every split: 2043.8 s measured on 2 cores with other jobs running (docs/demo/report-full.md).
  model: { n_layer: 6, n_head: 6, n_embd: 192, n_positions: 128 },
  pretrain: { ...QUICK.pretrain, steps: 1500, learningRate: 1.5e-3, evaluations: 15 },
  trainEmails: null,
  validationEmails: null,
  testEmails: null,
  finetune: { ...QUICK.finetune, evaluations: 10 },
  fewLabelledEmails: 200,
  generation: { ...QUICK.generation, epochs: 2 },
  generationTestEmails: 400,
  samples: 8,
  preference: { ...QUICK.preference, steps: 80 },
};

const TINY: DemoPreset = {
  name: 'tiny',
  vocabSize: 300,
  bpeTrainingChars: 200_000,
  model: { n_layer: 1, n_head: 2, n_embd: 16, n_positions: 96 },
  corpusChars: 40_000,
  pretrainValidationFraction: 0.1,
  pretrain: { steps: 6, batchSize: 4, learningRate: 3e-3, warmupRatio: 0, weightDecay: 0, evaluations: 2, patience: 0 },
  trainEmails: 24,
  validationEmails: 8,
  testEmails: 12,
  bodyChars: 80,
  subjectChars: 24,
  finetune: { epochs: 1, batchSize: 4, learningRate: 1e-3, warmupRatio: 0, weightDecay: 0, evaluations: 2, patience: 0 },
  fewLabelledEmails: 8,
  fewLabelled: { epochs: 1, batchSize: 4, learningRate: 1e-3, warmupRatio: 0, weightDecay: 0, evaluations: 2, patience: 0 },
  lora: { r: 16, alpha: 32, dropout: 0.05, targets: 'all-linear', learningRates: [3e-3, 1e-2] },
  domain: { epochs: 1, batchSize: 4, learningRate: 1e-3, warmupRatio: 0, weightDecay: 0, evaluations: 2, patience: 0 },
  generation: { epochs: 1, batchSize: 4, learningRate: 1e-3, warmupRatio: 0, weightDecay: 0, evaluations: 2, patience: 0 },
  generationTestEmails: 4,
  maxSubjectTokens: 6,
  samples: 2,
  preference: { steps: 2, batchPairs: 2, learningRate: 1e-3, beta: 0.1, evaluations: 1 },
};

export const PRESETS: Record<PresetName, DemoPreset> = { tiny: TINY, quick: QUICK, full: FULL };
