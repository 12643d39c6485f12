/** Running the compiled CLI (dist/lib/cli/main.js, as the installed `gptune` bin) in tests. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from '../helpers';

export const ROOT = path.resolve(__dirname, '../..');
// `npm test` compiles first (tsc), so the CLI runs exactly as the installed `gptune` bin does.
export const CLI = path.join(ROOT, 'dist/lib/cli/main.js');

export function gptune(...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The last stdout line, parsed (with --json it is the result object). */
export function lastJSON(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

/** A command that must fail cleanly: non-zero exit, one stderr line matching `pattern`, nothing at `out`. */
export function expectCleanFailure(args: string[], pattern: RegExp, out?: string): void {
  const r = gptune(...args);
  expect(r.code).not.toBe(0);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
  if (out) expect(fs.existsSync(out)).toBe(false);
}

/** A copy of the model folder `from` in a fresh temp folder, changed by `mutate`. */
export function brokenModel(from: string, mutate: (dir: string) => void): string {
  const dir = path.join(tempDir(), 'model');
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  mutate(dir);
  return dir;
}
