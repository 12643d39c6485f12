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
 * the step), however they are spread over micro-batches and workers (MPI ranks x the model copies of
 * one process): each worker weights its backward by the step's global counts, and the sums behind the
 * loss and the metrics (PreferenceSums) are added over the replicas of a process, then over the ranks,
 * before the means are taken (the Trainer does that with DataParallel). The gradient goes back through the decoder
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

/**
 * The workers of a data-parallel job as preference tuning needs them: MPI ranks, each holding `replicas`
 * copies of the model (worker rank x replicas + j is replica j of a rank). lib/train/distributed.ts's
 * DataParallel is one; ONE_PROCESS when there is no job.
 */
export interface RankGroup {
  /** Copies of the model in this process (1 except with devices 0,1). */
  readonly replicas: number;
  /** This process's contiguous share of a list every rank holds in the same order: its replicas' shares, in replica order. */
  part<T>(all: readonly T[]): T[];
  /** Local replica j's contiguous share of such a list (its worker's; the process's share split over its replicas). */
  replicaPart<T>(all: readonly T[], replica: number): T[];
  /** Element-wise sums over the ranks, in place, in float64: bitwise the same on every rank. */
  sumInPlace(values: Float64Array): void;
}

/** A single process with one model copy: its share is everything, sums over the ranks are its own values. */
export const ONE_PROCESS: RankGroup = { replicas: 1, part: (all) => all.slice(), replicaPart: (all) => all.slice(), sumInPlace() {} };

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
 * Under several ranks each computes its share of the batches (ranks.part) and the table is summed
 * over the ranks: a pair's values come from the one rank that computed it (x + 0 = x), so every rank
 * holds bitwise the same table.
 */
export class PrecomputedReference implements ReferenceModel {
  private readonly chosen: Float64Array;
  private readonly rejected: Float64Array;

  constructor(source: ReferenceModel, batches: Iterable<Batch>, pairCount: number, ranks: RankGroup = ONE_PROCESS) {
    // (3, pairCount): chosen, rejected, and 1 where this rank computed the pair; after the sum a pair
    // computed by no rank (0), or by two (2: its batches were not each pair once), is NaN.
    const table = new Float64Array(3 * pairCount);
    for (const b of ranks.part(Array.from(batches))) {
      const P = pairsOf(b), r = source.logps(b);
      b.pairs!.forEach((pair, p) => {
        table[pair] = r.sums[p];
        table[pairCount + pair] = r.sums[P + p];
        table[2 * pairCount + pair] = 1;
      });
    }
    ranks.sumInPlace(table);
    this.chosen = table.slice(0, pairCount);
    this.rejected = table.slice(pairCount, 2 * pairCount);
    for (let pair = 0; pair < pairCount; pair++) {
      if (table[2 * pairCount + pair] !== 1) this.chosen[pair] = this.rejected[pair] = NaN;
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

/** The sums a step or an evaluation adds up, in the order PreferenceSums.toArray lists them. */
const SUM_FIELDS = [
  'pairs', 'loss', 'rewardsChosen', 'rewardsRejected', 'pairsCorrect', 'logpsChosen', 'logpsRejected', 'logOddsRatio', 'logOdds',
  'nll', 'chosenTokens', 'tokens', 'tokensCorrect', 'tokensCounted',
] as const;

/**
 * Float64 sums over pairs and answer tokens (one rank's micro-batches, or the whole step's once summed
 * over the ranks), turned into means by PreferenceObjective.result. Sums, not means, so that ranks
 * holding different numbers of pairs or tokens add up to what one process computes.
 */
export class PreferenceSums {
  pairs = 0;
  /** Per-pair loss (ORPO: the odds-ratio term only; its nll is `nll` / `chosenTokens`). */
  loss = 0;
  rewardsChosen = 0;
  rewardsRejected = 0;
  /** Pairs whose chosen reward is above the rejected one. */
  pairsCorrect = 0;
  logpsChosen = 0;
  logpsRejected = 0;
  logOddsRatio = 0;
  logOdds = 0;
  /** -log p over the chosen answers' tokens, and their number. */
  nll = 0;
  chosenTokens = 0;
  /** Answer tokens scored (both sides). */
  tokens = 0;
  /** Argmax accuracy over the chosen answers' tokens: correct of counted (lib/metrics/lm.ts). */
  tokensCorrect = 0;
  tokensCounted = 0;

  addPair(t: PairTerms, pc: number, pr: number): void {
    this.pairs++;
    this.loss += t.loss;
    this.rewardsChosen += t.rewardChosen;
    this.rewardsRejected += t.rewardRejected;
    if (t.rewardChosen > t.rewardRejected) this.pairsCorrect++;
    this.logpsChosen += pc;
    this.logpsRejected += pr;
    this.logOddsRatio += t.logOddsRatio ?? 0;
    this.logOdds += t.logOdds ?? 0;
  }

  /** The sums as one vector (SUM_FIELDS' order), for a sum over ranks. */
  toArray(): Float64Array {
    return Float64Array.from(SUM_FIELDS, (k) => this[k]);
  }

  static fromArray(values: ArrayLike<number>): PreferenceSums {
    if (values.length !== SUM_FIELDS.length) throw new RangeError(`PreferenceSums.fromArray: expected ${SUM_FIELDS.length} values but received ${values.length}`);
    const s = new PreferenceSums();
    SUM_FIELDS.forEach((k, i) => (s[k] = values[i]));
    return s;
  }

  /** Adds `other` (another replica's or micro-batch's sums) into these, in float64. */
  add(other: PreferenceSums): this {
    for (const k of SUM_FIELDS) this[k] += other[k];
    return this;
  }

  /** These sums added over the ranks of `ranks` (the same on every rank). */
  overRanks(ranks: RankGroup): PreferenceSums {
    const all = this.toArray();
    ranks.sumInPlace(all);
    return PreferenceSums.fromArray(all);
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

/** The micro-batches of a step over all ranks: the loss is the mean over their pairs (ORPO's nll over their chosen tokens). */
export interface StepScope {
  pairs: number;
  chosenTokens: number;
}

/** The StepScope of a step's micro-batches (every rank holds the whole step's batches). */
export function stepScope(batches: readonly Batch[]): StepScope {
  return {
    pairs: batches.reduce((n, b) => n + pairsOf(b), 0),
    chosenTokens: batches.reduce((n, b) => n + answerTokens(b, 0, pairsOf(b)), 0),
  };
}

/**
 * The loss of a method over batches of pairs: forward (and backward) of the policy, the reference's
 * log-probabilities from `reference` (null for ORPO, which has none).
 */
export class PreferenceObjective {
  /**
   * Reference log-probs of the validation batches: the reference never changes, so once per batch. Host
   * data shared by the replicas (each evaluates its own share of the batches; any replica's reference gives
   * the same values, up to the rounding of its device).
   */
  private readonly validationReference = new WeakMap<Batch, RowLogps>();
  /** The reference of each local replica, replica order; one entry (e.g. a precomputed table) serves them all. */
  private readonly references: ReferenceModel[];

  /**
   * `reference`: the reference of a single model copy, or one per local replica (replica j's model on its
   * device: its frozen copy, or itself with the adapter off); null for ORPO.
   */
  constructor(readonly settings: PreferenceSettings, reference: ReferenceModel | readonly ReferenceModel[] | null) {
    this.references = reference === null ? [] : Array.isArray(reference) ? [...reference] : [reference as ReferenceModel];
    if (settings.method === 'dpo' && this.references.length === 0) throw new Error('PreferenceObjective: DPO needs a reference model');
  }

  /** Replica j's reference (the only one when they share it). */
  private referenceOf(replica: number): ReferenceModel {
    const r = this.references.length === 1 ? this.references[0] : this.references[replica];
    if (r === undefined) throw new RangeError(`PreferenceObjective: no reference for replica ${replica} (${this.references.length} given)`);
    return r;
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
    return this.result(this.stepSums(model, batches, optionsOf, appendedEos, stepScope(batches)));
  }

  /**
   * step() on one worker's part of a step: `batches` are micro-batches of local replica `replica` (its
   * `model`), `scope` counts the whole step's (stepScope of every worker's), so that the gradients summed
   * over the replicas and ranks are those of the step's mean loss. Returns these batches' sums: add them
   * over the replicas (add) and the ranks (overRanks), then result().
   */
  stepSums(
    model: Decoder, batches: readonly Batch[], optionsOf: (i: number) => ForwardOptions, appendedEos: number | null, scope: StepScope, replica = 0,
  ): PreferenceSums {
    return this.run(model, batches, { scope, optionsOf }, appendedEos, (b) => this.referenceOf(replica).logps(b));
  }

  /** Computes the validation batches' reference log-probabilities now, with `reference` (precompute_ref, before it is freed). */
  cacheValidationReference(batches: readonly Batch[], reference: ReferenceModel): void {
    for (const b of batches) this.validationReference.set(b, reference.logps(b));
  }

  /** The loss and metrics over validation batches (no gradients), as one pass over all their pairs. */
  evaluate(model: Decoder, batches: readonly Batch[], appendedEos: number | null): PreferenceResult {
    return this.result(this.evaluateSums(model, batches, appendedEos));
  }

  /**
   * evaluate()'s sums over `batches` (local replica `replica`'s share of the validation batches, on its
   * `model`: add them over the replicas and the ranks, then result()).
   */
  evaluateSums(model: Decoder, batches: readonly Batch[], appendedEos: number | null, replica = 0): PreferenceSums {
    const cached = (b: Batch) => {
      let r = this.validationReference.get(b);
      if (!r) {
        r = this.referenceOf(replica).logps(b);
        this.validationReference.set(b, r);
      }
      return r;
    };
    return this.run(model, batches, null, appendedEos, cached);
  }

  /** The loss and the metrics (means over the pairs) of sums over a step's or an evaluation's pairs. */
  result(sums: PreferenceSums): PreferenceResult {
    const s = this.settings, orpo = s.method === 'orpo', n = sums.pairs;
    const nll = sums.chosenTokens > 0 ? sums.nll / sums.chosenTokens : NaN;
    const metrics: PreferenceMetrics = {
      'rewards/chosen': sums.rewardsChosen / n, 'rewards/rejected': sums.rewardsRejected / n, 'rewards/margins': (sums.rewardsChosen - sums.rewardsRejected) / n,
      'rewards/accuracies': sums.pairsCorrect / n, 'logps/chosen': sums.logpsChosen / n, 'logps/rejected': sums.logpsRejected / n,
    };
    if (orpo) Object.assign(metrics, { nll_loss: nll, log_odds_ratio: sums.logOddsRatio / n, log_odds_chosen: sums.logOdds / n });
    return {
      loss: sums.loss / n + (orpo ? nll : 0), metrics, pairs: n, tokens: sums.tokens, correct: sums.tokensCorrect, counted: sums.tokensCounted,
    };
  }

  private run(
    model: Decoder, batches: readonly Batch[], training: { scope: StepScope; optionsOf: (i: number) => ForwardOptions } | null,
    appendedEos: number | null, referenceOf: (b: Batch) => RowLogps,
  ): PreferenceSums {
    const s = this.settings, orpo = s.method === 'orpo';
    const sums = new PreferenceSums();
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
        sums.addPair(t, pc, pr);
        dRow[p] = t.dChosen;
        dRow[P + p] = t.dRejected;
      }
      for (let p = 0; p < P; p++) {
        sums.nll -= policy.sums[p];
        sums.chosenTokens += policy.counts[p];
      }
      sums.tokens += r.count;
      const chosenRows = P * b.T;
      const accuracy = tokenAccuracy(r.predictions!.subarray(0, chosenRows), b.targets.subarray(0, chosenRows), IGNORE_INDEX, appendedEos);
      sums.tokensCorrect += accuracy.correct;
      sums.tokensCounted += accuracy.counted;
      if (!training) continue;
      // Position i of row b has l_i = -log p_i, so dL/dl_i = -dL/d(pi_b) (/ count_b for a mean);
      // ORPO's nll adds 1 / (the step's chosen tokens) on each chosen answer token.
      const weights = new Float32Array(b.B * b.T);
      for (let row = 0; row < b.B; row++) {
        let w = -dRow[row] / training.scope.pairs;
        if (this.usesMean()) w /= policy.counts[row];
        if (orpo && row < P) w += 1 / training.scope.chosenTokens;
        for (let t = row * b.T; t < (row + 1) * b.T; t++) if (b.targets[t] !== IGNORE_INDEX) weights[t] = w;
      }
      model.backward(1, weights);
    }
    return sums;
  }

  /** Frees the references; `useReplica(j)` makes replica j's device current before its reference is freed (GPU replicas). */
  free(useReplica: (j: number) => void = () => {}): void {
    for (const [j, r] of this.references.entries()) {
      useReplica(j);
      r.free();
    }
    if (this.references.length > 1) useReplica(0);
  }
}

/** Answer tokens in rows [from, to) of a batch. */
function answerTokens(b: Batch, from: number, to: number): number {
  let n = 0;
  for (let i = from * b.T; i < to * b.T; i++) if (b.targets[i] !== IGNORE_INDEX) n++;
  return n;
}
