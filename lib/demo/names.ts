/**
 * The classifiers of the demo by report key, their display names, the comparisons the report
 * makes between them, and how it prints p-values.
 */
import type { DemoReport } from './types';

export type Classifier = keyof DemoReport['classification'];

/** The (B, A) pairs whose difference B - A the report states, with McNemar's test. */
export const CLASSIFIER_COMPARISONS: ReadonlyArray<readonly [Classifier, Classifier]> = [
  ['task', 'base_zero_shot'], ['task_lora', 'base_zero_shot'], ['task_lora', 'task'], ['domain_zero_shot', 'base_zero_shot'], ['combined', 'task'], ['task', 'scratch'], ['combined', 'scratch'],
  ['task_few', 'scratch_few'], ['task', 'task_few'], ['naive_bayes', 'combined'],
];

/** Significance level of the McNemar tests, and the smallest p-value the report prints as a number. */
export const STATS = { alpha: 0.05, p_floor: 0.0001 } as const;

export function formatP(p: number): string {
  return p < STATS.p_floor ? `below ${STATS.p_floor}` : `= ${p.toFixed(4)}`;
}

export const CLASSIFIER_NAMES: Record<Classifier, string> = {
  majority: 'majority class', naive_bayes: 'naive Bayes', base_zero_shot: 'base (zero-shot)', domain_zero_shot: 'domain (zero-shot)',
  task: 'task-specific', task_lora: 'task-specific, LoRA', combined: 'combined', scratch: 'from scratch',
  task_few: 'task-specific, few labels', scratch_few: 'from scratch, few labels',
};

