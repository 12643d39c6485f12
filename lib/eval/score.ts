/**
 * Scoring prediction files against reference files, one example per line, as the sacrebleu CLI
 * reads them: several reference files give several references per prediction, and every file
 * must have the same number of lines.
 */
import * as fs from 'fs';
import { BleuTokenizer, corpusBleu, rougeCorpus, sortedUniqueLabels } from '../metrics';
import { BleuReport, bleuReport, ClassificationReport, classificationReport, RougeReport, rougeReport } from './report';

export const SCORE_METRICS = ['bleu', 'rouge', 'accuracy', 'f1'] as const;
export type ScoreMetric = (typeof SCORE_METRICS)[number];

export interface ScoreOptions {
  /** BLEU's tokenizer (default '13a'). */
  tokenize?: BleuTokenizer;
  /** BLEU: lowercase hypotheses and references first. */
  lowercase?: boolean;
  /** ROUGE: Porter-stem tokens (rouge-score's use_stemmer). */
  useStemmer?: boolean;
}

export type ScoreResult =
  | ({ metric: 'bleu'; lines: number; references: number } & BleuReport)
  | ({ metric: 'rouge'; lines: number; references: number } & RougeReport)
  | ({ metric: 'accuracy' | 'f1'; lines: number; references: number } & ClassificationReport);

/**
 * The lines of a text file: split at \n (a \r before it is dropped), and a final line break does
 * not start another line, so "a\nb\n" and "a\nb" both have 2 lines (Python's readlines).
 */
export function readLines(file: string, flag: string): string[] {
  if (!fs.existsSync(file)) throw new Error(`${flag} ${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${flag} ${file}: expected a text file but found a folder`);
  const text = fs.readFileSync(file, 'utf8');
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/**
 * Scores predictions[i] against referenceStreams[k][i] for every reference stream k.
 * bleu: corpus BLEU; rouge: the per-line mean of ROUGE-1/2/L (the best-F reference of each line,
 * rouge-score's score_multi, when there are several); accuracy and f1: one reference stream of
 * labels (surrounding whitespace removed), the report over the labels seen in either file.
 */
export function scoreLines(metric: ScoreMetric, predictions: readonly string[], referenceStreams: ReadonlyArray<readonly string[]>, options: ScoreOptions = {}): ScoreResult {
  if (referenceStreams.length === 0) throw new Error(`score: expected at least one reference stream`);
  if (predictions.length === 0) throw new Error('score: the predictions are empty (no lines)');
  referenceStreams.forEach((stream, k) => {
    if (stream.length !== predictions.length) throw new Error(`score: reference stream ${k + 1} has ${stream.length} lines but there are ${predictions.length} predictions`);
  });
  const base = { lines: predictions.length, references: referenceStreams.length };
  switch (metric) {
    case 'bleu':
      return { metric, ...base, ...bleuReport(corpusBleu(predictions, referenceStreams, { tokenize: options.tokenize, lowercase: options.lowercase })) };
    case 'rouge': {
      const targets = predictions.map((_, i) => (referenceStreams.length === 1 ? referenceStreams[0][i] : referenceStreams.map((s) => s[i])));
      return { metric, ...base, ...rougeReport(rougeCorpus(targets, predictions, { useStemmer: options.useStemmer })) };
    }
    case 'accuracy':
    case 'f1': {
      if (referenceStreams.length !== 1) throw new Error(`score: metric ${metric} takes exactly one reference stream (one label per line) but received ${referenceStreams.length}`);
      const yTrue = referenceStreams[0].map((l) => l.trim());
      const yPred = predictions.map((l) => l.trim());
      const labels = sortedUniqueLabels(yTrue, yPred) as string[];
      return { metric, ...base, ...classificationReport(yTrue, yPred, labels) };
    }
    default:
      throw new Error(`score: unknown metric '${metric as string}' (expected one of ${SCORE_METRICS.join(', ')})`);
  }
}

/** How scoreFiles names the files in messages (the CLI names its flags). */
export interface ScoreFileLabels {
  pred: string;
  ref: string;
}

/** scoreLines on files; a line-count mismatch names both files and their counts. */
export function scoreFiles(
  metric: ScoreMetric, predFile: string, refFiles: readonly string[], options: ScoreOptions = {},
  labels: ScoreFileLabels = { pred: 'predictions', ref: 'references' },
): ScoreResult {
  if (refFiles.length === 0) throw new Error(`${labels.ref}: give at least one reference file`);
  const predictions = readLines(predFile, labels.pred);
  const referenceStreams = refFiles.map((file) => {
    const lines = readLines(file, labels.ref);
    if (lines.length !== predictions.length) {
      throw new Error(`${labels.ref} ${file} has ${lines.length} lines but ${labels.pred} ${predFile} has ${predictions.length}; every file needs one line per example`);
    }
    return lines;
  });
  return scoreLines(metric, predictions, referenceStreams, options);
}
