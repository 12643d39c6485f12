/** JSON files read whole (config.json-like files), with errors naming the file and line. */
import * as fs from 'fs';
import { FileFormatError } from '../errors';

/** JSON.parse with the error naming the file and line (JSON.parse itself gives a character position at best). */
export function readJSONFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FileFormatError(`${file}: cannot read (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message.split('\n')[0];
    const at = /position (\d+)/.exec(message);
    const line = at ? text.slice(0, Number(at[1])).split('\n').length : null;
    throw new FileFormatError(`${file}: not valid JSON${line !== null && !/line \d+/.test(message) ? ` (line ${line})` : ''}: ${message}`);
  }
}
