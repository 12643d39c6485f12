/**
 * buildDatasets and the batch sources: lm.ts's window order, deterministic shuffling, exact resume,
 * validation splits, and the report's counts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildDatasets, ItemSampler, loadRecords, TextWindowSource, TokenStore } from '../../lib/data';
import type { Batch, BuildOptions } from '../../lib/data';
import { IGNORE_INDEX } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { fillWindows, WindowSampler } from '../../lib/train/lm';
import { Rng } from '../../lib/util/rng';
import { FIXTURES, TINY } from '../helpers';

const DATA = path.join(FIXTURES, 'data');
const tokenizer = loadTokenizer(TINY);
const EOS = tokenizer.eosTokenId;
let tmp: string;
let pcFile: string;
const PC_COUNT = 41;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-datasets-'));
  // Seeded prompt/completion lines of varied length; line i's prompt names i.
  const rng = new Rng(5);
  const words = ['sea', 'whale', 'ship', 'the', 'a', 'of', 'Ahab'];
  const phrase = (n: number) => Array.from({ length: n }, () => words[rng.int(words.length)]).join(' ');
  const lines = Array.from({ length: PC_COUNT }, (_, i) => JSON.stringify({ prompt: `#${i} ${phrase(1 + rng.int(6))}:`, completion: ` ${phrase(1 + rng.int(3))}` }));
  pcFile = path.join(tmp, 'pc.jsonl');
  fs.writeFileSync(pcFile, lines.join('\n') + '\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function options(over: Partial<BuildOptions>): BuildOptions {
  return { train: pcFile, tokenizer, seqLen: 80, batchSize: 3, packing: true, trainOnPrompt: false, shuffle: true, seed: 7, ...over };
}

/** The example numbers (#i in the prompt) in a batch, row by row, in order. */
function exampleIds(batch: Batch): number[] {
  const text = tokenizer.decode(Array.from(batch.inputs));
  return Array.from(text.matchAll(/#(\d+) /g), (m) => Number(m[1]));
}

function batchesOf(source: { next(): Batch }, n: number): Batch[] {
  return Array.from({ length: n }, () => source.next());
}

describe('ItemSampler', () => {
  test.each([false, true])('gives lm.ts WindowSampler\'s order (shuffle %s) over several epochs', (shuffle) => {
    const ours = new ItemSampler(7, shuffle, 11), theirs = new WindowSampler(7, shuffle, 11);
    for (let i = 0; i < 9; i++) expect(ours.next(3)).toEqual(theirs.next(3));
    expect(ours.epoch).toBe(theirs.epoch);
  });

  test('getState/setState: a restored sampler continues exactly, also mid-epoch and at an epoch end', () => {
    for (const drawnBefore of [0, 4, 7, 10]) {
      const a = new ItemSampler(7, true, 3);
      a.next(drawnBefore);
      const saved = JSON.parse(JSON.stringify(a.getState()));
      const expected = a.next(20);
      const b = new ItemSampler(7, true, 3);
      b.next(1);
      b.setState(saved);
      expect(b.next(20)).toEqual(expected);
    }
  });

  test('a state from other data is refused', () => {
    const state = new ItemSampler(7, true, 3).getState();
    expect(() => new ItemSampler(8, true, 3).setState(state)).toThrow('saved for 7 items (shuffle true) but the data now has 8');
  });
});

describe('plain text', () => {
  const textFile = path.join(FIXTURES, 'eval-text.txt');

  test('windows are those of lm.ts (fillWindows + WindowSampler), shuffled or not', () => {
    const ids = Int32Array.from(tokenizer.encode(fs.readFileSync(textFile, 'utf8')));
    for (const shuffle of [false, true]) {
      const { train, report } = buildDatasets(options({ train: textFile, shuffle, seqLen: 16, batchSize: 5 }));
      const count = Math.floor((ids.length - 1) / 16);
      expect(train.itemsPerEpoch).toBe(count);
      expect(report.trainSplit.tokens).toBe(ids.length);
      const sampler = new WindowSampler(count, shuffle, 7);
      for (let step = 0; step < count; step++) {
        const batch = train.next();
        const inputs = new Int32Array(5 * 16), targets = new Int32Array(5 * 16);
        fillWindows(ids, 16, sampler.next(5), inputs, targets);
        expect(batch.inputs).toEqual(inputs);
        expect(batch.targets).toEqual(targets);
        expect(batch.scoredTokens).toBe(5 * 16);
      }
    }
  });

  test('a folder: documents joined by EOS, in name order', () => {
    const { train } = buildDatasets(options({ train: path.join(DATA, 'docs'), shuffle: false, seqLen: 8, batchSize: 1 }));
    const docs = ['a.txt', 'b.txt', 'c.txt'].map((f) => tokenizer.encode(fs.readFileSync(path.join(DATA, 'docs', f), 'utf8')));
    const expected = [...docs[0], EOS, ...docs[1], EOS, ...docs[2]];
    const stream: number[] = [];
    for (let w = 0; w < train.itemsPerEpoch; w++) {
      const b = train.next();
      stream.push(...b.inputs);
      if (w === train.itemsPerEpoch - 1) stream.push(b.targets[7]);
    }
    expect(stream).toEqual(expected.slice(0, stream.length));
    expect(stream.length).toBe(Math.floor((expected.length - 1) / 8) * 8 + 1);
  });

  test('validation fraction: the tail of the stream, every validation token but the first scored once', () => {
    const ids = tokenizer.encode(fs.readFileSync(textFile, 'utf8'));
    const { validation, report } = buildDatasets(options({ train: textFile, validationFraction: 0.25, seqLen: 16, batchSize: 4 }));
    const held = Math.round(ids.length * 0.25);
    expect(report.trainSplit.tokens).toBe(ids.length - held);
    expect(report.validationSplit!.tokens).toBe(held);
    const tail = ids.slice(ids.length - held);
    const scoredTargets: number[] = [];
    for (const b of validation) for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== IGNORE_INDEX) scoredTargets.push(b.targets[i]);
    expect(scoredTargets).toEqual(tail.slice(1));
    expect(validation.slice(0, -1).every((b) => b.B === 4)).toBe(true);
  });

  test('resume: setState(getState()) continues with the same batches', () => {
    const a = buildDatasets(options({ train: textFile, seqLen: 16, batchSize: 3 })).train;
    batchesOf(a, 5);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const expected = batchesOf(a, 8);
    const b = buildDatasets(options({ train: textFile, seqLen: 16, batchSize: 3 })).train;
    b.setState(state);
    expect(batchesOf(b, 8)).toEqual(expected);
  });

  test('too little text for one window is an error that says so', () => {
    const store = TokenStore.from([1, 2, 3], 350);
    expect(() => new TextWindowSource(store, 1, 3, false, 0)).toThrow('has 3 tokens, fewer than seq_len + 1 = 4');
  });
});

describe('examples', () => {
  test('every training example appears once per epoch; the same seed gives the same batches, another seed others', () => {
    const a = buildDatasets(options({}));
    const seen = batchesOf(a.train, a.train.batchesPerEpoch).flatMap(exampleIds);
    // The epoch's last batch may take rows from the next epoch: count the first epoch's rows only.
    const firstEpoch = seen.slice(0, a.report.trainSplit.examples);
    expect(new Set(firstEpoch).size).toBe(a.report.trainSplit.examples);
    const again = buildDatasets(options({}));
    const other = buildDatasets(options({ seed: 8 }));
    const firstBatches = (d: typeof a) => batchesOf(d.train, 3).map((b) => Array.from(b.inputs));
    const reference = firstBatches(buildDatasets(options({})));
    expect(firstBatches(again)).toEqual(reference);
    expect(firstBatches(other)).not.toEqual(reference);
  });

  test('without shuffle and packing: examples in file order, one per row, padded', () => {
    const { train, report } = buildDatasets(options({ shuffle: false, packing: false }));
    expect(train.itemsPerEpoch).toBe(PC_COUNT);
    expect(batchesOf(train, 2).flatMap(exampleIds)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(report.trainSplit.rows).toBe(PC_COUNT);
    expect(report.trainSplit.paddingTokens).toBe(PC_COUNT * 80 - report.trainSplit.tokens);
    expect(report.trainSplit.truncatedExamples).toBe(0);
  });

  test('validation fraction: a seeded subset, disjoint from training, in file order, fixed', () => {
    const d = buildDatasets(options({ validationFraction: 0.2 }));
    const validationIds = d.validation.flatMap(exampleIds);
    expect(validationIds.length).toBe(Math.round(PC_COUNT * 0.2));
    expect(validationIds).toEqual([...validationIds].sort((x, y) => x - y));
    expect(buildDatasets(options({ validationFraction: 0.2 })).validation).toEqual(d.validation);
    const trainIds = new Set(batchesOf(d.train, d.train.batchesPerEpoch).flatMap(exampleIds));
    for (const v of validationIds) expect(trainIds.has(v)).toBe(false);
    expect(trainIds.size + validationIds.length).toBe(PC_COUNT);
    expect(d.report.validationSplit!.examples).toBe(validationIds.length);
  });

  test('a separate validation file: batches of B rows in order, the last one smaller; overlap counted', () => {
    const file = path.join(DATA, 'classification.jsonl');
    const d = buildDatasets(options({ train: file, validation: file, packing: false, batchSize: 2, seqLen: 64 }));
    expect(d.validation.map((b) => b.B)).toEqual([2, 2, 1]);
    expect(d.report.validationOverlap).toBe(5);
    expect(d.labels).toEqual(['2', '10', 'negative', 'positive']);
    expect(d.report.labelCounts).toEqual({ 2: 1, 10: 1, negative: 1, positive: 2 });
    // Row b of the first batch is record b, rendered with the default template, then EOS.
    const { records } = loadRecords(file);
    const first = records[0].kind === 'classification' ? records[0] : null;
    const expected = [...tokenizer.encode(`Text: ${first!.text}\nLabel:`), ...tokenizer.encode(` ${first!.label}`), EOS];
    expect(Array.from(d.validation[0].inputs.subarray(0, expected.length))).toEqual(expected);
  });

  test('truncation is counted in the report', () => {
    const d = buildDatasets(options({ seqLen: 12, packing: false, shuffle: false }));
    const lengths = loadRecords(pcFile).records.map((r) => r.kind === 'prompt_completion' ? tokenizer.encode(r.prompt).length + tokenizer.encode(r.completion).length + 1 : 0);
    const over = lengths.filter((n) => n > 12);
    expect(over.length).toBeGreaterThan(0);
    expect(d.report.trainSplit.truncatedExamples).toBe(over.length);
    expect(d.report.trainSplit.truncatedTokens).toBe(over.reduce((s, n) => s + n - 12, 0));
    expect(d.report.trainSplit.tokens).toBe(lengths.reduce((s, n) => s + Math.min(n, 12), 0));
  });

  test('resume: a restored source gives the same batches as one that ran on', () => {
    const a = buildDatasets(options({})).train;
    batchesOf(a, a.batchesPerEpoch + 2);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const expected = batchesOf(a, 10);
    const b = buildDatasets(options({})).train;
    b.setState(state);
    expect(batchesOf(b, 10)).toEqual(expected);
  });

  test('skipInvalid: bad lines are skipped and listed in the report; without it nothing is built', () => {
    const file = path.join(tmp, 'some-bad.jsonl');
    fs.writeFileSync(file, [fs.readFileSync(pcFile, 'utf8').trim(), '{"prompt": "p"}', 'not json'].join('\n') + '\n');
    expect(() => buildDatasets(options({ train: file }))).toThrow(`${file}:${PC_COUNT + 1}: missing field "completion"`);
    const d = buildDatasets(options({ train: file, skipInvalid: true }));
    expect(d.report.skipped.map((s) => s.line)).toEqual([PC_COUNT + 1, PC_COUNT + 2]);
    expect(d.report.trainSplit.examples).toBe(PC_COUNT);
  });

  test('option errors', () => {
    expect(() => buildDatasets(options({ validation: pcFile, validationFraction: 0.1 }))).toThrow('not both');
    expect(() => buildDatasets(options({ validationFraction: 1 }))).toThrow('validationFraction must be in (0, 1) but is 1');
    expect(() => buildDatasets(options({ validation: path.join(DATA, 'chat.jsonl') }))).toThrow('holds chat data but the training file');
    expect(() => buildDatasets(options({ train: path.join(tmp, 'missing.jsonl') }))).toThrow('missing.jsonl: file not found');
  });
});
