/**
 * Model cards: the YAML front matter parsed back with the `yaml` package and checked against the
 * fields of Hugging Face's model-index schema (results: [{task: {type, name}, dataset: {name, type},
 * metrics: [{type, value, name}]}]) and the metadata keys the Hub reads; the sections present; a
 * README.md the user wrote never overwritten; eval and probe reports read into the card.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CARD_MARKER, CardFacts, renderModelCard } from '../../lib/card/card';
import { evalFromReport, folderLicense, probeFromReport, readFrontMatter, rewriteModelCard, writeModelCard } from '../../lib/card/folder';
import { OutputError } from '../../lib/errors';
import { tempDir } from '../helpers';
import { cardMetadata, expectModelIndexSchema } from './helpers';

const SECTIONS = ['Training data', 'Hyperparameters', 'Results', 'Data audit', 'Bias probe', 'Intended use', 'Limitations', 'Human review'];

function facts(over: Partial<CardFacts> = {}): CardFacts {
  return {
    written_by: 'gptune train', gptune_version: '0.1.0', model_name: 'spam-detector', base_model: 'openai-community/gpt2@607a30d783dfa663caf39e06633721c8d4cfcd7e',
    license: 'mit', architecture: 'gpt2', lora: null,
    training: {
      kind: 'classification', train_examples: 3, validation_examples: 1, validation_fraction: null, label_counts: { ham: 2, spam: 1 },
      files: [
        { role: 'train', file: 'train.jsonl', examples: 3, bytes: 120, sha256: 'a'.repeat(64) },
        { role: 'validation', file: 'val.jsonl', examples: 1, bytes: 40, sha256: 'b'.repeat(64) },
      ],
    },
    hyperparameters: { learning_rate: 0.0003, batch_size: 4, lora: false, template: null },
    results: { steps: 10, stop_reason: 'completed', final_train_loss: 0.5, final_val_loss: 0.6, best_val_loss: 0.55, best_step: 8 },
    audit: null,
    evals: [{
      task: { type: 'text-classification', name: 'Text classification' }, dataset: { name: 'test.jsonl', type: 'json' }, source: 'eval.json',
      metrics: [{ type: 'accuracy', value: 0.75, name: 'Accuracy' }, { type: 'f1', value: 0.7, name: 'Macro F1' }],
    }],
    probe: null,
    ...over,
  };
}

describe('renderModelCard', () => {
  test('the front matter parses back with the HF metadata keys and a model-index in HF\'s schema', () => {
    const text = renderModelCard(facts());
    const meta = cardMetadata(text);
    expect(meta.library_name).toBe('gptune');
    expect(meta.license).toBe('mit');
    expect(meta.base_model).toBe('openai-community/gpt2'); // the Hub id, without the pinned revision
    expect(meta.datasets).toEqual([`train.jsonl@sha256:${'a'.repeat(16)}`, `val.jsonl@sha256:${'b'.repeat(16)}`]);
    expect(meta.metrics).toEqual(['accuracy', 'f1']);
    expect(meta.tags).toEqual(['gptune', 'fine-tuned', 'gpt2']);
    expectModelIndexSchema(meta);
    expect(meta['model-index']).toEqual([{
      name: 'spam-detector',
      results: [{
        task: { type: 'text-classification', name: 'Text classification' }, dataset: { name: 'test.jsonl', type: 'json' },
        metrics: [{ type: 'accuracy', value: 0.75, name: 'Accuracy' }, { type: 'f1', value: 0.7, name: 'Macro F1' }],
      }],
    }]);
  });

  test('a local base keeps its whole path, an @ in it included', () => {
    expect(cardMetadata(renderModelCard(facts({ base_model: '/models/me@work/gpt2' }))).base_model).toBe('/models/me@work/gpt2');
    expect(cardMetadata(renderModelCard(facts({ base_model: 'gpt2' }))).base_model).toBe('gpt2');
  });

  test('every section, in order, and the marker that makes the file gptune\'s', () => {
    const text = renderModelCard(facts());
    const headings = text.split('\n').filter((l) => l.startsWith('## ')).map((l) => l.slice(3));
    expect(headings).toEqual(SECTIONS);
    expect(text).toContain(CARD_MARKER);
    expect(text).toContain('| train | train.jsonl | 3 | 120 | ' + 'a'.repeat(64) + ' |');
    expect(text).toContain('| learning_rate | 0.0003 |');
    expect(text).not.toContain('| template |'); // unset keys are left out
    expect(text).toContain('| 10 | completed | 0.5000 | 0.6000 | 0.5500 | 8 |');
    expect(text).toMatch(/need human review/);
  });

  test('unknown license and no base: the keys are omitted; LoRA adds its tags; no evals: no model-index', () => {
    const meta = cardMetadata(renderModelCard(facts({ license: null, base_model: null, evals: [], lora: { r: 8, alpha: 16, target_modules: ['c_attn'] } })));
    expect('license' in meta).toBe(false);
    expect('base_model' in meta).toBe(false);
    expect('model-index' in meta).toBe(false);
    expect('metrics' in meta).toBe(false);
    expect(meta.tags).toEqual(['gptune', 'lora', 'peft', 'gpt2']);
  });

  test('audit lines and the probe table appear when given', () => {
    const probe = probeFromReport({
      task: 'classify', probe: 'counterfactual', groups: ['gender'], seed: 0, labels: ['ham', 'spam'], label_score: 'sum', examples: 20, accuracy: 0.9,
      per_group: { gender: { changed: 5, swaps: 7, flips: 1, flip_rate: 0.2, mean_true_label_logprob_change: -0.03, change_sign: 'negative', accuracy_original: 0.8, accuracy_counterfactual: 0.6, flipped_lines: [4] } },
    }, 'probe.json');
    const text = renderModelCard(facts({ audit: ['train: 3 examples, imbalance ratio 2.00', 'leakage: 1 exact duplicate across train/test'], probe }));
    expect(text).toContain('    leakage: 1 exact duplicate across train/test');
    expect(text).toContain('| gender | 5 | 1 | 20.0% | -0.0300 | 80.0% -> 60.0% |');
  });
});

describe('writeModelCard', () => {
  const root = tempDir('gptune-card-');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const folder = (files: Record<string, string> = {}) => {
    const dir = path.join(root, `m${n++}`);
    fs.mkdirSync(dir);
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    return dir;
  };

  test('README.md in a folder without one; written again over its own', () => {
    const dir = folder();
    expect(writeModelCard(dir, facts())).toBe(path.join(dir, 'README.md'));
    expect(writeModelCard(dir, facts({ license: 'apache-2.0' }))).toBe(path.join(dir, 'README.md'));
    expect(cardMetadata(fs.readFileSync(path.join(dir, 'README.md'), 'utf8')).license).toBe('apache-2.0');
    expect(fs.readdirSync(dir).sort()).toEqual(['README.md', 'gptune_card.json']); // no temporaries left
  });

  test('a README.md the user wrote is kept and the card goes to MODEL_CARD.md', () => {
    const dir = folder({ 'README.md': '# My model\nmy notes\n' });
    expect(writeModelCard(dir, facts())).toBe(path.join(dir, 'MODEL_CARD.md'));
    expect(fs.readFileSync(path.join(dir, 'README.md'), 'utf8')).toBe('# My model\nmy notes\n');
    expect(cardMetadata(fs.readFileSync(path.join(dir, 'MODEL_CARD.md'), 'utf8')).library_name).toBe('gptune');
  });

  test('README.md and MODEL_CARD.md both the user\'s: refused, nothing written', () => {
    const dir = folder({ 'README.md': 'mine\n', 'MODEL_CARD.md': 'mine too\n' });
    expect(() => writeModelCard(dir, facts())).toThrow(OutputError);
    expect(() => writeModelCard(dir, facts())).toThrow(`${dir}: README.md and MODEL_CARD.md are both there and neither was written by gptune`);
    expect(fs.readdirSync(dir).sort()).toEqual(['MODEL_CARD.md', 'README.md']);
    expect(fs.readFileSync(path.join(dir, 'README.md'), 'utf8')).toBe('mine\n');
  });

  test('a gptune_card.json that is not gptune\'s is refused', () => {
    const dir = folder({ 'gptune_card.json': '{"mine": true}\n' });
    expect(() => writeModelCard(dir, facts())).toThrow(`${path.join(dir, 'gptune_card.json')}: is not a gptune card record`);
    expect(fs.readFileSync(path.join(dir, 'gptune_card.json'), 'utf8')).toBe('{"mine": true}\n');
  });

  test('the base\'s license from its README front matter, else config.json; none: null', () => {
    expect(folderLicense(folder({ 'README.md': '---\nlicense: apache-2.0\ntags: [x]\n---\n# Base\n' }))).toBe('apache-2.0');
    expect(folderLicense(folder({ 'config.json': '{"model_type": "gpt2", "license": "mit"}' }))).toBe('mit');
    expect(folderLicense(folder({ 'README.md': '# no front matter\n' }))).toBeNull();
    expect(readFrontMatter('---\n: bad: [\n---\n')).toBeNull();
  });

  test('rewriteModelCard adds eval results and replaces a result from the same report', () => {
    const dir = folder({ 'config.json': '{"model_type": "gpt2"}' });
    const lm = evalFromReport({ loss: 2.5, perplexity: Math.exp(2.5), tokens: 100, token_accuracy: 0.3, seconds: 1 }, path.join(root, 'lm.json'));
    rewriteModelCard(dir, [lm], null);
    const again = { ...lm, metrics: lm.metrics.map((m) => ({ ...m, value: m.value + 1 })) };
    const { facts: f } = rewriteModelCard(dir, [again], null);
    expect(f.evals.length).toBe(1);
    const meta = cardMetadata(fs.readFileSync(path.join(dir, 'README.md'), 'utf8'));
    expectModelIndexSchema(meta);
    expect(meta['model-index'][0].results[0].metrics[0]).toEqual({ type: 'loss', value: 3.5, name: 'Loss (nats per token)' });
    expect(meta.tags).toEqual(['gptune', 'gpt2']); // no base known: not called fine-tuned
    expect(fs.readFileSync(path.join(dir, 'README.md'), 'utf8')).toContain('a model whose training gptune did not record');
  });
});

describe('eval reports into card results', () => {
  test('classify and generate reports: the metrics and the data file as dataset', () => {
    const c = evalFromReport({ task: 'classify', model: 'm', data: '/x/test.jsonl', accuracy: 0.8, f1: 0.75, precision: 0.7, recall: 0.9 }, 'c.json');
    expect(c).toEqual({
      task: { type: 'text-classification', name: 'Text classification' }, dataset: { name: 'test.jsonl', type: 'json' }, source: 'c.json',
      metrics: [
        { type: 'accuracy', value: 0.8, name: 'Accuracy' }, { type: 'f1', value: 0.75, name: 'Macro F1' },
        { type: 'precision', value: 0.7, name: 'Macro precision' }, { type: 'recall', value: 0.9, name: 'Macro recall' },
      ],
    });
    const g = evalFromReport({ task: 'generate', data: 'gen.csv', bleu: 12.5, rouge1: { f: 0.4 }, rouge2: { f: 0.2 }, rougeL: { f: 0.3 } }, 'g.json');
    expect(g.metrics.map((m) => m.value)).toEqual([12.5, 0.4, 0.2, 0.3]);
    expect(g.dataset).toEqual({ name: 'gen.csv', type: 'csv' });
  });

  test('reports that are not one model\'s eval: one line naming the file', () => {
    expect(() => evalFromReport({ a: {}, b: {}, delta: {} }, 'cmp.json')).toThrow('cmp.json: is a --compare report of two models; give the report of this model alone');
    expect(() => evalFromReport({ task: 'classify', probe: 'counterfactual' }, 'p.json')).toThrow('p.json: is a bias probe report; give it with --probe');
    expect(() => evalFromReport({ task: 'classify', accuracy: 'high' }, 'c.json')).toThrow('c.json: expected a number at accuracy (a gptune eval --json report) but found "high"');
    expect(() => evalFromReport([1], 'x.json')).toThrow('x.json: expected a JSON object');
    expect(() => probeFromReport({ task: 'classify', accuracy: 1 }, 'e.json')).toThrow('e.json: expected a gptune eval --probe counterfactual --json report');
  });
});
