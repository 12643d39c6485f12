/**
 * The measured cost of an export: the language-model loss, perplexity and next-token accuracy of the
 * source model (float32) and of the file as written (loaded back through loadGGUFModel, so the
 * quantized weights are what is evaluated), on the same held-out tokens, with `gptune eval`'s
 * contract (consecutive chunks of at most seqLen tokens, no overlap; lib/train/lm.ts evalLM).
 *
 * The default held-out text ships with the package (data/held-out.txt: an essay written for gptune,
 * so no model was trained on it); the demo corpora are devDependencies and absent where gptune is
 * installed as a dependency.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ExportError } from '../errors';
import type { Decoder } from '../model/decoder';
import type { Tokenizer } from '../tokenizer';
import { evalLM } from '../train/lm';

/** Tokens scored by default: a few thousand, so GPT-2 124M's two passes take seconds. */
export const DEFAULT_EVAL_TOKENS = 2048;
/** The longest chunk scored: long enough for real context, short enough for any model's memory plan. */
export const MAX_EVAL_SEQ_LEN = 512;

/** The held-out text that ships with gptune (from dist/lib/gguf or, under ts-jest, lib/gguf). */
export function builtInHeldOutFile(): string {
  const candidates = [path.resolve(__dirname, '../../data/held-out.txt'), path.resolve(__dirname, '../../../data/held-out.txt')];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new ExportError(`the held-out text that ships with gptune is missing (looked for ${candidates.join(' and ')}); reinstall gptune, or give --eval-data FILE or --no-measure`);
  return found;
}

/** The first `maxTokens` tokens of `text` (at least 2: one to predict from, one to predict). */
export function heldOutTokens(tokenizer: Tokenizer, text: string, maxTokens: number, source: string): Int32Array {
  const ids = tokenizer.encode(text);
  if (ids.length < 2) throw new ExportError(`${source}: has ${ids.length} token(s); measuring an export needs at least 2 (give a longer --eval-data, or --no-measure)`);
  return Int32Array.from(ids.slice(0, maxTokens));
}

/** One model's score on the held-out tokens (JSON names as `gptune eval` writes them). */
export interface MeasuredScore {
  loss: number;
  perplexity: number;
  token_accuracy: number;
  tokens: number;
}

/** Chunk length for `model`: its context, at most MAX_EVAL_SEQ_LEN. */
export function evalSeqLen(contextLength: number): number {
  return Math.min(contextLength, MAX_EVAL_SEQ_LEN);
}

export function scoreModel(model: Decoder, tokens: Int32Array): MeasuredScore {
  const r = evalLM(model, tokens, evalSeqLen(model.contextLength), 1);
  return { loss: r.loss, perplexity: r.perplexity, token_accuracy: r.tokenAccuracy, tokens: r.tokens };
}

/** A row of the cost table: what was evaluated, its size and score. */
export interface CostRow extends MeasuredScore {
  /** "f32 (source)" or the exported dtype. */
  dtype: string;
  /** File bytes (the source: the size of its F32 GGUF file). */
  bytes: number;
}

export interface ExportCost {
  /** The held-out text: the --eval-data file, or the built-in one. */
  eval_data: string;
  seq_len: number;
  source: CostRow;
  exported: CostRow;
  /** Relative changes of the export against the source, in percent. */
  perplexity_change_pct: number;
  token_accuracy_change_pct: number;
  bytes_change_pct: number;
}

export function exportCost(evalData: string, seqLen: number, source: CostRow, exported: CostRow): ExportCost {
  const pct = (after: number, before: number) => (100 * (after - before)) / before;
  return {
    eval_data: evalData, seq_len: seqLen, source, exported,
    perplexity_change_pct: pct(exported.perplexity, source.perplexity),
    token_accuracy_change_pct: pct(exported.token_accuracy, source.token_accuracy),
    bytes_change_pct: pct(exported.bytes, source.bytes),
  };
}

/** The cost as a table: dtype, bytes, perplexity, token accuracy, and the export's change against the source. */
export function formatCost(c: ExportCost): string[] {
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}%`;
  const rows = [
    ['dtype', 'bytes', 'perplexity', 'token accuracy'],
    [c.source.dtype, String(c.source.bytes), c.source.perplexity.toFixed(4), `${(100 * c.source.token_accuracy).toFixed(2)}%`],
    [c.exported.dtype, String(c.exported.bytes), c.exported.perplexity.toFixed(4), `${(100 * c.exported.token_accuracy).toFixed(2)}%`],
    ['change', signed(c.bytes_change_pct), signed(c.perplexity_change_pct), signed(c.token_accuracy_change_pct)],
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return [
    `measured on ${c.source.tokens} predicted tokens of ${c.eval_data} (chunks of ${c.seq_len}):`,
    ...rows.map((r) => r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('  ')),
  ];
}
