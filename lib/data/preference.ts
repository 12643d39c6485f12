/**
 * Preference pairs for DPO and ORPO (lib/train/preference.ts): a prompt, the answer preferred
 * ("chosen") and the one not preferred ("rejected"). Two JSONL formats, one pair per line, detected
 * from the keys of the first line:
 *
 *   OpenAI   {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": ...}],
 *             "non_preferred_output": [{"role": "assistant", "content": ...}]}
 *   TRL      {"prompt": string, "chosen": string, "rejected": string}, or with message lists:
 *            {"prompt": [messages], "chosen": [one assistant message], "rejected": [one assistant message]},
 *            or without "prompt": {"chosen": [conversation], "rejected": [conversation]}, two conversations
 *            that are the same up to their last (assistant) message, which is the answer.
 *
 * Message prompts are rendered with the model's chat template (lib/data/chat.ts), or gptune's default
 * chat rendering when the model has none; string prompts as prompt_completion examples
 * ("{prompt}{completion}" unless a template is given). Each side of a pair is one example: the
 * prompt's tokens untrained, the answer's tokens and EOS trained (the loss mask is on the answer
 * only). A batch of P pairs is 2P rows of T tokens: the P chosen sequences, then the P rejected
 * ones (as TRL concatenates them), so both answers of a pair run in one forward and one backward.
 */
import * as fs from 'fs';
import type { Tokenizer } from '../tokenizer';
import { chatTemplateOf } from '../tokenizer/chat_template';
import { DataReport, emptySplit, heldOutMask, SplitReport } from './dataset';
import { buildRowBatch, ExampleStore, scoredTargets, tokenizeRecord, truncateExample } from './examples';
import { DataError, forEachLine } from './read';
import { ChatMessage, describe, isPlainObject, isPreferenceObject, parseMessages, parseObjectLine, SkippedLine } from './records';
import { ItemSampler } from './sources';
import { compileTemplate, CompiledTemplate, MODEL_CHAT_TEMPLATE } from './templates';
import type { Batch, BatchSource, DataState } from './types';

export interface PreferencePair {
  /** The prompt: text (string form) or the conversation before the answer (message form). */
  prompt: string | ChatMessage[];
  /** The preferred answer's text (not empty). */
  chosen: string;
  /** The answer not preferred (may be empty: "say anything rather than nothing"). */
  rejected: string;
  file: string;
  line: number;
}

/** Whether the first JSON object line of `file` is a preference pair (see isPreferenceObject). */
export function isPreferenceFile(file: string): boolean {
  let found: boolean | null = null;
  const stop = new Error('stop');
  try {
    forEachLine(file, (line) => {
      if (line.trim() === '') return;
      try {
        const parsed: unknown = JSON.parse(line);
        if (!isPlainObject(parsed)) return;
        found = isPreferenceObject(parsed);
      } catch {
        return;
      }
      throw stop;
    }, 1 << 16);
  } catch (e) {
    if (e !== stop) throw e;
  }
  return found === true;
}

/** One JSONL line -> a pair, or a DataError naming the line and the problem. */
export function parsePreferenceLine(line: string, file: string, lineNumber: number): PreferencePair {
  const { obj, fail } = parseObjectLine(line, file, lineNumber);
  const origin = { file, line: lineNumber };
  if ('preferred_output' in obj || 'non_preferred_output' in obj || 'input' in obj) {
    // OpenAI's preference format.
    if (!isPlainObject(obj.input)) return fail(obj.input === undefined ? 'missing field "input"' : `field "input" must be an object with "messages" but is ${describe(obj.input)}`);
    const prompt = parseMessages(obj.input.messages, 'input.messages', fail);
    const chosen = singleAnswer(obj.preferred_output, 'preferred_output', fail);
    const rejected = singleAnswer(obj.non_preferred_output, 'non_preferred_output', fail);
    if (chosen.trim() === '') fail('preferred_output[0].content is empty: the preferred answer must have something to train on');
    return { prompt, chosen, rejected, ...origin };
  }
  // TRL's {"prompt"?, "chosen", "rejected"}.
  for (const key of ['chosen', 'rejected'] as const) if (obj[key] === undefined) fail(`missing field "${key}"`);
  let pair: PreferencePair;
  if (typeof obj.chosen === 'string' || typeof obj.rejected === 'string') {
    for (const key of ['chosen', 'rejected'] as const) {
      if (typeof obj[key] !== 'string') fail(`field "${key}" must be a string like the other answer but is ${describe(obj[key])}`);
    }
    if (obj.prompt === undefined) fail('missing field "prompt" (string answers need a string prompt)');
    if (typeof obj.prompt !== 'string') fail(`field "prompt" must be a string with string answers but is ${describe(obj.prompt)}`);
    pair = { prompt: obj.prompt as string, chosen: obj.chosen as string, rejected: obj.rejected as string, ...origin };
  } else if (obj.prompt !== undefined) {
    if (typeof obj.prompt === 'string') fail('field "prompt" is a string but the answers are message lists; give the prompt as messages too');
    const prompt = parseMessages(obj.prompt, 'prompt', fail);
    pair = { prompt, chosen: singleAnswer(obj.chosen, 'chosen', fail), rejected: singleAnswer(obj.rejected, 'rejected', fail), ...origin };
  } else {
    // Implicit prompt: two whole conversations that differ only in their last message.
    const chosen = parseMessages(obj.chosen, 'chosen', fail);
    const rejected = parseMessages(obj.rejected, 'rejected', fail);
    for (const [key, list] of [['chosen', chosen], ['rejected', rejected]] as const) {
      const last = list[list.length - 1];
      if (last.role !== 'assistant') fail(`${key}[${list.length - 1}].role must be assistant (the answer ends the conversation) but is ${last.role}`);
      if (list.length < 2) fail(`field "${key}" holds only the answer; without "prompt" it must hold the conversation before it too`);
    }
    if (chosen.length !== rejected.length) fail(`the prompts of chosen and rejected differ: ${chosen.length - 1} message(s) before the chosen answer but ${rejected.length - 1} before the rejected one`);
    for (let i = 0; i + 1 < chosen.length; i++) {
      if (chosen[i].role !== rejected[i].role || chosen[i].content !== rejected[i].content) {
        fail(`the prompts of chosen and rejected differ at message ${i + 1} (chosen[${i}] and rejected[${i}]): a pair answers one prompt`);
      }
    }
    pair = { prompt: chosen.slice(0, -1), chosen: chosen[chosen.length - 1].content, rejected: rejected[rejected.length - 1].content, ...origin };
  }
  if (pair.chosen.trim() === '') fail('the chosen answer is empty: the preferred answer must have something to train on');
  return pair;
}

/** The content of a list holding exactly one assistant message (an answer). */
function singleAnswer(value: unknown, field: string, fail: (problem: string) => never): string {
  if (value === undefined) return fail(`missing field "${field}"`);
  if (!Array.isArray(value)) return fail(`field "${field}" must be a list with one assistant message but is ${describe(value)}`);
  if (value.length === 0) return fail(`field "${field}" is empty; expected exactly one assistant message`);
  if (value.length > 1) return fail(`field "${field}" has ${value.length} messages; expected exactly one assistant message`);
  const [message] = parseMessages(value, field, fail);
  if (message.role !== 'assistant') fail(`${field}[0].role must be assistant but is ${message.role}`);
  return message.content;
}

export interface LoadedPairs {
  pairs: PreferencePair[];
  skipped: SkippedLine[];
  blankLines: number;
}

/** Reads and validates a preference JSONL file; bad lines throw (or are skipped with skipInvalid). */
export function loadPreferencePairs(file: string, opts: { skipInvalid?: boolean } = {}): LoadedPairs {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: is a folder; preference pairs are read from one JSONL file`);
  const result: LoadedPairs = { pairs: [], skipped: [], blankLines: 0 };
  forEachLine(file, (line, lineNumber) => {
    if (line.trim() === '') {
      result.blankLines++;
      return;
    }
    try {
      result.pairs.push(parsePreferenceLine(line, file, lineNumber));
    } catch (e) {
      if (!(e instanceof DataError) || !opts.skipInvalid) throw e;
      result.skipped.push({ file: e.file, line: e.line, error: e.message });
    }
  });
  return result;
}

/** How pairs become tokens: the template of string prompts, and the model's chat template (or null). */
export interface PairRendering {
  tokenizer: Tokenizer;
  /** A prompt_completion template for string prompts ({prompt}{completion} by default). */
  template: CompiledTemplate;
  /** Seq_len T: each side is cut to T tokens from the start of its prompt (truncateExample). */
  seqLen: number;
}

/** What the templates in use are called in reports. */
export function pairTemplateNames(r: PairRendering): string {
  return `${r.template.source} (string prompts); ${chatTemplateOf(r.tokenizer) ? MODEL_CHAT_TEMPLATE : 'the default chat rendering'} (message prompts)`;
}

/** Both sides of a pair as examples (prompt untrained, answer and EOS trained), each cut to T tokens. */
export function tokenizePair(pair: PreferencePair, r: PairRendering): { chosen: ReturnType<typeof truncateExample>; rejected: ReturnType<typeof truncateExample> } {
  const side = (answer: string) => {
    const origin = { file: pair.file, line: pair.line };
    if (typeof pair.prompt === 'string') {
      return tokenizeRecord({ kind: 'prompt_completion', prompt: pair.prompt, completion: answer, ...origin }, r.template, r.tokenizer, false, null);
    }
    // Assistant turns of the prompt are context (weight 0); the answer is the one trained turn.
    const messages: ChatMessage[] = [...pair.prompt.map((m) => (m.role === 'assistant' ? { role: m.role, content: m.content, weight: 0 as const } : { role: m.role, content: m.content })), { role: 'assistant', content: answer }];
    return tokenizeRecord({ kind: 'chat', messages, ...origin }, compileTemplate('chat'), r.tokenizer, false, chatTemplateOf(r.tokenizer));
  };
  return { chosen: truncateExample(side(pair.chosen), r.seqLen), rejected: truncateExample(side(pair.rejected), r.seqLen) };
}

/** Pair i is examples 2i (chosen) and 2i+1 (rejected) of the store. */
export class PairStore {
  readonly examples = new ExampleStore();
  /** Sides cut to T tokens, and the tokens cut off. */
  truncatedSides = 0;
  truncatedTokens = 0;
  trainedTokens = 0;

  get count(): number {
    return this.examples.count / 2;
  }

  add(pair: PreferencePair, r: PairRendering): void {
    const { chosen, rejected } = tokenizePair(pair, r);
    for (const side of [chosen, rejected]) {
      if (side.removed > 0) this.truncatedSides++;
      this.truncatedTokens += side.removed;
      this.examples.add(side.example);
      this.trainedTokens += scoredTargets(side.example.trained);
    }
  }

  /**
   * Pairs `pairs` as a batch of 2P rows of T: row p the chosen side of pairs[p], row P + p its
   * rejected side, padded with padId (targets -100).
   */
  batch(pairs: readonly number[], T: number, padId: number): Batch {
    const rows = [...pairs.map((p) => [2 * p]), ...pairs.map((p) => [2 * p + 1])];
    return { ...buildRowBatch(this.examples, rows, T, padId, false), pairs: [...pairs] };
  }
}

/** Training batches of P pairs (2P rows), in a seeded order reshuffled each epoch; items are pairs. */
export class PairSource implements BatchSource {
  readonly itemsPerEpoch: number;
  readonly batchesPerEpoch: number;
  private readonly sampler: ItemSampler;

  constructor(private readonly store: PairStore, readonly pairsPerBatch: number, readonly T: number, private readonly padId: number, shuffle: boolean, seed: number) {
    this.itemsPerEpoch = store.count;
    if (store.count < 1) throw new RangeError('no training pairs');
    this.batchesPerEpoch = Math.ceil(store.count / pairsPerBatch);
    this.sampler = new ItemSampler(store.count, shuffle, seed);
  }

  next(): Batch {
    return this.store.batch(this.sampler.next(this.pairsPerBatch), this.T, this.padId);
  }

  getState(): DataState { return this.sampler.getState(); }
  setState(state: DataState): void { this.sampler.setState(state); }
}

/** Validation batches of up to P pairs each, in file order. */
export function pairValidationBatches(store: PairStore, pairsPerBatch: number, T: number, padId: number): Batch[] {
  const batches: Batch[] = [];
  for (let first = 0; first < store.count; first += pairsPerBatch) {
    const pairs = Array.from({ length: Math.min(pairsPerBatch, store.count - first) }, (_, i) => first + i);
    batches.push(store.batch(pairs, T, padId));
  }
  return batches;
}

export interface PreferenceBuildOptions {
  /** Training pairs (JSONL). */
  train: string;
  /** A separate validation file of pairs. Not together with validationFraction. */
  validation?: string;
  /** Hold out this fraction (0 < f < 1) of the training pairs for validation. */
  validationFraction?: number;
  tokenizer: Tokenizer;
  seqLen: number;
  /** Pairs per batch (each pair is two rows). */
  pairsPerBatch: number;
  shuffle: boolean;
  seed: number;
  /** A prompt_completion template for string prompts. */
  template?: string;
  skipInvalid?: boolean;
}

export interface PreferenceDatasets {
  train: PairSource;
  trainPairs: PairStore;
  validation: Batch[];
  validationPairs: PairStore | null;
  report: DataReport;
}

/** Training pairs, validation batches and a report of what became of the files. */
export function buildPreferenceDatasets(o: PreferenceBuildOptions): PreferenceDatasets {
  if (o.validation !== undefined && o.validationFraction !== undefined) throw new Error('buildPreferenceDatasets: give a validation file or a validation fraction, not both');
  const rendering: PairRendering = { tokenizer: o.tokenizer, template: compileTemplate('prompt_completion', o.template), seqLen: o.seqLen };
  const report: DataReport = {
    kind: 'preference', train: o.train, validation: o.validation ?? null, validationFraction: o.validationFraction ?? null,
    seqLen: o.seqLen, packing: false, trainOnPrompt: false, template: pairTemplateNames(rendering),
    skipped: [], warnings: [], blankLines: 0, trainSplit: emptySplit(), validationSplit: null, validationOverlap: 0, tokenizeSeconds: 0, tokensPerSecond: 0,
  };
  const load = (file: string) => {
    const loaded = loadPreferencePairs(file, { skipInvalid: o.skipInvalid });
    report.skipped.push(...loaded.skipped);
    report.blankLines += loaded.blankLines;
    return loaded.pairs;
  };
  let trainPairs = load(o.train);
  let validationPairs: PreferencePair[] = [];
  if (o.validation !== undefined) {
    validationPairs = load(o.validation);
    if (validationPairs.length === 0) throw new Error(`${o.validation}: no valid preference pairs`);
  } else if (o.validationFraction !== undefined) {
    const held = heldOutMask(trainPairs.length, o.validationFraction, o.seed, `${o.train}: ${trainPairs.length} pair(s)`);
    validationPairs = trainPairs.filter((_, i) => held[i]);
    trainPairs = trainPairs.filter((_, i) => !held[i]);
  }
  if (trainPairs.length === 0) throw new Error(`${o.train}: no valid preference pairs`);
  const started = process.hrtime.bigint();
  const split = (pairs: readonly PreferencePair[]): { store: PairStore; report: SplitReport } => {
    const store = new PairStore();
    for (const pair of pairs) store.add(pair, rendering);
    const rows = 2 * store.count, tokens = store.examples.totalTokens;
    return {
      store,
      report: {
        examples: store.count, rows, tokens, trainedTokens: store.trainedTokens, truncatedExamples: store.truncatedSides, truncatedTokens: store.truncatedTokens,
        paddingTokens: rows * o.seqLen - tokens, fill: tokens / (rows * o.seqLen),
      },
    };
  };
  const train = split(trainPairs);
  report.trainSplit = train.report;
  let validation: Batch[] = [];
  let validationStore: PairStore | null = null;
  if (validationPairs.length > 0) {
    const v = split(validationPairs);
    validationStore = v.store;
    report.validationSplit = v.report;
    validation = pairValidationBatches(v.store, o.pairsPerBatch, o.seqLen, o.tokenizer.eosTokenId);
    const key = (p: PreferencePair) => JSON.stringify([p.prompt, p.chosen, p.rejected]);
    const validationKeys = new Set(validationPairs.map(key));
    report.validationOverlap = trainPairs.filter((p) => validationKeys.has(key(p))).length;
  }
  report.tokenizeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const tokens = train.report.tokens + (report.validationSplit?.tokens ?? 0);
  report.tokensPerSecond = report.tokenizeSeconds > 0 ? tokens / report.tokenizeSeconds : 0;
  const source = new PairSource(train.store, o.pairsPerBatch, o.seqLen, o.tokenizer.eosTokenId, o.shuffle, o.seed);
  return { train: source, trainPairs: train.store, validation, validationPairs: validationStore, report };
}
