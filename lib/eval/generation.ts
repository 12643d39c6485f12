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
import { BatchDecoder } from '../model/batch_decode';
import { beamSearch } from '../model/beam';
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
 * A prompt made to fit the context: one longer than its budget (nPositions - maxNewTokens, but never
 * less than half the context) keeps its last tokens, and a leading BOS (Llama, Mistral) stays first,
 * where the model expects it; an empty prompt becomes <|endoftext|>, GPT-2's document boundary.
 */
export function fitPrompt(tokenizer: Tokenizer, ids: readonly number[], maxNewTokens: number, nPositions: number): { prompt: number[]; truncated: number } {
  let prompt = ids.length === 0 ? [tokenizer.eosTokenId] : Array.from(ids);
  const budget = Math.max(Math.ceil(nPositions / 2), nPositions - maxNewTokens);
  const truncated = Math.max(0, prompt.length - budget);
  if (truncated > 0) {
    const keepsBos = tokenizer.addBosToken && tokenizer.bosTokenId !== null && prompt[0] === tokenizer.bosTokenId;
    prompt = keepsBos ? [prompt[0], ...prompt.slice(truncated + 1)] : prompt.slice(truncated);
  }
  return { prompt, truncated };
}

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
  // Which single tokens contain a line break (most do not, so the full decode below is rare).
  const breaksLine = new Map<number, boolean>();
  const outputs = examples.map((example, i): GeneratedOutput => {
    const { prompt, truncated } = fitPrompt(tokenizer, promptIds(tokenizer, example), maxNewTokens, nPositions);
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

// ---------------------------------------------------------------------------------------------
// Decoding for tasks: batched greedy or beam search, with stop strings

export interface TaskGenerationOptions {
  /** Tokens to generate at most per prompt. */
  maxNewTokens: number;
  /** 1 (default): greedy, batched across prompts; more: beam search per prompt (transformers' semantics). */
  numBeams?: number;
  /** Beam search: scores are divided by length ** lengthPenalty (default 1). */
  lengthPenalty?: number;
  /** Beam search: transformers' early_stopping (default false). */
  earlyStopping?: boolean | 'never';
  /** The output ends where one of these first appears in its text; the stop string is not included. */
  stopStrings?: readonly string[];
  /** Tokens that end an output (not included). Default: the tokenizer's EOS and stop tokens. */
  eosTokenIds?: readonly number[];
  /** Greedy: prompts decoded together, each in its own cache slot (default 8). */
  batchSize?: number;
  /** Called after each prompt finishes, with the prompts done and their total. */
  onProgress?: (done: number, total: number) => void;
}

export type TaskStop = 'eos' | 'stop_string' | 'max_new_tokens' | 'context_full';

export interface TaskGeneration {
  /** The decoded output, cut before the first stop string. */
  text: string;
  /** The generated tokens (without the EOS; up to the token that completed a stop string). */
  tokens: number[];
  stop: TaskStop;
  /** Prompt tokens dropped from the left to leave room for the output. */
  truncated_prompt_tokens: number;
  /** Beam search: the hypothesis' score (sum of log-probabilities / length ** lengthPenalty). */
  score?: number;
}

/** Where the first stop string starts in text, or -1. */
function firstStop(text: string, stopStrings: readonly string[]): number {
  let at = -1;
  for (const s of stopStrings) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

function checkTaskOptions(o: TaskGenerationOptions): void {
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new RangeError(`generateForTask: expected maxNewTokens to be a whole number >= 0 but received ${o.maxNewTokens}`);
  const numBeams = o.numBeams ?? 1;
  if (!Number.isInteger(numBeams) || numBeams < 1) throw new RangeError(`generateForTask: expected numBeams to be a whole number >= 1 but received ${numBeams}`);
  const batchSize = o.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`generateForTask: expected batchSize to be a whole number >= 1 but received ${batchSize}`);
  for (const s of o.stopStrings ?? []) if (typeof s !== 'string' || s === '') throw new TypeError(`generateForTask: expected every stop string to be a non-empty string but received ${JSON.stringify(s)}`);
}

/**
 * Continues every prompt (text, encoded with BOS when the tokenizer adds one, or token ids) for a
 * task: greedy decoding batched across prompts (BatchDecoder: each prompt in its own cache slot,
 * one model step for every live row; a finished row's slot takes the next prompt), or beam search
 * per prompt when numBeams > 1. Each row yields exactly what generate() (greedy) or beamSearch()
 * yields for its prompt alone; stop strings then cut the text, and end a greedy row (or a beam
 * hypothesis) as soon as its text contains one.
 */
export function generateForTask(
  model: Decoder, tokenizer: Tokenizer, prompts: ReadonlyArray<string | readonly number[]>, options: TaskGenerationOptions,
): TaskGeneration[] {
  checkTaskOptions(options);
  const stopStrings = options.stopStrings ?? [];
  const eos = new Set(options.eosTokenIds ?? [tokenizer.eosTokenId, ...tokenizer.stopTokenIds]);
  const fitted = prompts.map((p) => fitPrompt(tokenizer, typeof p === 'string' ? encodeSequence(tokenizer, p) : p, options.maxNewTokens, model.contextLength));
  const finish = (i: number, tokens: number[], stop: TaskStop, score?: number): TaskGeneration => {
    const decoded = tokenizer.decode(tokens);
    const cut = firstStop(decoded, stopStrings);
    return {
      text: cut >= 0 ? decoded.slice(0, cut) : decoded, tokens, stop: cut >= 0 ? 'stop_string' : stop,
      truncated_prompt_tokens: fitted[i].truncated, ...(score === undefined ? {} : { score }),
    };
  };
  const hitsStop = stopStrings.length === 0 ? undefined : (tokens: readonly number[]) => firstStop(tokenizer.decode([...tokens]), stopStrings) >= 0;

  if ((options.numBeams ?? 1) > 1) {
    return fitted.map(({ prompt }, i) => {
      const [best] = beamSearch(model, prompt, {
        numBeams: options.numBeams!, maxNewTokens: options.maxNewTokens, lengthPenalty: options.lengthPenalty, earlyStopping: options.earlyStopping,
        eosTokenIds: [...eos], stop: hitsStop,
      });
      options.onProgress?.(i + 1, fitted.length);
      return finish(i, best.tokens, best.stop === 'stop' ? 'stop_string' : best.stop, best.score);
    });
  }
  return greedyBatched(model, fitted.map((f) => f.prompt), options.maxNewTokens, eos, hitsStop, options.batchSize ?? 8, finish, options.onProgress);
}

/**
 * Greedy decoding of many prompts with one BatchDecoder: `slots` rows at a time; a row ends at an
 * EOS, a stop string, its token budget or the context, and its slot takes the next prompt.
 */
function greedyBatched(
  model: Decoder, prompts: number[][], maxNewTokens: number, eos: ReadonlySet<number>, hitsStop: ((tokens: readonly number[]) => boolean) | undefined,
  batchSize: number, finish: (i: number, tokens: number[], stop: TaskStop) => TaskGeneration, onProgress?: (done: number, total: number) => void,
): TaskGeneration[] {
  const results = new Array<TaskGeneration>(prompts.length);
  if (prompts.length === 0) return results;
  const context = model.contextLength, V = model.config.vocabSize;
  // The last token of a row is never run through the model: a row writes prompt + maxNewTokens - 1 positions.
  const maxT = Math.min(context, Math.max(...prompts.map((p) => p.length + Math.max(maxNewTokens - 1, 0))));
  if (model.adapters.length > 1) throw new RangeError(`generateForTask: the model has ${model.adapters.length} adapters loaded; batched decoding applies one (merge the others first)`);
  const adapter = model.adapters[0] ?? null;
  const decoder = new BatchDecoder(model, Math.min(batchSize, prompts.length), maxT);
  // One live row per slot: which prompt, its tokens so far, and the logits of its next position.
  type Row = { index: number; tokens: number[]; past: number; logits: Float32Array };
  const rows: Array<Row | null> = new Array(decoder.slots).fill(null);
  let nextPrompt = 0, done = 0;
  const argmax = (logits: Float32Array, offset: number) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[offset + v] > logits[offset + best]) best = v;
    return best;
  };
  try {
    for (;;) {
      // Fill free slots with waiting prompts (a prompt with no budget finishes at once).
      for (let slot = 0; slot < rows.length; slot++) {
        while (rows[slot] === null && nextPrompt < prompts.length) {
          const index = nextPrompt++;
          if (maxNewTokens === 0) {
            results[index] = finish(index, [], 'max_new_tokens');
            onProgress?.(++done, prompts.length);
            continue;
          }
          rows[slot] = { index, tokens: [], past: prompts[index].length, logits: decoder.prefill(slot, prompts[index], adapter) };
        }
      }
      const live = rows.flatMap((row, slot) => (row === null ? [] : [{ row, slot }]));
      if (live.length === 0) break;
      // Each live row picks its token; the rows that go on run one step together.
      const stepping: Array<{ row: Row; slot: number; token: number }> = [];
      for (const { row, slot } of live) {
        const token = argmax(row.logits, 0);
        let stop: TaskStop | null = null;
        if (eos.has(token)) stop = 'eos';
        else {
          row.tokens.push(token);
          if (hitsStop?.(row.tokens)) stop = 'stop_string';
          else if (row.tokens.length >= maxNewTokens) stop = 'max_new_tokens';
          // As generate(): a token whose position would be past the context ends the row after it.
          else if (row.past >= context) stop = 'context_full';
        }
        if (stop === null) stepping.push({ row, slot, token });
        else {
          results[row.index] = finish(row.index, row.tokens, stop);
          rows[slot] = null;
          onProgress?.(++done, prompts.length);
        }
      }
      if (stepping.length === 0) continue;
      const logits = decoder.step(
        Int32Array.from(stepping.map((s) => s.slot)), Int32Array.from(stepping.map((s) => s.token)), Int32Array.from(stepping.map((s) => s.row.past)), adapter,
      );
      stepping.forEach((s, i) => {
        s.row.logits = logits.subarray(i * V, (i + 1) * V);
        s.row.past++;
      });
    }
  } finally {
    decoder.free();
  }
  return results;
}
