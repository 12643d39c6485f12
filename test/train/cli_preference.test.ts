/**
 * `gptune train --method dpo` as a process, end to end on a small preference file: the reward accuracy
 * logged per step and per evaluation (metrics.jsonl, --log and the console), and bad preference lines as
 * one stderr line naming the file and line, with a non-zero exit and nothing written.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir, TINY } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');

function gptune(...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function pairs(n: number): string {
  const words = ['sea', 'whale', 'ship', 'gull', 'tide', 'reef'];
  return Array.from({ length: n }, (_, i) => JSON.stringify({
    prompt: `Q: say ${words[i % 6]}\nA:`, chosen: ` ${words[i % 6]}`, rejected: ` ${words[(i + 1) % 6]} ${words[(i + 3) % 6]}`,
  })).join('\n') + '\n';
}

test('a few DPO steps from the CLI: reward metrics per step and per evaluation, in the log and on the console', () => {
  const dir = tempDir('gptune-cli-dpo-');
  const data = path.join(dir, 'pairs.jsonl'), out = path.join(dir, 'out'), log = path.join(dir, 'log.jsonl');
  fs.writeFileSync(data, pairs(12));
  const r = gptune('train', '--model', TINY, '--data', data, '--out', out, '--method', 'dpo', '--beta', '0.2', '--steps', '4', '--batch-size', '2',
    '--seq-len', '24', '--lr', '3e-3', '--validation-fraction', '0.25', '--eval-every', '2', '--log', log);
  expect(r.code).toBe(0);
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const steps = lines.filter((l) => !('val_loss' in l)), evals = lines.filter((l) => 'val_loss' in l);
  expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
  for (const s of steps) for (const k of ['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies']) expect(typeof s[k]).toBe('number');
  expect(evals.map((e) => e.step)).toEqual([2, 4]);
  for (const e of evals) expect(e['val_rewards/accuracies']).toBeGreaterThanOrEqual(0);
  expect(r.stderr).toMatch(/step 1\/4 {2}loss 0\.6931 {2}reward acc 0\.00 margin 0\.0000/);
  expect(r.stderr).toMatch(/eval at step 2: val_loss \d\.\d{4} {2}reward accuracy \d+\.\d\d% {2}reward margin -?\d\.\d{4}/);
  expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toContain('"val_rewards/accuracies"');
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
  // The model card audits the pairs it trained on: pairs(12) repeats its 6 pairs once each (6 exact duplicates).
  const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
  expect(card).not.toContain('does not read preference pairs');
  expect(card).toContain('    splits: train 12 pairs (pairs.jsonl)');
  expect(card).toContain('    exact duplicates within splits: train 6');
  expect(card).toContain('    PII and secrets: 0 (none)');
});

test.each([
  ['an empty preferred output', { input: { messages: [{ role: 'user', content: 'q' }] }, preferred_output: [{ role: 'assistant', content: '' }], non_preferred_output: [{ role: 'assistant', content: 'no' }] }, /preferred_output\[0\]\.content is empty/],
  ['more than one preferred output', { input: { messages: [{ role: 'user', content: 'q' }] }, preferred_output: [{ role: 'assistant', content: 'a' }, { role: 'assistant', content: 'b' }], non_preferred_output: [{ role: 'assistant', content: 'no' }] }, /"preferred_output" has 2 messages/],
  ['prompts that differ', { chosen: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'x' }], rejected: [{ role: 'user', content: 'b' }, { role: 'assistant', content: 'y' }] }, /the prompts of chosen and rejected differ at message 1/],
])('bad input (%s): one line naming file and line, non-zero exit, nothing written', (_, bad, message) => {
  const dir = tempDir('gptune-cli-dpo-');
  const data = path.join(dir, 'pairs.jsonl'), out = path.join(dir, 'out');
  fs.writeFileSync(data, pairs(2) + JSON.stringify(bad) + '\n');
  const r = gptune('train', '--model', TINY, '--data', data, '--out', out, '--method', 'dpo', '--steps', '1');
  expect(r.code).not.toBe(0);
  const stderr = r.stderr.trim();
  expect(stderr.split('\n')).toHaveLength(1);
  expect(stderr).toContain(`${data}:3: `);
  expect(stderr).toMatch(message);
  expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
});
