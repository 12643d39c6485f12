/** auditSplits: balance, lengths, duplicates and leakage with file:line, PII per line; redactFile. */
import * as fs from 'fs';
import * as path from 'path';
import { auditSplits, auditSummaryLines, loadRecords, redactFile, renderRecord } from '../../lib/data';
import type { AuditSplit, DataRecord } from '../../lib/data';
import { loadTokenizer } from '../../lib/tokenizer';
import { tempDir, TINY } from '../helpers';

const tokenizer = loadTokenizer(TINY);
let tmp: string;
beforeAll(() => { tmp = tempDir('gptune-audit-'); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, lines: string[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
const cls = (text: string, label: string) => JSON.stringify({ text, label });
const split = (name: string, file: string): AuditSplit => ({ name, file, records: loadRecords(file).records });

// Twelve words; changing the last word keeps 9 of the 10 3-word shingles of each: Jaccard 9/11 = 0.818.
const LONG = 'the committee will review every proposal submitted before the end of march';
const LONG_EDITED = 'the committee will review every proposal submitted before the end of april';
// Ten words; changing the last keeps 7 of 8 shingles: Jaccard 7/9 = 0.778, below 0.8.
const SHORT = 'please send the signed contract back to our office today';
const SHORT_EDITED = 'please send the signed contract back to our office tomorrow';

describe('auditSplits', () => {
  let train: string, validation: string, testFile: string;
  beforeAll(() => {
    train = write('train.jsonl', [
      cls(LONG, 'ham'), cls('Win a FREE cruise now', 'spam'), cls('win a free   cruise NOW', 'spam'), // 3: same normalized text as 2
      cls(SHORT, 'ham'), '', cls('Lunch at noon?', 'ham'), cls(LONG_EDITED, 'ham'), // 7: near 1 within train
    ]);
    validation = write('validation.jsonl', [cls('Lunch at noon?', 'ham'), cls(SHORT_EDITED, 'ham'), cls('cheap pills', 'spam')]);
    testFile = write('test.jsonl', [cls('the committee will review every proposal submitted before the end of june', 'ham'), cls('unrelated words entirely here', 'ham')]);
  });

  test('exact and near duplicates within and across splits, each with file:line', () => {
    const r = auditSplits([split('train', train), split('validation', validation), split('test', testFile)]);
    expect(r.duplicates.within).toEqual({ train: { exact: 1, near: 1 }, validation: { exact: 0, near: 0 }, test: { exact: 0, near: 0 } });
    expect(r.duplicates.across).toEqual([
      { a: 'train', b: 'validation', exact: 1, near: 0 }, // "Lunch at noon?"; SHORT/SHORT_EDITED are 0.778
      { a: 'train', b: 'test', exact: 0, near: 2 }, // LONG and LONG_EDITED each 0.818 to the test line
      { a: 'validation', b: 'test', exact: 0, near: 0 },
    ]);
    expect(r.leakage).toEqual({ found: true, exact: 1, near: 2 });
    const groups = r.duplicates.exact_groups.map((g) => g.locations.map((l) => `${path.basename(l.file)}:${l.line}`));
    expect(groups).toEqual([['train.jsonl:2', 'train.jsonl:3'], ['train.jsonl:6', 'validation.jsonl:1']]);
    const pairs = r.duplicates.near_pairs.map((p) => [`${p.a.split}:${p.a.line}`, `${p.b.split}:${p.b.line}`, p.jaccard]);
    expect(pairs).toEqual(expect.arrayContaining([['train:1', 'train:7', 9 / 11], ['train:1', 'test:1', 9 / 11], ['train:7', 'test:1', 9 / 11]]));
    expect(pairs).toHaveLength(3);
    expect(r.settings).toMatchObject({ near_threshold: 0.8, shingles: { unit: 'word', k: 3 }, permutations: 128, bands: 32, rows_per_band: 4 });
  });

  test('a lower threshold reports the 0.778 pair; the report is plain JSON', () => {
    const r = auditSplits([split('train', train), split('validation', validation)], { nearThreshold: 0.75 });
    expect(r.duplicates.across[0]).toEqual({ a: 'train', b: 'validation', exact: 1, near: 1 });
    expect(r.duplicates.near_pairs).toEqual(expect.arrayContaining([expect.objectContaining({ jaccard: 7 / 9, a: expect.objectContaining({ line: 4 }), b: expect.objectContaining({ line: 2 }) })]));
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  test('class balance per split: counts, max/min ratio, a label a split lacks', () => {
    const r = auditSplits([split('train', train), split('validation', validation), split('test', testFile)]);
    expect(r.balance).toEqual({
      labels: ['ham', 'spam'],
      splits: [
        { split: 'train', counts: { ham: 4, spam: 2 }, imbalance_ratio: 2, missing_labels: [] },
        { split: 'validation', counts: { ham: 2, spam: 1 }, imbalance_ratio: 2, missing_labels: [] },
        { split: 'test', counts: { ham: 2, spam: 0 }, imbalance_ratio: null, missing_labels: ['spam'] },
      ],
    });
    const lines = auditSummaryLines(r);
    expect(lines.join('\n')).toContain('test has no examples of "spam"');
    expect(lines.join('\n')).toContain('leakage across splits: train/validation 1 exact, 0 near; train/test 0 exact, 2 near');
  });

  test('lengths in tokens as training renders them: truncation at seq_len and outliers above p75 + 3 IQR, with file:line', () => {
    const lines = Array.from({ length: 11 }, (_, i) => cls(`note ${'and more '.repeat(i)}`.trim(), 'ham')); // 1 to 21 words
    lines.push(cls('word '.repeat(200).trim(), 'ham'));
    const file = write('lengths.jsonl', lines);
    const records = loadRecords(file).records;
    // The reference: prompt and completion encoded apart plus EOS, as test/data/inspect.test.ts counts.
    const lengths = records.map((rec: DataRecord) => {
      const { prompt, completion } = renderRecord(rec);
      return tokenizer.encode(prompt).length + tokenizer.encode(completion).length + 1;
    });
    const sorted = [...lengths].sort((a, b) => a - b);
    const p25 = sorted[Math.floor(0.25 * 12)], p75 = sorted[Math.floor(0.75 * 12)];
    const seqLen = Math.max(...lengths.slice(0, 11)); // only the long one is cut
    const r = auditSplits([{ name: 'train', file, records }], { tokenizer, seqLen });
    const l = r.lengths![0];
    expect(l).toMatchObject({ min: sorted[0], max: sorted[11], median: sorted[6], p25, p75, outlier_above: p75 + 3 * (p75 - p25) });
    expect(l.truncated).toEqual([{ split: 'train', file, line: 12, tokens: lengths[11] }]);
    expect(l.outliers).toEqual([{ split: 'train', file, line: 12, tokens: lengths[11] }]);
    expect(r.settings).toMatchObject({ seq_len: seqLen, tokenizer: tokenizer.name });
    expect(auditSplits([{ name: 'train', file, records }]).lengths).toBeNull(); // no tokenizer, no lengths
  });

  test('PII with file:line and kind: a JSONL record\'s line; a line inside a plain-text document', () => {
    const jsonl = write('pii.jsonl', [JSON.stringify({ prompt: 'mail me at ann@example.org', completion: 'ok' }), JSON.stringify({ prompt: 'hi', completion: 'card 5555 5555 5555 4444' })]);
    const text = path.join(tmp, 'notes.txt');
    fs.writeFileSync(text, 'first line\nserver 10.1.2.3\n\nkey AKIAIOSFODNN7EXAMPLE and 10.1.2.4\n');
    const r = auditSplits([split('train', jsonl), split('notes', text)]);
    expect(r.pii.findings.map((f) => [path.basename(f.file), f.line, f.kind, f.field])).toEqual([
      ['pii.jsonl', 1, 'email', 'prompt'], ['pii.jsonl', 2, 'credit_card', 'completion'],
      ['notes.txt', 2, 'ipv4', 'text'], ['notes.txt', 4, 'api_key', 'text'], ['notes.txt', 4, 'ipv4', 'text'],
    ]);
    expect(r.pii.total).toBe(5);
    expect(r.pii.by_kind).toMatchObject({ email: 1, credit_card: 1, ipv4: 2, api_key: 1, phone: 0 });
    expect(r.pii.by_split).toEqual({ train: { email: 1, credit_card: 1 }, notes: { ipv4: 2, api_key: 1 } });
    expect(JSON.stringify(r)).not.toContain('AKIAIOSFODNN7EXAMPLE'); // the report never repeats a secret
    // Plain text is compared line by line: units are non-blank lines.
    expect(r.splits[1]).toMatchObject({ unit: 'line', units: 3, examples: 1 });
  });

  test('5,000 copies of one text plus near variants: exact counts, near counts per copy, fast; the cap reported when hit', () => {
    // 40 distinct words (38 shingles). A variant changes word p (p = 3, 6, ..., 36): it loses the 3
    // shingles covering p and gains 3, so Jaccard to the original is 35/41 = 0.854; two variants lose
    // disjoint shingles, so Jaccard between them is 32/44 = 0.727, below 0.8.
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`);
    const original = words.join(' ');
    const variants = Array.from({ length: 12 }, (_, k) => words.map((w, i) => (i === 3 * (k + 1) ? `changed${i}` : w)).join(' '));
    const trainFile = write('copies.jsonl', [...Array.from({ length: 5000 }, () => cls(original, 'ham')), ...variants.map((v) => cls(v, 'spam'))]);
    const validationFile = write('copies-validation.jsonl', [cls(original, 'ham'), cls('something else entirely, nothing like it', 'ham')]);
    const started = Date.now();
    const r = auditSplits([split('train', trainFile), split('validation', validationFile)], { maxListed: 20 });
    expect(Date.now() - started).toBeLessThan(20_000);
    // 4,999 extra copies in train; each variant is near every one of the 5,000 copies (and the validation copy).
    expect(r.duplicates.within).toEqual({ train: { exact: 4999, near: 12 * 5000 }, validation: { exact: 0, near: 0 } });
    expect(r.duplicates.across).toEqual([{ a: 'train', b: 'validation', exact: 1, near: 12 }]);
    expect(r.duplicates.exact_groups_total).toBe(1);
    expect(r.duplicates.exact_groups[0].count).toBe(5001);
    expect(r.duplicates.near_pairs_total).toBe(12 * 5001);
    expect(r.duplicates.near_pairs).toHaveLength(20);
    for (const p of r.duplicates.near_pairs) expect(p.jaccard).toBe(35 / 41);
    expect(r.duplicates.candidate_cap).toEqual({ max_pairs_per_bucket: 50_000, buckets: 0, largest_bucket: 0, pairs_not_compared: 0 });
    expect(auditSummaryLines(r).join('\n')).not.toContain('capped');
    // With a cap of 10 pairs per bucket, a bucket of 6 or more of the 13 distinct texts overflows it: the report says so.
    const capped = auditSplits([split('train', trainFile)], { maxPairsPerBucket: 10 });
    const cap = capped.duplicates.candidate_cap;
    expect(cap.buckets).toBeGreaterThan(0);
    expect(cap.largest_bucket).toBeGreaterThanOrEqual(6);
    expect(cap.largest_bucket).toBeLessThanOrEqual(13);
    expect(capped.duplicates.within.train.near).toBeLessThanOrEqual(12 * 5000);
    const line = auditSummaryLines(capped).find((l) => l.startsWith('near-duplicate search capped:'));
    expect(line).toBe(`near-duplicate search capped: ${capped.duplicates.candidate_cap.buckets} LSH bucket(s) proposed more than 10 pairs (the largest held ${cap.largest_bucket} distinct texts, near-identical ones such as boilerplate); 10 were compared in each and ${capped.duplicates.candidate_cap.pairs_not_compared} were not, so the near-duplicate counts are a lower bound`);
  });

  test('two splits with one name are refused', () => {
    expect(() => auditSplits([split('train', train), split('train', validation)])).toThrow("two splits are named 'train'");
  });
});

describe('redactFile', () => {
  test('JSONL: lines with a find are rewritten with placeholders, others are copied byte for byte', () => {
    const input = write('r.jsonl', ['{"text": "write to bob@example.com", "label": "a", "id": "x"}', '', '{"text":  "clean",  "label": "b"}']);
    const out = path.join(tmp, 'r-redacted.jsonl');
    const s = redactFile(input, out);
    expect(fs.readFileSync(out, 'utf8')).toBe('{"text":"write to [EMAIL]","label":"a","id":"x"}\n\n{"text":  "clean",  "label": "b"}\n');
    expect(s).toMatchObject({ total: 1, changed: 1, kind: 'classification' });
    expect(s.replaced.email).toBe(1);
  });

  test('CSV: a multi-line quoted field with a find is re-quoted; the header and clean rows are kept', () => {
    const input = write('r.csv', ['id,text,label', '1,"call +44 20 7946 0958', 'or, later",spam', '2,plain,ham']);
    const out = path.join(tmp, 'r-redacted.csv');
    redactFile(input, out);
    expect(fs.readFileSync(out, 'utf8')).toBe('id,text,label\n1,"call [PHONE]\nor, later",spam\n2,plain,ham\n');
    expect(loadRecords(out).records.map((r) => (r.kind === 'classification' ? r.text : ''))).toEqual(['call [PHONE]\nor, later', 'plain']);
  });

  test('plain text, and a folder of .txt files (same names)', () => {
    const input = path.join(tmp, 'doc.txt');
    fs.writeFileSync(input, 'ip 192.168.1.1\nIBAN GB82 WEST 1234 5698 7654 32\n');
    redactFile(input, path.join(tmp, 'doc-redacted.txt'));
    expect(fs.readFileSync(path.join(tmp, 'doc-redacted.txt'), 'utf8')).toBe('ip [IPV4]\nIBAN [IBAN]\n');
    const dir = path.join(tmp, 'docs');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'a.txt'), 'x ann@example.org');
    redactFile(dir, path.join(tmp, 'docs-redacted'));
    expect(fs.readdirSync(path.join(tmp, 'docs-redacted'))).toEqual(['a.txt']);
    expect(fs.readFileSync(path.join(tmp, 'docs-redacted', 'a.txt'), 'utf8')).toBe('x [EMAIL]');
  });

  test('never writes over an existing file or the input', () => {
    const input = write('keep.jsonl', [cls('bob@example.com', 'a')]);
    const existing = write('existing.jsonl', ['mine']);
    expect(() => redactFile(input, existing)).toThrow(`--redact ${existing}: already exists`);
    expect(() => redactFile(input, input)).toThrow('is the input file');
    expect(() => redactFile(input, path.join(tmp, '.', 'keep.jsonl'))).toThrow('is the input file');
    expect(fs.readFileSync(existing, 'utf8')).toBe('mine\n');
    expect(fs.readFileSync(input, 'utf8')).toBe(`${cls('bob@example.com', 'a')}\n`);
  });
});
