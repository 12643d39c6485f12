/** gptune data inspect | audit */
import * as fs from 'fs';
import * as path from 'path';
import { auditReportLines, auditSplits, DATA_KINDS, DEFAULT_NEAR_THRESHOLD, inspectData, loadRecords, parseDataKind, redactFile } from '../../data';
import type { AuditReport, AuditSplit, DataKind, InspectReport } from '../../data';
import { writeFileAtomic } from '../../io/atomic';
import { checkOutputFile } from '../../io/output';
import { loadModelConfig } from '../../model/config';
import { contextLength } from '../../model/decoder_config';
import { loadTokenizer } from '../../tokenizer';
import type { Tokenizer } from '../../tokenizer';
import { UsageError } from '../args';
import { Command, HUB_FLAGS, out } from '../common';

/** seq_len without --model or --seq-len: GPT-2's context. */
const DEFAULT_SEQ_LEN = 1024;

/** The first key of an audit JSON file, so that a later run may replace its own previous report (and nothing else). */
const AUDIT_JSON_MARK = '{"report":"gptune data audit"';

/** Flags that only one subcommand reads. */
const AUDIT_ONLY = ['data', 'test', 'tokenizer', 'near-threshold', 'strict', 'redact'];
const INSPECT_ONLY = ['train-on-prompt', 'audit'];

export const dataCommand: Command = {
  positionals: true,
  usage: 'gptune data inspect FILE [--model DIR|org/name] [--seq-len T] [--validation FILE] [--json [OUT]] [--audit]\n       gptune data audit --data FILE [--validation FILE] [--test FILE] [--format KIND] [--model DIR|org/name | --tokenizer DIR] [--seq-len T] [--near-threshold X] [--json [OUT]] [--strict] [--redact OUT]',
  description:
    'Inspect a data file (JSONL prompt/completion, chat or classification; CSV text,label; a .txt file or a folder of them) before training: examples, tokens, a length histogram, how many examples seq_len would truncate, label balance, exact duplicates, overlap with a validation file, and tokenisation throughput. '
    + '`data audit` (or `data inspect --audit`) audits the splits together: class balance and imbalance ratio, lengths in tokens with truncated examples and outliers (with a tokenizer), exact and near-duplicates (MinHash over word 3-shingles, verified by exact Jaccard) within each split and across splits (leakage), and PII and secrets (emails, phones, cards with Luhn, IBANs with their check digits, IPv4/IPv6, URLs with credentials, API and private keys), each with FILE:LINE; --redact writes a copy of --data with each find replaced by a placeholder. Invalid lines are errors naming FILE:LINE unless --skip-invalid.',
  modelFlags: ['model'],
  flags: {
    data: { type: 'string', help: 'audit: the training data file (or give it as FILE)' },
    model: { type: 'string', help: 'model folder (or a Hugging Face model id: gpt2, org/name@revision) whose tokenizer and n_positions to use (inspect default: GPT-2\'s tokenizer, seq_len 1024; audit: lengths only with --model or --tokenizer)' },
    tokenizer: { type: 'string', help: 'audit: a folder with the tokenizer files to measure lengths with (instead of --model)' },
    'seq-len': { type: 'int', min: 1, help: 'tokens per training row (default: the model\'s n_positions)' },
    validation: { type: 'string', help: 'validation file: inspect counts training examples that also appear in it; audit checks it for leakage' },
    test: { type: 'string', help: 'audit: test file, checked for leakage against train and validation' },
    format: { type: 'string', choices: DATA_KINDS, help: 'the data kind, instead of detecting it' },
    template: { type: 'string', help: 'prompt template with {placeholders} (see README "Data")' },
    'train-on-prompt': { type: 'bool', help: 'count prompt tokens as trained' },
    'skip-invalid': { type: 'bool', help: 'skip invalid lines (listed) instead of stopping at the first' },
    'near-threshold': { type: 'number', help: `audit: Jaccard similarity (0-1] of word 3-shingles at or above which two examples are near-duplicates (default ${DEFAULT_NEAR_THRESHOLD})` },
    json: { type: 'string', withoutValue: '-', help: 'print the report as one JSON line, or with OUT write it to that file (atomically; an existing file is replaced only if it is an earlier audit report)' },
    audit: { type: 'bool', help: 'inspect: also run the audit (duplicates, leakage with --validation, PII, balance)' },
    strict: { type: 'bool', help: 'audit: exit with status 1 when leakage across splits or PII is found (after writing the reports)' },
    redact: { type: 'string', help: 'audit: write a copy of --data with every PII find replaced by a placeholder such as [EMAIL] (a new file; never the input or an existing file)' },
    ...HUB_FLAGS,
    help: { type: 'bool', help: 'show this help' },
  },
  run(v, positionals) {
    const [sub, ...rest] = positionals;
    if (sub !== 'inspect' && sub !== 'audit') throw new UsageError(sub === undefined ? 'data: expected a subcommand: gptune data inspect FILE, or gptune data audit --data FILE' : `data: unknown subcommand '${sub}' (expected inspect or audit)`);
    for (const flag of sub === 'audit' ? INSPECT_ONLY : AUDIT_ONLY) {
      if (v[flag] !== undefined) throw new UsageError(`data ${sub}: --${flag} belongs to gptune data ${sub === 'audit' ? 'inspect' : 'audit'}`);
    }
    if (sub === 'audit') return runAudit(v, rest);
    const [file, ...extra] = rest;
    if (file === undefined) throw new UsageError('data inspect: expected a data FILE');
    if (extra.length > 0) throw new UsageError(`data inspect: expected one FILE but also received ${extra.map((e) => `'${e}'`).join(' ')}`);
    if (!fs.existsSync(file)) throw new UsageError(`data inspect: ${file}: file not found`);
    const modelDir = v.model as string | undefined;
    checkModelFolder(modelDir);
    const tokenizer = loadTokenizer(modelDir);
    const seqLen = (v['seq-len'] as number | undefined) ?? (modelDir !== undefined ? contextLength(loadModelConfig(modelDir)) : DEFAULT_SEQ_LEN);
    const format = v.format !== undefined ? parseDataKind(v.format as string, '--format') : undefined;
    const validation = v.validation as string | undefined;
    const json = jsonTarget(v);
    const report = inspectData(file, {
      tokenizer, seqLen, validation, format,
      template: v.template as string | undefined,
      skipInvalid: v['skip-invalid'] as boolean | undefined,
      trainOnPrompt: v['train-on-prompt'] as boolean | undefined,
    });
    const audit = v.audit ? auditFiles({ train: file, validation }, { format, skipInvalid: Boolean(v['skip-invalid']), tokenizer, seqLen, template: v.template as string | undefined, nearThreshold: DEFAULT_NEAR_THRESHOLD }) : undefined;
    const jsonLine = JSON.stringify({ ...snakeCaseKeys(report), tokenizer: tokenizer.name, ...(audit ? { audit } : {}) });
    if (json === '-') return out(jsonLine);
    if (json !== undefined) writeFileAtomic(json, jsonLine + '\n');
    out(formatReport(report, tokenizer.name));
    if (audit) out(auditReportLines(audit).join('\n'));
  },
};

function checkModelFolder(modelDir: string | undefined): void {
  if (modelDir !== undefined && !fs.existsSync(path.join(modelDir, 'config.json'))) throw new UsageError(`--model ${modelDir}: no config.json there (expected a model folder)`);
}

/** --json: '-' for stdout, a file name (checked before any work), or undefined. */
function jsonTarget(v: Record<string, unknown>): string | undefined {
  const json = v.json as string | undefined;
  if (json !== undefined && json !== '-') checkOutputFile(json, '--json', { overwrite: false, isOwn: (head) => head.startsWith(AUDIT_JSON_MARK) || head.startsWith('{"file":') });
  return json;
}

interface AuditFileOptions {
  format?: DataKind;
  skipInvalid: boolean;
  tokenizer?: Tokenizer;
  seqLen?: number;
  template?: string;
  nearThreshold: number;
}

/** Loads each named split (train, validation, test) and audits them together. */
function auditFiles(files: { train: string; validation?: string; test?: string }, o: AuditFileOptions): AuditReport {
  const splits: AuditSplit[] = [];
  for (const [name, file] of Object.entries(files)) {
    if (file === undefined) continue;
    const loaded = loadRecords(file, { format: o.format, skipInvalid: o.skipInvalid });
    splits.push({ name, file, records: loaded.records });
  }
  return auditSplits(splits, { nearThreshold: o.nearThreshold, tokenizer: o.tokenizer, seqLen: o.seqLen, template: o.template });
}

function runAudit(v: Record<string, unknown>, positionals: string[]): void {
  if (positionals.length > 1) throw new UsageError(`data audit: expected at most one FILE but received ${positionals.map((e) => `'${e}'`).join(' ')}`);
  if (positionals.length === 1 && v.data !== undefined) throw new UsageError(`data audit: the data file is given twice (FILE '${positionals[0]}' and --data '${v.data}'); give one`);
  const train = (v.data as string | undefined) ?? positionals[0];
  if (train === undefined) throw new UsageError('data audit: expected --data FILE (the training data)');
  const validation = v.validation as string | undefined, test = v.test as string | undefined;
  for (const [flag, file] of [['--data', train], ['--validation', validation], ['--test', test]] as const) {
    if (file !== undefined && !fs.existsSync(file)) throw new UsageError(`data audit: ${flag} ${file}: file not found`);
  }
  const threshold = (v['near-threshold'] as number | undefined) ?? DEFAULT_NEAR_THRESHOLD;
  if (!(threshold > 0 && threshold <= 1)) throw new UsageError(`data audit: --near-threshold: expected a number in (0, 1] but received ${threshold}`);
  const modelDir = v.model as string | undefined, tokenizerDir = v.tokenizer as string | undefined;
  if (modelDir !== undefined && tokenizerDir !== undefined) throw new UsageError('data audit: give --model or --tokenizer, not both');
  checkModelFolder(modelDir);
  if (tokenizerDir !== undefined && !(fs.existsSync(tokenizerDir) && fs.statSync(tokenizerDir).isDirectory())) throw new UsageError(`data audit: --tokenizer ${tokenizerDir}: expected a folder with tokenizer files`);
  const tokenizer = modelDir ?? tokenizerDir;
  const seqLen = (v['seq-len'] as number | undefined) ?? (modelDir !== undefined ? contextLength(loadModelConfig(modelDir)) : undefined);
  if (v['seq-len'] !== undefined && tokenizer === undefined) throw new UsageError('data audit: --seq-len needs --model or --tokenizer (lengths are counted in tokens)');
  const format = v.format !== undefined ? parseDataKind(v.format as string, '--format') : undefined;
  const json = jsonTarget(v);
  const redact = v.redact as string | undefined;
  if (redact !== undefined && fs.existsSync(redact)) {
    throw new UsageError(path.resolve(redact) === path.resolve(train) ? `data audit: --redact ${redact}: is the input file; the redacted copy needs another name` : `data audit: --redact ${redact}: already exists; gptune does not overwrite it (choose a new name)`);
  }

  const report = auditFiles({ train, validation, test }, {
    format, skipInvalid: Boolean(v['skip-invalid']), tokenizer: tokenizer === undefined ? undefined : loadTokenizer(tokenizer), seqLen,
    template: v.template as string | undefined, nearThreshold: threshold,
  });
  const jsonText = `${AUDIT_JSON_MARK},${JSON.stringify(report).slice(1)}`;
  if (json !== undefined && json !== '-') writeFileAtomic(json, jsonText + '\n');
  const redaction = redact === undefined ? null : redactFile(train, redact, format);
  if (json === '-') out(jsonText);
  else {
    out(auditReportLines(report).join('\n'));
    if (json !== undefined) out(`JSON report: ${json}`);
    if (redaction !== null) out(`redacted copy: ${redaction.output} (${redaction.total} finds replaced in ${redaction.changed} ${redaction.kind === 'text' ? 'documents' : 'records'})`);
  }
  if (v.strict && (report.leakage.found || report.pii.total > 0)) {
    const problems = [
      ...(report.leakage.found ? [`leakage across splits (${report.leakage.exact} exact copies, ${report.leakage.near} near-duplicate pairs)`] : []),
      ...(report.pii.total > 0 ? [`${report.pii.total} PII finds`] : []),
    ];
    throw new Error(`--strict: ${problems.join(' and ')}`);
  }
}

/**
 * The report with snake_case keys, as every other --json output spells them (seqLen -> seq_len).
 * Only the report's own keys: nested figures are one-word already, and label_counts' keys are labels.
 */
function snakeCaseKeys(r: InspectReport): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]));
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-';
}

function formatReport(r: InspectReport, tokenizerName: string): string {
  const unit = r.kind === 'text' ? 'documents' : 'examples';
  const lines = [
    `${r.file}: ${r.kind}, ${(r.bytes / 1e6).toFixed(2)} MB, tokenizer ${tokenizerName}`,
    `${unit}: ${r.examples}` + (r.skipped.length ? `  (skipped ${r.skipped.length} invalid lines)` : '') + (r.blankLines ? `  (${r.blankLines} blank lines)` : ''),
    `tokens: ${r.tokens} (trained on: ${r.trainedTokens})`,
    `tokens per ${unit.slice(0, -1)}: min ${r.lengths.min}, mean ${r.lengths.mean.toFixed(1)}, median ${r.lengths.median}, p95 ${r.lengths.p95}, max ${r.lengths.max}`,
  ];
  if (r.histogram.length > 0) {
    lines.push('length histogram (tokens):');
    const most = Math.max(...r.histogram.map((b) => b.count));
    for (const b of r.histogram) {
      const bar = '#'.repeat(most > 0 ? Math.round((40 * b.count) / most) : 0);
      const over = b.min > r.seqLen ? '  > seq_len' : '';
      lines.push(`  ${`${b.min}-${b.max}`.padStart(13)} ${String(b.count).padStart(8)} ${bar}${over}`);
    }
  }
  if (r.windows !== undefined) lines.push(`seq_len ${r.seqLen}: ${r.windows} training windows (plain text is cut into windows, never truncated)`);
  else lines.push(`seq_len ${r.seqLen}: ${r.truncatedExamples} ${unit} would be truncated (${percent(r.truncatedExamples, r.examples)}), ${r.truncatedTokens} tokens cut`);
  if (r.labelCounts) {
    lines.push('labels:');
    for (const [label, count] of Object.entries(r.labelCounts)) lines.push(`  ${JSON.stringify(label).padEnd(20)} ${String(count).padStart(8)}  ${percent(count, r.examples)}`);
    if (r.conflictingLabels) lines.push(`  ${r.conflictingLabels} texts appear with more than one label`);
  }
  lines.push(r.kind === 'text' ? `duplicate lines: ${r.duplicates}` : `exact duplicates: ${r.duplicates}`);
  if (r.inValidation !== undefined) {
    lines.push(r.kind === 'text'
      ? `lines also in the validation text: ${r.inValidation}`
      : `examples also in the validation file: ${r.inValidation} of ${r.examples} (validation has ${r.validationExamples})`);
  }
  for (const s of r.skipped.slice(0, 10)) lines.push(`skipped ${s.error}`);
  if (r.skipped.length > 10) lines.push(`... and ${r.skipped.length - 10} more skipped lines (--json lists all)`);
  lines.push(`tokenisation: ${Math.round(r.tokensPerSecond)} tokens/s; whole inspection ${r.seconds.toFixed(2)} s (${r.megabytesPerSecond.toFixed(1)} MB/s)`);
  return lines.join('\n');
}
