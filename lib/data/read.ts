/**
 * Reading data files without holding them whole: text decoded in chunks (UTF-8 split across
 * chunk ends is carried over), lines numbered from 1, and CSV records parsed with RFC 4180
 * quoting (quoted fields may hold commas, doubled quotes and newlines).
 */
import * as fs from 'fs';

/** Bytes read per fs.readSync call: large enough to amortise the call, small next to memory. */
export const READ_CHUNK_BYTES = 4 << 20;

/**
 * Calls onText with consecutive pieces of the file's text, in order; their concatenation is the
 * whole file decoded as UTF-8 (invalid bytes become U+FFFD), without a leading byte-order mark.
 */
export function forEachTextChunk(file: string, onText: (text: string) => void, chunkBytes = READ_CHUNK_BYTES): void {
  const fd = fs.openSync(file, 'r');
  try {
    // ignoreBOM: false drops a leading U+FEFF, which editors on Windows like to add.
    const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });
    const buffer = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, chunkBytes, null);
      if (n === 0) break;
      const text = decoder.decode(buffer.subarray(0, n), { stream: true });
      if (text.length > 0) onText(text);
    }
    const rest = decoder.decode();
    if (rest.length > 0) onText(rest);
  } finally {
    fs.closeSync(fd);
  }
}

/** Calls onLine(line, lineNumber) for every line of the file ("\n" or "\r\n" endings, numbered from 1). */
export function forEachLine(file: string, onLine: (line: string, lineNumber: number) => void, chunkBytes = READ_CHUNK_BYTES): void {
  let carry = '';
  let lineNumber = 0;
  const emit = (line: string) => onLine(line.endsWith('\r') ? line.slice(0, -1) : line, ++lineNumber);
  forEachTextChunk(file, (text) => {
    let start = 0;
    let newline = text.indexOf('\n');
    if (newline >= 0 && carry.length > 0) {
      emit(carry + text.slice(0, newline));
      carry = '';
      start = newline + 1;
      newline = text.indexOf('\n', start);
    }
    while (newline >= 0) {
      emit(text.slice(start, newline));
      start = newline + 1;
      newline = text.indexOf('\n', start);
    }
    carry += text.slice(start);
  }, chunkBytes);
  // A last line without a newline is still a line; an empty one after a final "\n" is not.
  if (carry.length > 0) emit(carry);
}

/** A data-file problem at a line; message "FILE:LINE: problem". */
export class DataError extends Error {
  constructor(readonly file: string, readonly line: number, readonly problem: string) {
    super(`${file}:${line}: ${problem}`);
  }
}

export interface CSVRecord {
  fields: string[];
  /** Line where the record starts (a quoted field may continue on later lines). */
  line: number;
}

/**
 * Parses CSV (RFC 4180: comma-separated, fields optionally in double quotes, "" inside quotes is
 * one quote, quoted fields may span lines) line by line. Like Python's csv module, a quote inside
 * an unquoted field is kept as a literal character. After a closing quote only a comma or the end
 * of the line may follow; an unterminated quote at the end of the file is an error. Blank lines
 * outside quotes are passed to onBlank, not returned as records. Lines come from forEachLine, so
 * a "\r\n" inside a quoted field becomes "\n".
 */
export class CSVParser {
  private fields: string[] = [];
  private field = '';
  private inQuotes = false;
  private recordLine = 0;

  constructor(private readonly file: string, private readonly onRecord: (r: CSVRecord) => void, private readonly onBlank: (line: number) => void = () => {}) {}

  pushLine(line: string, lineNumber: number): void {
    if (!this.inQuotes) {
      if (line.trim() === '') {
        this.onBlank(lineNumber);
        return;
      }
      this.recordLine = lineNumber;
    } else {
      this.field += '\n'; // the newline the quoted field spans
    }
    let i = 0;
    const n = line.length;
    // At the top of the loop we are at the start of a field unless inQuotes continues one.
    let atFieldStart = !this.inQuotes;
    while (i <= n) {
      if (this.inQuotes) {
        const quote = line.indexOf('"', i);
        if (quote < 0) {
          this.field += line.slice(i);
          return; // the record continues on the next line
        }
        this.field += line.slice(i, quote);
        if (line.charCodeAt(quote + 1) === 0x22) {
          this.field += '"';
          i = quote + 2;
          continue;
        }
        this.inQuotes = false;
        i = quote + 1;
        if (i < n && line[i] !== ',') {
          throw new DataError(this.file, lineNumber, `CSV: expected a comma or the end of the line after a closing quote but found ${JSON.stringify(line[i])}`);
        }
        atFieldStart = false;
        continue;
      }
      if (atFieldStart && line[i] === '"') {
        this.inQuotes = true;
        atFieldStart = false;
        i++;
        continue;
      }
      const comma = line.indexOf(',', i);
      const end = comma < 0 ? n : comma;
      this.field += line.slice(i, end);
      this.fields.push(this.field);
      this.field = '';
      if (comma < 0) break;
      i = comma + 1;
      atFieldStart = true;
      if (i === n) {
        // A trailing comma: one more, empty, field.
        this.fields.push('');
        break;
      }
    }
    const record = { fields: this.fields, line: this.recordLine };
    this.fields = [];
    this.onRecord(record);
  }

  /** Forgets a partly parsed record (after an error in it). */
  reset(): void {
    this.fields = [];
    this.field = '';
    this.inQuotes = false;
  }

  /** Call after the last line: an open quoted field is an error. */
  finish(): void {
    if (this.inQuotes) throw new DataError(this.file, this.recordLine, 'CSV: a quoted field is not closed before the end of the file');
  }
}
