/**
 * Model cards on disk. Every folder gptune writes a model into gets gptune_card.json (the facts)
 * and the card rendered from them (card.ts). The card is README.md, the file the Hub shows, unless
 * the folder already holds a README.md that gptune did not write (it lacks CARD_MARKER): that one
 * is never touched and the card goes to MODEL_CARD.md instead; a MODEL_CARD.md that is not
 * gptune's either is refused. Both files are written atomically.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { parse } from 'yaml';
import type { TrainConfig } from '../config';
import { AuditSplit, auditSplits, auditSummaryLines, DataReport, loadAuditSplit } from '../data';
import { FileFormatError, OutputError } from '../errors';
import type { ProbeReport } from '../eval/probe';
import { writeFileAtomic } from '../io/atomic';
import { ADAPTER_CONFIG_FILE } from '../lora/files';
import { VERSION } from '../version';
import { CARD_MARKER, CardEval, CardFacts, DataFileFacts, datasetType, renderModelCard, TrainingDataFacts } from './card';

export const CARD_FACTS_FILE = 'gptune_card.json';
export const README_FILE = 'README.md';
export const FALLBACK_CARD_FILE = 'MODEL_CARD.md';
/** The entries a card may add to an output folder (for its manifest). */
export const CARD_FILES = [README_FILE, FALLBACK_CARD_FILE, CARD_FACTS_FILE];

/** sha256 of a file, read in 1 MiB pieces (data files can be large). */
function sha256File(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** A data file's (or a folder of .txt files') name, size and sha256. */
export function dataFileFacts(file: string, role: DataFileFacts['role'], examples: number | null): DataFileFacts {
  if (fs.statSync(file).isDirectory()) {
    const names = fs.readdirSync(file).filter((n) => n.endsWith('.txt')).sort();
    const lines = names.map((n) => `${n} ${sha256File(path.join(file, n))}\n`).join('');
    const bytes = names.reduce((s, n) => s + fs.statSync(path.join(file, n)).size, 0);
    return { role, file: `${path.basename(file)}/`, examples, bytes, sha256: crypto.createHash('sha256').update(lines).digest('hex') };
  }
  return { role, file: path.basename(file), examples, bytes: fs.statSync(file).size, sha256: sha256File(file) };
}

/** The training data as a card lists it, from the report lib/data made while reading it. */
export function trainingDataFacts(report: DataReport): TrainingDataFacts {
  const files = [dataFileFacts(report.train, 'train', report.trainSplit.examples)];
  if (report.validation !== null) files.push(dataFileFacts(report.validation, 'validation', report.validationSplit?.examples ?? null));
  return {
    kind: report.kind, files, train_examples: report.trainSplit.examples, validation_examples: report.validationSplit?.examples ?? null,
    validation_fraction: report.validation === null ? report.validationFraction : null,
    ...(report.labelCounts ? { label_counts: report.labelCounts } : {}),
    ...(report.trainSplit.truncatedExamples > 0 ? { truncated_examples: report.trainSplit.truncatedExamples } : {}),
  };
}

/**
 * The data audit's summary lines (lib/data/audit: class balance, duplicates within and across
 * the training and validation files, PII) of the data a run trained on, files named by their
 * base names. Lines invalid for the run's format were skipped by training or stopped it, so
 * they are skipped here too.
 */
export function auditTrainingData(report: DataReport): string[] {
  // Preference pairs (dpo/orpo) are read as pairs: duplicates of whole pairs, PII in prompt, chosen and rejected.
  const format = report.kind === 'preference' ? undefined : report.kind;
  const split = (name: string, file: string): AuditSplit => {
    const loaded = loadAuditSplit(name, file, { format, skipInvalid: true });
    return { name, file: path.basename(file), records: loaded.records.map((r) => ({ ...r, file: path.basename(file) })) };
  };
  const splits = [split('train', report.train), ...(report.validation !== null ? [split('validation', report.validation)] : [])];
  return auditSummaryLines(auditSplits(splits, { maxListed: 20 }));
}

/** Config keys that hold local paths or run plumbing, not hyperparameters. */
const NOT_HYPERPARAMETERS: ReadonlyArray<keyof TrainConfig> = ['data', 'validation', 'output_dir', 'checkpoint_dir', 'resume_from', 'log_file', 'dashboard', 'overwrite', 'threads', 'max_memory'];

export function hyperparameters(config: TrainConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !(NOT_HYPERPARAMETERS as readonly string[]).includes(k)));
}

/** The YAML front matter of a Markdown file, or null when it has none (or it does not parse). */
export function readFrontMatter(text: string): Record<string, unknown> | null {
  const m = /^---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(text);
  if (!m) return null;
  try {
    const meta = parse(m[1]);
    return typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta : null;
  } catch {
    return null;
  }
}

function readJSONObject(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  try {
    const x = JSON.parse(fs.readFileSync(file, 'utf8'));
    return typeof x === 'object' && x !== null && !Array.isArray(x) ? x : null;
  } catch {
    return null;
  }
}

/**
 * A model folder's license as the folder itself states it: its README's front matter, its
 * gptune_card.json, or a `license` key in config.json; null when none does.
 */
export function folderLicense(dir: string | null): string | null {
  if (dir === null || !fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return null;
  const readme = path.join(dir, README_FILE);
  const fromReadme = fs.existsSync(readme) ? readFrontMatter(fs.readFileSync(readme, 'utf8'))?.license : undefined;
  for (const value of [fromReadme, readJSONObject(path.join(dir, CARD_FACTS_FILE))?.license, readJSONObject(path.join(dir, 'config.json'))?.license]) {
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return null;
}

/** config.json's model_type, or the adapter's base's when the folder is a LoRA adapter. */
function folderArchitecture(dir: string): string | null {
  const type = readJSONObject(path.join(dir, 'config.json'))?.model_type;
  return typeof type === 'string' ? type : null;
}

/** A LoRA adapter folder's settings from adapter_config.json (PEFT's keys), or null for a full model. */
function folderLora(dir: string): { lora: CardFacts['lora']; base: string | null } {
  const a = readJSONObject(path.join(dir, ADAPTER_CONFIG_FILE));
  if (a === null) return { lora: null, base: null };
  const targets = Array.isArray(a.target_modules) ? a.target_modules.map(String) : typeof a.target_modules === 'string' ? [a.target_modules] : [];
  return {
    lora: { r: Number(a.r), alpha: Number(a.lora_alpha), target_modules: targets },
    base: typeof a.base_model_name_or_path === 'string' ? a.base_model_name_or_path : null,
  };
}

/**
 * The facts a folder's own files give (config.json, adapter_config.json): for a model gptune did
 * not record, and as the start of every card. `base` is the base spec and `baseDir` its folder
 * (for the license) when the writer knows them.
 */
export function folderFacts(dir: string, writtenBy: string, base: { spec: string | null; dir: string | null } | null = null): CardFacts {
  const { lora, base: adapterBase } = folderLora(dir);
  const baseSpec = base?.spec ?? adapterBase;
  const fromScratch = baseSpec !== null && baseSpec.startsWith('new:');
  return {
    written_by: writtenBy, gptune_version: VERSION, model_name: path.basename(path.resolve(dir)),
    base_model: fromScratch ? null : baseSpec,
    license: folderLicense(base?.dir ?? (baseSpec !== null && !fromScratch && fs.existsSync(baseSpec) ? baseSpec : null)),
    architecture: folderArchitecture(dir) ?? (base?.dir ? folderArchitecture(base.dir) : null),
    lora, training: null, hyperparameters: null, results: null, audit: null, evals: [], probe: null,
  };
}

/** gptune_card.json of a folder, or null when it has none; a file that is not one is an error naming it. */
export function readCardFacts(dir: string): CardFacts | null {
  const file = path.join(dir, CARD_FACTS_FILE);
  if (!fs.existsSync(file)) return null;
  const facts = readJSONObject(file);
  if (facts === null || typeof facts.written_by !== 'string' || !Array.isArray(facts.evals) || typeof facts.model_name !== 'string') {
    throw new FileFormatError(`${file}: is not a gptune card record (expected a JSON object with written_by, model_name and evals)`);
  }
  return facts as unknown as CardFacts;
}

function isGptuneCard(file: string): boolean {
  return fs.readFileSync(file, 'utf8').includes(CARD_MARKER);
}

/**
 * Where the card goes: README.md when it is missing or gptune's, else MODEL_CARD.md when that is
 * missing or gptune's; else an OutputError naming both (nothing of the user's is overwritten).
 */
export function cardFile(dir: string): string {
  for (const name of [README_FILE, FALLBACK_CARD_FILE]) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file) || (fs.statSync(file).isFile() && isGptuneCard(file))) return file;
  }
  throw new OutputError(`${dir}: ${README_FILE} and ${FALLBACK_CARD_FILE} are both there and neither was written by gptune; move one of them to let gptune write the model card`);
}

/** Writes gptune_card.json and the card (README.md or MODEL_CARD.md, see cardFile); returns the card's path. */
export function writeModelCard(dir: string, facts: CardFacts): string {
  const factsFile = path.join(dir, CARD_FACTS_FILE);
  if (fs.existsSync(factsFile)) readCardFacts(dir); // refuses a gptune_card.json that is not gptune's
  const file = cardFile(dir);
  writeFileAtomic(factsFile, JSON.stringify(facts, null, 1) + '\n');
  writeFileAtomic(file, renderModelCard(facts));
  return file;
}

/** A number from an eval report, or an error naming the file and key. */
function num(report: Record<string, unknown>, key: string, file: string): number {
  const parts = key.split('.');
  let x: unknown = report;
  for (const p of parts) x = typeof x === 'object' && x !== null ? (x as Record<string, unknown>)[p] : undefined;
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new FileFormatError(`${file}: expected a number at ${key} (a gptune eval --json report) but found ${JSON.stringify(x)}`);
  return x;
}

/**
 * What each evaluation task puts in model-index: the task, and its metrics as [metric id, the key
 * of the value in the task's `gptune eval --json` report, pretty name].
 */
const TASK_METRICS: Record<'lm' | 'classify' | 'generate', { task: CardEval['task']; metrics: ReadonlyArray<readonly [string, string, string]> }> = {
  lm: {
    task: { type: 'text-generation', name: 'Language modelling' },
    metrics: [['loss', 'loss', 'Loss (nats per token)'], ['perplexity', 'perplexity', 'Perplexity'], ['accuracy', 'token_accuracy', 'Next-token accuracy']],
  },
  classify: {
    task: { type: 'text-classification', name: 'Text classification' },
    metrics: [['accuracy', 'accuracy', 'Accuracy'], ['f1', 'f1', 'Macro F1'], ['precision', 'precision', 'Macro precision'], ['recall', 'recall', 'Macro recall']],
  },
  generate: {
    task: { type: 'text-generation', name: 'Text generation' },
    metrics: [['bleu', 'bleu', 'BLEU (sacrebleu)'], ['rouge', 'rouge1.f', 'ROUGE-1 F'], ['rouge', 'rouge2.f', 'ROUGE-2 F'], ['rouge', 'rougeL.f', 'ROUGE-L F']],
  },
};

/**
 * One model-index result of task `task` from its report's values (`gptune eval --json`'s keys);
 * `dataset` is the evaluation file's name, `where` names the report in errors, `taskName` renames the task.
 */
export function taskEval(task: keyof typeof TASK_METRICS, values: Record<string, unknown>, dataset: string, source: string, where: string, taskName?: string): CardEval {
  const spec = TASK_METRICS[task];
  return {
    task: { type: spec.task.type, name: taskName ?? spec.task.name }, dataset: { name: dataset, type: datasetType(dataset) }, source,
    metrics: spec.metrics.map(([type, key, name]) => ({ type, value: num(values, key, where), name })),
  };
}

/**
 * An evaluation result of the card from one `gptune eval --json` report: lm (loss, perplexity,
 * token accuracy), classify (accuracy, macro F1/precision/recall) or generate (BLEU, ROUGE F).
 */
export function evalFromReport(report: unknown, file: string): CardEval {
  if (typeof report !== 'object' || report === null || Array.isArray(report)) throw new FileFormatError(`${file}: expected a JSON object (a gptune eval --json report)`);
  const r = report as Record<string, unknown>;
  if ('delta' in r && 'a' in r) throw new FileFormatError(`${file}: is a --compare report of two models; give the report of this model alone`);
  if ('probe' in r) throw new FileFormatError(`${file}: is a bias probe report; give it with --probe`);
  const task = r.task ?? ('perplexity' in r ? 'lm' : undefined);
  if (task !== 'lm' && task !== 'classify' && task !== 'generate') {
    throw new FileFormatError(`${file}: expected a gptune eval --json report (task lm, classify or generate) but found task ${JSON.stringify(task)}`);
  }
  const data = typeof r.data === 'string' ? path.basename(r.data) : `${path.basename(file)} (data not named in the report)`;
  return taskEval(task, r, data, path.basename(file), file);
}

/** The probe report of `gptune eval --probe counterfactual --json`, checked. */
export function probeFromReport(report: unknown, file: string): ProbeReport {
  const r = report as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || r.probe !== 'counterfactual' || !Array.isArray(r.groups) || typeof r.per_group !== 'object' || r.per_group === null) {
    throw new FileFormatError(`${file}: expected a gptune eval --probe counterfactual --json report (keys probe, groups, per_group)`);
  }
  for (const g of r.groups) {
    if (!(g in (r.per_group as object))) throw new FileFormatError(`${file}: per_group has no entry for the group ${JSON.stringify(g)}`);
  }
  const { probe, groups, seed, labels, label_score, examples, accuracy, per_group } = r as unknown as ProbeReport;
  return { probe, groups, seed, labels, label_score, examples, accuracy, per_group };
}

/** The validation result of a training run as a model-index entry (the validation file is its dataset). */
export function validationEval(training: TrainingDataFacts | null, valLoss: number | null): CardEval[] {
  if (training === null || valLoss === null) return [];
  const file = training.files.find((d) => d.role === 'validation');
  const name = file ? file.file : `${training.files[0].file} (held-out part)`;
  return [{
    task: { type: 'text-generation', name: 'Language modelling (validation, best checkpoint)' }, dataset: { name, type: datasetType(name) }, source: 'training',
    metrics: [{ type: 'loss', value: valLoss, name: 'Validation loss (nats per token)' }, { type: 'perplexity', value: Math.exp(valLoss), name: 'Validation perplexity' }],
  }];
}

/** `evals` added to the facts; an earlier result of the same task on the same dataset from the same source is replaced. */
export function withEvals(facts: CardFacts, evals: readonly CardEval[]): CardFacts {
  const key = (e: CardEval) => `${e.task.type}\0${e.dataset.name}\0${e.source}`;
  const added = new Set(evals.map(key));
  return { ...facts, evals: [...facts.evals.filter((e) => !added.has(key(e))), ...evals] };
}

/**
 * Writes a model folder's card again: its gptune_card.json (or, for a folder gptune did not record,
 * what its config files say) with `evals` and `probe` added. Returns the card's path and the facts.
 */
export function rewriteModelCard(dir: string, evals: readonly CardEval[], probe: ProbeReport | null): { file: string; facts: CardFacts } {
  const recorded = readCardFacts(dir) ?? folderFacts(dir, 'gptune card');
  const facts = withEvals({ ...recorded, ...(probe !== null ? { probe } : {}) }, evals);
  return { file: writeModelCard(dir, facts), facts };
}
