/**
 * Preference tuning: DPO (with its sigmoid, IPO and hinge losses and cDPO's label smoothing) and ORPO,
 * with the definitions of TRL's DPOTrainer.dpo_loss and ORPOTrainer.odds_ratio_loss.
 *
 * A batch holds P pairs as 2P rows (lib/data/preference.ts): rows [0, P) the chosen answers, rows
 * [P, 2P) the rejected ones, the loss mask on the answer tokens. One forward gives every position's
 * cross-entropy l_i = -log p(target_i); a sequence's log-probability is pi = -sum of its row's l_i
 * (IPO and ORPO: the mean over its answer tokens, as TRL). Per pair, with the reference model's
 * log-probabilities ref (the starting model, frozen):
 *
 *   DPO    logit = (pi_c - pi_r) - (ref_c - ref_r)
 *          sigmoid  -(1 - ls) logsigmoid(beta logit) - ls logsigmoid(-beta logit)   (ls: label smoothing, cDPO)
 *          ipo      (logit - 1 / (2 beta))^2
 *          hinge    relu(1 - beta logit)
 *          rewards/chosen = beta (pi_c - ref_c), rewards/rejected = beta (pi_r - ref_r)
 *   ORPO   log_odds = (a_c - a_r) - (log1p(-exp a_c) - log1p(-exp a_r)), a = mean log-prob
 *          loss = nll(chosen tokens) - lambda logsigmoid(log_odds); rewards = lambda a
 *
 * The step's loss is the mean over its pairs (ORPO's nll: the mean over all chosen answer tokens of
 * the step), however they are spread over micro-batches. The gradient goes back through the decoder
 * unchanged: dL/d(pi) of each sequence becomes a weight on its positions' cross-entropy
 * (Decoder.backward's positionWeights, the crossentropy_backward kernel's row_weights), so a pair is
 * one forward and one backward of its 2 rows, computed exactly.
 *
 * Logged (TRL's names, means over the pairs): rewards/chosen, rewards/rejected, rewards/margins
 * (chosen - rejected), rewards/accuracies (the fraction with chosen > rejected), logps/chosen,
 * logps/rejected; ORPO also nll_loss, log_odds_ratio (mean logsigmoid(log_odds)) and log_odds_chosen.
 */
import type { Batch } from '../data/types';
import { IGNORE_INDEX, tokenAccuracy } from '../metrics/lm';
import type { Decoder, ForwardOptions } from '../model/decoder';

export type PreferenceMethod = 'dpo' | 'orpo';
export type DpoLossType = 'sigmoid' | 'ipo' | 'hinge';
export const DPO_LOSS_TYPES: readonly DpoLossType[] = ['sigmoid', 'ipo', 'hinge'];

export interface PreferenceSettings {
  method: PreferenceMethod;
  /** DPO's beta (the strength of the pull towards the reference). */
  beta: number;
  lossType: DpoLossType;
  /** cDPO: the probability that a pair's labels are flipped, in [0, 0.5). Sigmoid loss only. */
  labelSmoothing: number;
  /** ORPO's weight of the odds-ratio term (TRL's ORPOConfig.beta). */
  lambda: number;
}

/** The metrics a step or an evaluation logs, by TRL's names. */
export interface PreferenceMetrics {
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/margins': number;
  'rewards/accuracies': number;
  'logps/chosen': number;
  'logps/rejected': number;
  nll_loss?: number;
  log_odds_ratio?: number;
  log_odds_chosen?: number;
}

/** log(sigmoid(x)) without overflow: min(x, 0) - log1p(exp(-|x|)). */
export function logSigmoid(x: number): number {
  return Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** One pair's loss, its derivatives by the policy's chosen and rejected log-probabilities, and its rewards. */
export interface PairTerms {
  loss: number;
  dChosen: number;
  dRejected: number;
  rewardChosen: number;
  rewardRejected: number;
  /** ORPO only: logsigmoid(log_odds) and log_odds. */
  logOddsRatio?: number;
  logOdds?: number;
}

/** DPO's per-pair loss (TRL dpo_loss) for policy log-probs pc, pr and reference ones rc, rr. */
export function dpoPairTerms(s: PreferenceSettings, pc: number, pr: number, rc: number, rr: number): PairTerms {
  const logit = pc - pr - (rc - rr);
  const b = s.beta;
  let loss: number, dLogit: number;
  switch (s.lossType) {
    case 'sigmoid': {
      const ls = s.labelSmoothing;
      loss = -(1 - ls) * logSigmoid(b * logit) - ls * logSigmoid(-b * logit);
      // d/dx -logsigmoid(x) = -sigmoid(-x); d/dx -logsigmoid(-x) = sigmoid(x)
      dLogit = b * (-(1 - ls) * sigmoid(-b * logit) + ls * sigmoid(b * logit));
      break;
    }
    case 'ipo': {
      const gap = logit - 1 / (2 * b);
      loss = gap * gap;
      dLogit = 2 * gap;
      break;
    }
    case 'hinge':
      loss = Math.max(0, 1 - b * logit);
      dLogit = 1 - b * logit > 0 ? -b : 0; // relu'(0) = 0, as torch
      break;
  }
  return { loss, dChosen: dLogit, dRejected: -dLogit, rewardChosen: b * (pc - rc), rewardRejected: b * (pr - rr) };
}

/** ORPO's odds-ratio term of a pair (TRL odds_ratio_loss), from mean log-probs ac, ar (< 0): loss = -lambda logsigmoid(log_odds). */
export function orpoPairTerms(s: PreferenceSettings, ac: number, ar: number): PairTerms {
  // log1p(-exp(a)) = log(-expm1(a)), exact for a near 0 too.
  const logOdds = ac - ar - (Math.log(-Math.expm1(ac)) - Math.log(-Math.expm1(ar)));
  const ratio = logSigmoid(logOdds);
  const dLogOdds = -s.lambda * sigmoid(-logOdds);
  // d log_odds / da = 1 + exp(a) / (1 - exp(a)) = 1 / (1 - exp(a)) = -1 / expm1(a)
  return {
    loss: -s.lambda * ratio, dChosen: dLogOdds * (-1 / Math.expm1(ac)), dRejected: -dLogOdds * (-1 / Math.expm1(ar)),
    rewardChosen: s.lambda * ac, rewardRejected: s.lambda * ar, logOddsRatio: ratio, logOdds,
  };
}

/** Per-row sums of log-probabilities over the answer tokens (float64), and the answer token counts. */
export interface RowLogps {
  sums: Float64Array;
  counts: Int32Array;
}

/** RowLogps from a forward's per-position losses (B*T) and the batch's targets. */
export function rowLogps(losses: Float32Array, targets: Int32Array, B: number, T: number): RowLogps {
  const sums = new Float64Array(B), counts = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    for (let t = b * T; t < (b + 1) * T; t++) {
      if (targets[t] === IGNORE_INDEX) continue;
      sums[b] -= losses[t];
      counts[b]++;
    }
  }
  return { sums, counts };
}

/** The number of pairs of a preference batch (its 2P rows); throws on other batches. */
export function pairsOf(batch: Batch): number {
  if (!batch.pairs || batch.B !== 2 * batch.pairs.length) throw new Error('preference loss: expected a batch of pairs (lib/data/preference.ts), 2 rows per pair');
  return batch.pairs.length;
}

/** Where the reference log-probabilities come from. */
export interface ReferenceModel {
  /** RowLogps of the reference model on the batch's rows (no dropout, no gradients). */
  logps(batch: Batch): RowLogps;
  free(): void;
}

/** Full fine-tuning: a frozen copy of the starting model (a second Decoder without gradients). */
export class FrozenReference implements ReferenceModel {
  constructor(private readonly decoder: Decoder) {}

  /** A copy of `model`'s current weights on its device. */
  static copyOf(model: Decoder, make: (config: Decoder['config'], device: Decoder['device']) => Decoder): FrozenReference {
    const copy = make(model.config, model.device);
    for (const name of model.parameterNames) copy.setParameter(name, model.readParameter(name));
    return new FrozenReference(copy);
  }

  logps(b: Batch): RowLogps {
    const r = this.decoder.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds });
    return rowLogps(r.losses, b.targets, b.B, b.T);
  }

  free(): void {
    this.decoder.free();
  }
}

/** LoRA: the trained model itself with its adapters switched off (the base; no second copy of the weights). */
export class AdapterOffReference implements ReferenceModel {
  constructor(private readonly model: Decoder) {}

  logps(b: Batch): RowLogps {
    this.model.selectAdapters([]);
    try {
      const r = this.model.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds });
      return rowLogps(r.losses, b.targets, b.B, b.T);
    } finally {
      this.model.selectAdapters(null);
    }
  }

  free(): void {}
}

/**
 * The reference log-probabilities of every training pair computed once (precompute_ref), looked up
 * by pair index; the reference model can be freed afterwards. `batches` must cover each pair once.
 */
export class PrecomputedReference implements ReferenceModel {
  private readonly chosen: Float64Array;
  private readonly rejected: Float64Array;

  constructor(source: ReferenceModel, batches: Iterable<Batch>, pairCount: number) {
    this.chosen = new Float64Array(pairCount).fill(NaN);
    this.rejected = new Float64Array(pairCount).fill(NaN);
    for (const b of batches) {
      const P = pairsOf(b), r = source.logps(b);
      b.pairs!.forEach((pair, p) => {
        this.chosen[pair] = r.sums[p];
        this.rejected[pair] = r.sums[P + p];
      });
    }
  }

  logps(b: Batch): RowLogps {
    const P = pairsOf(b);
    const sums = new Float64Array(2 * P);
    b.pairs!.forEach((pair, p) => {
      sums[p] = this.chosen[pair];
      sums[P + p] = this.rejected[pair];
    });
    if (sums.some(Number.isNaN)) throw new Error('PrecomputedReference: a pair outside the precomputed set');
    return { sums, counts: answerCounts(b) };
  }

  free(): void {}
}

/** Answer tokens per row of a batch. */
function answerCounts(b: Batch): Int32Array {
  const counts = new Int32Array(b.B);
  for (let i = 0; i < b.B * b.T; i++) if (b.targets[i] !== IGNORE_INDEX) counts[Math.floor(i / b.T)]++;
  return counts;
}

/** Sums over pairs, turned into means by `finish`. */
class MetricSums {
  pairs = 0;
  loss = 0;
  chosen = 0;
  rejected = 0;
  correct = 0;
  logpsChosen = 0;
  logpsRejected = 0;
  logOddsRatio = 0;
  logOdds = 0;

  add(t: PairTerms, pc: number, pr: number): void {
    this.pairs++;
    this.loss += t.loss;
    this.chosen += t.rewardChosen;
    this.rejected += t.rewardRejected;
    if (t.rewardChosen > t.rewardRejected) this.correct++;
    this.logpsChosen += pc;
    this.logpsRejected += pr;
    this.logOddsRatio += t.logOddsRatio ?? 0;
    this.logOdds += t.logOdds ?? 0;
  }

  metrics(method: PreferenceMethod, nll: number): PreferenceMetrics {
    const n = this.pairs;
    const m: PreferenceMetrics = {
      'rewards/chosen': this.chosen / n, 'rewards/rejected': this.rejected / n, 'rewards/margins': (this.chosen - this.rejected) / n,
      'rewards/accuracies': this.correct / n, 'logps/chosen': this.logpsChosen / n, 'logps/rejected': this.logpsRejected / n,
    };
    if (method === 'orpo') Object.assign(m, { nll_loss: nll, log_odds_ratio: this.logOddsRatio / n, log_odds_chosen: this.logOdds / n });
    return m;
  }
}

/** What a training step or an evaluation computed. */
export interface PreferenceResult {
  /** The mean loss over the pairs (ORPO: plus the chosen answers' mean nll). */
  loss: number;
  metrics: PreferenceMetrics;
  pairs: number;
  /** Answer tokens scored (both sides). */
  tokens: number;
  /** Argmax accuracy over the chosen answers' tokens (the EOS appended after each example left out). */
  correct: number;
  counted: number;
}

/**
 * The loss of a method over batches of pairs: forward (and backward) of the policy, the reference's
 * log-probabilities from `reference` (null for ORPO, which has none).
 */
export class PreferenceObjective {
  /** Reference log-probs of the validation batches: the reference never changes, so once per batch. */
  private readonly validationReference = new WeakMap<Batch, RowLogps>();

  constructor(readonly settings: PreferenceSettings, private readonly reference: ReferenceModel | null) {
    if (settings.method === 'dpo' && reference === null) throw new Error('PreferenceObjective: DPO needs a reference model');
  }

  /** The log-probability a method uses of a row: the sum, or the mean over its answer tokens (IPO, ORPO). */
  private usesMean(): boolean {
    return this.settings.method === 'orpo' || this.settings.lossType === 'ipo';
  }

  private sequenceLogp(r: RowLogps, row: number): number {
    return this.usesMean() ? r.sums[row] / r.counts[row] : r.sums[row];
  }

  /**
   * Forward and backward of a step's micro-batches, accumulating into model.grads (the caller zeroes
   * them): the gradient of the step's mean loss over all its pairs. optionsOf(i) gives micro-batch i's
   * forward options (dropout).
   */
  step(model: Decoder, batches: readonly Batch[], optionsOf: (i: number) => ForwardOptions, appendedEos: number | null): PreferenceResult {
    const totalPairs = batches.reduce((n, b) => n + pairsOf(b), 0);
    const chosenTokens = batches.reduce((n, b) => n + answerTokens(b, 0, pairsOf(b)), 0);
    return this.run(model, batches, { totalPairs, chosenTokens, optionsOf }, appendedEos, (b) => this.reference!.logps(b));
  }

  /** Computes the validation batches' reference log-probabilities now, with `reference` (precompute_ref, before it is freed). */
  cacheValidationReference(batches: readonly Batch[], reference: ReferenceModel): void {
    for (const b of batches) this.validationReference.set(b, reference.logps(b));
  }

  /** The loss and metrics over validation batches (no gradients), as one pass over all their pairs. */
  evaluate(model: Decoder, batches: readonly Batch[], appendedEos: number | null): PreferenceResult {
    const cached = (b: Batch) => {
      let r = this.validationReference.get(b);
      if (!r) {
        r = this.reference!.logps(b);
        this.validationReference.set(b, r);
      }
      return r;
    };
    return this.run(model, batches, null, appendedEos, cached);
  }

  private run(
    model: Decoder, batches: readonly Batch[], training: { totalPairs: number; chosenTokens: number; optionsOf: (i: number) => ForwardOptions } | null,
    appendedEos: number | null, referenceOf: (b: Batch) => RowLogps,
  ): PreferenceResult {
    const s = this.settings, orpo = s.method === 'orpo';
    const sums = new MetricSums();
    let nllSum = 0, chosenTokens = 0, tokens = 0, correct = 0, counted = 0;
    for (const [i, b] of batches.entries()) {
      const P = pairsOf(b);
      // The reference first: with LoRA it is this model with the adapter off, and backward needs the policy's forward last.
      const ref = orpo ? null : referenceOf(b);
      const options = training ? training.optionsOf(i) : {};
      const r = model.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds, predictions: true, ...options });
      const policy = rowLogps(r.losses, b.targets, b.B, b.T);
      // dL/d(sequence log-prob) per row, before the mean over the step's pairs.
      const dRow = new Float64Array(b.B);
      for (let p = 0; p < P; p++) {
        if (policy.counts[p] === 0 || policy.counts[P + p] === 0) throw new Error(`preference loss: pair ${b.pairs![p]} has an answer with no tokens left to score (seq_len too short for its prompt?)`);
        const pc = this.sequenceLogp(policy, p), pr = this.sequenceLogp(policy, P + p);
        const t = orpo ? orpoPairTerms(s, pc, pr) : dpoPairTerms(s, pc, pr, this.sequenceLogp(ref!, p), this.sequenceLogp(ref!, P + p));
        sums.add(t, pc, pr);
        dRow[p] = t.dChosen;
        dRow[P + p] = t.dRejected;
      }
      for (let p = 0; p < P; p++) {
        nllSum -= policy.sums[p];
        chosenTokens += policy.counts[p];
      }
      tokens += r.count;
      const chosenRows = P * b.T;
      const accuracy = tokenAccuracy(r.predictions!.subarray(0, chosenRows), b.targets.subarray(0, chosenRows), IGNORE_INDEX, appendedEos);
      correct += accuracy.correct;
      counted += accuracy.counted;
      if (!training) continue;
      // Position i of row b has l_i = -log p_i, so dL/dl_i = -dL/d(pi_b) (/ count_b for a mean);
      // ORPO's nll adds 1 / (the step's chosen tokens) on each chosen answer token.
      const weights = new Float32Array(b.B * b.T);
      for (let row = 0; row < b.B; row++) {
        let w = -dRow[row] / training.totalPairs;
        if (this.usesMean()) w /= policy.counts[row];
        if (orpo && row < P) w += 1 / training.chosenTokens;
        for (let t = row * b.T; t < (row + 1) * b.T; t++) if (b.targets[t] !== IGNORE_INDEX) weights[t] = w;
      }
      model.backward(1, weights);
    }
    const nll = chosenTokens > 0 ? nllSum / chosenTokens : NaN;
    const metrics = sums.metrics(s.method, nll);
    const loss = sums.loss / sums.pairs + (orpo ? nll : 0);
    return { loss, metrics, pairs: sums.pairs, tokens, correct, counted };
  }

  free(): void {
    this.reference?.free();
  }
}

/** Answer tokens in rows [from, to) of a batch. */
function answerTokens(b: Batch, from: number, to: number): number {
  let n = 0;
  for (let i = from * b.T; i < to * b.T; i++) if (b.targets[i] !== IGNORE_INDEX) n++;
  return n;
}
