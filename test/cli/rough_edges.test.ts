/**
 * Rough edges a new user hits (issue 14): each test here failed before its fix.
 * Run after `npx tsc -p tsconfig.json` (npm test does it): the tests spawn dist/lib/cli/main.js.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tokenStream } from '../../lib/cli/common';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { CLI, gptune, ROOT } from './run';

const dir = tempDir('gptune-rough-edges-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('eval --task lm on a JSONL file', () => {
  test.each([
    ['prompt_completion.jsonl', '--task generate'],
    ['chat.jsonl', '--task generate'],
    ['classification.jsonl', '--task classify'],
  ])('%s is refused in one line naming the file and %s, exit 2', (name, flag) => {
    const file = path.join(FIXTURES, 'data', name);
    const r = gptune('eval', '--model', TINY, '--data', file);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`--data ${file}`);
    expect(r.stderr).toContain(flag);
  });

  test('a text file with no .txt extension is still scored', () => {
    const file = path.join(dir, 'notes.md');
    fs.writeFileSync(file, '# Notes\nThe cat sat on the mat. {"not": "json at the start"}\n');
    const r = gptune('eval', '--model', TINY, '--data', file, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim()).tokens).toBeGreaterThan(0);
  });
});

describe('eval --task classify prints the majority-class baseline', () => {
  // 3 of 5 examples are "spam", the later label in sorted order: always answering "spam" scores 60%.
  const data = path.join(dir, 'spam.jsonl');
  fs.writeFileSync(data, ['ham', 'spam', 'spam', 'ham', 'spam'].map((label, i) => JSON.stringify({ text: `message ${i}`, label })).join('\n') + '\n');

  test('in the human report and in --json', () => {
    const human = gptune('eval', '--model', TINY, '--data', data, '--task', 'classify');
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('majority-class baseline (always "spam"): accuracy 60.00%');
    const json = gptune('eval', '--model', TINY, '--data', data, '--task', 'classify', '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout.trim()).majority_baseline).toEqual({ label: 'spam', accuracy: 0.6 });
  });
});

describe('did you mean', () => {
  test.each([
    [['train', '--lerning-rate', '1e-3'], 'gptune train: unknown flag --lerning-rate; did you mean --learning-rate?'],
    [['eval', '--modle', TINY], 'gptune eval: unknown flag --modle; did you mean --model?'],
    [['generate', '--no-eos-stpo'], 'gptune generate: unknown flag --no-eos-stpo; did you mean --no-eos-stop?'],
    [['tran', '--model', TINY], "gptune tran: unknown command 'tran'; did you mean train?"],
    [['evla'], "gptune evla: unknown command 'evla'; did you mean eval?"],
  ])('%j: one line naming the nearest, exit 2', (args, line) => {
    const r = gptune(...args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(line + '\n');
  });

  test('nothing near: no guess, a pointer to the help', () => {
    const r = gptune('eval', '--zzzzzz', '1');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('gptune eval: unknown flag --zzzzzz; see gptune eval --help\n');
  });
});

test('train takes a config key spelled as a flag (--learning-rate) as the short flag (--lr)', () => {
  const r = gptune('train', '--learning-rate', 'fast');
  expect(r.code).toBe(2);
  expect(r.stderr).toBe("gptune train: --lr: expected a number but received 'fast'\n");
});

describe('help texts', () => {
  const commands = ['info', 'eval', 'train', 'generate', 'chat', 'data', 'sample', 'score', 'merge', 'export', 'demo', 'download'];

  test.each(commands)('gptune %s --help names no source path', (command) => {
    const r = gptune(command, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/\blib\/|\.ts\b|\bnative\//);
  });

  test('gptune --help names no source path', () => {
    expect(gptune('--help').stdout).not.toMatch(/\blib\/|\.ts\b/);
  });

  // The published shapes (each model card's config.json and parameter count) that the presets copy.
  const PUBLISHED: Array<[string, RegExp]> = [
    ['gpt2', /12 layers, 12 heads, width 768, .*context 1024, vocab 50257, 124M parameters/],
    ['gpt2-medium', /24 layers, 16 heads, width 1024, .*355M parameters/],
    ['gpt2-large', /36 layers, 20 heads, width 1280, .*774M parameters/],
    ['gpt2-xl', /48 layers, 25 heads, width 1600, .*1\.56B parameters/],
    ['smollm2-135m', /30 layers, 9 heads \(3 key\/value\), width 576, MLP 1536, .*135M parameters/],
    ['qwen2.5-0.5b', /24 layers, 14 heads \(2 key\/value\), width 896, MLP 4864, .*494M parameters/],
    ['qwen2.5-1.5b', /28 layers, 12 heads \(2 key\/value\), width 1536, MLP 8960, .*1\.54B parameters/],
    ['qwen3-0.6b', /28 layers, 16 heads \(8 key\/value\), width 1024, MLP 3072, .*596M parameters/],
    ['llama-3.2-1b', /16 layers, 32 heads \(8 key\/value\), width 2048, MLP 8192, .*1\.24B parameters/],
  ];

  test.each(PUBLISHED)('train --help and the README list new:%s with its shape', (name, shape) => {
    const help = gptune('train', '--help').stdout.split('\n');
    const line = help.find((l) => l.trim().startsWith(`new:${name} `));
    expect(line).toMatch(shape);
    const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    expect(readme).toContain(`| \`new:${name}\` |`);
  });
});

describe('progress and streaming on a terminal', () => {
  test('tokenStream writes each token\'s text as it arrives; the pieces add up to the decoded text', () => {
    const tokenizer = loadTokenizer(TINY);
    // Multi-byte characters split over byte-level tokens: a piece must never end inside one.
    const text = 'Caf\u00e9 \u65e5\u672c\u8a9e and more words';
    const tokens = tokenizer.encode(text);
    const pieces: string[] = [];
    const stream = tokenStream(tokenizer, (piece) => pieces.push(piece));
    const afterEach: number[] = [];
    for (const t of tokens) {
      stream.onToken(t);
      afterEach.push(pieces.length);
    }
    stream.finish(tokens);
    expect(pieces.join('')).toBe(text);
    expect(pieces.join('')).not.toContain('\uFFFD');
    // Streaming: text came out before the last token, not all at the end.
    expect(afterEach[Math.floor(tokens.length / 2)]).toBeGreaterThan(1);
  });

  // `script` runs a command on a pseudo-terminal (util-linux), as a user's shell does.
  const onTTY = (args: string[]) => {
    const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const r = spawnSync('script', ['-qec', command, '/dev/null'], { cwd: ROOT, encoding: 'utf8' });
    return { code: r.status, output: r.stdout.replace(/\r\n/g, '\n') };
  };
  const hasScript = spawnSync('script', ['--version']).status === 0;
  (hasScript ? test : test.skip)('generate on a terminal prints the same text as through a pipe', () => {
    const args = ['generate', '--model', TINY, '--prompt', 'Hello there', '--max-new-tokens', '12', '--seed', '3'];
    const piped = gptune(...args);
    const tty = onTTY(args);
    expect(piped.code).toBe(0);
    expect(tty.code).toBe(0);
    expect(tty.output).toBe(piped.stdout);
  });

  (hasScript ? test : test.skip)('eval and sample show a progress line on a terminal (stderr), erased before the result; none through a pipe', () => {
    const data = path.join(FIXTURES, 'data', 'prompt_completion.jsonl');
    const args = ['eval', '--model', TINY, '--data', data, '--task', 'generate', '--max-new-tokens', '4'];
    const piped = gptune(...args);
    expect(piped.stderr).toBe('');
    const tty = onTTY(args);
    expect(tty.code).toBe(0);
    expect(tty.output).toMatch(/\reval --model: \d+\/\d+ examples \(\d+%\)\x1b\[K/);
    expect(tty.output.slice(tty.output.lastIndexOf('\r\x1b[K') + 4)).toBe(piped.stdout);
    const review = path.join(dir, 'review.md');
    const sample = onTTY(['sample', '--model', TINY, '--data', data, '--out', review, '--max-new-tokens', '4']);
    expect(sample.code).toBe(0);
    expect(sample.output).toMatch(/\rsample: \d+\/\d+ examples/);
  });
});
