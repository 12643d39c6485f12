/**
 * Running one measurement in its own process, so that its peak RSS is its own: the child prints one
 * JSON line last (bench/train_step.ts, bench/generate_speed.ts, the PyTorch baselines).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');

export interface StepResult { tokens_per_s: number; ms_per_step: number; peak_rss_mb: number; [k: string]: unknown }

/** The child's last stdout line as JSON, or an error naming the command and its last stderr line. */
export function runJSON(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): StepResult | { error: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env, maxBuffer: 1 << 24 });
  const lines = (r.stdout || '').trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]) as StepResult;
  } catch {
    return { error: `${path.basename(cmd)} exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-1)[0]}` };
  }
}
