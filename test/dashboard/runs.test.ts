/**
 * What a run writes for the dashboard, without a browser: the dashboard and the sample prompts leave
 * training bit for bit as it was; OUT/metrics.jsonl continues across --resume as one history; and
 * bad input (a port in use, a folder that is not a run, a damaged metrics.jsonl) is one line.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { parseFlags } from '../../lib/cli/args';
import { continueHistoryFile, RunHistory } from '../../lib/train/history';
import { FileFormatError } from '../../lib/errors';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { gptune } from '../cli/run';
import { jsonLines, startGptune } from './browser';

const DATA = path.join(FIXTURES, 'eval-text.txt');
const TRAIN = ['train', '--model', TINY, '--data', DATA, '--batch-size', '2', '--seq-len', '16', '--validation-fraction', '0.2', '--eval-every', '3', '--quiet'];

/** A port that a server of this test holds, so that nothing else can listen on it. */
async function occupiedPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, release: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A step line without its timings, which differ from run to run. */
function untimed(line: Record<string, unknown>): Record<string, unknown> {
  const { ms, tokens_per_s, elapsed_s, ...rest } = line;
  return rest;
}

test('the dashboard and greedy samples leave training bit for bit as it was', async () => {
  const dir = tempDir('gptune-dashboard-same-');
  const plain = path.join(dir, 'plain'), watched = path.join(dir, 'watched');
  const a = gptune(...TRAIN, '--out', plain, '--steps', '9', '--save-every', '9', '--log', path.join(dir, 'plain.jsonl'));
  expect(a.stderr).toBe('');
  expect(a.code).toBe(0);
  const run = startGptune([...TRAIN, '--out', watched, '--steps', '9', '--save-every', '9', '--log', path.join(dir, 'watched.jsonl'),
    '--dashboard', '0', '--sample-prompts', 'The gulls\nAt noon the', '--sample-tokens', '6']);
  // The page is fetched while the run goes on (a browser's first request and a poll).
  const [, url] = await run.line(/dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/);
  const page = await fetch(url);
  expect(page.status).toBe(200);
  expect(await page.text()).toMatch(/<svg /);
  expect(await run.exited).toBe(0);
  expect(run.stderr()).toBe(`gptune train: dashboard at ${url}\n`);
  for (const file of ['model.safetensors', path.join('checkpoints', 'last', 'optimizer.safetensors'), path.join('checkpoints', 'best', 'model.safetensors')]) {
    expect(fs.readFileSync(path.join(watched, file)).equals(fs.readFileSync(path.join(plain, file)))).toBe(true);
  }
  expect(jsonLines(path.join(dir, 'watched.jsonl')).map(untimed)).toEqual(jsonLines(path.join(dir, 'plain.jsonl')).map(untimed));
  // Samples after each evaluation (steps 3, 6, 9), one per prompt, greedy: the same text each time it is asked for the same weights.
  const samples = jsonLines(path.join(watched, 'metrics.jsonl')).filter((l) => 'samples' in l);
  expect(samples.map((s) => s.step)).toEqual([3, 6, 9]);
  expect(samples.every((s) => s.samples.map((x: { prompt: string }) => x.prompt).join('|') === 'The gulls|At noon the')).toBe(true);
  expect(samples.every((s) => s.samples.every((x: { text: string }) => x.text.length > 0))).toBe(true);
  // The sample at the end is the final model's: generate --greedy on the saved checkpoints/last gives the same text.
  const g = gptune('generate', '--model', path.join(watched, 'checkpoints', 'last'), '--prompt', 'The gulls', '--max-new-tokens', '6', '--greedy');
  expect(g.code).toBe(0);
  expect(g.stdout).toBe(`${samples[2].samples[0].text}\n`);
});

test('a resumed run continues OUT/metrics.jsonl: lines after the checkpoint are cut, the steps follow on once each', () => {
  const out = path.join(tempDir('gptune-dashboard-resume-'), 'out');
  const first = gptune(...TRAIN, '--out', out, '--steps', '8', '--save-every', '4');
  expect(first.code).toBe(0);
  const history = path.join(out, 'metrics.jsonl');
  expect(jsonLines(history).filter((l) => 'loss' in l).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  // Continue from step 4, as after a crash at step 8: steps 5-8 are trained again and logged once.
  const resumed = gptune('train', '--resume', path.join(out, 'checkpoints', 'step-4'), '--steps', '10', '--quiet');
  expect(resumed.stderr).toBe('');
  expect(resumed.code).toBe(0);
  const lines = jsonLines(history);
  expect(lines.filter((l) => 'loss' in l && !('val_loss' in l)).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  expect(lines.filter((l) => 'val_loss' in l).map((l) => l.step)).toEqual([3, 6, 9, 10]);
  expect(lines.filter((l) => 'start' in l).map((l) => [l.start.step, l.start.total_steps])).toEqual([[0, 8], [4, 10]]);
  expect(lines.filter((l) => 'end' in l).map((l) => [l.end.step, l.end.reason])).toEqual([[10, 'completed']]);
  const h = RunHistory.read(history);
  expect(h.end).toMatchObject({ step: 10, reason: 'completed' });
  expect(fs.readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('data-state="completed" data-step="10"');
  // --overwrite replaces the run, history included.
  const again = gptune(...TRAIN, '--out', out, '--steps', '3', '--overwrite');
  expect(again.code).toBe(0);
  expect(jsonLines(history).filter((l) => 'loss' in l && !('val_loss' in l)).map((l) => l.step)).toEqual([1, 2, 3]);
});

test('continueHistoryFile keeps the lines up to the step and rewrites the file only when it cuts; a skipped step reads as NaN', () => {
  const file = path.join(tempDir('gptune-history-'), 'metrics.jsonl');
  const lines = [
    { start: { step: 0, total_steps: 4, model: 'm', output_dir: null, time: 't' } },
    { step: 1, loss: 2.5, lr: 1, tokens_per_s: 10, elapsed_s: 0 },
    { step: 2, loss: null, lr: 1, tokens_per_s: 10, elapsed_s: 0, skipped: true },
    { step: 2, val_loss: 2.25, best_step: 2, best_val_loss: 2.25 },
    { step: 2, samples: [{ prompt: 'a', text: 'b' }] },
    { step: 3, loss: 2, lr: 1, tokens_per_s: 10, elapsed_s: 0 },
  ];
  const text = lines.map((l) => JSON.stringify(l) + '\n').join('');
  fs.writeFileSync(file, text);
  expect(continueHistoryFile(file, 3)).toHaveLength(6);
  expect(fs.readFileSync(file, 'utf8')).toBe(text);
  const kept = continueHistoryFile(file, 2);
  expect(kept).toHaveLength(5);
  expect(fs.readFileSync(file, 'utf8')).toBe(lines.slice(0, 5).map((l) => JSON.stringify(l) + '\n').join(''));
  const h = RunHistory.read(file);
  expect(h.steps.map((s) => s.loss)).toEqual([2.5, NaN]);
  expect(h.best).toEqual({ step: 2, valLoss: 2.25 });
  expect(h.samples).toEqual([{ step: 2, samples: [{ prompt: 'a', text: 'b' }] }]);
  // A line still being written (no newline yet) is not read; a damaged line is named.
  fs.appendFileSync(file, '{"step": 3, "lo');
  expect(RunHistory.read(file).steps).toHaveLength(2);
  fs.writeFileSync(file, text.replace('"val_loss":2.25', '"val_loss":2.25,'));
  expect(() => RunHistory.read(file)).toThrow(FileFormatError);
  expect(() => RunHistory.read(file)).toThrow(new RegExp(`^${file}:4: not a JSON line`));
});

test('--dashboard without a number takes the default port; with one, that port', () => {
  const flags = { dashboard: { type: 'int' as const, min: 0, withoutValue: 6066, help: '' }, quiet: { type: 'bool' as const, help: '' } };
  expect(parseFlags('train', ['--dashboard', '--quiet'], flags).values).toEqual({ dashboard: 6066, quiet: true });
  expect(parseFlags('train', ['--dashboard'], flags).values).toEqual({ dashboard: 6066 });
  expect(parseFlags('train', ['--dashboard', '0'], flags).values).toEqual({ dashboard: 0 });
  expect(parseFlags('train', ['--dashboard=7000'], flags).values).toEqual({ dashboard: 7000 });
  expect(() => parseFlags('train', ['--dashboard', 'x'], flags)).toThrow("train: --dashboard: expected a whole number but received 'x'");
});

describe('bad input: one line, non-zero exit', () => {
  test('train --dashboard on a port in use fails before training, naming the flag; nothing written', async () => {
    const held = await occupiedPort();
    try {
      const out = path.join(tempDir('gptune-dashboard-port-'), 'out');
      const r = gptune(...TRAIN, '--out', out, '--steps', '2', '--dashboard', String(held.port));
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`gptune train: --dashboard ${held.port}: port ${held.port} on 127.0.0.1 is in use by another program; give another port, or 0 for any free one\n`);
      expect(fs.existsSync(out)).toBe(false);
      const range = gptune(...TRAIN, '--out', out, '--steps', '2', '--dashboard', '70000');
      expect(range.code).toBe(2);
      expect(range.stderr).toBe("gptune train: --dashboard: expected a whole number in [0, 65536) or null but received number 70000\n");
      // A config file names the key.
      const config = path.join(path.dirname(out), 'run.yaml');
      fs.writeFileSync(config, `dashboard: ${held.port}\n`);
      const fromFile = gptune(...TRAIN, '--out', out, '--steps', '2', '--config', config);
      expect(fromFile.stderr).toMatch(/^gptune train: --dashboard \d+: port \d+ on 127\.0\.0\.1 is in use/);
    } finally {
      await held.release();
    }
  });

  test('gptune dashboard: a folder that is not a run, a missing one, a damaged metrics.jsonl, a port in use', async () => {
    const dir = tempDir('gptune-dashboard-bad-');
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    const notRun = gptune('dashboard', empty, '--port', '0');
    expect(notRun.code).toBe(2);
    expect(notRun.stderr).toBe(`gptune dashboard: ${empty}: not a gptune training run (no metrics.jsonl; gptune train writes it into its --out folder from the first step)\n`);
    const missing = gptune('dashboard', path.join(dir, 'nope'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`gptune dashboard: ${path.join(dir, 'nope')}: not found; expected a gptune train --out folder\n`);
    expect(gptune('dashboard').stderr).toBe('gptune dashboard: expected a run folder, e.g. gptune dashboard ./tuned\n');
    const damaged = path.join(dir, 'damaged');
    fs.mkdirSync(damaged);
    fs.writeFileSync(path.join(damaged, 'metrics.jsonl'), '{"step": 1, "loss": 2}\n{"step": 2, "los\n');
    const bad = gptune('dashboard', damaged, '--port', '0');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^gptune dashboard: ${path.join(damaged, 'metrics.jsonl')}:2: not a JSON line \\(.*\\)\\n$`));
    const wrongKind = path.join(dir, 'other.jsonl');
    fs.writeFileSync(wrongKind, '{"prompt": "a", "completion": "b"}\n');
    expect(gptune('dashboard', wrongKind, '--port', '0').stderr).toMatch(/other\.jsonl:1: expected "step" \(a whole number >= 0\), "start" or "end"\n$/);

    const run = path.join(dir, 'run');
    expect(gptune(...TRAIN, '--out', run, '--steps', '3').code).toBe(0);
    const held = await occupiedPort();
    try {
      const taken = gptune('dashboard', run, '--port', String(held.port));
      expect(taken.code).toBe(2);
      expect(taken.stderr).toBe(`gptune dashboard: --port ${held.port}: port ${held.port} on 127.0.0.1 is in use by another program; give another port, or 0 for any free one\n`);
    } finally {
      await held.release();
    }
  });
});
