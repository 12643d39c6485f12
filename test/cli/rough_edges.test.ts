/**
 * Rough edges a new user hits (issue 14): each test here failed before its fix.
 * Run after `npx tsc -p tsconfig.json` (npm test does it): the tests spawn dist/lib/cli/main.js.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { gptune } from './run';

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
