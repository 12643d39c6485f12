/** `gptune data inspect`: the report's numbers, and the command's output and errors. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspectData, lengthHistogram, loadRecords, renderRecord } from '../../lib/data';
import { main } from '../../lib/cli/main';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, TINY } from '../helpers';

const DATA = path.join(FIXTURES, 'data');
const tokenizer = loadTokenizer(TINY);
let tmp: string;
let trainFile: string;
let validationFile: string;

const line = (text: string, label: string | number) => JSON.stringify({ text, label });

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-inspect-'));
  trainFile = path.join(tmp, 'train.jsonl');
  fs.writeFileSync(trainFile, [
    line('the whale', 'animal'), line('the ship', 'thing'), line('the whale', 'animal'), // an exact duplicate
    line('the whale', 'thing'), // the same text with another label
    line('a very long text about the sea and the ship and the whale and Ahab', 'thing'),
    line('Ishmael', 'person'), '',
  ].join('\n') + '\n');
  validationFile = path.join(tmp, 'validation.jsonl');
  fs.writeFileSync(validationFile, [line('the ship', 'thing'), line('Ishmael', 'animal'), line('new', 'thing')].join('\n') + '\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Each example's token count by hand: rendered prompt and completion encoded apart, plus EOS. */
function referenceLengths(file: string): number[] {
  return loadRecords(file).records.map((r) => {
    const { prompt, completion } = renderRecord(r);
    return tokenizer.encode(prompt).length + tokenizer.encode(completion).length + 1;
  });
}

describe('inspectData', () => {
  test('classification: counts, lengths, truncation at seq_len, labels, duplicates and validation overlap', () => {
    const seqLen = 30;
    const r = inspectData(trainFile, { tokenizer, seqLen, validation: validationFile });
    const lengths = referenceLengths(trainFile);
    expect(r.kind).toBe('classification');
    expect(r.examples).toBe(6);
    expect(r.blankLines).toBe(1);
    expect(r.tokens).toBe(lengths.reduce((s, n) => s + n, 0));
    expect(r.lengths.max).toBe(Math.max(...lengths));
    expect(r.lengths.min).toBe(Math.min(...lengths));
    expect(r.truncatedExamples).toBe(lengths.filter((n) => n > seqLen).length);
    expect(r.truncatedExamples).toBe(1);
    expect(r.truncatedTokens).toBe(lengths.filter((n) => n > seqLen).reduce((s, n) => s + n - seqLen, 0));
    expect(r.histogram.reduce((s, b) => s + b.count, 0)).toBe(6);
    expect(r.labelCounts).toEqual({ animal: 2, person: 1, thing: 3 });
    expect(r.duplicates).toBe(1);
    expect(r.conflictingLabels).toBe(1);
    expect(r.validationExamples).toBe(3);
    expect(r.inValidation).toBe(1); // "the ship"/thing; "Ishmael" has another label there
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    // Trained tokens: the label's tokens and the EOS of every example.
    const trained = loadRecords(trainFile).records.reduce((s, rec) => s + tokenizer.encode(renderRecord(rec).completion).length + 1, 0);
    expect(r.trainedTokens).toBe(trained);
  });

  test('plain text: documents, the token stream and the windows at seq_len', () => {
    const r = inspectData(path.join(DATA, 'docs'), { tokenizer, seqLen: 8 });
    const docs = ['a.txt', 'b.txt', 'c.txt'].map((f) => tokenizer.encode(fs.readFileSync(path.join(DATA, 'docs', f), 'utf8')).length);
    const tokens = docs.reduce((s, n) => s + n, 0) + 2;
    expect(r).toMatchObject({ kind: 'text', examples: 3, tokens, windows: Math.floor((tokens - 1) / 8), truncatedExamples: 0, duplicates: 0 });
    expect(r.lengths.max).toBe(Math.max(...docs));
  });

  test('plain text: repeated non-blank lines and lines shared with the validation text', () => {
    const train = path.join(tmp, 'train.txt'), validation = path.join(tmp, 'valid.txt');
    fs.writeFileSync(train, 'Call me Ishmael.\nIt was cold.\n\n\nCall me Ishmael.\n  It was cold.  \nThe end');
    fs.writeFileSync(validation, 'The end\nsomething else\n');
    const r = inspectData(train, { tokenizer, seqLen: 16, validation });
    expect(r.duplicates).toBe(2);
    expect(r.inValidation).toBe(1);
  });

  test('invalid lines stop the inspection unless skipped, and skipped ones are listed', () => {
    const file = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(file, [line('ok', 'a'), '{"text": "x"}', line('fine', 'b')].join('\n'));
    expect(() => inspectData(file, { tokenizer, seqLen: 16 })).toThrow(`${file}:2: missing field "label"`);
    const r = inspectData(file, { tokenizer, seqLen: 16, skipInvalid: true });
    expect(r.examples).toBe(2);
    expect(r.skipped.map((s) => s.line)).toEqual([2]);
  });

  test('the histogram has doubling bins with seq_len as an edge', () => {
    expect(lengthHistogram([3, 16, 17, 40, 100], 50)).toEqual([
      { min: 0, max: 16, count: 2 }, { min: 17, max: 32, count: 1 }, { min: 33, max: 50, count: 1 },
      { min: 51, max: 64, count: 0 }, { min: 65, max: 128, count: 1 },
    ]);
    expect(lengthHistogram([3000, 2500], 256)).toEqual([{ min: 2049, max: 4096, count: 2 }]);
  });
});

describe('gptune data inspect', () => {
  async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '', stderr = '';
    const outSpy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { stdout += String(s); return true; });
    const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { stderr += String(s); return true; });
    try {
      const code = await main(args);
      return { code, stdout, stderr };
    } finally {
      outSpy.mockRestore();
      errSpy.mockRestore();
    }
  }

  test('--json prints one JSON line with the report; seq_len defaults to the model\'s n_positions', async () => {
    const { code, stdout } = await run(['data', 'inspect', trainFile, '--model', TINY, '--validation', validationFile, '--json']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0]);
    expect(report).toMatchObject({ kind: 'classification', examples: 6, seq_len: 64, duplicates: 1, in_validation: 1, tokenizer: `bpe:${TINY}` });
    // snake_case like every other --json output, at every level (label_counts' keys are the data's labels).
    const keys = (o: unknown): string[] => (typeof o !== 'object' || o === null ? [] : Object.entries(o).flatMap(([k, x]) => (k === 'label_counts' ? [k] : [k, ...keys(x)])));
    expect(keys(report).filter((k) => /[A-Z]/.test(k))).toEqual([]);
    expect(Object.keys(report)).toEqual(expect.arrayContaining(['trained_tokens', 'truncated_examples', 'truncated_tokens', 'label_counts', 'blank_lines', 'tokens_per_second']));
  });

  test('the text report names the numbers a person checks', async () => {
    const { code, stdout } = await run(['data', 'inspect', trainFile, '--model', TINY, '--seq-len', '30']);
    expect(code).toBe(0);
    expect(stdout).toContain('examples: 6');
    expect(stdout).toContain('seq_len 30: 1 examples would be truncated');
    expect(stdout).toMatch(/"thing"\s+3\s+50\.0%/);
    expect(stdout).toContain('exact duplicates: 1');
    expect(stdout).toContain('length histogram');
    expect(stdout).toMatch(/tokenisation: \d+ tokens\/s/);
  });

  test('a bad line: one line on stderr naming file and line, exit 1; usage errors exit 2', async () => {
    const file = path.join(tmp, 'bad2.jsonl');
    fs.writeFileSync(file, '{"prompt": "p", "completion": ""}\n');
    const bad = await run(['data', 'inspect', file, '--model', TINY]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`gptune data: ${file}:1: field "completion" is empty: there is nothing to train on\n`);
    expect((await run(['data', 'inspect'])).code).toBe(2);
    expect((await run(['data', 'show', trainFile])).stderr).toContain("unknown subcommand 'show'");
    expect((await run(['data', 'inspect', path.join(tmp, 'nope.jsonl')])).stderr).toContain('nope.jsonl: file not found');
  });
});
