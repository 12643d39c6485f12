/**
 * `gptune demo`: pretraining -> domain-specific -> task-specific fine-tuning on real data, measured.
 *
 *   base        a small GPT-2 pretrained from scratch on State of the Union addresses + Moby-Dick,
 *               with a byte-level BPE vocabulary learned from the same text (cached by its settings)
 *   task        base fine-tuned on labelled training emails (prompt = email, completion = label)
 *   task_lora   the same task training as a LoRA adapter on the frozen base (Trainer lora_* keys),
 *               at each of the preset's learning rates; validation picks one, the test scores it
 *   domain      base further pretrained on the training emails' text (no labels)
 *   combined    domain, then the same task fine-tuning
 *   scratch     the same task fine-tuning from random weights (what pretraining buys)
 *   *_few       task (from base) and scratch again with only the first few labelled emails,
 *               each trained until its validation loss stops improving (transfer with little data)
 *   task_few_*  task_few again on its emails augmented by `gptune data augment` (eda, noise, balance),
 *               for task_few's step count (augment.ts); scored, not saved
 *   subject     base fine-tuned to write an email's Subject line from its body (BLEU / ROUGE)
 *   baselines   zero-shot label scoring by base and domain, the majority class, naive Bayes
 *
 * Differences between classifiers come with McNemar's exact test on the same test emails (stats.ts).
 *
 * Emails are split once (corpora.ts, fixed seed) into train / validation / test; validation picks
 * each run's best step and early stopping, the test split is only ever scored. Every number in
 * report.json is measured in this run (or, for a cached base model, in the run that trained it,
 * which report.json says); report.md is rendered from report.json alone.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { auditSummaryLines, compileTemplate, DataRecord, loadRecords, renderRecord } from '../data';
import { setThreads } from '../device';
import { classificationReport, ClassificationEvalResult, ClassificationReport, evaluateClassification, evaluateGeneration, GenerationEvalResult } from '../eval';
import { FileContents, writeDirAtomic, writeFileAtomic } from '../io/atomic';
import { prepareOutputFolder } from '../io/output';
import { copyModelFolder, loadModel, saveModel, TOKENIZER_FILES } from '../model/checkpoint';
import { loadModelConfig, parseGPT2Config } from '../model/config';
import { contextLength } from '../model/decoder_config';
import { Decoder } from '../model/decoder';
import { loadAdapter } from '../lora/apply';
import { adapterFiles } from '../lora/files';
import { addon } from '../native';
import { BPETokenizer, loadTokenizer, Tokenizer } from '../tokenizer';
import { bpeFiles, trainBPE } from '../tokenizer/bpe_trainer';
import { END_OF_TEXT } from '../tokenizer/types';
import { Rng } from '../util/rng';
import { VERSION } from '../version';
import { DATASET_PACKAGES, datasetDir, Document, Email, EmailSplits, LABELS, readEmailSplits, readGeneralCorpus, SPLIT_FRACTIONS, SPLIT_SEED } from './corpora';
import { truncateText } from './emails';
import { auditDemoSplits } from './audit';
import { NaiveBayes } from './naive_bayes';
import { AugmentedSet, augmentationFinding, augmentationStudy, ArmTraining } from './augment';
import { DemoPreset, LoraPlan, PRESETS, TrainingPlan } from './presets';
import { comparePaired } from './stats';
import { Classifier, CLASSIFIER_COMPARISONS, CLASSIFIER_NAMES, formatP, STATS } from './names';
import type { BaseSource, ClassificationRow, DemoOptions, DemoReport, GenerationRow, GivenBase, LoraSummary, StageCost } from './types';
import { formatReport } from './report';
import { lossCurvesSvg, Panel } from '../plot/svg';
import { preferenceStudy } from './preference';
import { peakRssMB, RunRecord, trainRun } from './training';
import { NER_TRAIN_EMAILS, runTasksDemo } from './tasks';
import type { CardEval } from '../card/card';
import { classificationEval, generationEval, writeDemoCard } from './cards';
import { DemoProbe, probeDemoClassifier } from './probe';

/** A demo training run: its record, the data report and the resolved config (for the model card). */
type TrainedRun = Awaited<ReturnType<typeof trainRun>>;

export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'gptune', 'demo');
}

/** Classification template: the prompt is the email, the completion the label. */
export const CLASSIFICATION_TEMPLATE = 'Email: {text}\nSpam or ham? {label}';
/** Subject generation: the prompt ends with "Subject:", the completion is " " + the subject. */
export const SUBJECT_PROMPT_SUFFIX = '\nSubject:';

/** Stage messages on stderr (stdout is left for the final summary). */
class Log {
  constructor(private readonly enabled: boolean) {}
  private readonly started = Date.now();
  line(text: string): void {
    if (this.enabled) process.stderr.write(`[demo ${((Date.now() - this.started) / 1000).toFixed(0).padStart(4)}s] ${text}\n`);
  }
}

/**
 * Emails -> the demo's texts, each cut to fit the context: "Subject: <subject>\n<body>" for
 * classification (and as the domain text), "<body>\nSubject:" -> " <subject>" for subject lines.
 * The body starts as its first bodyChars characters and is cut back further, at word boundaries,
 * until the whole training example (BOS where the tokenizer adds one, prompt, completion, EOS) fits
 * seqLen tokens, so the data pipeline never has to drop the start of a prompt (which would drop the
 * subject). The special tokens' texts (<|endoftext|>; a Llama tokenizer's <s>, </s>) are removed
 * from the emails, so an email never holds a document boundary.
 */
class EmailTexts {
  private readonly classificationCache = new Map<Email, string>();
  private readonly subjectCache = new Map<Email, { prompt: string; completion: string }>();
  private readonly compiled = compileTemplate('classification', CLASSIFICATION_TEMPLATE);
  /** Tokens an example has besides its text: EOS, and BOS where the tokenizer adds one. */
  private readonly specialTokens: number;
  private readonly specialTexts: string[];

  constructor(private readonly preset: DemoPreset, private readonly tokenizer: Tokenizer, private readonly seqLen: number) {
    this.specialTokens = 1 + (tokenizer.addBosToken && tokenizer.bosTokenId !== null ? 1 : 0);
    const t = tokenizer.specialTokenText;
    this.specialTexts = [...new Set([t.eos_token, t.bos_token, t.unk_token, t.pad_token].filter((x): x is string => x !== null && x !== ''))];
  }

  /** The text between documents of a plain-text file: the tokenizer's EOS. */
  get documentSeparator(): string {
    return this.tokenizer.specialTokenText.eos_token;
  }

  private fit(body: string, tokensWith: (body: string) => number): string {
    let fitted = truncateText(body, this.preset.bodyChars);
    while (fitted.length > 0 && tokensWith(fitted) > this.seqLen) fitted = truncateText(fitted, Math.floor(fitted.length * 0.9));
    return fitted;
  }

  private clean(text: string): string {
    return this.specialTexts.reduce((t, special) => t.split(special).join(''), text);
  }

  classification(e: Email): string {
    let text = this.classificationCache.get(e);
    if (text === undefined) {
      const subject = this.clean(truncateText(e.subject, this.preset.subjectChars));
      const render = (body: string) => `Subject: ${subject}\n${body}`;
      const tokensWith = (body: string) => Math.max(...LABELS.map((label) => {
        const r = renderRecord({ kind: 'classification', text: render(body), label, file: '', line: 0 }, this.compiled);
        return this.tokenizer.encode(r.prompt).length + this.tokenizer.encode(r.completion).length + this.specialTokens;
      }));
      text = render(this.fit(this.clean(e.body), tokensWith));
      this.classificationCache.set(e, text);
    }
    return text;
  }

  subject(e: Email): { prompt: string; completion: string } {
    let record = this.subjectCache.get(e);
    if (record === undefined) {
      const completion = ` ${this.clean(truncateText(e.subject, this.preset.subjectChars))}`;
      const completionTokens = this.tokenizer.encode(completion).length + this.specialTokens;
      const body = this.fit(this.clean(e.body), (b) => this.tokenizer.encode(`${b}${SUBJECT_PROMPT_SUFFIX}`).length + completionTokens);
      record = { prompt: `${body}${SUBJECT_PROMPT_SUFFIX}`, completion };
      this.subjectCache.set(e, record);
    }
    return record;
  }
}

function jsonl(rows: readonly object[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

function take<T>(items: readonly T[], n: number | null): T[] {
  return n === null ? items.slice() : items.slice(0, n);
}

/** Documents in a seeded order, cut to `maxChars` characters in all (null = all). */
function pretrainingDocuments(docs: readonly Document[], maxChars: number | null, seed: number): Document[] {
  const order = new Rng(seed).shuffle(docs.slice());
  if (maxChars === null) return order;
  const out: Document[] = [];
  let left = maxChars;
  for (const d of order) {
    if (left <= 0) break;
    out.push(d.text.length <= left ? d : { name: d.name, text: d.text.slice(0, left) });
    left -= d.text.length;
  }
  return out;
}

function generationRow(r: GenerationEvalResult, seconds: number): GenerationRow {
  return { bleu: r.bleu, rouge1: r.rouge1.f, rouge2: r.rouge2.f, rougeL: r.rougeL.f, examples: r.examples, stops: { ...r.stops }, eval_s: seconds };
}

function timed<T>(fn: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const value = fn();
  return [value, Number(process.hrtime.bigint() - t0) / 1e9];
}

function newModel(preset: DemoPreset, tokenizer: Tokenizer, seed: number): Decoder {
  const config = parseGPT2Config({
    ...preset.model, vocab_size: tokenizer.vocabSize, bos_token_id: tokenizer.eosTokenId, eos_token_id: tokenizer.eosTokenId,
  }, `demo preset ${preset.name}`);
  const model = new Decoder(config, 'cpu');
  model.initRandom(seed, config.initializer_range);
  return model;
}

/** What decides the base model: change any of it and the cache misses. */
function baseCacheKey(preset: DemoPreset, seed: number, corpus: { documents: number; chars: number }): string {
  const key = {
    version: 1, vocabSize: preset.vocabSize, bpeTrainingChars: preset.bpeTrainingChars, model: preset.model, corpusChars: preset.corpusChars,
    pretrainValidationFraction: preset.pretrainValidationFraction, pretrain: preset.pretrain, seed, corpus,
  };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16);
}

/** The base model every run starts from: pretrained by the demo (`built`), or the model --base named (`source`). */
interface BaseModel {
  dir: string;
  cached: boolean;
  wallSeconds: number;
  built: PretrainedBase | null;
  source: BaseSource | null;
}

/** What the demo's own pretraining measured (now, or in the run that filled its cache). */
interface PretrainedBase {
  cacheKey: string;
  pretrain: RunRecord;
  tokenizerInfo: { vocab_size: number; merges: number; learned_from_chars: number; seconds: number };
  pretrainChars: number;
  trainedOn: string;
}

const BASE_TRAINING_COST = "the base model's own pretraining happened before this demo, elsewhere: its cost is not in this report's compute figures, which cover only the fine-tuning runs, evaluations and baselines";

/** --base: the model folder described for the report (its architecture from config.json). */
function givenBase(given: GivenBase): BaseModel {
  const cfg = loadModelConfig(given.dir);
  const source: BaseSource = {
    given: given.given, repo_id: given.repoId, revision: given.revision, commit: given.commit, dir: path.resolve(given.dir),
    model_type: cfg.modelType, layers: cfg.layers, heads: cfg.heads, kv_heads: cfg.kvHeads, width: cfg.width, context_length: contextLength(cfg),
    obtained_s: given.seconds, downloaded: given.downloaded, training_cost: BASE_TRAINING_COST,
  };
  // cached: a Hub model found complete in the HF cache (a folder is neither cached nor downloaded).
  return { dir: given.dir, cached: given.repoId !== null && !given.downloaded, wallSeconds: given.seconds, built: null, source };
}

/** The base model folder: from the cache, or learned (tokenizer + pretraining) and stored. */
async function obtainBase(opts: DemoOptions, preset: DemoPreset, docs: readonly Document[], workDir: string, log: Log): Promise<BaseModel> {
  const corpus = { documents: docs.length, chars: docs.reduce((n, d) => n + d.text.length, 0) };
  const cacheKey = baseCacheKey(preset, opts.seed, corpus);
  const cachedDir = path.join(opts.cacheDir, `base-${preset.name}-${cacheKey}`);
  if (opts.cache && fs.existsSync(path.join(cachedDir, 'pretrain.json')) && fs.existsSync(path.join(cachedDir, 'model.safetensors'))) {
    const info = JSON.parse(fs.readFileSync(path.join(cachedDir, 'pretrain.json'), 'utf8'));
    log.line(`base model: cached in ${cachedDir} (pretrained ${info.trained_on})`);
    return {
      dir: cachedDir, cached: true, wallSeconds: info.wall_s, source: null,
      built: { cacheKey, pretrain: info.pretrain, tokenizerInfo: info.tokenizer, pretrainChars: info.pretrain_chars, trainedOn: info.trained_on },
    };
  }
  const started = Date.now();
  const ordered = pretrainingDocuments(docs, preset.corpusChars, opts.seed);
  const pretrainChars = ordered.reduce((n, d) => n + d.text.length, 0);
  const bpeTexts = pretrainingDocuments(docs, preset.bpeTrainingChars, opts.seed).map((d) => d.text);
  log.line(`tokenizer: learning ${preset.vocabSize - 257} BPE merges from ${bpeTexts.reduce((n, t) => n + t.length, 0)} characters`);
  const [trained, bpeSeconds] = timed(() => trainBPE(bpeTexts, { vocabSize: preset.vocabSize }));
  const files = bpeFiles(trained);
  const tokenizer = new BPETokenizer({ vocab: trained.vocab, merges: trained.merges, name: `bpe-${trained.vocab.size} (gptune demo)` });
  const corpusFile = path.join(workDir, 'general.txt');
  fs.writeFileSync(corpusFile, ordered.map((d) => d.text).join(END_OF_TEXT));
  log.line(`base model: pretraining ${preset.model.n_layer} layers x ${preset.model.n_embd} wide, vocabulary ${tokenizer.vocabSize}, on ${pretrainChars} characters for ${preset.pretrain.steps} steps`);
  const model = newModel(preset, tokenizer, opts.seed);
  try {
    const { record } = await trainRun({
      name: 'pretrain', model, tokenizer, format: 'text', trainFile: corpusFile, validation: { fraction: preset.pretrainValidationFraction }, seqLen: preset.model.n_positions,
      plan: preset.pretrain, seed: opts.seed, threads: opts.threads, progress: opts.progress,
    });
    const tokenizerInfo = { vocab_size: tokenizer.vocabSize, merges: trained.merges.length, learned_from_chars: bpeTexts.reduce((n, t) => n + t.length, 0), seconds: bpeSeconds };
    const wallSeconds = (Date.now() - started) / 1000;
    const trainedOn = new Date().toISOString();
    const info = { pretrain: record, tokenizer: tokenizerInfo, pretrain_chars: pretrainChars, trained_on: trainedOn, wall_s: wallSeconds, cache_key: cacheKey, gptune_version: VERSION };
    const dir = opts.cache ? cachedDir : path.join(workDir, 'base');
    saveModel(model, dir, { extraFiles: { ...files, 'pretrain.json': JSON.stringify(info, null, 1) + '\n' } });
    if (opts.cache) log.line(`base model: stored in ${dir}`);
    return { dir, cached: false, wallSeconds, source: null, built: { cacheKey, pretrain: record, tokenizerInfo, pretrainChars, trainedOn } };
  } finally {
    model.free();
  }
}

function machine(threads: number): DemoReport['machine'] {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, memory_gb: os.totalmem() / 2 ** 30,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`, node: process.version, threads, simd: addon.simdLevel(),
    load_average_start: os.loadavg(), load_average_end: [],
  };
}

function charsPerToken(tokenizer: Tokenizer, texts: readonly string[]): number {
  let chars = 0, tokens = 0;
  for (const t of texts) {
    chars += t.length;
    tokens += tokenizer.encode(t).length;
  }
  return tokens > 0 ? chars / tokens : 0;
}

/** What the demo writes into --out (top level); `.work` holds the run's scratch files and is removed at the end. */
const DEMO_OUTPUT_ENTRIES = ['.work', 'data', 'models', 'report.json', 'report.md', 'loss-curves.svg'];

/**
 * Claims the demo's --out: a new or empty folder, or the demo's own previous output, which is
 * replaced (npm start runs the demo into demo-out/ again and again); a folder holding anything
 * else is refused, naming it.
 */
export function prepareDemoOutput(outDir: string): void {
  prepareOutputFolder(outDir, { label: '--out', writer: 'gptune demo', mode: 'replace', entries: DEMO_OUTPUT_ENTRIES, replaceHint: '' });
}

/** The emails each part of the demo uses: the splits cut to the preset's sizes. */
interface EmailSets {
  splits: EmailSplits;
  train: Email[];
  /** The first emails of train: the labelled data of the low-data runs. */
  trainFew: Email[];
  validation: Email[];
  test: Email[];
  /** The emails of train / validation / test with a subject and a body (subject-line generation). */
  genTrain: Email[];
  genValidation: Email[];
  genTest: Email[];
}

function chooseEmails(splits: EmailSplits, preset: DemoPreset): EmailSets {
  const train = take(splits.train, preset.trainEmails);
  const validation = take(splits.validation, preset.validationEmails);
  const test = take(splits.test, preset.testEmails);
  const withSubject = (xs: readonly Email[]) => xs.filter((e) => e.subject.trim() !== '' && e.body.trim() !== '');
  return {
    splits, train, trainFew: train.slice(0, preset.fewLabelledEmails), validation, test,
    genTrain: withSubject(train), genValidation: withSubject(validation), genTest: withSubject(test).slice(0, preset.generationTestEmails),
  };
}

function countSpam(xs: readonly Email[]): number {
  return xs.filter((e) => e.label === 'spam').length;
}

type DataFile = 'clsTrain' | 'clsTrainFew' | 'clsValidation' | 'clsTest' | 'domainTrain' | 'domainValidation' | 'genTrain' | 'genValidation' | 'genTest';

/** The email data files in dataDir: classification (JSONL), domain text, subject lines (prompt_completion JSONL). */
function writeDataFiles(dataDir: string, texts: EmailTexts, e: EmailSets): Record<DataFile, string> {
  const files = {
    clsTrain: path.join(dataDir, 'classification-train.jsonl'),
    clsTrainFew: path.join(dataDir, 'classification-train-few.jsonl'),
    clsValidation: path.join(dataDir, 'classification-validation.jsonl'),
    clsTest: path.join(dataDir, 'classification-test.jsonl'),
    domainTrain: path.join(dataDir, 'domain-train.txt'),
    domainValidation: path.join(dataDir, 'domain-validation.txt'),
    genTrain: path.join(dataDir, 'subject-train.jsonl'),
    genValidation: path.join(dataDir, 'subject-validation.jsonl'),
    genTest: path.join(dataDir, 'subject-test.jsonl'),
  };
  const clsRows = (xs: readonly Email[]) => jsonl(xs.map((m) => ({ text: texts.classification(m), label: m.label })));
  writeFileAtomic(files.clsTrain, clsRows(e.train));
  writeFileAtomic(files.clsTrainFew, clsRows(e.trainFew));
  writeFileAtomic(files.clsValidation, clsRows(e.validation));
  writeFileAtomic(files.clsTest, clsRows(e.test));
  writeFileAtomic(files.domainTrain, e.train.map((m) => texts.classification(m)).join(texts.documentSeparator));
  writeFileAtomic(files.domainValidation, e.validation.map((m) => texts.classification(m)).join(texts.documentSeparator));
  writeFileAtomic(files.genTrain, jsonl(e.genTrain.map((m) => texts.subject(m))));
  writeFileAtomic(files.genValidation, jsonl(e.genValidation.map((m) => texts.subject(m))));
  writeFileAtomic(files.genTest, jsonl(e.genTest.map((m) => texts.subject(m))));
  return files;
}

/** The report's compute table: one row per stage, in the order the stages ran. */
class Stages {
  readonly costs: StageCost[] = [];

  /** A stage that trains nothing: its wall time and the peak RSS so far. */
  add(stage: string, wallSeconds: number): void {
    this.costs.push({ stage, wall_s: wallSeconds, train_tokens: 0, tokens_per_s: 0, peak_rss_mb: peakRssMB(), cached: false });
  }

  time(stage: string, fn: () => void): void {
    const t0 = Date.now();
    fn();
    this.add(stage, (Date.now() - t0) / 1000);
  }

  /** A training stage: the run's own figures (wallSeconds may include more than the run, e.g. the tokenizer). */
  addTraining(stage: string, wallSeconds: number, run: RunRecord, cached: boolean): void {
    this.costs.push({ stage, wall_s: wallSeconds, train_tokens: run.train_tokens, tokens_per_s: run.tokens_per_s, peak_rss_mb: run.peak_rss_mb, cached });
  }
}

/** Every classifier's and subject writer's results on the test emails. */
class TestResults {
  readonly rows = {} as DemoReport['classification'];
  readonly predictions = {} as Record<Classifier, string[]>;
  readonly generation = {} as DemoReport['generation'];
  readonly subjects = {} as Record<keyof DemoReport['generation'], string[]>;
  readonly testRecords: DataRecord[];
  readonly genRecords: DataRecord[];
  /** The bias probe of the task model (lib/demo/probe.ts). */
  probe: DemoProbe | null = null;

  constructor(readonly files: Record<DataFile, string>, private readonly tokenizer: Tokenizer, private readonly maxSubjectTokens: number) {
    this.testRecords = loadRecords(files.clsTest, { format: 'classification' }).records;
    this.genRecords = loadRecords(files.genTest, { format: 'prompt_completion' }).records;
  }

  /** The test emails classified by `model` (label scoring, the demo's template). */
  score(model: Decoder): ClassificationEvalResult {
    return evaluateClassification(model, this.tokenizer, this.testRecords, LABELS, CLASSIFICATION_TEMPLATE);
  }

  classify(key: Classifier, model: Decoder): void {
    const [r, s] = timed(() => this.score(model));
    this.rows[key] = reportRow(r, s);
    this.predictions[key] = r.predictions.map((p) => p.predicted);
  }

  /** The test results of run `name` as model-index results: its classification row, its subject row. */
  cardEvals(name: RunName): CardEval[] {
    const row = this.rows[name as Classifier] ?? this.rows[`${name}_zero_shot` as Classifier];
    const subjects = this.generation[name as keyof DemoReport['generation']];
    return [...(row ? [classificationEval(row, this.files.clsTest)] : []), ...(subjects ? [generationEval(subjects, this.files.genTest)] : [])];
  }

  writeSubjects(key: keyof DemoReport['generation'], model: Decoder): void {
    const [r, s] = timed(() => evaluateGeneration(model, this.tokenizer, this.genRecords, { maxNewTokens: this.maxSubjectTokens }));
    this.generation[key] = generationRow(r, s);
    this.subjects[key] = r.outputs.map((o) => o.output.trim());
  }
}

/** What the fine-tuning runs share. */
interface FineTuning {
  opts: DemoOptions;
  preset: DemoPreset;
  log: Log;
  stages: Stages;
  base: BaseModel;
  tokenizer: Tokenizer;
  /** T of every fine-tuning run: the preset's context, or the base's when that is shorter. */
  seqLen: number;
  modelsDir: string;
  files: Record<DataFile, string>;
  results: TestResults;
  /** The audit of the classification email splits, as summary lines (for the classifiers' model cards). */
  audit: string[];
}

/**
 * The fine-tuning runs: task-specific, domain-specific, combined, from scratch; then the same
 * with few labels; then subject lines. Each model is saved to models/NAME and evaluated.
 */
async function fineTuneAll(ft: FineTuning, fewLabelled: number): Promise<{ runs: Omit<DemoReport['runs'], 'pretrain'>; lora: LoraSummary }> {
  const { opts, preset, log, stages, base, tokenizer, seqLen, modelsDir, files, results } = ft;
  const runs = {} as DemoReport['runs'];
  // From scratch: the base's architecture with fresh weights (the demo's own base: its preset, as before).
  const scratchModel = (): Decoder => {
    if (base.built !== null) return newModel(preset, tokenizer, opts.seed + 1);
    const model = new Decoder(loadModelConfig(base.dir), 'cpu');
    model.initRandom(opts.seed + 1);
    return model;
  };
  const plans: Record<RunKind, { trainFile: string; validation: string; plan: TrainingPlan; format: 'classification' | 'text' | 'prompt_completion'; template?: string }> = {
    classification: { trainFile: files.clsTrain, validation: files.clsValidation, plan: preset.finetune, format: 'classification', template: CLASSIFICATION_TEMPLATE },
    classification_few: { trainFile: files.clsTrainFew, validation: files.clsValidation, plan: preset.fewLabelled, format: 'classification', template: CLASSIFICATION_TEMPLATE },
    text: { trainFile: files.domainTrain, validation: files.domainValidation, plan: preset.domain, format: 'text' },
    prompt_completion: { trainFile: files.genTrain, validation: files.genValidation, plan: preset.generation, format: 'prompt_completion' },
  };
  /** Trains `start` in place (best validation step kept), or a LoRA adapter on it, as the stage `stage`. */
  const train = async (name: RunName, start: Decoder, kind: RunKind, title: string, stage: string, lora?: { plan: TrainingPlan; settings: LoraPlan }) => {
    log.line(`${name}: ${title}`);
    const spec = plans[kind];
    const run = await trainRun({
      name, model: start, tokenizer, format: spec.format, trainFile: spec.trainFile, validation: { file: spec.validation }, template: spec.template,
      plan: lora?.plan ?? spec.plan, lora: lora?.settings, seed: opts.seed, threads: opts.threads, progress: opts.progress, seqLen,
    });
    const { record } = run;
    stages.addTraining(stage, record.wall_s, record, false);
    log.line(`${name}: validation loss ${record.initial_val_loss.toFixed(4)} -> ${record.best_val_loss.toFixed(4)} (best at step ${record.best_step} of ${record.steps}), ${record.wall_s.toFixed(1)} s`);
    return run;
  };
  /** models/NAME's model card: the run's data, settings and losses, and its results on the test emails. */
  const writeCard = (name: RunName, dir: string, run: TrainedRun, startedFrom: { spec: string; dir: string } | null) => {
    const testFile = run.data.kind === 'prompt_completion' ? files.genTest : files.clsTest;
    const testExamples = testFile === files.genTest ? results.genRecords.length : results.testRecords.length;
    // The audit covers the classification emails (train, validation, test): it describes the classifiers' data.
    const audit = run.data.kind === 'classification' ? ft.audit : null;
    writeDemoCard({ dir, base: startedFrom, ...run, evals: results.cardEvals(name), testFile, testExamples, probe: name === 'task' ? results.probe?.report ?? null : null, audit });
  };
  // What the runs from the base record as their base: a Hub base by its repository and commit, else models/base.
  const hub = base.source?.repo_id != null && base.source.commit !== null ? `${base.source.repo_id}@${base.source.commit}` : null;
  const baseModel = { spec: hub ?? path.join(modelsDir, 'base'), dir: base.dir };
  const startOf = (name: RunName) => (name === 'scratch' || name === 'scratch_few' ? null : name === 'combined' ? { spec: path.join(modelsDir, 'domain'), dir: path.join(modelsDir, 'domain') } : baseModel);
  /** Fine-tunes `start` in place, saves it to models/NAME, then evaluates it. */
  const fineTune = async (name: RunName, start: Decoder, kind: RunKind, title: string, evaluate: (m: Decoder) => void) => {
    const run = await train(name, start, kind, title, `${name} fine-tuning`);
    runs[name] = run.record;
    saveModel(start, path.join(modelsDir, name), { tokenizerFrom: base.dir });
    stages.time(`evaluate ${name}`, () => evaluate(start));
    writeCard(name, path.join(modelsDir, name), run, startOf(name));
  };
  /**
   * The task training as a LoRA adapter on the frozen base, once per candidate learning rate. The
   * candidate with the lowest validation loss is written to models/task_lora as a PEFT adapter
   * folder, and what the test scores is that folder loaded back onto the base (the adapter API a
   * user has), not the model still in memory.
   */
  const loraFineTune = async (): Promise<LoraSummary> => {
    const settings = preset.lora, dir = path.join(modelsDir, 'task_lora');
    // The base the adapter records (PEFT's base_model_name_or_path).
    const baseDir = baseModel.spec;
    const candidates: RunRecord[] = [];
    let chosen: { run: TrainedRun; record: RunRecord; files: Record<string, FileContents>; modules: number; scaling: number } | null = null;
    for (const learningRate of settings.learningRates) {
      const model = loadModel(base.dir);
      try {
        const title = `LoRA (r ${settings.r}, alpha ${settings.alpha}, ${settings.targets}) on the frozen base, the task plan at peak learning rate ${learningRate}`;
        const run = await train('task_lora', model, 'classification', title, `task_lora fine-tuning, learning rate ${learningRate}`, { plan: { ...preset.finetune, learningRate }, settings });
        const { record } = run;
        candidates.push(record);
        const adapter = model.trainingAdapter!;
        if (chosen === null || record.best_val_loss < chosen.record.best_val_loss) {
          chosen = { run, record, files: adapterFiles(adapter, baseDir, dir), modules: adapter.modules.length, scaling: adapter.scaling };
        }
      } finally {
        model.free();
      }
    }
    if (chosen === null) throw new Error(`demo preset ${preset.name}: lora.learningRates is empty`);
    const tokenizerFiles = TOKENIZER_FILES.filter((n) => fs.existsSync(path.join(base.dir, n))).map((n) => [n, fs.readFileSync(path.join(base.dir, n))]);
    writeDirAtomic(dir, { ...Object.fromEntries(tokenizerFiles), ...chosen.files });
    runs.task_lora = chosen.record;
    log.line(`task_lora: peak learning rate ${chosen.record.learning_rate} has the lowest validation loss; scoring that adapter`);
    await withModel(loadModel(base.dir), (m) => stages.time('evaluate task_lora', () => {
      loadAdapter(m, dir);
      results.classify('task_lora', m);
    }));
    writeCard('task_lora', dir, chosen.run, baseModel);
    const full = countParameters(base.dir), trainable = chosen.record.trainable_parameters!;
    return {
      scaling: chosen.scaling, modules: chosen.modules, trainable_parameters: trainable, full_trainable_parameters: full, trainable_percent: (100 * trainable) / full,
      candidates: candidates.map((c) => ({ learning_rate: c.learning_rate, best_val_loss: c.best_val_loss, best_step: c.best_step, steps: c.steps, wall_s: c.wall_s })),
      chosen_learning_rate: chosen.record.learning_rate,
    };
  };

  const few = `${fewLabelled} labelled emails`;
  await withModel(loadModel(base.dir), (m) => fineTune('task', m, 'classification', 'task-specific fine-tuning from the base model (prompt = email, completion = label)', (x) => {
    results.classify('task', x);
    results.probe = probeDemoClassifier(x, tokenizer, results.testRecords, LABELS, CLASSIFICATION_TEMPLATE);
  }));
  const lora = await loraFineTune();
  await withModel(loadModel(base.dir), (m) => fineTune('domain', m, 'text', 'domain-specific fine-tuning: continued pretraining on the training emails, no labels', (x) => {
    results.classify('domain_zero_shot', x);
    results.writeSubjects('domain', x);
  }));
  await withModel(loadModel(path.join(modelsDir, 'domain')), (m) => fineTune('combined', m, 'classification', 'combined: the domain model, then the same task fine-tuning', (x) => results.classify('combined', x)));
  await withModel(scratchModel(), (m) => fineTune('scratch', m, 'classification', 'the same task fine-tuning from random weights (no pretraining)', (x) => results.classify('scratch', x)));
  await withModel(loadModel(base.dir), (m) => fineTune('task_few', m, 'classification_few', `low data: task fine-tuning from the base model on only ${few}`, (x) => results.classify('task_few', x)));
  await withModel(scratchModel(), (m) => fineTune('scratch_few', m, 'classification_few', `low data: task fine-tuning from random weights on only ${few}`, (x) => results.classify('scratch_few', x)));
  await withModel(loadModel(base.dir), (m) => fineTune('subject', m, 'prompt_completion', 'subject-line generation fine-tuning from the base model (prompt = body, completion = subject)', (x) => results.writeSubjects('subject', x)));
  return { runs, lora };
}

/**
 * The augmentation study's GPT run on one augmented set (augment.ts): the task_few recipe from the
 * base for exactly `steps` optimizer steps (early stopping off, so the count equals the plain run's;
 * the best validation step kept as in every run), its set written to data/ first, the test emails
 * scored. The model is not saved: the study reports its scores, not a model to use.
 */
async function fineTuneAugmented(
  ft: Pick<FineTuning, 'opts' | 'preset' | 'log' | 'stages' | 'base' | 'tokenizer' | 'seqLen' | 'files' | 'results'> & { dataDir: string },
  set: AugmentedSet, steps: number,
): Promise<ArmTraining> {
  const { opts, preset, log, stages, base, tokenizer, seqLen, files, results } = ft;
  const name = `task_few_${set.name}`;
  const trainFile = path.join(ft.dataDir, `classification-train-few-${set.name}.jsonl`);
  writeFileAtomic(trainFile, jsonl(set.objects));
  return withModel(loadModel(base.dir), async (m) => {
    log.line(`${name}: the task_few run on its ${set.objects.length}-example augmented set (${set.how}), ${steps} steps`);
    const { record } = await trainRun({
      name, model: m, tokenizer, format: 'classification', trainFile, validation: { file: files.clsValidation }, template: CLASSIFICATION_TEMPLATE,
      plan: { ...preset.fewLabelled, steps, patience: 0 }, seed: opts.seed, threads: opts.threads, progress: opts.progress, seqLen,
    });
    stages.addTraining(`${name} fine-tuning (augmentation study)`, record.wall_s, record, false);
    const [scored, seconds] = timed(() => results.score(m));
    stages.add(`evaluate ${name}`, seconds);
    return { run: record, predictions: scored.predictions.map((p) => p.predicted), eval_s: seconds, train_file: path.relative(path.dirname(ft.dataDir), trainFile) };
  });
}

/** The B - A differences the report states (see DemoReport.deltas). */
function comparisons(truth: readonly string[], results: TestResults): Record<string, number> {
  const { rows, predictions, generation } = results;
  const deltas: Record<string, number> = {};
  for (const [b, a] of CLASSIFIER_COMPARISONS) {
    const paired = comparePaired(truth, predictions[a], predictions[b]);
    deltas[`${b}_vs_${a}.accuracy`] = rows[b].accuracy - rows[a].accuracy;
    deltas[`${b}_vs_${a}.f1`] = rows[b].f1 - rows[a].f1;
    deltas[`${b}_vs_${a}.only_b_right`] = paired.onlyB;
    deltas[`${b}_vs_${a}.only_a_right`] = paired.onlyA;
    deltas[`${b}_vs_${a}.mcnemar_p`] = paired.p;
  }
  deltas['subject_vs_base.rougeL'] = generation.subject.rougeL - generation.base.rougeL;
  deltas['subject_vs_base.bleu'] = generation.subject.bleu - generation.base.bleu;
  deltas['domain_vs_base.rougeL'] = generation.domain.rougeL - generation.base.rougeL;
  return deltas;
}

/** The first test emails side by side: subjects of each subject writer, labels of a few classifiers. */
function reportSamples(preset: DemoPreset, e: EmailSets, texts: EmailTexts, results: TestResults): DemoReport['samples'] {
  const { subjects, predictions } = results;
  const nSamples = Math.min(preset.samples, e.genTest.length);
  const generation = e.genTest.slice(0, nSamples).map((m, i) => ({
    body: truncateText(m.body, 160), reference: truncateText(m.subject, preset.subjectChars),
    base: subjects.base[i], domain: subjects.domain[i], finetuned: subjects.subject[i],
  }));
  const classification = e.test.slice(0, nSamples).map((m, i) => ({
    email: truncateText(texts.classification(m).replace(/\n/g, ' '), 140), label: m.label,
    base: predictions.base_zero_shot[i], task: predictions.task[i], lora: predictions.task_lora[i], scratch: predictions.scratch[i], naive_bayes: predictions.naive_bayes[i],
  }));
  return { generation, classification };
}

/** What the emails were: how many were read, dropped, used, and how many of them are spam. */
function emailFigures(e: EmailSets, majorityLabel: string): DemoReport['data']['emails'] {
  const { splits } = e;
  return {
    read: splits.read, duplicates: splits.duplicates, conflicting: splits.conflicting, majority_label: majorityLabel,
    train: { available: splits.train.length, used: e.train.length, spam: countSpam(e.train) },
    train_few: { used: e.trainFew.length, spam: countSpam(e.trainFew) },
    validation: { available: splits.validation.length, used: e.validation.length, spam: countSpam(e.validation) },
    test: { available: splits.test.length, used: e.test.length, spam: countSpam(e.test) },
    generation_train: e.genTrain.length, generation_validation: e.genValidation.length, generation_test: e.genTest.length,
  };
}

/** report.json, loss-curves.svg and report.md into outDir. */
function writeReportFiles(outDir: string, report: DemoReport): void {
  writeFileAtomic(path.join(outDir, 'report.json'), JSON.stringify(report, null, 1) + '\n');
  writeFileAtomic(path.join(outDir, 'loss-curves.svg'), lossCurvesSvg(curvePanels(report)));
  writeFileAtomic(path.join(outDir, 'report.md'), formatReport(report));
}

/**
 * The whole demo: read the corpora, obtain the base model (cache or pretraining), write the email
 * data files, evaluate the base zero-shot, fine-tune every way, add the bag-of-words and majority
 * baselines, compare, and write the report into opts.outDir.
 */
export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const started = Date.now();
  const preset = PRESETS[opts.preset];
  const log = new Log(opts.progress);
  if (opts.threads !== null) setThreads(opts.threads);
  const host = machine(addon.numThreads());
  const outDir = path.resolve(opts.outDir);
  const workDir = path.join(outDir, '.work');
  const dataDir = path.join(outDir, 'data');
  const modelsDir = path.join(outDir, 'models');
  // A missing data package, or a --base folder that is no model, is named before --out is created.
  for (const pkg of Object.values(DATASET_PACKAGES)) datasetDir(pkg);
  const given = opts.base === null ? null : givenBase(opts.base);
  if (given !== null) loadTokenizer(given.dir);
  prepareDemoOutput(outDir);
  fs.mkdirSync(workDir, { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true });
  const stages = new Stages();

  try {
    const readStart = Date.now();
    log.line(`reading the corpora (${opts.preset} demo; out ${outDir})`);
    const docs = readGeneralCorpus();
    const emails = chooseEmails(readEmailSplits(), preset);
    const { splits, train, trainFew, validation, test, genTest } = emails;
    log.line(`emails: ${splits.read} read, ${splits.duplicates} duplicates dropped; using train ${train.length} (low-data runs: ${trainFew.length}), validation ${validation.length}, test ${test.length} (subject task: test ${genTest.length})`);
    stages.add('read the corpora', (Date.now() - readStart) / 1000);

    const base = given ?? await obtainBase(opts, preset, docs, workDir, log);
    if (base.built !== null) stages.addTraining('tokenizer + pretraining (base)', base.wallSeconds, base.built.pretrain, base.cached);
    else stages.add(`obtain the base (${base.source?.repo_id == null ? 'a local folder' : base.cached ? 'from the Hugging Face cache' : 'downloaded from the Hub'})`, base.wallSeconds);
    if (base.source !== null) log.line(`base model: ${base.source.given} (${base.source.model_type}, ${base.source.layers} layers x ${base.source.width} wide), from ${base.dir}`);
    const tokenizer = loadTokenizer(base.dir);
    const baseConfig = loadModelConfig(base.dir);
    const seqLen = Math.min(preset.model.n_positions, contextLength(baseConfig));
    copyModelFolder(base.dir, path.join(modelsDir, 'base'));

    // The email texts are cut to fit the context the runs train with.
    const preparedAt = Date.now();
    const texts = new EmailTexts(preset, tokenizer, seqLen);
    const files = writeDataFiles(dataDir, texts, emails);
    stages.add('fit email texts to the context, write data files', (Date.now() - preparedAt) / 1000);
    const auditStart = Date.now();
    const dataAudit = auditDemoSplits(outDir, { train: files.clsTrain, validation: files.clsValidation, test: files.clsTest }, tokenizer, seqLen);
    stages.add('audit the email splits (duplicates, leakage, PII)', (Date.now() - auditStart) / 1000);

    const results = new TestResults(files, tokenizer, preset.maxSubjectTokens);
    await withModel(loadModel(base.dir), (m) => stages.time('evaluate base (zero-shot)', () => {
      log.line(`base model, zero-shot: classifying ${results.testRecords.length} test emails and writing ${results.genRecords.length} subjects`);
      results.classify('base_zero_shot', m);
      results.writeSubjects('base', m);
    }));
    const tuned = await fineTuneAll({ opts, preset, log, stages, base, tokenizer, seqLen, modelsDir, files, results, audit: auditSummaryLines(dataAudit) }, trainFew.length);
    const runs: DemoReport['runs'] = base.built === null ? tuned.runs : { pretrain: base.built.pretrain, ...tuned.runs };
    const tasks = await runTasksDemo({
      baseDir: base.dir, tokenizer, emails: { train: train.slice(0, NER_TRAIN_EMAILS), validation, test: test.slice(0, preset.generationTestEmails) }, dataDir,
      plan: preset.generation, seqLen, seed: opts.seed, threads: opts.threads, progress: opts.progress, samples: preset.samples, log: (line) => log.line(line),
    });
    stages.addTraining('ner fine-tuning and scoring (base and fine-tuned)', tasks.ner.run.wall_s + tasks.ner.base.seconds + tasks.ner.fine_tuned.seconds, tasks.ner.run, false);
    const preference = await withModel(loadModel(path.join(modelsDir, 'subject')), (m) => preferenceStudy({
      model: m, tokenizer, files, dataDir, plan: preset.preference, seqLen, seed: opts.seed, threads: opts.threads, progress: opts.progress, log: (l) => log.line(l),
    }));
    stages.add('preference tuning (DPO) of the subject model, test pairs before and after', preference.wall_s);

    const truth = test.map((e) => e.label);
    const { rows, predictions } = results;
    stages.time('naive Bayes (train + test)', () => {
      const t0 = process.hrtime.bigint();
      const bayes = new NaiveBayes(train.map((e) => texts.classification(e)), train.map((e) => e.label));
      predictions.naive_bayes = test.map((e) => bayes.predict(texts.classification(e)));
      rows.naive_bayes = reportRow(classificationReport(truth, predictions.naive_bayes, LABELS), Number(process.hrtime.bigint() - t0) / 1e9);
    });
    const augmentStart = Date.now();
    const augmentation = await augmentationStudy({
      train: trainFew.map((e) => ({ text: texts.classification(e), label: e.label })),
      test: test.map((e) => ({ text: texts.classification(e), label: e.label })),
      labels: LABELS, seed: opts.seed,
      plain: { run: 'task_few', predictions: predictions.task_few, steps: runs.task_few.steps, wall_s: runs.task_few.wall_s },
      fineTune: (set, steps) => fineTuneAugmented({ opts, preset, log, stages, base, tokenizer, seqLen, dataDir, files, results }, set, steps),
    });
    log.line(`augmentation study: ${augmentation.arms.length} augmented task_few runs of ${augmentation.plain.steps} steps each, ${((Date.now() - augmentStart) / 1000).toFixed(1)} s`);
    const majorityLabel = countSpam(train) * 2 > train.length ? 'spam' : 'ham';
    predictions.majority = truth.map(() => majorityLabel);
    rows.majority = reportRow(classificationReport(truth, predictions.majority, LABELS), 0);

    const report: DemoReport = {
      gptune_version: VERSION,
      command: opts.command,
      preset: opts.preset,
      seed: opts.seed,
      date: new Date().toISOString(),
      machine: { ...host, load_average_end: os.loadavg() },
      // With --base, settings.model is the shape the runs had: the base's, at the sequence length used.
      settings: {
        ...preset, ...(base.built === null ? { model: { n_layer: baseConfig.layers, n_head: baseConfig.heads, n_embd: baseConfig.width, n_positions: seqLen } } : {}),
        split_seed: SPLIT_SEED, split_fractions: SPLIT_FRACTIONS, classification_template: CLASSIFICATION_TEMPLATE,
      },
      data: {
        general: { documents: docs.length, chars: docs.reduce((n, d) => n + d.text.length, 0), ...(base.built === null ? {} : { pretrain_chars: base.built.pretrainChars }) },
        emails: emailFigures(emails, majorityLabel),
      },
      data_audit: dataAudit,
      tokenizer: {
        ...(base.built === null ? { vocab_size: tokenizer.vocabSize, name: tokenizer.name } : base.built.tokenizerInfo),
        general_chars_per_token: charsPerToken(tokenizer, docs.slice(0, 20).map((d) => d.text.slice(0, 20000))),
        email_chars_per_token: charsPerToken(tokenizer, train.slice(0, 200).map((e) => texts.classification(e))),
      },
      base: {
        cached: base.cached, ...(base.built === null ? {} : { cache_key: base.built.cacheKey, trained_on: base.built.trainedOn }), parameters: countParameters(base.dir),
        config: JSON.parse(fs.readFileSync(path.join(base.dir, 'config.json'), 'utf8')) as Record<string, unknown>,
        ...(base.source === null ? {} : { source: base.source }),
      },
      runs,
      classification: results.rows,
      generation: results.generation,
      lora: tuned.lora,
      tasks,
      ...(results.probe ? { probe: results.probe } : {}),
      preference,
      deltas: comparisons(truth, results),
      augmentation,
      samples: reportSamples(preset, emails, texts, results),
      findings: [],
      stats: STATS,
      compute: stages.costs,
      total_wall_s: 0,
    };
    report.total_wall_s = (Date.now() - started) / 1000;
    report.findings = findings(report);
    writeReportFiles(outDir, report);
    log.line(`done in ${report.total_wall_s.toFixed(1)} s: ${path.join(outDir, 'report.md')}`);
    return report;
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

async function withModel<T>(model: Decoder, fn: (m: Decoder) => Promise<T> | T): Promise<T> {
  try {
    return await fn(model);
  } finally {
    model.free();
  }
}

function reportRow(r: ClassificationReport, seconds: number): ClassificationRow {
  return {
    accuracy: r.accuracy, f1: r.f1, precision: r.precision, recall: r.recall, spam_recall: r.per_class.spam?.recall ?? 0,
    spam_precision: r.per_class.spam?.precision ?? 0, examples: r.examples, confusion: r.confusion_matrix.matrix, eval_s: seconds,
  };
}

type RunName = Exclude<keyof DemoReport['runs'], 'pretrain'>;
type RunKind = 'classification' | 'classification_few' | 'text' | 'prompt_completion';

function countParameters(dir: string): number {
  const model = loadModel(dir);
  try {
    return model.numParameters;
  } finally {
    model.free();
  }
}

function curvePanels(r: DemoReport): Panel[] {
  const val = (run: RunRecord, name: string) => ({ name, points: run.val_curve.map((p) => [p.step, p.loss] as const) });
  const trainLoss = (run: RunRecord, name: string) => ({ name, points: run.train_curve.map((p) => [p.step, p.loss] as const), dashed: true });
  const pretrain = r.runs.pretrain;
  return [
    ...(pretrain === undefined ? [] : [{ title: 'Pretraining (SOTU + Moby-Dick)', xLabel: 'step', yLabel: 'loss (nats/token)', series: [val(pretrain, 'validation'), trainLoss(pretrain, 'training')] }]),
    { title: 'Domain: continued pretraining on emails', xLabel: 'step', yLabel: 'validation loss', series: [val(r.runs.domain, 'domain (from base)')] },
    {
      title: `Spam/ham, ${r.data.emails.train.used} labelled emails: validation loss`, xLabel: 'step', yLabel: 'loss on label tokens',
      series: [val(r.runs.task, 'task (from base)'), val(r.runs.task_lora, 'LoRA (frozen base)'), val(r.runs.combined, 'combined (from domain)'), val(r.runs.scratch, 'scratch (random init)')],
    },
    {
      title: `Spam/ham, ${r.data.emails.train_few.used} labelled emails: validation loss`, xLabel: 'step', yLabel: 'loss on label tokens',
      series: [val(r.runs.task_few, 'task (from base)'), val(r.runs.scratch_few, 'scratch (random init)')],
    },
    { title: 'Subject generation: validation loss', xLabel: 'step', yLabel: 'validation loss', series: [val(r.runs.subject, 'subject (from base)')] },
  ];
}

const f4 = (x: number) => x.toFixed(4);
const signed = (x: number) => (x > 0 ? '+' : '') + x.toFixed(4);

/** "B vs A: accuracy .. vs .. (+..), macro-F1 .. vs .. (+..); McNemar p = .. on the emails only one gets right (.. vs ..): verdict." */
function comparison(r: DemoReport, b: Classifier, a: Classifier): string {
  const c = r.classification, d = r.deltas, key = `${b}_vs_${a}`;
  const p = d[`${key}.mcnemar_p`], accuracyDelta = d[`${key}.accuracy`];
  const verdict = p < STATS.alpha
    ? (accuracyDelta > 0 ? `${CLASSIFIER_NAMES[b]} is better (significant at ${STATS.alpha})` : `${CLASSIFIER_NAMES[b]} is WORSE (significant at ${STATS.alpha})`)
    : `no significant difference at ${STATS.alpha}`;
  return `accuracy ${f4(c[b].accuracy)} vs ${f4(c[a].accuracy)} (${signed(accuracyDelta)}), macro-F1 ${f4(c[b].f1)} vs ${f4(c[a].f1)} (${signed(d[`${key}.f1`])}); `
    + `test emails right by ${CLASSIFIER_NAMES[b]} only: ${d[`${key}.only_b_right`]}, by ${CLASSIFIER_NAMES[a]} only: ${d[`${key}.only_a_right`]} (McNemar p ${formatP(p)}): ${verdict}.`;
}

/** Plain statements of what the numbers say, including where fine-tuning did not help. */
export function findings(r: DemoReport): string[] {
  const c = r.classification, g = r.generation, d = r.deltas, e = r.data.emails;
  const out: string[] = [];
  out.push(`**Fine-tuned vs pretrained.** Task-specific fine-tuning vs the base model's zero-shot label scoring: ${comparison(r, 'task', 'base_zero_shot')}`);
  out.push(`**LoRA vs full fine-tuning.** ${loraFinding(r)}`);
  out.push(`**Domain-specific only.** Continued pretraining on the training emails (no labels), zero-shot vs the base: ${comparison(r, 'domain_zero_shot', 'base_zero_shot')}`);
  out.push(`**Combined vs task-specific.** Domain then task vs task alone: ${comparison(r, 'combined', 'task')}`);
  out.push(`**What pretraining buys, ${e.train.used} labelled emails.** Task fine-tuning from the base vs from random weights: ${comparison(r, 'task', 'scratch')}`);
  out.push(`**What pretraining buys, ${e.train_few.used} labelled emails.** The same from the base vs from random weights, each trained until its validation loss stopped improving: ${comparison(r, 'task_few', 'scratch_few')}`);
  out.push(`**More labels.** ${e.train.used} vs ${e.train_few.used} labelled emails, both from the base: ${comparison(r, 'task', 'task_few')}`);
  out.push(`**Bag of words.** Naive Bayes on word counts (${e.train.used} emails, trained in ${c.naive_bayes.eval_s.toFixed(2)} s with its test predictions) vs the combined GPT: ${comparison(r, 'naive_bayes', 'combined')}`);
  const augmented = augmentationFinding(r.augmentation, STATS.alpha);
  if (augmented !== null) out.push(augmented);
  out.push(`**Floor.** Always answering "${e.majority_label}" scores accuracy ${f4(c.majority.accuracy)} and macro-F1 ${f4(c.majority.f1)}.`);
  out.push(`**Subject lines.** Fine-tuning ${d['subject_vs_base.rougeL'] > 0 ? 'improved' : 'did NOT improve'} ROUGE-L over the base model (${f4(g.subject.rougeL)} vs ${f4(g.base.rougeL)}, ${signed(d['subject_vs_base.rougeL'])}) and ${d['subject_vs_base.bleu'] > 0 ? 'improved' : 'did NOT improve'} BLEU (${g.subject.bleu.toFixed(2)} vs ${g.base.bleu.toFixed(2)}) on ${g.subject.examples} test emails; read the samples below before trusting either number.`);
  for (const name of ['task', 'task_lora', 'combined', 'scratch', 'task_few', 'scratch_few', 'subject', 'domain'] as const) {
    const run = r.runs[name];
    const last = run.val_curve[run.val_curve.length - 1];
    if (run.best_step < last.step && last.loss > run.best_val_loss) {
      out.push(`**Overfitting watch (${name}).** Validation loss was lowest at step ${run.best_step} (${f4(run.best_val_loss)}) and ended at ${f4(last.loss)} at step ${last.step}${run.stop_reason === 'early_stopping' ? ' (early stopping)' : ''}; the best step's weights were kept.`);
    }
  }
  return out;
}

/** LoRA against full fine-tuning: what each trains, the learning rate validation chose, test and cost. */
function loraFinding(r: DemoReport): string {
  const l = r.lora, s = r.settings.lora, task = r.runs.task, lora = r.runs.task_lora;
  return `An adapter with r = ${s.r}, alpha ${s.alpha}, dropout ${s.dropout} on ${s.targets} (${l.modules} modules; ${l.trainable_parameters} trainable parameters, ${l.trainable_percent.toFixed(2)}% of full fine-tuning's ${l.full_trainable_parameters}) `
    + `trained on the frozen base with the task plan at peak learning rate ${l.chosen_learning_rate} (lowest validation loss of ${l.candidates.map((c) => c.learning_rate).join(', ')}; full fine-tuning: ${task.learning_rate}), vs full fine-tuning: ${comparison(r, 'task_lora', 'task')} `
    + `Best validation loss ${f4(lora.best_val_loss)} vs ${f4(task.best_val_loss)}; wall time ${lora.wall_s.toFixed(1)} s vs ${task.wall_s.toFixed(1)} s per run (${lora.tokens_per_s.toFixed(0)} vs ${task.tokens_per_s.toFixed(0)} training tokens/s).`;
}
