/**
 * `gptune train` as a process: a config file with flags overriding it, validation and checkpoints
 * from flags, config errors on one stderr line, and Ctrl-C (SIGINT/SIGTERM) writing a checkpoint
 * that a resumed run continues exactly (same losses as an uninterrupted run, across processes).
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { readTrainerState } from '../../lib/train/checkpoint_state';
import { FIXTURES, tempDir, TINY } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const DATA = path.join(FIXTURES, 'eval-text.txt');

function gptune(...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function logLines(file: string): Array<Record<string, number>> {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a YAML config with flags overriding it; validation, evaluation and checkpoints', () => {
  const dir = tempDir('gptune-cli-train-');
  const val = path.join(dir, 'val.txt');
  fs.writeFileSync(val, 'The gulls counted the waves past the lighthouse at noon. '.repeat(2));
  const out = path.join(dir, 'out'), log = path.join(dir, 'log.jsonl');
  const config = path.join(dir, 'run.yaml');
  fs.writeFileSync(config, [
    `model: ${TINY}`, `data: ${DATA}`, `validation: ${val}`, `output_dir: ${out}`, `log_file: ${log}`,
    'learning_rate: 1e-3', 'max_steps: 4', 'batch_size: 2', 'seq_len: 16', 'eval_every: 2', 'shuffle: false',
  ].join('\n'));
  const r = gptune('train', '--config', config, '--lr', '2e-3', '--quiet');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const lines = logLines(log);
  expect(lines.map((l) => ('val_loss' in l ? `eval ${l.step}` : `step ${l.step}`))).toEqual(['step 1', 'step 2', 'eval 2', 'step 3', 'step 4', 'eval 4']);
  expect(lines.filter((l) => !('val_loss' in l)).map((l) => l.lr)).toEqual([2e-3, 2e-3, 2e-3, 2e-3]);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
  const evals = lines.filter((l) => 'val_loss' in l);
  expect(summary).toMatchObject({ saved: out, steps: 4, reason: 'completed', val_loss: evals[1].val_loss, best_val_loss: Math.min(evals[0].val_loss, evals[1].val_loss) });
  expect(fs.readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['best', 'last']);
  const saved = JSON.parse(fs.readFileSync(path.join(out, 'checkpoints', 'last', 'train_config.json'), 'utf8'));
  expect([saved.learning_rate, saved.batch_size, saved.eval_every, saved.data]).toEqual([2e-3, 2, 2, DATA]);
  // output_dir is a model folder (best model) with the checkpoints, the run's history and its report beside it.
  expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'README.md', 'checkpoints', 'config.json', 'gptune_card.json', 'merges.txt', 'metrics.jsonl', 'model.safetensors', 'report.html', 'vocab.json']);
  const e = gptune('eval', '--model', out, '--data', DATA, '--json');
  expect(e.code).toBe(0);
});

test('config errors: one line naming the file and key, exit 2, nothing written', () => {
  const dir = tempDir('gptune-cli-train-');
  const out = path.join(dir, 'out');
  const config = path.join(dir, 'bad.yaml');
  fs.writeFileSync(config, `model: ${TINY}\ndata: ${DATA}\noutput_dir: ${out}\nwarmup_steps: ten\n`);
  const r = gptune('train', '--config', config);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain(`${config}: key 'warmup_steps': expected a whole number >= 0 but received the string "ten"`);
  const f = gptune('train', '--model', TINY, '--data', DATA, '--out', out, '--beta2', '1');
  expect(f.code).toBe(2);
  expect(f.stderr.trim()).toBe('gptune train: --beta2: expected a number in [0, 1) but received number 1');
  const v = gptune('train', '--model', TINY, '--data', DATA, '--out', out, '--eval-every', '5');
  expect(v.stderr).toMatch(/eval_every needs validation data/);
  expect(fs.existsSync(out)).toBe(false);
});

test('JSONL data through lib/data: an invalid line stops training (file:line), --skip-invalid counts it', () => {
  const dir = tempDir('gptune-cli-train-');
  const data = path.join(dir, 'train.jsonl');
  const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `Q${i}: ${i} plus one?`, completion: ` ${i + 1}` }));
  lines.splice(5, 0, '{"prompt": "no completion"}');
  fs.writeFileSync(data, lines.join('\n') + '\n');
  const out = path.join(dir, 'out');
  const args = ['train', '--model', TINY, '--data', data, '--out', out, '--steps', '2', '--batch-size', '2', '--seq-len', '24', '--quiet'];
  const bad = gptune(...args);
  expect(bad.code).toBe(1);
  expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  expect(bad.stderr).toContain(`${data}:6:`);
  expect(fs.existsSync(out)).toBe(false);
  const ok = gptune(...args, '--skip-invalid');
  expect(ok.code).toBe(0);
  const summary = JSON.parse(ok.stdout.trim().split('\n').pop()!);
  expect(summary.data).toMatchObject({ kind: 'prompt_completion', skipped_lines: 1 });
});

test('--help lists the config keys as flags with their defaults', () => {
  const r = gptune('train', '--help');
  expect(r.code).toBe(0);
  for (const flag of ['--config', '--validation', '--validation-fraction', '--eval-every', '--early-stopping-patience', '--save-every', '--save-total-limit', '--resume', '--epochs', '--format', '--template', '--packing', '--warmup-ratio']) {
    expect(r.stdout).toContain(flag);
  }
  expect(r.stdout).toMatch(/--lr N +peak learning rate \[default 0\.0003\]; config key learning_rate/);
});

describe.each(['SIGINT', 'SIGTERM'] as const)('%s', (signal) => {
  test('finishes the step, writes checkpoints/last, exits non-zero; --resume continues exactly', async () => {
    const dir = tempDir('gptune-cli-signal-');
    const out = path.join(dir, 'out'), log = path.join(dir, 'log.jsonl');
    const common = ['--model', TINY, '--data', DATA, '--batch-size', '2', '--seq-len', '16', '--lr', '2e-3', '--seed', '3', '--quiet'];
    const child = spawn(process.execPath, [CLI, 'train', ...common, '--out', out, '--steps', '1000000', '--log', log], { cwd: ROOT });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    let running = true;
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { running = false; resolve(code); }));
    // Wait for a few steps (bounded by the run, not a short clock: a loaded CI machine starts slowly), then interrupt.
    const deadline = Date.now() + 90_000;
    // Counts complete lines only: the trainer may be half-way through writing the next one.
    const written = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').length - 1 : 0);
    while (running && Date.now() < deadline && written() < 3) await sleep(50);
    expect(running).toBe(true);
    child.kill(signal);
    const code = await exited;
    expect(code).toBe(1);
    const steps = logLines(log).length;
    const last = path.join(out, 'checkpoints', 'last');
    expect(stderr.trim()).toBe(`gptune train: interrupted by ${signal} after step ${steps}; checkpoint written to ${last} (continue with --resume ${last})`);
    expect(readTrainerState(last).step).toBe(steps);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);

    // Resume with nothing but --resume and a new step count (and a new log).
    const resumedLog = path.join(dir, 'resumed.jsonl');
    const r = gptune('train', '--resume', out, '--steps', String(steps + 3), '--log', resumedLog, '--quiet');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const resumed = logLines(resumedLog);
    expect(resumed.map((l) => l.step)).toEqual([steps + 1, steps + 2, steps + 3]);
    // The uninterrupted run of the same length in another process: identical losses.
    const fullLog = path.join(dir, 'full.jsonl');
    const full = gptune('train', ...common, '--out', path.join(dir, 'full'), '--steps', String(steps + 3), '--log', fullLog);
    expect(full.code).toBe(0);
    const fullLines = logLines(fullLog);
    expect(resumed.map((l) => l.loss)).toEqual(fullLines.slice(steps).map((l) => l.loss));
    expect(logLines(log).map((l) => l.loss)).toEqual(fullLines.slice(0, steps).map((l) => l.loss));
  }, 240_000);
});

test('--gradient-checkpointing (or the config key) trains to the same losses and weights, and --resume continues exactly with it on or off', () => {
  const dir = tempDir('gptune-cli-checkpointing-');
  const common = ['--model', TINY, '--data', DATA, '--batch-size', '2', '--seq-len', '16', '--grad-accum', '2', '--lr', '2e-3', '--seed', '3', '--quiet'];
  const run = (name: string, ...args: string[]) => {
    const log = path.join(dir, `${name}.jsonl`);
    const r = gptune('train', ...args, '--log', log);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return logLines(log);
  };
  const plain = run('plain', ...common, '--out', path.join(dir, 'plain'), '--steps', '4');
  const checkpointed = run('checkpointed', ...common, '--gradient-checkpointing', '--out', path.join(dir, 'checkpointed'), '--steps', '4');
  const numbers = (lines: Array<Record<string, number>>) => lines.map((l) => [l.step, l.loss, l.grad_norm, l.token_accuracy]);
  expect(numbers(checkpointed)).toEqual(numbers(plain));
  const weights = (name: string) => fs.readFileSync(path.join(dir, name, 'model.safetensors'));
  expect(weights('checkpointed').equals(weights('plain'))).toBe(true);

  // Half the run with the config file's key and a checkpoint, then --resume (the checkpoint's config keeps the key).
  const config = path.join(dir, 'run.yaml');
  fs.writeFileSync(config, 'gradient_checkpointing: true\n');
  const first = run('first', '--config', config, ...common, '--out', path.join(dir, 'resumed'), '--steps', '2', '--save-every', '2');
  const last = path.join(dir, 'resumed', 'checkpoints', 'last');
  expect(JSON.parse(fs.readFileSync(path.join(last, 'train_config.json'), 'utf8')).gradient_checkpointing).toBe(true);
  const resumed = run('second', '--resume', last, '--steps', '4', '--quiet');
  expect(numbers([...first, ...resumed])).toEqual(numbers(plain));
  expect(weights('resumed').equals(weights('plain'))).toBe(true);
  // Switched off when resuming the same checkpoint (step-2): still exact.
  const switched = run('switched', '--resume', path.join(dir, 'resumed', 'checkpoints', 'step-2'), '--no-gradient-checkpointing', '--steps', '4', '--quiet');
  expect(numbers([...first, ...switched])).toEqual(numbers(plain));
  expect(JSON.parse(fs.readFileSync(path.join(last, 'train_config.json'), 'utf8')).gradient_checkpointing).toBe(false);
});
