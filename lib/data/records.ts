/**
 * Data files -> validated records. The four kinds and their files:
 *
 *   text               a .txt file, or a folder of .txt files (one document each, sorted by name)
 *   prompt_completion  JSONL, one {"prompt": string, "completion": non-empty string} per line
 *   chat               JSONL, one {"messages": [{"role": "system"|"user"|"assistant", "content": string,
 *                      "weight"?: 0|1 (assistant only)}, ...]} per line (OpenAI's fine-tuning format)
 *   classification     JSONL {"text": string, "label": string|number}, or CSV with a header row
 *                      that has "text" and "label" columns (names matched case-insensitively;
 *                      other columns are allowed and ignored, every row has the header's count)
 *
 * The kind is detected from the file (.txt or a folder: text; .csv: classification; otherwise the
 * keys of the first JSON line) unless named. Every line is validated; a bad line is a DataError
 * "FILE:LINE: problem" unless skipInvalid, which returns it in `skipped` instead. Blank lines are
 * not examples: they are counted, never errors. Other keys on a JSON line are ignored.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CSVParser, DataError, forEachLine, forEachTextChunk } from './read';

export type DataKind = 'text' | 'prompt_completion' | 'chat' | 'classification';
export const DATA_KINDS: readonly DataKind[] = ['text', 'prompt_completion', 'chat', 'classification'];

export type ChatRole = 'system' | 'user' | 'assistant';
export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** Assistant messages only: 0 = context, not trained on. Absent means 1. */
  weight?: 0 | 1;
}

/** Where a record came from, for messages and review files. */
export interface RecordOrigin {
  file: string;
  line: number;
}

export type DataRecord =
  | ({ kind: 'text'; text: string } & RecordOrigin)
  | ({ kind: 'prompt_completion'; prompt: string; completion: string } & RecordOrigin)
  | ({ kind: 'chat'; messages: ChatMessage[] } & RecordOrigin)
  | ({ kind: 'classification'; text: string; label: string } & RecordOrigin);

export type TextRecord = Extract<DataRecord, { kind: 'text' }>;
export type PromptCompletionRecord = Extract<DataRecord, { kind: 'prompt_completion' }>;
export type ChatRecord = Extract<DataRecord, { kind: 'chat' }>;
export type ClassificationRecord = Extract<DataRecord, { kind: 'classification' }>;

export interface SkippedLine {
  file: string;
  line: number;
  /** The whole message, "FILE:LINE: problem". */
  error: string;
}

export interface LoadedRecords {
  kind: DataKind;
  records: DataRecord[];
  /** Lines rejected with skipInvalid (empty otherwise: without it the first bad line throws). */
  skipped: SkippedLine[];
  /** Blank lines (whitespace only) in JSONL/CSV files; they hold no example. */
  blankLines: number;
}

export interface LoadOptions {
  /** The kind, when it should not be detected; a file that does not match is an error. */
  format?: DataKind;
  /** Skip invalid lines (returned in `skipped`) instead of throwing on the first one. */
  skipInvalid?: boolean;
}

export function parseDataKind(value: string, where: string): DataKind {
  if ((DATA_KINDS as readonly string[]).includes(value)) return value as DataKind;
  throw new Error(`${where}: expected one of ${DATA_KINDS.join(', ')} but received '${value}'`);
}

/** The .txt files of a folder, sorted by name (code-unit order, the same on every machine). */
export function textFilesOf(dir: string): string[] {
  const files = fs.readdirSync(dir).filter((name) => name.endsWith('.txt') && fs.statSync(path.join(dir, name)).isFile());
  if (files.length === 0) throw new Error(`${dir}: expected a .txt file or a folder of .txt files, but the folder has no .txt files`);
  return files.sort().map((name) => path.join(dir, name));
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The kind a parsed JSON line looks like, or null. */
function kindOfObject(obj: Record<string, unknown>): DataKind | null {
  if ('messages' in obj) return 'chat';
  if ('prompt' in obj || 'completion' in obj) return 'prompt_completion';
  if ('label' in obj) return 'classification';
  return null;
}

/**
 * The kind of a file: a folder or .txt is text, .csv is classification, anything else is JSONL
 * and judged by the keys of its first non-blank line that parses as a JSON object.
 */
export function detectKind(file: string): DataKind {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (fs.statSync(file).isDirectory()) return 'text';
  const ext = path.extname(file).toLowerCase();
  if (ext === '.txt') return 'text';
  if (ext === '.csv') return 'classification';
  let kind: DataKind | null = null;
  let firstProblem: DataError | null = null;
  const stop = new Error('stop');
  try {
    forEachLine(file, (line, lineNumber) => {
      if (line.trim() === '') return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        firstProblem ??= new DataError(file, lineNumber, 'not valid JSON, so the format cannot be detected');
        return;
      }
      if (!isPlainObject(parsed)) return;
      if (isPreferenceObject(parsed)) {
        throw new DataError(file, lineNumber, 'holds preference pairs (preferred/non-preferred or chosen/rejected answers): train on them with --method dpo or orpo (config key method)');
      }
      kind = kindOfObject(parsed);
      if (kind === null) {
        throw new DataError(file, lineNumber, `cannot tell the format from the keys ${JSON.stringify(Object.keys(parsed))}: expected "messages" (chat), "prompt"+"completion" (prompt_completion) or "text"+"label" (classification); name the format to get line errors`);
      }
      throw stop;
    }, 1 << 16);
  } catch (e) {
    if (e !== stop) throw e;
  }
  if (kind !== null) return kind;
  if (firstProblem) throw firstProblem;
  throw new Error(`${file}: no JSON lines found; expected JSONL (one JSON object per line), a .csv file or a .txt file`);
}

/** Reads and validates a data file (or a folder of .txt files). */
export function loadRecords(file: string, opts: LoadOptions = {}): LoadedRecords {
  const kind = opts.format ?? detectKind(file);
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  const result: LoadedRecords = { kind, records: [], skipped: [], blankLines: 0 };
  const reject = (e: unknown) => {
    if (!(e instanceof DataError) || !opts.skipInvalid) throw e;
    result.skipped.push({ file: e.file, line: e.line, error: e.message });
  };
  if (kind === 'text') {
    const files = fs.statSync(file).isDirectory() ? textFilesOf(file) : [file];
    for (const f of files) result.records.push({ kind: 'text', text: readWholeText(f), file: f, line: 1 });
    return result;
  }
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: a folder holds plain text (.txt files), not ${kind} data`);
  if (path.extname(file).toLowerCase() === '.csv') {
    if (kind !== 'classification') throw new Error(`${file}: CSV files hold classification data (text,label columns), not ${kind}`);
    readClassificationCSV(file, result, reject);
    return result;
  }
  forEachLine(file, (line, lineNumber) => {
    if (line.trim() === '') {
      result.blankLines++;
      return;
    }
    try {
      result.records.push(parseJSONLine(kind, line, file, lineNumber));
    } catch (e) {
      reject(e);
    }
  });
  return result;
}

/** A whole text file as one string (documents for evaluation; training streams instead). */
function readWholeText(file: string): string {
  const parts: string[] = [];
  forEachTextChunk(file, (piece) => parts.push(piece));
  return parts.join('');
}

/** A JSONL line that must hold a JSON object, and the function that throws this line's DataError. */
export function parseObjectLine(line: string, file: string, lineNumber: number): { obj: Record<string, unknown>; fail: (problem: string) => never } {
  const fail = (problem: string): never => {
    throw new DataError(file, lineNumber, problem);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (e) {
    return fail(`malformed JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(parsed)) return fail(`expected a JSON object but found ${Array.isArray(parsed) ? 'an array' : typeof parsed === 'object' ? 'null' : `a ${typeof parsed}`}`);
  return { obj: parsed, fail };
}

/** One JSONL line -> a record of the given kind, or a DataError naming the problem. */
export function parseJSONLine(kind: DataKind, line: string, file: string, lineNumber: number): DataRecord {
  const { obj, fail } = parseObjectLine(line, file, lineNumber);
  const origin = { file, line: lineNumber };
  const stringField = (name: string, value: unknown, where = `"${name}"`): string => {
    if (value === undefined) return fail(`missing field ${where}`);
    if (typeof value !== 'string') return fail(`field ${where} must be a string but is ${describe(value)}`);
    return value;
  };
  switch (kind) {
    case 'prompt_completion': {
      const prompt = stringField('prompt', obj.prompt);
      const completion = stringField('completion', obj.completion);
      if (completion.trim() === '') fail('field "completion" is empty: there is nothing to train on');
      return { kind, prompt, completion, ...origin };
    }
    case 'classification': {
      const text = stringField('text', obj.text);
      if (text.trim() === '') fail('field "text" is empty');
      return { kind, text, label: parseLabel(obj.label, fail), ...origin };
    }
    case 'chat': {
      const parsedMessages = parseMessages(obj.messages, 'messages', fail);
      for (const [i, m] of parsedMessages.entries()) {
        if (m.role === 'assistant' && m.weight !== 0 && m.content.trim() === '') fail(`messages[${i}].content is empty: an assistant message with weight 1 must have something to train on`);
      }
      if (!parsedMessages.some((m) => m.role === 'assistant')) fail('no assistant message: there is nothing to train on');
      if (!parsedMessages.some((m) => m.role === 'assistant' && m.weight !== 0)) fail('every assistant message has weight 0: there is nothing to train on');
      return { kind, messages: parsedMessages, ...origin };
    }
    case 'text':
      return fail('plain text is not read line by line');
  }
}

/**
 * A non-empty list of chat messages ({"role", "content", "weight"?}) named `field` in messages,
 * e.g. "messages" or "input.messages"; `fail` throws the line's DataError.
 */
export function parseMessages(value: unknown, field: string, fail: (problem: string) => never): ChatMessage[] {
  if (value === undefined) return fail(`missing field "${field}"`);
  if (!Array.isArray(value)) return fail(`field "${field}" must be an array but is ${describe(value)}`);
  if (value.length === 0) return fail(`field "${field}" is an empty array`);
  return value.map((m: unknown, i): ChatMessage => {
    const where = `${field}[${i}]`;
    if (!isPlainObject(m)) return fail(`${where} must be an object but is ${describe(m)}`);
    if (m.role === undefined) return fail(`missing field "${where}.role"`);
    if (typeof m.role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(m.role)) {
      return fail(`${where}.role: unknown role ${JSON.stringify(m.role)}; expected one of ${CHAT_ROLES.join(', ')}`);
    }
    const role = m.role as ChatRole;
    if (m.content === undefined) return fail(`missing field "${where}.content"`);
    if (typeof m.content !== 'string') return fail(`field "${where}.content" must be a string but is ${describe(m.content)}`);
    const message: ChatMessage = { role, content: m.content };
    if (m.weight !== undefined) {
      if (role !== 'assistant') fail(`${where}.weight: only assistant messages take a weight (this one is ${role})`);
      if (m.weight !== 0 && m.weight !== 1) fail(`${where}.weight must be 0 or 1 but is ${describe(m.weight)}`);
      message.weight = m.weight as 0 | 1;
    }
    return message;
  });
}

/**
 * Whether a parsed JSON line is a preference pair: OpenAI's {"input", "preferred_output",
 * "non_preferred_output"} or TRL's {"prompt"?, "chosen", "rejected"} (lib/data/preference.ts).
 */
export function isPreferenceObject(obj: Record<string, unknown>): boolean {
  return 'preferred_output' in obj || 'non_preferred_output' in obj || ('chosen' in obj && 'rejected' in obj);
}

function parseLabel(value: unknown, fail: (problem: string) => never): string {
  if (value === undefined) return fail('missing field "label"');
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return fail(`field "label" must be a string or a number but is ${describe(value)}`);
    return String(value);
  }
  if (typeof value !== 'string') return fail(`field "label" must be a string or a number but is ${describe(value)}`);
  if (value.trim() === '') return fail('field "label" is empty');
  return value;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value)}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value === 'number' ? 'the number' : `the ${typeof value}`} ${String(value)}`;
}

function readClassificationCSV(file: string, result: LoadedRecords, reject: (e: unknown) => void): void {
  let header: { columns: number; text: number; label: number } | null = null;
  const parser = new CSVParser(file, ({ fields, line }) => {
    if (header === null) {
      const names = fields.map((f) => f.trim().toLowerCase());
      const text = names.indexOf('text'), label = names.indexOf('label');
      if (text < 0 || label < 0) {
        // A plain Error, not a DataError: a bad header is never skipped, every row depends on it.
        throw new Error(`${file}:${line}: CSV header must name a "text" and a "label" column but is ${JSON.stringify(fields)}`);
      }
      header = { columns: fields.length, text, label };
      return;
    }
    try {
      if (fields.length !== header.columns) {
        throw new DataError(file, line, `expected ${header.columns} columns as in the header but found ${fields.length}`);
      }
      const text = fields[header.text], label = fields[header.label];
      if (text.trim() === '') throw new DataError(file, line, 'the "text" column is empty');
      if (label.trim() === '') throw new DataError(file, line, 'the "label" column is empty');
      result.records.push({ kind: 'classification', text, label, file, line });
    } catch (e) {
      reject(e);
    }
  }, () => result.blankLines++);
  forEachLine(file, (line, n) => {
    try {
      parser.pushLine(line, n);
    } catch (e) {
      parser.reset(); // the bad record is dropped (when skipping); the next line starts a new one
      reject(e);
    }
  });
  try {
    parser.finish();
  } catch (e) {
    reject(e);
  }
  if (header === null) throw new Error(`${file}: empty CSV file; expected a header row with "text" and "label" columns`);
}

/** Labels in a stable order: numeric-aware sort ("2" before "10"). */
export function sortedLabels(records: readonly DataRecord[]): string[] {
  const labels = new Set<string>();
  for (const r of records) if (r.kind === 'classification') labels.add(r.label);
  return [...labels].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}
