/**
 * buildDatasets: data files -> a training BatchSource, fixed validation batches and a report of
 * everything that happened to the data on the way (skipped lines, truncation, padding).
 *
 * Plain text (a .txt file or a folder of them) is streamed into compact token storage and cut into
 * lm.ts's windows of T+1 at stride T (items = windows); `packing` does not apply. A validation
 * fraction holds out the last fraction of the token stream.
 *
 * Examples (prompt_completion, chat, classification) are rendered with the template, tokenised with
 * their loss mask, and cut to T tokens where longer (counted). With packing they are packed once
 * into rows (in a seeded shuffled order when shuffle is on, so rows mix the file) and the items of
 * the BatchSource are those rows, reshuffled each epoch; without packing each example is a row. A
 * validation fraction holds out a seeded random subset of the examples (both sides keep file
 * order). Validation batches are built once, in order, B rows each (the last may have fewer).
 */
import * as fs from 'fs';
import type { Tokenizer } from '../tokenizer';
import { Rng } from '../util/rng';
import { ExampleStore, layoutRows, scoredTargets, tokenizeRecord, truncateExample } from './examples';
import { DataKind, DataRecord, detectKind, loadRecords, RecordWarning, SkippedLine, sortedLabels, textFilesOf } from './records';
import { RowSource, rowValidationBatches, TextWindowSource, textValidationBatches } from './sources';
import { chatTemplateFor, compileTemplate, CompiledTemplate, MODEL_CHAT_TEMPLATE, renderRecord, TemplateVariables } from './templates';
import { TokenRange, TokenSequence, TokenStore, tokenizeTextFiles } from './tokens';
import type { Batch, BatchSource } from './types';

export interface BuildOptions {
  /** Training data: a file or a folder of .txt files. */
  train: string;
  /** A separate validation file (same kind as train). Not together with validationFraction. */
  validation?: string;
  /** Hold out this fraction (0 < f < 1) of the training data for validation. */
  validationFraction?: number;
  tokenizer: Tokenizer;
  /** T: tokens per row. */
  seqLen: number;
  /** B: rows per batch. */
  batchSize: number;
  /** Pack several examples into a row (ignored for plain text, which is cut into windows). */
  packing: boolean;
  /** Train on prompt tokens too (not only completions / assistant turns). */
  trainOnPrompt: boolean;
  shuffle: boolean;
  seed: number;
  format?: DataKind;
  template?: string;
  /** Translation: the language names the template writes ({source_lang}, {target_lang}). */
  templateVariables?: TemplateVariables;
  skipInvalid?: boolean;
}

/** What one split became. */
export interface SplitReport {
  /** Examples (for plain text: documents). */
  examples: number;
  /** Rows of T (packed/padded examples, or text windows). */
  rows: number;
  /** Tokens kept (after truncation; with each example's EOS). */
  tokens: number;
  /** Targets with a loss (not -100) over one pass. */
  trainedTokens: number;
  /** Examples longer than T, cut to T (see truncateExample), and the tokens cut off. */
  truncatedExamples: number;
  truncatedTokens: number;
  /** Pad tokens in the rows; fill = tokens / (rows * T). */
  paddingTokens: number;
  fill: number;
}

export interface DataReport {
  /** The data's kind; 'preference' for the pairs of DPO/ORPO (lib/data/preference.ts). */
  kind: DataKind | 'preference';
  train: string;
  validation: string | null;
  validationFraction: number | null;
  seqLen: number;
  packing: boolean;
  trainOnPrompt: boolean;
  /** The template in use (null for plain text). */
  template: string | null;
  /** Lines skipped with skipInvalid, from both files. */
  skipped: SkippedLine[];
  /** Valid lines with a warning (QA answers not in their context), from both files. */
  warnings: RecordWarning[];
  blankLines: number;
  trainSplit: SplitReport;
  validationSplit: SplitReport | null;
  /** Training examples identical (prompt and completion) to a validation example. */
  validationOverlap: number;
  /** Classification: examples per label in the training split. */
  labelCounts?: Record<string, number>;
  /** Tokeniser time and throughput over both files. */
  tokenizeSeconds: number;
  tokensPerSecond: number;
}

export interface Datasets {
  train: BatchSource;
  validation: Batch[];
  kind: DataKind;
  /** Classification: every label of the training and validation data, sorted (numeric-aware). */
  labels?: string[];
  report: DataReport;
}

/** Seeds for the split and the packing order, apart from the sampler's Rng(seed) (lm.ts's order). */
export function derivedSeed(seed: number, purpose: 'split' | 'packing'): number {
  return ((Math.floor(seed) >>> 0) ^ (purpose === 'split' ? 0x5bd1e995 : 0x27d4eb2f)) >>> 0;
}

export function emptySplit(): SplitReport {
  return { examples: 0, rows: 0, tokens: 0, trainedTokens: 0, truncatedExamples: 0, truncatedTokens: 0, paddingTokens: 0, fill: 0 };
}

function checkOptions(o: BuildOptions): void {
  const whole = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`buildDatasets: ${name} must be a whole number >= ${min} but is ${v}`);
  };
  whole('seqLen', o.seqLen, 1);
  whole('batchSize', o.batchSize, 1);
  if (o.validation !== undefined && o.validationFraction !== undefined) {
    throw new Error('buildDatasets: give a validation file or a validation fraction, not both');
  }
  if (o.validationFraction !== undefined && !(o.validationFraction > 0 && o.validationFraction < 1)) {
    throw new RangeError(`buildDatasets: validationFraction must be in (0, 1) but is ${o.validationFraction}`);
  }
  if (!fs.existsSync(o.train)) throw new Error(`${o.train}: file not found`);
  if (o.validation !== undefined && !fs.existsSync(o.validation)) throw new Error(`${o.validation}: file not found`);
}

export function buildDatasets(o: BuildOptions): Datasets {
  checkOptions(o);
  const kind = o.format ?? detectKind(o.train);
  if (o.validation !== undefined) {
    const validationKind = o.format ?? detectKind(o.validation);
    if (validationKind !== kind) throw new Error(`${o.validation}: the validation file holds ${validationKind} data but the training file ${o.train} holds ${kind}`);
  }
  return kind === 'text' ? buildTextDatasets(o) : buildExampleDatasets(o, kind);
}

function baseReport(o: BuildOptions, kind: DataKind, template: string | null): DataReport {
  return {
    kind, train: o.train, validation: o.validation ?? null, validationFraction: o.validationFraction ?? null,
    seqLen: o.seqLen, packing: kind === 'text' ? true : o.packing, trainOnPrompt: kind === 'text' ? true : o.trainOnPrompt, template,
    skipped: [], warnings: [], blankLines: 0, trainSplit: emptySplit(), validationSplit: null, validationOverlap: 0,
    tokenizeSeconds: 0, tokensPerSecond: 0,
  };
}

/** Plain text, streamed: the training windows of lm.ts; a fraction holds out the tail of the stream. */
function buildTextDatasets(o: BuildOptions): Datasets {
  if (o.template !== undefined) compileTemplate('text', o.template); // throws: no template for text
  const { tokenizer, seqLen: T, batchSize: B } = o;
  const filesOf = (p: string) => (fs.statSync(p).isDirectory() ? textFilesOf(p) : [p]);
  const report = baseReport(o, 'text', null);
  const trainTokens = new TokenStore(tokenizer.vocabSize);
  const trainStats = tokenizeTextFiles(filesOf(o.train), tokenizer, trainTokens);
  let encodeSeconds = trainStats.encodeSeconds, encodedTokens = trainStats.tokens;
  let train: TokenSequence = trainTokens;
  let validation: TokenSequence | null = null;
  let validationDocuments = 0;
  if (o.validation !== undefined) {
    const validationTokens = new TokenStore(tokenizer.vocabSize);
    const stats = tokenizeTextFiles(filesOf(o.validation), tokenizer, validationTokens);
    validation = validationTokens;
    encodeSeconds += stats.encodeSeconds;
    encodedTokens += stats.tokens;
    validationDocuments = stats.documents;
  } else if (o.validationFraction !== undefined) {
    const held = Math.round(trainTokens.length * o.validationFraction);
    const cut = trainTokens.length - held;
    if (held < 2 || cut < T + 1) {
      throw new RangeError(`${o.train}: ${trainTokens.length} tokens are too few to hold out ${o.validationFraction} for validation and keep one training window of ${T + 1}`);
    }
    train = new TokenRange(trainTokens, 0, cut);
    validation = new TokenRange(trainTokens, cut, trainTokens.length);
  }
  const source = new TextWindowSource(train, B, T, o.shuffle, o.seed);
  report.trainSplit = {
    ...emptySplit(), examples: trainStats.documents, rows: source.itemsPerEpoch, tokens: train.length,
    trainedTokens: source.itemsPerEpoch * T, fill: 1,
  };
  let validationBatches: Batch[] = [];
  if (validation) {
    validationBatches = textValidationBatches(validation, B, T, tokenizer.eosTokenId);
    const rows = validationBatches.reduce((s, b) => s + b.B, 0);
    const scored = validationBatches.reduce((s, b) => s + b.scoredTokens, 0);
    report.validationSplit = {
      ...emptySplit(), examples: validationDocuments, rows, tokens: validation.length, trainedTokens: scored,
      paddingTokens: rows * T - scored, fill: rows > 0 ? scored / (rows * T) : 0,
    };
  }
  report.tokenizeSeconds = encodeSeconds;
  report.tokensPerSecond = encodeSeconds > 0 ? encodedTokens / encodeSeconds : 0;
  return { train: source, validation: validationBatches, kind: 'text', report };
}

/** Which of n items a validation fraction holds out: a seeded random subset, at least one item on each side. */
export function heldOutMask(n: number, fraction: number, seed: number, what: string): Uint8Array {
  if (n < 2) throw new RangeError(`${what} are too few to hold out a validation fraction`);
  const held = Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
  const picked = new Rng(derivedSeed(seed, 'split')).shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, held);
  const mask = new Uint8Array(n);
  for (const i of picked) mask[i] = 1;
  return mask;
}

/** An example key for duplicate checks: the rendered prompt and completion. */
export function exampleKey(record: DataRecord, template: CompiledTemplate): string {
  const { prompt, completion } = renderRecord(record, template);
  return `${prompt}\u0000${completion}`;
}

interface TokenizedSplit {
  store: ExampleStore;
  rows: number[][];
  report: SplitReport;
}

/** Tokenises, truncates and lays out one split's records. `order` = the record order for packing. */
function tokenizeSplit(records: readonly DataRecord[], template: CompiledTemplate, o: BuildOptions, timing: { seconds: number; tokens: number }): TokenizedSplit {
  const store = new ExampleStore();
  const report = emptySplit();
  const chatTemplate = chatTemplateFor(template.kind, o.template, o.tokenizer);
  for (const record of records) {
    const started = process.hrtime.bigint();
    const full = tokenizeRecord(record, template, o.tokenizer, o.trainOnPrompt, chatTemplate);
    timing.seconds += Number(process.hrtime.bigint() - started) / 1e9;
    timing.tokens += full.tokens.length;
    const { example, removed } = truncateExample(full, o.seqLen);
    if (removed > 0) {
      report.truncatedExamples++;
      report.truncatedTokens += removed;
    }
    store.add(example);
    report.tokens += example.tokens.length;
    report.trainedTokens += scoredTargets(example.trained);
  }
  report.examples = store.count;
  return { store, rows: [], report };
}

function finishLayout(split: TokenizedSplit, order: number[], o: BuildOptions): void {
  split.rows = layoutRows(split.store, order, o.seqLen, o.packing);
  split.report.rows = split.rows.length;
  split.report.paddingTokens = split.rows.length * o.seqLen - split.report.tokens;
  split.report.fill = split.rows.length > 0 ? split.report.tokens / (split.rows.length * o.seqLen) : 0;
}

function buildExampleDatasets(o: BuildOptions, kind: DataKind): Datasets {
  const template = compileTemplate(kind, o.template, o.templateVariables);
  const report = baseReport(o, kind, chatTemplateFor(kind, o.template, o.tokenizer) ? MODEL_CHAT_TEMPLATE : template.source);
  const loaded = loadRecords(o.train, { format: kind, skipInvalid: o.skipInvalid });
  report.skipped.push(...loaded.skipped);
  report.warnings.push(...loaded.warnings);
  report.blankLines += loaded.blankLines;
  let trainRecords = loaded.records;
  let validationRecords: DataRecord[] = [];
  if (o.validation !== undefined) {
    const v = loadRecords(o.validation, { format: kind, skipInvalid: o.skipInvalid });
    report.skipped.push(...v.skipped);
    report.warnings.push(...v.warnings);
    report.blankLines += v.blankLines;
    validationRecords = v.records;
    if (validationRecords.length === 0) throw new Error(`${o.validation}: no valid examples`);
  } else if (o.validationFraction !== undefined) {
    // A seeded random subset, kept in file order on both sides.
    const isValidation = heldOutMask(trainRecords.length, o.validationFraction, o.seed, `${o.train}: ${trainRecords.length} example(s)`);
    validationRecords = trainRecords.filter((_, i) => isValidation[i]);
    trainRecords = trainRecords.filter((_, i) => !isValidation[i]);
  }
  if (trainRecords.length === 0) throw new Error(`${o.train}: no valid training examples`);

  const timing = { seconds: 0, tokens: 0 };
  const train = tokenizeSplit(trainRecords, template, o, timing);
  const trainOrder = Array.from({ length: train.store.count }, (_, i) => i);
  // Packing mixes examples from across the file into rows (the sampler then shuffles the rows).
  if (o.shuffle && o.packing) new Rng(derivedSeed(o.seed, 'packing')).shuffle(trainOrder);
  finishLayout(train, trainOrder, o);
  report.trainSplit = train.report;

  let validationBatches: Batch[] = [];
  if (validationRecords.length > 0) {
    const validation = tokenizeSplit(validationRecords, template, o, timing);
    finishLayout(validation, Array.from({ length: validation.store.count }, (_, i) => i), o);
    report.validationSplit = validation.report;
    validationBatches = rowValidationBatches(validation.store, validation.rows, o.batchSize, o.seqLen, o.tokenizer.eosTokenId, o.packing);
    const validationKeys = new Set(validationRecords.map((r) => exampleKey(r, template)));
    report.validationOverlap = trainRecords.filter((r) => validationKeys.has(exampleKey(r, template))).length;
  }
  report.tokenizeSeconds = timing.seconds;
  report.tokensPerSecond = timing.seconds > 0 ? timing.tokens / timing.seconds : 0;

  let labels: string[] | undefined;
  if (kind === 'classification') {
    labels = sortedLabels([...trainRecords, ...validationRecords]);
    const counts: Record<string, number> = {};
    for (const label of labels) counts[label] = 0;
    for (const r of trainRecords) if (r.kind === 'classification') counts[r.label]++;
    report.labelCounts = counts;
  }
  const source = new RowSource(train.store, train.rows, o.batchSize, o.seqLen, o.tokenizer.eosTokenId, o.packing, o.shuffle, o.seed);
  return { train: source, validation: validationBatches, kind, labels, report };
}
