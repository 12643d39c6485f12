/**
 * The CLI of evaluation: `gptune score` against published sacrebleu values, hand-computed ROUGE and
 * classification figures and lib/metrics; `gptune eval --task classify|generate` against the
 * in-process evaluators, `--compare` of the base and a fine-tuned model; `gptune sample` files.
 * Run after `npx tsc -p tsconfig.json` (npm test does it): the tests spawn dist/lib/cli/main.js.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadRecords } from '../../lib/data';
import { evaluateClassification, evaluateGeneration } from '../../lib/eval';
import { corpusBleu, rougeCorpus } from '../../lib/metrics';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { toyExamples, trainedToyClassifier } from './helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const GEN_DATA = path.join(FIXTURES, 'eval', 'generate.jsonl');

function gptune(...args: string[]): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.json\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function json(stdout: string): Record<string, any> {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

const dir = tempDir('gptune-eval-cli-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeLines(name: string, lines: readonly string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('gptune score', () => {
  // sacrebleu's README example: two reference streams for three hypotheses.
  const hyp = writeLines('hyp.txt', ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']);
  const ref1 = writeLines('ref1.txt', ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.']);
  const ref2 = writeLines('ref2.txt', ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.']);

  test('bleu with two references: sacrebleu\'s published 48.53 82.4/50.0/45.5/37.5 (BP = 0.943, hyp_len 17, ref_len 18)', () => {
    const r = gptune('score', '--metric', 'bleu', '--pred', hyp, '--ref', ref1, '--ref', ref2, '--json');
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    expect(j.bleu.toFixed(2)).toBe('48.53');
    expect(j.precisions.map((p: number) => p.toFixed(1))).toEqual(['82.4', '50.0', '45.5', '37.5']);
    expect(j.bp.toFixed(3)).toBe('0.943');
    expect([j.sys_len, j.ref_len, j.lines, j.references]).toEqual([17, 18, 3, 2]);
    const human = gptune('score', '--metric', 'bleu', '--pred', hyp, '--ref', ref1, '--ref', ref2);
    expect(human.stdout).toContain('BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)');
  });

  test('bleu with one reference equals lib/metrics corpusBleu', () => {
    const j = json(gptune('score', '--metric', 'bleu', '--pred', hyp, '--ref', ref2, '--json').stdout);
    const lines = (f: string) => fs.readFileSync(f, 'utf8').trimEnd().split('\n');
    expect(j.bleu).toBe(corpusBleu(lines(hyp), [lines(ref2)]).score);
  });

  test('rouge on rouge-score\'s test files equals lib/metrics rougeCorpus (per-line means)', () => {
    const target = path.join(FIXTURES, 'metrics', 'rouge_score_target.txt');
    const prediction = path.join(FIXTURES, 'metrics', 'rouge_score_prediction.txt');
    const j = json(gptune('score', '--metric', 'rouge', '--pred', prediction, '--ref', target, '--json').stdout);
    const lines = (f: string) => fs.readFileSync(f, 'utf8').replace(/\n$/, '').split('\n');
    const mean = rougeCorpus(lines(target), lines(prediction)).mean;
    for (const type of ['rouge1', 'rouge2', 'rougeL']) {
      expect(j[type]).toEqual({ p: mean[type].precision, r: mean[type].recall, f: mean[type].fmeasure });
    }
    expect(j.lines).toBe(lines(target).length);
  });

  test('rouge with two references keeps each line\'s best-F reference (hand-computed)', () => {
    const pred = writeLines('rp.txt', ['testing one two', 'testing']);
    const a = writeLines('ra.txt', ['testing', 'one']);
    const b = writeLines('rb.txt', ['testing one two', 'testing one']);
    const j = json(gptune('score', '--metric', 'rouge', '--pred', pred, '--ref', a, '--ref', b, '--json').stdout);
    // Line 1: 'testing one two' matches reference b exactly (1, 1, 1). Line 2: 'testing' against
    // 'one' scores 0; against 'testing one' P = 1, R = 1/2, F = 2/3. ROUGE-2: line 2 has no bigram.
    expect(j.rouge1.p).toBeCloseTo(1, 12);
    expect(j.rouge1.r).toBeCloseTo(0.75, 12);
    expect(j.rouge1.f).toBeCloseTo((1 + 2 / 3) / 2, 12);
    expect(j.rouge2).toEqual({ p: 0.5, r: 0.5, f: 0.5 });
  });

  test.each(['accuracy', 'f1'])('%s: accuracy, macro P/R/F1, per-class figures and confusion matrix (hand-computed)', (metric) => {
    const truth = writeLines('lt.txt', ['a', 'a', 'b', 'c', 'c', 'c']);
    const pred = writeLines('lp.txt', ['a', 'b', 'b', 'c', 'c ', 'a']); // trailing space ignored
    const r = gptune('score', '--metric', metric, '--pred', pred, '--ref', truth, '--json');
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    expect(j.accuracy).toBeCloseTo(4 / 6, 12);
    // a: tp 1, predicted 2, support 2; b: tp 1, predicted 2, support 1; c: tp 2, predicted 2, support 3.
    expect(j.per_class.a).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
    expect(j.per_class.b.precision).toBe(0.5);
    expect(j.per_class.b.f1).toBeCloseTo(2 / 3, 12);
    expect(j.per_class.c.recall).toBeCloseTo(2 / 3, 12);
    expect(j.per_class.c.f1).toBeCloseTo(0.8, 12);
    expect(j.f1).toBeCloseTo((0.5 + 2 / 3 + 0.8) / 3, 12);
    expect(j.confusion_matrix).toEqual({ labels: ['a', 'b', 'c'], matrix: [[1, 1, 0], [0, 1, 0], [1, 0, 2]] });
    const human = gptune('score', '--metric', metric, '--pred', pred, '--ref', truth).stdout;
    expect(human).toMatch(/accuracy 66\.67%\s+macro-F1 65\.56%/);
    expect(human).toContain('confusion matrix');
  });

  test('line counts that differ: one line naming both files and counts, exit 1, nothing on stdout', () => {
    const short = writeLines('short.txt', ['The dog bit the man.', 'It was not unexpected.']);
    for (const metric of ['bleu', 'accuracy']) {
      const r = gptune('score', '--metric', metric, '--pred', hyp, '--ref', short);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`--ref ${short} has 2 lines but --pred ${hyp} has 3`);
    }
    const multi = gptune('score', '--metric', 'bleu', '--pred', hyp, '--ref', ref1, '--ref', short);
    expect(multi.code).toBe(1);
    expect(multi.stderr).toContain(`--ref ${short} has 2 lines`);
  });

  test('other errors: two label files for accuracy, a missing file, a missing --ref', () => {
    expect(gptune('score', '--metric', 'accuracy', '--pred', hyp, '--ref', ref1, '--ref', ref2).stderr).toMatch(/exactly one reference file/);
    expect(gptune('score', '--metric', 'bleu', '--pred', path.join(dir, 'nope.txt'), '--ref', ref1).stderr).toMatch(/--pred .*nope\.txt: file not found/);
    const r = gptune('score', '--metric', 'bleu', '--pred', hyp);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ref is required/);
  });
});

describe('gptune eval --task classify | generate, --compare', () => {
  const tokenizer = loadTokenizer(TINY);
  const classifyData = writeLines('classify.jsonl', toyExamples(24, 99).map((e) => JSON.stringify(e)));
  const tunedDir = path.join(dir, 'tuned');

  beforeAll(async () => {
    const tuned = await trainedToyClassifier(tokenizer);
    saveModel(tuned, tunedDir, { tokenizerFrom: TINY });
    tuned.free();
  });

  test('classify --json equals the in-process evaluation; the human report has the confusion matrix', () => {
    const r = gptune('eval', '--task', 'classify', '--model', TINY, '--data', classifyData, '--json');
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    const model = loadModel(TINY);
    const ref = evaluateClassification(model, tokenizer, loadRecords(classifyData).records);
    model.free();
    for (const key of ['examples', 'accuracy', 'precision', 'recall', 'f1', 'per_class', 'confusion_matrix', 'labels', 'label_score', 'label_eos']) {
      expect(j[key]).toEqual((ref as unknown as Record<string, unknown>)[key]);
    }
    expect(j.task).toBe('classify');
    expect(j.labels).toEqual(['blue', 'green', 'red']);
    const human = gptune('eval', '--task', 'classify', '--model', TINY, '--data', classifyData).stdout;
    expect(human).toMatch(/accuracy \d+\.\d\d%/);
    expect(human).toContain('confusion matrix (rows: true class, columns: predicted)');
  });

  test('--compare base vs fine-tuned: both side by side, JSON {a, b, delta}, accuracy clearly up', () => {
    const predictions = path.join(dir, 'pred.jsonl');
    const r = gptune('eval', '--task', 'classify', '--model', TINY, '--compare', tunedDir, '--data', classifyData, '--json', '--predictions', predictions);
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    expect(Object.keys(j).sort()).toEqual(['a', 'b', 'delta']);
    expect(j.a.model).toBe(TINY);
    expect(j.b.model).toBe(tunedDir);
    expect(j.a.accuracy).toBeLessThan(0.6);
    expect(j.b.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(j.delta.accuracy).toBeCloseTo(j.b.accuracy - j.a.accuracy, 12);
    expect(j.delta.per_class.red.f1).toBeCloseTo(j.b.per_class.red.f1 - j.a.per_class.red.f1, 12);
    const lines = fs.readFileSync(predictions, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(24);
    expect(Object.keys(lines[0].a)).toEqual(['predicted', 'scores']);
    expect(lines.filter((l) => l.b.predicted === l.label).length / 24).toBeCloseTo(j.b.accuracy, 12);

    const human = gptune('eval', '--task', 'classify', '--model', TINY, '--compare', tunedDir, '--data', classifyData);
    expect(human.code).toBe(0);
    const row = human.stdout.split('\n').find((l) => l.startsWith('accuracy'))!;
    const [, a, b, delta] = row.trim().split(/\s+/);
    expect(Number(a)).toBeCloseTo(j.a.accuracy, 4);
    expect(Number(b)).toBeCloseTo(j.b.accuracy, 4);
    expect(Number(delta)).toBeCloseTo(j.delta.accuracy, 4);
    expect(human.stdout).toContain(`A = ${TINY}`);
    expect(human.stdout).toContain(`B = ${tunedDir}`);
  });

  test('generate --json: structure, and the numbers of the in-process evaluation', () => {
    const r = gptune('eval', '--task', 'generate', '--model', TINY, '--data', GEN_DATA, '--json');
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    const model = loadModel(TINY);
    const ref = evaluateGeneration(model, tokenizer, loadRecords(GEN_DATA).records);
    model.free();
    for (const key of ['examples', 'bleu', 'precisions', 'bp', 'sys_len', 'ref_len', 'rouge1', 'rouge2', 'rougeL', 'max_new_tokens', 'stop_at_newline', 'stops']) {
      expect(j[key]).toEqual((ref as unknown as Record<string, unknown>)[key]);
    }
    expect(j.outputs).toBeUndefined(); // per-example outputs go to --predictions only
  });

  test('generate --compare on the toy task: the fine-tuned model answers verbatim', () => {
    const predictions = path.join(dir, 'gen.jsonl');
    const r = gptune('eval', '--task', 'generate', '--model', TINY, '--compare', tunedDir, '--data', classifyData, '--json', '--predictions', predictions);
    expect(r.code).toBe(0);
    const j = json(r.stdout);
    expect(j.b.rouge1.f).toBe(1);
    expect(j.delta.rouge1.f).toBeCloseTo(1 - j.a.rouge1.f, 12);
    const lines = fs.readFileSync(predictions, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.b.output)).toEqual(lines.map((l) => l.reference));
  });

  test('lm: --task lm is the default and unchanged; --compare gives {a, b, delta}', () => {
    const data = path.join(FIXTURES, 'eval-text.txt');
    const plain = json(gptune('eval', '--model', TINY, '--data', data, '--seq-len', '16', '--json').stdout);
    const explicit = json(gptune('eval', '--task', 'lm', '--model', TINY, '--data', data, '--seq-len', '16', '--json').stdout);
    expect(Object.keys(plain)).toEqual(['loss', 'perplexity', 'tokens', 'token_accuracy', 'seconds']);
    expect({ ...explicit, seconds: 0 }).toEqual({ ...plain, seconds: 0 });
    const c = json(gptune('eval', '--model', TINY, '--compare', tunedDir, '--data', data, '--seq-len', '16', '--json').stdout);
    expect(c.a.loss).toBe(plain.loss);
    expect(c.delta.loss).toBeCloseTo(c.b.loss - c.a.loss, 12);
  });

  test('usage errors: a task\'s flag on another task, too few labels, data of the wrong kind', () => {
    const data = path.join(FIXTURES, 'eval-text.txt');
    let r = gptune('eval', '--model', TINY, '--data', data, '--labels', 'a,b');
    expect([r.code, r.stderr.trim()]).toEqual([2, 'gptune eval: --labels applies to --task classify, not --task lm']);
    r = gptune('eval', '--task', 'classify', '--model', TINY, '--data', classifyData, '--labels', 'red');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--labels: expected at least 2/);
    r = gptune('eval', '--task', 'classify', '--model', TINY, '--data', classifyData, '--labels', 'red,green');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/classify\.jsonl:\d+: label "blue" is not among the candidate labels/);
    r = gptune('eval', '--task', 'classify', '--model', TINY, '--data', GEN_DATA);
    expect(r.stderr).toMatch(/generate\.jsonl:1: classification evaluation needs classification records/);
  });
});

describe('gptune sample', () => {
  test('markdown: N seeded examples with prompt, output and reference; the same seed gives the same file', () => {
    const out = path.join(dir, 'review', 'review.md');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const r = gptune('sample', '--model', TINY, '--data', GEN_DATA, '-n', '3', '--out', out, '--seed', '5');
    expect(r.code).toBe(0);
    const text = fs.readFileSync(out, 'utf8');
    expect(text.match(/^## Example \d+ \(line \d+\)$/gm)).toHaveLength(3);
    expect(text.match(/\*\*Prompt\*\*/g)).toHaveLength(3);
    expect(text.match(/\*\*Model output\*\*/g)).toHaveLength(3);
    expect(text.match(/\*\*Reference\*\*/g)).toHaveLength(3);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['review.md']); // no temporary file left
    gptune('sample', '--model', TINY, '--data', GEN_DATA, '-n', '3', '--out', out, '--seed', '5');
    expect(fs.readFileSync(out, 'utf8')).toBe(text);
  });

  test('jsonl: N lines whose outputs are the greedy generations of eval --task generate', () => {
    const out = path.join(dir, 'review.jsonl');
    const r = gptune('sample', '--model', TINY, '--data', GEN_DATA, '--n', '4', '--out', out, '--seed', '1', '--json');
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toEqual({ out, examples: 4, format: 'jsonl', skipped_lines: 0 });
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    const model = loadModel(TINY);
    const records = loadRecords(GEN_DATA).records;
    const all = evaluateGeneration(model, loadTokenizer(TINY), records);
    model.free();
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['index', 'line', 'prompt', 'output', 'reference', 'stop']);
      expect(l.output).toBe(all.outputs[l.index].output);
      expect(l.reference).toBe(all.outputs[l.index].reference);
      expect(l.line).toBe(records[l.index].line);
    }
  });

  test('a failed run leaves an existing review untouched; a bad extension fails before any work', () => {
    const out = path.join(dir, 'keep.md');
    fs.writeFileSync(out, 'old review\n');
    const r = gptune('sample', '--model', path.join(dir, 'no-model'), '--data', GEN_DATA, '-n', '2', '--out', out);
    expect(r.code).not.toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toBe('old review\n');
    const bad = gptune('sample', '--model', TINY, '--data', GEN_DATA, '--out', path.join(dir, 'review.txt'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--out .*review\.txt: expected a \.md or \.jsonl file name/);
  });
});
