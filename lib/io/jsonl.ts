/** Append-only JSON-lines logs: each line is written whole with one write call. */
import * as fs from 'fs';

export function appendLine(file: string, line: string): void {
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, line.endsWith('\n') ? line : line + '\n');
  } finally {
    fs.closeSync(fd);
  }
}
