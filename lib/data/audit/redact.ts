/**
 * A redacted copy of a data file: the same format, every PII find (pii.ts) replaced by its kind's
 * placeholder ([EMAIL], [CREDIT_CARD], ...). Lines with nothing to redact are copied byte for byte
 * (line endings become "\n"); a JSONL line with a find is written back with JSON.stringify (every
 * string value redacted, including keys the format does not read, such as an "id"); a CSV record
 * with a find is written back with RFC 4180 quoting. The copy is written atomically and never over
 * an existing file or the input.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UsageError } from '../../errors';
import { writeDirAtomic, writeFileAtomic } from '../../io/atomic';
import { CSVParser, forEachLine, forEachTextChunk } from '../read';
import { isPreferenceFile } from '../preference';
import { DataKind, detectKind, textFilesOf } from '../records';
import { PII_KINDS, PIIKind, redactPII } from './pii';

export interface RedactionSummary {
  input: string;
  output: string;
  /** The data's kind; 'preference' for DPO/ORPO pairs (JSONL, every string of a line redacted). */
  kind: DataKind | 'preference';
  /** Finds replaced, per kind. */
  replaced: Record<PIIKind, number>;
  total: number;
  /** Lines (JSONL), records (CSV) or documents (text) that changed. */
  changed: number;
}

function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}

/** "a,b" / "\"x, y\"": a CSV field quoted when it holds a comma, quote, CR or LF (RFC 4180). */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Every string in a parsed JSON value redacted (object keys kept); `count` receives each find. */
function redactJSON(value: unknown, count: (kind: PIIKind) => void): unknown {
  if (typeof value === 'string') {
    const r = redactPII(value);
    for (const s of r.spans) count(s.kind);
    return r.text;
  }
  if (Array.isArray(value)) return value.map((v) => redactJSON(v, count));
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactJSON(v, count)]));
  return value;
}

function readWhole(file: string): string {
  const parts: string[] = [];
  forEachTextChunk(file, (p) => parts.push(p));
  return parts.join('');
}

/**
 * Writes the redacted copy of `input` (a JSONL, CSV or .txt file, or a folder of .txt files) to
 * `output`. Throws UsageError when `output` exists or is the input, DataError on a CSV record that
 * cannot be parsed (nothing is written then).
 */
export function redactFile(input: string, output: string, format?: DataKind): RedactionSummary {
  if (!fs.existsSync(input)) throw new UsageError(`${input}: file not found`);
  if (sameFile(input, output)) throw new UsageError(`--redact ${output}: is the input file; the redacted copy needs another name`);
  if (fs.existsSync(output)) throw new UsageError(`--redact ${output}: already exists; gptune does not overwrite it (choose a new name)`);
  const kind = format ?? (fs.statSync(input).isFile() && isPreferenceFile(input) ? 'preference' : detectKind(input));
  const replaced = Object.fromEntries(PII_KINDS.map((k) => [k, 0])) as Record<PIIKind, number>;
  let total = 0, changed = 0;
  const count = (kind: PIIKind) => {
    replaced[kind]++;
    total++;
  };
  const redactText = (text: string): string => {
    const r = redactPII(text);
    for (const s of r.spans) count(s.kind);
    if (r.spans.length > 0) changed++;
    return r.text;
  };

  if (kind === 'text') {
    if (fs.statSync(input).isDirectory()) {
      const files: Record<string, string> = {};
      for (const f of textFilesOf(input)) files[path.basename(f)] = redactText(readWhole(f));
      writeDirAtomic(output, files);
    } else {
      writeFileAtomic(output, redactText(readWhole(input)));
    }
    return { input, output, kind, replaced, total, changed };
  }
  if (fs.statSync(input).isDirectory()) throw new UsageError(`${input}: a folder holds plain text (.txt files), not ${kind} data`);

  const lines: string[] = [];
  if (path.extname(input).toLowerCase() === '.csv') {
    // Raw lines of the record being parsed: copied as they are unless a field had a find.
    let pending: string[] = [];
    const parser = new CSVParser(input, ({ fields }) => {
      const before = total;
      const redacted = fields.map((f) => {
        const r = redactPII(f);
        for (const s of r.spans) count(s.kind);
        return r.text;
      });
      if (total > before) {
        changed++;
        lines.push(redacted.map(csvField).join(','));
      } else {
        lines.push(...pending);
      }
      pending = [];
    }, () => {
      lines.push(...pending);
      pending = [];
    });
    forEachLine(input, (line, n) => {
      pending.push(line);
      parser.pushLine(line, n);
    });
    parser.finish();
  } else {
    forEachLine(input, (line, n) => {
      if (line.trim() === '') {
        lines.push(line);
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        // A line that is not JSON (kept with --skip-invalid) is redacted as text: placeholders hold no quote or backslash.
        lines.push(redactText(line));
        return;
      }
      const before = total;
      const redacted = redactJSON(parsed, count);
      if (total > before) {
        changed++;
        lines.push(JSON.stringify(redacted));
      } else {
        lines.push(line);
      }
    });
  }
  writeFileAtomic(output, lines.length > 0 ? lines.join('\n') + '\n' : '');
  return { input, output, kind, replaced, total, changed };
}
