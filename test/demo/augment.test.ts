/**
 * The demo's augmentation study (lib/demo/augment.ts) on a small labelled set: its unaugmented
 * figures are naive Bayes's own (computed here from the classifier directly), each arm's McNemar
 * counts agree with its accuracy, and the report section prints only numbers the study holds.
 */
import { augmentationSection, augmentationStudy } from '../../lib/demo/augment';
import { NaiveBayes } from '../../lib/demo';
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

describe('demo: augmentation with few labels', () => {
  const train = [...SPAM.map((text) => ({ text, label: 'spam' })), ...HAM.map((text) => ({ text, label: 'ham' }))];
  const study = augmentationStudy(train, TEST, ['ham', 'spam'], 7);

  test('the unaugmented classifier is naive Bayes on the labelled texts', () => {
    const bayes = new NaiveBayes(train.map((e) => e.text), train.map((e) => e.label));
    const right = TEST.filter((e) => bayes.predict(e.text) === e.label).length;
    expect(study.plain.accuracy).toBeCloseTo(right / TEST.length, 12);
    expect(study.labelled).toBe(10);
    expect(study.test).toBe(6);
  });

  test('each arm: more training examples, McNemar counts that add up to its accuracy difference', () => {
    expect(study.arms.map((a) => a.name)).toEqual(['eda', 'noise', 'balance']);
    for (const arm of study.arms) {
      expect(arm.training_examples).toBeGreaterThan(10);
      expect(arm.accuracy - study.plain.accuracy).toBeCloseTo((arm.only_augmented_right - arm.only_plain_right) / TEST.length, 12);
      expect(arm.accuracy_delta).toBeCloseTo(arm.accuracy - study.plain.accuracy, 12);
      expect(arm.mcnemar_p).toBeGreaterThan(0);
      expect(arm.mcnemar_p).toBeLessThanOrEqual(1);
    }
    // EDA: 16 copies of each of 10 emails at most; balance: the 4 spam emails filled up to the 6 ham.
    expect(study.arms[0].training_examples).toBeLessThanOrEqual(10 + 160);
    expect(study.arms[2].training_examples).toBe(12);
  });

  test('the section prints only numbers of the study (at the precision shown)', () => {
    const lines = augmentationSection(study, 0.05);
    expect(lines[0]).toBe('## Augmentation with 10 labels (gptune data augment)');
    expect(provenanceProblems(lines.join('\n'), { study, alpha: 0.05, p_floor: 0.0001 })).toEqual([]);
    expect(augmentationSection(undefined, 0.05)).toEqual([]);
  });
});
