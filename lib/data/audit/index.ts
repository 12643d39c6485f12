/**
 * `gptune data audit`: what a person should know about training data before training on it, over
 * the splits together (train, validation, test):
 *
 * - class balance per split (labelled data), the imbalance ratio max/min, labels a split lacks;
 * - lengths in tokens (with a tokenizer): min/median/p95/max, examples seq_len would truncate, and
 *   outliers above p75 + 3 x IQR (Tukey's "far out" fence), each with file:line;
 * - exact duplicates (same normalized text) and near-duplicates (MinHash + LSH over word shingles,
 *   verified by exact Jaccard >= the threshold), within each split and across splits (leakage);
 * - PII and secrets by pattern and checksum (pii.ts), each with file:line and its kind.
 *
 * Preference pairs (DPO/ORPO data, lib/data/preference.ts) are audited as records of kind
 * 'preference': a pair is one unit (prompt + chosen + rejected) for duplicates and leakage, PII is
 * looked for in each of the three, and its length is its longer side as training renders it.
 *
 * The report is plain JSON (snake_case keys, as the CLI's --json prints it): counts are exact,
 * lists stop at `maxListed` items each (the *_total figures say how many there are).
 */
import * as fs from 'fs';
import type { Tokenizer } from '../../tokenizer';
import { tokenizeRecord } from '../examples';
import { isPreferenceFile, loadPreferencePairs, PreferencePair, tokenizePair } from '../preference';
import { lengthStats, quantileOfSorted } from '../inspect';
import type { DataKind, DataRecord } from '../records';
import { loadRecords, sortedLabels } from '../records';
import { chatTemplateFor, compileTemplate } from '../templates';
import { DEFAULT_MAX_PAIRS_PER_BUCKET, DEFAULT_MINHASH, MinHashSettings, nearDuplicatePairs, normalizeText } from './minhash';
import { findPII, maskPII, PII_KINDS, PIIKind } from './pii';

/** A preference pair as the audit reads it (loadPreferencePairs' pairs, with their kind). */
export type PreferenceRecord = PreferencePair & { kind: 'preference' };
export type AuditRecord = DataRecord | PreferenceRecord;

export interface AuditSplit {
  /** "train", "validation", "test", or any name; pairs across splits are leakage. */
  name: string;
  file: string;
  /** One kind per split: data records, or preference pairs. */
  records: AuditRecord[];
}

/**
 * A data file as an audit split: its preference pairs when it holds them (detected as training
 * detects them) and no format is given, else its data records. Invalid lines throw, or are skipped
 * with skipInvalid.
 */
export function loadAuditSplit(name: string, file: string, o: { format?: DataKind; skipInvalid?: boolean } = {}): AuditSplit {
  if (o.format === undefined && fs.statSync(file).isFile() && isPreferenceFile(file)) {
    const pairs = loadPreferencePairs(file, { skipInvalid: o.skipInvalid }).pairs;
    return { name, file, records: pairs.map((p): PreferenceRecord => ({ ...p, kind: 'preference' })) };
  }
  return { name, file, records: loadRecords(file, { format: o.format, skipInvalid: o.skipInvalid }).records };
}

export interface AuditOptions {
  /** Jaccard similarity at or above which two texts are near-duplicates (default 0.8). */
  nearThreshold?: number;
  minhash?: MinHashSettings;
  /** With a tokenizer: lengths in tokens as training would see them (template applied, EOS included). */
  tokenizer?: Tokenizer;
  seqLen?: number;
  template?: string;
  /** Most items listed per list in the report (counts are always complete). Default 1000. */
  maxListed?: number;
  /** Candidate pairs compared per LSH bucket at most (minhash.ts DEFAULT_MAX_PAIRS_PER_BUCKET); over it, near counts are a lower bound. */
  maxPairsPerBucket?: number;
}

export const DEFAULT_NEAR_THRESHOLD = 0.8;
export const OUTLIER_RULE = 'tokens > p75 + 3 x IQR (IQR = p75 - p25)';
const NORMALIZATION = 'Unicode NFKC, lower case, whitespace runs as one space, trimmed';

export interface AuditLocation {
  split: string;
  file: string;
  line: number;
}

export interface LabelBalance {
  split: string;
  counts: Record<string, number>;
  /** Largest / smallest count over every label of every split; null when this split lacks a label. */
  imbalance_ratio: number | null;
  /** Labels seen in some split but not in this one. */
  missing_labels: string[];
}

export interface LengthFinding extends AuditLocation {
  tokens: number;
}

export interface SplitLengths {
  split: string;
  min: number;
  median: number;
  p95: number;
  max: number;
  p25: number;
  p75: number;
  /** Examples longer than this many tokens are outliers (p75 + 3 IQR). */
  outlier_above: number;
  truncated_total: number;
  truncated: LengthFinding[];
  outliers_total: number;
  outliers: LengthFinding[];
}

export interface ExactGroup {
  /** Every place the same normalized text occurs (first maxListed). */
  locations: AuditLocation[];
  count: number;
  splits: string[];
}

export interface NearDuplicate {
  a: AuditLocation;
  b: AuditLocation;
  jaccard: number;
}

export interface SplitPairCounts {
  a: string;
  b: string;
  /** Examples of split b whose normalized text also occurs in split a. */
  exact: number;
  /** Pairs (one example of each split) with Jaccard >= the threshold, not identical. */
  near: number;
}

export interface PIIFinding extends AuditLocation {
  kind: PIIKind;
  detail?: string;
  /** Which part of the record: "text", "prompt", "completion", "messages[2].content". */
  field: string;
  /** The find with all but its first and last two characters hidden. */
  masked: string;
}

export interface AuditReport {
  splits: Array<{ name: string; file: string; kind: DataKind | 'preference' | null; examples: number; units: number; unit: 'example' | 'line' | 'pair' }>;
  settings: {
    near_threshold: number;
    shingles: { unit: 'word'; k: number };
    permutations: number;
    bands: number;
    rows_per_band: number;
    seed: number;
    normalization: string;
    tokenizer: string | null;
    seq_len: number | null;
    outlier_rule: string;
    max_listed: number;
  };
  balance: { labels: string[]; splits: LabelBalance[] } | null;
  lengths: SplitLengths[] | null;
  duplicates: {
    /** Per split: extra copies of a text already seen in that split, and near pairs inside it. */
    within: Record<string, { exact: number; near: number }>;
    across: SplitPairCounts[];
    exact_groups_total: number;
    exact_groups: ExactGroup[];
    near_pairs_total: number;
    near_pairs: NearDuplicate[];
    /** Pairs of distinct texts LSH proposed and that were compared exactly. */
    candidates_compared: number;
    /**
     * LSH buckets that proposed more pairs than the cap (many near-identical texts), where only the cap
     * was compared: buckets 0 means the near-duplicate counts are complete, else they are a lower bound.
     */
    candidate_cap: { max_pairs_per_bucket: number; buckets: number; largest_bucket: number; pairs_not_compared: number };
  };
  leakage: { found: boolean; exact: number; near: number };
  pii: {
    total: number;
    by_kind: Record<PIIKind, number>;
    by_split: Record<string, Partial<Record<PIIKind, number>>>;
    /** The first maxListed of the `total` finds. */
    findings: PIIFinding[];
  };
}

/** One text compared for duplicates: an example, or (plain text) a non-blank line. */
interface Unit extends AuditLocation {
  normalized: string;
}

/** The parts of a record a person wrote, with the name of each (PII is reported per part). */
export function recordFields(record: AuditRecord): Array<{ field: string; text: string }> {
  switch (record.kind) {
    case 'preference':
      return [
        ...(typeof record.prompt === 'string' ? [{ field: 'prompt', text: record.prompt }] : record.prompt.map((m, i) => ({ field: `prompt[${i}].content`, text: m.content }))),
        { field: 'chosen', text: record.chosen }, { field: 'rejected', text: record.rejected },
      ];
    case 'text':
    case 'classification':
      return [{ field: 'text', text: record.text }];
    case 'prompt_completion':
      return [{ field: 'prompt', text: record.prompt }, { field: 'completion', text: record.completion }];
    case 'chat':
      return record.messages.map((m, i) => ({ field: `messages[${i}].content`, text: m.content }));
    case 'qa':
      return [{ field: 'context', text: record.context }, { field: 'question', text: record.question }, ...record.answers.map((a, i) => ({ field: `answers[${i}]`, text: a }))];
    case 'ner':
      return [{ field: 'tokens', text: record.tokens.join(' ') }];
    case 'translation':
      return [{ field: 'source', text: record.source }, { field: 'target', text: record.target }];
    case 'summarization':
      return [{ field: 'document', text: record.document }, { field: 'summary', text: record.summary }];
  }
}

/** Start offsets of the lines of `text` (line i+1 starts at starts[i]). */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/** The index of the last start <= offset. */
function lineIndexOf(starts: readonly number[], offset: number): number {
  let lo = 0, hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function unitsOf(split: AuditSplit): Unit[] {
  const units: Unit[] = [];
  for (const r of split.records) {
    if (r.kind === 'text') {
      // A plain-text document is compared line by line: a whole book is one "example" otherwise.
      r.text.split('\n').forEach((line, i) => {
        const normalized = normalizeText(line);
        if (normalized) units.push({ split: split.name, file: r.file, line: r.line + i, normalized });
      });
    } else {
      units.push({ split: split.name, file: r.file, line: r.line, normalized: normalizeText(recordFields(r).map((f) => f.text).join('\n')) });
    }
  }
  return units;
}

const where = (u: AuditLocation): AuditLocation => ({ split: u.split, file: u.file, line: u.line });

function auditBalance(splits: readonly AuditSplit[]): AuditReport['balance'] {
  if (splits.length === 0 || !splits.every((s) => s.records.length > 0 && s.records.every((r) => r.kind === 'classification'))) return null;
  const labels = sortedLabels(splits.flatMap((s) => s.records as DataRecord[]));
  return {
    labels,
    splits: splits.map((s) => {
      const counts: Record<string, number> = {};
      for (const label of labels) counts[label] = 0;
      for (const r of s.records) if (r.kind === 'classification') counts[r.label]++;
      const values = labels.map((l) => counts[l]);
      const missing = labels.filter((l) => counts[l] === 0);
      return { split: s.name, counts, imbalance_ratio: missing.length > 0 ? null : Math.max(...values) / Math.min(...values), missing_labels: missing };
    }),
  };
}

function auditLengths(splits: readonly AuditSplit[], o: AuditOptions, maxListed: number): SplitLengths[] | null {
  const tokenizer = o.tokenizer;
  if (tokenizer === undefined) return null;
  const seqLen = o.seqLen ?? Infinity;
  return splits.map((s) => {
    const measured: LengthFinding[] = [];
    const kind = s.records[0]?.kind;
    // As training renders them: the template (or the model's chat template), the EOS included.
    const template = kind === undefined || kind === 'text' || kind === 'preference' ? null : compileTemplate(kind, o.template);
    const chatTemplate = kind === undefined || kind === 'preference' ? null : chatTemplateFor(kind, o.template, tokenizer);
    // A pair's length: its longer side (prompt + answer + EOS, as DPO/ORPO train it), uncut.
    const pairRendering = { tokenizer, template: compileTemplate('prompt_completion', o.template), seqLen: Number.MAX_SAFE_INTEGER };
    for (const r of s.records) {
      let tokens: number;
      if (r.kind === 'preference') {
        const { chosen, rejected } = tokenizePair(r, pairRendering);
        tokens = Math.max(chosen.example.tokens.length, rejected.example.tokens.length);
      } else {
        tokens = r.kind === 'text' ? tokenizer.encode(r.text).length : tokenizeRecord(r, template ?? compileTemplate(r.kind, o.template), tokenizer, false, chatTemplate).tokens.length;
      }
      measured.push({ split: s.name, file: r.file, line: r.line, tokens });
    }
    const sorted = Int32Array.from(measured.map((m) => m.tokens)).sort();
    const stats = lengthStats(measured.map((m) => m.tokens));
    const p25 = sorted.length ? quantileOfSorted(sorted, 0.25) : 0, p75 = sorted.length ? quantileOfSorted(sorted, 0.75) : 0;
    const outlierAbove = p75 + 3 * (p75 - p25);
    // Plain text is cut into windows for training, never truncated.
    const truncated = measured.filter((m) => s.records[0]?.kind !== 'text' && m.tokens > seqLen);
    const outliers = measured.filter((m) => m.tokens > outlierAbove);
    return {
      split: s.name, min: stats.min, median: stats.median, p95: stats.p95, max: stats.max, p25, p75, outlier_above: outlierAbove,
      truncated_total: truncated.length, truncated: truncated.slice(0, maxListed),
      outliers_total: outliers.length, outliers: outliers.slice(0, maxListed),
    };
  });
}

function auditDuplicates(splits: readonly AuditSplit[], threshold: number, settings: MinHashSettings, maxListed: number, maxPairsPerBucket: number) {
  const units = splits.flatMap(unitsOf);
  const splitIndex = new Map(splits.map((s, i) => [s.name, i]));
  // Exact: group by normalized text; each distinct text is one representative for MinHash.
  const groupOf = new Map<string, number>();
  const groups: Unit[][] = [];
  for (const u of units) {
    let g = groupOf.get(u.normalized);
    if (g === undefined) {
      g = groups.length;
      groupOf.set(u.normalized, g);
      groups.push([]);
    }
    groups[g].push(u);
  }
  const within: Record<string, { exact: number; near: number }> = {};
  for (const s of splits) within[s.name] = { exact: 0, near: 0 };
  const across: SplitPairCounts[] = [];
  for (let a = 0; a < splits.length; a++) for (let b = a + 1; b < splits.length; b++) across.push({ a: splits[a].name, b: splits[b].name, exact: 0, near: 0 });
  const acrossOf = (x: string, y: string) => {
    const [i, j] = [splitIndex.get(x)!, splitIndex.get(y)!].sort((p, q) => p - q);
    return across.find((c) => c.a === splits[i].name && c.b === splits[j].name)!;
  };
  const exactGroups: ExactGroup[] = [];
  let exactGroupsTotal = 0;
  for (const members of groups) {
    if (members.length < 2) continue;
    exactGroupsTotal++;
    const perSplit = new Map<string, number>();
    for (const m of members) perSplit.set(m.split, (perSplit.get(m.split) ?? 0) + 1);
    for (const [name, n] of perSplit) within[name].exact += n - 1;
    for (const c of across) if (perSplit.has(c.a) && perSplit.has(c.b)) c.exact += perSplit.get(c.b)!;
    if (exactGroups.length < maxListed) {
      exactGroups.push({ locations: members.slice(0, maxListed).map(where), count: members.length, splits: [...perSplit.keys()] });
    }
  }
  // MinHash sees each distinct text once: 5,000 copies of a text are one entry, not 12.5 million pairs.
  const near = nearDuplicatePairs(groups.map((g) => g[0].normalized), threshold, settings, maxPairsPerBucket);
  const nearPairs: NearDuplicate[] = [];
  let nearTotal = 0;
  // A near pair of texts is a near pair of every copy of one with every copy of the other: counted per
  // split pair by multiplication (a text with thousands of copies would otherwise be thousands of loops).
  const splitCounts = groups.map((g) => {
    const counts = new Map<string, number>();
    for (const u of g) counts.set(u.split, (counts.get(u.split) ?? 0) + 1);
    return counts;
  });
  for (const p of near.pairs) {
    nearTotal += groups[p.a].length * groups[p.b].length;
    for (const [x, nx] of splitCounts[p.a]) {
      for (const [y, ny] of splitCounts[p.b]) {
        if (x === y) within[x].near += nx * ny;
        else acrossOf(x, y).near += nx * ny;
      }
    }
    for (let i = 0; i < groups[p.a].length && nearPairs.length < maxListed; i++) {
      for (let j = 0; j < groups[p.b].length && nearPairs.length < maxListed; j++) nearPairs.push({ a: where(groups[p.a][i]), b: where(groups[p.b][j]), jaccard: p.jaccard });
    }
  }
  return {
    report: {
      within, across, exact_groups_total: exactGroupsTotal, exact_groups: exactGroups, near_pairs_total: nearTotal, near_pairs: nearPairs,
      candidates_compared: near.candidates,
      candidate_cap: { max_pairs_per_bucket: near.capped.maxPairsPerBucket, buckets: near.capped.buckets, largest_bucket: near.capped.largestBucket, pairs_not_compared: near.capped.pairsNotCompared },
    },
    banding: { bands: near.bands, rows: near.rowsPerBand },
  };
}

function auditPII(splits: readonly AuditSplit[], maxListed: number): AuditReport['pii'] {
  const byKind = Object.fromEntries(PII_KINDS.map((k) => [k, 0])) as Record<PIIKind, number>;
  const bySplit: AuditReport['pii']['by_split'] = {};
  const findings: PIIFinding[] = [];
  let total = 0;
  for (const s of splits) {
    const counts: Partial<Record<PIIKind, number>> = {};
    for (const r of s.records) {
      for (const { field, text } of recordFields(r)) {
        const spans = findPII(text);
        if (spans.length === 0) continue;
        // Plain text: the line inside the document; JSONL/CSV: the record's line.
        const starts = r.kind === 'text' ? lineStarts(text) : null;
        for (const span of spans) {
          total++;
          byKind[span.kind]++;
          counts[span.kind] = (counts[span.kind] ?? 0) + 1;
          if (findings.length >= maxListed) continue;
          const line = starts === null ? r.line : r.line + lineIndexOf(starts, span.start);
          findings.push({ split: s.name, file: r.file, line, kind: span.kind, ...(span.detail ? { detail: span.detail } : {}), field, masked: maskPII(span.text) });
        }
      }
    }
    bySplit[s.name] = counts;
  }
  return { total, by_kind: byKind, by_split: bySplit, findings };
}

/** The audit of data splits (see the file comment). Throws RangeError on an option out of range. */
export function auditSplits(splits: readonly AuditSplit[], options: AuditOptions = {}): AuditReport {
  const threshold = options.nearThreshold ?? DEFAULT_NEAR_THRESHOLD;
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`near threshold: expected a number in (0, 1] but received ${threshold}`);
  const names = new Set<string>();
  for (const s of splits) {
    if (names.has(s.name)) throw new RangeError(`audit: two splits are named '${s.name}'; each split needs its own name`);
    names.add(s.name);
  }
  if (options.seqLen !== undefined && !(Number.isInteger(options.seqLen) && options.seqLen > 0)) throw new RangeError(`seq_len: expected a positive integer but received ${options.seqLen}`);
  const maxListed = options.maxListed ?? 1000;
  const minhash = options.minhash ?? DEFAULT_MINHASH;
  const duplicates = auditDuplicates(splits, threshold, minhash, maxListed, options.maxPairsPerBucket ?? DEFAULT_MAX_PAIRS_PER_BUCKET);
  const pii = auditPII(splits, maxListed);
  const leakExact = duplicates.report.across.reduce((n, c) => n + c.exact, 0);
  const leakNear = duplicates.report.across.reduce((n, c) => n + c.near, 0);
  return {
    splits: splits.map((s) => {
      const kind = s.records[0]?.kind ?? null;
      return {
        name: s.name, file: s.file, kind, examples: s.records.length, units: kind === 'text' ? unitsOf(s).length : s.records.length,
        unit: kind === 'text' ? 'line' : kind === 'preference' ? 'pair' : 'example',
      };
    }),
    settings: {
      near_threshold: threshold, shingles: { ...minhash.shingles }, permutations: minhash.permutations, bands: duplicates.banding.bands,
      rows_per_band: duplicates.banding.rows, seed: minhash.seed, normalization: NORMALIZATION, tokenizer: options.tokenizer?.name ?? null,
      seq_len: options.tokenizer !== undefined ? options.seqLen ?? null : null, outlier_rule: OUTLIER_RULE, max_listed: maxListed,
    },
    balance: auditBalance(splits),
    lengths: auditLengths(splits, options, maxListed),
    duplicates: duplicates.report,
    leakage: { found: leakExact + leakNear > 0, exact: leakExact, near: leakNear },
    pii,
  };
}

export { auditSummaryLines, auditReportLines } from './format';
export { findPII, redactPII, maskPII, luhnValid, ibanValid, ipv6Valid, cardIssuer, PII_KINDS, PII_PLACEHOLDERS } from './pii';
export type { PIIKind, PIISpan } from './pii';
export { nearDuplicatePairs, jaccard, shingles, normalizeText, chooseBanding, candidateProbability, minHashSignature, DEFAULT_MINHASH, DEFAULT_MAX_PAIRS_PER_BUCKET } from './minhash';
export type { MinHashSettings, NearPair, NearDuplicateResult, ShingleSettings, BucketCap } from './minhash';
export { redactFile } from './redact';
export type { RedactionSummary } from './redact';
