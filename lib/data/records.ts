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
 * and the four tasks (issue 16), each trained as a prompt and an answer:
 *
 *   qa                 JSONL {"context": string, "question": string, "answers": [string, ...]}, or SQuAD's
 *                      {"answers": {"text": [string, ...], "answer_start": [...]}}; the first answer is
 *                      trained on, every one is a gold answer in evaluation. An answer that is not in its
 *                      context is a warning (counted), not an error: abstractive QA data has such answers.
 *   ner                JSONL {"tokens": [string, ...], "tags": [string, ...]} in IOB2 (O, B-TYPE, I-TYPE),
 *                      or a CoNLL-2003 column file: one token per line, the token first and the tag last
 *                      (columns split at whitespace), sentences separated by blank lines, -DOCSTART- lines
 *                      skipped. A record's line is its first token's; a bad tag names its own line.
 *   translation        JSONL {"source": string, "target": string}
 *   summarization      JSONL {"document": string, "summary": string}
 *
 * The kind is detected from the file (.txt or a folder: text; .csv: classification; .conll, .iob,
 * .bio or a first line "-DOCSTART-": ner; otherwise the keys of the first JSON line) unless named. Every line is validated; a bad line is a DataError
 * "FILE:LINE: problem" unless skipInvalid, which returns it in `skipped` instead. Blank lines are
 * not examples: they are counted, never errors. Other keys on a JSON line are ignored.
 */
import * as fs from 'fs';
import * as path from 'path';
import { findTagProblem } from './ner';
import { CSVParser, DataError, forEachLine, forEachTextChunk } from './read';

export type TaskKind = 'qa' | 'ner' | 'translation' | 'summarization';
export const TASK_KINDS: readonly TaskKind[] = ['qa', 'ner', 'translation', 'summarization'];
export type DataKind = 'text' | 'prompt_completion' | 'chat' | 'classification' | TaskKind;
export const DATA_KINDS: readonly DataKind[] = ['text', 'prompt_completion', 'chat', 'classification', ...TASK_KINDS];

export function isTaskKind(kind: DataKind): kind is TaskKind {
  return (TASK_KINDS as readonly string[]).includes(kind);
}

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
  | ({ kind: 'classification'; text: string; label: string } & RecordOrigin)
  | ({ kind: 'qa'; context: string; question: string; answers: string[] } & RecordOrigin)
  | ({ kind: 'ner'; tokens: string[]; tags: string[] } & RecordOrigin)
  | ({ kind: 'translation'; source: string; target: string } & RecordOrigin)
  | ({ kind: 'summarization'; document: string; summary: string } & RecordOrigin);

export type TextRecord = Extract<DataRecord, { kind: 'text' }>;
export type PromptCompletionRecord = Extract<DataRecord, { kind: 'prompt_completion' }>;
export type ChatRecord = Extract<DataRecord, { kind: 'chat' }>;
export type ClassificationRecord = Extract<DataRecord, { kind: 'classification' }>;
export type QARecord = Extract<DataRecord, { kind: 'qa' }>;
export type NERRecord = Extract<DataRecord, { kind: 'ner' }>;
export type TranslationRecord = Extract<DataRecord, { kind: 'translation' }>;
export type SummarizationRecord = Extract<DataRecord, { kind: 'summarization' }>;
export type TaskRecord = QARecord | NERRecord | TranslationRecord | SummarizationRecord;

export interface SkippedLine {
  file: string;
  line: number;
  /** The whole message, "FILE:LINE: problem". */
  error: string;
}

/** A line that is valid but worth a look (a QA answer not found in its context). */
export interface RecordWarning {
  file: string;
  line: number;
  /** The whole message, "FILE:LINE: warning". */
  warning: string;
}

export interface LoadedRecords {
  kind: DataKind;
  records: DataRecord[];
  /** Lines rejected with skipInvalid (empty otherwise: without it the first bad line throws). */
  skipped: SkippedLine[];
  /** Valid lines with a warning, in file order. */
  warnings: RecordWarning[];
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
  if ('tokens' in obj || 'tags' in obj) return 'ner';
  if ('question' in obj && ('context' in obj || 'answers' in obj)) return 'qa';
  if ('source' in obj && 'target' in obj) return 'translation';
  if ('document' in obj || 'summary' in obj) return 'summarization';
  return null;
}

/** Extensions of CoNLL column files (NER); .txt stays plain text, name the format for a CoNLL .txt. */
const CONLL_EXTENSIONS = ['.conll', '.conll03', '.conllu', '.iob', '.iob2', '.bio'];

/** Whether a NER file is JSONL (its first non-blank line is a JSON object) rather than CoNLL columns. */
function isJSONLines(file: string): boolean {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.json') return true;
  if (CONLL_EXTENSIONS.includes(ext)) return false;
  let first: string | null = null;
  const stop = new Error('stop');
  try {
    forEachLine(file, (line) => {
      if (line.trim() === '') return;
      first = line.trim();
      throw stop;
    }, 1 << 16);
  } catch (e) {
    if (e !== stop) throw e;
  }
  return first !== null && (first as string).startsWith('{');
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
  if (CONLL_EXTENSIONS.includes(ext)) return 'ner';
  let kind: DataKind | null = null;
  let firstProblem: DataError | null = null;
  const stop = new Error('stop');
  try {
    forEachLine(file, (line, lineNumber) => {
      if (line.trim() === '') return;
      if (kind === null && firstProblem === null && line.startsWith('-DOCSTART-')) {
        kind = 'ner';
        throw stop;
      }
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
        throw new DataError(file, lineNumber, `cannot tell the format from the keys ${JSON.stringify(Object.keys(parsed))}: expected "messages" (chat), "prompt"+"completion" (prompt_completion), "text"+"label" (classification), "context"+"question"+"answers" (qa), "tokens"+"tags" (ner), "source"+"target" (translation) or "document"+"summary" (summarization); name the format to get line errors`);
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
  const result: LoadedRecords = { kind, records: [], skipped: [], warnings: [], blankLines: 0 };
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
  if (kind === 'ner' && !isJSONLines(file)) {
    readCoNLL(file, result, reject);
    return result;
  }
  forEachLine(file, (line, lineNumber) => {
    if (line.trim() === '') {
      result.blankLines++;
      return;
    }
    try {
      const record = parseJSONLine(kind, line, file, lineNumber);
      result.records.push(record);
      const warning = recordWarning(record);
      if (warning !== null) result.warnings.push({ file, line: lineNumber, warning: `${file}:${lineNumber}: ${warning}` });
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
  const nonEmptyString = (name: string): string => {
    const value = stringField(name, obj[name]);
    if (value.trim() === '') fail(`field "${name}" is empty`);
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
    case 'qa': {
      const context = nonEmptyString('context');
      const question = nonEmptyString('question');
      return { kind, context, question, answers: parseAnswers(obj.answers, fail), ...origin };
    }
    case 'ner': {
      const tokens = stringArray(obj.tokens, 'tokens', fail);
      const tags = stringArray(obj.tags, 'tags', fail);
      if (tokens.length === 0) fail('field "tokens" is an empty array');
      if (tags.length !== tokens.length) fail(`"tokens" has ${tokens.length} items but "tags" has ${tags.length}: expected one tag per token`);
      tokens.forEach((t, i) => {
        if (t.trim() === '' || /\s/.test(t)) fail(`tokens[${i}] is ${describe(t)}: a token is non-empty and holds no whitespace`);
      });
      const problem = findTagProblem(tags);
      if (problem !== null) fail(`tags[${problem.position}]: ${problem.problem}`);
      return { kind, tokens, tags, ...origin };
    }
    case 'translation':
      return { kind, source: nonEmptyString('source'), target: nonEmptyString('target'), ...origin };
    case 'summarization':
      return { kind, document: nonEmptyString('document'), summary: nonEmptyString('summary'), ...origin };
    case 'text':
      return fail('plain text is not read line by line');
  }
}

/** A QA answer missing from its context, the one warning a valid record can carry. */
function recordWarning(record: DataRecord): string | null {
  if (record.kind !== 'qa') return null;
  const missing = record.answers.filter((a) => !record.context.includes(a));
  if (missing.length === 0) return null;
  return `answer ${JSON.stringify(missing[0])} is not in the context${missing.length > 1 ? ` (nor are ${missing.length - 1} more)` : ''}`;
}

/** ["a", "b"] or SQuAD's {"text": ["a", "b"], "answer_start": [..]}: at least one non-empty answer. */
function parseAnswers(value: unknown, fail: (problem: string) => never): string[] {
  if (value === undefined) return fail('missing field "answers"');
  const texts = isPlainObject(value) ? value.text : value;
  const where = isPlainObject(value) ? '"answers.text"' : '"answers"';
  if (texts === undefined) return fail(`missing field ${where}`);
  if (!Array.isArray(texts)) return fail(`field ${where} must be an array of strings but is ${describe(texts)}`);
  if (texts.length === 0) return fail(`field ${where} is an empty array: a question needs at least one gold answer (unanswerable SQuAD 2.0 questions are not supported)`);
  return texts.map((t: unknown, i) => {
    if (typeof t !== 'string') return fail(`${where.slice(0, -1)}[${i}]" must be a string but is ${describe(t)}`);
    if (t.trim() === '') return fail(`${where.slice(0, -1)}[${i}]" is empty`);
    return t;
  });
}

function stringArray(value: unknown, name: string, fail: (problem: string) => never): string[] {
  if (value === undefined) return fail(`missing field "${name}"`);
  if (!Array.isArray(value)) return fail(`field "${name}" must be an array of strings but is ${describe(value)}`);
  value.forEach((item: unknown, i) => {
    if (typeof item !== 'string') fail(`${name}[${i}] must be a string but is ${describe(item)}`);
  });
  return value as string[];
}

/**
 * A CoNLL-2003 column file: one "TOKEN ... TAG" line per token, blank lines between sentences,
 * "-DOCSTART-" lines (document boundaries) skipped. Each sentence is one ner record at its first line.
 */
function readCoNLL(file: string, result: LoadedRecords, reject: (e: unknown) => void): void {
  let tokens: string[] = [];
  let tags: string[] = [];
  let lines: number[] = [];
  let bad: DataError | null = null; // the first problem of the current sentence
  const finishSentence = () => {
    if (tokens.length > 0) {
      const problem = bad === null ? findTagProblem(tags) : null;
      if (bad === null && problem !== null) bad = new DataError(file, lines[problem.position], `token ${problem.position + 1} of the sentence: ${problem.problem}`);
      if (bad !== null) reject(bad);
      else result.records.push({ kind: 'ner', tokens, tags, file, line: lines[0] });
    }
    tokens = [];
    tags = [];
    lines = [];
    bad = null;
  };
  forEachLine(file, (line, lineNumber) => {
    const columns = line.trim().split(/\s+/);
    if (line.trim() === '') {
      if (tokens.length === 0) result.blankLines++;
      finishSentence();
      return;
    }
    if (columns[0] === '-DOCSTART-') {
      finishSentence();
      return;
    }
    if (columns.length < 2) {
      bad ??= new DataError(file, lineNumber, `expected a token and a tag separated by whitespace but found ${JSON.stringify(line.trim())} (CoNLL: TOKEN ... TAG per line)`);
    }
    tokens.push(columns[0]);
    tags.push(columns[columns.length - 1]);
    lines.push(lineNumber);
  });
  finishSentence();
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
