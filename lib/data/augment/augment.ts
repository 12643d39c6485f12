/**
 * `gptune data augment`: new training examples made from the existing ones. Only the text a model
 * reads changes, never what it must answer:
 *
 *   classification     "text" (the label never changes)
 *   prompt_completion  "prompt" (the completion never changes)
 *   chat               the content of every user message (system and assistant messages never change)
 *
 * Plain text has no examples to augment and is refused, as is a line with nothing to change (an
 * empty prompt, a chat without user text): a DataError naming the file and line.
 *
 * The output holds every input example as it was (every key of its JSON line; a CSV row as
 * {"text", "label"}), each followed by its copies. A copy is the source's object with the augmented
 * field(s) replaced and one key added, `_augmented_from: {"line": SOURCE_LINE, "method": METHOD}`
 * (data readers ignore keys they do not know, so the output trains as it is). A copy identical to
 * its source (no synonym found, every rate missed) is not written, and counted as unchanged; nor is one
 * whose augmented text came out empty (counted as empty).
 *
 * Seeds: copy k of the example on line L by method M draws from its own Rng, seeded by (seed, L, M,
 * k), so an example's copies do not depend on the other examples or on the other methods asked for.
 */
import * as fs from 'fs';
import { Rng } from '../../util/rng';
import { DataError, forEachLine } from '../read';
import { DataKind, DataRecord, loadRecords, LoadOptions, sortedLabels } from '../records';
import { applyEda, EDA_OPERATIONS, EdaOperation, EdaRates } from './eda';
import { addNoise, deleteCharacters, keyboardTypos, NoiseRates, swapCharacters } from './noise';
import { sharedWordNet, WordNet } from './wordnet';
import { dropWords } from './words';

export const AUGMENT_METHODS = [
  'char-swap', 'char-delete', 'typo', 'word-dropout', 'noise', 'synonym', 'insert', 'swap', 'delete', 'eda', 'backtranslate',
] as const;
export type AugmentMethod = typeof AUGMENT_METHODS[number];

export type AugmentRates = NoiseRates & EdaRates;

/** Defaults: EDA's alpha 0.1 (the paper's recommendation for any data size); a typo in about one word in ten. */
export const DEFAULT_RATES: Readonly<AugmentRates> = {
  charSwap: 0.02, charDelete: 0.02, typo: 0.02, wordDropout: 0.1, alphaSr: 0.1, alphaRi: 0.1, alphaRs: 0.1, pRd: 0.1,
};

/**
 * Rewrites a text by another route (back-translation: lib/eval/backtranslate.ts). `seed` is the copy's
 * own, for sampled decoding; greedy decoding ignores it.
 */
export type Paraphraser = (text: string, seed: number) => string;

export interface AugmentOptions {
  /** Each method makes perExample copies of every example (or, with balance, the one method makes the balancing copies). */
  methods: readonly AugmentMethod[];
  perExample?: number;
  seed?: number;
  rates?: Partial<AugmentRates>;
  /** Copies of the minority classes' examples until every class has the majority's count (classification data only). */
  balance?: boolean;
  /** Needed by the backtranslate method. */
  paraphrase?: Paraphraser;
  wordnet?: WordNet;
  /** Called after each source example with those done and their total (a progress line). */
  onProgress?: (done: number, total: number) => void;
}

export interface MethodCounts {
  /** Copies written. */
  made: number;
  /** Copies identical to their source, not written. */
  unchanged: number;
  /** Copies whose augmented text came out empty (every character deleted, an empty translation), not written: they are not valid data. */
  empty: number;
}

export interface AugmentReport {
  file: string;
  kind: DataKind;
  /** Examples read, copies written, and the lines of the output (their sum). */
  examples: number;
  copies: number;
  written: number;
  methods: Partial<Record<AugmentMethod, MethodCounts>>;
  /** Classification data: examples per label before and after. */
  labels?: { before: Record<string, number>; after: Record<string, number> };
  /** With balance: labels that stayed short of the majority's count (too few copies came out different), and by how many. */
  shortOfBalance?: Record<string, number>;
}

export interface AugmentResult {
  /** The output's lines as objects, in order: each source example followed by its copies. */
  objects: Record<string, unknown>[];
  report: AugmentReport;
}

/** With balance, a label gives up after this many copies per missing example came out unchanged. */
const BALANCE_TRIES_PER_COPY = 10;

/** A 32-bit seed for copy k of the example on line `line` by method `method`. */
function copySeed(seed: number, line: number, method: AugmentMethod, copy: number): number {
  let h = (Math.floor(seed) >>> 0) ^ 0x85ebca6b;
  for (const v of [line, AUGMENT_METHODS.indexOf(method), copy]) {
    h = Math.imul(h ^ v, 0x9e3779b1) >>> 0;
    h ^= h >>> 15;
  }
  return h;
}

function checkRate(name: keyof AugmentRates, value: number): void {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw new RangeError(`augment: expected ${name} to be a number in [0, 1] but received ${String(value)}`);
}

/**
 * The text-rewriting function of copy k of one example by one method: `rng` and `seed` are the copy's,
 * `exampleSeed` the example's (the same for all its copies).
 */
function methodTransform(method: AugmentMethod, rates: AugmentRates, rng: Rng, copy: number, options: AugmentOptions, wordnet: WordNet, seed: number, exampleSeed: number): (text: string) => string {
  switch (method) {
    case 'char-swap': return (t) => swapCharacters(t, rates.charSwap, rng);
    case 'char-delete': return (t) => deleteCharacters(t, rates.charDelete, rng);
    case 'typo': return (t) => keyboardTypos(t, rates.typo, rng);
    case 'word-dropout': return (t) => dropWords(t, rates.wordDropout, rng);
    case 'noise': return (t) => addNoise(t, rates, rng);
    case 'synonym': case 'insert': case 'swap': case 'delete':
      return (t) => applyEda(method, t, rates, rng, wordnet);
    case 'eda': {
      // As the paper's code makes num_aug sentences a quarter by each operation: copy k uses operation
      // (start + k) mod 4, the start drawn per example.
      const operation: EdaOperation = EDA_OPERATIONS[(new Rng(exampleSeed).int(4) + copy) % 4];
      return (t) => applyEda(operation, t, rates, rng, wordnet);
    }
    case 'backtranslate': {
      const paraphrase = options.paraphrase;
      if (!paraphrase) throw new Error('augment: the backtranslate method needs a paraphrase function (the two translation models)');
      return (t) => paraphrase(t, seed);
    }
  }
}

function where(record: DataRecord): string {
  return `${record.file}:${record.line}`;
}

/** Throws a DataError when the record has no text the augmentation may change. */
function checkAugmentable(record: DataRecord): void {
  if (record.kind === 'text') throw new DataError(record.file, record.line, 'plain text has no examples with a text field to augment; augment classification ({"text","label"}), prompt/completion or chat data');
  // NER tags are aligned with the tokens one to one: a changed token sequence would need new tags, which no method here makes.
  if (record.kind === 'ner') throw new DataError(record.file, record.line, 'ner data has no free text to augment (each tag belongs to one token); augment classification, prompt/completion, chat, qa (the question), translation (the source) or summarization (the document) data');
  if (record.kind === 'prompt_completion' && record.prompt.trim() === '') {
    throw new DataError(record.file, record.line, 'field "prompt" is empty: nothing to augment (augmentation changes the prompt, never the completion)');
  }
  if (record.kind === 'chat' && !record.messages.some((m) => m.role === 'user' && m.content.trim() !== '')) {
    throw new DataError(record.file, record.line, 'no user message with text: nothing to augment (augmentation changes user messages, never system or assistant ones)');
  }
}

/** A copy of `source` (the example's JSON object) with its augmented field(s) rewritten by `rewrite`. */
function rewriteObject(record: DataRecord, source: Record<string, unknown>, rewrite: (text: string) => string): Record<string, unknown> {
  switch (record.kind) {
    case 'classification': return { ...source, text: rewrite(record.text) };
    case 'prompt_completion': return { ...source, prompt: rewrite(record.prompt) };
    case 'chat': {
      const messages = source.messages as Record<string, unknown>[];
      return { ...source, messages: messages.map((m, i) => (record.messages[i].role === 'user' ? { ...m, content: rewrite(record.messages[i].content) } : m)) };
    }
    // Tasks: the input a model reads, never the answer (a QA context is left alone: its answers must stay in it).
    case 'qa': return { ...source, question: rewrite(record.question) };
    case 'translation': return { ...source, source: rewrite(record.source) };
    case 'summarization': return { ...source, document: rewrite(record.document) };
    case 'text':
    case 'ner': throw new Error(`${where(record)}: ${record.kind} records cannot be augmented`);
  }
}

/** The values of the augmented field(s) in an example's object (one per user message for chat). */
function augmentedTexts(record: DataRecord, object: Record<string, unknown>): string[] {
  switch (record.kind) {
    case 'classification': return [object.text as string];
    case 'prompt_completion': return [object.prompt as string];
    case 'qa': return [object.question as string];
    case 'translation': return [object.source as string];
    case 'summarization': return [object.document as string];
    default: return (object.messages as { content: string }[]).filter((_, i) => record.kind === 'chat' && record.messages[i].role === 'user').map((m) => m.content);
  }
}

/**
 * The JSON object of every record: its JSONL line parsed (all keys kept), or {"text", "label"} for a CSV row.
 * Records were validated by loadRecords, so every line named parses.
 */
function sourceObjects(file: string, records: readonly DataRecord[]): Record<string, unknown>[] {
  if (records.length === 0 || records[0].kind === 'text') return records.map(() => ({}));
  if (records[0].kind === 'classification' && file.toLowerCase().endsWith('.csv')) {
    return records.map((r) => (r.kind === 'classification' ? { text: r.text, label: r.label } : {}));
  }
  const byLine = new Map<number, Record<string, unknown>>();
  const wanted = new Set(records.map((r) => r.line));
  forEachLine(file, (line, n) => {
    if (wanted.has(n)) byLine.set(n, JSON.parse(line) as Record<string, unknown>);
  });
  return records.map((r) => byLine.get(r.line)!);
}

function labelCounts(records: readonly DataRecord[], labels: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(labels.map((l) => [l, 0]));
  for (const r of records) if (r.kind === 'classification') counts[r.label]++;
  return counts;
}

function fullRates(partial: Partial<AugmentRates> = {}): AugmentRates {
  const rates = { ...DEFAULT_RATES, ...partial };
  for (const key of Object.keys(rates) as (keyof AugmentRates)[]) checkRate(key, rates[key]);
  return rates;
}

/** Reads `file` (validated as loadRecords does; no line is skipped) and makes the copies the options ask for. */
export function augmentFile(file: string, options: AugmentOptions, load: Pick<LoadOptions, 'format'> = {}): AugmentResult {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  const loaded = loadRecords(file, { format: load.format });
  return augmentRecords(file, loaded.kind, loaded.records, sourceObjects(file, loaded.records), options);
}

/** The copies of `records` (with `objects[i]` the JSON object of records[i]); see the file comment. */
export function augmentRecords(file: string, kind: DataKind, records: readonly DataRecord[], objects: readonly Record<string, unknown>[], options: AugmentOptions): AugmentResult {
  const methods: readonly AugmentMethod[] = options.methods;
  if (!Array.isArray(options.methods) || methods.length === 0) throw new RangeError(`augment: expected at least one method (${AUGMENT_METHODS.join(', ')})`);
  for (const m of methods) if (!(AUGMENT_METHODS as readonly string[]).includes(m)) throw new RangeError(`augment: unknown method '${m}' (expected one of ${AUGMENT_METHODS.join(', ')})`);
  const perExample = options.perExample ?? 1;
  if (!Number.isSafeInteger(perExample) || perExample < 1) throw new RangeError(`augment: expected perExample to be a whole number >= 1 but received ${String(perExample)}`);
  const seed = options.seed ?? 0;
  const rates = fullRates(options.rates);
  const wordnet = options.wordnet ?? sharedWordNet();
  if (kind === 'text') throw new DataError(file, 1, 'plain text has no examples with a text field to augment; augment classification ({"text","label"}), prompt/completion or chat data');
  records.forEach(checkAugmentable);

  const counts: Partial<Record<AugmentMethod, MethodCounts>> = {};
  for (const m of methods) counts[m] = { made: 0, unchanged: 0, empty: 0 };
  const copies: Record<string, unknown>[][] = records.map(() => []);
  /** Copy k of record i by `method`, or null when it came out identical. */
  const makeCopy = (i: number, method: AugmentMethod, k: number): Record<string, unknown> | null => {
    const copySeedValue = copySeed(seed, records[i].line, method, k);
    const exampleSeed = copySeed(seed, records[i].line, method, -1);
    const rewrite = methodTransform(method, rates, new Rng(copySeedValue), k, options, wordnet, copySeedValue, exampleSeed);
    const copy = rewriteObject(records[i], objects[i], rewrite);
    const texts = augmentedTexts(records[i], copy);
    if (texts.every((t, j) => t === augmentedTexts(records[i], objects[i])[j])) {
      counts[method]!.unchanged++;
      return null;
    }
    if (texts.some((t) => t.trim() === '')) {
      counts[method]!.empty++;
      return null;
    }
    counts[method]!.made++;
    return { ...copy, _augmented_from: { line: records[i].line, method } };
  };

  let shortOfBalance: Record<string, number> | undefined;
  const labels = kind === 'classification' ? sortedLabels(records) : [];
  if (options.balance) {
    if (kind !== 'classification') throw new RangeError(`augment: --balance needs classification data (labels to balance) but ${file} is ${kind}`);
    if (methods.length !== 1) throw new RangeError(`augment: --balance makes its copies with one method but received ${methods.length} (${methods.join(', ')})`);
    shortOfBalance = balanceLabels(records, labels, methods[0], seed, (i, k) => makeCopy(i, methods[0], k), copies);
  } else {
    records.forEach((_, i) => {
      for (const method of methods) {
        for (let k = 0; k < perExample; k++) {
          const copy = makeCopy(i, method, k);
          if (copy) copies[i].push(copy);
        }
      }
      options.onProgress?.(i + 1, records.length);
    });
  }

  const output: Record<string, unknown>[] = [];
  records.forEach((_, i) => output.push(objects[i], ...copies[i]));
  const copyCount = output.length - records.length;
  const report: AugmentReport = { file, kind, examples: records.length, copies: copyCount, written: output.length, methods: counts };
  if (kind === 'classification') {
    const after = labelCounts(records, labels);
    records.forEach((r, i) => { if (r.kind === 'classification') after[r.label] += copies[i].length; });
    report.labels = { before: labelCounts(records, labels), after };
  }
  if (shortOfBalance && Object.keys(shortOfBalance).length > 0) report.shortOfBalance = shortOfBalance;
  return { objects: output, report };
}

/**
 * The text analogue of SMOTE's oversampling: for each label with fewer examples than the largest,
 * copies of its examples (taken round-robin in a seeded order, so each is used as evenly as
 * possible; the k-th round makes each source's copy k) until it has as many. Returns the labels left short.
 */
function balanceLabels(
  records: readonly DataRecord[], labels: readonly string[], method: AugmentMethod, seed: number,
  makeCopy: (i: number, k: number) => Record<string, unknown> | null, copies: Record<string, unknown>[][],
): Record<string, number> {
  const byLabel = new Map<string, number[]>(labels.map((l) => [l, []]));
  records.forEach((r, i) => { if (r.kind === 'classification') byLabel.get(r.label)!.push(i); });
  const majority = Math.max(...[...byLabel.values()].map((indices) => indices.length));
  const short: Record<string, number> = {};
  labels.forEach((label, labelIndex) => {
    const sources = new Rng(copySeed(seed, labelIndex, method, -2)).shuffle(byLabel.get(label)!.slice());
    const needed = majority - sources.length;
    let made = 0;
    for (let attempt = 0; made < needed && attempt < needed * BALANCE_TRIES_PER_COPY; attempt++) {
      const i = sources[attempt % sources.length];
      const copy = makeCopy(i, Math.floor(attempt / sources.length));
      if (copy) {
        copies[i].push(copy);
        made++;
      }
    }
    if (made < needed) short[label] = needed - made;
  });
  return short;
}
