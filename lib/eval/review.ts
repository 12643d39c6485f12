/**
 * Human review files for `gptune sample`: prompts, model outputs and references side by side,
 * as Markdown (one section per example) or JSONL (one object per example); and the review loop
 * (`sample --review`, `data from-review`): items a person marks accept / reject / corrected, in a
 * JSONL file and a CSV beside it, turned back into training records.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CSVParser, DataError, DataRecord, forEachLine, parseJSONLine } from '../data';
import { writeFileAtomic } from '../io/atomic';
import { formatCsv, unguardFormula, UTF8_BOM } from '../io/csv';
import { firstLineHasKeys } from '../io/output';
import { Rng } from '../util/rng';

export interface ReviewEntry {
  /** Index of the example in the data (0-based), and its line in the file when known (1-based). */
  index: number;
  line?: number;
  prompt: string;
  output: string;
  reference: string;
  stop?: string;
  /** For classification data: the label the likelihood comparison picks. */
  predicted_label?: string;
}

/**
 * n distinct example indices out of count, chosen with the seed (a seeded shuffle's first n), in
 * ascending order so the review follows the file. n >= count gives every index.
 */
export function chooseExamples(count: number, n: number, seed: number): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  if (n >= count) return all;
  return new Rng(seed).shuffle(all).slice(0, n).sort((a, b) => a - b);
}

export type ReviewFormat = 'md' | 'jsonl';

/** The format a review file's name asks for; `label` names the file in the message (the CLI passes its flag). */
export function reviewFormat(file: string, label = 'review file'): ReviewFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.md' || ext === '.markdown') return 'md';
  if (ext === '.jsonl') return 'jsonl';
  throw new Error(`${label} ${file}: expected a .md or .jsonl file name but received extension '${ext || '(none)'}'`);
}

/** A fenced block that no backtick run inside `text` can close early. */
function fenced(text: string): string {
  const longestRun = Math.max(2, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  return `${fence}text\n${text}\n${fence}`;
}

const REVIEW_TITLE = '# gptune sample review';

/** Whether a file starting with `head` is a review that writeReview wrote (and may replace). */
export function isReviewFile(head: string): boolean {
  return head.startsWith(REVIEW_TITLE + '\n') || firstLineHasKeys(head, ['index', 'prompt', 'output', 'reference']);
}

export function formatReviewMarkdown(entries: readonly ReviewEntry[], header: Record<string, string | number>): string {
  const parts = [REVIEW_TITLE, ''];
  for (const [key, value] of Object.entries(header)) parts.push(`- ${key}: ${value}`);
  for (const e of entries) {
    parts.push('', `## Example ${e.index + 1}${e.line !== undefined ? ` (line ${e.line})` : ''}`, '');
    parts.push('**Prompt**', '', fenced(e.prompt), '');
    parts.push(`**Model output**${e.stop ? ` (stopped: ${e.stop})` : ''}`, '', fenced(e.output), '');
    if (e.predicted_label !== undefined) parts.push(`**Predicted label** (likelihood): ${e.predicted_label}`, '');
    parts.push('**Reference**', '', fenced(e.reference));
  }
  return parts.join('\n') + '\n';
}

export function formatReviewJsonl(entries: readonly ReviewEntry[]): string {
  return entries.map((e) => JSON.stringify(e)).join('\n') + (entries.length > 0 ? '\n' : '');
}

/** Writes the review atomically (a temporary file renamed into place). */
export function writeReview(file: string, entries: readonly ReviewEntry[], header: Record<string, string | number> = {}): void {
  const format = reviewFormat(file);
  writeFileAtomic(file, format === 'md' ? formatReviewMarkdown(entries, header) : formatReviewJsonl(entries));
}

// ---------------------------------------------------------------------------------------------
// The review loop. `sample --review FILE.jsonl` writes one item per example,
//
//   {"id", "prompt", "output", "reference", "verdict": "", "corrected": "", "index", "line",
//    "stop", "predicted_label" (classification), "source"}
//
// and FILE.csv beside it with the columns id, prompt, output, reference, verdict, corrected,
// predicted_label, line, source (RFC 4180, UTF-8 with a BOM so that spreadsheets read it as UTF-8;
// a cell starting with = + - @, tab or CR gets a leading ' so a spreadsheet shows it as text instead of
// running it as a formula, and from-review removes exactly that quote: lib/io/csv.ts guardFormula).
// `source` is the example the item was made from, {"kind", ...its fields} as the data file had them:
// from-review writes records in that format. A person fills in `verdict` (accept, reject or
// corrected; empty = not reviewed yet) and, for corrected, `corrected` (the text the model should
// have written, used as typed). Either file can be given to from-review.

export const REVIEW_VERDICTS = ['accept', 'reject', 'corrected'] as const;
export type ReviewVerdict = typeof REVIEW_VERDICTS[number];

/** Spellings people write for each verdict (case and surrounding spaces do not matter). */
const VERDICT_SPELLINGS: Record<string, ReviewVerdict> = {
  accept: 'accept', accepted: 'accept', reject: 'reject', rejected: 'reject', corrected: 'corrected', correct: 'corrected',
};

/** The example behind a review item: a data record's fields (without its file and line) and its kind. */
export type ReviewSource =
  | { kind: 'classification'; text: string; label: string }
  | { kind: 'prompt_completion'; prompt: string; completion: string }
  | { kind: 'chat'; messages: Extract<DataRecord, { kind: 'chat' }>['messages'] };

export interface ReviewItem {
  /** Unique in the file: the example's number in the data (index + 1). */
  id: number;
  prompt: string;
  output: string;
  reference: string;
  verdict: string;
  corrected: string;
  index: number;
  line?: number;
  stop?: string;
  predicted_label?: string;
  source?: ReviewSource;
}

/** The columns of the review CSV, in order. */
export const REVIEW_CSV_COLUMNS = ['id', 'prompt', 'output', 'reference', 'verdict', 'corrected', 'predicted_label', 'line', 'source'] as const;

function sourceOf(record: DataRecord): ReviewSource | undefined {
  switch (record.kind) {
    case 'classification': return { kind: record.kind, text: record.text, label: record.label };
    case 'prompt_completion': return { kind: record.kind, prompt: record.prompt, completion: record.completion };
    case 'chat': return { kind: record.kind, messages: record.messages };
    default: return undefined;
  }
}

/** Review items for `entries` (reviewEntries' output), with `records` the data they index. */
export function reviewItems(entries: readonly ReviewEntry[], records: readonly DataRecord[]): ReviewItem[] {
  return entries.map((e) => ({
    id: e.index + 1, prompt: e.prompt, output: e.output, reference: e.reference, verdict: '', corrected: '',
    index: e.index, line: e.line, stop: e.stop,
    ...(e.predicted_label !== undefined ? { predicted_label: e.predicted_label } : {}),
    source: sourceOf(records[e.index]),
  }));
}

/** The CSV written beside a review JSONL file: same name, .csv. */
export function reviewCsvPath(jsonlFile: string): string {
  return jsonlFile.replace(/\.jsonl$/i, '') + '.csv';
}

/** Whether a file starting with `head` is a review CSV that writeReviewItems wrote (and may replace). */
export function isReviewCsv(head: string): boolean {
  return (head.startsWith(UTF8_BOM) ? head.slice(1) : head).startsWith(REVIEW_CSV_COLUMNS.join(',') + '\r\n');
}

export function formatReviewCsv(items: readonly ReviewItem[]): string {
  const rows = items.map((item) => [
    String(item.id), item.prompt, item.output, item.reference, item.verdict, item.corrected,
    item.predicted_label ?? '', item.line !== undefined ? String(item.line) : '', item.source ? JSON.stringify(item.source) : '',
  ]);
  // People open this file in a spreadsheet: a model output such as "=HYPERLINK(...)" must stay text.
  return formatCsv([[...REVIEW_CSV_COLUMNS], ...rows], { bom: true, guardFormulas: true });
}

/** Writes the items as `jsonlFile` and the CSV beside it (reviewCsvPath), each atomically; returns the CSV's path. */
export function writeReviewItems(jsonlFile: string, items: readonly ReviewItem[]): string {
  if (path.extname(jsonlFile).toLowerCase() !== '.jsonl') throw new Error(`review file ${jsonlFile}: expected a .jsonl file name (the CSV is written beside it)`);
  const csv = reviewCsvPath(jsonlFile);
  writeFileAtomic(jsonlFile, items.map((item) => JSON.stringify(item)).join('\n') + (items.length > 0 ? '\n' : ''));
  writeFileAtomic(csv, formatReviewCsv(items));
  return csv;
}

/** One reviewed item as read back: where it is (file line), its id, what the person decided. */
export interface ReviewedItem {
  line: number;
  id: string;
  prompt: string;
  output: string;
  /** null: not reviewed yet (an empty verdict). */
  verdict: ReviewVerdict | null;
  corrected: string;
  source?: ReviewSource;
}

/** Checks one item's fields (as strings) and returns it; problems are DataErrors naming the file and line. */
function reviewedItem(file: string, line: number, fields: { id: string; prompt: string; output: string; verdict: string; corrected: string; source: string | object | undefined }): ReviewedItem {
  const fail = (problem: string): never => {
    throw new DataError(file, line, problem);
  };
  const id = fields.id.trim();
  if (id === '') fail('missing id (every item needs the id sample --review gave it)');
  const spelled = fields.verdict.trim().toLowerCase();
  const verdict = spelled === '' ? null : VERDICT_SPELLINGS[spelled];
  if (verdict === undefined) fail(`item ${id}: unknown verdict ${JSON.stringify(fields.verdict)}; expected accept, reject or corrected (or empty: not reviewed)`);
  const corrected = fields.corrected;
  if (verdict === 'corrected' && corrected.trim() === '') fail(`item ${id}: verdict corrected but "corrected" holds no text (write the output the model should have given)`);
  if (verdict !== 'corrected' && corrected.trim() !== '') fail(`item ${id}: "corrected" holds text but the verdict is ${verdict ?? 'empty'}; set the verdict to corrected, or clear the text`);
  let source: ReviewSource | undefined;
  if (fields.source !== undefined && fields.source !== '') {
    let raw: unknown = fields.source;
    if (typeof raw === 'string') {
      try {
        raw = JSON.parse(raw);
      } catch {
        fail(`item ${id}: "source" is not valid JSON (it is the example as sample read it; leave it as written)`);
      }
    }
    const kind = (raw as { kind?: unknown } | null)?.kind;
    if (kind !== 'classification' && kind !== 'prompt_completion' && kind !== 'chat') fail(`item ${id}: "source" must be an object with "kind" classification, prompt_completion or chat`);
    const { kind: _, ...rest } = raw as Record<string, unknown>;
    // The record reader checks the source's fields as it checks a data line.
    sourceOf(parseJSONLine(kind as ReviewSource['kind'], JSON.stringify(rest), file, line));
    source = { kind, ...rest } as ReviewSource;
  }
  return { line, id, prompt: fields.prompt, output: fields.output, verdict, corrected, source };
}

/** Reads a review file (.jsonl or .csv as writeReviewItems wrote and a person edited); duplicate ids are errors. */
export function readReviewFile(file: string): ReviewedItem[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  const ext = path.extname(file).toLowerCase();
  if (ext !== '.jsonl' && ext !== '.csv') throw new Error(`${file}: expected a review file named .jsonl or .csv but received extension '${ext || '(none)'}'`);
  const items: ReviewedItem[] = [];
  if (ext === '.jsonl') {
    forEachLine(file, (text, line) => {
      if (text.trim() === '') return;
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (e) {
        throw new DataError(file, line, `malformed JSON (${(e as Error).message})`);
      }
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new DataError(file, line, 'expected a JSON object (a review item)');
      const o = obj as Record<string, unknown>;
      const field = (key: string, required: boolean): string => {
        const v = o[key];
        if (v === undefined || v === null) {
          if (required) throw new DataError(file, line, `missing field "${key}"`);
          return '';
        }
        if (key === 'id' && typeof v === 'number' && Number.isFinite(v)) return String(v);
        if (typeof v !== 'string') throw new DataError(file, line, `field "${key}" must be a string${key === 'id' ? ' or a number' : ''} but is ${JSON.stringify(v)}`);
        return v;
      };
      if (o.id === undefined || o.id === null || o.id === '') throw new DataError(file, line, 'missing id (every item needs the id sample --review gave it)');
      items.push(reviewedItem(file, line, {
        id: field('id', true), prompt: field('prompt', true), output: field('output', true), verdict: field('verdict', true), corrected: field('corrected', false),
        source: o.source as object | undefined,
      }));
    });
  } else {
    let columns: Map<string, number> | null = null;
    let width = 0;
    const parser = new CSVParser(file, ({ fields, line }) => {
      if (columns === null) {
        columns = new Map(fields.map((f, i) => [f.trim().toLowerCase(), i]));
        width = fields.length;
        const missing = ['id', 'prompt', 'output', 'verdict', 'corrected'].filter((c) => !columns!.has(c));
        if (missing.length > 0) throw new DataError(file, line, `the header lacks the column(s) ${missing.join(', ')} (expected ${REVIEW_CSV_COLUMNS.join(',')})`);
        return;
      }
      if (fields.length !== width) throw new DataError(file, line, `expected ${width} columns as in the header but found ${fields.length}`);
      // Each cell without the quote formatReviewCsv put before formula-like text (and only that quote).
      const get = (c: string) => (columns!.has(c) ? unguardFormula(fields[columns!.get(c)!]) : '');
      items.push(reviewedItem(file, line, { id: get('id'), prompt: get('prompt'), output: get('output'), verdict: get('verdict'), corrected: get('corrected'), source: get('source') }));
    });
    forEachLine(file, (text, line) => parser.pushLine(text, line));
    parser.finish();
    if (columns === null) throw new DataError(file, 1, `empty file; expected the header ${REVIEW_CSV_COLUMNS.join(',')}`);
  }
  const firstLine = new Map<string, number>();
  for (const item of items) {
    const seen = firstLine.get(item.id);
    if (seen !== undefined) throw new DataError(file, item.line, `duplicate id ${item.id} (also on line ${seen})`);
    firstLine.set(item.id, item.line);
  }
  return items;
}

/** `original`: each item's source format; `prompt_completion`: {prompt: the prompt as the model saw it, completion}. */
export type ReviewRecordFormat = 'original' | 'prompt_completion';

export interface FromReviewResult {
  /** The training records, one JSON object each, in the review's order. */
  objects: Record<string, unknown>[];
  format: ReviewRecordFormat;
  counts: { items: number; accepted: number; corrected: number; rejected: number; not_reviewed: number; written: number };
}

/**
 * Accepted items (their output) and corrected ones (their corrected text) as training records; rejected
 * and not yet reviewed items are skipped and counted. Default format: `original` when every item used
 * has its source, else `prompt_completion`. Every record made is checked as a data line would be.
 */
export function recordsFromReview(file: string, items: readonly ReviewedItem[], format?: ReviewRecordFormat): FromReviewResult {
  const used = items.filter((item) => item.verdict === 'accept' || item.verdict === 'corrected');
  const chosen: ReviewRecordFormat = format ?? (used.every((item) => item.source !== undefined) ? 'original' : 'prompt_completion');
  const objects = used.map((item) => {
    const answer = item.verdict === 'corrected' ? item.corrected : item.output;
    let object: Record<string, unknown>;
    let kind: ReviewSource['kind'];
    if (chosen === 'prompt_completion') {
      kind = 'prompt_completion';
      object = { prompt: item.prompt, completion: answer };
    } else {
      const source = item.source;
      if (source === undefined) throw new DataError(file, item.line, `item ${item.id}: no "source" (the example it was made from), so it cannot be written in the original format; use prompt_completion`);
      kind = source.kind;
      if (source.kind === 'classification') object = { text: source.text, label: answer.trim() };
      else if (source.kind === 'prompt_completion') object = { prompt: source.prompt, completion: answer };
      else {
        const last = source.messages.map((m) => m.role).lastIndexOf('assistant');
        object = { messages: [...source.messages.slice(0, last), { role: 'assistant', content: answer }] };
      }
    }
    try {
      parseJSONLine(kind, JSON.stringify(object), file, item.line);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      throw new DataError(file, item.line, `item ${item.id} (${item.verdict}) makes no valid ${kind} record: ${e.problem}`);
    }
    return object;
  });
  const count = (v: ReviewVerdict | null) => items.filter((item) => item.verdict === v).length;
  return {
    objects, format: chosen,
    counts: { items: items.length, accepted: count('accept'), corrected: count('corrected'), rejected: count('reject'), not_reviewed: count(null), written: objects.length },
  };
}
