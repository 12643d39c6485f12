/**
 * The demo's augmentation study: does `gptune data augment` help when labels are scarce? The
 * report's "only 100 labels" GPT run (task_few: the base fine-tuned on the first fewLabelledEmails
 * training emails) is repeated on those emails augmented by each method below, and each augmented
 * run is scored on the same test emails as every other classifier, with McNemar's exact test
 * against the plain task_few run (stats.ts).
 *
 * Equal compute: each augmented run takes exactly as many optimizer steps as the plain run took
 * (its steps, after early stopping), with the plain run's batch size, peak learning rate, warmup
 * ratio, weight decay and number of validation evaluations, and keeps its best validation step as
 * the plain run does; only early stopping is off, so that the step counts are equal. The augmented
 * sets are 1.3x to 17x larger, so epochs would give the larger sets more compute; steps do not.
 * The cosine schedule decays over those steps (the plain run's decays over its planned steps and
 * stopped early), so the two schedules differ only in where the decay ends.
 *
 * The arms (the same augmentRecords `gptune data augment` runs, seeded with the demo's seed):
 *   eda       EDA as its paper recommends for fewer than 500 examples: n_aug = 16 copies per example,
 *             alpha = 0.05 for all four operations (Wei & Zou 2019, table 3)
 *   noise     4 copies per example with textual noise at gptune's default rates
 *   balance   synonym-replacement copies of the minority class until both classes have the majority's count
 *
 * Beside each GPT result, the demo's naive Bayes classifier trained on the same set (well under a
 * second for all arms): a contrast that shows whether an effect belongs to the data or to the model.
 */
import { augmentRecords, AugmentMethod, AugmentRates, DataRecord, DEFAULT_RATES } from '../data';
import { classificationReport } from '../eval';
import { NaiveBayes } from './naive_bayes';
import { formatP } from './names';
import { comparePaired } from './stats';
import type { RunRecord } from './training';

export interface LabelledText {
  text: string;
  label: string;
}

/** One classifier on an augmented set against the same classifier on the plain set, on the test emails. */
export interface ArmScores {
  accuracy: number;
  f1: number;
  /** accuracy - the plain set's. */
  accuracy_delta: number;
  /** Test emails only the augmented-set classifier gets right, only the plain-set one does, and McNemar's p. */
  only_augmented_right: number;
  only_plain_right: number;
  mcnemar_p: number;
}

/** What the GPT run on an augmented set did (a subset of its RunRecord). */
export interface ArmRun {
  name: string;
  steps: number;
  planned_steps: number;
  best_step: number;
  best_val_loss: number;
  stop_reason: string;
  /** Augmented examples longer than the context (copies can grow), cut to it by the data pipeline. */
  truncated_examples: number;
  wall_s: number;
  /** Scoring the test emails. */
  eval_s: number;
}

export interface AugmentationArm extends ArmScores {
  name: string;
  /** What made the copies: its settings, and in words. */
  settings: Record<string, number>;
  how: string;
  /** The labelled emails plus their copies, and the data file (in the demo's data folder) they were written to. */
  training_examples: number;
  train_file: string;
  run: ArmRun;
  /** The demo's naive Bayes trained on the same set, against naive Bayes on the plain set. */
  naive_bayes: ArmScores;
}

export interface AugmentationStudy {
  /** The GPT run every arm repeats, and its test results (the report's task_few row). */
  classifier: string;
  labelled: number;
  test: number;
  plain: { run: string; accuracy: number; f1: number; steps: number; wall_s: number };
  naive_bayes_plain: { accuracy: number; f1: number };
  arms: AugmentationArm[];
  /** The whole study: augmenting, the arms' training and test scoring, naive Bayes. */
  seconds: number;
}

/** An augmented training set: the labelled examples and their copies, as `gptune data augment` writes them. */
export interface AugmentedSet {
  name: string;
  settings: Record<string, number>;
  how: string;
  /** JSONL objects: {text, label} and, on copies, _augmented_from. */
  objects: Record<string, unknown>[];
}

/** What the GPT fine-tuning of one augmented set returns: the run and its test predictions (in test order). */
export interface ArmTraining {
  run: RunRecord;
  predictions: string[];
  eval_s: number;
  train_file: string;
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

/** The labelled examples augmented by each arm (seeded: the same seed gives the same sets). */
export function augmentedSets(train: readonly LabelledText[], seed: number): AugmentedSet[] {
  const records: DataRecord[] = train.map((e, i) => ({ kind: 'classification', text: e.text, label: e.label, file: 'the labelled emails', line: i + 1 }));
  const objects = train.map((e) => ({ text: e.text, label: e.label }));
  return ARMS.map((arm) => {
    const { objects: augmented } = augmentRecords('the labelled emails', 'classification', records, objects, {
      methods: arm.methods, perExample: arm.perExample, rates: arm.rates, balance: arm.balance, seed,
    });
    return { name: arm.name, settings: arm.settings, how: arm.how(arm.settings), objects: augmented };
  });
}

function scores(truth: readonly string[], labels: readonly string[], plain: readonly string[], augmented: readonly string[]): ArmScores {
  const a = classificationReport([...truth], [...augmented], [...labels]);
  const p = classificationReport([...truth], [...plain], [...labels]);
  const paired = comparePaired(truth, plain, augmented);
  return {
    accuracy: a.accuracy, f1: a.f1, accuracy_delta: a.accuracy - p.accuracy,
    only_augmented_right: paired.onlyB, only_plain_right: paired.onlyA, mcnemar_p: paired.p,
  };
}

export interface StudyInput {
  train: readonly LabelledText[];
  test: readonly LabelledText[];
  labels: readonly string[];
  seed: number;
  /** The plain GPT run on `train` (task_few): its name, test predictions, steps and wall time. */
  plain: { run: string; predictions: readonly string[]; steps: number; wall_s: number };
  /** Fine-tunes the plain run's recipe on one augmented set for plain.steps steps and scores the test emails. */
  fineTune: (set: AugmentedSet, steps: number) => Promise<ArmTraining>;
}

/** Each arm's GPT run and naive Bayes against the plain ones, on `test`. */
export async function augmentationStudy(input: StudyInput): Promise<AugmentationStudy> {
  const started = process.hrtime.bigint();
  const { train, test, labels, plain } = input;
  const truth = test.map((e) => e.label);
  if (plain.predictions.length !== test.length) throw new RangeError(`augmentation study: expected ${test.length} plain-run predictions but received ${plain.predictions.length}`);
  const bayes = (examples: readonly LabelledText[]) => {
    const model = new NaiveBayes(examples.map((e) => e.text), examples.map((e) => e.label));
    return test.map((e) => model.predict(e.text));
  };
  const bayesPlain = bayes(train);
  const plainRow = classificationReport(truth, [...plain.predictions], [...labels]);
  const bayesPlainRow = classificationReport(truth, bayesPlain, [...labels]);
  const arms: AugmentationArm[] = [];
  for (const set of augmentedSets(train, input.seed)) {
    const trained = await input.fineTune(set, plain.steps);
    const r = trained.run;
    const examples = set.objects.map((o) => ({ text: o.text as string, label: o.label as string }));
    arms.push({
      name: set.name, settings: set.settings, how: set.how, training_examples: set.objects.length, train_file: trained.train_file,
      run: {
        name: r.name, steps: r.steps, planned_steps: r.planned_steps, best_step: r.best_step, best_val_loss: r.best_val_loss,
        stop_reason: r.stop_reason, truncated_examples: r.truncated_examples, wall_s: r.wall_s, eval_s: trained.eval_s,
      },
      ...scores(truth, labels, plain.predictions, trained.predictions),
      naive_bayes: scores(truth, labels, bayesPlain, bayes(examples)),
    });
  }
  return {
    classifier: `GPT, the ${plain.run} run's recipe from the base model`, labelled: train.length, test: test.length,
    plain: { run: plain.run, accuracy: plainRow.accuracy, f1: plainRow.f1, steps: plain.steps, wall_s: plain.wall_s },
    naive_bayes_plain: { accuracy: bayesPlainRow.accuracy, f1: bayesPlainRow.f1 },
    arms, seconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

/** McNemar's p as the report's other tables print it (names.ts). */
function pValue(p: number): string {
  return formatP(p).replace(/^= /, '');
}

function verdict(name: string, a: ArmScores, alpha: number): string {
  const direction = a.accuracy_delta > 0 ? 'better' : a.accuracy_delta < 0 ? 'worse' : 'no different';
  const significance = a.mcnemar_p < alpha ? `significant at ${alpha}` : `not significant at ${alpha}: p ${pValue(a.mcnemar_p)}`;
  return `${name} ${a.accuracy_delta >= 0 ? '+' : ''}${a.accuracy_delta.toFixed(4)} accuracy, ${direction} (${significance})`;
}

/** The study in one sentence for the report's findings; null without a GPT study (reports of earlier versions). */
export function augmentationFinding(s: AugmentationStudy | undefined, alpha: number): string | null {
  if (s === undefined || s.plain?.run === undefined) return null;
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
  const significant = s.arms.filter((a) => a.mcnemar_p < alpha);
  const verdicts = significant.length === 0
    ? `no difference is significant at ${alpha}`
    : significant.map((a) => `${a.name} is ${a.accuracy_delta > 0 ? 'better' : 'WORSE'} (significant at ${alpha})`).join(', ');
  return `**Augmentation with ${s.labelled} labels.** The ${s.plain.run} run (accuracy ${s.plain.accuracy.toFixed(4)}) fine-tuned again on its emails augmented by each method, for the same ${s.plain.steps} steps: `
    + `${s.arms.map((a) => `${a.name} ${a.accuracy.toFixed(4)} (${signed(a.accuracy_delta)}, McNemar p ${pValue(a.mcnemar_p)})`).join(', ')}; ${verdicts}.`;
}

/** The report's section (Markdown lines); none without a study (reports of earlier versions). */
export function augmentationSection(s: AugmentationStudy | undefined, alpha: number): string[] {
  // Reports written before the GPT study held naive Bayes only (no `plain.run`): they have no section.
  if (s === undefined || s.plain?.run === undefined) return [];
  const lines = [
    `## Augmentation with ${s.labelled} labels (gptune data augment)`,
    '',
    `The ${s.labelled} labelled training emails of the ${s.plain.run} run, augmented by each method (only the email text changes, never the label), fine-tune the base model again with the ${s.plain.run} run's recipe for the same ${s.plain.steps} optimizer steps (steps, not epochs: the augmented sets are larger, the compute is the same; early stopping off so the counts match, the best validation step kept). Each is scored on the same ${s.test} test emails and compared with the plain ${s.plain.run} run by McNemar's exact test. ${s.seconds.toFixed(1)} s in all (the ${s.plain.run} run itself took ${s.plain.wall_s.toFixed(1)} s).`,
    '',
    '| training data | examples | steps | cut to fit | accuracy | macro-F1 | accuracy - plain | only augmented right | only plain right | McNemar p | training s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| the ${s.labelled} emails as they are (${s.plain.run}) | ${s.labelled} | ${s.plain.steps} | - | ${s.plain.accuracy.toFixed(4)} | ${s.plain.f1.toFixed(4)} | - | - | - | - | ${s.plain.wall_s.toFixed(1)} |`,
  ];
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
  for (const a of s.arms) {
    lines.push(`| + ${a.how} | ${a.training_examples} | ${a.run.steps} | ${a.run.truncated_examples} | ${a.accuracy.toFixed(4)} | ${a.f1.toFixed(4)} | ${signed(a.accuracy_delta)} | ${a.only_augmented_right} | ${a.only_plain_right} | ${pValue(a.mcnemar_p)} | ${a.run.wall_s.toFixed(1)} |`);
  }
  lines.push('');
  lines.push(`What it shows for the GPT classifier: ${s.arms.map((a) => verdict(`${a.name}:`, a, alpha)).join('; ')}.`);
  lines.push('');
  lines.push(`For contrast, the demo's naive Bayes (bag of words) trained on the same sets: plain accuracy ${s.naive_bayes_plain.accuracy.toFixed(4)}, macro-F1 ${s.naive_bayes_plain.f1.toFixed(4)}; ${s.arms.map((a) => verdict(`${a.name}:`, a.naive_bayes, alpha)).join('; ')}.`);
  lines.push('');
  return lines;
}
