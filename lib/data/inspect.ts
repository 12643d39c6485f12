/**
 * `gptune data inspect`: what a data file holds before training on it. Examples, tokens, a length
 * histogram, how many would be truncated at seq_len, label balance, exact duplicates, overlap with a
 * validation file, and the tokeniser's throughput. Plain text is streamed (never held whole).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import type { Tokenizer } from '../tokenizer';
import { exampleKey } from './dataset';
import { scoredTargets, tokenizeRecord } from './examples';
import { forEachTextChunk } from './read';
import { DataKind, DataRecord, detectKind, loadRecords, SkippedLine, sortedLabels, textFilesOf } from './records';
import { chatTemplateFor, compileTemplate } from './templates';
import { StreamingEncoder } from './tokens';

export interface InspectOptions {
  tokenizer: Tokenizer;
  seqLen: number;
  validation?: string;
  format?: DataKind;
  template?: string;
  skipInvalid?: boolean;
  trainOnPrompt?: boolean;
}

export interface HistogramBin {
  /** Lengths in [min, max] tokens. */
  min: number;
  max: number;
  count: number;
}

export interface LengthStats {
  min: number;
  mean: number;
  median: number;
  p95: number;
  max: number;
}

export interface InspectReport {
  file: string;
  kind: DataKind;
  bytes: number;
  /** Examples (plain text: documents). */
  examples: number;
  skipped: SkippedLine[];
  blankLines: number;
  /** All tokens, with one EOS per example (plain text: the stream of lm.ts, documents joined by EOS). */
  tokens: number;
  /** Tokens with a loss (completion + EOS, or all with trainOnPrompt); plain text: tokens - 1. */
  trainedTokens: number;
  /** Per-example token counts (with EOS). */
  lengths: LengthStats;
  histogram: HistogramBin[];
  seqLen: number;
  /** Examples longer than seq_len (they would be cut), and the tokens that would go. */
  truncatedExamples: number;
  truncatedTokens: number;
  /** Plain text: training windows of seq_len + 1 at stride seq_len. */
  windows?: number;
  /** Classification: examples per label. */
  labelCounts?: Record<string, number>;
  /** Examples identical to an earlier one (prompt and completion; plain text: repeated non-blank lines). */
  duplicates: number;
  /** Classification: texts that occur with more than one label. */
  conflictingLabels?: number;
  /**
   * With a validation file: its examples, and training examples that also appear in it (plain
   * text: distinct non-blank lines of each, and training lines found in the validation text).
   */
  validationExamples?: number;
  inValidation?: number;
  /** Tokeniser time only, and the whole inspection. */
  tokenizeSeconds: number;
  tokensPerSecond: number;
  megabytesPerSecond: number;
  seconds: number;
}

/** The q-quantile of ascending values as the element at floor(q * n) (the median of 4 values is the third). */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export function lengthStats(lengths: readonly number[]): LengthStats {
  if (lengths.length === 0) return { min: 0, mean: 0, median: 0, p95: 0, max: 0 };
  const sorted = Int32Array.from(lengths).sort();
  const at = (q: number) => quantileOfSorted(sorted, q);
  let sum = 0;
  for (const n of lengths) sum += n;
  return { min: sorted[0], mean: sum / lengths.length, median: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] };
}

/** Bins of doubling width (1-16, 17-32, 33-64, ...), with seq_len as one of the edges. */
export function lengthHistogram(lengths: readonly number[], seqLen: number): HistogramBin[] {
  if (lengths.length === 0) return [];
  let longest = 0;
  for (const n of lengths) longest = Math.max(longest, n);
  const edges: number[] = [];
  for (let edge = 16; ; edge *= 2) {
    edges.push(edge);
    if (edge >= longest) break;
  }
  if (!edges.includes(seqLen) && seqLen < longest) edges.push(seqLen);
  edges.sort((a, b) => a - b);
  const bins: HistogramBin[] = edges.map((max, i) => ({ min: i === 0 ? 0 : edges[i - 1] + 1, max, count: 0 }));
  for (const n of lengths) {
    let lo = 0;
    while (bins[lo].max < n) lo++;
    bins[lo].count++;
  }
  // Empty bins before the shortest and after the longest example say nothing.
  while (bins.length > 1 && bins[bins.length - 1].count === 0) bins.pop();
  while (bins.length > 1 && bins[0].count === 0) bins.shift();
  return bins;
}

export function inspectData(file: string, o: InspectOptions): InspectReport {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (o.validation !== undefined && !fs.existsSync(o.validation)) throw new Error(`${o.validation}: file not found`);
  const started = process.hrtime.bigint();
  const kind = o.format ?? detectKind(file);
  const report = kind === 'text' ? inspectText(file, o) : inspectExamples(file, kind, o);
  report.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  report.megabytesPerSecond = report.seconds > 0 ? report.bytes / 1e6 / report.seconds : 0;
  return report;
}

function fileBytes(file: string): number {
  return fs.statSync(file).isDirectory() ? textFilesOf(file).reduce((s, f) => s + fs.statSync(f).size, 0) : fs.statSync(file).size;
}

function inspectExamples(file: string, kind: DataKind, o: InspectOptions): InspectReport {
  const template = compileTemplate(kind, o.template);
  const chatTemplate = chatTemplateFor(kind, o.template, o.tokenizer);
  const loaded = loadRecords(file, { format: kind, skipInvalid: o.skipInvalid });
  const lengths: number[] = [];
  let tokens = 0, trainedTokens = 0, truncatedExamples = 0, truncatedTokens = 0, encodeSeconds = 0;
  const seen = new Set<string>();
  let duplicates = 0;
  for (const record of loaded.records) {
    const t0 = process.hrtime.bigint();
    const ex = tokenizeRecord(record, template, o.tokenizer, o.trainOnPrompt ?? false, chatTemplate);
    encodeSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    const n = ex.tokens.length;
    lengths.push(n);
    tokens += n;
    trainedTokens += scoredTargets(ex.trained);
    if (n > o.seqLen) {
      truncatedExamples++;
      truncatedTokens += n - o.seqLen;
    }
    const key = exampleKey(record, template);
    if (seen.has(key)) duplicates++;
    else seen.add(key);
  }
  const report: InspectReport = {
    file, kind, bytes: fileBytes(file), examples: loaded.records.length, skipped: loaded.skipped, blankLines: loaded.blankLines,
    tokens, trainedTokens, lengths: lengthStats(lengths), histogram: lengthHistogram(lengths, o.seqLen), seqLen: o.seqLen,
    truncatedExamples, truncatedTokens, duplicates,
    tokenizeSeconds: encodeSeconds, tokensPerSecond: encodeSeconds > 0 ? tokens / encodeSeconds : 0, megabytesPerSecond: 0, seconds: 0,
  };
  if (kind === 'classification') {
    const counts: Record<string, number> = {};
    for (const label of sortedLabels(loaded.records)) counts[label] = 0;
    const labelsOfText = new Map<string, Set<string>>();
    for (const r of loaded.records) {
      if (r.kind !== 'classification') continue;
      counts[r.label]++;
      const set = labelsOfText.get(r.text) ?? new Set<string>();
      set.add(r.label);
      labelsOfText.set(r.text, set);
    }
    report.labelCounts = counts;
    report.conflictingLabels = [...labelsOfText.values()].filter((s) => s.size > 1).length;
  }
  if (o.validation !== undefined) {
    const v = loadRecords(o.validation, { format: kind, skipInvalid: o.skipInvalid });
    report.skipped.push(...v.skipped);
    const keys = new Set(v.records.map((r) => exampleKey(r, template)));
    report.validationExamples = v.records.length;
    report.inValidation = loaded.records.filter((r: DataRecord) => keys.has(exampleKey(r, template))).length;
  }
  return report;
}

/** A line's digest: exact-duplicate detection without keeping every line of a 100 MB file. */
function lineDigest(line: string): string {
  return crypto.createHash('sha1').update(line).digest('base64');
}

/** Calls onLine for each line of streamed text (pieces in order; the last line may lack "\n"). */
class LineSplitter {
  private carry = '';
  constructor(private readonly onLine: (line: string) => void) {}
  write(piece: string): void {
    const text = this.carry + piece;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.onLine(text.slice(start, nl));
      start = nl + 1;
    }
    this.carry = text.slice(start);
  }
  end(): void {
    if (this.carry) this.onLine(this.carry);
    this.carry = '';
  }
}

function textLineDigests(files: readonly string[]): Set<string> {
  const digests = new Set<string>();
  for (const f of files) {
    const splitter = new LineSplitter((line) => {
      const trimmed = line.trim();
      if (trimmed) digests.add(lineDigest(trimmed));
    });
    forEachTextChunk(f, (piece) => splitter.write(piece));
    splitter.end();
  }
  return digests;
}

function inspectText(file: string, o: InspectOptions): InspectReport {
  if (o.template !== undefined) compileTemplate('text', o.template); // throws: no template for text
  const files = fs.statSync(file).isDirectory() ? textFilesOf(file) : [file];
  const lengths: number[] = [];
  let tokens = 0, encodeSeconds = 0, duplicates = 0;
  const seen = new Set<string>();
  for (const f of files) {
    let documentTokens = 0;
    const encoder = new StreamingEncoder(o.tokenizer, (ids) => { documentTokens += ids.length; });
    const splitter = new LineSplitter((line) => {
      const trimmed = line.trim();
      if (!trimmed) return;
      const digest = lineDigest(trimmed);
      if (seen.has(digest)) duplicates++;
      else seen.add(digest);
    });
    forEachTextChunk(f, (piece) => {
      encoder.write(piece);
      splitter.write(piece);
    });
    encoder.end();
    splitter.end();
    encodeSeconds += encoder.stats.seconds;
    lengths.push(documentTokens);
    tokens += documentTokens;
  }
  tokens += files.length - 1; // the EOS between documents
  const report: InspectReport = {
    file, kind: 'text', bytes: fileBytes(file), examples: files.length, skipped: [], blankLines: 0,
    tokens, trainedTokens: Math.max(0, tokens - 1), lengths: lengthStats(lengths), histogram: lengthHistogram(lengths, o.seqLen), seqLen: o.seqLen,
    // Plain text is cut into windows, never truncated: nothing is lost at any seq_len.
    truncatedExamples: 0, truncatedTokens: 0,
    windows: tokens > 1 ? Math.floor((tokens - 1) / o.seqLen) : 0,
    duplicates,
    tokenizeSeconds: encodeSeconds, tokensPerSecond: encodeSeconds > 0 ? tokens / encodeSeconds : 0, megabytesPerSecond: 0, seconds: 0,
  };
  if (o.validation !== undefined) {
    const validationFiles = fs.statSync(o.validation).isDirectory() ? textFilesOf(o.validation) : [o.validation];
    const validationDigests = textLineDigests(validationFiles);
    // For text both counts are in distinct non-blank lines.
    report.validationExamples = validationDigests.size;
    let inValidation = 0;
    for (const d of seen) if (validationDigests.has(d)) inValidation++;
    report.inValidation = inValidation;
  }
  return report;
}
