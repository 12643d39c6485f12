/**
 * Examples as tokens, their loss masks, truncation, and how they are laid out in (B,T) rows.
 *
 * An example's tokens are BOS when the tokenizer starts sequences with one, its segments encoded one
 * by one (see templates.ts), then EOS; chat records through the model's own chat template are the
 * whole rendering encoded at once instead (see chat.ts). Each token
 * carries a `trained` flag: completion tokens and the EOS are trained, prompt tokens are not (all
 * are with trainOnPrompt). Targets are shifted: at position i the target is token i+1 if that
 * token is trained, else IGNORE_INDEX (-100). The last token of an example predicts nothing: the
 * next token in the row belongs to another example.
 *
 * Packing puts whole examples one after another into rows of T tokens (greedy, in order: an example
 * that does not fit starts a new row); each example gets its own segment id (attention never
 * crosses segments) and positions restarting at 0, so each one is computed exactly as if it were
 * alone. The rest of a row is padding: EOS tokens in a segment of their own, targets -100. Without
 * packing every example has a row of its own, padded the same way (padding comes after the
 * example, which causal attention never lets the example see, so no segments are needed).
 */
// IGNORE_INDEX comes from lib/metrics, which loads without the native addon, as the data pipeline (and
// `gptune data inspect`) must.
import { IGNORE_INDEX } from '../metrics/lm';
import type { Tokenizer } from '../tokenizer';
import { ChatTemplate, ChatTemplateError } from '../tokenizer/chat_template';
import { tokenizeChat } from './chat';
import { DataError } from './read';
import { isTaskKind, type DataRecord, type TaskRecord } from './records';
import type { Batch } from './types';
import { CompiledTemplate, renderSegments, taskMessages, type Segment } from './templates';


export interface TokenizedExample {
  tokens: Int32Array;
  /** 1 where the token is trained on (predicting it from the tokens before is in the loss). */
  trained: Uint8Array;
}

/**
 * Encodes segments one by one and appends EOS (trained). Tokenizers that start every sequence with
 * BOS (Llama's, Mistral's: addBosToken) get it first, untrained.
 */
export function tokenizeSegments(segments: readonly Segment[], tokenizer: Tokenizer, trainOnPrompt: boolean): TokenizedExample {
  const tokens: number[] = [];
  const trained: number[] = [];
  if (tokenizer.addBosToken && tokenizer.bosTokenId !== null) {
    tokens.push(tokenizer.bosTokenId);
    trained.push(trainOnPrompt ? 1 : 0);
  }
  for (const s of segments) {
    const ids = tokenizer.encode(s.text);
    for (const id of ids) {
      tokens.push(id);
      trained.push(trainOnPrompt || s.trained ? 1 : 0);
    }
  }
  tokens.push(tokenizer.eosTokenId);
  trained.push(1);
  return { tokens: Int32Array.from(tokens), trained: Uint8Array.from(trained) };
}

/**
 * One record as tokens: chat records, and task records as a request and an answer (taskMessages), through
 * the model's chat template when there is one (lib/data/chat.ts; the template writes BOS and end-of-turn
 * tokens itself), everything else through `template`.
 */
export function tokenizeRecord(record: DataRecord, template: CompiledTemplate, tokenizer: Tokenizer, trainOnPrompt: boolean, chatTemplate: ChatTemplate | null): TokenizedExample {
  const messages = chatTemplate === null ? null : record.kind === 'chat' ? record.messages : isTaskKind(record.kind) ? taskMessages(record as TaskRecord, template) : null;
  if (messages === null || chatTemplate === null) return tokenizeSegments(renderSegments(record, template), tokenizer, trainOnPrompt);
  try {
    return tokenizeChat(messages, tokenizer, chatTemplate, trainOnPrompt);
  } catch (err) {
    if (err instanceof ChatTemplateError) throw new DataError(record.file, record.line, err.message);
    throw err;
  }
}

/** Targets a token's example gives: count of i in [0, n-1) with trained[i+1]. */
export function scoredTargets(trained: Uint8Array): number {
  let n = 0;
  for (let i = 1; i < trained.length; i++) n += trained[i];
  return n;
}

/**
 * Cuts an example to at most maxTokens. When the example has an untrained prompt, tokens are first
 * removed from the start of the prompt, so the completion and EOS (what the loss is on) survive;
 * only a completion longer than maxTokens loses its end. With everything trained (plain text,
 * trainOnPrompt) the first maxTokens tokens are kept.
 */
export function truncateExample(ex: TokenizedExample, maxTokens: number): { example: TokenizedExample; removed: number } {
  const n = ex.tokens.length;
  if (n <= maxTokens) return { example: ex, removed: 0 };
  const firstTrained = ex.trained.indexOf(1);
  // Keep one prompt token when there is one: the first trained token needs a token to predict it from.
  const removableHead = ex.trained[0] === 1 ? 0 : Math.max(0, firstTrained - 1);
  const head = Math.min(n - maxTokens, removableHead);
  const end = head + maxTokens;
  return { example: { tokens: ex.tokens.slice(head, end), trained: ex.trained.slice(head, end) }, removed: n - maxTokens };
}

/** Many examples in two flat arrays (no per-example objects for 1M-example datasets). */
export class ExampleStore {
  private tokens: Int32Array = new Int32Array(1024);
  private trained: Uint8Array = new Uint8Array(1024);
  private offsets: number[] = [0];

  get count(): number {
    return this.offsets.length - 1;
  }

  get totalTokens(): number {
    return this.offsets[this.offsets.length - 1];
  }

  add(ex: TokenizedExample): number {
    const start = this.totalTokens, end = start + ex.tokens.length;
    if (end > this.tokens.length) {
      let capacity = this.tokens.length;
      while (capacity < end) capacity *= 2;
      const tokens = new Int32Array(capacity), trained = new Uint8Array(capacity);
      tokens.set(this.tokens.subarray(0, start));
      trained.set(this.trained.subarray(0, start));
      this.tokens = tokens;
      this.trained = trained;
    }
    this.tokens.set(ex.tokens, start);
    this.trained.set(ex.trained, start);
    this.offsets.push(end);
    return this.count - 1;
  }

  length(i: number): number {
    return this.offsets[i + 1] - this.offsets[i];
  }

  get(i: number): TokenizedExample {
    const start = this.offsets[i], end = this.offsets[i + 1];
    return { tokens: this.tokens.subarray(start, end), trained: this.trained.subarray(start, end) };
  }
}

/** Rows of example indices: one per example, or greedily packed into T tokens. */
export function layoutRows(store: ExampleStore, order: readonly number[], T: number, packing: boolean): number[][] {
  if (!packing) return order.map((i) => [i]);
  const rows: number[][] = [];
  let row: number[] = [];
  let used = 0;
  for (const i of order) {
    const n = store.length(i);
    if (n > T) throw new RangeError(`layoutRows: example ${i} has ${n} tokens, more than T = ${T}; truncate first`);
    if (used + n > T) {
      rows.push(row);
      row = [];
      used = 0;
    }
    row.push(i);
    used += n;
  }
  if (row.length > 0) rows.push(row);
  return rows;
}

/**
 * A (B,T) batch of rows. With `segments`, positions restart at 0 and segment ids change at every
 * example (and for the padding after the last one); without, both are null (one example per row).
 */
export function buildRowBatch(store: ExampleStore, rows: readonly (readonly number[])[], T: number, padId: number, segments: boolean): Batch {
  const B = rows.length;
  const inputs = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  const positions = segments ? new Int32Array(B * T) : null;
  const segmentIds = segments ? new Int32Array(B * T) : null;
  let scoredTokens = 0;
  rows.forEach((row, b) => {
    let offset = b * T;
    const rowEnd = offset + T;
    row.forEach((exampleIndex, segment) => {
      const { tokens, trained } = store.get(exampleIndex);
      const n = tokens.length;
      if (offset + n > rowEnd) throw new RangeError(`buildRowBatch: row ${b} holds more than T = ${T} tokens`);
      inputs.set(tokens, offset);
      for (let i = 0; i + 1 < n; i++) {
        if (trained[i + 1]) {
          targets[offset + i] = tokens[i + 1];
          scoredTokens++;
        }
      }
      if (positions && segmentIds) {
        for (let i = 0; i < n; i++) {
          positions[offset + i] = i;
          segmentIds[offset + i] = segment;
        }
      }
      offset += n;
    });
    if (positions && segmentIds) {
      for (let i = 0; offset + i < rowEnd; i++) {
        positions[offset + i] = i;
        segmentIds[offset + i] = row.length;
      }
    }
  });
  return { B, T, inputs, targets, positions, segmentIds, scoredTokens };
}
