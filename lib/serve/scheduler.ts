/**
 * Continuous batching over one model: sequences queue, each waiting one takes a free cache slot and
 * its prompt is prefilled (its first token sampled at once), then it joins the decode batch; every
 * step runs the next position of the live rows through the model together (lib/model/batch_decode.ts)
 * and a row that finishes leaves at once and frees its slot for the next in line.
 *
 * Rows with different LoRA adapters do not share a step: the step takes the live rows of one
 * adapter (or of the base), the groups taking turns, so each group advances once per round.
 *
 * Work runs in slices on the event loop (one prefill or one decode step each, then setImmediate), so
 * the HTTP server accepts requests and writes streamed tokens between steps.
 */
import type { LoraAdapter } from '../lora/adapter';
import { BatchDecoder } from '../model/batch_decode';
import type { Decoder } from '../model/decoder';
import { sampleToken } from '../model/generate';
import { Rng } from '../util/rng';

export interface Sampling {
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
}

export interface SequenceSpec {
  prompt: readonly number[];
  adapter: LoraAdapter | null;
  /** Tokens to generate at most (>= 1). */
  maxTokens: number;
  sampling: Sampling;
  seed: number;
  /** Tokens that end the sequence (not emitted). */
  stopTokenIds: ReadonlySet<number>;
  /** null: no log-probabilities; k >= 0: the sampled token's and the k most likely tokens'. */
  logprobs: number | null;
}

export interface TokenLogprob {
  token: number;
  /** Natural log of the token's probability under the unmodified softmax of the logits (NaN when not asked for). */
  logprob: number;
}

export interface GeneratedToken extends TokenLogprob {
  /** The k most likely tokens, most likely first (when logprobs was asked for). */
  top: TokenLogprob[];
}

/** Why a sequence ended: a stop token ('stop'), or maxTokens or the context reached ('length'). */
export type FinishReason = 'stop' | 'length';

export interface SequenceHandlers {
  onToken(token: GeneratedToken): void;
  onFinish(reason: FinishReason): void;
  /** The model failed on this sequence's step (it has ended). */
  onError(error: Error): void;
}

export interface SequenceHandle {
  /** Ends the sequence now (a stop string matched, the client went away); no handler is called again. */
  cancel(): void;
}

class Sequence {
  slot = -1;
  /** Positions in the cache. */
  past = 0;
  /** The last sampled token, fed at the next step. */
  next = -1;
  generated = 0;
  done = false;
  readonly rng: Rng;

  constructor(readonly spec: SequenceSpec, readonly handlers: SequenceHandlers) {
    this.rng = new Rng(spec.seed);
  }
}

export interface SchedulerOptions {
  /** Sequences decoded together at most (cache slots). */
  maxBatch: number;
  /** Positions per sequence (prompt + generated) at most. */
  maxLength: number;
}

export class Scheduler {
  private readonly decoder: BatchDecoder;
  private readonly waiting: Sequence[] = [];
  private readonly live: Sequence[] = [];
  private readonly freeSlots: number[];
  private scheduled = false;
  /** The adapter group that stepped last (groups take turns). */
  private lastGroup = -1;
  private idleWaiters: Array<() => void> = [];
  /** Steps run and rows they carried, for the batch-size statistics. */
  readonly stats = { steps: 0, rows: 0, prefills: 0 };

  constructor(private readonly model: Decoder, readonly options: SchedulerOptions) {
    this.decoder = new BatchDecoder(model, options.maxBatch, options.maxLength);
    this.freeSlots = Array.from({ length: options.maxBatch }, (_, i) => options.maxBatch - 1 - i);
  }

  /** Queues a sequence; its prompt must be 1 to maxLength - 1 tokens. */
  submit(spec: SequenceSpec, handlers: SequenceHandlers): SequenceHandle {
    if (spec.prompt.length < 1 || spec.prompt.length >= this.options.maxLength) {
      throw new RangeError(`Scheduler: a prompt of ${spec.prompt.length} tokens; expected 1 to ${this.options.maxLength - 1}`);
    }
    const seq = new Sequence(spec, handlers);
    this.waiting.push(seq);
    this.schedule();
    return { cancel: () => this.finish(seq, null) };
  }

  /** Sequences queued or being decoded. */
  get pending(): number {
    return this.waiting.length + this.live.length;
  }

  /** Resolves when nothing is queued or decoding (at once when idle). */
  whenIdle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  free(): void {
    this.decoder.free();
  }

  private schedule(): void {
    if (this.scheduled || this.pending === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.work();
      } catch (e) {
        // Nothing may escape to the event loop (it would end the process): fail what is running.
        this.fail([...this.live, ...this.waiting], e as Error);
      }
      this.schedule();
      if (this.pending === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    });
  }

  /** One slice of work: admit a waiting sequence when a slot is free, else one decode step. */
  private work(): void {
    const seq = this.freeSlots.length > 0 ? this.waiting.shift() : undefined;
    if (seq) this.admit(seq);
    else if (this.live.length > 0) this.step();
  }

  private admit(seq: Sequence): void {
    seq.slot = this.freeSlots.pop()!;
    this.live.push(seq);
    this.stats.prefills++;
    let logits: Float32Array;
    try {
      logits = this.decoder.prefill(seq.slot, seq.spec.prompt, seq.spec.adapter);
    } catch (e) {
      this.fail([seq], e as Error);
      return;
    }
    seq.past = seq.spec.prompt.length;
    this.sample(seq, logits);
  }

  private step(): void {
    // The live rows of the next adapter group after the last one that stepped.
    const groups = [...new Set(this.live.map((s) => s.spec.adapter))];
    const group = groups[(this.lastGroup + 1) % groups.length];
    this.lastGroup = groups.indexOf(group);
    const rows = this.live.filter((s) => s.spec.adapter === group);
    this.stats.steps++;
    this.stats.rows += rows.length;
    let logits: Float32Array;
    try {
      logits = this.decoder.step(Int32Array.from(rows, (s) => s.slot), Int32Array.from(rows, (s) => s.next), Int32Array.from(rows, (s) => s.past), group);
    } catch (e) {
      this.fail(rows, e as Error);
      return;
    }
    const V = this.model.config.vocabSize;
    rows.forEach((seq, i) => {
      seq.past++;
      // A row cancelled by an earlier row's handler (its client went away) is already gone.
      if (!seq.done) this.sample(seq, logits.subarray(i * V, (i + 1) * V));
    });
  }

  /** Samples the sequence's next token from its logits and ends it, or emits the token (generate()'s order). */
  private sample(seq: Sequence, logits: Float32Array): void {
    const spec = seq.spec;
    const token = sampleToken(logits, spec.sampling, seq.rng);
    if (spec.stopTokenIds.has(token)) {
      this.finish(seq, 'stop');
      return;
    }
    seq.next = token;
    seq.generated++;
    const generated = spec.logprobs === null ? { token, logprob: NaN, top: [] } : { ...logprobsOf(logits, token, spec.logprobs), token };
    try {
      seq.handlers.onToken(generated);
    } catch (e) {
      this.fail([seq], e as Error);
      return;
    }
    if (seq.done) return; // cancelled by its handler (a stop string)
    if (seq.generated >= spec.maxTokens || seq.past >= this.options.maxLength) this.finish(seq, 'length');
  }

  /** Ends a sequence and frees its slot; reason null (cancelled) calls no handler. */
  private finish(seq: Sequence, reason: FinishReason | null): void {
    if (seq.done) return;
    seq.done = true;
    const waitingAt = this.waiting.indexOf(seq);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    const liveAt = this.live.indexOf(seq);
    if (liveAt >= 0) {
      this.live.splice(liveAt, 1);
      this.freeSlots.push(seq.slot);
    }
    if (!reason) return;
    try {
      seq.handlers.onFinish(reason);
    } catch {
      // The sequence has ended either way; its handler's failure is its request's alone.
    }
  }

  private fail(rows: Sequence[], error: Error): void {
    for (const seq of rows) {
      if (seq.done) continue;
      this.finish(seq, null);
      try {
        seq.handlers.onError(error);
      } catch {
        // A handler that cannot report the error has nothing left to tell.
      }
    }
  }
}

/**
 * The log-probability of `token` under softmax(logits), the distribution before temperature and
 * top-p (as OpenAI and vLLM report it), and the k most likely tokens' (ties: lower id first);
 * accumulated in float64.
 */
export function logprobsOf(logits: Float32Array, token: number, k: number): { logprob: number; top: TokenLogprob[] } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  // The k largest, kept sorted (most likely first) in a small array: k is at most 20.
  const top: number[] = [];
  if (k > 0) {
    for (let i = 0; i < logits.length; i++) {
      if (top.length === k && logits[i] <= logits[top[k - 1]]) continue;
      let at = top.length;
      while (at > 0 && logits[top[at - 1]] < logits[i]) at--;
      top.splice(at, 0, i);
      if (top.length > k) top.pop();
    }
  }
  return { logprob: logits[token] - lse, top: top.map((id) => ({ token: id, logprob: logits[id] - lse })) };
}
