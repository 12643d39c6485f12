/**
 * Model cards from the commands that write models: `gptune train` (full and LoRA), `gptune merge`,
 * and `gptune card` adding eval and probe reports. The cards' YAML is parsed back with the yaml
 * package; the figures are checked against the JSON the other commands printed.
 * Run after `npx tsc -p tsconfig.json` (npm test does it): the tests spawn dist/lib/cli/main.js.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { auditSplits, auditSummaryLines, loadRecords } from '../../lib/data';
import { tempDir, TINY } from '../helpers';
import { cardMetadata, expectModelIndexSchema } from './helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');

function gptune(...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.json\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const lastJSON = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);
const read = (file: string) => fs.readFileSync(file, 'utf8');

describe('model cards of the commands that write models', () => {
  const dir = tempDir('gptune-card-cli-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  // The base: the tiny fixture with a README that names its license, as Hub models do.
  const base = path.join(dir, 'base');
  fs.mkdirSync(base);
  for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(base, f));
  fs.writeFileSync(path.join(base, 'README.md'), '---\nlicense: mit\n---\n# tiny\n');
  const rows = Array.from({ length: 24 }, (_, i) => JSON.stringify({ text: `${i % 2 ? 'he' : 'she'} wrote note ${i}`, label: ['A', 'B'][i % 2] }));
  const train = path.join(dir, 'train.jsonl'), val = path.join(dir, 'val.jsonl');
  fs.writeFileSync(train, rows.slice(0, 18).join('\n') + '\n');
  // One training row again in validation: leakage the card's audit section reports.
  fs.writeFileSync(val, [...rows.slice(18), rows[0]].join('\n') + '\n');
  const common = ['--data', train, '--validation', val, '--max-steps', '3', '--batch-size', '4', '--seq-len', '32'];

  test('train: README.md with the base\'s license, the data hashes, the validation result, every section', () => {
    const out = path.join(dir, 'full');
    const r = gptune('train', '--model', base, '--out', out, ...common);
    expect(r.code).toBe(0);
    const run = lastJSON(r.stdout);
    const card = read(path.join(out, 'README.md'));
    const meta = cardMetadata(card);
    expect(meta.library_name).toBe('gptune');
    expect(meta.license).toBe('mit');
    expect(meta.base_model).toBe(base);
    expect(meta.tags).toEqual(['gptune', 'fine-tuned', 'gpt2']);
    const sha = require('crypto').createHash('sha256').update(fs.readFileSync(train)).digest('hex');
    expect(meta.datasets[0]).toBe(`train.jsonl@sha256:${sha.slice(0, 16)}`);
    expectModelIndexSchema(meta);
    const validation = meta['model-index'][0].results[0];
    expect(validation.dataset).toEqual({ name: 'val.jsonl', type: 'json' });
    expect(validation.metrics[0]).toEqual({ type: 'loss', value: run.best_val_loss, name: 'Validation loss (nats per token)' });
    expect(card).toContain(`| train | train.jsonl | 18 | ${fs.statSync(train).size} | ${sha} |`);
    for (const s of ['Training data', 'Hyperparameters', 'Results', 'Data audit', 'Bias probe', 'Intended use', 'Limitations', 'Human review']) expect(card).toContain(`\n## ${s}\n`);
    // The data audit of the two files (lib/data/audit, called directly here) is the card's Data audit section.
    const split = (name: string, file: string) => ({ name, file: path.basename(file), records: loadRecords(file).records.map((x) => ({ ...x, file: path.basename(file) })) });
    const lines = auditSummaryLines(auditSplits([split('train', train), split('validation', val)], { maxListed: 20 }));
    expect(lines.some((l) => l.startsWith('exact duplicates across splits') || l.includes('across'))).toBe(true); // the row the two files share
    expect(card).toContain(`## Data audit\n\nWhat \`gptune data audit\` finds in the data this model trained on:\n\n${lines.map((l) => `    ${l}`).join('\n')}\n`);
    const manifest = JSON.parse(read(path.join(out, '.gptune-output.json')));
    expect(manifest.entries).toEqual(expect.arrayContaining(['README.md', 'gptune_card.json']));
  });

  test('card --eval --probe: the eval report\'s figures in model-index, the probe\'s table in the card', () => {
    const out = path.join(dir, 'full');
    const evalReport = path.join(dir, 'eval.json'), probeReport = path.join(dir, 'probe.json');
    const e = gptune('eval', '--model', out, '--data', val, '--task', 'classify', '--json');
    expect(e.code).toBe(0);
    fs.writeFileSync(evalReport, e.stdout);
    const p = gptune('eval', '--model', out, '--data', val, '--task', 'classify', '--probe', 'counterfactual', '--json');
    expect(p.code).toBe(0);
    fs.writeFileSync(probeReport, p.stdout);
    const evaluated = lastJSON(e.stdout), probed = lastJSON(p.stdout);
    const r = gptune('card', '--model', out, '--eval', evalReport, '--probe', probeReport, '--json');
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(lastJSON(r.stdout)).toEqual({ card: path.join(out, 'README.md'), facts: path.join(out, 'gptune_card.json'), evals: 2, probe: true });
    const card = read(path.join(out, 'README.md'));
    const meta = cardMetadata(card);
    expectModelIndexSchema(meta);
    const results = meta['model-index'][0].results;
    expect(results.map((x: any) => x.task.type)).toEqual(['text-generation', 'text-classification']); // the training's validation result is kept
    expect(results[1].dataset).toEqual({ name: 'val.jsonl', type: 'json' });
    expect(results[1].metrics[0]).toEqual({ type: 'accuracy', value: evaluated.accuracy, name: 'Accuracy' });
    expect(meta.metrics).toEqual(['loss', 'perplexity', 'accuracy', 'f1', 'precision', 'recall']);
    const g = probed.per_group.gender;
    expect(card).toContain(`| gender | ${g.changed} | ${g.flips} |`);
    expect(card).not.toContain('Bias probe\n\nNot run');
  });

  test('LoRA: the adapter folder\'s card is tagged lora; merge writes a card that carries the adapter\'s training', () => {
    const adapter = path.join(dir, 'adapter'), merged = path.join(dir, 'merged');
    expect(gptune('train', '--model', base, '--out', adapter, '--lora', ...common).code).toBe(0);
    const meta = cardMetadata(read(path.join(adapter, 'README.md')));
    expect(meta.tags).toEqual(['gptune', 'fine-tuned', 'lora', 'peft', 'gpt2']);
    expect(meta.license).toBe('mit');
    const m = gptune('merge', '--model', base, '--adapter', adapter, '--out', merged);
    expect([m.code, m.stderr]).toEqual([0, '']);
    const card = read(path.join(merged, 'README.md'));
    const mergedMeta = cardMetadata(card);
    expect(mergedMeta.tags).toEqual(['gptune', 'fine-tuned', 'gpt2']);
    expect(mergedMeta.license).toBe('mit');
    expect(mergedMeta.datasets).toEqual(meta.datasets);
    expect(card).toContain('1 LoRA adapter(s) merged into its weights');
    expect(card).toContain('| lora | true |');
  });

  test('a folder with the user\'s README.md: the card goes to MODEL_CARD.md and the README is kept', () => {
    const user = path.join(dir, 'user-model');
    fs.mkdirSync(user);
    for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(user, f));
    fs.writeFileSync(path.join(user, 'README.md'), '# my model\n');
    const r = gptune('card', '--model', user);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`model card written to ${path.join(user, 'MODEL_CARD.md')}`);
    expect(read(path.join(user, 'README.md'))).toBe('# my model\n');
    expect(cardMetadata(read(path.join(user, 'MODEL_CARD.md'))).tags).toEqual(['gptune', 'gpt2']);
  });

  test('bad input: one line naming the folder or file, non-zero exit, nothing written', () => {
    const missing = gptune('card', '--model', path.join(dir, 'nope'));
    expect([missing.code, missing.stderr.trim()]).toEqual([2, `gptune card: --model ${path.join(dir, 'nope')}: folder not found`]);
    const notModel = gptune('card', '--model', dir);
    expect([notModel.code, notModel.stderr.trim()]).toEqual([2, `gptune card: --model ${dir}: not a model folder (no config.json, adapter_config.json or gptune_card.json in it)`]);
    const out = path.join(dir, 'full');
    const before = read(path.join(out, 'README.md'));
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, 'not json\n');
    const r = gptune('card', '--model', out, '--eval', bad);
    expect([r.code, r.stderr.trim()]).toEqual([1, `gptune card: --eval ${bad}: no JSON line in it; expected the output of gptune eval --json`]);
    expect(read(path.join(out, 'README.md'))).toBe(before);
  });
});
