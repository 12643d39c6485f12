/**
 * Beam search as Hugging Face transformers runs it (generation/utils.py `_beam_search`, the
 * vectorised version that replaced BeamSearchScorer), with the KV cache: the beams are the rows of a
 * BatchDecoder, and when a beam continues another beam's history that history is copied into its
 * cache slot (transformers reorders the whole cache by beam index instead; the result is the same).
 *
 * Each step: every running beam's next-token log-probabilities (log-softmax of the logits) are added
 * to its running sum; the best `max(2, 1 + #eos) * numBeams` candidates are kept. A candidate that
 * ends (an EOS token, the `stop` callback, or the token budget) becomes a finished hypothesis when
 * it ranks among the first numBeams, scored sum / (generated tokens ** lengthPenalty), the EOS
 * counted as a token; the best numBeams finished ones are kept. The best numBeams candidates that
 * did not end run on. earlyStopping false stops when numBeams hypotheses are finished and the best
 * running beam's score at its current length is no better than the worst finished one (transformers'
 * heuristic); true stops as soon as numBeams are finished; 'never' assumes a running beam could reach
 * the full length when lengthPenalty > 0.
 *
 * Differences, all at the edges: log-probabilities are summed in float64 (transformers: float32);
 * ties go to the earlier beam, then the lower token id; transformers starts with numBeams - 1
 * placeholder beams of score -1e9 that can fill slots when there are fewer real continuations than
 * beams, which this search does not invent.
 */
import { checkInstance, checkOptions, describeValue } from '../util/check';
import { BatchDecoder } from './batch_decode';
import { Decoder } from './decoder';
import { checkPromptTokens } from './generate';

export interface BeamSearchOptions {
  /** Beams kept at each step (1 is greedy decoding). */
  numBeams: number;
  /** Tokens to generate at most (the EOS included). */
  maxNewTokens: number;
  /** Finished scores are divided by (generated tokens) ** lengthPenalty (default 1: the mean log-probability). */
  lengthPenalty?: number;
  /** transformers' early_stopping: false (default), true or 'never'. */
  earlyStopping?: boolean | 'never';
  /** Tokens that end a hypothesis (not included in its tokens). Default: the model's eosTokenIds. */
  eosTokenIds?: readonly number[];
  /** Called with a candidate's generated tokens (its new token last); true ends it there (the token kept). */
  stop?: (tokens: readonly number[]) => boolean;
}

export type BeamStop = 'eos' | 'stop' | 'max_new_tokens' | 'context_full';

export interface BeamHypothesis {
  /** The generated tokens, without the EOS that ended them. */
  tokens: number[];
  /** Sum of the log-probabilities (natural log) over the generated tokens, EOS included, / length ** lengthPenalty. */
  score: number;
  stop: BeamStop;
}

/**
 * What the search asks of a model: the logits after the prompt, then, for each step's running beams
 * (beam i continuing the previous step's beam parents[i] with tokens[i]), their logits (n, V) row-major.
 */
export interface BeamStepper {
  readonly vocabSize: number;
  first(): Float32Array;
  next(parents: readonly number[], tokens: readonly number[]): Float32Array;
}

interface Running {
  tokens: number[];
  logProb: number;
}

interface Candidate {
  beam: number;
  token: number;
  logProb: number;
}

export interface BeamSearchSettings {
  numBeams: number;
  /** The token budget: generation ends after this many tokens. */
  maxNewTokens: number;
  /** Why the budget ends a hypothesis: 'max_new_tokens', or 'context_full' when the context was the limit. */
  budgetStop: 'max_new_tokens' | 'context_full';
  lengthPenalty: number;
  earlyStopping: boolean | 'never';
  eosTokenIds: ReadonlySet<number>;
  stop?: (tokens: readonly number[]) => boolean;
}

/**
 * The indices of the k largest values of row[offset, offset + V), largest first; ties keep the
 * lower index first. Insertion into a short sorted list: most values fail the threshold at once.
 */
function topTokens(row: Float32Array, offset: number, V: number, k: number): number[] {
  const best: number[] = [];
  for (let v = 0; v < V; v++) {
    const x = row[offset + v];
    if (best.length === k && !(x > row[offset + best[k - 1]])) continue;
    let at = best.length;
    while (at > 0 && x > row[offset + best[at - 1]]) at--;
    best.splice(at, 0, v);
    if (best.length > k) best.pop();
  }
  return best;
}

/** log(sum(exp(row))) over row[offset, offset + V), in float64. */
function logSumExp(row: Float32Array, offset: number, V: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, row[offset + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(row[offset + v] - max);
  return max + Math.log(sum);
}

/** The search over any stepper (a model with its cache, or a table in tests). */
export function runBeamSearch(stepper: BeamStepper, o: BeamSearchSettings): BeamHypothesis[] {
  const N = o.numBeams, V = stepper.vocabSize;
  if (o.maxNewTokens === 0) return [{ tokens: [], score: 0, stop: o.budgetStop }];
  const keep = Math.max(2, 1 + o.eosTokenIds.size) * N;
  let running: Running[] = [{ tokens: [], logProb: 0 }];
  let logits = stepper.first();
  let finished: BeamHypothesis[] = [];
  let improvementPossible = true;
  for (let length = 1; ; length++) {
    // The best `keep` continuations: each beam's best `keep` tokens suffice, then merge (stable: ties keep beam order).
    const candidates: Candidate[] = [];
    running.forEach((beam, b) => {
      const lse = logSumExp(logits, b * V, V);
      for (const token of topTokens(logits, b * V, V, keep)) candidates.push({ beam: b, token, logProb: beam.logProb + (logits[b * V + token] - lse) });
    });
    candidates.sort((x, y) => y.logProb - x.logProb);
    candidates.length = Math.min(candidates.length, keep);

    const ended = candidates.map((c): BeamStop | null => {
      if (o.eosTokenIds.has(c.token)) return 'eos';
      if (o.stop?.([...running[c.beam].tokens, c.token])) return 'stop';
      return length >= o.maxNewTokens ? o.budgetStop : null;
    });
    // Only candidates among the first numBeams may finish (the rest are spares to keep N running).
    const full = finished.length === N;
    if (improvementPossible && !(o.earlyStopping === true && full)) {
      const fresh: BeamHypothesis[] = [];
      for (let i = 0; i < Math.min(N, candidates.length); i++) {
        const stop = ended[i];
        if (stop === null) continue;
        const c = candidates[i], tokens = running[c.beam].tokens;
        fresh.push({ tokens: stop === 'eos' ? tokens.slice() : [...tokens, c.token], score: c.logProb / length ** o.lengthPenalty, stop });
      }
      finished = [...finished, ...fresh].sort((x, y) => y.score - x.score).slice(0, N);
    }

    const next = candidates.filter((_, i) => ended[i] === null).slice(0, N);
    if (next.length === 0) break;
    running = next.map((c) => ({ tokens: [...running[c.beam].tokens, c.token], logProb: c.logProb }));
    if (finished.length === N) {
      if (o.earlyStopping === true) break;
      // transformers' heuristic: could the best running beam still beat the worst finished one?
      const bestLength = o.earlyStopping === 'never' && o.lengthPenalty > 0 ? o.maxNewTokens : length;
      if (!(running[0].logProb / bestLength ** o.lengthPenalty > finished[N - 1].score)) improvementPossible = false;
    }
    if (!improvementPossible) break;
    logits = stepper.next(next.map((c) => c.beam), next.map((c) => c.token));
  }
  return finished;
}

/**
 * Cache slots for the next step's beams, whose parents sit in parentSlots: the first child of a
 * parent takes over the parent's slot; every further child gets a slot no parent uses, with a copy
 * of the parent's history. Copies only read parents' slots and only write unused ones, so their
 * order does not matter.
 */
export function assignBeamSlots(parentSlots: readonly number[], slotCount: number): { slots: number[]; copies: Array<[number, number]> } {
  const taken = new Set<number>();
  const slots = parentSlots.map((s) => (taken.has(s) ? -1 : (taken.add(s), s)));
  const free: number[] = [];
  for (let s = 0; s < slotCount; s++) if (!taken.has(s)) free.push(s);
  const copies: Array<[number, number]> = [];
  slots.forEach((s, i) => {
    if (s >= 0) return;
    const to = free.shift();
    if (to === undefined) throw new RangeError(`beam search: ${parentSlots.length} beams need more than ${slotCount} cache slots`);
    copies.push([parentSlots[i], to]);
    slots[i] = to;
  });
  return { slots, copies };
}

function validate(model: Decoder, prompt: readonly number[], options: BeamSearchOptions): BeamSearchSettings & { maxT: number } {
  checkInstance('beamSearch', 'model', model, Decoder, 'a Decoder model');
  if (!Array.isArray(prompt) && !ArrayBuffer.isView(prompt)) throw new TypeError(`beamSearch: expected promptTokens to be an array of token ids but received ${describeValue(prompt)}`);
  checkOptions('beamSearch', 'options', options);
  const cfg = model.config;
  const { numBeams, maxNewTokens } = options;
  if (!Number.isInteger(numBeams) || numBeams < 1 || numBeams > 1024) throw new RangeError(`beamSearch: expected numBeams to be a whole number from 1 to 1024 but received ${describeValue(numBeams)}`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new RangeError(`beamSearch: expected maxNewTokens to be a whole number >= 0 but received ${describeValue(maxNewTokens)}`);
  const lengthPenalty = options.lengthPenalty ?? 1;
  if (!Number.isFinite(lengthPenalty)) throw new RangeError(`beamSearch: expected lengthPenalty to be a finite number but received ${describeValue(lengthPenalty)}`);
  const earlyStopping = options.earlyStopping ?? false;
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') throw new TypeError(`beamSearch: expected earlyStopping to be true, false or 'never' but received ${describeValue(earlyStopping)}`);
  const eos = options.eosTokenIds ?? model.eosTokenIds;
  if (!Array.isArray(eos) || !eos.every((id) => Number.isInteger(id))) throw new TypeError(`beamSearch: expected eosTokenIds to be an array of token ids but received ${describeValue(eos)}`);
  if (options.stop !== undefined && typeof options.stop !== 'function') throw new TypeError(`beamSearch: expected stop to be a function but received ${describeValue(options.stop)}`);
  checkPromptTokens('beamSearch', cfg, prompt);
  // As generate(): the token after the last position of the context is still produced (it is never run).
  const room = cfg.maxPositions - prompt.length + 1;
  return {
    numBeams, lengthPenalty, earlyStopping, stop: options.stop, eosTokenIds: new Set(eos),
    maxNewTokens: Math.min(maxNewTokens, room),
    budgetStop: room < maxNewTokens ? 'context_full' : 'max_new_tokens',
    maxT: prompt.length + Math.min(maxNewTokens, room),
  };
}

/**
 * Beam search continuing one prompt. Returns the finished hypotheses, best first (at most numBeams).
 * The model's loaded adapter, if it has one, applies (the decoder's rows take one adapter at a time).
 */
export function beamSearch(model: Decoder, promptTokens: Int32Array | readonly number[], options: BeamSearchOptions): BeamHypothesis[] {
  const prompt = Array.from(promptTokens);
  const settings = validate(model, prompt, options);
  if (model.adapters.length > 1) throw new RangeError(`beamSearch: the model has ${model.adapters.length} adapters loaded; beam search applies one (merge the others first)`);
  const adapter = model.adapters[0] ?? null;
  // The last token generated is never run through the model, so the cache needs maxT - 1 positions.
  const decoder = new BatchDecoder(model, settings.numBeams, Math.max(settings.maxT - 1, prompt.length));
  let slots = [0], past = prompt.length;
  const stepper: BeamStepper = {
    vocabSize: model.config.vocabSize,
    first: () => decoder.prefill(0, prompt, adapter),
    next(parents, tokens) {
      const plan = assignBeamSlots(parents.map((p) => slots[p]), settings.numBeams);
      for (const [from, to] of plan.copies) decoder.copySlot(from, to, past);
      const logits = decoder.step(Int32Array.from(plan.slots), Int32Array.from(tokens), new Int32Array(tokens.length).fill(past), adapter);
      slots = plan.slots;
      past++;
      return logits;
    },
  };
  try {
    return runBeamSearch(stepper, settings);
  } finally {
    decoder.free();
  }
}
