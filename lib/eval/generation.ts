/**
 * Generation tasks: each example's prompt is continued with the KV-cache decoder (greedy unless
 * sampling options say otherwise) and the outputs are scored against the reference completions
 * with corpus BLEU (sacrebleu's defaults) and ROUGE-1/2/L (rouge-score's defaults).
 *
 * When to stop: at <|endoftext|> (fine-tuning ends every example with it), after maxNewTokens, and,
 * when every reference is a single line, at the first line break after the output has begun
 * (a model that learned one-line answers would otherwise ramble on into a made-up next example).
 * Leading whitespace and line breaks before the first visible character do not stop it.
 */
import { corpusBleu, rougeCorpus } from '../metrics';
import { generate } from '../model/generate';
import { Decoder } from '../model/decoder';
import { encodeSequence, Tokenizer } from '../tokenizer';
import { BleuReport, bleuReport, RougeReport, rougeReport } from './report';

export interface GenerationExample {
  prompt: string;
  /** The reference completion. */
  reference: string;
  /** The prompt was rendered by the model's chat template, which writes BOS itself: encode it as it is. */
  chat?: boolean;
}

/** The prompt's ids: BOS first when the tokenizer adds one, unless a chat template wrote the prompt. */
export function promptIds(tokenizer: Tokenizer, example: GenerationExample): number[] {
  return example.chat ? tokenizer.encode(example.prompt) : encodeSequence(tokenizer, example.prompt);
}

export interface DecodeOptions {
  /** Tokens to generate at most (default: the longest reference in tokens + max(16, a quarter of it)). */
  maxNewTokens?: number;
  /** Stop at a line break (default: when every reference is a single line). */
  stopAtNewline?: boolean;
  /** Sampling; the defaults (temperature 0) decode greedily. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Example i samples with seed + i, so each output does not depend on the others. */
  seed?: number;
  /** Called after each example with the examples done and their total (a progress line). */
  onProgress?: (done: number, total: number) => void;
}

export type StopReason = 'eos' | 'newline' | 'max_new_tokens' | 'context_full';

export interface GeneratedOutput {
  prompt: string;
  /** The decoded continuation, cut before the stopping line break if there was one. */
  output: string;
  reference: string;
  stop: StopReason;
  /** Tokens generated (up to and including the line break when stop is 'newline'). */
  tokens: number;
  /** Prompt tokens dropped from the left to leave room for the output. */
  truncated_prompt_tokens: number;
}

export interface GenerationRun {
  outputs: GeneratedOutput[];
  max_new_tokens: number;
  stop_at_newline: boolean;
}

export interface GenerationEvalResult extends BleuReport, RougeReport {
  examples: number;
  max_new_tokens: number;
  stop_at_newline: boolean;
  /** How many outputs ended for each reason. */
  stops: Record<StopReason, number>;
  truncated_examples: number;
  outputs: GeneratedOutput[];
}

/** Whether a text spans more than one line once its surrounding whitespace is removed. */
export function isMultiLine(text: string): boolean {
  return /[\r\n]/.test(text.trim());
}

/** Default output budget: the longest reference plus a margin (the EOS, and room to be wrong). */
export function defaultMaxNewTokens(tokenizer: Tokenizer, references: readonly string[]): number {
  const longest = Math.max(0, ...references.map((r) => tokenizer.encode(r).length));
  return longest + Math.max(16, Math.ceil(longest / 4));
}

/** Index of the first line break after the first non-whitespace character, or -1. */
export function stoppingLineBreak(text: string): number {
  const start = text.search(/\S/);
  if (start < 0) return -1;
  const rest = text.slice(start).search(/[\r\n]/);
  return rest < 0 ? -1 : start + rest;
}

// Thrown from generate()'s onToken callback to end decoding at a line break; generate frees its
// cache in a finally block, so leaving it by an exception is clean.
class LineBreakStop extends Error {}

/**
 * Continues every example's prompt. A prompt longer than the context keeps its last tokens,
 * leaving maxNewTokens positions for the output (but never less than half the context for the
 * prompt); an empty prompt starts from <|endoftext|>, GPT-2's document boundary.
 */
export function generateOutputs(model: Decoder, tokenizer: Tokenizer, examples: readonly GenerationExample[], options: DecodeOptions = {}): GenerationRun {
  const maxNewTokens = options.maxNewTokens ?? defaultMaxNewTokens(tokenizer, examples.map((e) => e.reference));
  const stopAtNewline = options.stopAtNewline ?? examples.every((e) => !isMultiLine(e.reference));
  const temperature = options.temperature ?? 0;
  const nPositions = model.contextLength;
  const promptBudget = Math.max(Math.ceil(nPositions / 2), nPositions - maxNewTokens);
  // Which single tokens contain a line break (most do not, so the full decode below is rare).
  const breaksLine = new Map<number, boolean>();
  const outputs = examples.map((example, i): GeneratedOutput => {
    let prompt = promptIds(tokenizer, example);
    if (prompt.length === 0) prompt = [tokenizer.eosTokenId];
    const truncated = Math.max(0, prompt.length - promptBudget);
    // Truncated from the start, but a leading BOS (Llama, Mistral) stays: the model expects it first.
    if (truncated > 0) {
      const keepsBos = tokenizer.addBosToken && tokenizer.bosTokenId !== null && prompt[0] === tokenizer.bosTokenId;
      prompt = keepsBos ? [prompt[0], ...prompt.slice(truncated + 1)] : prompt.slice(truncated);
    }
    const produced: number[] = [];
    let stop: StopReason;
    try {
      stop = generate(model, prompt, {
        maxNewTokens, temperature, greedy: temperature === 0, topK: options.topK ?? 0, topP: options.topP ?? 1,
        seed: (options.seed ?? 0) + i, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds,
        onToken: (token) => {
          produced.push(token);
          if (!stopAtNewline) return;
          let hasBreak = breaksLine.get(token);
          if (hasBreak === undefined) breaksLine.set(token, (hasBreak = /[\r\n]/.test(tokenizer.decode([token]))));
          if (hasBreak && stoppingLineBreak(tokenizer.decode(produced)) >= 0) throw new LineBreakStop();
        },
      }).stop;
    } catch (e) {
      if (!(e instanceof LineBreakStop)) throw e;
      stop = 'newline';
    }
    let output = tokenizer.decode(produced);
    if (stop === 'newline') output = output.slice(0, stoppingLineBreak(output));
    options.onProgress?.(i + 1, examples.length);
    return { prompt: example.prompt, output, reference: example.reference, stop, tokens: produced.length, truncated_prompt_tokens: truncated };
  });
  return { outputs, max_new_tokens: maxNewTokens, stop_at_newline: stopAtNewline };
}

/** BLEU and ROUGE of outputs against their references (surrounding whitespace removed from both). */
export function scoreGenerations(outputs: readonly GeneratedOutput[]): BleuReport & RougeReport {
  const hypotheses = outputs.map((o) => o.output.trim());
  const references = outputs.map((o) => o.reference.trim());
  return { ...bleuReport(corpusBleu(hypotheses, [references])), ...rougeReport(rougeCorpus(references, hypotheses)) };
}

/** Greedy decoding (unless options sample) of every example, scored with BLEU and ROUGE. */
export function evaluateGenerationExamples(model: Decoder, tokenizer: Tokenizer, examples: readonly GenerationExample[], options: DecodeOptions = {}): GenerationEvalResult {
  if (examples.length === 0) throw new RangeError('generation: no examples to evaluate');
  const run = generateOutputs(model, tokenizer, examples, options);
  const stops: Record<StopReason, number> = { eos: 0, newline: 0, max_new_tokens: 0, context_full: 0 };
  for (const o of run.outputs) stops[o.stop]++;
  return {
    examples: examples.length,
    ...scoreGenerations(run.outputs),
    max_new_tokens: run.max_new_tokens,
    stop_at_newline: run.stop_at_newline,
    stops,
    truncated_examples: run.outputs.filter((o) => o.truncated_prompt_tokens > 0).length,
    outputs: run.outputs,
  };
}
