/** gptune score */
import {
  formatBleuReport, formatChrfScore, formatClassificationReport, formatRougeReport, formatSeqevalReport, formatSquadScores, SCORE_METRICS, ScoreMetric,
  scoreFiles, ScoreResult,
} from '../../eval';
import { BleuTokenizer, SeqevalMode } from '../../metrics';
import { UsageError } from '../args';
import { Command, out } from '../common';

function formatScore(r: ScoreResult): string {
  const head = `${r.lines} lines, ${r.references} reference${r.references === 1 ? '' : 's'} per line`;
  switch (r.metric) {
    case 'bleu':
      return `${formatBleuReport(r)}\n${head}`;
    case 'chrf':
    case 'chrf++':
      return `${formatChrfScore(r)}\n${head}`;
    case 'rouge':
    case 'rougeLsum':
      return `${formatRougeReport(r)}\n${head} (per-line means; the best-F reference of each line)`;
    case 'exact_match':
    case 'squad_f1':
      return `${formatSquadScores(r)}\n${head}`;
    case 'seqeval':
      return `${formatSeqevalReport(r)}\nmode ${r.mode}`;
    default:
      return formatClassificationReport(r);
  }
}

export const scoreCommand: Command = {
  positionals: true,
  usage: `gptune score --metric ${SCORE_METRICS.join('|')} --pred FILE --ref FILE [--ref FILE ...] [--json]`,
  description:
    'Scores a predictions file against reference files. One example per line (like the sacrebleu CLI): several --ref files give several references per line, and every file must have as many lines as --pred. ' +
    'bleu: corpus BLEU as sacrebleu computes it by default (13a, exp smoothing); chrf and chrf++: corpus chrF2 / chrF2++ as sacrebleu computes them, with its signature; ' +
    'rouge: ROUGE-1/2/L precision/recall/F as rouge-score computes them, averaged over lines; rougeLsum: the same plus ROUGE-Lsum, where a literal \\n in a line separates sentences; ' +
    'accuracy and f1: labels (surrounding whitespace ignored), with macro P/R/F1, per-class figures and the confusion matrix; ' +
    'exact_match and squad_f1: SQuAD v1.1 exact match and F1 in percent (both printed), each --ref file one gold answer per question (an empty line: none in that file); ' +
    'seqeval: one sentence of whitespace-separated BIO tags per line, entity-level P/R/F1 per type and averaged (seqeval), and token accuracy.',
  flags: {
    metric: { type: 'string', required: true, choices: SCORE_METRICS, help: 'what to compute' },
    pred: { type: 'string', required: true, help: 'predictions (hypotheses), one per line' },
    ref: { type: 'strings', required: true, help: 'references, one per line; repeat for several references per line' },
    tokenize: { type: 'string', default: '13a', choices: ['13a', 'none', 'char', 'intl'], help: 'BLEU tokenizer' },
    lowercase: { type: 'bool', help: 'BLEU and chrF: lowercase everything first' },
    mode: { type: 'string', default: 'default', choices: ['default', 'strict'], help: 'seqeval: default (conlleval chunking) or strict (IOB2: only B- starts an entity)' },
    'use-stemmer': { type: 'bool', help: 'ROUGE: Porter-stem tokens (rouge-score use_stemmer)' },
    json: { type: 'bool', help: 'print the result as one JSON line' },
    help: { type: 'bool', help: 'show this help' },
  },
  run(v, positionals) {
    if (positionals.length > 0) throw new UsageError(`score: unexpected argument '${positionals[0]}' (give files with --pred and --ref)`);
    const metric = v.metric as ScoreMetric, refs = v.ref as string[];
    if ((metric === 'accuracy' || metric === 'f1' || metric === 'seqeval') && refs.length !== 1) {
      throw new UsageError(`score: --metric ${metric} takes exactly one reference file (one ${metric === 'seqeval' ? 'tag sequence' : 'label'} per line) but received ${refs.length}`);
    }
    const result = scoreFiles(metric, v.pred as string, refs, {
      tokenize: v.tokenize as BleuTokenizer, lowercase: Boolean(v.lowercase), useStemmer: Boolean(v['use-stemmer']), seqevalMode: v.mode as SeqevalMode,
    }, { pred: '--pred', ref: '--ref' });
    out(v.json ? JSON.stringify(result) : formatScore(result));
  },
};
