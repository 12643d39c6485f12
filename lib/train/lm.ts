/**
 * Language-model training and evaluation on a token stream: the semantics of `gptune train` and
 * `gptune eval` (README "The CLI contract").
 */
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

/** Trains on a token stream; onStep is awaited after every optimizer step (logging, yielding). */
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

export interface LMEvalResult {
  loss: number;
  perplexity: number;
  tokens: number;
  /** Token-level accuracy: how often the argmax equals the next token. */
  accuracy: number;
}

/**
 * Splits tokens into consecutive chunks of at most T tokens (no overlap); in each chunk every token
 * after the first is predicted from the chunk's earlier tokens. Full chunks run B at a time.
 */
export function evalLM(model: Decoder, tokens: Int32Array, T: number, batchSize = 1): LMEvalResult {
  checkInstance('evalLM', 'model', model, Decoder, 'a Decoder model');
  if (T > model.contextLength) throw new RangeError(`--seq-len ${T} exceeds ${model.contextLimit}`);
  let lossSum = 0, count = 0, correct = 0;
  const fullChunks = Math.floor(tokens.length / T);
  const run = (starts: number[], len: number) => {
    const B = starts.length;
    const inputs = new Int32Array(B * len), targets = new Int32Array(B * len).fill(IGNORE_INDEX);
    starts.forEach((s, b) => {
      inputs.set(tokens.subarray(s, s + len), b * len);
      targets.set(tokens.subarray(s + 1, s + len), b * len); // the chunk's last position predicts nothing
    });
    const r = model.forward(inputs, B, len, targets, { predictions: true });
    lossSum += r.lossSum;
    count += r.count;
    for (let i = 0; i < targets.length; i++) if (targets[i] !== IGNORE_INDEX && r.predictions![i] === targets[i]) correct++;
  };
  for (let c = 0; c < fullChunks; c += batchSize) {
    const starts: number[] = [];
    for (let b = c; b < Math.min(fullChunks, c + batchSize); b++) starts.push(b * T);
    run(starts, T);
  }
  const rest = tokens.length - fullChunks * T;
  if (rest > 1) run([fullChunks * T], rest);
  const loss = count > 0 ? lossSum / count : NaN;
  if (count > 0 && !Number.isFinite(loss)) {
    throw new NonFiniteError(`evaluation: the loss over ${count} tokens is ${loss}: the model's outputs are not finite (weights that overflow?)`);
  }
  return { loss, perplexity: Math.exp(loss), tokens: count, accuracy: count > 0 ? correct / count : NaN };
}
