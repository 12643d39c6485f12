/**
 * The training dashboard as a user sees it, in headless Chromium: the live page of `gptune train
 * --dashboard` while the run trains, report.html opened from disk, and `gptune dashboard RUN_DIR`
 * on a finished run. The plotted values are read from the SVG (data-points) and compared with what
 * the run logged (--log, OUT/metrics.jsonl); the best step with the lowest validation loss plotted.
 */
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';
import type { Browser, Page } from 'playwright-core';
import { spawnSync } from 'child_process';
import { tempDir, TINY } from '../helpers';
import { CLI, ROOT } from '../cli/run';
import { describeInBrowser, jsonLines, launchChromium, Points, readShown, Shown, startGptune, writeCorpus } from './browser';

const isEval = (l: Record<string, unknown>) => 'val_loss' in l;
const isStep = (l: Record<string, unknown>) => 'loss' in l && !isEval(l);

/** The validation point with the lowest loss (the first of equal ones: an evaluation improves only when strictly lower). */
function lowest(points: Points): [number, number] {
  return points.reduce((best, p) => (p[1] < best[1] ? p : best));
}

/** The shown curves against the first lines the run logged (the page may lag the log, never lead it). */
function expectCurvesFromLog(shown: Shown, lines: Array<Record<string, any>>): void {
  const steps = lines.filter(isStep), evals = lines.filter(isEval);
  const training = shown.series['Loss/training'], validation = shown.series['Loss/validation'];
  expect(training).toEqual(steps.slice(0, training.length).map((l) => [l.step, l.loss]));
  expect(validation).toEqual(evals.slice(0, validation.length).map((l) => [l.step, l.val_loss]));
  expect(shown.series['Token accuracy/training']).toEqual(steps.slice(0, training.length).map((l) => [l.step, l.token_accuracy]));
  expect(shown.series['Token accuracy/validation']).toEqual(evals.slice(0, validation.length).map((l) => [l.step, l.val_token_accuracy]));
  expect(shown.series['Learning rate/lr']).toEqual(steps.slice(0, training.length).map((l) => [l.step, l.lr]));
  expect(shown.series['Throughput/tokens/s']).toEqual(steps.slice(0, training.length).map((l) => [l.step, l.tokens_per_s]));
  // The best step: the lowest validation loss plotted, and what the run logged at that evaluation.
  expect(validation.length).toBeGreaterThan(0);
  expect(shown.bestStep).toBe(lowest(validation)[0]);
  expect(shown.bestStep).toBe(evals[validation.length - 1].best_step);
}

/** Opens `url` and waits until the curves hold at least `steps` training and `evals` validation points. */
async function openWhenDrawn(browser: Browser, url: string, steps: number, evals: number): Promise<{ page: Page; requests: string[] }> {
  const page = await browser.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url);
  await page.waitForFunction(([s, e]) => {
    const count = (name: string) => (document.querySelector(`polyline[data-series="${name}"]`)?.getAttribute('data-points') ?? '').trim().split(' ').filter(Boolean).length;
    return count('training') >= s && count('validation') >= e;
  }, [steps, evals] as const, { timeout: 90000, polling: 100 });
  return { page, requests };
}

describeInBrowser('the dashboard in Chromium', () => {
  let browser: Browser;
  const dir = tempDir('gptune-dashboard-');
  const data = writeCorpus(dir);
  const trainArgs = (out: string, steps: number) => [
    'train', '--model', TINY, '--data', data, '--validation-fraction', '0.1', '--out', out, '--steps', String(steps),
    '--batch-size', '16', '--seq-len', '48', '--eval-every', '20', '--sample-prompts', 'The gulls saw', '--sample-tokens', '8', '--quiet',
  ];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  test('train --dashboard 0: the live page draws the logged steps and losses as they come, the best step, the samples; report.html has them all', async () => {
    const out = path.join(dir, 'live'), log = path.join(dir, 'live.jsonl');
    // Long enough (1500 steps of 768 tokens) that the page is read while the run trains; it is interrupted then.
    const run = startGptune([...trainArgs(out, 1500), '--log', log, '--dashboard', '0']);
    let shown: Shown;
    try {
      const [, url] = await run.line(/^gptune train: dashboard at (http:\/\/127\.0\.0\.1:\d+\/)$/m);
      const { page, requests } = await openWhenDrawn(browser, url, 10, 2);
      const first = await readShown(page);
      // Live: the page follows the run without a reload.
      await page.waitForFunction((step) => Number(document.querySelector('#status')!.getAttribute('data-step')) > step, first.statusStep, { timeout: 60000 });
      shown = await readShown(page);
      // Read after the page: the log holds at least what the page shows.
      const logged = jsonLines(log);
      expect(shown.state).toBe('running');
      expect(shown.series['Loss/training'].length).toBeGreaterThan(first.series['Loss/training'].length);
      expectCurvesFromLog(shown, logged);
      expect(shown.series['Loss/training'].length).toBeLessThan(1500);
      // Samples of the latest evaluation shown, greedy continuations of the prompt.
      const samples = jsonLines(path.join(out, 'metrics.jsonl')).filter((l) => 'samples' in l);
      const latest = samples.find((l) => l.step === shown.samples!.step)!;
      expect(shown.samples!.step % 20).toBe(0);
      expect(shown.samples!.texts).toEqual([`The gulls saw${latest.samples[0].text}`]);
      // One self-contained page: every request went to the dashboard itself.
      expect(requests.length).toBeGreaterThan(1);
      expect(requests.filter((u) => !u.startsWith(url))).toEqual([]);
    } finally {
      run.child.kill('SIGINT');
    }
    // Ctrl-C: the step finishes, checkpoints/last and report.html are written, exit 1 ("interrupted").
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/interrupted by SIGINT/);

    const report = path.join(out, 'report.html');
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(report).href);
    const fromDisk = await readShown(page);
    const history = jsonLines(path.join(out, 'metrics.jsonl'));
    const steps = history.filter(isStep);
    expect(fromDisk.state).toBe('interrupted');
    // Every step of the run, as metrics.jsonl and --log hold them.
    expect(fromDisk.series['Loss/training']).toEqual(steps.map((l) => [l.step, l.loss]));
    expect(fromDisk.series['Loss/training'].length).toBeGreaterThan(shown.series['Loss/training'].length);
    expect(jsonLines(log).filter(isStep).map((l) => [l.step, l.loss])).toEqual(fromDisk.series['Loss/training']);
    expectCurvesFromLog(fromDisk, history);
    expect(requests).toEqual([pathToFileURL(report).href]);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, '.gptune-output.json'), 'utf8'));
    expect(manifest.entries).toEqual(expect.arrayContaining(['metrics.jsonl', 'report.html']));
  });

  test('gptune dashboard RUN_DIR: the page of a finished run, from its folder', async () => {
    const out = path.join(dir, 'finished');
    const r = spawnSync(process.execPath, [CLI, ...trainArgs(out, 60)], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const served = startGptune(['dashboard', out, '--port', '0']);
    try {
      const [, url] = await served.line(/^gptune dashboard: .* at (http:\/\/127\.0\.0\.1:\d+\/) \(Ctrl-C stops\)$/m);
      const { page } = await openWhenDrawn(browser, url, 60, 3);
      const shown = await readShown(page);
      const history = jsonLines(path.join(out, 'metrics.jsonl'));
      expect(shown.state).toBe('completed');
      expect(shown.statusStep).toBe(60);
      expect(shown.series['Loss/training']).toEqual(history.filter(isStep).map((l) => [l.step, l.loss]));
      expect(shown.series['Loss/validation'].map((p) => p[0])).toEqual([20, 40, 60]);
      expectCurvesFromLog(shown, history);
      expect(shown.bestStep).toBe(summary.best_step);
      expect(shown.samples!.step).toBe(60);
    } finally {
      served.child.kill('SIGINT');
    }
    expect(await served.exited).toBe(0);
  });
});
