/**
 * The demo experiment behind `gptune demo` / `npm start`: pretraining, domain- and task-specific
 * fine-tuning on real corpora, measured and reported (run.ts). The dataset packages it reads are
 * located when the demo runs, never when this module loads.
 */
export { runDemo, defaultCacheDir, findings, CLASSIFICATION_TEMPLATE, SUBJECT_PROMPT_SUFFIX } from './run';
export type { DemoOptions, DemoReport, ClassificationRow, GenerationRow, StageCost } from './types';
export { PRESETS, PRESET_NAMES } from './presets';
export type { DemoPreset, PresetName, TrainingPlan, ModelShape } from './presets';
export { NaiveBayes, words } from './naive_bayes';
export { parseEmail, htmlToText, decodeHeaderWords, truncateText, collapseWhitespace } from './emails';
export { readEmailSplits, readGeneralCorpus, datasetDir, DATASET_PACKAGES, SPLIT_SEED, SPLIT_FRACTIONS, LABELS } from './corpora';
export { formatReport, codeSpan } from './report';
export { lossCurvesSvg, niceTicks } from '../plot/svg';
export { trainRun, bucketCurve } from './training';
export type { RunRecord, CurvePoint } from './training';
