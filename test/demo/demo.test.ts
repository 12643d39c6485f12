/**
 * `gptune demo --tiny` end to end (seconds: tiny models, a few dozen emails): the report's
 * structure, that every number report.md prints is a number report.json holds (rounded as shown)
 * and every quoted text a string it holds, that the test emails never reach training, and that the
 * pretrained base model is cached and reused; the LoRA run beside full fine-tuning (its learning rate
 * chosen on validation, its adapter folder the model the test emails scored).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { auditSummaryLines, loadRecords } from '../../lib/data';
import { CLASSIFICATION_TEMPLATE, LABELS } from '../../lib/demo';
import { evaluateClassification } from '../../lib/eval';
import { loadAdapter } from '../../lib/lora/apply';
import { loadModel } from '../../lib/model/checkpoint';
import { loadTokenizer } from '../../lib/tokenizer';
import { cardMetadata, expectModelIndexSchema } from '../card/helpers';
import { provenanceProblems } from './provenance';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');

function demo(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'demo', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('gptune demo --tiny', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-demo-'));
  const out = path.join(dir, 'out');
  const cacheDir = path.join(dir, 'cache');
  let first: ReturnType<typeof demo>;
  let report: any;
  let markdown: string;

  beforeAll(() => {
    first = demo(['--tiny', '--out', out, '--cache-dir', cacheDir, '--json', '--threads', '1']);
    if (first.code === 0) {
      report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
      markdown = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    }
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('runs to the end and writes the report, the plot, the models and the prepared data', () => {
    expect(first.stderr).toContain('[demo');
    expect(first.code).toBe(0);
    const headline = JSON.parse(first.stdout.trim().split('\n').pop()!);
    expect(headline).toMatchObject({ preset: 'tiny', base_cached: false });
    expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'data', 'loss-curves.svg', 'models', 'report.json', 'report.md']);
    expect(fs.readdirSync(path.join(out, 'models')).sort()).toEqual(['base', 'combined', 'domain', 'scratch', 'scratch_few', 'subject', 'task', 'task_few', 'task_lora']);
    // Every fine-tuned model has its card (README.md, gptune_card.json); models/base is the base as it was.
    for (const m of fs.readdirSync(path.join(out, 'models')).filter((n) => n !== 'task_lora')) {
      const card = m === 'base' ? [] : ['README.md', 'gptune_card.json'];
      expect([m, fs.readdirSync(path.join(out, 'models', m)).sort()]).toEqual([m, [...card, 'config.json', 'merges.txt', 'model.safetensors', 'vocab.json'].sort()]);
    }
    // A PEFT adapter folder (for models/base) with the tokenizer files.
    expect(fs.readdirSync(path.join(out, 'models', 'task_lora')).sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'gptune_card.json', 'merges.txt', 'vocab.json']);
  });

  test('model cards: each model\'s test results in its model-index, the probe in the task model\'s card and in the report', () => {
    for (const m of ['task', 'task_lora', 'combined', 'scratch', 'task_few', 'scratch_few']) {
      const meta = cardMetadata(fs.readFileSync(path.join(out, 'models', m, 'README.md'), 'utf8'));
      expectModelIndexSchema(meta);
      const test = meta['model-index'][0].results.find((r: any) => r.task.type === 'text-classification');
      expect([m, test.dataset.name, test.metrics[0]]).toEqual([m, 'classification-test.jsonl', { type: 'accuracy', value: report.classification[m].accuracy, name: 'Accuracy' }]);
      expect([m, meta.tags.includes('lora')]).toEqual([m, m === 'task_lora']);
    }
    const subject = cardMetadata(fs.readFileSync(path.join(out, 'models', 'subject', 'README.md'), 'utf8'));
    expect(subject['model-index'][0].results[1].metrics[0]).toEqual({ type: 'bleu', value: report.generation.subject.bleu, name: 'BLEU (sacrebleu)' });
    expect(report.probe.report.groups).toEqual(['gender', 'names']);
    expect(report.probe.report.examples).toBe(report.data.emails.test.used);
    const task = fs.readFileSync(path.join(out, 'models', 'task', 'README.md'), 'utf8');
    const g = report.probe.report.per_group.gender;
    expect(task).toContain(`| gender | ${g.changed} | ${g.flips} |`);
    expect(markdown).toContain('## Bias probe: the task model on counterfactual test emails');
    // The classifiers' cards hold the audit of the email splits that report.json holds; the subject writer's does not.
    expect(task).toContain(auditSummaryLines(report.data_audit).map((l) => `    ${l}`).join('\n'));
    expect(fs.readFileSync(path.join(out, 'models', 'subject', 'README.md'), 'utf8')).toContain('The training data was not audited here');
  });

  test('report.json holds every comparison the issue asks for, with consistent figures', () => {
    expect(Object.keys(report.runs).sort()).toEqual(['combined', 'domain', 'pretrain', 'scratch', 'scratch_few', 'subject', 'task', 'task_few', 'task_lora']);
    expect(Object.keys(report.classification).sort()).toEqual(['base_zero_shot', 'combined', 'domain_zero_shot', 'majority', 'naive_bayes', 'scratch', 'scratch_few', 'task', 'task_few', 'task_lora']);
    expect(Object.keys(report.generation).sort()).toEqual(['base', 'domain', 'subject']);
    const testEmails = report.data.emails.test.used;
    expect(testEmails).toBe(report.settings.testEmails);
    for (const [name, row] of Object.entries<any>(report.classification)) {
      const m: number[][] = row.confusion;
      const total = m.flat().reduce((a, b) => a + b, 0);
      expect([name, total]).toEqual([name, testEmails]);
      expect([name, row.accuracy]).toEqual([name, (m[0][0] + m[1][1]) / total]);
      expect(row.f1).toBeGreaterThanOrEqual(0);
      expect(row.f1).toBeLessThanOrEqual(1);
      // Row 1 of the confusion matrix is the true spam emails.
      expect(m[1][0] + m[1][1]).toBe(report.data.emails.test.spam);
    }
    for (const [name, run] of Object.entries<any>(report.runs)) {
      expect([name, run.val_curve[0].step]).toEqual([name, 0]);
      expect([name, run.val_curve.length >= 2]).toEqual([name, true]);
      expect(run.steps).toBeGreaterThan(0);
      expect(run.tokens_per_s).toBeGreaterThan(0);
      expect(run.best_val_loss).toBe(Math.min(...run.val_curve.slice(1).map((p: any) => p.loss)));
      // Email texts are cut to fit the context, so no example loses the start of its prompt (its subject).
      expect([name, run.truncated_examples]).toEqual([name, 0]);
    }
    for (const row of Object.values<any>(report.generation)) expect(row.examples).toBe(report.data.emails.generation_test);
    expect(report.machine.cores).toBe(os.cpus().length);
    expect(report.machine.threads).toBe(1);
    const stages = report.compute.map((c: any) => c.stage);
    expect(stages).toEqual(expect.arrayContaining(['tokenizer + pretraining (base)', 'task fine-tuning', 'domain fine-tuning', 'combined fine-tuning', 'scratch fine-tuning', 'subject fine-tuning', 'evaluate task_lora']));
    expect(stages.filter((s: string) => s.startsWith('task_lora fine-tuning'))).toEqual(report.settings.lora.learningRates.map((lr: number) => `task_lora fine-tuning, learning rate ${lr}`));
    expect(report.deltas['task_vs_base_zero_shot.f1']).toBeCloseTo(report.classification.task.f1 - report.classification.base_zero_shot.f1, 12);
    // The paired counts agree with the two confusion matrices: B - A in correct answers = only B - only A.
    const correct = (k: string) => report.classification[k].accuracy * testEmails;
    expect(report.deltas['task_vs_scratch.only_b_right'] - report.deltas['task_vs_scratch.only_a_right']).toBeCloseTo(correct('task') - correct('scratch'), 9);
    expect(report.data.emails.train_few.used).toBe(report.settings.fewLabelledEmails);
    expect(report.runs.task_few.train_examples).toBe(report.settings.fewLabelledEmails);
    expect(report.findings.length).toBeGreaterThanOrEqual(7);
  });

  test('the augmentation study: three augmented GPT runs of task_few\'s step count, each McNemar-tested against task_few', () => {
    const a = report.augmentation;
    expect(a.plain).toMatchObject({ run: 'task_few', accuracy: report.classification.task_few.accuracy, f1: report.classification.task_few.f1, steps: report.runs.task_few.steps });
    expect(a.arms.map((x: any) => x.name)).toEqual(['eda', 'noise', 'balance']);
    const testEmails = report.data.emails.test.used;
    for (const arm of a.arms) {
      expect([arm.name, arm.run.steps, arm.run.planned_steps]).toEqual([arm.name, report.runs.task_few.steps, report.runs.task_few.steps]);
      expect(arm.training_examples).toBeGreaterThan(report.settings.fewLabelledEmails);
      // The set it trained on is in data/: the labelled emails plus copies, none of them a test email.
      const rows = fs.readFileSync(path.join(out, arm.train_file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      expect(rows.length).toBe(arm.training_examples);
      expect(rows.filter((r) => r._augmented_from === undefined).length).toBe(report.settings.fewLabelledEmails);
      // Paired counts agree with the two accuracies; McNemar's p is a probability.
      expect(arm.only_augmented_right - arm.only_plain_right).toBeCloseTo((arm.accuracy - a.plain.accuracy) * testEmails, 9);
      expect(arm.mcnemar_p).toBeGreaterThan(0);
      expect(arm.mcnemar_p).toBeLessThanOrEqual(1);
    }
    const stages = report.compute.map((c: any) => c.stage);
    for (const name of ['eda', 'noise', 'balance']) expect(stages).toEqual(expect.arrayContaining([`task_few_${name} fine-tuning (augmentation study)`, `evaluate task_few_${name}`]));
    expect(markdown).toContain(`## Augmentation with ${report.settings.fewLabelledEmails} labels (gptune data augment)`);
    for (const arm of a.arms) expect(markdown).toContain(`| + ${arm.how} | ${arm.training_examples} | ${arm.run.steps} |`);
  });

  test('the test emails never reach training or model selection', () => {
    const lines = (file: string) => fs.readFileSync(path.join(out, 'data', file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const testTexts = new Set(lines('classification-test.jsonl').map((r) => r.text));
    expect(testTexts.size).toBe(report.data.emails.test.used);
    const augmented = report.augmentation.arms.map((a: any) => path.basename(a.train_file));
    for (const file of ['classification-train.jsonl', 'classification-train-few.jsonl', 'classification-validation.jsonl', ...augmented]) {
      for (const r of lines(file)) expect(testTexts.has(r.text)).toBe(false);
    }
    const domain = fs.readFileSync(path.join(out, 'data', 'domain-train.txt'), 'utf8').split('<|endoftext|>');
    for (const text of domain) expect(testTexts.has(text)).toBe(false);
    const testPrompts = new Set(lines('subject-test.jsonl').map((r) => r.prompt));
    for (const r of lines('subject-train.jsonl')) expect(testPrompts.has(r.prompt)).toBe(false);
  });

  test('report.md has the comparison, compute and sample sections and shows the loss-curve plot', () => {
    for (const heading of ['## Findings', '## Spam or ham: test accuracy and macro-F1', '## Subject lines from the body', '## Training runs', '## Compute', '## Sample subject lines', '## Sample classifications']) {
      expect(markdown).toContain(heading);
    }
    expect(markdown).toContain('![Loss curves](loss-curves.svg)');
    const svg = fs.readFileSync(path.join(out, 'loss-curves.svg'), 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // One line per series: pretraining validation + training, domain, four task runs (LoRA among them), two few-label runs, subject.
    expect(svg.match(/<polyline /g)).toHaveLength(10);
    expect(markdown).toContain(`| task-specific | base + supervised fine-tuning on ${report.data.emails.train.used} labelled emails | ${report.classification.task.accuracy.toFixed(4)} | ${report.classification.task.f1.toFixed(4)} |`);
  });

  test('LoRA runs beside full fine-tuning: the same plan, its learning rate chosen on validation, its trainable parameters counted', () => {
    const lora = report.settings.lora, summary = report.lora, task = report.runs.task, chosen = report.runs.task_lora;
    expect(lora).toMatchObject({ r: 16, alpha: 32, dropout: 0.05, targets: 'all-linear' });
    expect(lora.learningRates.length).toBeGreaterThanOrEqual(2);
    // Every candidate ran, in order; the one with the lowest validation loss is the run reported and scored.
    expect(summary.candidates.map((c: any) => c.learning_rate)).toEqual(lora.learningRates);
    const lowest = summary.candidates.reduce((a: any, b: any) => (b.best_val_loss < a.best_val_loss ? b : a));
    expect(summary.chosen_learning_rate).toBe(lowest.learning_rate);
    expect(chosen.learning_rate).toBe(lowest.learning_rate);
    expect(chosen.best_val_loss).toBe(lowest.best_val_loss);
    // The same data and plan as full fine-tuning, bar the learning rate.
    for (const key of ['train_examples', 'planned_steps', 'batch_size', 'seq_len', 'validation_tokens']) expect([key, chosen[key]]).toEqual([key, task[key]]);
    expect(task.learning_rate).toBe(report.settings.finetune.learningRate);
    // GPT-2's linear layers per block (C = n_embd): c_attn C -> 3C, attn.c_proj C -> C, c_fc C -> 4C,
    // mlp.c_proj 4C -> C; an adapter on each has r (in + out) values: 16 r C per block with all-linear.
    const C = report.base.config.n_embd as number, L = report.base.config.n_layer as number;
    expect(summary.modules).toBe(4 * L);
    expect(summary.trainable_parameters).toBe(L * 16 * lora.r * C);
    expect(chosen.trainable_parameters).toBe(summary.trainable_parameters);
    expect(summary.full_trainable_parameters).toBe(report.base.parameters);
    expect(task.trainable_parameters).toBe(report.base.parameters);
    expect(summary.trainable_percent).toBeCloseTo((100 * summary.trainable_parameters) / report.base.parameters, 10);
    expect(summary.scaling).toBe(lora.alpha / lora.r);
    // The paired counts of LoRA vs full fine-tuning agree with the two confusion matrices.
    const correct = (k: string) => report.classification[k].accuracy * report.data.emails.test.used;
    expect(report.deltas['task_lora_vs_task.only_b_right'] - report.deltas['task_lora_vs_task.only_a_right']).toBeCloseTo(correct('task_lora') - correct('task'), 9);
    expect(report.deltas['task_lora_vs_base_zero_shot.accuracy']).toBeCloseTo(report.classification.task_lora.accuracy - report.classification.base_zero_shot.accuracy, 12);
    expect(report.findings.some((f: string) => f.startsWith('**LoRA vs full fine-tuning.**'))).toBe(true);
    for (const heading of ['### LoRA beside full fine-tuning', '| task-specific, LoRA | task-specific |', '| task-specific, LoRA | base (zero-shot) |']) expect(markdown).toContain(heading);
    expect(markdown).toContain(`| task-specific, LoRA | frozen base + a LoRA adapter (r = 16, all-linear) trained the same way | ${report.classification.task_lora.accuracy.toFixed(4)} | ${report.classification.task_lora.f1.toFixed(4)} | ${report.classification.task_lora.spam_precision.toFixed(4)} | ${report.classification.task_lora.spam_recall.toFixed(4)} |`);
  });

  test('models/task_lora is a PEFT adapter for models/base that classifies the test emails as reported', () => {
    const dir = path.join(out, 'models', 'task_lora');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 16, lora_alpha: 32, lora_dropout: 0.05, fan_in_fan_out: true, bias: 'none' });
    expect(config.target_modules).toHaveLength(report.lora.modules);
    // The safetensors header, read by hand: 8-byte little-endian length, then JSON {name: {dtype, shape, data_offsets}}.
    const bytes = fs.readFileSync(path.join(dir, 'adapter_model.safetensors'));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    const tensors = Object.entries<any>(header).filter(([name]) => name !== '__metadata__');
    expect(tensors.reduce((n, [, t]) => n + t.shape.reduce((a: number, b: number) => a * b, 1), 0)).toBe(report.lora.trainable_parameters);
    // Training moved B off its zero start (with B = 0 the adapted model is the base).
    const bValues = tensors.filter(([name]) => name.endsWith('.lora_B.weight')).flatMap(([, t]) => {
      const from = 8 + headerLength + t.data_offsets[0], to = 8 + headerLength + t.data_offsets[1];
      return Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + from, bytes.byteOffset + to)));
    });
    expect(bValues.some((v) => v !== 0)).toBe(true);
    // Loaded onto the base, the adapter gives the reported test confusion matrix; without it, the base's.
    const tokenizer = loadTokenizer(path.join(out, 'models', 'base'));
    const records = loadRecords(path.join(out, 'data', 'classification-test.jsonl'), { format: 'classification' }).records;
    const model = loadModel(path.join(out, 'models', 'base'));
    try {
      const confusion = () => evaluateClassification(model, tokenizer, records, LABELS, CLASSIFICATION_TEMPLATE).confusion_matrix.matrix;
      expect(confusion()).toEqual(report.classification.base_zero_shot.confusion);
      loadAdapter(model, dir);
      expect(confusion()).toEqual(report.classification.task_lora.confusion);
    } finally {
      model.free();
    }
  });

  test('the preference study: DPO on the subject model, the held-out test pairs scored before and after', () => {
    const p = report.preference;
    expect(p.pairs.test).toBeGreaterThan(0);
    expect(p.steps).toBe(2);
    for (const x of [p.logp_accuracy_before, p.logp_accuracy_after, p.reward_accuracy_after]) expect(x >= 0 && x <= 1).toBe(true);
    expect(p.val_curve.map((v: { step: number }) => v.step)).toEqual([2]);
    expect(fs.readdirSync(path.join(out, 'data')).filter((n) => n.startsWith('preference-')).sort()).toEqual(['preference-test.jsonl', 'preference-train.jsonl', 'preference-validation.jsonl']);
    expect(markdown).toContain('## Preference tuning (DPO) of the subject model');
  });

  test('every number in report.md is a number of report.json, every quoted text a string of it', () => {
    expect(provenanceProblems(markdown, report)).toEqual([]);
  });

  test('the provenance check catches an invented number and an altered quote (it can fail)', () => {
    const invented = markdown.replace('## Compute', '## Compute\n\nA speedup of 123456.789 was measured.');
    expect(provenanceProblems(invented, report)).toEqual([expect.stringMatching(/^123456\.789 .*is not a number of report\.json/)]);
    const altered = markdown.replace(`\`${report.command}\``, '`gptune demo --made-up`');
    expect(provenanceProblems(altered, report)).toEqual(['code span "gptune demo --made-up" is not a string of report.json']);
  });

  test('a second run reuses the cached base model and reports the numbers of the run that trained it', () => {
    const out2 = path.join(dir, 'out2');
    const second = demo(['--tiny', '--out', out2, '--cache-dir', cacheDir, '--json', '--quiet', '--threads', '1']);
    expect(second.stderr).toBe('');
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout.trim())).toMatchObject({ base_cached: true });
    const again = JSON.parse(fs.readFileSync(path.join(out2, 'report.json'), 'utf8'));
    expect(again.base.cache_key).toBe(report.base.cache_key);
    expect(again.runs.pretrain).toEqual(report.runs.pretrain);
    expect(fs.readFileSync(path.join(out2, 'models', 'base', 'model.safetensors'))).toEqual(fs.readFileSync(path.join(out, 'models', 'base', 'model.safetensors')));
    const md = fs.readFileSync(path.join(out2, 'report.md'), 'utf8');
    expect(md).toContain('Loaded from the cache');
    expect(provenanceProblems(md, again)).toEqual([]);
  });

  test('the published quick report (docs/demo) passes the same check against its report.json', () => {
    const docs = path.join(ROOT, 'docs/demo');
    const published = JSON.parse(fs.readFileSync(path.join(docs, 'report-quick.json'), 'utf8'));
    expect(published.preset).toBe('quick');
    const md = fs.readFileSync(path.join(docs, 'report-quick.md'), 'utf8');
    expect(provenanceProblems(md, published)).toEqual([]);
    // It is a report of the code as it is: LoRA beside full fine-tuning, r = 16 on all-linear.
    expect(published.settings.lora).toMatchObject({ r: 16, alpha: 32, dropout: 0.05, targets: 'all-linear' });
    expect(published.lora.candidates.map((c: any) => c.learning_rate)).toEqual(published.settings.lora.learningRates);
    expect(Object.keys(published.classification)).toContain('task_lora');
    expect(md).toContain('### LoRA beside full fine-tuning');
  });

  test('--full and --tiny together are a usage error', () => {
    const r = demo(['--tiny', '--full', '--out', path.join(dir, 'never')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('gptune demo: give --full or --tiny, not both');
    expect(fs.existsSync(path.join(dir, 'never'))).toBe(false);
  });
});
