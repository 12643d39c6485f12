/**
 * The evaluation tasks on data records (lib/data): records are rendered with the same templates
 * as training, so the model is asked exactly what fine-tuning taught it.
 *
 *   lm        language-model loss and perplexity on a token stream (the `gptune eval` contract)
 *   classify  label likelihood after the prompt (classification.ts)
 *   generate  greedy decoding scored with BLEU and ROUGE (generation.ts)
 *
 * and the four tasks of issue 16, each decoded (greedy, or beam search) and scored with its field's metric:
 *
 *   qa         SQuAD v1.1 exact match and F1 (max over the gold answers), in percent
 *   ner        the "TYPE: span" output decoded to IOB2 tags (lib/data/ner.ts), seqeval's entity-level
 *              precision/recall/F1 (default and strict IOB2 mode) and token accuracy
 *   translate  corpus BLEU, chrF and chrF++ (sacrebleu's defaults and signatures)
 *   summarize  ROUGE-1/2/L/Lsum (rouge-score; Lsum splits sentences at the summaries' line breaks)
 */
import {
  chatTemplateFor, compileTemplate, DataRecord, decodeEntities, isTaskKind, renderRecord, sortedLabels, taskMessages,
  type TaskKind, type TaskRecord, type TemplateVariables,
} from '../data';
import {
  corpusBleu, corpusChrf, formatSacrebleuSignature, rougeCorpus, seqevalReport, sentenceChrf, squadCorpus, squadExactMatch, squadF1,
} from '../metrics';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import { evalLM } from '../train/lm';
import { checkOptions, describeValue } from '../util/check';
import { ClassificationEvalResult, ClassificationExample, ClassificationOptions, classifyExamples } from './classification';
import {
  DecodeOptions, defaultMaxNewTokens, evaluateGenerationExamples, GenerationEvalResult, GenerationExample, generateForTask, generateOutputs, isMultiLine, promptIds,
  type TaskGenerationOptions, type TaskStop,
} from './generation';
import { bleuReport, rougeReport } from './report';
import { chooseExamples, ReviewEntry } from './review';

/** evalLM's result as `gptune eval --task lm` writes it in JSON (snake_case, as every eval report here). */
export interface LMEvalReport {
  loss: number;
  perplexity: number;
  tokens: number;
  token_accuracy: number;
}

/** Loss, perplexity and token accuracy over consecutive chunks of at most T tokens (README's contract). */
export function evaluateLM(model: Decoder, tokens: Int32Array, seqLen: number, batchSize = 4, onProgress?: (done: number, total: number) => void): LMEvalReport {
  const r = evalLM(model, tokens, seqLen, batchSize, onProgress);
  return { loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, token_accuracy: r.tokenAccuracy };
}

function where(record: DataRecord): string {
  return `${record.file}:${record.line}`;
}

/** The candidate label set: the labels given, or those that occur in the records (sorted as lib/data sorts them). */
export function candidateLabels(records: readonly DataRecord[], labels?: readonly string[] | null): string[] {
  if (labels && labels.length > 0) return labels.slice();
  return sortedLabels(records);
}

/**
 * Classification records -> examples: the prompt as the template renders it, and each candidate
 * label's completion rendered by the same template (" " + label by default).
 */
export function classificationExamples(records: readonly DataRecord[], labels: readonly string[], template?: string): ClassificationExample[] {
  const compiled = compileTemplate('classification', template);
  return records.map((record) => {
    if (record.kind !== 'classification') throw new Error(`${where(record)}: classification evaluation needs classification records ({"text", "label"}) but this one is ${record.kind}`);
    if (!labels.includes(record.label)) throw new Error(`${where(record)}: label ${JSON.stringify(record.label)} is not among the candidate labels ${JSON.stringify(labels)}`);
    return {
      prompt: renderRecord(record, compiled).prompt,
      label: record.label,
      candidates: labels.map((label) => renderRecord({ ...record, label }, compiled).completion),
    };
  });
}

/**
 * Accuracy, macro P/R/F1, per-class figures and the confusion matrix of the label-likelihood
 * classifier. `labels` defaults to the labels seen in the records.
 */
export function evaluateClassification(
  model: Decoder,
  tokenizer: Tokenizer,
  records: readonly DataRecord[],
  labels?: readonly string[] | null,
  template?: string,
  options: ClassificationOptions = {},
): ClassificationEvalResult {
  checkOptions('evaluateClassification', 'options', options);
  const candidates = candidateLabels(records, labels);
  return classifyExamples(model, tokenizer, classificationExamples(records, candidates, template), candidates, options);
}

/**
 * Records with a prompt -> (prompt, reference completion) pairs. Plain text has no prompt to continue.
 * Chat records for a tokenizer with a chat template (and no --template) are rendered by it, as in
 * training: the messages before the last assistant message with the generation prompt, and that message.
 */
export function generationExamples(records: readonly DataRecord[], template?: string, tokenizer?: Tokenizer, variables?: TemplateVariables): GenerationExample[] {
  const templates = new Map<string, ReturnType<typeof compileTemplate>>();
  const chatTemplate = tokenizer === undefined ? null : chatTemplateFor('chat', template, tokenizer);
  return records.map((record) => {
    if (record.kind === 'text') throw new Error(`${where(record)}: generation needs records with a prompt (prompt_completion, chat, classification or task data) but this is plain text`);
    let compiled = templates.get(record.kind);
    if (!compiled) templates.set(record.kind, (compiled = compileTemplate(record.kind, template, isTaskKind(record.kind) ? variables : undefined)));
    const messages = chatTemplate === null ? null : record.kind === 'chat' ? record.messages : isTaskKind(record.kind) ? taskMessages(record as TaskRecord, compiled) : null;
    if (messages !== null && chatTemplate !== null) {
      const last = messages.map((m) => m.role).lastIndexOf('assistant');
      return { prompt: chatTemplate.render(messages.slice(0, last), true), reference: messages[last].content, chat: true };
    }
    const { prompt, completion } = renderRecord(record, compiled);
    return { prompt, reference: completion };
  });
}

export interface GenerationTaskOptions extends DecodeOptions {
  template?: string;
}

/** Greedy decoding of every record's prompt, scored with corpus BLEU and ROUGE-1/2/L against the completions. */
export function evaluateGeneration(model: Decoder, tokenizer: Tokenizer, records: readonly DataRecord[], options: GenerationTaskOptions = {}): GenerationEvalResult {
  checkOptions('evaluateGeneration', 'options', options);
  const { template, ...decode } = options;
  return evaluateGenerationExamples(model, tokenizer, generationExamples(records, template, tokenizer), decode);
}

export interface ReviewOptions extends GenerationTaskOptions {
  /** How many examples (a seeded choice; all of them when there are fewer). */
  n: number;
  /** Chooses the examples and seeds sampling (example i samples with seed + i). */
  seed?: number;
}

/**
 * N examples chosen with the seed: prompt, model output (greedy unless temperature > 0) and the
 * reference. Classification records also get the label that label likelihood picks among the
 * labels seen in all the records.
 */
export function reviewEntries(model: Decoder, tokenizer: Tokenizer, records: readonly DataRecord[], options: ReviewOptions): ReviewEntry[] {
  if (options === null || typeof options !== 'object') throw new TypeError(`reviewEntries: expected options to be an object {n, ...} but received ${describeValue(options)}`);
  const { n, seed = 0, template, ...decode } = options;
  const indices = chooseExamples(records.length, n, seed);
  const chosen = indices.map((i) => records[i]);
  const run = generateOutputs(model, tokenizer, generationExamples(chosen, template, tokenizer), { ...decode, seed });
  let predicted: string[] | null = null;
  if (chosen.length > 0 && chosen.every((r) => r.kind === 'classification')) {
    const labels = candidateLabels(records);
    if (labels.length >= 2) predicted = classifyExamples(model, tokenizer, classificationExamples(chosen, labels, template), labels).predictions.map((p) => p.predicted);
  }
  return run.outputs.map((o, k) => ({
    index: indices[k], line: chosen[k].line, prompt: o.prompt, output: o.output, reference: o.reference, stop: o.stop,
    ...(predicted ? { predicted_label: predicted[k] } : {}),
  }));
}

// ---------------------------------------------------------------------------------------------
// The tasks of issue 16: qa, ner, translate, summarize

export const EVAL_TASKS = ['qa', 'ner', 'translate', 'summarize'] as const;
export type EvalTask = (typeof EVAL_TASKS)[number];

/** The data kind each task reads. */
export const EVAL_TASK_KIND: Record<EvalTask, TaskKind> = { qa: 'qa', ner: 'ner', translate: 'translation', summarize: 'summarization' };

/** One example as scored: its gold answer(s), its own scores, and (ner) the tags its output decodes to. */
export interface TaskExampleScore {
  gold: string | string[];
  score: Record<string, number>;
  predicted_tags?: string[];
}

export interface TaskScores {
  /** The corpus figures of the task (see scoreTask). */
  metrics: Record<string, unknown>;
  perExample: TaskExampleScore[];
}

function recordsOf<K extends TaskKind>(records: readonly DataRecord[], kind: K): Array<Extract<DataRecord, { kind: K }>> {
  return records.map((r) => {
    if (r.kind !== kind) throw new Error(`${where(r)}: this evaluation needs ${kind} records but this one is ${r.kind}`);
    return r as Extract<DataRecord, { kind: K }>;
  });
}

const ROUGE_TYPES = ['rouge1', 'rouge2', 'rougeL', 'rougeLsum'] as const;

/** sacrebleu's BLEU signature for corpusBleu's defaults (13a tokens, exp smoothing, mixed case, no effective order). */
function bleuSignature(nrefs: number): string {
  return formatSacrebleuSignature(nrefs, [['case', 'mixed'], ['eff', 'no'], ['tok', '13a'], ['smooth', 'exp']]);
}

/**
 * The task's metrics of `outputs` (the model's text for each record, surrounding whitespace removed)
 * against the records' gold answers:
 *
 *   qa         exact_match, f1 (SQuAD v1.1 evaluate script, percent), answers_not_in_context
 *   ner        seqeval's report in default mode: precision, recall, f1 (micro over entities), accuracy
 *              (tokens), per_type, micro/macro/weighted_avg, sentences, tokens; strict {precision, recall,
 *              f1, per_type} (mode strict, IOB2); malformed_lines, unmatched_spans
 *   translate  bleu (+ precisions, bp, lengths, signature), chrf and chrf_pp (0..100) with their signatures
 *   summarize  rouge1, rouge2, rougeL, rougeLsum {p, r, f}: per-example means (rouge-score, no stemming)
 */
export function scoreTask(task: EvalTask, records: readonly DataRecord[], rawOutputs: readonly string[]): TaskScores {
  if (records.length !== rawOutputs.length) throw new RangeError(`scoreTask: ${records.length} records but ${rawOutputs.length} outputs`);
  if (records.length === 0) throw new RangeError('scoreTask: no examples to score');
  const outputs = rawOutputs.map((o) => o.trim());
  switch (task) {
    case 'qa': {
      const qa = recordsOf(records, 'qa');
      const golds = qa.map((r) => r.answers);
      const corpus = squadCorpus(outputs, golds);
      return {
        metrics: { ...corpus, answers_not_in_context: qa.filter((r) => r.answers.some((a) => !r.context.includes(a))).length },
        perExample: qa.map((r, i) => ({ gold: r.answers, score: { exact_match: squadExactMatch(outputs[i], r.answers), f1: squadF1(outputs[i], r.answers) } })),
      };
    }
    case 'ner': {
      const ner = recordsOf(records, 'ner');
      const decoded = ner.map((r, i) => decodeEntities(outputs[i], r.tokens));
      const gold = ner.map((r) => r.tags);
      const predicted = decoded.map((d) => d.tags);
      const loose = seqevalReport(gold, predicted, { mode: 'default' });
      const strict = seqevalReport(gold, predicted, { mode: 'strict', scheme: 'IOB2' });
      return {
        metrics: {
          ...loose,
          strict: { precision: strict.precision, recall: strict.recall, f1: strict.f1, per_type: strict.per_type },
          malformed_lines: decoded.reduce((n, d) => n + d.malformed, 0),
          unmatched_spans: decoded.reduce((n, d) => n + d.unmatched, 0),
        },
        perExample: ner.map((r, i) => ({
          gold: renderRecord(r).completion,
          score: { token_accuracy: r.tags.filter((t, k) => t === predicted[i][k]).length / r.tags.length, malformed_lines: decoded[i].malformed, unmatched_spans: decoded[i].unmatched },
          predicted_tags: predicted[i],
        })),
      };
    }
    case 'translate': {
      const refs = recordsOf(records, 'translation').map((r) => r.target.trim());
      const bleu = corpusBleu(outputs, [refs]);
      const chrf = corpusChrf(outputs, [refs]);
      const chrfPP = corpusChrf(outputs, [refs], { wordOrder: 2 });
      return {
        metrics: {
          ...bleuReport(bleu), bleu_signature: bleuSignature(1),
          chrf: chrf.score, chrf_signature: chrf.signature, chrf_pp: chrfPP.score, chrf_pp_signature: chrfPP.signature,
        },
        perExample: refs.map((ref, i) => ({ gold: ref, score: { chrf: sentenceChrf(outputs[i], [ref]).score } })),
      };
    }
    case 'summarize': {
      const refs = recordsOf(records, 'summarization').map((r) => r.summary.trim());
      const rouge = rougeCorpus(refs, outputs, { rougeTypes: ROUGE_TYPES });
      return {
        metrics: { ...rougeReport(rouge) },
        perExample: refs.map((ref, i) => ({ gold: ref, score: Object.fromEntries(ROUGE_TYPES.map((t) => [t, rouge.perPair[i][t].fmeasure])) })),
      };
    }
  }
}

export interface TaskEvalOptions extends Omit<TaskGenerationOptions, 'maxNewTokens' | 'stopStrings' | 'eosTokenIds'> {
  template?: string;
  /** Translation: the language names of the template. */
  templateVariables?: TemplateVariables;
  /** Tokens per output at most (default: the longest reference + max(16, 25%), as `eval --task generate`). */
  maxNewTokens?: number;
}

/** One example as `eval --dump` writes it. */
export interface TaskExampleResult extends TaskExampleScore {
  prompt: string;
  output: string;
  stop: TaskStop;
}

export interface TaskEvalResult {
  task: EvalTask;
  examples: number;
  metrics: Record<string, unknown>;
  num_beams: number;
  length_penalty: number;
  max_new_tokens: number;
  stop_strings: string[];
  stops: Record<TaskStop, number>;
  truncated_examples: number;
  perExample: TaskExampleResult[];
}

/**
 * Where a task's output ends besides the EOS and the token budget: at the first line break when every
 * reference is one line (qa and translate answers, one-line summaries), and for ner at a blank line
 * (the entity list never holds one), so that a model that goes on does not write a made-up next example.
 */
function taskStopStrings(task: EvalTask, references: readonly string[]): string[] {
  if (task === 'ner') return ['\n\n'];
  return references.every((r) => !isMultiLine(r)) ? ['\n'] : [];
}

/**
 * Decodes every record's prompt (rendered as in training: the task's template, or the model's chat
 * template) with generateForTask (greedy batched across prompts, or beam search with numBeams > 1),
 * and scores the outputs with the task's metrics (scoreTask).
 */
export function evaluateTask(model: Decoder, tokenizer: Tokenizer, records: readonly DataRecord[], task: EvalTask, options: TaskEvalOptions = {}): TaskEvalResult {
  checkOptions('evaluateTask', 'options', options);
  const { template, templateVariables, maxNewTokens, ...decode } = options;
  recordsOf(records, EVAL_TASK_KIND[task]);
  const examples = generationExamples(records, template, tokenizer, templateVariables);
  const references = examples.map((e) => e.reference);
  const budget = maxNewTokens ?? defaultMaxNewTokens(tokenizer, references);
  const stopStrings = taskStopStrings(task, references);
  const outputs = generateForTask(model, tokenizer, examples.map((e) => promptIds(tokenizer, e)), { ...decode, maxNewTokens: budget, stopStrings });
  const scores = scoreTask(task, records, outputs.map((o) => o.text));
  const stops: Record<TaskStop, number> = { eos: 0, stop_string: 0, max_new_tokens: 0, context_full: 0 };
  for (const o of outputs) stops[o.stop]++;
  return {
    task, examples: records.length, metrics: scores.metrics, num_beams: decode.numBeams ?? 1, length_penalty: decode.lengthPenalty ?? 1,
    max_new_tokens: budget, stop_strings: stopStrings, stops, truncated_examples: outputs.filter((o) => o.truncated_prompt_tokens > 0).length,
    perExample: outputs.map((o, i) => ({ prompt: examples[i].prompt, output: o.text, stop: o.stop, ...scores.perExample[i] })),
  };
}
