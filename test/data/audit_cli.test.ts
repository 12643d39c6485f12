/** `gptune data audit` and `data inspect --audit`: the report, --json, --strict, --redact and bad input. */
import * as fs from 'fs';
import * as path from 'path';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { tempDir, TINY } from '../helpers';

let tmp: string, train: string, validation: string, clean: string;
const cls = (text: string, label: string) => JSON.stringify({ text, label });

beforeAll(() => {
  tmp = tempDir('gptune-audit-cli-');
  train = path.join(tmp, 'train.jsonl');
  fs.writeFileSync(train, [
    cls('Call 415-555-2671 about the free cruise offer', 'spam'), cls('Meeting moved to 3pm in the big room', 'ham'),
    cls('Send the form to jo@example.com', 'ham'), cls('Lunch at noon?', 'ham'),
  ].join('\n') + '\n');
  validation = path.join(tmp, 'validation.jsonl');
  fs.writeFileSync(validation, [cls('lunch   at NOON?', 'ham'), cls('cheap pills', 'spam')].join('\n') + '\n');
  clean = path.join(tmp, 'clean.jsonl');
  fs.writeFileSync(clean, [cls('one message', 'a'), cls('another message entirely', 'b')].join('\n') + '\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('gptune data audit', () => {
  test('the readable report names leakage and PII with file:line', () => {
    const r = gptune('data', 'audit', '--data', train, '--validation', validation);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('leakage across splits: train/validation 1 exact, 0 near');
    expect(r.stdout).toContain(`${train}:4 = ${validation}:1`);
    expect(r.stdout).toMatch(new RegExp(`${train}:1 +phone \\(north_american\\) in text`));
    expect(r.stdout).toMatch(new RegExp(`${train}:3 +email in text`));
    expect(r.stdout).toContain('Jaccard >= 0.8 over 3-word shingles; MinHash 128 permutations');
  });

  test('--json prints the report as the last line; --json OUT writes it, and may replace only its own earlier report', () => {
    const r = gptune('data', 'audit', '--data', train, '--validation', validation, '--model', TINY, '--seq-len', '8', '--json');
    expect(r.code).toBe(0);
    const report = lastJSON(r.stdout) as any;
    expect(report.leakage).toEqual({ found: true, exact: 1, near: 0 });
    expect(report.pii.by_kind).toMatchObject({ phone: 1, email: 1 });
    expect(report.lengths[0].truncated_total).toBeGreaterThan(0);
    expect(report.settings).toMatchObject({ seq_len: 8, near_threshold: 0.8 });

    const out = path.join(tmp, 'audit.json');
    for (let i = 0; i < 2; i++) expect(gptune('data', 'audit', '--data', train, '--json', out, '--near-threshold', '0.5').code).toBe(0);
    expect(JSON.parse(fs.readFileSync(out, 'utf8')).settings.near_threshold).toBe(0.5);
    const notes = path.join(tmp, 'notes.json');
    fs.writeFileSync(notes, '{"mine": true}\n');
    expectCleanFailure(['data', 'audit', '--data', train, '--json', notes], /--json .*notes\.json: exists and was not written by gptune/);
    expect(fs.readFileSync(notes, 'utf8')).toBe('{"mine": true}\n');
  });

  test('--strict exits 1 after the report when leakage or PII is found, 0 on clean data', () => {
    const bad = gptune('data', 'audit', '--data', train, '--validation', validation, '--strict');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('data audit');
    expect(bad.stderr).toBe('gptune data: --strict: leakage across splits (1 exact copies, 0 near-duplicate pairs) and 2 PII finds\n');
    expect(gptune('data', 'audit', '--data', clean, '--validation', validation, '--strict').code).toBe(0);
  });

  test('--redact writes a redacted copy; never the input or an existing file', () => {
    const out = path.join(tmp, 'train-redacted.jsonl');
    const r = gptune('data', 'audit', '--data', train, '--redact', out);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`redacted copy: ${out} (2 finds replaced in 2 records)`);
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).text);
    expect(lines).toEqual(['Call [PHONE] about the free cruise offer', 'Meeting moved to 3pm in the big room', 'Send the form to [EMAIL]', 'Lunch at noon?']);
    const before = fs.readFileSync(out, 'utf8');
    expectCleanFailure(['data', 'audit', '--data', train, '--redact', out], /--redact .*train-redacted\.jsonl: already exists/);
    expect(fs.readFileSync(out, 'utf8')).toBe(before);
    const original = fs.readFileSync(train, 'utf8');
    expectCleanFailure(['data', 'audit', '--data', train, '--redact', train], /--redact .*train\.jsonl: is the input file/);
    expect(fs.readFileSync(train, 'utf8')).toBe(original);
  });

  test('bad input: one line naming the problem, non-zero exit', () => {
    expectCleanFailure(['data', 'audit', '--data', train, '--format', 'tsv'], /--format: expected one of text, prompt_completion, chat, classification but received 'tsv'/);
    expectCleanFailure(['data', 'audit', '--data', path.join(tmp, 'missing.jsonl')], /--data .*missing\.jsonl: file not found/);
    expectCleanFailure(['data', 'audit', '--data', train, '--test', path.join(tmp, 'nope.jsonl')], /--test .*nope\.jsonl: file not found/);
    expectCleanFailure(['data', 'audit'], /expected --data FILE/);
    expectCleanFailure(['data', 'audit', '--data', train, '--near-threshold', '1.5'], /--near-threshold: expected a number in \(0, 1\] but received 1\.5/);
    expectCleanFailure(['data', 'audit', '--data', train, '--format', 'chat'], /train\.jsonl:1: missing field "messages"/);
    expectCleanFailure(['data', 'inspect', train, '--redact', path.join(tmp, 'x.jsonl')], /--redact belongs to gptune data audit/);
  });

  test('data inspect --audit adds the audit to the inspection (and to its JSON)', () => {
    const r = gptune('data', 'inspect', train, '--model', TINY, '--validation', validation, '--audit');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('examples: 4');
    expect(r.stdout).toContain('leakage across splits: train/validation 1 exact');
    const j = lastJSON(gptune('data', 'inspect', train, '--model', TINY, '--validation', validation, '--audit', '--json').stdout) as any;
    expect(j.examples).toBe(4);
    expect(j.audit.pii.total).toBe(2);
    const out = path.join(tmp, 'inspect.json');
    const written = gptune('data', 'inspect', train, '--model', TINY, '--audit', '--json', out);
    expect(written.code).toBe(0);
    expect(written.stdout).toContain('examples: 4');
    expect(JSON.parse(fs.readFileSync(out, 'utf8'))).toMatchObject({ examples: 4, audit: { pii: { total: 2 } } });
  });
});
