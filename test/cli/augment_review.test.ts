/**
 * `gptune data augment`, `gptune sample --review` and `gptune data from-review` through the CLI:
 * what they write, what they refuse (one stderr line naming the file and line, a non-zero exit,
 * nothing written), and the review loop's round trip through both of its files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CSVParser, forEachLine, loadRecords } from '../../lib/data';
import { tempDir } from '../helpers';
import { expectCleanFailure, gptune, lastJSON, ROOT } from './run';

const TINY = path.join(ROOT, 'test/fixtures/tiny-gpt2');
const TINY_HF = path.join(ROOT, 'test/fixtures/tiny-gpt2-hf');

function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function jsonl(file: string): Record<string, unknown>[] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
}

const EMAILS = [
  '{"text": "Win a free car today, click the link now", "label": "spam"}',
  '{"text": "The meeting moved to the large room on Friday", "label": "ham"}',
  '{"text": "Cheap watches and pills delivered to your door", "label": "spam"}',
  '{"text": "Lunch at noon in the usual place", "label": "ham"}',
  '{"text": "Please review the attached budget before Monday", "label": "ham"}',
].join('\n') + '\n';

describe('gptune data augment', () => {
  test('writes the examples and their copies as JSONL that trains as it is, and reports per method', () => {
    const dir = tempDir();
    const input = write(dir, 'emails.jsonl', EMAILS);
    const out = path.join(dir, 'augmented.jsonl');
    const r = gptune('data', 'augment', input, '--out', out, '--method', 'synonym,typo', '--per-example', '2', '--rate', '0.2', '--seed', '1', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = lastJSON(r.stdout) as { examples: number; copies: number; written: number; methods: Record<string, { made: number; unchanged: number; empty: number }> };
    expect(report.examples).toBe(5);
    expect(report.methods.synonym.made + report.methods.synonym.unchanged + report.methods.synonym.empty).toBe(10);
    expect(report.methods.typo.made + report.methods.typo.unchanged + report.methods.typo.empty).toBe(10);
    const lines = jsonl(out);
    expect(lines).toHaveLength(report.written);
    expect(lines.filter((o) => '_augmented_from' in o)).toHaveLength(report.copies);
    const loaded = loadRecords(out);
    expect(loaded.kind).toBe('classification');
    expect(loaded.records).toHaveLength(report.written);
    // The same command gives the same file.
    const again = path.join(dir, 'again.jsonl');
    gptune('data', 'augment', input, '--out', again, '--method', 'synonym,typo', '--per-example', '2', '--rate', '0.2', '--seed', '1');
    expect(fs.readFileSync(again, 'utf8')).toBe(fs.readFileSync(out, 'utf8'));
    expect(fs.readFileSync(input, 'utf8')).toBe(EMAILS);
  });

  test('a CSV of text,label becomes JSONL {text, label}; --balance fills the minority class', () => {
    const dir = tempDir();
    const input = write(dir, 'mail.csv', 'text,label\n"Win money, now",spam\nSee you at the station tomorrow,ham\nThe report is ready for review,ham\nThe car is parked outside the office,ham\n');
    const out = path.join(dir, 'balanced.jsonl');
    const r = gptune('data', 'augment', input, '--out', out, '--method', 'eda', '--balance', '--seed', '2');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/labels: "ham" 3 -> 3, "spam" 1 -> 3/);
    const lines = jsonl(out);
    expect(lines[0]).toEqual({ text: 'Win money, now', label: 'spam' });
    expect(lines.filter((o) => o.label === 'spam')).toHaveLength(3);
  });

  test('back-translation is the forward model\'s translation translated back by the backward model (as gptune generate continues each prompt)', () => {
    const dir = tempDir();
    const text = 'the cat\nsat down';
    const input = write(dir, 'pairs.jsonl', JSON.stringify({ prompt: text, completion: ' ok' }) + '\n');
    const out = path.join(dir, 'bt.jsonl');
    const r = gptune('data', 'augment', input, '--out', out, '--method', 'backtranslate', '--forward-model', TINY, '--backward-model', TINY_HF,
      '--forward-template', 'A: {text} B:', '--backward-template', 'B: {text} A:', '--max-new-tokens', '6', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const generated = (model: string, prompt: string) => {
      const g = gptune('generate', '--model', model, '--prompt', prompt, '--max-new-tokens', '6', '--temperature', '0', '--json');
      expect(g.code).toBe(0);
      return (lastJSON(g.stdout).text as string).trim();
    };
    const pivot = generated(TINY, `A: ${text} B:`);
    const back = generated(TINY_HF, `B: ${pivot} A:`);
    const lines = jsonl(out);
    // The tiny models write something other than the text both ways, so the copy is written.
    expect(pivot).not.toBe('');
    expect(back).not.toBe('');
    expect(back).not.toBe(text);
    expect(lines).toEqual([{ prompt: text, completion: ' ok' }, { prompt: back, completion: ' ok', _augmented_from: { line: 1, method: 'backtranslate' } }]);
  });

  test('refuses an existing --out without --force, and the input file always', () => {
    const dir = tempDir();
    const input = write(dir, 'emails.jsonl', EMAILS);
    const out = write(dir, 'mine.jsonl', 'my notes\n');
    expectCleanFailure(['data', 'augment', input, '--out', out, '--method', 'synonym'], /--out .*mine\.jsonl: .*exists/);
    expect(fs.readFileSync(out, 'utf8')).toBe('my notes\n');
    expect(gptune('data', 'augment', input, '--out', out, '--method', 'synonym', '--force').code).toBe(0);
    expect(jsonl(out).length).toBeGreaterThan(5);
    expectCleanFailure(['data', 'augment', input, '--out', input, '--method', 'synonym', '--force'], /is the input file; the input is never overwritten/);
    expect(fs.readFileSync(input, 'utf8')).toBe(EMAILS);
  });

  test('refuses validation and test data: by --split, by name, as a config\'s validation file', () => {
    const dir = tempDir();
    const out = path.join(dir, 'out.jsonl');
    const train = write(dir, 'emails.jsonl', EMAILS);
    const test = write(dir, 'emails.test.jsonl', EMAILS);
    expectCleanFailure(['data', 'augment', train, '--out', out, '--method', 'synonym', '--split', 'validation'], /emails\.jsonl: is the validation split .*training data only/, out);
    expectCleanFailure(['data', 'augment', test, '--out', out, '--method', 'synonym'], /emails\.test\.jsonl: the name says it is a held-out split \("test"\); pass --split train/, out);
    const config = write(dir, 'train.yaml', `data: other.jsonl\nvalidation: emails.jsonl\n`);
    expectCleanFailure(['data', 'augment', train, '--out', out, '--method', 'synonym', '--config', config], /is the validation file of the --config/, out);
    expect(gptune('data', 'augment', test, '--out', out, '--method', 'synonym', '--split', 'train').code).toBe(0);
  });

  test('bad input: one line naming the file and line, nothing written', () => {
    const dir = tempDir();
    const out = path.join(dir, 'out.jsonl');
    const text = write(dir, 'notes.txt', 'plain words only\n');
    expectCleanFailure(['data', 'augment', text, '--out', out, '--method', 'synonym'], /notes\.txt:1: plain text has no examples with a text field to augment/, out);
    const pc = write(dir, 'pc.jsonl', '{"prompt": "a b c", "completion": "x"}\n{"prompt": " ", "completion": "y"}\n');
    expectCleanFailure(['data', 'augment', pc, '--out', out, '--method', 'typo'], /pc\.jsonl:2: field "prompt" is empty: nothing to augment/, out);
    const broken = write(dir, 'broken.jsonl', '{"text": "a", "label": "b"}\n{"text": "c"\n');
    expectCleanFailure(['data', 'augment', broken, '--out', out, '--method', 'typo'], /broken\.jsonl:2: malformed JSON/, out);
    const emails = write(dir, 'emails.jsonl', EMAILS);
    expectCleanFailure(['data', 'augment', emails, '--out', out, '--method', 'synonym,wordnet'], /--method: unknown method 'wordnet'/, out);
    expectCleanFailure(['data', 'augment', emails, '--out', out, '--method', 'typo', '--typo-rate', '1.5'], /--typo-rate: expected a number in \[0, 1\] but received 1\.5/, out);
    const pairs = write(dir, 'pairs.jsonl', '{"prompt": "a b c", "completion": "x"}\n');
    expectCleanFailure(['data', 'augment', pairs, '--out', out, '--method', 'typo', '--balance'], /--balance needs classification data/, out);
    expectCleanFailure(['data', 'augment', emails, '--out', out, '--method', 'backtranslate'], /needs --forward-model and --backward-model/, out);
    expectCleanFailure(['data', 'augment', emails, '--out', out, '--method', 'typo', '--seq-len', '5'], /augment: --seq-len is not an option of this subcommand/, out);
  });
});

/** The CSV's records through lib/data's RFC 4180 reader, with the line each starts on. */
function readCsv(file: string): { fields: string[]; line: number }[] {
  const rows: { fields: string[]; line: number }[] = [];
  const parser = new CSVParser(file, (r) => rows.push(r));
  forEachLine(file, (line, n) => parser.pushLine(line, n));
  parser.finish();
  return rows;
}

/** One CSV field as RFC 4180 quotes it, written here by hand for the edited file. */
const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

describe('the human review loop: sample --review, a person marks it, data from-review', () => {
  const dir = tempDir();
  const data = write(dir, 'emails.jsonl', EMAILS);
  const review = path.join(dir, 'review.jsonl');
  const csv = path.join(dir, 'review.csv');
  let items: Record<string, unknown>[] = [];

  beforeAll(() => {
    const r = gptune('sample', '--model', TINY, '--data', data, '-n', '4', '--review', review, '--max-new-tokens', '4', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(lastJSON(r.stdout)).toEqual({ review, csv, examples: 4, skipped_lines: 0 });
    items = jsonl(review);
  });

  test('the JSONL holds per item id, prompt, output, reference, an empty verdict and corrected text, and the source example', () => {
    expect(items).toHaveLength(4);
    const sources = EMAILS.trim().split('\n').map((l) => JSON.parse(l));
    const ids = items.map((item) => item.id as number);
    expect(new Set(ids).size).toBe(4);
    for (const item of items) {
      expect(Object.keys(item).slice(0, 6)).toEqual(['id', 'prompt', 'output', 'reference', 'verdict', 'corrected']);
      expect(item.verdict).toBe('');
      expect(item.corrected).toBe('');
      const source = sources[(item.id as number) - 1];
      expect(item.source).toEqual({ kind: 'classification', ...source });
      expect(item.prompt).toBe(`Text: ${source.text}\nLabel:`);
      expect(item.reference).toBe(` ${source.label}`);
    }
  });

  test('the CSV beside it: UTF-8 with a BOM, CRLF records, RFC 4180 quoting, the same items', () => {
    const bytes = fs.readFileSync(csv);
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(bytes.toString('utf8')).toContain('\r\n');
    const rows = readCsv(csv);
    expect(rows[0].fields).toEqual(['id', 'prompt', 'output', 'reference', 'verdict', 'corrected', 'predicted_label', 'line', 'source']);
    expect(rows).toHaveLength(5);
    rows.slice(1).forEach((row, k) => {
      const item = items[k];
      expect(row.fields.slice(0, 6)).toEqual([String(item.id), item.prompt, item.output, item.reference, '', '']);
      expect(row.fields[6]).toBe(item.predicted_label);
      expect(JSON.parse(row.fields[8])).toEqual(item.source);
    });
    // "Text: ...\nLabel:" spans two lines inside its quotes, and the comma in "Win a free car today, ..." is quoted.
    expect(bytes.toString('utf8')).toContain('"Text: Win a free car today, click the link now\nLabel:"');
  });

  test('JSONL round trip: accepted outputs and corrected texts become records in the data\'s format', () => {
    const edited = path.join(dir, 'edited.jsonl');
    const marks = [{ verdict: 'accept', corrected: '' }, { verdict: 'Rejected', corrected: '' }, { verdict: 'corrected', corrected: 'spam' }, { verdict: '', corrected: '' }];
    // The accepted item must have an output to train on: the first item with one is accepted.
    const acceptedAt = items.findIndex((item) => (item.output as string).trim() !== '');
    expect(acceptedAt).toBeGreaterThanOrEqual(0);
    const order = [acceptedAt, ...[0, 1, 2, 3].filter((i) => i !== acceptedAt)];
    const editedItems = items.map((item) => ({ ...item }));
    order.forEach((i, k) => Object.assign(editedItems[i], marks[k]));
    fs.writeFileSync(edited, editedItems.map((item) => JSON.stringify(item)).join('\n') + '\n');
    const next = path.join(dir, 'next.jsonl');
    const r = gptune('data', 'from-review', edited, '--out', next, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(lastJSON(r.stdout)).toEqual({ out: next, format: 'original', items: 4, accepted: 1, corrected: 1, rejected: 1, not_reviewed: 1, written: 2 });
    const source = (i: number) => items[i].source as { text: string };
    expect(jsonl(next)).toEqual([
      { text: source(Math.min(acceptedAt, order[2])).text, label: Math.min(acceptedAt, order[2]) === acceptedAt ? (items[acceptedAt].output as string).trim() : 'spam' },
      { text: source(Math.max(acceptedAt, order[2])).text, label: Math.max(acceptedAt, order[2]) === acceptedAt ? (items[acceptedAt].output as string).trim() : 'spam' },
    ]);
    expect(loadRecords(next).kind).toBe('classification');
  });

  test('CSV round trip (as a spreadsheet saves it), written as prompt/completion', () => {
    const rows = readCsv(csv);
    const header = rows[0].fields;
    const v = header.indexOf('verdict'), c = header.indexOf('corrected');
    const body = rows.slice(1).map((row, k) => {
      const fields = row.fields.slice();
      if (k === 0) [fields[v], fields[c]] = ['corrected', 'ham, "really"'];
      if (k === 1) fields[v] = 'reject';
      return fields.map(quote).join(',');
    });
    const edited = path.join(dir, 'edited.csv');
    fs.writeFileSync(edited, '\ufeff' + [header.join(','), ...body].join('\r\n') + '\r\n');
    const next = path.join(dir, 'next-pc.jsonl');
    const r = gptune('data', 'from-review', edited, '--out', next, '--as', 'prompt_completion');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/4 items: 0 accepted, 1 corrected, 1 rejected, 2 not reviewed -> .*next-pc\.jsonl: 1 prompt_completion records/);
    expect(jsonl(next)).toEqual([{ prompt: items[0].prompt, completion: 'ham, "really"' }]);
  });

  test('bad review files: one line naming the file and line, nothing written', () => {
    const out = path.join(dir, 'bad-out.jsonl');
    const lines = items.map((item) => JSON.stringify(item));
    const edit = (k: number, change: Record<string, unknown>) => lines.map((l, i) => (i === k ? JSON.stringify({ ...JSON.parse(l), ...change }) : l)).join('\n') + '\n';
    const unknown = write(dir, 'unknown.jsonl', edit(2, { verdict: 'maybe' }));
    expectCleanFailure(['data', 'from-review', unknown, '--out', out], /unknown\.jsonl:3: item \d+: unknown verdict "maybe"; expected accept, reject or corrected/, out);
    const missing = write(dir, 'missing.jsonl', edit(1, { id: '' }));
    expectCleanFailure(['data', 'from-review', missing, '--out', out], /missing\.jsonl:2: missing id/, out);
    const noId = lines.slice();
    const { id: _, ...withoutId } = JSON.parse(noId[3]);
    noId[3] = JSON.stringify(withoutId);
    expectCleanFailure(['data', 'from-review', write(dir, 'noid.jsonl', noId.join('\n') + '\n'), '--out', out], /noid\.jsonl:4: missing id/, out);
    const duplicate = write(dir, 'duplicate.jsonl', edit(3, { id: items[0].id }));
    expectCleanFailure(['data', 'from-review', duplicate, '--out', out], new RegExp(`duplicate\\.jsonl:4: duplicate id ${items[0].id} \\(also on line 1\\)`), out);
    const empty = write(dir, 'empty.jsonl', edit(0, { verdict: 'corrected', corrected: '  ' }));
    expectCleanFailure(['data', 'from-review', empty, '--out', out], /empty\.jsonl:1: item \d+: verdict corrected but "corrected" holds no text/, out);
    // In the CSV, a record's line is where it starts (the prompt spans two lines per record).
    const rows = readCsv(csv);
    const bad = rows.map((row, k) => (k === 2 ? row.fields.map((f, i) => (i === 4 ? 'yes' : f)) : row.fields).map(quote).join(',')).join('\r\n') + '\r\n';
    expectCleanFailure(['data', 'from-review', write(dir, 'bad.csv', bad), '--out', out], new RegExp(`bad\\.csv:${rows[2].line}: item \\d+: unknown verdict "yes"`), out);
    expect(rows[2].line).toBeGreaterThan(3);
  });

  test('sample --review does not replace a review a person has started marking, unless --overwrite', () => {
    const marked = path.join(dir, 'marked.jsonl');
    fs.writeFileSync(marked, items.map((item, k) => JSON.stringify({ ...item, verdict: k === 0 ? 'accept' : '' })).join('\n') + '\n');
    const before = fs.readFileSync(marked, 'utf8');
    expectCleanFailure(['sample', '--model', TINY, '--data', data, '-n', '2', '--review', marked, '--max-new-tokens', '2'], /--review .*marked\.jsonl: holds 1 reviewed item\(s\)/);
    expect(fs.readFileSync(marked, 'utf8')).toBe(before);
    // An unmarked review of gptune's own is replaced.
    expect(gptune('sample', '--model', TINY, '--data', data, '-n', '2', '--review', review, '--max-new-tokens', '2').code).toBe(0);
    expect(jsonl(review)).toHaveLength(2);
    expectCleanFailure(['sample', '--model', TINY, '--data', data, '--review', path.join(dir, 'r.md')], /--review .*r\.md: expected a \.jsonl file name/);
    expectCleanFailure(['sample', '--model', TINY, '--data', data], /expected one of --out FILE .* and --review FILE\.jsonl but received neither/);
  });
});

describe('the review CSV against spreadsheet formula injection (OWASP: a leading single quote)', () => {
  const dir = tempDir();
  // Prompts and completions that a spreadsheet would run as formulas, and one that only looks guarded.
  const PAIRS = [
    { prompt: '=HYPERLINK("http://example.com/x","click")', completion: '=1+1' },
    { prompt: '+1+2 is', completion: '+3' },
    { prompt: '-2+3 is', completion: '-1 or so' },
    { prompt: '@SUM(A1:A2)', completion: '@me' },
    { prompt: "'=already quoted", completion: "'plain quote" },
  ];
  const data = write(dir, 'pairs.jsonl', PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const review = path.join(dir, 'review.jsonl');
  const csv = path.join(dir, 'review.csv');

  beforeAll(() => {
    const r = gptune('sample', '--model', TINY, '--data', data, '-n', '5', '--review', review, '--max-new-tokens', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  test('cells starting with = + - @ get a quote in the CSV, not in the JSONL', () => {
    const items = jsonl(review);
    expect(items.map((item) => item.prompt)).toEqual(PAIRS.map((p) => p.prompt));
    const rows = readCsv(csv).slice(1);
    const expected = ['\'=HYPERLINK("http://example.com/x","click")', "'+1+2 is", "'-2+3 is", "'@SUM(A1:A2)", "''=already quoted"];
    expect(rows.map((row) => row.fields[1])).toEqual(expected);
    // The references are the completions as the data had them.
    expect(rows.map((row) => row.fields[3])).toEqual(["'=1+1", "'+3", "'-1 or so", "'@me", "'plain quote"]);
    // No cell of the file starts with a formula character (outside the quotes RFC 4180 adds).
    for (const row of readCsv(csv)) for (const cell of row.fields) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
  });

  test('from-review reads the CSV back without exactly the quotes it added', () => {
    const rows = readCsv(csv);
    const header = rows[0].fields;
    const v = header.indexOf('verdict'), c = header.indexOf('corrected');
    // A person accepts nothing and corrects every item with a formula-like text, guarded as the file guards it.
    const body = rows.slice(1).map((row) => {
      const fields = row.fields.slice();
      [fields[v], fields[c]] = ['corrected', "'=fixed"];
      return fields.map(quote).join(',');
    });
    const edited = path.join(dir, 'edited.csv');
    fs.writeFileSync(edited, '\ufeff' + [header.join(','), ...body].join('\r\n') + '\r\n');
    const next = path.join(dir, 'next.jsonl');
    const r = gptune('data', 'from-review', edited, '--out', next);
    expect(r.code).toBe(0);
    expect(jsonl(next)).toEqual(PAIRS.map((p) => ({ prompt: p.prompt, completion: '=fixed' })));
  });
});
