/**
 * The demo's augmentation study: does `gptune data augment` help when labels are scarce? The demo's
 * low-data set (the first 100 labelled training emails, as the *_few runs use) trains the demo's
 * bag-of-words classifier (naive Bayes, naive_bayes.ts) as it is and with augmented copies added,
 * and each is scored on the same test emails, with McNemar's exact test of the difference (stats.ts).
 *
 * Naive Bayes rather than a fine-tuned GPT: each GPT run on the 100 emails takes about 50 s on the
 * demo's 2-core machine, and the augmented sets are 5x to 17x larger; naive Bayes trains on all of them
 * in well under a second, so the study fits `npm start`'s budget. What it shows is what augmentation
 * does for a word-count classifier; a GPT classifier may gain or lose differently.
 *
 * The arms:
 *   eda       EDA as its paper recommends for fewer than 500 examples: n_aug = 16 copies per example,
 *             alpha = 0.05 for all four operations (Wei & Zou 2019, table 3)
 *   noise     4 copies per example with textual noise at gptune's default rates
 *   balance   synonym-replacement copies of the minority class until both classes have the majority's count
 */
import { augmentRecords, AugmentMethod, AugmentRates, DataRecord, DEFAULT_RATES } from '../data';
import { classificationReport } from '../eval';
import { NaiveBayes } from './naive_bayes';
import { formatP } from './names';
import { comparePaired } from './stats';

export interface LabelledText {
  text: string;
  label: string;
}

export interface AugmentationArm {
  name: string;
  /** What made the copies: its settings, and in words. */
  settings: Record<string, number>;
  how: string;
  training_examples: number;
  accuracy: number;
  f1: number;
  /** accuracy - the unaugmented classifier's. */
  accuracy_delta: number;
  /** Test emails only this arm classifies right, only the unaugmented classifier does, and McNemar's p. */
  only_augmented_right: number;
  only_plain_right: number;
  mcnemar_p: number;
}

export interface AugmentationStudy {
  classifier: string;
  labelled: number;
  test: number;
  plain: { accuracy: number; f1: number };
  arms: AugmentationArm[];
  seconds: number;
}

interface ArmPlan {
  name: string;
  methods: AugmentMethod[];
  perExample?: number;
  rates?: Partial<AugmentRates>;
  balance?: boolean;
  /** Its settings as report.json records them, and its description made from them. */
  settings: Record<string, number>;
  how: (settings: Record<string, number>) => string;
}

/** EDA's parameter for data sets this small (Wei & Zou 2019, table 3: n_aug 16, alpha 0.05 below 500 examples). */
const EDA_SMALL = { copies: 16, alpha: 0.05 };

const ARMS: readonly ArmPlan[] = [
  {
    name: 'eda', methods: ['eda'], perExample: EDA_SMALL.copies,
    rates: { alphaSr: EDA_SMALL.alpha, alphaRi: EDA_SMALL.alpha, alphaRs: EDA_SMALL.alpha, pRd: EDA_SMALL.alpha },
    settings: { copies_per_example: EDA_SMALL.copies, alpha: EDA_SMALL.alpha },
    how: (x) => `EDA, ${x.copies_per_example} copies per email, alpha ${x.alpha} (the paper's setting for small data sets)`,
  },
  {
    name: 'noise', methods: ['noise'], perExample: 4,
    settings: { copies_per_example: 4, char_swap: DEFAULT_RATES.charSwap, char_delete: DEFAULT_RATES.charDelete, typo: DEFAULT_RATES.typo, word_dropout: DEFAULT_RATES.wordDropout },
    how: (x) => `textual noise, ${x.copies_per_example} copies per email (character swap ${x.char_swap}, deletion ${x.char_delete}, typo ${x.typo}, word dropout ${x.word_dropout})`,
  },
  {
    name: 'balance', methods: ['synonym'], balance: true,
    settings: { alpha_sr: DEFAULT_RATES.alphaSr },
    how: (x) => `synonym replacement (alpha ${x.alpha_sr}) copies of the minority class until the classes are even`,
  },
];

/** Naive Bayes on `train`, with and without each arm's copies, scored on `test`. */
export function augmentationStudy(train: readonly LabelledText[], test: readonly LabelledText[], labels: readonly string[], seed: number): AugmentationStudy {
  const started = process.hrtime.bigint();
  const truth = test.map((e) => e.label);
  const predict = (examples: readonly LabelledText[]) => {
    const bayes = new NaiveBayes(examples.map((e) => e.text), examples.map((e) => e.label));
    return test.map((e) => bayes.predict(e.text));
  };
  const plainPredictions = predict(train);
  const plain = classificationReport(truth, plainPredictions, [...labels]);
  const records: DataRecord[] = train.map((e, i) => ({ kind: 'classification', text: e.text, label: e.label, file: 'the 100 labelled emails', line: i + 1 }));
  const objects = train.map((e) => ({ text: e.text, label: e.label }));
  const arms = ARMS.map((arm): AugmentationArm => {
    const { objects: augmented } = augmentRecords('the labelled emails', 'classification', records, objects, {
      methods: arm.methods, perExample: arm.perExample, rates: arm.rates, balance: arm.balance, seed,
    });
    const predictions = predict(augmented.map((o) => ({ text: o.text as string, label: o.label as string })));
    const scores = classificationReport(truth, predictions, [...labels]);
    const paired = comparePaired(truth, plainPredictions, predictions);
    return {
      name: arm.name, settings: arm.settings, how: arm.how(arm.settings), training_examples: augmented.length,
      accuracy: scores.accuracy, f1: scores.f1, accuracy_delta: scores.accuracy - plain.accuracy,
      only_augmented_right: paired.onlyB, only_plain_right: paired.onlyA, mcnemar_p: paired.p,
    };
  });
  return {
    classifier: 'naive Bayes (bag of words)', labelled: train.length, test: test.length,
    plain: { accuracy: plain.accuracy, f1: plain.f1 }, arms, seconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

/** McNemar's p as the report's other tables print it (names.ts). */
function pValue(p: number): string {
  return formatP(p).replace(/^= /, '');
}

/** The report's section (Markdown lines); none without a study (reports of earlier versions). */
export function augmentationSection(s: AugmentationStudy | undefined, alpha: number): string[] {
  if (s === undefined) return [];
  const lines = [
    `## Augmentation with ${s.labelled} labels (gptune data augment)`,
    '',
    `The ${s.labelled} labelled training emails of the low-data runs train the ${s.classifier} as they are and with augmented copies added (only the email text changes, never the label); every classifier is scored on the same ${s.test} test emails. The GPT classifiers are not retrained on the augmented sets (each would cost minutes; see lib/demo/augment.ts). ${s.seconds.toFixed(1)} s in all.`,
    '',
    '| training data | examples | accuracy | macro-F1 | only augmented right | only plain right | McNemar p |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| the ${s.labelled} emails as they are | ${s.labelled} | ${s.plain.accuracy.toFixed(4)} | ${s.plain.f1.toFixed(4)} | - | - | - |`,
  ];
  for (const a of s.arms) {
    lines.push(`| + ${a.how} | ${a.training_examples} | ${a.accuracy.toFixed(4)} | ${a.f1.toFixed(4)} | ${a.only_augmented_right} | ${a.only_plain_right} | ${pValue(a.mcnemar_p)} |`);
  }
  lines.push('');
  const verdicts = s.arms.map((a) => {
    const direction = a.accuracy_delta > 0 ? 'better' : a.accuracy_delta < 0 ? 'worse' : 'no different';
    const significance = a.mcnemar_p < alpha ? `significant at ${alpha}` : `not significant at ${alpha}: p ${pValue(a.mcnemar_p)}`;
    return `${a.name}: ${a.accuracy_delta >= 0 ? '+' : ''}${a.accuracy_delta.toFixed(4)} accuracy, ${direction} (${significance})`;
  });
  lines.push(`What it shows: ${verdicts.join('; ')}.`);
  lines.push('');
  return lines;
}
