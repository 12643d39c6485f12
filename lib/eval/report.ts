/**
 * The result shapes shared by `gptune score` and `gptune eval`: a classification report
 * (accuracy, macro P/R/F1, per-class figures, confusion matrix), BLEU and ROUGE summaries, all
 * built from lib/metrics so that every number here is the one lib/metrics' tests pin down.
 */
import { accuracy, BleuScore, ChrfScore, confusionMatrix, precisionRecallF, RougeCorpusResult, SeqevalFigures, SeqevalReport, SquadScores } from '../metrics';
import type { TaskEvalResult } from './tasks';

export interface ClassFigures {
  precision: number;
  recall: number;
  f1: number;
  /** True examples of this class. */
  support: number;
}

export interface ClassificationReport {
  examples: number;
  accuracy: number;
  /** Macro averages over `labels` (unweighted mean of the per-class figures). */
  precision: number;
  recall: number;
  f1: number;
  per_class: Record<string, ClassFigures>;
  /** matrix[i][j] = examples of true class labels[i] predicted as labels[j]. */
  confusion_matrix: { labels: string[]; matrix: number[][] };
  /**
   * What always predicting the most frequent true label of these examples would score (ties: the
   * earlier label in `labels`): the accuracy a model has to beat to have learnt anything.
   */
  majority_baseline: { label: string; accuracy: number };
}

/**
 * Accuracy and macro P/R/F1 over `labels` (scikit-learn's conventions: a ratio with a zero
 * denominator counts as 0). Labels that never occur still count in the macro mean, as
 * scikit-learn does when given labels=..., so a class the model never predicts pulls F1 down.
 */
export function classificationReport(yTrue: readonly string[], yPred: readonly string[], labels: readonly string[]): ClassificationReport {
  if (yTrue.length === 0) throw new Error('classificationReport: no examples to score');
  const prf = precisionRecallF(yTrue, yPred, { average: 'macro', labels, zeroDivision: 0 });
  const perClass: Record<string, ClassFigures> = {};
  prf.perClass.labels.forEach((label, i) => {
    perClass[String(label)] = {
      precision: prf.perClass.precision[i], recall: prf.perClass.recall[i], f1: prf.perClass.f[i], support: prf.perClass.support[i],
    };
  });
  const cm = confusionMatrix(yTrue, yPred, { labels });
  const majority = labels.reduce((best, label) => (perClass[String(label)].support > perClass[String(best)].support ? label : best), labels[0]);
  return {
    examples: yTrue.length,
    accuracy: accuracy(yTrue, yPred),
    precision: prf.precision,
    recall: prf.recall,
    f1: prf.f,
    per_class: perClass,
    confusion_matrix: { labels: cm.labels.map(String), matrix: cm.matrix },
    majority_baseline: { label: String(majority), accuracy: perClass[String(majority)].support / yTrue.length },
  };
}

export interface BleuReport {
  /** Corpus BLEU, 0..100 (sacrebleu's defaults: 13a tokenisation, exp smoothing). */
  bleu: number;
  /** n-gram precisions in percent, orders 1..4. */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Hypothesis and (closest) reference lengths in 13a tokens. */
  sys_len: number;
  ref_len: number;
}

export function bleuReport(score: BleuScore): BleuReport {
  return { bleu: score.score, precisions: score.precisions, bp: score.bp, sys_len: score.sys_len, ref_len: score.ref_len };
}

export interface PRF {
  p: number;
  r: number;
  f: number;
}

export interface RougeReport {
  rouge1: PRF;
  rouge2: PRF;
  rougeL: PRF;
  /** Summary-level LCS over newline-separated sentences, when it was asked for. */
  rougeLsum?: PRF;
}

/** The per-line means of rougeCorpus (precision, recall and F each averaged separately). */
export function rougeReport(corpus: RougeCorpusResult): RougeReport {
  const pick = (type: string): PRF => {
    const s = corpus.mean[type];
    return { p: s.precision, r: s.recall, f: s.fmeasure };
  };
  const report: RougeReport = { rouge1: pick('rouge1'), rouge2: pick('rouge2'), rougeL: pick('rougeL') };
  if (corpus.mean.rougeLsum !== undefined) report.rougeLsum = pick('rougeLsum');
  return report;
}

// ---------------------------------------------------------------------------------------------
// Human-readable formatting

const pct = (x: number) => (100 * x).toFixed(2);

/** Right-aligned text table; the first column left-aligned. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}

export function formatClassificationReport(r: ClassificationReport): string {
  const lines = [
    `examples ${r.examples}  accuracy ${pct(r.accuracy)}%  macro-F1 ${pct(r.f1)}%  macro-P ${pct(r.precision)}%  macro-R ${pct(r.recall)}%`,
    `majority-class baseline (always ${JSON.stringify(r.majority_baseline.label)}): accuracy ${pct(r.majority_baseline.accuracy)}%`,
    '',
  ];
  const classRows = [['class', 'precision', 'recall', 'f1', 'support']];
  for (const [label, c] of Object.entries(r.per_class)) classRows.push([label, pct(c.precision), pct(c.recall), pct(c.f1), String(c.support)]);
  lines.push(formatTable(classRows), '', 'confusion matrix (rows: true class, columns: predicted):');
  const { labels, matrix } = r.confusion_matrix;
  lines.push(formatTable([['', ...labels], ...matrix.map((row, i) => [labels[i], ...row.map(String)])]));
  return lines.join('\n');
}

export function formatBleuReport(b: BleuReport): string {
  // sacrebleu's own summary line.
  const ratio = b.ref_len > 0 ? b.sys_len / b.ref_len : 0;
  return `BLEU = ${b.bleu.toFixed(2)} ${b.precisions.map((p) => p.toFixed(1)).join('/')} (BP = ${b.bp.toFixed(3)} ratio = ${ratio.toFixed(3)} hyp_len = ${b.sys_len} ref_len = ${b.ref_len})`;
}

export function formatRougeReport(r: RougeReport): string {
  const types = (['rouge1', 'rouge2', 'rougeL', 'rougeLsum'] as const).filter((k) => r[k] !== undefined);
  return formatTable([['', 'precision', 'recall', 'f'], ...types.map((k) => [k, pct(r[k]!.p), pct(r[k]!.r), pct(r[k]!.f)])]);
}

/** sacrebleu's text line: `chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.3 = 59.73`. */
export function formatChrfScore(c: ChrfScore): string {
  return `${c.name}|${c.signature} = ${c.score.toFixed(2)}`;
}

/** What the SQuAD v1.1 script prints, with the question count. */
export function formatSquadScores(s: SquadScores): string {
  return `exact_match ${s.exact_match.toFixed(2)}  f1 ${s.f1.toFixed(2)}  (${s.count} question${s.count === 1 ? '' : 's'})`;
}

/** seqeval's classification_report layout (fractions to 2 places), then micro P/R/F1 and token accuracy. */
export function formatSeqevalReport(r: SeqevalReport): string {
  const two = (x: number) => (Number.isNaN(x) ? 'nan' : x.toFixed(2));
  const row = (name: string, f: SeqevalFigures) => [name, two(f.precision), two(f.recall), two(f.f1), String(f.support)];
  return [
    formatTable([
      ['', 'precision', 'recall', 'f1-score', 'support'],
      ...Object.entries(r.per_type).map(([type, f]) => row(type, f)),
      row('micro avg', r.micro_avg),
      row('macro avg', r.macro_avg),
      row('weighted avg', r.weighted_avg),
    ]),
    `${r.sentences} sentences, ${r.tokens} tokens: entity precision ${pct(r.precision)}%  recall ${pct(r.recall)}%  F1 ${pct(r.f1)}%  token accuracy ${pct(r.accuracy)}%`,
  ].join('\n');
}

/** The human summary of `eval --task qa|ner|translate|summarize` (the JSON carries every figure). */
export function formatTaskReport(r: TaskEvalResult): string {
  const m = r.metrics as Record<string, any>;
  const stops = Object.entries(r.stops).filter(([, n]) => n > 0).map(([why, n]) => `${why} ${n}`).join(', ');
  const search = r.num_beams > 1 ? `beam search, ${r.num_beams} beams, length penalty ${r.length_penalty}` : 'greedy';
  const stopAt = r.stop_strings.map((x) => JSON.stringify(x)).join(' or ');
  const lines = [`examples ${r.examples}  (${search}, at most ${r.max_new_tokens} new tokens${stopAt ? `, stop at ${stopAt}` : ''}; stopped: ${stops})`];
  const two = (x: number) => x.toFixed(2);
  switch (r.task) {
    case 'qa':
      lines.push(`${formatSquadScores(m as SquadScores)}  (SQuAD v1.1 evaluation, percent)`);
      if (m.answers_not_in_context > 0) lines.push(`${m.answers_not_in_context} questions have a gold answer that is not in their context`);
      break;
    case 'ner':
      lines.push(formatSeqevalReport(m as SeqevalReport));
      lines.push(`strict IOB2: F1 ${pct(m.strict.f1)}%  precision ${pct(m.strict.precision)}%  recall ${pct(m.strict.recall)}%`);
      lines.push(`output lines that are not "TYPE: span" ${m.malformed_lines}, spans not found in their sentence ${m.unmatched_spans}`);
      break;
    case 'translate':
      lines.push(formatBleuReport(m as BleuReport), `  ${m.bleu_signature}`);
      lines.push(`chrF2 = ${two(m.chrf)}  ${m.chrf_signature}`, `chrF2++ = ${two(m.chrf_pp)}  ${m.chrf_pp_signature}`);
      break;
    case 'summarize':
      lines.push(formatRougeReport(m as RougeReport));
      break;
  }
  return lines.join('\n');
}
