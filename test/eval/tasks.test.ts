/**
 * `gptune eval --task qa|ner|translate|summarize`: the task scores of fixed outputs against values
 * worked out by hand from the reference definitions (SQuAD v1.1's evaluate script, seqeval,
 * sacrebleu, rouge-score), and end to end from the CLI: a tiny model trained a few steps on each
 * task's data with `gptune train`, then evaluated, writing the metric JSON and the per-example dump;
 * and the bad-input cases (one FILE:LINE line, non-zero exit, --skip-invalid, QA warnings).
 * Run after `npx tsc -p tsconfig.json` (npm test does it): the CLI tests spawn dist/lib/cli/main.js.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { DataRecord } from '../../lib/data';
import { scoreTask } from '../../lib/eval';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { tempDir, TINY } from '../helpers';

const dir = tempDir('gptune-eval-tasks-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeJSONL(name: string, rows: readonly object[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

const at = { file: 'f.jsonl', line: 1 };

describe('scoreTask on fixed outputs (expected values worked by hand)', () => {
  test('qa: SQuAD normalisation (case, punctuation, articles), max over gold answers, percent', () => {
    const records: DataRecord[] = [
      { kind: 'qa', context: 'The cat sat on the mat.', question: 'Where?', answers: ['on the mat', 'the mat'], ...at },
      { kind: 'qa', context: 'The cat sat on the mat.', question: 'Where?', answers: ['on the mat', 'the mat'], ...at },
    ];
    // "The mat!" normalises to "mat" = "the mat" normalised: EM 1, F1 1.
    // "sat on a mat" -> "sat on mat" vs "on mat": 2 common of 3 predicted, 2 gold: F1 2*(2/3)*1/(2/3+1) = 0.8; vs "mat": 0.5.
    const { metrics, perExample } = scoreTask('qa', records, [' The mat! ', 'sat on a mat']);
    expect(metrics).toEqual({ exact_match: 50, f1: 90, count: 2, answers_not_in_context: 0 });
    expect(perExample[1].score.f1).toBeCloseTo(0.8, 12);
    expect(perExample.map((e) => e.score.exact_match)).toEqual([1, 0]);
    expect(perExample[0].gold).toEqual(['on the mat', 'the mat']);
  });

  test('ner: the output decoded to tags, seqeval entity P/R/F1 per type and micro, token accuracy, malformed lines', () => {
    const records: DataRecord[] = [
      { kind: 'ner', tokens: ['John', 'Smith', 'met', 'Mary', 'in', 'Paris'], tags: ['B-PER', 'I-PER', 'O', 'B-PER', 'O', 'B-LOC'], ...at },
      { kind: 'ner', tokens: ['Hello', 'world'], tags: ['O', 'O'], ...at },
    ];
    // Predicted entities PER(0,2) LOC(3,4) LOC(5,6) against gold PER(0,2) PER(3,4) LOC(5,6): 2 of 3 right.
    const { metrics, perExample } = scoreTask('ner', records, ['PER: John Smith\nLOC: Mary\nthe model rambles\nLOC: Paris', 'none']);
    const m = metrics as Record<string, any>;
    expect(m.precision).toBeCloseTo(2 / 3, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    expect(m.f1).toBeCloseTo(2 / 3, 12);
    expect(m.strict.f1).toBeCloseTo(2 / 3, 12);
    expect(m.accuracy).toBeCloseTo(7 / 8, 12);
    expect(m.per_type.PER).toEqual({ precision: 1, recall: 0.5, f1: expect.closeTo(2 / 3, 12), support: 2 });
    expect(m.per_type.LOC).toEqual({ precision: 0.5, recall: 1, f1: expect.closeTo(2 / 3, 12), support: 1 });
    expect([m.malformed_lines, m.unmatched_spans, m.sentences, m.tokens]).toEqual([1, 0, 2, 8]);
    expect(perExample[0].predicted_tags).toEqual(['B-PER', 'I-PER', 'O', 'B-LOC', 'O', 'B-LOC']);
    expect(perExample[0].score).toEqual({ token_accuracy: 5 / 6, malformed_lines: 1, unmatched_spans: 0 });
    expect(perExample[0].gold).toBe('PER: John Smith\nPER: Mary\nLOC: Paris');
  });

  test('translate: identical output scores 100 on BLEU, chrF and chrF++, with sacrebleu 2.4\'s signature strings', () => {
    const records: DataRecord[] = [{ kind: 'translation', source: 'Guten Morgen, Welt.', target: 'Good morning, world.', ...at }];
    const { metrics, perExample } = scoreTask('translate', records, ['Good morning, world.']);
    const m = metrics as Record<string, any>;
    expect([m.bleu.toFixed(2), m.chrf, m.chrf_pp, m.bp]).toEqual(['100.00', 100, 100, 1]);
    expect(m.bleu_signature).toBe('nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.3');
    expect(m.chrf_signature).toBe('nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.3');
    expect(m.chrf_pp_signature).toBe('nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.4.3');
    expect(perExample[0].score.chrf).toBe(100);
    const none = scoreTask('translate', records, ['xyz']).metrics as Record<string, any>;
    expect([none.bleu, none.chrf, none.chrf_pp]).toEqual([0, 0, 0]);
  });

  test('summarize: ROUGE-Lsum splits sentences at line breaks, so swapped sentences score 1 there and 0.5 on ROUGE-L', () => {
    const records: DataRecord[] = [{ kind: 'summarization', document: 'doc', summary: 'the cat sat\nthe dog ran', ...at }];
    const m = scoreTask('summarize', records, ['the dog ran\nthe cat sat']).metrics as Record<string, any>;
    // Unigrams all match; bigrams: 4 of 5 ("sat the" vs "ran the" differ); LCS over the whole token list 3 of 6.
    expect(m.rouge1).toEqual({ p: 1, r: 1, f: 1 });
    expect(m.rouge2.f).toBeCloseTo(0.8, 12);
    expect(m.rougeL).toEqual({ p: 0.5, r: 0.5, f: 0.5 });
    expect(m.rougeLsum).toEqual({ p: 1, r: 1, f: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// From the CLI

const QA_ROWS = [
  { context: 'Anna lives in Oslo.', question: 'Where does Anna live?', answers: ['Oslo', 'in Oslo'] },
  { context: 'Ben lives in Rome.', question: 'Where does Ben live?', answers: ['Rome'] },
  { context: 'Cleo lives in Lima.', question: 'Where does Cleo live?', answers: ['Lima'] },
  { context: 'Dan lives in Kyiv.', question: 'Where does Dan live?', answers: { text: ['Kyiv'], answer_start: [13] } },
];
const NER_ROWS = [
  { tokens: ['Anna', 'met', 'Ben', 'in', 'Oslo', '.'], tags: ['B-PER', 'O', 'B-PER', 'O', 'B-LOC', 'O'] },
  { tokens: ['Cleo', 'left', 'Lima', '.'], tags: ['B-PER', 'O', 'B-LOC', 'O'] },
  { tokens: ['It', 'rained', '.'], tags: ['O', 'O', 'O'] },
];
const MT_ROWS = [
  { source: 'Guten Morgen', target: 'Good morning' },
  { source: 'Gute Nacht', target: 'Good night' },
  { source: 'Danke', target: 'Thank you' },
];
const SUM_ROWS = [
  { document: 'The cat sat on the mat all day. It was warm.', summary: 'A cat sat.' },
  { document: 'The dog ran in the park. It was fast.', summary: 'A dog ran.\nIt was fast.' },
];

/** `gptune train` a few steps on the file; returns the output folder. */
function trainOn(data: string, name: string, steps: number, extra: string[] = []): string {
  const out = path.join(dir, name);
  const r = gptune('train', '--model', TINY, '--data', data, '--out', out, '--steps', String(steps), '--batch-size', '2', '--seq-len', '64',
    '--lr', '1e-2', '--seed', '1', '--quiet', ...extra);
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
  return out;
}

describe('gptune train + eval --task, end to end', () => {
  test.each([
    ['qa', 'qa.jsonl', QA_ROWS, ['exact_match', 'f1', 'count', 'answers_not_in_context']],
    ['ner', 'ner.jsonl', NER_ROWS, ['precision', 'recall', 'f1', 'accuracy', 'per_type', 'micro_avg', 'macro_avg', 'weighted_avg', 'strict', 'malformed_lines', 'unmatched_spans']],
    ['translate', 'mt.jsonl', MT_ROWS, ['bleu', 'precisions', 'bp', 'bleu_signature', 'chrf', 'chrf_signature', 'chrf_pp', 'chrf_pp_signature']],
    ['summarize', 'sum.jsonl', SUM_ROWS, ['rouge1', 'rouge2', 'rougeL', 'rougeLsum']],
  ])('%s: train 3 steps, eval writes the metric JSON and a dump with prompt, output, gold and score', (task, name, rows, keys) => {
    const data = writeJSONL(name, rows);
    const extra = task === 'translate' ? ['--source-lang', 'German', '--target-lang', 'English'] : [];
    const model = trainOn(data, `${task}-model`, 3, extra);
    const dump = path.join(dir, `${task}-dump.jsonl`);
    const r = gptune('eval', '--task', task, '--model', model, '--data', data, '--json', '--dump', dump, '--max-new-tokens', '12', ...extra);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const j = lastJSON(r.stdout);
    expect(j.task).toBe(task);
    expect(j.examples).toBe(rows.length);
    for (const key of keys) expect(j).toHaveProperty(key);
    const lines = fs.readFileSync(dump, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(rows.length);
    for (const l of lines) for (const key of ['line', 'prompt', 'output', 'gold', 'score']) expect(l).toHaveProperty(key);
    if (task === 'translate') expect(lines[0].prompt).toBe('German: Guten Morgen\nEnglish:');
    if (task === 'ner') expect(lines[0].predicted_tags).toHaveLength(6);
    expect(j.num_beams).toBe(1);
    expect(j.stop_strings).toEqual(task === 'ner' ? ['\n\n'] : task === 'summarize' ? [] : ['\n']);
    expect(Object.values(j.stops as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(rows.length);
    const human = gptune('eval', '--task', task, '--model', model, '--data', data, '--max-new-tokens', '12', ...extra);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch({ qa: /exact_match \d+\.\d\d {2}f1 \d+\.\d\d/, ner: /micro avg.*token accuracy.*strict IOB2: F1/s, translate: /BLEU = .*chrF2 = .*chrF2\+\+ = /s, summarize: /rougeLsum/ }[task]!);
  });

  test('--num-beams 3 decodes with beam search (one hypothesis per example, its stop reason in the dump)', () => {
    const data = writeJSONL('mt-beams.jsonl', MT_ROWS);
    const model = trainOn(data, 'mt-beams-model', 3);
    const dump = path.join(dir, 'beams-dump.jsonl');
    const r = gptune('eval', '--task', 'translate', '--model', model, '--data', data, '--json', '--num-beams', '3', '--length-penalty', '0.5', '--max-new-tokens', '6', '--dump', dump);
    expect(r.code).toBe(0);
    expect(lastJSON(r.stdout)).toMatchObject({ task: 'translate', examples: 3, num_beams: 3, length_penalty: 0.5, max_new_tokens: 6 });
    const lines = fs.readFileSync(dump, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const l of lines) expect(['eos', 'stop_string', 'max_new_tokens', 'context_full']).toContain(l.stop);
    expect(gptune('eval', '--task', 'translate', '--model', model, '--data', data, '--num-beams', '3', '--max-new-tokens', '6').stdout).toContain('beam search, 3 beams, length penalty 1');
  });

  test('qa --compare: a model trained on the questions answers them better than the base; a CoNLL file trains and evaluates as ner', () => {
    const data = writeJSONL('qa-learn.jsonl', QA_ROWS.slice(0, 3));
    const tuned = trainOn(data, 'qa-learned', 80);
    const c = lastJSON(gptune('eval', '--task', 'qa', '--model', TINY, '--compare', tuned, '--data', data, '--json').stdout) as Record<string, any>;
    expect(c.a.exact_match).toBe(0);
    expect(c.b.exact_match).toBe(100);
    expect(c.delta.exact_match).toBe(100);

    const conll = path.join(dir, 'train.conll');
    fs.writeFileSync(conll, '-DOCSTART- O\n\nAnna B-PER\nleft O\n\nBen B-PER\nstayed O\n');
    const model = trainOn(conll, 'conll-model', 2);
    const j = lastJSON(gptune('eval', '--task', 'ner', '--model', model, '--data', conll, '--json', '--max-new-tokens', '8').stdout);
    expect([j.task, j.examples, j.sentences]).toEqual(['ner', 2, 2]);
  });
});

describe('bad input: one line naming the file and line, non-zero exit, unless --skip-invalid', () => {
  test('ner: tags and tokens of different lengths; an I- without a B-', () => {
    const data = writeJSONL('bad-ner.jsonl', [NER_ROWS[0], { tokens: ['a', 'b'], tags: ['O'] }]);
    expectCleanFailure(['eval', '--task', 'ner', '--model', TINY, '--data', data], new RegExp(`${data}:2: "tokens" has 2 items but "tags" has 1`));
    const out = path.join(dir, 'never');
    expectCleanFailure(['train', '--model', TINY, '--data', data, '--out', out, '--steps', '1'], new RegExp(`${data}:2: "tokens" has 2 items`), out);
    const iTag = writeJSONL('bad-ner2.jsonl', [NER_ROWS[0], NER_ROWS[1], { tokens: ['in', 'New', 'York'], tags: ['O', 'O', 'I-LOC'] }]);
    expectCleanFailure(['eval', '--task', 'ner', '--model', TINY, '--data', iTag], new RegExp(`${iTag}:3: tags\\[2\\]: I-LOC follows O: an entity starts with B-LOC`));
    const r = gptune('eval', '--task', 'ner', '--model', TINY, '--data', iTag, '--skip-invalid', '--json', '--max-new-tokens', '4');
    expect(r.code).toBe(0);
    expect(lastJSON(r.stdout)).toMatchObject({ examples: 2, skipped_lines: 1 });
  });

  test('translate: an empty source; summarize: an empty document', () => {
    const mt = writeJSONL('bad-mt.jsonl', [MT_ROWS[0], { source: '', target: 'x' }]);
    expectCleanFailure(['eval', '--task', 'translate', '--model', TINY, '--data', mt], new RegExp(`${mt}:2: field "source" is empty`));
    const sum = writeJSONL('bad-sum.jsonl', [{ document: '  ', summary: 'x' }]);
    expectCleanFailure(['eval', '--task', 'summarize', '--model', TINY, '--data', sum], new RegExp(`${sum}:1: field "document" is empty`));
  });

  test('qa: an answer not in its context is a warning on stderr and a count in the report, not an error', () => {
    const data = writeJSONL('warn-qa.jsonl', [QA_ROWS[0], { context: 'Eve lives in Bern.', question: 'Where does Eve live?', answers: ['Zurich'] }]);
    const r = gptune('eval', '--task', 'qa', '--model', TINY, '--data', data, '--json', '--max-new-tokens', '4');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`warning: 1 line(s) with a warning, first: ${data}:2: answer "Zurich" is not in the context`);
    expect(lastJSON(r.stdout)).toMatchObject({ warnings: 1, answers_not_in_context: 1 });
  });

  test('flags of other tasks are refused; --source-lang belongs to translate', () => {
    const data = writeJSONL('qa-flags.jsonl', QA_ROWS);
    expectCleanFailure(['eval', '--task', 'qa', '--model', TINY, '--data', data, '--source-lang', 'German'], /--source-lang applies to --task translate, not --task qa/);
    expectCleanFailure(['eval', '--task', 'qa', '--model', TINY, '--data', data, '--labels', 'a,b'], /--labels applies to --task classify, not --task qa/);
    expectCleanFailure(['eval', '--task', 'qa', '--model', TINY, '--data', data, '--num-beams', '0'], /--num-beams: expected a whole number >= 1 but received '0'/);
    expectCleanFailure(['eval', '--task', 'generate', '--model', TINY, '--data', data, '--num-beams', '2'], /--num-beams applies to --task qa\/ner\/translate\/summarize, not --task generate/);
  });
});
