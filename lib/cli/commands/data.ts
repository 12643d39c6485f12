/** gptune data inspect | audit | augment | from-review */
import * as fs from 'fs';
import * as path from 'path';
import {
  AUGMENT_METHODS, AugmentMethod, AugmentRates, augmentFile, AugmentReport, auditReportLines, auditSplits, loadAuditSplit, checkTrainingSplit, DATA_KINDS,
  DEFAULT_NEAR_THRESHOLD, DEFAULT_RATES, inspectData, NotTrainingDataError, Paraphraser, parseDataKind, redactFile, Split, SPLITS,
} from '../../data';
import type { AuditReport, AuditSplit, DataKind, InspectReport } from '../../data';
import { loadConfigFile } from '../../config';
import type { DeviceChoice } from '../../device';
import { backTranslator, DEFAULT_TRANSLATION_TEMPLATE, readReviewFile, recordsFromReview, ReviewRecordFormat } from '../../eval';
import { writeFileAtomic } from '../../io/atomic';
import { checkOutputFile } from '../../io/output';
import { loadModelConfig } from '../../model/config';
import { contextLength } from '../../model/decoder_config';
import { planGenerationMemory } from '../../model/generate';
import { loadTokenizer } from '../../tokenizer';
import type { Tokenizer } from '../../tokenizer';
import { FlagSpec, UsageError } from '../args';
import { COMMON, Command, HUB_FLAGS, memoryCheck, openModel, OpenedModel, out, progressLine } from '../common';

/** seq_len without --model or --seq-len: GPT-2's context. */
const DEFAULT_SEQ_LEN = 1024;

/** The first key of an audit JSON file, so that a later run may replace its own previous report (and nothing else). */
const AUDIT_JSON_MARK = '{"report":"gptune data audit"';

const SUBCOMMANDS = ['inspect', 'audit', 'augment', 'from-review'] as const;
type Subcommand = typeof SUBCOMMANDS[number];

/** The rate flags of augment and the rates they set. */
const RATE_FLAGS: Record<string, keyof AugmentRates> = {
  'char-swap-rate': 'charSwap', 'char-delete-rate': 'charDelete', 'typo-rate': 'typo', 'word-dropout-rate': 'wordDropout',
  'alpha-sr': 'alphaSr', 'alpha-ri': 'alphaRi', 'alpha-rs': 'alphaRs', 'p-rd': 'pRd',
};

/** The rates `--rate X` sets for each method (backtranslate has none). */
const RATES_OF_METHOD: Record<AugmentMethod, (keyof AugmentRates)[]> = {
  'char-swap': ['charSwap'], 'char-delete': ['charDelete'], typo: ['typo'], 'word-dropout': ['wordDropout'],
  noise: ['charSwap', 'charDelete', 'typo', 'wordDropout'],
  synonym: ['alphaSr'], insert: ['alphaRi'], swap: ['alphaRs'], delete: ['pRd'], eda: ['alphaSr', 'alphaRi', 'alphaRs', 'pRd'],
  backtranslate: [],
};

const rateFlag = (help: string): FlagSpec => ({ type: 'number', min: 0, help });

const FLAGS: Record<string, FlagSpec> = {
  data: { type: 'string', help: 'audit: the training data file (or give it as FILE)' },
  model: { type: 'string', help: 'inspect, audit: model folder (or a Hugging Face model id: gpt2, org/name@revision) whose tokenizer and n_positions to use (inspect default: GPT-2\'s tokenizer, seq_len 1024; audit: lengths only with --model or --tokenizer)' },
  tokenizer: { type: 'string', help: 'audit: a folder with the tokenizer files to measure lengths with (instead of --model)' },
  'seq-len': { type: 'int', min: 1, help: 'inspect, audit: tokens per training row (default: the model\'s n_positions)' },
  validation: { type: 'string', help: 'inspect: validation file: counts training examples that also appear in it; audit checks it for leakage' },
  test: { type: 'string', help: 'audit: test file, checked for leakage against train and validation' },
  format: { type: 'string', choices: DATA_KINDS, help: 'inspect, audit, augment: the data kind, instead of detecting it' },
  template: { type: 'string', help: 'inspect, audit: prompt template with {placeholders} (see README "Data")' },
  'train-on-prompt': { type: 'bool', help: 'inspect: count prompt tokens as trained' },
  'skip-invalid': { type: 'bool', help: 'inspect, audit: skip invalid lines (listed) instead of stopping at the first' },
  'near-threshold': { type: 'number', help: `audit: Jaccard similarity (0-1] of word 3-shingles at or above which two examples are near-duplicates (default ${DEFAULT_NEAR_THRESHOLD})` },
  audit: { type: 'bool', help: 'inspect: also run the audit (duplicates, leakage with --validation, PII, balance)' },
  strict: { type: 'bool', help: 'audit: exit with status 1 when leakage across splits or PII is found (after writing the reports)' },
  redact: { type: 'string', help: 'audit: write a copy of --data with every PII find replaced by a placeholder such as [EMAIL] (a new file; never the input or an existing file)' },
  out: { type: 'string', help: 'augment, from-review: the JSONL file to write (refused when it exists, unless --force; never the input)' },
  method: { type: 'string', help: `augment: one or more of ${AUGMENT_METHODS.join(', ')}, comma-separated (README "Augmentation")` },
  rate: { type: 'number', min: 0, help: 'augment: the rate of every method named (noise: per character / per word; EDA: alpha); the flags below set one each' },
  'char-swap-rate': rateFlag(`augment: probability per pair of adjacent word characters of swapping them (default ${DEFAULT_RATES.charSwap})`),
  'char-delete-rate': rateFlag(`augment: probability per word character of deleting it (default ${DEFAULT_RATES.charDelete})`),
  'typo-rate': rateFlag(`augment: probability per letter of typing a QWERTY neighbour instead (default ${DEFAULT_RATES.typo})`),
  'word-dropout-rate': rateFlag(`augment: probability per word of dropping it (default ${DEFAULT_RATES.wordDropout})`),
  'alpha-sr': rateFlag(`augment: EDA synonym replacement: max(1, floor(alpha n)) words of n replaced (default ${DEFAULT_RATES.alphaSr})`),
  'alpha-ri': rateFlag(`augment: EDA random insertion: max(1, floor(alpha n)) synonyms inserted (default ${DEFAULT_RATES.alphaRi})`),
  'alpha-rs': rateFlag(`augment: EDA random swap: max(1, floor(alpha n)) swaps (default ${DEFAULT_RATES.alphaRs})`),
  'p-rd': rateFlag(`augment: EDA random deletion: probability per word (default ${DEFAULT_RATES.pRd})`),
  'per-example': { type: 'int', min: 1, help: 'augment: copies of every example per method (default 1)' },
  seed: { type: 'int', min: 0, help: 'augment: seed of every random choice (default 0); the same seed gives the same output' },
  balance: { type: 'bool', help: 'augment: copies of the minority classes\' examples, by the one --method, until every class has the majority\'s count' },
  split: { type: 'string', choices: SPLITS, help: 'augment: the split the input is; anything but train is refused (README "Augmentation")' },
  config: { type: 'string', help: 'augment: a training config; its validation file is refused' },
  'forward-model': { type: 'string', help: 'augment, backtranslate: the model that translates A -> B (a folder or a Hugging Face id)' },
  'backward-model': { type: 'string', help: 'augment, backtranslate: the model that translates B -> A' },
  'forward-template': { type: 'string', help: `augment, backtranslate: the forward prompt, with {text} (default ${JSON.stringify(DEFAULT_TRANSLATION_TEMPLATE)})` },
  'backward-template': { type: 'string', help: 'augment, backtranslate: the backward prompt, with {text} (default: the same)' },
  temperature: { type: 'number', min: 0, help: 'augment, backtranslate: softmax temperature (default 0: greedy)' },
  'top-k': { type: 'int', min: 0, help: 'augment, backtranslate: sample from the k most likely tokens (0 = all)' },
  'top-p': { type: 'number', min: 0, help: 'augment, backtranslate: nucleus sampling threshold (1 = off)' },
  'max-new-tokens': { type: 'int', min: 1, help: 'augment, backtranslate: tokens per translation at most (default: the text\'s tokens + max(16, 25%))' },
  as: { type: 'string', choices: ['original', 'prompt_completion'], help: 'from-review: the records\' format: the original data\'s (default when every item has its source) or prompt/completion (the prompt as the model saw it)' },
  force: { type: 'bool', help: 'augment, from-review: replace --out when it exists (never the input file)' },
  json: { type: 'string', withoutValue: '-', help: 'print the report as one JSON line; inspect and audit: with OUT, write it to that file (atomically; an existing file is replaced only if it is an earlier report of the same command)' },
  ...HUB_FLAGS,
  ...COMMON,
};

/** The flags each subcommand takes (the shared COMMON/HUB flags aside); any other is an error naming it. */
const SUBCOMMAND_FLAGS: Record<Subcommand, readonly string[]> = {
  inspect: ['model', 'seq-len', 'validation', 'format', 'template', 'train-on-prompt', 'skip-invalid', 'json', 'audit'],
  audit: ['data', 'model', 'tokenizer', 'seq-len', 'validation', 'test', 'format', 'template', 'skip-invalid', 'near-threshold', 'json', 'strict', 'redact'],
  augment: [
    'out', 'method', 'rate', ...Object.keys(RATE_FLAGS), 'per-example', 'seed', 'balance', 'split', 'config', 'format', 'force', 'json',
    'forward-model', 'backward-model', 'forward-template', 'backward-template', 'temperature', 'top-k', 'top-p', 'max-new-tokens',
  ],
  'from-review': ['out', 'as', 'force', 'json'],
};
const SHARED_FLAGS = new Set([...Object.keys(HUB_FLAGS), ...Object.keys(COMMON)]);

export const dataCommand: Command = {
  positionals: true,
  usage: [
    'gptune data inspect FILE [--model DIR|org/name] [--seq-len T] [--validation FILE] [--json [OUT]] [--audit]',
    'gptune data audit --data FILE [--validation FILE] [--test FILE] [--format KIND] [--model DIR|org/name | --tokenizer DIR] [--seq-len T] [--near-threshold X] [--json [OUT]] [--strict] [--redact OUT]',
    'gptune data augment IN --out OUT.jsonl --method METHOD[,METHOD...] [--rate X] [--per-example N] [--seed S] [--balance] [--split train]',
    'gptune data from-review REVIEW.jsonl|REVIEW.csv --out NEXT.jsonl [--as original|prompt_completion]',
  ].join('\n       '),
  description:
    'inspect: a data file (JSONL prompt/completion, chat or classification; CSV text,label; a .txt file or a folder of them) before training: examples, tokens, a length histogram, how many examples seq_len would truncate, label balance, exact duplicates, overlap with a validation file, and tokenisation throughput. Invalid lines are errors naming FILE:LINE unless --skip-invalid. ' +
    'audit (or inspect --audit): the splits together: class balance and imbalance ratio, lengths in tokens with truncated examples and outliers (with a tokenizer), exact and near-duplicates (MinHash over word 3-shingles, verified by exact Jaccard) within each split and across splits (leakage), and PII and secrets (emails, phones, cards with Luhn, IBANs with their check digits, IPv4/IPv6, URLs with credentials, API and private keys), each with FILE:LINE; --redact writes a copy of --data with each find replaced by a placeholder. ' +
    'augment: training data with new examples made from each one (textual noise, EDA with WordNet synonyms, back-translation through two models, or --balance to oversample minority classes); only the text a model reads changes, never a label or completion; each copy says where it came from in "_augmented_from". ' +
    'from-review: the items of a `gptune sample --review` file a person marked accept or corrected, as training records.',
  modelFlags: ['model', 'forward-model', 'backward-model'],
  flags: FLAGS,
  run(v, positionals) {
    const [sub, file, ...extra] = positionals;
    if (sub === undefined) throw new UsageError(`data: expected a subcommand: ${SUBCOMMANDS.join(', ')}`);
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`data: unknown subcommand '${sub}' (expected ${SUBCOMMANDS.join(', ')})`);
    const subcommand = sub as Subcommand;
    const stray = Object.keys(v).find((flag) => v[flag] !== undefined && !SHARED_FLAGS.has(flag) && !SUBCOMMAND_FLAGS[subcommand].includes(flag));
    if (stray !== undefined) {
      const owners = SUBCOMMANDS.filter((s) => SUBCOMMAND_FLAGS[s].includes(stray));
      throw new UsageError(`${subcommand}: --${stray} is not an option of this subcommand${owners.length > 0 ? ` (--${stray} belongs to gptune data ${owners.join(' and ')})` : ' (see gptune data --help)'}`);
    }
    if (subcommand === 'audit') return runAudit(v, positionals.slice(1));
    if ((subcommand === 'augment' || subcommand === 'from-review') && v.json !== undefined && v.json !== '-') {
      throw new UsageError(`${subcommand}: --json prints the report and takes no file name (received '${v.json}')`);
    }
    if (file === undefined) throw new UsageError(`${subcommand}: expected a ${subcommand === 'from-review' ? 'review' : 'data'} FILE`);
    if (extra.length > 0) throw new UsageError(`${subcommand}: expected one FILE but also received ${extra.map((e) => `'${e}'`).join(' ')}`);
    if (!fs.existsSync(file)) throw new UsageError(`${subcommand}: ${file}: file not found`);
    if (subcommand === 'inspect') return inspect(v, file);
    if (subcommand === 'augment') return augment(v, file);
    return fromReview(v, file);
  },
};

function inspect(v: Record<string, unknown>, file: string): void {
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
}

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
    if (file !== undefined) splits.push(loadAuditSplit(name, file, { format: o.format, skipInvalid: o.skipInvalid }));
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

/** Methods from --method (comma-separated, each once). */
function parseMethods(text: string | undefined): AugmentMethod[] {
  if (text === undefined) throw new UsageError(`augment: --method is required: one or more of ${AUGMENT_METHODS.join(', ')}`);
  const methods = text.split(',').map((m) => m.trim());
  for (const m of methods) {
    if (!(AUGMENT_METHODS as readonly string[]).includes(m)) throw new UsageError(`--method: unknown method '${m}' (expected ${AUGMENT_METHODS.join(', ')}, comma-separated)`);
  }
  const twice = methods.find((m, i) => methods.indexOf(m) !== i);
  if (twice !== undefined) throw new UsageError(`--method: '${twice}' is named twice`);
  return methods as AugmentMethod[];
}

/** --rate for every method named, then each rate flag; a rate above 1 is an error naming its flag. */
function parseRates(v: Record<string, unknown>, methods: readonly AugmentMethod[]): Partial<AugmentRates> {
  const rates: Partial<AugmentRates> = {};
  const check = (flag: string, value: number) => {
    if (value > 1) throw new UsageError(`--${flag}: expected a number in [0, 1] but received ${value}`);
  };
  if (v.rate !== undefined) {
    check('rate', v.rate as number);
    const keys = methods.flatMap((m) => RATES_OF_METHOD[m]);
    if (keys.length === 0) throw new UsageError(`--rate: ${methods.join(', ')} has no rate`);
    for (const key of keys) rates[key] = v.rate as number;
  }
  for (const [flag, key] of Object.entries(RATE_FLAGS)) {
    if (v[flag] === undefined) continue;
    check(flag, v[flag] as number);
    rates[key] = v[flag] as number;
  }
  return rates;
}

/** The validation/test files a training config names (compared resolved from here and from the config's folder). */
function heldOutFilesOf(config: string | undefined): string[] {
  if (config === undefined) return [];
  const validation = loadConfigFile(config).validation;
  if (typeof validation !== 'string') return [];
  return [path.resolve(validation), path.resolve(path.dirname(config), validation)];
}

/** An output file that is not the input and does not exist (or --force). */
function checkOut(v: Record<string, unknown>, input: string): string {
  const file = v.out as string | undefined;
  if (file === undefined) throw new UsageError('--out is required: the JSONL file to write');
  if (path.extname(file).toLowerCase() !== '.jsonl') throw new UsageError(`--out ${file}: expected a .jsonl file name (records are written as JSONL)`);
  if (path.resolve(file) === path.resolve(input)) throw new UsageError(`--out ${file}: is the input file; the input is never overwritten, choose another name`);
  checkOutputFile(file, '--out', { overwrite: Boolean(v.force), isOwn: () => false });
  return file;
}

function jsonLines(objects: readonly Record<string, unknown>[]): string {
  return objects.map((o) => JSON.stringify(o)).join('\n') + (objects.length > 0 ? '\n' : '');
}

/** Opens one translation model (closed by the caller). */
function openTranslationModel(v: Record<string, unknown>, flag: string): OpenedModel {
  const spec = v[flag] as string | undefined;
  if (spec === undefined) throw new UsageError(`augment: --method backtranslate needs --forward-model and --backward-model (--${flag} is missing)`);
  return openModel(spec, v.device as DeviceChoice, 0, memoryCheck(v, 'back-translation', (cfg) => planGenerationMemory(cfg), 'the model size'), `--${flag}`);
}

function augment(v: Record<string, unknown>, file: string): void {
  const methods = parseMethods(v.method as string | undefined);
  const rates = parseRates(v, methods);
  const split = v.split as Split | undefined;
  try {
    checkTrainingSplit(file, { split, heldOutFiles: heldOutFilesOf(v.config as string | undefined) });
  } catch (e) {
    if (e instanceof NotTrainingDataError) throw new UsageError(e.message);
    throw e;
  }
  if (v.balance && methods.length !== 1) throw new UsageError(`--balance: makes its copies with one --method but received ${methods.join(',')}`);
  if (v.balance && v['per-example'] !== undefined) throw new UsageError('--balance: the copies needed are counted per class; --per-example does not apply');
  const translating = methods.includes('backtranslate');
  const translationFlags = ['forward-model', 'backward-model', 'forward-template', 'backward-template', 'temperature', 'top-k', 'top-p', 'max-new-tokens'];
  const unused = translationFlags.find((f) => v[f] !== undefined);
  if (!translating && unused !== undefined) throw new UsageError(`--${unused}: only --method backtranslate uses it`);
  const topP = v['top-p'] as number | undefined;
  if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1] but received '${topP}'`);
  const outFile = checkOut(v, file);

  const opened: OpenedModel[] = [];
  try {
    let paraphrase: Paraphraser | undefined;
    if (translating) {
      const forward = openTranslationModel(v, 'forward-model');
      opened.push(forward);
      const backward = openTranslationModel(v, 'backward-model');
      opened.push(backward);
      try {
        paraphrase = backTranslator(
          { ...forward, template: v['forward-template'] as string | undefined },
          { ...backward, template: (v['backward-template'] ?? v['forward-template']) as string | undefined },
          { temperature: v.temperature as number | undefined, topK: v['top-k'] as number | undefined, topP, maxNewTokens: v['max-new-tokens'] as number | undefined },
        );
      } catch (e) {
        throw new UsageError(`--${(e as Error).message.startsWith('forward') ? 'forward' : 'backward'}-template: ${(e as Error).message.replace(/^\w+ template: /, '')}`);
      }
    }
    const { objects, report } = augmentFile(file, {
      methods, rates, perExample: v['per-example'] as number | undefined, seed: v.seed as number | undefined, balance: Boolean(v.balance), paraphrase,
      onProgress: progressLine(process.stderr, 'augment', 'examples'),
    }, { format: v.format !== undefined ? parseDataKind(v.format as string, '--format') : undefined });
    writeFileAtomic(outFile, jsonLines(objects));
    out(v.json ? JSON.stringify({ out: outFile, ...snakeCase(report) }) : formatAugmentReport(report, outFile));
  } finally {
    for (const m of opened) m.model.free();
  }
}

function snakeCase(r: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]));
}

function formatAugmentReport(r: AugmentReport, outFile: string): string {
  const lines = [`${r.file}: ${r.examples} ${r.kind} examples -> ${outFile}: ${r.written} lines (the ${r.examples} examples and ${r.copies} copies)`];
  for (const [method, c] of Object.entries(r.methods)) {
    const skipped = [c.unchanged > 0 ? `${c.unchanged} unchanged` : '', c.empty > 0 ? `${c.empty} empty` : ''].filter(Boolean);
    lines.push(`  ${method}: ${c.made} copies${skipped.length > 0 ? ` (${skipped.join(', ')}: not written)` : ''}`);
  }
  if (r.labels) lines.push(`labels: ${Object.keys(r.labels.before).map((l) => `${JSON.stringify(l)} ${r.labels!.before[l]} -> ${r.labels!.after[l]}`).join(', ')}`);
  if (r.shortOfBalance) lines.push(`not balanced: ${Object.entries(r.shortOfBalance).map(([l, n]) => `${JSON.stringify(l)} ${n} short (too many copies came out unchanged)`).join(', ')}`);
  lines.push('each copy names its source line and method in "_augmented_from"');
  return lines.join('\n');
}

function fromReview(v: Record<string, unknown>, file: string): void {
  const outFile = checkOut(v, file);
  const result = recordsFromReview(file, readReviewFile(file), v.as as ReviewRecordFormat | undefined);
  writeFileAtomic(outFile, jsonLines(result.objects));
  const c = result.counts;
  out(v.json
    ? JSON.stringify({ out: outFile, format: result.format, ...c })
    : `${file}: ${c.items} items: ${c.accepted} accepted, ${c.corrected} corrected, ${c.rejected} rejected, ${c.not_reviewed} not reviewed -> ${outFile}: ${c.written} ${result.format} records`);
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
