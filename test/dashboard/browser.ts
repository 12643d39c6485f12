/**
 * What the dashboard tests share: Debian's Chromium driven by playwright-core (skipped with a reason
 * where it is missing, a failure under CI=true), training runs as processes, and reading the plotted
 * values back from the page's SVG (its polylines' data-points), not from pixels.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Browser, Page } from 'playwright-core';
import { CLI, ROOT } from '../cli/run';

export const CHROMIUM = '/usr/bin/chromium';
export const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const reason = `skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`;

/**
 * `describe` for the tests that need Chromium: skipped with the reason in its name where it is
 * missing, except under CI=true, where a missing browser is a failing test instead.
 */
export function describeInBrowser(name: string, body: () => void): void {
  if (HAVE_CHROMIUM) {
    describe(name, body);
  } else if (process.env.CI === 'true') {
    test(`${name}: Chromium is required under CI`, () => {
      throw new Error(`${CHROMIUM} is missing: .ci/run installs it (apt-get install -y chromium)`);
    });
  } else {
    describe.skip(`${name} (${reason})`, body);
  }
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** One plotted series as numbers: [x, y] pairs from data-points. */
export type Points = Array<[number, number]>;

/** What the page shows: every polyline's series per panel title, the best step, the status and the samples. */
export interface Shown {
  /** `${panel title}/${series name}` -> points. */
  series: Record<string, Points>;
  bestStep: number | null;
  statusStep: number;
  state: string;
  samples: { step: number; texts: string[] } | null;
}

/** Reads the page's plotted data (the SVG's polylines) and figures. */
export async function readShown(page: Page): Promise<Shown> {
  return page.evaluate(() => {
    const series: Record<string, Array<[number, number]>> = {};
    const svg = document.querySelector('#curves svg')!;
    // Panels are drawn in order: a bold title text, then that panel's polylines.
    let title = '';
    for (const el of Array.from(svg.children)) {
      if (el.tagName === 'text' && el.getAttribute('font-weight') === 'bold') title = el.textContent ?? '';
      if (el.tagName === 'polyline') {
        const values = (el.getAttribute('data-points') ?? '').trim();
        series[`${title}/${el.getAttribute('data-series')}`] = values === '' ? [] : values.split(' ').map((p) => p.split(',').map(Number) as [number, number]);
      }
    }
    const best = document.querySelector('#best')!.getAttribute('data-step');
    const status = document.querySelector('#status')!;
    const samples = document.querySelector('#samples');
    return {
      series,
      bestStep: best === null ? null : Number(best),
      statusStep: Number(status.getAttribute('data-step')),
      state: status.getAttribute('data-state') ?? '',
      samples: samples === null ? null : { step: Number(samples.getAttribute('data-step')), texts: Array.from(samples.querySelectorAll('pre')).map((p) => p.textContent ?? '') },
    };
  });
}

/** A gptune process whose stderr is collected; `line(pattern)` waits for a stderr line matching it. */
export interface Running {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  line(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function startGptune(args: string[]): Running {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '', out = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child, exited, stderr: () => err, stdout: () => out,
    async line(pattern, timeoutMs = 60000) {
      const started = Date.now();
      for (;;) {
        const m = err.match(pattern);
        if (m) return m;
        if (child.exitCode !== null || Date.now() - started > timeoutMs) throw new Error(`no stderr line matching ${pattern}; stderr: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** The lines of a JSONL file, parsed (a skipped step's null loss as NaN, as the dashboard reads it). */
export function jsonLines(file: string): Array<Record<string, any>> {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

/** A text file long enough for a few hundred distinct training windows of the tiny model. */
export function writeCorpus(dir: string): string {
  const words = ['gulls', 'waves', 'lighthouse', 'noon', 'harbour', 'rope', 'keeper', 'lantern', 'tide', 'storm', 'sail', 'shore'];
  const lines: string[] = [];
  for (let i = 0; i < 400; i++) lines.push(`The ${words[i % 12]} saw the ${words[(i * 5 + 3) % 12]} by the ${words[(i * 7 + 1) % 12]} at ${i}.`);
  const file = path.join(dir, 'corpus.txt');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
