/** gptune data inspect */
import * as fs from 'fs';
import * as path from 'path';
import { DATA_KINDS, inspectData, parseDataKind } from '../../data';
import type { InspectReport } from '../../data';
import { loadModelConfig } from '../../model/config';
import { contextLength } from '../../model/decoder_config';
import { loadTokenizer } from '../../tokenizer';
import { UsageError } from '../args';
import { Command, HUB_FLAGS, out } from '../common';

/** seq_len without --model or --seq-len: GPT-2's context. */
const DEFAULT_SEQ_LEN = 1024;

export const dataCommand: Command = {
  positionals: true,
  usage: 'gptune data inspect FILE [--model DIR|org/name] [--seq-len T] [--validation FILE] [--json]',
  description:
    'Inspect a data file (JSONL prompt/completion, chat or classification; CSV text,label; a .txt file or a folder of them) before training: examples, tokens, a length histogram, how many examples seq_len would truncate, label balance, exact duplicates, overlap with a validation file, and tokenisation throughput. Invalid lines are errors naming FILE:LINE unless --skip-invalid.',
  modelFlags: ['model'],
  flags: {
    model: { type: 'string', help: 'model folder (or a Hugging Face model id: gpt2, org/name@revision) whose tokenizer and n_positions to use (default: GPT-2\'s tokenizer, seq_len 1024)' },
    'seq-len': { type: 'int', min: 1, help: 'tokens per training row (default: the model\'s n_positions)' },
    validation: { type: 'string', help: 'validation file: counts training examples that also appear in it' },
    format: { type: 'string', choices: DATA_KINDS, help: 'the data kind, instead of detecting it' },
    template: { type: 'string', help: 'prompt template with {placeholders} (see README "Data")' },
    'train-on-prompt': { type: 'bool', help: 'count prompt tokens as trained' },
    'skip-invalid': { type: 'bool', help: 'skip invalid lines (listed) instead of stopping at the first' },
    json: { type: 'bool', help: 'print the report as one JSON line' },
    ...HUB_FLAGS,
    help: { type: 'bool', help: 'show this help' },
  },
  run(v, positionals) {
    const [sub, file, ...extra] = positionals;
    if (sub !== 'inspect') throw new UsageError(sub === undefined ? 'data: expected a subcommand: gptune data inspect FILE' : `data: unknown subcommand '${sub}' (expected inspect)`);
    if (file === undefined) throw new UsageError('data inspect: expected a data FILE');
    if (extra.length > 0) throw new UsageError(`data inspect: expected one FILE but also received ${extra.map((e) => `'${e}'`).join(' ')}`);
    if (!fs.existsSync(file)) throw new UsageError(`data inspect: ${file}: file not found`);
    const modelDir = v.model as string | undefined;
    if (modelDir !== undefined && !fs.existsSync(path.join(modelDir, 'config.json'))) throw new UsageError(`--model ${modelDir}: no config.json there (expected a model folder)`);
    const tokenizer = loadTokenizer(modelDir);
    const seqLen = (v['seq-len'] as number | undefined) ?? (modelDir !== undefined ? contextLength(loadModelConfig(modelDir)) : DEFAULT_SEQ_LEN);
    const report = inspectData(file, {
      tokenizer, seqLen,
      validation: v.validation as string | undefined,
      format: v.format !== undefined ? parseDataKind(v.format as string, '--format') : undefined,
      template: v.template as string | undefined,
      skipInvalid: v['skip-invalid'] as boolean | undefined,
      trainOnPrompt: v['train-on-prompt'] as boolean | undefined,
    });
    if (v.json) return out(JSON.stringify({ ...snakeCaseKeys(report), tokenizer: tokenizer.name }));
    out(formatReport(report, tokenizer.name));
  },
};

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
