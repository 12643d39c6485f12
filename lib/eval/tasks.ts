/**
 * The evaluation tasks on data records (lib/data): records are rendered with the same templates
 * as training, so the model is asked exactly what fine-tuning taught it.
 *
 *   lm        language-model loss and perplexity on a token stream (the `gptune eval` contract)
 *   classify  label likelihood after the prompt (classification.ts)
 *   generate  greedy decoding scored with BLEU and ROUGE (generation.ts)
 */
import { chatTemplateFor, compileTemplate, DataRecord, renderRecord, sortedLabels } from '../data';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import { evalLM } from '../train/lm';
import { checkOptions, describeValue } from '../util/check';
import { ClassificationEvalResult, ClassificationExample, ClassificationOptions, classifyExamples } from './classification';
import { DecodeOptions, evaluateGenerationExamples, GenerationEvalResult, GenerationExample, generateOutputs } from './generation';
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
export function generationExamples(records: readonly DataRecord[], template?: string, tokenizer?: Tokenizer): GenerationExample[] {
  const templates = new Map<string, ReturnType<typeof compileTemplate>>();
  const chatTemplate = tokenizer === undefined ? null : chatTemplateFor('chat', template, tokenizer);
  return records.map((record) => {
    if (record.kind === 'text') throw new Error(`${where(record)}: generation needs records with a prompt (prompt_completion, chat or classification data) but this is plain text`);
    if (record.kind === 'chat' && chatTemplate !== null) {
      const last = record.messages.map((m) => m.role).lastIndexOf('assistant');
      return { prompt: chatTemplate.render(record.messages.slice(0, last), true), reference: record.messages[last].content, chat: true };
    }
    let compiled = templates.get(record.kind);
    if (!compiled) templates.set(record.kind, (compiled = compileTemplate(record.kind, template)));
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
