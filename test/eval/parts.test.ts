/** The small pieces: line reading, deltas of two results, the seeded choice and the review formats. */
import * as fs from 'fs';
import * as path from 'path';
import { chooseExamples, formatComparison, formatReviewJsonl, formatReviewMarkdown, numericDelta, readLines, ReviewEntry, scoreLines, writeReview } from '../../lib/eval';
import { tempDir } from '../helpers';

const dir = tempDir('gptune-eval-parts-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('readLines: a final line break adds no line; CRLF is one break; an empty file has no lines', () => {
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  expect(readLines(write('a', 'x\ny\n'), '--pred')).toEqual(['x', 'y']);
  expect(readLines(write('b', 'x\r\ny'), '--pred')).toEqual(['x', 'y']);
  expect(readLines(write('c', 'x\n\n'), '--pred')).toEqual(['x', '']); // an empty last example stays
  expect(readLines(write('d', ''), '--pred')).toEqual([]);
  expect(() => readLines(dir, '--ref')).toThrow(/--ref .*: expected a text file but found a folder/);
});

test('scoreLines refuses empty input and ragged streams', () => {
  expect(() => scoreLines('bleu', [], [[]])).toThrow(/predictions are empty/);
  expect(() => scoreLines('rouge', ['a', 'b'], [['a']])).toThrow(/reference stream 1 has 1 lines but there are 2 predictions/);
});

test('numericDelta: b - a over shared numeric leaves, nested objects included, arrays and texts left out', () => {
  const a = { accuracy: 0.5, model: 'x', rouge1: { p: 0.1, r: 0.2, f: 0.3 }, precisions: [1, 2], only_a: 3 };
  const b = { accuracy: 0.75, model: 'y', rouge1: { p: 0.4, r: 0.2, f: 0.5 }, precisions: [3, 4], only_b: 1 };
  const d = numericDelta(a, b) as Record<string, any>;
  expect(Object.keys(d).sort()).toEqual(['accuracy', 'rouge1']);
  expect(d.accuracy).toBe(0.25);
  expect(d.rouge1.p).toBeCloseTo(0.3, 15);
  expect(d.rouge1.r).toBe(0);
  const table = formatComparison({ a, b, delta: d }, ['A', 'B'], ['accuracy', 'rouge1.f', 'missing']);
  expect(table.split('\n')).toEqual([
    '               A       B    delta',
    'accuracy  0.5000  0.7500  +0.2500',
    'rouge1.f  0.3000  0.5000  +0.2000',
  ]);
});

test('chooseExamples: n distinct indices in file order, fixed by the seed; all of them when n >= count', () => {
  const a = chooseExamples(100, 7, 3);
  expect(a).toHaveLength(7);
  expect(new Set(a).size).toBe(7);
  expect(a).toEqual([...a].sort((x, y) => x - y));
  expect(a.every((i) => i >= 0 && i < 100)).toBe(true);
  expect(chooseExamples(100, 7, 3)).toEqual(a);
  expect(chooseExamples(100, 7, 4)).not.toEqual(a);
  expect(chooseExamples(5, 9, 0)).toEqual([0, 1, 2, 3, 4]);
});

describe('review files', () => {
  const entries: ReviewEntry[] = [
    { index: 0, line: 1, prompt: 'Q: code?\nA:', output: ' use ``` fences', reference: ' ````text````', stop: 'eos' },
    { index: 4, line: 7, prompt: 'p', output: '', reference: 'r', stop: 'newline', predicted_label: 'red' },
  ];

  test('markdown: a section per example; fences longer than any backtick run inside', () => {
    const md = formatReviewMarkdown(entries, { model: 'm' });
    expect(md).toContain('- model: m');
    expect(md.match(/^## Example/gm)).toHaveLength(2);
    expect(md).toContain('## Example 5 (line 7)');
    expect(md).toContain('`````text\n ````text````\n`````'); // 4 backticks inside -> 5 outside
    expect(md).toContain('**Predicted label** (likelihood): red');
  });

  test('jsonl: one object per entry', () => {
    const lines = formatReviewJsonl(entries).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual(entries);
  });

  test('writeReview picks the format from the extension and writes atomically', () => {
    const md = path.join(dir, 'r.md');
    writeReview(md, entries);
    expect(fs.readFileSync(md, 'utf8')).toBe(formatReviewMarkdown(entries, {}));
    writeReview(path.join(dir, 'r.jsonl'), entries);
    expect(fs.readFileSync(path.join(dir, 'r.jsonl'), 'utf8')).toBe(formatReviewJsonl(entries));
    expect(() => writeReview(path.join(dir, 'r.txt'), entries)).toThrow(/expected a \.md or \.jsonl file name/);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('r.') || f.startsWith('.r.')).sort()).toEqual(['r.jsonl', 'r.md']);
  });
});
