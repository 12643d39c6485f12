/**
 * The demo's augmentation study (lib/demo/augment.ts) on a small labelled set, with the GPT
 * fine-tuning replaced by a stand-in that records what it was asked to train: every arm trains for
 * the plain run's step count on its augmented set (labels never change), its McNemar counts agree
 * with its accuracy, the naive-Bayes contrast is naive Bayes's own (computed here from the classifier
 * directly), and the report section prints only numbers the study holds. The real GPT runs are
 * checked end to end by test/demo/demo.test.ts.
 */
import { ArmTraining, AugmentedSet, augmentationFinding, augmentationSection, augmentationStudy, AugmentationStudy } from '../../lib/demo/augment';
import { NaiveBayes } from '../../lib/demo';
import type { RunRecord } from '../../lib/demo/training';
import { provenanceProblems } from './provenance';

const SPAM = ['Win a free prize now, claim your money', 'Cheap pills delivered fast, order today', 'Earn cash from home, click the link', 'Free offer: lose weight now'];
const HAM = [
  'The meeting moved to the large room on Friday', 'Please review the budget before Monday', 'Lunch at noon in the usual place',
  'The report is ready for your comments', 'Can you send the slides from the talk', 'The train was late again this morning',
];
const TEST = [
  { text: 'Claim your free money today', label: 'spam' }, { text: 'Order cheap pills now', label: 'spam' },
  { text: 'Send me the budget report', label: 'ham' }, { text: 'The talk moved to Monday morning', label: 'ham' },
  { text: 'Free cash offer, click now', label: 'spam' }, { text: 'Lunch in the large room', label: 'ham' },
];
// The plain GPT run's test predictions: 4 of 6 right (the 2nd and 5th wrong).
const PLAIN = ['spam', 'ham', 'ham', 'ham', 'ham', 'ham'];
// Each arm's stand-in predictions: eda gets all 6 right, noise answers "spam" always, balance repeats the plain run.
const ARM_PREDICTIONS: Record<string, string[]> = { eda: TEST.map((e) => e.label), noise: TEST.map(() => 'spam'), balance: PLAIN };

function fakeRun(name: string, steps: number): RunRecord {
  return {
    name, train_examples: 0, train_rows: 0, truncated_examples: 1, validation_tokens: 0, steps, planned_steps: steps, batch_size: 4, seq_len: 32, learning_rate: 1e-3,
    stop_reason: 'completed', initial_val_loss: 2, best_val_loss: 1.25, best_step: steps, final_val_loss: 1.25, val_curve: [], train_curve: [],
    wall_s: 3.5, train_s: 3, eval_s: 0.5, train_tokens: 0, tokens_per_s: 0, peak_rss_mb: 0,
  };
}

describe('demo: augmentation with few labels', () => {
  const train = [...SPAM.map((text) => ({ text, label: 'spam' })), ...HAM.map((text) => ({ text, label: 'ham' }))];
  const asked: Array<{ set: AugmentedSet; steps: number }> = [];
  let study: AugmentationStudy;

  beforeAll(async () => {
    study = await augmentationStudy({
      train, test: TEST, labels: ['ham', 'spam'], seed: 7,
      plain: { run: 'task_few', predictions: PLAIN, steps: 12, wall_s: 4.25 },
      fineTune: async (set, steps): Promise<ArmTraining> => {
        asked.push({ set, steps });
        return { run: fakeRun(`task_few_${set.name}`, steps), predictions: ARM_PREDICTIONS[set.name], eval_s: 0.75, train_file: `data/${set.name}.jsonl` };
      },
    });
  });

  test('every arm fine-tunes for the plain run\'s steps on the labelled texts plus copies with unchanged labels', () => {
    expect(asked.map((a) => [a.set.name, a.steps])).toEqual([['eda', 12], ['noise', 12], ['balance', 12]]);
    for (const { set } of asked) {
      const originals = set.objects.filter((o) => o._augmented_from === undefined);
      expect(originals.map((o) => o.text)).toEqual(train.map((e) => e.text));
      for (const copy of set.objects.filter((o) => o._augmented_from !== undefined)) {
        const from = (copy._augmented_from as { line: number }).line;
        expect(copy.label).toBe(train[from - 1].label);
        expect(copy.text).not.toBe(train[from - 1].text);
      }
    }
    expect(study.arms.map((a) => [a.name, a.run.steps, a.training_examples])).toEqual(asked.map((a) => [a.set.name, 12, a.set.objects.length]));
    // EDA: 16 copies of each of 10 emails at most; balance: the 4 spam emails filled up to the 6 ham.
    expect(study.arms[0].training_examples).toBeGreaterThan(10);
    expect(study.arms[0].training_examples).toBeLessThanOrEqual(10 + 160);
    expect(study.arms[2].training_examples).toBe(12);
  });

  test('GPT scores against the plain run: accuracy and McNemar counted by hand', () => {
    expect(study.plain).toEqual({ run: 'task_few', accuracy: 4 / 6, f1: expect.any(Number), steps: 12, wall_s: 4.25 });
    const [eda, noise, balance] = study.arms;
    // eda fixes the 2 the plain run gets wrong: b = 2, c = 0, p = 2 * 0.5^2.
    expect([eda.accuracy, eda.only_augmented_right, eda.only_plain_right, eda.mcnemar_p]).toEqual([1, 2, 0, 0.5]);
    expect(eda.accuracy_delta).toBeCloseTo(2 / 6, 12);
    // "spam" always: right on the 3 spam (2 of which plain gets wrong), wrong on the 3 ham plain gets right.
    expect([noise.accuracy, noise.only_augmented_right, noise.only_plain_right]).toEqual([0.5, 2, 3]);
    // 2 * P(X <= 2), X ~ Binomial(5, 1/2) = 2 * 16/32, capped at 1 (summed in log space: float slack).
    expect(noise.mcnemar_p).toBeCloseTo(1, 12);
    expect([balance.accuracy_delta, balance.only_augmented_right, balance.only_plain_right, balance.mcnemar_p]).toEqual([0, 0, 0, 1]);
  });

  test('the naive-Bayes contrast is naive Bayes on the same sets', () => {
    const accuracy = (examples: ReadonlyArray<{ text: string; label: string }>) => {
      const bayes = new NaiveBayes(examples.map((e) => e.text), examples.map((e) => e.label));
      return TEST.filter((e) => bayes.predict(e.text) === e.label).length / TEST.length;
    };
    expect(study.naive_bayes_plain.accuracy).toBeCloseTo(accuracy(train), 12);
    asked.forEach(({ set }, i) => {
      const nb = study.arms[i].naive_bayes;
      expect(nb.accuracy).toBeCloseTo(accuracy(set.objects as Array<{ text: string; label: string }>), 12);
      expect(nb.accuracy - study.naive_bayes_plain.accuracy).toBeCloseTo((nb.only_augmented_right - nb.only_plain_right) / TEST.length, 12);
    });
  });

  test('the section prints only numbers of the study (at the precision shown)', () => {
    const lines = augmentationSection(study, 0.05);
    expect(lines[0]).toBe('## Augmentation with 10 labels (gptune data augment)');
    expect(provenanceProblems(lines.join('\n'), { study, alpha: 0.05, p_floor: 0.0001 })).toEqual([]);
    expect(lines.join('\n')).toContain('| + EDA, 16 copies per email, alpha 0.05 (the paper\'s setting for small data sets) |');
    expect(augmentationSection(undefined, 0.05)).toEqual([]);
    // The finding: every arm's accuracy, difference and p; eda's 0.5 and noise's 1 are not significant at 0.05.
    const finding = augmentationFinding(study, 0.05)!;
    expect(finding).toContain('eda 1.0000 (+0.3333, McNemar p 0.5000), noise 0.5000 (-0.1667, McNemar p 1.0000), balance 0.6667 (+0.0000, McNemar p 1.0000); no difference is significant at 0.05.');
    expect(provenanceProblems(finding, { study, alpha: 0.05 })).toEqual([]);
    expect(augmentationFinding(undefined, 0.05)).toBeNull();
  });

  test('a plain run whose predictions do not match the test emails is refused', async () => {
    await expect(augmentationStudy({
      train, test: TEST, labels: ['ham', 'spam'], seed: 7, plain: { run: 'task_few', predictions: PLAIN.slice(1), steps: 12, wall_s: 1 }, fineTune: async () => { throw new Error('not reached'); },
    })).rejects.toThrow('augmentation study: expected 6 plain-run predictions but received 5');
  });
});
