/**
 * Masking, truncation, packing and padding, checked against targets built by hand from separately
 * encoded prompts and completions; and, with the tiny model, that a packed row gives each example
 * exactly the losses it gets alone (no attention or position leaks across examples).
 */
import { buildRowBatch, ExampleStore, layoutRows, renderSegments, scoredTargets, tokenizeSegments, truncateExample } from '../../lib/data';
import type { Batch, DataRecord, TokenizedExample } from '../../lib/data';
import { loadModel } from '../../lib/model/checkpoint';
import { IGNORE_INDEX } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { Rng } from '../../lib/util/rng';
import { TINY } from '../helpers';

const tokenizer = loadTokenizer(TINY); // vocab 350, EOS 349
const EOS = tokenizer.eosTokenId;
const at = { file: 'mem', line: 1 };

function pc(prompt: string, completion: string): DataRecord {
  return { kind: 'prompt_completion', prompt, completion, ...at };
}

/** The reference: prompt ids, completion ids, EOS; the target at i is token i+1 when it is not a prompt token. */
function referenceTargets(prompt: string, completion: string, trainOnPrompt: boolean): { tokens: number[]; targets: number[] } {
  const p = tokenizer.encode(prompt), c = tokenizer.encode(completion);
  const tokens = [...p, ...c, EOS];
  const targets = tokens.map((_, i) => (i + 1 < tokens.length && (trainOnPrompt || i + 1 >= p.length) ? tokens[i + 1] : IGNORE_INDEX));
  return { tokens, targets };
}

function storeOf(examples: TokenizedExample[]): ExampleStore {
  const store = new ExampleStore();
  for (const e of examples) store.add(e);
  return store;
}

/** Seeded prompt/completion pairs of awkward lengths. */
function randomRecords(count: number, seed: number): DataRecord[] {
  const rng = new Rng(seed);
  const words = ['the', 'sea', 'whale', 'and', 'Ishmael', 'ship', 'of', 'a', 'to', 'in', 'it', 'that'];
  const phrase = (n: number) => Array.from({ length: n }, () => words[rng.int(words.length)]).join(' ');
  return Array.from({ length: count }, (_, i) => pc(`Q${i}: ${phrase(1 + rng.int(5))}\nA:`, ` ${phrase(1 + rng.int(4))}`));
}

describe('masking', () => {
  test.each([false, true])('targets equal the hand-built reference (trainOnPrompt %s)', (trainOnPrompt) => {
    const records: Array<[string, string]> = [['Q: the sea?\nA:', ' whale'], ['', 'Only a completion'], ['x', ' y z']];
    const examples = records.map(([p, c]) => tokenizeSegments(renderSegments(pc(p, c)), tokenizer, trainOnPrompt));
    const T = Math.max(...examples.map((e) => e.tokens.length)) + 3; // room for padding
    const batch = buildRowBatch(storeOf(examples), [[0], [1], [2]], T, EOS, false);
    let scored = 0;
    records.forEach(([p, c], b) => {
      const ref = referenceTargets(p, c, trainOnPrompt);
      const pad = T - ref.tokens.length;
      expect(Array.from(batch.inputs.subarray(b * T, (b + 1) * T))).toEqual([...ref.tokens, ...Array(pad).fill(EOS)]);
      expect(Array.from(batch.targets.subarray(b * T, (b + 1) * T))).toEqual([...ref.targets, ...Array(pad).fill(IGNORE_INDEX)]);
      scored += ref.targets.filter((t) => t !== IGNORE_INDEX).length;
    });
    expect(batch.scoredTokens).toBe(scored);
    expect(batch.positions).toBeNull();
    expect(batch.segmentIds).toBeNull();
    // The EOS is a target: the model learns to stop.
    expect(batch.targets[examples[0].tokens.length - 2]).toBe(EOS);
  });

  test('chat: only assistant turns with weight 1 and the EOS are targets', () => {
    const record: DataRecord = {
      kind: 'chat', ...at,
      messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'sea', weight: 0 }, { role: 'user', content: 'more' }, { role: 'assistant', content: 'whale' }],
    };
    const ex = tokenizeSegments(renderSegments(record), tokenizer, false);
    const batch = buildRowBatch(storeOf([ex]), [[0]], ex.tokens.length, EOS, false);
    const targetIds = Array.from(batch.targets).filter((t) => t !== IGNORE_INDEX);
    expect(targetIds).toEqual([...tokenizer.encode('whale'), EOS]);
    expect(scoredTargets(ex.trained)).toBe(targetIds.length);
  });
});

describe('truncation', () => {
  const ex = tokenizeSegments(renderSegments(pc('the sea and the whale and the ship', ' to Ishmael')), tokenizer, false);
  const promptLength = ex.trained.indexOf(1);

  test('cuts the start of the prompt first: the completion and EOS survive', () => {
    const keep = ex.tokens.length - 3;
    const { example, removed } = truncateExample(ex, keep);
    expect(removed).toBe(3);
    expect(Array.from(example.tokens)).toEqual(Array.from(ex.tokens.slice(3)));
    expect(scoredTargets(example.trained)).toBe(scoredTargets(ex.trained));
  });

  test('a completion longer than the limit keeps one prompt token and loses its end', () => {
    const completionLength = ex.tokens.length - promptLength;
    const { example, removed } = truncateExample(ex, completionLength - 1);
    expect(removed).toBe(ex.tokens.length - (completionLength - 1));
    expect(example.tokens.length).toBe(completionLength - 1);
    expect(example.tokens[0]).toBe(ex.tokens[promptLength - 1]);
    expect(example.trained[0]).toBe(0);
    expect(Array.from(example.tokens.subarray(1))).toEqual(Array.from(ex.tokens.subarray(promptLength, promptLength + completionLength - 2)));
  });

  test('everything trained (trainOnPrompt): keeps the first tokens', () => {
    const all = tokenizeSegments(renderSegments(pc('the sea and the whale', ' to Ishmael')), tokenizer, true);
    const { example } = truncateExample(all, 5);
    expect(Array.from(example.tokens)).toEqual(Array.from(all.tokens.subarray(0, 5)));
  });

  test('an example that fits is untouched', () => {
    expect(truncateExample(ex, ex.tokens.length)).toEqual({ example: ex, removed: 0 });
  });
});

/** Checks the packed layout of one batch against the examples it holds. */
function checkPackedRows(batch: Batch, store: ExampleStore, rows: number[][]): void {
  const { T } = batch;
  rows.forEach((row, b) => {
    let offset = b * T;
    const segmentsSeen = new Set<number>();
    for (const e of row) {
      const { tokens, trained } = store.get(e);
      const segment = batch.segmentIds![offset];
      expect(segmentsSeen.has(segment)).toBe(false);
      segmentsSeen.add(segment);
      for (let i = 0; i < tokens.length; i++) {
        expect(batch.inputs[offset + i]).toBe(tokens[i]);
        expect(batch.positions![offset + i]).toBe(i);
        expect(batch.segmentIds![offset + i]).toBe(segment);
        const target = i + 1 < tokens.length && trained[i + 1] ? tokens[i + 1] : IGNORE_INDEX;
        expect(batch.targets[offset + i]).toBe(target);
      }
      offset += tokens.length;
    }
    // Padding: EOS inputs, no targets, a segment of its own.
    for (let i = offset; i < (b + 1) * T; i++) {
      expect(batch.inputs[i]).toBe(EOS);
      expect(batch.targets[i]).toBe(IGNORE_INDEX);
      expect(segmentsSeen.has(batch.segmentIds![i])).toBe(false);
      expect(batch.positions![i]).toBe(i - offset);
    }
  });
}

describe('packing', () => {
  const records = randomRecords(23, 3);
  const examples = records.map((r) => tokenizeSegments(renderSegments(r), tokenizer, false));
  const store = storeOf(examples);
  const T = 64;

  test('greedy in order: rows hold whole examples, at most T tokens, and every example once', () => {
    const order = Array.from({ length: store.count }, (_, i) => i);
    const rows = layoutRows(store, order, T, true);
    expect(rows.flat()).toEqual(order);
    for (const [r, row] of rows.entries()) {
      const used = row.reduce((s, e) => s + store.length(e), 0);
      expect(used).toBeLessThanOrEqual(T);
      // Greedy: the next row's first example did not fit here.
      if (r + 1 < rows.length) expect(used + store.length(rows[r + 1][0])).toBeGreaterThan(T);
    }
    expect(rows.length).toBeLessThan(store.count / 2); // short examples share rows
  });

  test('segment ids, positions, targets and padding of each packed row', () => {
    const rows = layoutRows(store, Array.from({ length: store.count }, (_, i) => i), T, true);
    const batch = buildRowBatch(store, rows, T, EOS, true);
    checkPackedRows(batch, store, rows);
    expect(batch.scoredTokens).toBe(examples.reduce((s, e) => s + scoredTargets(e.trained), 0));
  });

  test('an example longer than T must be truncated before packing', () => {
    expect(() => layoutRows(store, [0], 3, true)).toThrow('more than T = 3; truncate first');
  });
});

describe('with the tiny model', () => {
  const model = loadModel(TINY);
  afterAll(() => model.free());
  const records = randomRecords(9, 17);
  const examples = records.map((r) => tokenizeSegments(renderSegments(r), tokenizer, true));
  const store = storeOf(examples);
  const T = 64;

  /** Per-position losses of each example run alone (B=1, T=its length). */
  const alone = examples.map((e) => {
    const targets = new Int32Array(e.tokens.length).fill(IGNORE_INDEX);
    for (let i = 0; i + 1 < e.tokens.length; i++) targets[i] = e.tokens[i + 1];
    return Float32Array.from(model.forward(e.tokens, 1, e.tokens.length, targets).losses);
  });

  /** Largest |packed loss - alone loss| over every example of the batch. */
  function maxDifference(batch: Batch, rows: number[][], opts: { positions: Int32Array | null; segmentIds: Int32Array | null }): number {
    const { losses } = model.forward(batch.inputs, batch.B, batch.T, batch.targets, opts);
    let worst = 0;
    rows.forEach((row, b) => {
      let offset = b * batch.T;
      for (const e of row) {
        const n = store.length(e);
        for (let i = 0; i + 1 < n; i++) worst = Math.max(worst, Math.abs(losses[offset + i] - alone[e][i]));
        offset += n;
      }
    });
    return worst;
  }

  // Tolerance: the same float32 arithmetic on the same values; only the attention's summation may
  // be blocked differently over a longer row (masked keys add exact zeros), so differences are a
  // few ulps of losses ~6 (ulp 5e-7). A cross-example leak changes losses by > 1e-2 (see below).
  const TOLERANCE = 2e-5;

  test('a packed batch gives every example the losses it has alone', () => {
    const rows = layoutRows(store, Array.from({ length: store.count }, (_, i) => i), T, true);
    expect(rows.some((r) => r.length >= 3)).toBe(true);
    const batch = buildRowBatch(store, rows, T, EOS, true);
    expect(maxDifference(batch, rows, { positions: batch.positions, segmentIds: batch.segmentIds })).toBeLessThan(TOLERANCE);
    // The check can fail: without segments and positions the later examples see the earlier ones.
    expect(maxDifference(batch, rows, { positions: null, segmentIds: null })).toBeGreaterThan(1e-2);
    // Positions alone are not enough: attention must stop at the boundary too.
    expect(maxDifference(batch, rows, { positions: batch.positions, segmentIds: null })).toBeGreaterThan(1e-2);
  });

  test('a padded batch (one example per row) gives the same losses too', () => {
    const rows = Array.from({ length: store.count }, (_, i) => [i]);
    const batch = buildRowBatch(store, rows, T, EOS, false);
    expect(maxDifference(batch, rows, { positions: null, segmentIds: null })).toBeLessThan(TOLERANCE);
  });
});
