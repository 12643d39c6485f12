/** gptune eval */
import * as fs from 'fs';
import * as path from 'path';
import { DataRecord, DATA_KINDS, DataKind, loadRecords, type RecordWarning } from '../../data';
import { DeviceChoice } from '../../device';
import {
  ClassificationEvalResult, ClassificationOptions, compareModels, Comparison, evaluateClassification, evaluateGeneration, evaluateLM, evaluateTask, EVAL_TASKS,
  EVAL_TASK_KIND, EvalTask, formatBleuReport, formatClassificationReport, formatComparison, formatRougeReport, formatTaskReport, GenerationEvalResult, LabelScoring,
} from '../../eval';
import { formatProbeReport, parseProbeGroups, PROBE_GROUPS, ProbeFlip, probeCounterfactual } from '../../eval/probe';
import { writeFileAtomic } from '../../io/atomic';
import { checkOutputFile, firstLineHasKeys } from '../../io/output';
import { UsageError } from '../args';
import { maxScoringRows } from '../../eval/likelihood';
import { planGenerationMemory } from '../../model/generate';
import { planMemory } from '../../model/decoder';
import { contextLength, DecoderConfig } from '../../model/decoder_config';
import type { MemoryCheck } from '../../model/open';
import { ADAPTER_FLAGS, COMMON, Command, encodeFile, progressLine, readTextFile, MAX_MEMORY_FLAG, memoryCheck, openModel, openWithAdapters, HUB_FLAGS, out } from '../common';

type Values = Record<string, unknown>;

const TASKS = ['lm', 'classify', 'generate', ...EVAL_TASKS] as const;
type Task = (typeof TASKS)[number];

function isEvalTask(task: Task): task is EvalTask {
  return (EVAL_TASKS as readonly string[]).includes(task);
}

/** Flags that only some tasks read; giving one to another task is a usage error, not silently ignored. */
const TASK_FLAGS: Record<string, readonly Task[]> = {
  'seq-len': ['lm'],
  format: ['classify', 'generate'],
  template: ['classify', 'generate', ...EVAL_TASKS],
  'skip-invalid': ['classify', 'generate', ...EVAL_TASKS],
  'max-examples': ['classify', 'generate', ...EVAL_TASKS],
  predictions: ['classify', 'generate', ...EVAL_TASKS],
  overwrite: ['classify', 'generate', ...EVAL_TASKS],
  labels: ['classify'],
  'label-score': ['classify'],
  'label-eos': ['classify'],
  'max-new-tokens': ['generate', ...EVAL_TASKS],
  'stop-at-newline': ['generate'],
  'num-beams': EVAL_TASKS,
  'length-penalty': EVAL_TASKS,
  'source-lang': ['translate'],
  'target-lang': ['translate'],
  probe: ['classify'],
  'probe-groups': ['classify'],
  'probe-seed': ['classify'],
  dump: ['classify', ...EVAL_TASKS],
};

interface TaskRun {
  /** The JSON result of one model (no per-example lists). */
  result: Record<string, unknown>;
  /** Per-example lines for --predictions. */
  perExample: Array<Record<string, unknown>>;
  human: string;
}

interface DataSet {
  records: DataRecord[];
  skipped: number;
  /** Lines with a warning (QA answers not in their context), among the records evaluated. */
  warnings: RecordWarning[];
}

/** The data of --task: a task reads its own kind (ner: JSONL or CoNLL columns); classify and generate detect it. */
function loadData(v: Values, task: Task): DataSet {
  const format = isEvalTask(task) ? EVAL_TASK_KIND[task] : v.format as DataKind | undefined;
  const loaded = loadRecords(v.data as string, { format, skipInvalid: Boolean(v['skip-invalid']) });
  const limit = v['max-examples'] as number | undefined;
  const records = limit !== undefined ? loaded.records.slice(0, limit) : loaded.records;
  if (records.length === 0) throw new UsageError(`--data ${v.data}: no examples to evaluate`);
  const last = records[records.length - 1].line;
  const warnings = loaded.warnings.filter((w) => w.line <= last);
  if (warnings.length > 0) process.stderr.write(`warning: ${warnings.length} line(s) with a warning, first: ${warnings[0].warning}\n`);
  return { records, skipped: loaded.skipped.length, warnings };
}

/** Opens a model for evaluation; `flag` names where the folder came from (--model or --compare). */
function openForEval(v: Values, modelDir: string, flag: string, plan: MemoryCheck['plan'], lower: string) {
  const memory = memoryCheck(v, 'evaluation', plan, lower);
  // --adapter and --base-dtype apply to --model; --compare is evaluated as it is (e.g. the base beside its adapter).
  return flag === '--model' ? openWithAdapters(v, modelDir, memory, flag) : openModel(modelDir, v.device as DeviceChoice, 0, memory, flag, { gguf: true });
}

function runLM(v: Values, modelDir: string, flag: string): TaskRun {
  const B = (v['batch-size'] as number | undefined) ?? 4;
  const seqLen = (cfg: DecoderConfig) => Math.min((v['seq-len'] as number | undefined) ?? contextLength(cfg), contextLength(cfg));
  const { model, tokenizer } = openForEval(v, modelDir, flag, (cfg) => planMemory(cfg, { batch: { B, T: seqLen(cfg) }, training: false }).parts, '--batch-size or --seq-len');
  try {
    const tokens = encodeFile(tokenizer, v.data as string, '--data');
    const T = (v['seq-len'] as number | undefined) ?? model.contextLength;
    if (T > model.contextLength) throw new UsageError(`--seq-len ${T} exceeds ${model.contextLimit}`);
    const started = Date.now();
    const r = evaluateLM(model, tokens, T, B, progressLine(process.stderr, `eval ${flag}`, 'tokens'));
    const result = { ...r, seconds: (Date.now() - started) / 1000 };
    const human = `loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(2)}  tokens ${r.tokens}  token accuracy ${(100 * r.token_accuracy).toFixed(2)}%`;
    return { result, perExample: [], human };
  } finally {
    model.free();
  }
}

/**
 * --task lm scores a file's bytes as text; a JSONL file would be scored as JSON syntax, a number
 * that means nothing. A file whose first non-blank line is a JSON object is refused, naming the task
 * its keys call for (the same detection train uses).
 */
function refuseJSONLines(file: string): void {
  if (path.extname(file).toLowerCase() === '.txt' || !fs.existsSync(file) || fs.statSync(file).isDirectory()) return;
  const first = readTextFile(file, '--data').split('\n').find((line) => line.trim() !== '');
  let parsed: unknown;
  try {
    parsed = JSON.parse(first ?? '');
  } catch {
    return; // not JSON: plain text
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
  const keys = Object.keys(parsed);
  const task = keys.includes('label') ? 'classify' : keys.includes('messages') || keys.includes('prompt') || keys.includes('completion') ? 'generate' : null;
  const use = task === null ? 'give the text as a .txt file' : `use --task ${task}`;
  throw new UsageError(`--data ${file}: is JSONL (keys ${keys.join(', ')}), and --task lm (the default) would score the JSON text itself; ${use}`);
}

/** The classifier's model (sized for scoring B sequences per pass), --labels and the scoring options of --task classify. */
function openClassifier(v: Values, modelDir: string, flag: string) {
  const B = (v['batch-size'] as number | undefined) ?? 16;
  const labels = v.labels === undefined ? null : (v.labels as string).split(',').map((l) => l.trim()).filter((l) => l !== '');
  if (labels !== null && labels.length < 2) throw new UsageError(`--labels: expected at least 2 comma-separated labels but received '${v.labels}'`);
  const { model, tokenizer } = openForEval(v, modelDir, flag, (cfg) => planMemory(cfg, { batch: { B: 1, T: maxScoringRows(contextLength(cfg), B) }, training: false }).parts, '--batch-size');
  const options: ClassificationOptions = {
    labelScore: v['label-score'] as LabelScoring, labelEos: v['label-eos'] as boolean, batchSize: B,
    onProgress: progressLine(process.stderr, `eval ${flag}`, '(example, label) pairs scored'),
  };
  return { model, tokenizer, labels, options };
}

function runClassify(v: Values, modelDir: string, flag: string, data: DataSet): TaskRun {
  const { model, tokenizer, labels, options } = openClassifier(v, modelDir, flag);
  try {
    const started = Date.now();
    const r: ClassificationEvalResult = evaluateClassification(model, tokenizer, data.records, labels, v.template as string | undefined, options);
    const { predictions, ...report } = r;
    const result = { model: modelDir, data: v.data, ...report, skipped_lines: data.skipped, seconds: (Date.now() - started) / 1000 };
    const perExample = predictions.map((p, i) => ({
      line: data.records[i].line, label: p.label, predicted: p.predicted, scores: Object.fromEntries(r.labels.map((l, k) => [l, p.scores[k]])),
    }));
    const notes = [
      `labels ${r.labels.join(', ')}  (score: ${r.label_score} of the label tokens' log-probabilities${r.label_eos ? ', <|endoftext|> included' : ''})`,
      ...(r.truncated_examples > 0 ? [`${r.truncated_examples} prompts were cut on the left to fit the context`] : []),
      ...(data.skipped > 0 ? [`${data.skipped} invalid lines skipped`] : []),
    ];
    return { result, perExample, human: `${formatClassificationReport(r)}\n${notes.join('\n')}` };
  } finally {
    model.free();
  }
}

/** --probe counterfactual: the classification of the originals and of each swap group's counterfactual copies (lib/eval/probe.ts). */
function runProbe(v: Values, modelDir: string, data: DataSet): { result: Record<string, unknown>; flips: ProbeFlip[]; human: string } {
  const groups = parseProbeGroups((v['probe-groups'] as string | undefined) ?? PROBE_GROUPS.join(','));
  const { model, tokenizer, labels, options } = openClassifier(v, modelDir, '--model');
  try {
    const started = Date.now();
    const { report, flips } = probeCounterfactual(model, tokenizer, data.records, {
      groups, seed: v['probe-seed'] as number, labels, template: v.template as string | undefined, classification: options,
    });
    const result = { model: modelDir, data: v.data, ...report, skipped_lines: data.skipped, seconds: (Date.now() - started) / 1000 };
    return { result, flips, human: formatProbeReport(report) };
  } finally {
    model.free();
  }
}

function runGenerate(v: Values, modelDir: string, flag: string, data: DataSet): TaskRun {
  const { model, tokenizer } = openForEval(v, modelDir, flag, (cfg) => planGenerationMemory(cfg), 'the model size');
  try {
    const started = Date.now();
    const r: GenerationEvalResult = evaluateGeneration(model, tokenizer, data.records, {
      template: v.template as string | undefined,
      maxNewTokens: v['max-new-tokens'] as number | undefined,
      stopAtNewline: v['stop-at-newline'] as boolean | undefined,
      onProgress: progressLine(process.stderr, `eval ${flag}`, 'examples'),
    });
    const { outputs, ...report } = r;
    const result = { model: modelDir, data: v.data, ...report, skipped_lines: data.skipped, seconds: (Date.now() - started) / 1000 };
    const perExample = outputs.map((o, i) => ({ line: data.records[i].line, prompt: o.prompt, reference: o.reference, output: o.output, stop: o.stop }));
    const stops = Object.entries(r.stops).filter(([, n]) => n > 0).map(([why, n]) => `${why} ${n}`).join(', ');
    const human = [
      `examples ${r.examples}  (greedy, at most ${r.max_new_tokens} new tokens, stop at <|endoftext|>${r.stop_at_newline ? ' or a line break' : ''}; stopped: ${stops})`,
      formatBleuReport(r),
      formatRougeReport(r),
      ...(r.truncated_examples > 0 ? [`${r.truncated_examples} prompts were cut on the left to fit the context`] : []),
      ...(data.skipped > 0 ? [`${data.skipped} invalid lines skipped`] : []),
    ].join('\n');
    return { result, perExample, human };
  } finally {
    model.free();
  }
}

function runEvalTask(v: Values, modelDir: string, flag: string, data: DataSet, task: EvalTask): TaskRun {
  const { model, tokenizer } = openForEval(v, modelDir, flag, (cfg) => planGenerationMemory(cfg), 'the model size');
  try {
    const started = Date.now();
    const r = evaluateTask(model, tokenizer, data.records, task, {
      template: v.template as string | undefined,
      templateVariables: { sourceLang: v['source-lang'] as string | undefined, targetLang: v['target-lang'] as string | undefined },
      maxNewTokens: v['max-new-tokens'] as number | undefined,
      numBeams: v['num-beams'] as number | undefined,
      lengthPenalty: v['length-penalty'] as number | undefined,
      onProgress: progressLine(process.stderr, `eval ${flag}`, 'examples'),
    });
    const { perExample, metrics, ...decoding } = r;
    const result = { model: modelDir, ...metrics, ...decoding, skipped_lines: data.skipped, warnings: data.warnings.length, seconds: (Date.now() - started) / 1000 };
    const lines = perExample.map((e, i) => ({ line: data.records[i].line, ...e }));
    const notes = [
      ...(r.truncated_examples > 0 ? [`${r.truncated_examples} prompts were cut on the left to fit the context`] : []),
      ...(data.skipped > 0 ? [`${data.skipped} invalid lines skipped`] : []),
      ...(data.warnings.length > 0 ? [`${data.warnings.length} lines with a warning (first: ${data.warnings[0].warning})`] : []),
    ];
    return { result, perExample: lines, human: [formatTaskReport(r), ...notes].join('\n') };
  } finally {
    model.free();
  }
}

/** The fields a comparison table shows for each task. */
function comparisonFields(task: Task, a: Record<string, unknown>): string[] {
  switch (task) {
    case 'lm':
      return ['loss', 'perplexity', 'token_accuracy', 'tokens'];
    case 'classify':
      return ['accuracy', 'f1', 'precision', 'recall', ...Object.keys(a.per_class as object).map((label) => `per_class.${label}.f1`)];
    case 'generate':
      return ['bleu', 'rouge1.f', 'rouge2.f', 'rougeL.f', 'bp', 'sys_len', 'ref_len'];
    case 'qa':
      return ['exact_match', 'f1'];
    case 'ner':
      return ['f1', 'precision', 'recall', 'strict.f1', 'accuracy', 'malformed_lines', 'unmatched_spans'];
    case 'translate':
      return ['bleu', 'chrf', 'chrf_pp', 'bp'];
    case 'summarize':
      return ['rouge1.f', 'rouge2.f', 'rougeL.f', 'rougeLsum.f'];
  }
}

/** Per-example lines of two runs merged: the shared fields once, each model's own under a and b. */
function mergePerExample(a: Array<Record<string, unknown>>, b: Array<Record<string, unknown>>, own: readonly string[]): Array<Record<string, unknown>> {
  return a.map((x, i) => {
    const shared: Record<string, unknown> = {};
    const pick = (r: Record<string, unknown>) => Object.fromEntries(own.map((k) => [k, r[k]]));
    for (const [k, value] of Object.entries(x)) if (!own.includes(k)) shared[k] = value;
    return { ...shared, a: pick(x), b: pick(b[i]) };
  });
}

/** Whether a file starting with `head` is one writePredictions wrote: classify, generate, a task, or a --compare merge. */
function isPredictionsFile(head: string): boolean {
  return [['line', 'label', 'predicted'], ['line', 'prompt', 'reference', 'output'], ['line', 'prompt', 'output', 'gold', 'score'], ['line', 'a', 'b']]
    .some((keys) => firstLineHasKeys(head, keys));
}

function writePredictions(file: string, lines: Array<Record<string, unknown>>): void {
  writeFileAtomic(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

export const evalCommand: Command = {
  usage: 'gptune eval --model DIR|org/name[@revision] --data FILE [--task lm|classify|generate|qa|ner|translate|summarize] [--compare DIR2] [--probe counterfactual [--probe-groups gender,names] [--dump FILE]] [--json]',
  description:
    'Evaluates a model on data. --task lm (default): language-model loss on a text file: the whole file is tokenised (no BOS), cut into consecutive chunks of at most T tokens, and every token after the first of its chunk is predicted from the chunk\'s earlier tokens. ' +
    '--task classify: classification data rendered with its template; each candidate label\'s completion (" " + label by default, then <|endoftext|> unless --no-label-eos) is scored by its log-likelihood after the prompt and the most likely label is the prediction: accuracy, macro-F1, per-class figures, confusion matrix. ' +
    '--task generate: prompt/completion (or chat) data; each prompt is continued greedily until <|endoftext|>, --max-new-tokens, or (when every reference is one line) a line break, and the outputs are scored against the completions with corpus BLEU and ROUGE-1/2/L. ' +
    '--task qa|ner|translate|summarize: the task\'s data (README "Tasks") rendered as in training, decoded (greedy, batched; or beam search with --num-beams) and scored with the field\'s metric: ' +
    'qa SQuAD v1.1 exact match and F1; ner seqeval precision/recall/F1 (default and strict IOB2) and token accuracy of the "TYPE: span" output decoded to tags; ' +
    'translate BLEU, chrF and chrF++ with sacrebleu\'s signatures; summarize ROUGE-1/2/L/Lsum. --dump FILE writes each example\'s prompt, output, gold answer and score. ' +
    '--compare DIR2 evaluates a second model on the same data and prints both side by side with the difference (JSON: {a, b, delta}, delta = b - a). ' +
    '--task classify --probe counterfactual: the bias probe; each input is copied with gendered words (pronouns, titles, nouns) or first names swapped female <-> male, and per swap group the report gives the inputs changed, the predictions that flip and the mean change of the true label\'s log-likelihood.',
  modelFlags: ['model', 'compare'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'model folder (config.json + model.safetensors) or a GGUF file; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    data: { type: 'string', required: true, help: 'text file (lm) or data file (classify, generate, and the task\'s data for qa, ner, translate, summarize)' },
    task: { type: 'string', default: 'lm', choices: TASKS, help: 'what to evaluate' },
    compare: { type: 'string', help: 'a second model folder to evaluate on the same data (e.g. the fine-tuned one against the base); or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    'seq-len': { type: 'int', min: 2, help: 'lm: chunk length (default: n_positions)' },
    'batch-size': { type: 'int', min: 1, help: 'chunks (lm, default 4) or scored sequences (classify, default 16) per forward pass' },
    format: { type: 'string', choices: DATA_KINDS, help: 'data format (default: detected from the file)' },
    template: { type: 'string', help: 'prompt template, as in training (default: the format\'s default template)' },
    'skip-invalid': { type: 'bool', help: 'skip invalid data lines (counted in the report) instead of stopping at the first' },
    'max-examples': { type: 'int', min: 1, help: 'evaluate only the first N examples' },
    labels: { type: 'string', help: 'classify: candidate labels, comma-separated (default: the labels in the data)' },
    'label-score': { type: 'string', default: 'sum', choices: ['sum', 'mean'], help: 'classify: a label\'s score is the sum or the per-token mean of its tokens\' log-probabilities' },
    'label-eos': { type: 'bool', default: true, help: 'classify: score <|endoftext|> after each label, as training appends it (--no-label-eos scores the label alone)' },
    'max-new-tokens': { type: 'int', min: 1, help: 'generate and the tasks: tokens per output at most (default: longest reference + max(16, 25%))' },
    'num-beams': { type: 'int', min: 1, help: 'qa/ner/translate/summarize: beam search with N beams (default 1: greedy, batched across examples)' },
    'length-penalty': { type: 'number', help: 'qa/ner/translate/summarize with --num-beams: finished beams are scored sum of log-probabilities / length ** X, as Hugging Face (default 1)' },
    'source-lang': { type: 'string', help: 'translate: the source language\'s name in the template (default "Source")' },
    'target-lang': { type: 'string', help: 'translate: the target language\'s name in the template (default "Target")' },
    'stop-at-newline': { type: 'bool', help: 'generate: stop at a line break (default: when every reference is a single line)' },
    predictions: { type: 'string', help: 'classify/generate/tasks: also write every example\'s prediction (tasks: prompt, output, gold, score) to this JSONL file' },
    overwrite: { type: 'bool', help: 'replace --predictions (or --dump) when it exists and is not such a file gptune wrote' },
    probe: { type: 'string', choices: ['counterfactual'], help: 'classify: the bias probe instead of the plain evaluation: every input copied with demographic terms swapped (per group), classified again; reports per group how many inputs changed, how often the predicted label flips and the mean change of the true label\'s log-likelihood' },
    'probe-groups': { type: 'string', help: `classify --probe: swap groups, comma-separated, among ${PROBE_GROUPS.join(', ')} (default: all): gender = pronouns, titles and gendered nouns; names = female <-> male first names` },
    'probe-seed': { type: 'int', min: 0, help: 'classify --probe: seed of the female <-> male first-name pairing (default 0)' },
    dump: { type: 'string', help: 'classify --probe: write the examples whose prediction flips to this JSONL file (one line per group and example); qa/ner/translate/summarize: the same as --predictions' },
    json: { type: 'bool', help: 'print the result as one JSON line' },
    ...ADAPTER_FLAGS,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v) {
    const task = v.task as Task;
    for (const [flag, tasks] of Object.entries(TASK_FLAGS)) {
      // label-eos has a default; only an explicit --no-label-eos counts as given.
      const given = flag === 'label-eos' ? v[flag] === false : flag === 'label-score' ? v[flag] !== 'sum' : v[flag] !== undefined;
      if (given && !tasks.includes(task)) throw new UsageError(`--${flag} applies to --task ${tasks.join('/')}, not --task ${task}`);
    }
    const modelA = v.model as string;
    const modelB = v.compare as string | undefined;
    // Both folders before either model is evaluated: a typo in --compare should not cost a whole evaluation.
    for (const [flag, dir] of [['--model', modelA], ['--compare', modelB]] as const) {
      if (dir !== undefined && !dir.startsWith('new:') && !fs.existsSync(dir)) throw new UsageError(`${flag} ${dir}: folder not found`);
    }
    if (task === 'lm') refuseJSONLines(v.data as string);
    // For the tasks --dump is --predictions under the name the task tools use (one per-example file either way).
    if ((EVAL_TASKS as readonly string[]).includes(task) && v.dump !== undefined) {
      if (v.predictions !== undefined) throw new UsageError('--dump and --predictions both name the per-example file; give one');
      v.predictions = v.dump;
      v.dump = undefined;
    }
    if (v.probe === undefined) {
      for (const flag of ['probe-groups', 'probe-seed', 'dump']) if (v[flag] !== undefined) throw new UsageError(`--${flag} applies to --probe counterfactual`);
    } else {
      if (modelB !== undefined) throw new UsageError('--probe probes one model; run it once per model instead of --compare');
      if (v.predictions !== undefined) throw new UsageError('--predictions does not apply with --probe; --dump FILE writes the examples that flip');
      try {
        parseProbeGroups((v['probe-groups'] as string | undefined) ?? PROBE_GROUPS.join(','));
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      if (v.dump !== undefined) {
        const file = v.dump as string;
        if (path.resolve(file) === path.resolve(v.data as string)) throw new UsageError(`--dump ${file}: is the --data file; choose another name`);
        checkOutputFile(file, '--dump', { overwrite: Boolean(v.overwrite), isOwn: (head) => head === '' || firstLineHasKeys(head, ['group', 'line', 'counterfactual']) });
      }
      const probe = runProbe(v, modelA, loadData(v, task));
      if (v.dump !== undefined) writeFileAtomic(v.dump as string, probe.flips.map((f) => JSON.stringify(f) + '\n').join(''));
      out(v.json ? JSON.stringify({ task, ...probe.result }) : probe.human);
      return;
    }
    if (v.predictions !== undefined) {
      const file = v.predictions as string;
      if (path.resolve(file) === path.resolve(v.data as string)) throw new UsageError(`--predictions ${file}: is the --data file; choose another name`);
      checkOutputFile(file, '--predictions', { overwrite: Boolean(v.overwrite), isOwn: isPredictionsFile });
    }
    if (task === 'lm' && modelB === undefined) {
      // The original contract: a human line unless --json, then the JSON line.
      const { result, human } = runLM(v, modelA, '--model');
      if (!v.json) out(human);
      out(JSON.stringify({ loss: result.loss, perplexity: result.perplexity, tokens: result.tokens, token_accuracy: result.token_accuracy, seconds: result.seconds }));
      return;
    }
    const data = task === 'lm' ? null : loadData(v, task);
    const runTask = (dir: string): TaskRun => {
      const flag = dir === modelA ? '--model' : '--compare';
      if (isEvalTask(task)) return runEvalTask(v, dir, flag, data!, task);
      return task === 'lm' ? runLM(v, dir, flag) : task === 'classify' ? runClassify(v, dir, flag, data!) : runGenerate(v, dir, flag, data!);
    };
    if (modelB === undefined) {
      const run = runTask(modelA);
      if (v.predictions) writePredictions(v.predictions as string, run.perExample);
      out(v.json ? JSON.stringify({ task, ...run.result }) : run.human);
      return;
    }
    const runs: TaskRun[] = []; // [A, B]: compareModels evaluates A first
    const comparison: Comparison = compareModels(modelA, modelB, (dir) => {
      const run = runTask(dir);
      runs.push(run);
      return { task, model: dir, ...run.result };
    });
    if (v.predictions) {
      const own = task === 'classify' ? ['predicted', 'scores'] : isEvalTask(task) ? ['output', 'stop', 'score', 'predicted_tags'] : ['output', 'stop'];
      writePredictions(v.predictions as string, mergePerExample(runs[0].perExample, runs[1].perExample, own));
    }
    if (v.json) {
      out(JSON.stringify(comparison));
      return;
    }
    out(`A = ${modelA}\nB = ${modelB}\n`);
    out(formatComparison(comparison, ['A', 'B'], comparisonFields(task, comparison.a)));
    if (task === 'classify') {
      out('\nconfusion matrices (rows: true class, columns: predicted)');
      out(`A:\n${formatConfusion(comparison.a)}\nB:\n${formatConfusion(comparison.b)}`);
    }
  },
};

function formatConfusion(r: Record<string, unknown>): string {
  const full = formatClassificationReport(r as unknown as ClassificationEvalResult);
  return full.slice(full.indexOf('\n', full.indexOf('confusion matrix')) + 1);
}
