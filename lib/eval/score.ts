/**
 * Scoring prediction files against reference files, one example per line, as the sacrebleu CLI
 * reads them: several reference files give several references per prediction, and every file
 * must have the same number of lines.
 */
import * as fs from 'fs';
import { UsageError } from '../errors';
import {
  BleuTokenizer, ChrfScore, corpusBleu, corpusChrf, rougeCorpus, SeqevalMode, SeqevalReport, seqevalReport, sortedUniqueLabels, squadCorpus,
  SquadScores,
} from '../metrics';
import { BleuReport, bleuReport, ClassificationReport, classificationReport, RougeReport, rougeReport } from './report';

export const SCORE_METRICS = ['bleu', 'chrf', 'chrf++', 'rouge', 'rougeLsum', 'accuracy', 'f1', 'exact_match', 'squad_f1', 'seqeval'] as const;
export type ScoreMetric = (typeof SCORE_METRICS)[number];

export interface ScoreOptions {
  /** BLEU's tokenizer (default '13a'). */
  tokenize?: BleuTokenizer;
  /** BLEU and chrF: lowercase hypotheses and references first. */
  lowercase?: boolean;
  /** ROUGE: Porter-stem tokens (rouge-score's use_stemmer). */
  useStemmer?: boolean;
  /** seqeval: 'default' (conlleval) or 'strict' (IOB2). */
  seqevalMode?: SeqevalMode;
}

interface Counts {
  lines: number;
  references: number;
}

export type ScoreResult =
  | ({ metric: 'bleu' } & Counts & BleuReport)
  | ({ metric: 'chrf' | 'chrf++' } & Counts & ChrfScore)
  | ({ metric: 'rouge' | 'rougeLsum' } & Counts & RougeReport)
  | ({ metric: 'accuracy' | 'f1' } & Counts & ClassificationReport)
  | ({ metric: 'exact_match' | 'squad_f1' } & Counts & SquadScores)
  | ({ metric: 'seqeval'; mode: SeqevalMode } & Counts & SeqevalReport);

/**
 * In a one-example-per-line file a summary's sentences cannot be separate lines, so for ROUGE-Lsum the
 * two characters backslash and n inside a line stand for the line break between sentences.
 */
export function unescapeSentenceBreaks(line: string): string {
  return line.replaceAll('\\n', '\n');
}

/** The tags of one seqeval line: whitespace-separated (CoNLL's tag column, one sentence per line). */
function tagsOf(line: string): string[] {
  return line.split(/\s+/).filter((t) => t !== '');
}

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
 * bleu: corpus BLEU; chrf / chrf++: corpus chrF2 / chrF2++ with sacrebleu's signature; rouge: the
 * per-line mean of ROUGE-1/2/L (the best-F reference of each line, rouge-score's score_multi, when
 * there are several); rougeLsum: the same plus ROUGE-Lsum, a literal \n in a line separating
 * sentences; accuracy and f1: one reference stream of labels (surrounding whitespace removed), the
 * report over the labels seen in either file; exact_match and squad_f1: SQuAD v1.1 EM and F1 (both,
 * as its script prints them), every reference stream a gold answer; seqeval: one stream of
 * whitespace-separated tags per sentence, entity P/R/F1 and token accuracy.
 */
export function scoreLines(metric: ScoreMetric, predictions: readonly string[], referenceStreams: ReadonlyArray<readonly string[]>, options: ScoreOptions = {}): ScoreResult {
  if (referenceStreams.length === 0) throw new Error(`score: expected at least one reference stream`);
  if (predictions.length === 0) throw new Error('score: the predictions are empty (no lines)');
  referenceStreams.forEach((stream, k) => {
    if (stream.length !== predictions.length) throw new Error(`score: reference stream ${k + 1} has ${stream.length} lines but there are ${predictions.length} predictions`);
  });
  const base = { lines: predictions.length, references: referenceStreams.length };
  const oneStream = () => {
    if (referenceStreams.length !== 1) throw new UsageError(`score: metric ${metric} takes exactly one reference stream (one ${metric === 'seqeval' ? 'tag sequence' : 'label'} per line) but received ${referenceStreams.length}`);
    return referenceStreams[0];
  };
  switch (metric) {
    case 'bleu':
      return { metric, ...base, ...bleuReport(corpusBleu(predictions, referenceStreams, { tokenize: options.tokenize, lowercase: options.lowercase })) };
    case 'chrf':
    case 'chrf++':
      return { metric, ...base, ...corpusChrf(predictions, referenceStreams, { wordOrder: metric === 'chrf++' ? 2 : 0, lowercase: options.lowercase }) };
    case 'rouge':
    case 'rougeLsum': {
      const text = metric === 'rougeLsum' ? unescapeSentenceBreaks : (line: string) => line;
      const targets = predictions.map((_, i) => (referenceStreams.length === 1 ? text(referenceStreams[0][i]) : referenceStreams.map((s) => text(s[i]))));
      const rougeTypes = metric === 'rougeLsum' ? ['rouge1', 'rouge2', 'rougeL', 'rougeLsum'] : undefined;
      return { metric, ...base, ...rougeReport(rougeCorpus(targets, predictions.map(text), { useStemmer: options.useStemmer, rougeTypes })) };
    }
    case 'accuracy':
    case 'f1': {
      const yTrue = oneStream().map((l) => l.trim());
      const yPred = predictions.map((l) => l.trim());
      const labels = sortedUniqueLabels(yTrue, yPred) as string[];
      return { metric, ...base, ...classificationReport(yTrue, yPred, labels) };
    }
    case 'exact_match':
    case 'squad_f1': {
      // Each reference file gives one gold answer per question; an empty line is no answer in that
      // file (questions may have different numbers of answers), unless every file is empty there.
      const golds = predictions.map((_, i) => {
        const answers = referenceStreams.map((stream) => stream[i]).filter((answer) => answer !== '');
        return answers.length > 0 ? answers : [''];
      });
      return { metric, ...base, ...squadCorpus(predictions, golds) };
    }
    case 'seqeval': {
      const mode = options.seqevalMode ?? 'default';
      const gold = oneStream().map(tagsOf), predicted = predictions.map(tagsOf);
      gold.forEach((tags, i) => {
        if (tags.length !== predicted[i].length) {
          throw new UsageError(`score: line ${i + 1} has ${predicted[i].length} predicted tags but ${tags.length} reference tags; every line needs one tag per token`);
        }
      });
      return { metric, mode, ...base, ...seqevalReport(gold, predicted, { mode }) };
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
