/**
 * `gptune score` with the task metrics: chrF / chrF++ (scores from running sacrebleu 2.4.3's source on
 * test_chrf.py's three sentence-level cases as one corpus), SQuAD exact match / F1, seqeval (README
 * examples) and ROUGE-Lsum (hand-derived, with and without the stemmer). Run after
 * `npx tsc -p tsconfig.json`: the tests spawn dist/lib/cli/main.js.
 */
import * as fs from 'fs';
import * as path from 'path';
import { gptune, lastJSON } from '../cli/run';
import { tempDir } from '../helpers';

const dir = tempDir('gptune-score-metrics-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeLines(name: string, lines: readonly string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function ok(...args: string[]): Record<string, any> {
  const r = gptune('score', ...args, '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return lastJSON(r.stdout);
}

describe('gptune score --metric chrf | chrf++', () => {
  // sacrebleu test_chrf.py test_sentence_level_chrf, scored as one corpus.
  const hyp = writeLines('cs_hyp.txt', [
    'Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.',
    'Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.',
    'Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.',
  ]);
  const ref = writeLines('cs_ref.txt', [
    'Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.',
    'A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.',
    'Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.',
  ]);

  test('chrf: sacrebleu corpus chrF2 = 43.03622941164886 and its signature', () => {
    const j = ok('--metric', 'chrf', '--pred', hyp, '--ref', ref);
    expect(j.score).toBeCloseTo(43.03622941164886, 10);
    expect(j.name).toBe('chrF2');
    expect(j.signature).toBe('nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.3');
    expect(j.lines).toBe(3);
  });

  test('chrf++: sacrebleu corpus chrF2++ = 41.85250625621974; the text form is sacrebleu\'s line', () => {
    expect(ok('--metric', 'chrf++', '--pred', hyp, '--ref', ref).score).toBeCloseTo(41.85250625621974, 10);
    const human = gptune('score', '--metric', 'chrf++', '--pred', hyp, '--ref', ref).stdout;
    expect(human).toContain('chrF2++|nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.4.3 = 41.85');
  });
});

describe('gptune score --metric exact_match | squad_f1', () => {
  const pred = writeLines('qa_pred.txt', ['Eiffel Tower', 'the cat sat on the mat', 'nothing']);
  const gold1 = writeLines('qa_gold1.txt', ['the Eiffel Tower', 'dog', 'something']);
  // Question 3 has one gold answer only: the empty line in the second file is no answer.
  const gold2 = writeLines('qa_gold2.txt', ['Paris', 'a cat on a mat', '']);

  test.each(['exact_match', 'squad_f1'])('%s prints both numbers of the SQuAD v1.1 script, in percent', (metric) => {
    // Q1 EM 1 F1 1; Q2 best gold "a cat on a mat": EM 0, F1 6/7; Q3 0 and 0 (see squad.test.ts).
    const j = ok('--metric', metric, '--pred', pred, '--ref', gold1, '--ref', gold2);
    expect(j.exact_match).toBeCloseTo(100 / 3, 12);
    expect(j.f1).toBeCloseTo(1300 / 21, 12);
    expect(j.count).toBe(3);
  });

  test('text output', () => {
    expect(gptune('score', '--metric', 'squad_f1', '--pred', pred, '--ref', gold1, '--ref', gold2).stdout).toContain('exact_match 33.33  f1 61.90  (3 questions)');
  });
});

describe('gptune score --metric seqeval', () => {
  // seqeval README: one sentence per line.
  const truth = writeLines('ner_true.txt', ['O O O B-MISC I-MISC I-MISC O', 'B-PER I-PER O']);
  const pred = writeLines('ner_pred.txt', ['O O B-MISC I-MISC I-MISC I-MISC O', 'B-PER I-PER O']);

  test('README example: MISC 0, PER 1, averages 0.5, token accuracy 0.8', () => {
    const j = ok('--metric', 'seqeval', '--pred', pred, '--ref', truth);
    expect(j.per_type).toEqual({ MISC: { precision: 0, recall: 0, f1: 0, support: 1 }, PER: { precision: 1, recall: 1, f1: 1, support: 1 } });
    expect([j.precision, j.recall, j.f1]).toEqual([0.5, 0.5, 0.5]);
    expect(j.accuracy).toBeCloseTo(0.8, 15);
    expect(j.mode).toBe('default');
    const human = gptune('score', '--metric', 'seqeval', '--pred', pred, '--ref', truth).stdout;
    expect(human).toMatch(/MISC\s+0\.00\s+0\.00\s+0\.00\s+1/);
    expect(human).toMatch(/weighted avg\s+0\.50\s+0\.50\s+0\.50\s+2/);
  });

  test('README minimum case in --mode strict: I-NP I-NP O scores 0', () => {
    const t = writeLines('np_true.txt', ['B-NP I-NP O']), p = writeLines('np_pred.txt', ['I-NP I-NP O']);
    expect(ok('--metric', 'seqeval', '--pred', p, '--ref', t).f1).toBe(1);
    expect(ok('--metric', 'seqeval', '--pred', p, '--ref', t, '--mode', 'strict').f1).toBe(0);
  });

  test('a line whose tag counts differ is one error naming the line; two reference files are refused', () => {
    const bad = writeLines('ner_bad.txt', ['O O O B-MISC I-MISC I-MISC O', 'B-PER O']);
    const r = gptune('score', '--metric', 'seqeval', '--pred', bad, '--ref', truth);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('line 2 has 2 predicted tags but 3 reference tags');
    expect(gptune('score', '--metric', 'seqeval', '--pred', pred, '--ref', truth, '--ref', truth).stderr).toMatch(/exactly one reference file/);
    const strictBad = writeLines('ner_e.txt', ['O O O B-MISC I-MISC E-MISC O', 'B-PER I-PER O']);
    expect(gptune('score', '--metric', 'seqeval', '--pred', strictBad, '--ref', truth, '--mode', 'strict').stderr).toMatch(/"E-MISC"; expected O or a tag starting with B or I/);
  });
});

describe('gptune score --metric rougeLsum', () => {
  // A literal \n separates sentences. Target [cats sat] [the dogs ran], prediction [the cat sat] [dog ran].
  // Without stemming: sentence 1's union LCS is {sat}, sentence 2's {the, ran}: 3 hits of 5 tokens
  // each side -> P = R = F = 3/5. With stemming cats -> cat and dogs -> dog (tokens over 3
  // characters): sentence 1 {cat, sat}, sentence 2 {the, dog, ran}: 5 hits -> 1. ROUGE-L over the
  // whole text with stemming: LCS of "cat sat the dog ran" and "the cat sat dog ran" is 4 -> 4/5.
  const target = writeLines('sum_target.txt', ['cats sat\\nthe dogs ran']);
  const prediction = writeLines('sum_pred.txt', ['the cat sat\\ndog ran']);

  test('without and with the Porter stemmer (hand-derived)', () => {
    const plain = ok('--metric', 'rougeLsum', '--pred', prediction, '--ref', target);
    expect(plain.rougeLsum.f).toBeCloseTo(0.6, 15);
    expect(plain.rougeLsum.p).toBeCloseTo(0.6, 15);
    const stemmed = ok('--metric', 'rougeLsum', '--pred', prediction, '--ref', target, '--use-stemmer');
    expect(stemmed.rougeLsum).toEqual({ p: 1, r: 1, f: 1 });
    expect(stemmed.rougeL.f).toBeCloseTo(0.8, 15);
    expect(Object.keys(stemmed).filter((k) => k.startsWith('rouge'))).toEqual(['rouge1', 'rouge2', 'rougeL', 'rougeLsum']);
    expect(gptune('score', '--metric', 'rougeLsum', '--pred', prediction, '--ref', target).stdout).toMatch(/rougeLsum\s+60\.00\s+60\.00\s+60\.00/);
  });

  test('--metric rouge leaves the escape alone and reports no rougeLsum', () => {
    expect(ok('--metric', 'rouge', '--pred', prediction, '--ref', target).rougeLsum).toBeUndefined();
  });
});
