/**
 * Augmentation is for training data only: validation and test data must stay as collected, or the
 * scores measured on them stop meaning what they say. A file is refused when
 *
 *   - the user names its split and it is not "train" (`--split validation`);
 *   - it is the validation file of a training config (`--config train.yaml` whose `validation` is it);
 *   - its name says it is another split: a word of its base name (split at anything that is not a
 *     letter or digit) is one of SPLIT_WORDS ("emails.test.jsonl", "val-2024.csv", "dev_set.jsonl"),
 *     unless the user says `--split train` (a training file that happens to be called "testimonials"
 *     is not refused: "testimonials" is not a split word).
 */
import * as path from 'path';

export const SPLITS = ['train', 'validation', 'test'] as const;
export type Split = typeof SPLITS[number];

/** Words in a file name that mark a split other than train. */
export const SPLIT_WORDS: readonly string[] = ['val', 'valid', 'validation', 'dev', 'test', 'testing', 'eval', 'heldout', 'holdout'];

/** Thrown for a file that is not training data; the CLI turns it into a usage error (exit 2). */
export class NotTrainingDataError extends Error {}

export interface SplitCheck {
  /** The split the user named, if any. */
  split?: Split;
  /** Validation (or test) files a config names, resolved to absolute paths. */
  heldOutFiles?: readonly string[];
}

/** Throws NotTrainingDataError naming the file and the rule when `file` is not training data. */
export function checkTrainingSplit(file: string, check: SplitCheck = {}): void {
  const refuse = (why: string): never => {
    throw new NotTrainingDataError(`${file}: ${why}; augmentation is for training data only (validation and test data must stay as collected)`);
  };
  if (check.split !== undefined && check.split !== 'train') refuse(`is the ${check.split} split (--split ${check.split})`);
  const resolved = path.resolve(file);
  if ((check.heldOutFiles ?? []).some((f) => path.resolve(f) === resolved)) refuse('is the validation file of the --config');
  if (check.split === 'train') return;
  const base = path.basename(file).replace(/\.[^.]*$/, '').toLowerCase();
  const word = base.split(/[^a-z0-9]+/).find((w) => SPLIT_WORDS.includes(w));
  if (word !== undefined) refuse(`the name says it is a held-out split ("${word}"); pass --split train if it is training data`);
}
