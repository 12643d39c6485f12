/**
 * seqeval's entity-level scores and token accuracy, against (a) seqeval's README and docstrings,
 * (b) seqeval's own tests (tests/test_metrics.py, tests/test_scheme.py at chakki-works/seqeval
 * cd01b52), (c) conlleval.pl (the reference seqeval's default mode reproduces) run by us on seqeval's
 * tests/data/ground_truth.txt, copied to test/fixtures/metrics/seqeval_ground_truth.txt, and (d) one
 * case of our own whose figures come from running seqeval 1.2's source (classification_report with
 * output_dict=True) under Python 3, with the working shown.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { seqevalEntitiesDefault, seqevalEntitiesIob2, seqevalReport } from '../../lib/metrics/seqeval';

const pct = (x: number) => (100 * x).toFixed(2);

// README "Usage" example (also the accuracy_score and precision_recall_fscore_support docstrings).
const README_TRUE = [['O', 'O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'O'], ['B-PER', 'I-PER', 'O']];
const README_PRED = [['O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'I-MISC', 'O'], ['B-PER', 'I-PER', 'O']];

describe('seqeval README and docstrings', () => {
  test.each(['default', 'strict'] as const)('README classification_report (%s mode): MISC 0, PER 1, every average 0.50, support 2', (mode) => {
    const r = seqevalReport(README_TRUE, README_PRED, { mode });
    expect(r.per_type).toEqual({
      MISC: { precision: 0, recall: 0, f1: 0, support: 1 },
      PER: { precision: 1, recall: 1, f1: 1, support: 1 },
    });
    for (const avg of [r.micro_avg, r.macro_avg, r.weighted_avg]) expect(avg).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
    expect([r.precision, r.recall, r.f1]).toEqual([0.5, 0.5, 0.5]);
  });

  test('accuracy_score docstring: 0.80', () => {
    expect(seqevalReport(README_TRUE, README_PRED).accuracy).toBeCloseTo(0.8, 15);
  });

  test('f1_score docstring: micro 0.6666666666666666, macro 0.75, weighted 0.6666666666666666, per type [0.5, 1]', () => {
    const r = seqevalReport(
      [['O', 'O', 'B-MISC', 'I-MISC', 'B-MISC', 'O', 'O'], ['B-PER', 'I-PER', 'O']],
      [['O', 'O', 'B-MISC', 'I-MISC', 'B-MISC', 'I-MISC', 'O'], ['B-PER', 'I-PER', 'O']],
    );
    expect(r.f1).toBe(0.6666666666666666);
    expect(r.macro_avg.f1).toBe(0.75);
    expect(r.weighted_avg.f1).toBe(0.6666666666666666);
    expect([r.per_type.MISC.f1, r.per_type.PER.f1]).toEqual([0.5, 1]);
  });

  test('README minimum case: I-NP I-NP O against B-NP I-NP O is 1.00 by default and 0.00 strict', () => {
    const yTrue = [['B-NP', 'I-NP', 'O']], yPred = [['I-NP', 'I-NP', 'O']];
    expect(seqevalReport(yTrue, yPred).per_type.NP).toEqual({ precision: 1, recall: 1, f1: 1, support: 1 });
    const strict = seqevalReport(yTrue, yPred, { mode: 'strict', scheme: 'IOB2' });
    expect(strict.per_type.NP).toEqual({ precision: 0, recall: 0, f1: 0, support: 1 });
    expect([strict.micro_avg.f1, strict.macro_avg.f1, strict.weighted_avg.f1]).toEqual([0, 0, 0]);
  });
});

describe('seqeval tests/test_metrics.py', () => {
  test('test_conll_f1score / test_strict_f1score: [I-ORG I-ORG] vs [B-ORG I-ORG] -> 1 default, 0 strict', () => {
    expect(seqevalReport([['B-ORG', 'I-ORG']], [['I-ORG', 'I-ORG']]).f1).toBe(1);
    expect(seqevalReport([['B-ORG', 'I-ORG']], [['I-ORG', 'I-ORG']], { mode: 'strict' }).f1).toBe(0);
  });

  test('test_get_entities: [(MISC, 3, 5), (PER, 7, 8)] (ends inclusive there, exclusive here)', () => {
    expect(seqevalEntitiesDefault(['O', 'O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'O', 'B-PER', 'I-PER'])).toEqual([
      { type: 'MISC', start: 3, end: 6 },
      { type: 'PER', start: 7, end: 9 },
    ]);
  });

  test('test_get_entities_with_only_IOB: sentences joined with O give [(_, 3, 5), (_, 8, 9)]', () => {
    const joined = [...['O', 'O', 'O', 'B', 'I', 'I', 'O'], 'O', ...['B', 'I', 'O'], 'O'];
    expect(seqevalEntitiesDefault(joined)).toEqual([{ type: '_', start: 3, end: 6 }, { type: '_', start: 8, end: 10 }]);
  });

  test('test_value_error: sentences of different lengths are refused', () => {
    expect(() => seqevalReport([['O']], [[]])).toThrow(/sentence 0 has 1 gold tags but 0 predicted/);
    expect(() => seqevalReport([[]], [['O']])).toThrow(/sentence 0/);
    expect(() => seqevalReport([['O']], [])).toThrow(/1 sentences but yPred has 0/);
  });

  test('test_undefined_metric_warning / test_runtime_warning: no entities -> micro 0, macro NaN (mean of nothing)', () => {
    for (const mode of ['default', 'strict'] as const) {
      const r = seqevalReport([[]], [[]], { mode });
      expect([r.precision, r.recall, r.f1]).toEqual([0, 0, 0]);
      expect(r.macro_avg.f1).toBeNaN();
      expect(r.weighted_avg).toEqual({ precision: 0, recall: 0, f1: 0, support: 0 });
    }
  });
});

describe('seqeval tests/test_scheme.py: strict IOB2 entities (end exclusive)', () => {
  test.each([
    [[], []],
    [['B-PER'], [['PER', 0, 1]]],
    [['I-PER'], []],
    [['O'], []],
    [['O', 'I-PER'], []],
    [['O', 'B-PER'], [['PER', 1, 2]]],
    [['I-PER', 'O'], []],
    [['I-PER', 'I-PER'], []],
    [['I-PER', 'I-ORG'], []],
    [['I-PER', 'B-PER'], [['PER', 1, 2]]],
    [['I-PER', 'B-ORG'], [['ORG', 1, 2]]],
    [['B-PER', 'O'], [['PER', 0, 1]]],
    [['B-PER', 'I-PER'], [['PER', 0, 2]]],
    [['B-PER', 'I-ORG'], [['PER', 0, 1]]],
    [['B-PER', 'B-PER'], [['PER', 0, 1], ['PER', 1, 2]]],
    [['B-PER', 'B-ORG'], [['PER', 0, 1], ['ORG', 1, 2]]],
    // test_iob2_tokens_without_tag
    [['B'], [['_', 0, 1]]],
    [['B', 'I'], [['_', 0, 2]]],
    [['I', 'B'], [['_', 1, 2]]],
    [['B', 'B'], [['_', 0, 1], ['_', 1, 2]]],
  ] as Array<[string[], Array<[string, number, number]>]>)('test_iob2_tokens %j -> %j', (tags, expected) => {
    expect(seqevalEntitiesIob2(tags).map((e) => [e.type, e.start, e.end])).toEqual(expected);
  });

  test('test_invalid_prefix: E and S are not IOB2 (the message names the sentence and tag)', () => {
    expect(() => seqevalReport([['O', 'E-PER']], [['O', 'O']], { mode: 'strict' })).toThrow(/yTrue\[0\]\[1\] is "E-PER"/);
    expect(() => seqevalReport([['O']], [['S-PER']], { mode: 'strict' })).toThrow(/yPred\[0\]\[0\] is "S-PER"/);
    expect(() => seqevalReport([['O']], [['O']], { mode: 'strict', scheme: 'IOBES' as 'IOB2' })).toThrow(/scheme 'IOB2'/);
  });
});

describe('conlleval.pl on seqeval tests/data/ground_truth.txt (CoNLL-2000 chunking output)', () => {
  // seqeval's load_labels: "word pos gold pred" lines, sentences split by blank lines.
  const yTrue: string[][] = [], yPred: string[][] = [];
  let t: string[] = [], p: string[] = [];
  for (const line of readFileSync(join(__dirname, '..', 'fixtures', 'metrics', 'seqeval_ground_truth.txt'), 'utf8').split('\n')) {
    const fields = line.trimEnd().split(' ');
    if (line.trim() === '') {
      if (t.length > 0) {
        yTrue.push(t);
        yPred.push(p);
        t = [];
        p = [];
      }
    } else {
      t.push(fields[2]);
      p.push(fields[3]);
    }
  }
  if (t.length > 0) {
    yTrue.push(t);
    yPred.push(p);
  }

  test('totals: 961 tokens, 459 phrases, 539 found, 371 correct; accuracy 84.08%', () => {
    // `perl conlleval.pl < ground_truth.txt` printed:
    //   processed 961 tokens with 459 phrases; found: 539 phrases; correct: 371.
    //   accuracy:  84.08%; precision:  68.83%; recall:  80.83%; FB1:  74.35
    const r = seqevalReport(yTrue, yPred);
    expect(r.tokens).toBe(961);
    expect(r.micro_avg.support).toBe(459);
    expect(r.precision).toBe(371 / 539);
    expect(r.recall).toBe(371 / 459);
    expect(pct(r.accuracy)).toBe('84.08');
    expect([pct(r.precision), pct(r.recall), pct(r.f1)]).toEqual(['68.83', '80.83', '74.35']);
  });

  test.each([
    // type, precision %, recall %, FB1, as conlleval.pl printed them
    ['ADJP', '0.00', '0.00', '0.00'],
    ['ADVP', '45.45', '62.50', '52.63'],
    ['NP', '64.98', '78.63', '71.16'],
    ['PP', '83.18', '98.89', '90.36'],
    ['SBAR', '66.67', '33.33', '44.44'],
    ['VP', '69.00', '79.31', '73.80'],
  ])('%s: precision %s%%, recall %s%%, FB1 %s', (type, precision, recall, f1) => {
    const r = seqevalReport(yTrue, yPred).per_type[type];
    expect([pct(r.precision), pct(r.recall), pct(r.f1)]).toEqual([precision, recall, f1]);
  });
});

describe('a case of our own, checked with seqeval 1.2 run under Python', () => {
  // Gold: PER[0,2) LOC[3,6) | ORG[1,2) | LOC[0,1).
  // Default-mode prediction: PER[0,1) LOC[1,2) LOC[3,5) LOC[5,6) | ORG[1,2) (I- after O starts one) | none.
  // Only ORG matches: micro P 1/5, R 1/4, F 2/9; macro P = R = F = 1/3 (ORG 1, LOC 0, PER 0);
  // weighted by support (LOC 2, ORG 1, PER 1) = 1/4. Strict: the I-ORG is no entity, so all 0.
  // Token accuracy: 5 of 10 tags equal.
  const yTrue = [['B-PER', 'I-PER', 'O', 'B-LOC', 'I-LOC', 'I-LOC'], ['O', 'B-ORG', 'O'], ['B-LOC']];
  const yPred = [['B-PER', 'I-LOC', 'O', 'I-LOC', 'I-LOC', 'B-LOC'], ['O', 'I-ORG', 'O'], ['O']];

  test('default mode', () => {
    const r = seqevalReport(yTrue, yPred);
    expect(Object.keys(r.per_type)).toEqual(['LOC', 'ORG', 'PER']);
    expect(r.per_type.LOC).toEqual({ precision: 0, recall: 0, f1: 0, support: 2 });
    expect(r.per_type.ORG).toEqual({ precision: 1, recall: 1, f1: 1, support: 1 });
    // seqeval printed micro f1-score 0.22222222222222224 and macro 0.3333333333333333.
    expect(r.micro_avg).toEqual({ precision: 0.2, recall: 0.25, f1: 0.22222222222222224, support: 4 });
    expect(r.macro_avg).toEqual({ precision: 0.3333333333333333, recall: 0.3333333333333333, f1: 0.3333333333333333, support: 4 });
    expect(r.weighted_avg).toEqual({ precision: 0.25, recall: 0.25, f1: 0.25, support: 4 });
    expect(r.accuracy).toBe(0.5);
  });

  test('strict IOB2 mode', () => {
    const r = seqevalReport(yTrue, yPred, { mode: 'strict', scheme: 'IOB2' });
    expect(r.per_type.ORG).toEqual({ precision: 0, recall: 0, f1: 0, support: 1 });
    expect([r.micro_avg.f1, r.macro_avg.f1, r.weighted_avg.f1]).toEqual([0, 0, 0]);
    expect(r.micro_avg.support).toBe(4);
  });
});
