/**
 * Language-model training and evaluation on a token stream: the semantics of `gptune train` and
 * `gptune eval` (README "The CLI contract"); `evaluate` is gptune's one LM evaluation, over any
 * batches (the Trainer's validation batches, evalLM's chunks, the demo's).
 */
import type { Batch } from '../data/types';
import { tokenAccuracy } from '../metrics/lm';
import { Decoder, IGNORE_INDEX } from '../model/decoder';
import { NonFiniteError } from '../errors';
import { checkInstance, checkSeed, describeValue } from '../util/check';
import { Rng } from '../util/rng';
import { AdamW, AdamWOptions, clipScale } from './adamw';
import { learningRate, ScheduleName } from './schedule';

/**
 * Windows of T+1 tokens at stride T: window i is tokens [i*T, i*T + T], inputs its first T tokens
 * and targets its last T. The number of windows is floor((n - 1) / T).
 */
export function windowCount(numTokens: number, T: number): number {
  return numTokens > 1 ? Math.floor((numTokens - 1) / T) : 0;
}

/** Fills inputs/targets (B,T) with the given windows. */
export function fillWindows(tokens: Int32Array, T: number, windows: readonly number[], inputs: Int32Array, targets: Int32Array): void {
  windows.forEach((w, b) => {
    const start = w * T;
    inputs.set(tokens.subarray(start, start + T), b * T);
    targets.set(tokens.subarray(start + 1, start + T + 1), b * T);
  });
}

/** Which windows each step uses: in order (wrapping) without shuffle, else a seeded permutation per epoch. */
export class WindowSampler {
  private order: number[];
  private position = 0;
  private readonly rng: Rng;
  epoch = 0;

  constructor(readonly count: number, readonly shuffle: boolean, seed: number) {
    if (count < 1) throw new RangeError('WindowSampler: no windows');
    this.rng = new Rng(seed);
    this.order = this.newOrder();
  }

  private newOrder(): number[] {
    const order = Array.from({ length: this.count }, (_, i) => i);
    return this.shuffle ? this.rng.shuffle(order) : order;
  }

  next(n: number): number[] {
    const out: number[] = [];
    while (out.length < n) {
      if (this.position >= this.order.length) {
        this.position = 0;
        this.epoch++;
        this.order = this.newOrder();
      }
      out.push(this.order[this.position++]);
    }
    return out;
  }
}

export interface LMTrainOptions extends AdamWOptions {
  steps: number;
  batchSize: number;
  seqLen: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  gradAccum: number;
  lr: number;
  minLr: number;
  warmup: number;
  schedule: ScheduleName;
  gradClip: number;
  shuffle: boolean;
  seed: number;
}

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  ms: number;
  tokens_per_s: number;
  epoch: number;
}

/**
 * Trains on a token stream; onStep is awaited after every optimizer step (logging, yielding). No
 * dropout: this is the plain reference loop (the Trainer applies config.json's rates, lib/model/dropout.ts).
 */
export async function trainLM(model: Decoder, tokens: Int32Array, o: LMTrainOptions, onStep: (log: StepLog) => void | Promise<void>): Promise<void> {
  checkInstance('trainLM', 'model', model, Decoder, 'a Decoder model');
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new TypeError(`trainLM: expected options to be an object but received ${describeValue(o)}`);
  checkSeed('trainLM', 'options.seed', o.seed);
  if (typeof onStep !== 'function') throw new TypeError(`trainLM: expected onStep to be a function but received ${describeValue(onStep)}`);
  const T = o.seqLen, B = o.batchSize;
  const count = windowCount(tokens.length, T);
  if (count < 1) throw new RangeError(`the data has ${tokens.length} tokens, fewer than seq_len + 1 = ${T + 1} needed for one training window`);
  const sampler = new WindowSampler(count, o.shuffle, o.seed);
  const optimizer = new AdamW(model, o);
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  try {
    for (let step = 0; step < o.steps; step++) {
      const started = process.hrtime.bigint();
      model.zeroGrad();
      let lossSum = 0, lossCount = 0;
      // Every micro-batch has B*T scored targets, so the accumulated gradient is that of the mean
      // loss over all gradAccum*B*T positions.
      const denominator = o.gradAccum * B * T;
      for (let micro = 0; micro < o.gradAccum; micro++) {
        fillWindows(tokens, T, sampler.next(B), inputs, targets);
        const r = model.forward(inputs, B, T, targets);
        model.backward(denominator);
        lossSum += r.lossSum;
        lossCount += r.count;
      }
      const gradNorm = model.gradNorm();
      const lr = learningRate(step, { lr: o.lr, schedule: o.schedule, warmup: o.warmup, totalSteps: o.steps, minLr: o.minLr });
      optimizer.update(lr, clipScale(gradNorm, o.gradClip));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      await onStep({
        step: step + 1, loss: lossSum / lossCount, lr, grad_norm: gradNorm, ms,
        tokens_per_s: (o.gradAccum * B * T) / (ms / 1000), epoch: sampler.epoch,
      });
    }
  } finally {
    optimizer.free();
  }
}

/** What an evaluation reports: the one shape of LM evaluation in gptune (JSON outputs spell the accuracy token_accuracy). */
export interface EvalResult {
  /** Mean cross-entropy (nats) over the scored tokens. */
  loss: number;
  perplexity: number;
  /**
   * Fraction of the scored tokens whose argmax prediction equals the target, leaving out targets
   * equal to the appended EOS id when one is given (lib/metrics/lm.ts); NaN when none is counted.
   */
  tokenAccuracy: number;
  /** Scored tokens (targets other than IGNORE_INDEX). */
  tokens: number;
}

/**
 * Loss, perplexity and token-level accuracy of `model` over `batches` (no gradients): the token-weighted
 * mean over all batches, as one pass over all their scored tokens would give. Batches are run as they
 * come, so a generator keeps one batch in memory at a time. `appendedEos`: the EOS id the data
 * builder appended after each example/document, left out of the accuracy (null: nothing appended).
 */
export function evaluate(model: Decoder, batches: Iterable<Batch>, appendedEos: number | null = null): EvalResult {
  return evalResult(evaluateSums(model, batches, appendedEos));
}

/**
 * The sums behind an evaluation (float64), which add up over any split of the batches: a data-parallel
 * run evaluates each rank's share and adds the sums over the ranks (lib/train/distributed.ts).
 */
export interface EvalSums {
  /** Cross-entropy (nats) summed over the scored tokens, and their number. */
  lossSum: number;
  tokens: number;
  /** Token accuracy's correct of counted (lib/metrics/lm.ts). */
  correct: number;
  counted: number;
}

/** evaluate()'s sums over `batches`. */
export function evaluateSums(model: Decoder, batches: Iterable<Batch>, appendedEos: number | null = null): EvalSums {
  const sums: EvalSums = { lossSum: 0, tokens: 0, correct: 0, counted: 0 };
  for (const b of batches) {
    const r = model.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds, predictions: true });
    sums.lossSum += r.lossSum;
    sums.tokens += r.count;
    const accuracy = tokenAccuracy(r.predictions!, b.targets, IGNORE_INDEX, appendedEos);
    sums.correct += accuracy.correct;
    sums.counted += accuracy.counted;
  }
  return sums;
}

/** The means of evaluation sums. */
export function evalResult(s: EvalSums): EvalResult {
  const loss = s.tokens > 0 ? s.lossSum / s.tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokenAccuracy: s.counted > 0 ? s.correct / s.counted : NaN, tokens: s.tokens };
}

/**
 * The batches of evalLM: consecutive chunks of at most T tokens (no overlap); in each chunk every token
 * after the first is predicted from the chunk's earlier tokens. Full chunks come B at a time, then
 * the shorter rest (when it has a token to predict) alone.
 */
function* chunkBatches(tokens: Int32Array, T: number, batchSize: number): Generator<Batch> {
  const batch = (starts: number[], len: number): Batch => {
    const B = starts.length;
    const inputs = new Int32Array(B * len), targets = new Int32Array(B * len).fill(IGNORE_INDEX);
    starts.forEach((s, b) => {
      inputs.set(tokens.subarray(s, s + len), b * len);
      targets.set(tokens.subarray(s + 1, s + len), b * len); // the chunk's last position predicts nothing
    });
    return { B, T: len, inputs, targets, positions: null, segmentIds: null, scoredTokens: B * (len - 1) };
  };
  const fullChunks = Math.floor(tokens.length / T);
  for (let c = 0; c < fullChunks; c += batchSize) {
    const starts: number[] = [];
    for (let b = c; b < Math.min(fullChunks, c + batchSize); b++) starts.push(b * T);
    yield batch(starts, T);
  }
  const rest = tokens.length - fullChunks * T;
  if (rest > 1) yield batch([fullChunks * T], rest);
}

/** The batches as they are, reporting the tokens of the stream covered so far (of `total`) after each. */
function* reportingProgress(batches: Iterable<Batch>, total: number, onProgress?: (done: number, total: number) => void): Generator<Batch> {
  let done = 0;
  for (const b of batches) {
    yield b;
    done = Math.min(total, done + b.B * b.T);
    onProgress?.(done, total);
  }
  onProgress?.(total, total); // the last token or two may be in no chunk
}

/**
 * evaluate() over a token stream split into consecutive chunks of at most T tokens, B full chunks per
 * forward pass (see chunkBatches). A non-finite loss is an error here: the stream has tokens to score.
 */
export function evalLM(model: Decoder, tokens: Int32Array, T: number, batchSize = 1, onProgress?: (done: number, total: number) => void): EvalResult {
  checkInstance('evalLM', 'model', model, Decoder, 'a Decoder model');
  if (T > model.contextLength) throw new RangeError(`evalLM: T = ${T} exceeds ${model.contextLimit}`);
  const r = evaluate(model, reportingProgress(chunkBatches(tokens, T, batchSize), tokens.length, onProgress));
  if (r.tokens > 0 && !Number.isFinite(r.loss)) {
    throw new NonFiniteError(`evaluation: the loss over ${r.tokens} tokens is ${r.loss}: the model's outputs are not finite (weights that overflow?)`);
  }
  return r;
}
