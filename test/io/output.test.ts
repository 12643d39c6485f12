/**
 * Output folders: gptune writes into a new or empty folder or its own previous output (listed in
 * .gptune-output.json), replaces only what it listed, and refuses anything else naming it. The demo's
 * --out (what `npm start` writes again and again) follows the same rule.
 */
import * as fs from 'fs';
import * as path from 'path';
import { prepareDemoOutput } from '../../lib/demo/run';
import { UsageError } from '../../lib/errors';
import { OUTPUT_MANIFEST, planOutputFolder, prepareOutputFolder } from '../../lib/io/output';
import { tempDir } from '../helpers';

const options = (mode: 'new' | 'replace' | 'continue') => ({
  label: '--out', writer: 'test', mode, entries: ['model.bin', 'checkpoints'], replaceHint: 'add --overwrite to replace it',
});

function manifestEntries(dir: string): string[] {
  return JSON.parse(fs.readFileSync(path.join(dir, OUTPUT_MANIFEST), 'utf8')).entries;
}

describe('prepareOutputFolder', () => {
  test('releaseIfUnused: a folder holding only the manifest goes back to how it was; anything else stays', () => {
    const created = path.join(tempDir(), 'new-out');
    prepareOutputFolder(created, options('new')).releaseIfUnused();
    expect(fs.existsSync(created)).toBe(false);
    const existing = tempDir();
    prepareOutputFolder(existing, options('new')).releaseIfUnused();
    expect(fs.readdirSync(existing)).toEqual([]);
    const used = tempDir();
    const folder = prepareOutputFolder(used, options('new'));
    fs.mkdirSync(path.join(used, 'checkpoints'));
    folder.releaseIfUnused();
    expect(fs.readdirSync(used).sort()).toEqual([OUTPUT_MANIFEST, 'checkpoints']);
  });

  test('a missing folder is created (parents too) with a manifest listing what will be written', () => {
    const dir = path.join(tempDir(), 'a', 'b');
    prepareOutputFolder(dir, options('new'));
    expect(fs.readdirSync(dir)).toEqual([OUTPUT_MANIFEST]);
    expect(manifestEntries(dir)).toEqual(['checkpoints', 'model.bin']);
  });

  test('modes on a previous output: new refuses, continue keeps it, replace removes only the listed entries', () => {
    const dir = tempDir();
    const folder = prepareOutputFolder(dir, options('new'));
    fs.writeFileSync(path.join(dir, 'model.bin'), 'v1');
    fs.mkdirSync(path.join(dir, 'checkpoints'));
    fs.writeFileSync(path.join(dir, 'checkpoints', 'step-1'), 'x');
    folder.record(['log.jsonl']);
    fs.writeFileSync(path.join(dir, 'log.jsonl'), '{}\n');
    expect(() => planOutputFolder(dir, options('new'))).toThrow(new UsageError(`--out ${dir}: holds a previous gptune output (checkpoints, log.jsonl, model.bin); add --overwrite to replace it`));
    prepareOutputFolder(dir, options('continue'));
    expect(fs.readdirSync(dir).sort()).toEqual([OUTPUT_MANIFEST, 'checkpoints', 'log.jsonl', 'model.bin']);
    prepareOutputFolder(dir, options('replace'));
    expect(fs.readdirSync(dir)).toEqual([OUTPUT_MANIFEST]);
    expect(manifestEntries(dir)).toEqual(['checkpoints', 'model.bin']);
  });

  test('anything not listed is refused in every mode, named, and left as it was', () => {
    const dir = tempDir();
    prepareOutputFolder(dir, options('new'));
    fs.writeFileSync(path.join(dir, 'model.bin'), 'gptune wrote this');
    fs.writeFileSync(path.join(dir, 'thesis.tex'), 'mine');
    for (const mode of ['new', 'replace', 'continue'] as const) {
      expect(() => prepareOutputFolder(dir, options(mode))).toThrow(`--out ${dir}: holds files gptune did not write (thesis.tex)`);
    }
    expect(fs.readdirSync(dir).sort()).toEqual([OUTPUT_MANIFEST, 'model.bin', 'thesis.tex']);
  });

  test('a manifest naming paths outside the folder, or not gptune\'s format, is refused and nothing is deleted', () => {
    const parent = tempDir();
    const dir = path.join(parent, 'out');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(parent, 'precious.txt'), 'keep');
    fs.writeFileSync(path.join(dir, OUTPUT_MANIFEST), JSON.stringify({ entries: ['../precious.txt'] }));
    expect(() => prepareOutputFolder(dir, options('replace'))).toThrow(/is not a gptune manifest/);
    fs.writeFileSync(path.join(dir, OUTPUT_MANIFEST), 'not json');
    expect(() => prepareOutputFolder(dir, options('replace'))).toThrow(/is not a gptune manifest/);
    expect(fs.readFileSync(path.join(parent, 'precious.txt'), 'utf8')).toBe('keep');
  });

  test('many unrelated files: the message names five and counts the rest', () => {
    const dir = tempDir();
    for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(dir, `f${i}.txt`), '');
    expect(() => planOutputFolder(dir, options('new'))).toThrow('(f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 3 more)');
  });
});

describe('the demo\'s --out (npm start)', () => {
  test('a fresh clone: created; a second run replaces the demo\'s own previous output', () => {
    const out = path.join(tempDir(), 'demo-out');
    prepareDemoOutput(out);
    for (const d of ['data', 'models', path.join('models', 'base')]) fs.mkdirSync(path.join(out, d));
    fs.writeFileSync(path.join(out, 'report.md'), 'old report');
    fs.writeFileSync(path.join(out, 'models', 'base', 'model.safetensors'), 'old weights');
    prepareDemoOutput(out);
    expect(fs.readdirSync(out)).toEqual([OUTPUT_MANIFEST]);
  });

  test('a folder with anything else in it is refused, naming it, and kept', () => {
    const out = tempDir();
    fs.writeFileSync(path.join(out, 'report.md'), 'my own report');
    fs.mkdirSync(path.join(out, '.git'));
    expect(() => prepareDemoOutput(out)).toThrow(`--out ${out}: is not empty and is not a gptune output (.git, report.md; gptune would overwrite report.md)`);
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toBe('my own report');
  });
});
