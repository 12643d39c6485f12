/**
 * Beam search (Hugging Face transformers' `_beam_search` semantics) against independent references:
 * an exhaustive search over every continuation of a tiny-vocabulary model, scored from full forward
 * passes without the KV cache (so neither the cache nor the search is used to make the expectation);
 * greedy generate() for one beam; and a hand-worked probability table for early stopping and the
 * length penalty.
 */
import { Decoder } from '../../lib/model/decoder';
import { parseModelSpec } from '../../lib/model/config';
import { generate } from '../../lib/model/generate';
import { assignBeamSlots, beamSearch, BeamStepper, runBeamSearch } from '../../lib/model/beam';
import { loadModel } from '../../lib';
import { TINY } from '../helpers';

const V = 6, EOS = 5;

function tinyModel(seed: number): Decoder {
  const model = new Decoder(parseModelSpec(`new:n_layer=2,n_head=2,n_embd=16,n_positions=16,vocab_size=${V},eos_token_id=${EOS}`));
  // A wide initialisation so the next-token distributions differ clearly from uniform.
  model.initRandom(seed, 0.5);
  return model;
}

/** log-softmax (float64) of the full forward's last row: no KV cache involved. */
function nextLogProbs(model: Decoder, sequence: readonly number[]): number[] {
  model.forward(Int32Array.from(sequence), 1, sequence.length);
  const logits = Array.from(model.logitsRows(sequence.length - 1));
  const max = Math.max(...logits);
  const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  return logits.map((x) => x - lse);
}

interface Hypothesis {
  tokens: number[];
  score: number;
}

/** Every finished continuation (ended by EOS, or at maxNew tokens), scored sum / length ** lp, best first. */
function exhaustive(model: Decoder, prompt: number[], maxNew: number, lengthPenalty: number): Hypothesis[] {
  const all: Hypothesis[] = [];
  const grow = (tokens: number[], logProb: number) => {
    const lp = nextLogProbs(model, [...prompt, ...tokens]);
    for (let v = 0; v < V; v++) {
      const sum = logProb + lp[v], length = tokens.length + 1;
      if (v === EOS) all.push({ tokens, score: sum / length ** lengthPenalty });
      else if (length === maxNew) all.push({ tokens: [...tokens, v], score: sum / length ** lengthPenalty });
      else grow([...tokens, v], sum);
    }
  };
  grow([], 0);
  return all.sort((a, b) => b.score - a.score);
}

describe('beam search on a 6-token model equals an exhaustive search', () => {
  // With 3 new tokens there are 1 + 5 + 150 = 156 finished continuations; 156 beams keep every one
  // of them, so nothing is pruned and the search must return exactly the exhaustive ranking.
  const MAX_NEW = 3, ALL = 1 + (V - 1) + (V - 1) ** 2 * V;

  test.each([
    [1, [0, 3], 1.0],
    [2, [4], 1.0],
    [3, [1, 2, 2], 0.0],
    [4, [3], 2.0],
  ])('seed %d, prompt %j, length penalty %d: every hypothesis and score', (seed, prompt, lengthPenalty) => {
    const model = tinyModel(seed);
    try {
      const expected = exhaustive(model, prompt, MAX_NEW, lengthPenalty);
      expect(expected).toHaveLength(ALL);
      const found = beamSearch(model, Int32Array.from(prompt), { numBeams: ALL, maxNewTokens: MAX_NEW, lengthPenalty, eosTokenIds: [EOS] });
      expect(found).toHaveLength(ALL);
      // Scores agree to float32 rounding of the two forward paths (full sequence vs cached rows).
      found.forEach((h, i) => expect(Math.abs(h.score - expected[i].score)).toBeLessThan(1e-5));
      // Ranks could only swap between near-equal scores; the top ones are clearly apart here.
      for (let i = 0; i < 5; i++) expect(found[i].tokens).toEqual(expected[i].tokens);
      expect(found[0].stop).toBe(found[0].tokens.length === MAX_NEW ? 'max_new_tokens' : 'eos');
    } finally {
      model.free();
    }
  });

  test('the length penalty changes the pick as defined: the exhaustive best under each penalty', () => {
    const model = tinyModel(5);
    try {
      const prompt = [2];
      const picks = [-2, 0, 1, 3].map((lengthPenalty) => {
        const best = exhaustive(model, prompt, MAX_NEW, lengthPenalty)[0];
        const found = beamSearch(model, prompt, { numBeams: ALL, maxNewTokens: MAX_NEW, lengthPenalty, eosTokenIds: [EOS] })[0];
        expect(found.tokens).toEqual(best.tokens);
        expect(Math.abs(found.score - best.score)).toBeLessThan(1e-5);
        return found.tokens.length;
      });
      // A negative penalty favours short hypotheses, a large one long ones: the picks differ.
      expect(picks[0]).toBeLessThan(picks[3]);
    } finally {
      model.free();
    }
  });
});

describe('one beam is greedy decoding', () => {
  test.each([[[100, 200]], [[7]], [[300, 1, 2, 3]]])('tiny GPT-2 fixture, prompt %j: same tokens as generate({greedy})', (prompt) => {
    const model = loadModel(TINY);
    try {
      const greedy = generate(model, prompt, { greedy: true, maxNewTokens: 12 });
      const [best] = beamSearch(model, prompt, { numBeams: 1, maxNewTokens: 12 });
      expect(best.tokens).toEqual(greedy.tokens);
      expect(best.stop).toBe(greedy.stop);
    } finally {
      model.free();
    }
  });

  test('on the 6-token model with EOS reachable, for several seeds', () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const model = tinyModel(seed);
      try {
        const greedy = generate(model, [1], { greedy: true, maxNewTokens: 10 });
        const [best] = beamSearch(model, [1], { numBeams: 1, maxNewTokens: 10 });
        expect(best.tokens).toEqual(greedy.tokens);
      } finally {
        model.free();
      }
    }
  });
});

describe('transformers semantics on a hand-worked probability table (tokens a=0, b=1, EOS=2)', () => {
  // P(next | generated so far); unlisted histories are uniform.
  const TABLE: Record<string, number[]> = {
    '': [0.6, 0.1, 0.3],
    a: [0.25, 0.25, 0.5],
    b: [0.05, 0.05, 0.9],
    aa: [0.98, 0.01, 0.01],
  };
  const table = (): BeamStepper & { calls: number } => {
    let histories: number[][] = [[]];
    const row = (h: number[]) => (TABLE[h.map((t) => 'ab'[t]).join('')] ?? [1 / 3, 1 / 3, 1 / 3]).map(Math.log);
    return {
      vocabSize: 3,
      calls: 0,
      first: () => Float32Array.from(row([])),
      next(parents, tokens) {
        this.calls++;
        histories = parents.map((p, i) => [...histories[p], tokens[i]]);
        return Float32Array.from(histories.flatMap(row));
      },
    };
  };
  const run = (earlyStopping: boolean | 'never', lengthPenalty: number) =>
    runBeamSearch(table(), { numBeams: 2, maxNewTokens: 3, budgetStop: 'max_new_tokens', lengthPenalty, earlyStopping, eosTokenIds: new Set([2]) });

  // Step 1: candidates a (ln .6), EOS (ln .3), b (ln .1); the first two ranks may finish: EOS
  // finishes with ln .3 / 1 = -1.204. Running: a, b.
  // Step 2: a+EOS ln .3 = -1.204, aa and ab ln .15 = -1.897, b+EOS ln .09; a+EOS ranks first and
  // finishes with -1.204 / 2 = -0.602: two finished, the set is full. Running: aa, ab.
  test('early_stopping=True stops once numBeams are finished: [a] -0.602, [] -1.204', () => {
    const found = run(true, 1);
    expect(found.map((h) => h.tokens)).toEqual([[0], []]);
    expect(found[0].score).toBeCloseTo(Math.log(0.3) / 2, 6);
    expect(found[1].score).toBeCloseTo(Math.log(0.3), 6);
  });

  // early_stopping=False: the best running beam at its length, -1.897 / 2 = -0.949, beats the worst
  // finished -1.204, so step 3 runs: aaa ln(.15 * .98) = -1.917 and aba, abb, ab+EOS ln .05 = -2.996
  // all end (the budget, or EOS); the first two ranks finish: aaa -1.917 / 3 = -0.639, aba -0.999.
  // The best two of all finished: [a] -0.602, [a, a, a] -0.639.
  test('early_stopping=False runs on while a running beam could win: [a], then [a, a, a]', () => {
    const found = run(false, 1);
    expect(found.map((h) => h.tokens)).toEqual([[0], [0, 0, 0]]);
    expect(found[1].score).toBeCloseTo(Math.log(0.15 * 0.98) / 3, 6);
    expect(found.map((h) => h.stop)).toEqual(['eos', 'max_new_tokens']);
  });

  // length_penalty 2: [a] scores ln .3 / 2^2 = -0.301 (the EOS counts in the length), [a, a, a]
  // scores -1.917 / 3^2 = -0.213 and now wins.
  test('length_penalty=2 prefers the longer hypothesis; the EOS counts in the length', () => {
    const found = run(false, 2);
    expect(found.map((h) => h.tokens)).toEqual([[0, 0, 0], [0]]);
    expect(found[0].score).toBeCloseTo(Math.log(0.15 * 0.98) / 9, 6);
    expect(found[1].score).toBeCloseTo(Math.log(0.3) / 4, 6);
  });

  test('a stop callback ends a candidate with its token kept', () => {
    const found = runBeamSearch(table(), {
      numBeams: 1, maxNewTokens: 3, budgetStop: 'max_new_tokens', lengthPenalty: 1, earlyStopping: false, eosTokenIds: new Set([2]),
      stop: (tokens) => tokens.length === 1 && tokens[0] === 0,
    });
    expect(found).toEqual([{ tokens: [0], score: expect.closeTo(Math.log(0.6), 6), stop: 'stop' }]);
  });
});

describe('cache slots', () => {
  test('first child keeps its parent\'s slot; further children copy into slots no parent uses', () => {
    // Parents in slots [2, 2, 0, 2]: slots 2 and 0 are kept by their first children, 1 and 3 are free.
    expect(assignBeamSlots([2, 2, 0, 2], 4)).toEqual({ slots: [2, 1, 0, 3], copies: [[2, 1], [2, 3]] });
    expect(assignBeamSlots([0, 1, 2], 3)).toEqual({ slots: [0, 1, 2], copies: [] });
  });
});

describe('bad input', () => {
  test('one line naming the argument', () => {
    const model = tinyModel(1);
    try {
      expect(() => beamSearch(model, [1], { numBeams: 0, maxNewTokens: 3 })).toThrow(/numBeams to be a whole number from 1 to 1024/);
      expect(() => beamSearch(model, [], { numBeams: 2, maxNewTokens: 3 })).toThrow(/prompt is empty/);
      expect(() => beamSearch(model, [9], { numBeams: 2, maxNewTokens: 3 })).toThrow(/prompt token 9 is outside \[0, 6\)/);
      expect(() => beamSearch(model, [1], { numBeams: 2, maxNewTokens: 3, lengthPenalty: NaN })).toThrow(/lengthPenalty/);
      expect(() => beamSearch(model, [1], { numBeams: 2, maxNewTokens: 3, earlyStopping: 'sometimes' as never })).toThrow(/earlyStopping/);
    } finally {
      model.free();
    }
  });

  test('the context bounds the budget: the hypotheses that reach it stop with context_full', () => {
    const model = tinyModel(2);
    try {
      // generate() with a 14-token prompt in a 16-position context makes 3 tokens (the last never run).
      const prompt = Array.from({ length: 14 }, () => 1);
      expect(generate(model, prompt, { greedy: true, maxNewTokens: 10, eosTokenId: null })).toMatchObject({ stop: 'context_full' });
      const greedyLength = generate(model, prompt, { greedy: true, maxNewTokens: 10, eosTokenId: null }).tokens.length;
      expect(greedyLength).toBe(3);
      const found = beamSearch(model, prompt, { numBeams: 2, maxNewTokens: 10, eosTokenIds: [] });
      expect(found.every((h) => h.tokens.length === greedyLength && h.stop === 'context_full')).toBe(true);
    } finally {
      model.free();
    }
  });
});
