/**
 * Makes docs/dashboard.png: the live page of `gptune train --dashboard` while a short run trains
 * (the tiny test GPT-2 on data/held-out.txt, with validation and a sample prompt), captured in
 * Debian's Chromium through playwright-core. The run is interrupted once the picture is taken and
 * its folder removed.
 *
 *   npm run build:ts && node_modules/.bin/ts-node --transpile-only scripts/dashboard_screenshot.ts [--out docs/dashboard.png]
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const CHROMIUM = '/usr/bin/chromium';
/** The page is captured once the run passed this step, long before its end (it is interrupted then). */
const CAPTURE_AT_STEP = 400;

async function main(): Promise<void> {
  const outIndex = process.argv.indexOf('--out');
  const target = path.resolve(outIndex > 0 ? process.argv[outIndex + 1] : path.join(ROOT, 'docs', 'dashboard.png'));
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build:ts first`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  // The browser first: the run is quick, and the page must be open while it trains.
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-screenshot-'));
  const run = spawn(process.execPath, [
    CLI, 'train', '--model', 'test/fixtures/tiny-gpt2', '--data', 'data/held-out.txt',
    '--validation-fraction', '0.1', '--out', path.join(work, 'out'), '--steps', '3000', '--batch-size', '8', '--seq-len', '64',
    '--lr', '3e-3', '--warmup', '40', '--schedule', 'cosine', '--min-lr', '3e-4', '--eval-every', '25',
    '--sample-prompts', 'Every town on the estuary', '--sample-tokens', '24', '--dashboard', '0', '--quiet',
  ], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  run.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => run.once('exit', resolve));
  try {
    const deadline = Date.now() + 60000;
    let url: string | undefined;
    while (!(url = /dashboard at (\S+)/.exec(stderr)?.[1])) {
      if (run.exitCode !== null || Date.now() > deadline) throw new Error(`the run printed no dashboard URL: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const page = await browser.newPage({ viewport: { width: 980, height: 900 } });
    await page.goto(url);
    await page.waitForFunction((step) => Number(document.querySelector('#status')?.getAttribute('data-step')) >= step && document.querySelector('#samples') !== null,
      CAPTURE_AT_STEP, { timeout: 300000, polling: 200 });
    await page.screenshot({ path: target, fullPage: true });
    console.log(`${target}: ${fs.statSync(target).size} bytes`);
  } finally {
    await browser.close();
    if (run.exitCode === null) run.kill('SIGINT');
    await exited;
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`dashboard_screenshot: ${(e as Error).message}`);
  process.exit(1);
});
