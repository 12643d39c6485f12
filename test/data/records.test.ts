/** Data formats: detection, parsing, and one test per validation error (file and line in the message). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { detectKind, loadRecords } from '../../lib/data';
import type { DataKind } from '../../lib/data';
import { FIXTURES } from '../helpers';

const DATA = path.join(FIXTURES, 'data');
let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-records-')); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Writes lines to a temporary file and returns its path. */
function writeData(name: string, lines: string[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('format detection', () => {
  test.each([
    ['prompt_completion.jsonl', 'prompt_completion'],
    ['chat.jsonl', 'chat'],
    ['classification.jsonl', 'classification'],
    ['classification.csv', 'classification'],
    ['docs', 'text'],
  ])('%s is %s', (name, kind) => {
    expect(detectKind(path.join(DATA, name))).toBe(kind);
  });

  test('a .txt file is text, and a JSONL file whose keys fit no kind is an error naming the line', () => {
    expect(detectKind(path.join(FIXTURES, 'eval-text.txt'))).toBe('text');
    const file = writeData('odd.jsonl', ['', '{"question": "q", "answer": "a"}']);
    expect(() => detectKind(file)).toThrow(`${file}:2: cannot tell the format`);
  });

  test('a named format that does not match the lines fails on the first line, naming the missing field', () => {
    const file = path.join(DATA, 'classification.jsonl');
    expect(() => loadRecords(file, { format: 'prompt_completion' })).toThrow(`${file}:1: missing field "prompt"`);
  });
});

describe('parsing valid files', () => {
  test('prompt/completion: fields kept exactly, extra keys ignored, blank lines counted', () => {
    const file = path.join(DATA, 'prompt_completion.jsonl');
    const { kind, records, blankLines, skipped } = loadRecords(file);
    expect(kind).toBe('prompt_completion');
    expect(blankLines).toBe(1);
    expect(skipped).toEqual([]);
    expect(records).toEqual([
      { kind, prompt: 'Translate to French: cat\n', completion: ' chat', file, line: 1 },
      { kind, prompt: 'Translate to French: dog\n', completion: ' chien', file, line: 2 },
      { kind, prompt: '', completion: 'The sea was calm.', file, line: 4 },
      { kind, prompt: 'Q: 2+2?\nA:', completion: ' 4', file, line: 5 },
    ]);
  });

  test('chat: roles, contents and weights', () => {
    const { records } = loadRecords(path.join(DATA, 'chat.jsonl'));
    expect(records.map((r) => r.kind === 'chat' && r.messages)).toEqual([
      [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }],
      [{ role: 'user', content: 'Name a colour.' }, { role: 'assistant', content: 'Blue', weight: 0 }, { role: 'user', content: 'Another?' }, { role: 'assistant', content: 'Red', weight: 1 }],
      [{ role: 'user', content: 'Say "yes"' }, { role: 'assistant', content: 'yes' }, { role: 'user', content: 'thanks' }],
    ]);
  });

  test('classification JSONL: string labels kept, number labels as their decimal string', () => {
    const { records } = loadRecords(path.join(DATA, 'classification.jsonl'));
    expect(records.map((r) => r.kind === 'classification' && [r.text, r.label])).toEqual([
      ['I loved this film', 'positive'], ['Dull and far too long', 'negative'], ['A masterpiece', 'positive'],
      ['Rated by number', '2'], ['Rated by number again', '10'],
    ]);
  });

  test.each(['classification.csv', 'random.csv'])('CSV %s: fields equal those of Python\'s csv module', (name) => {
    const file = path.join(DATA, name);
    const rows = (JSON.parse(fs.readFileSync(file + '.expected.json', 'utf8')) as string[][]).filter((r) => r.length > 0);
    const header = rows[0];
    const expected = rows.slice(1).map((r) => [r[header.indexOf('text')], r[header.indexOf('label')]]);
    const { records } = loadRecords(file);
    expect(records.map((r) => r.kind === 'classification' && [r.text, r.label])).toEqual(expected);
    expect(expected.length).toBeGreaterThan(4);
  });

  test('CSV records that span lines carry the line they start on', () => {
    const { records, blankLines } = loadRecords(path.join(DATA, 'classification.csv'));
    expect(records.map((r) => r.line)).toEqual([2, 3, 4, 9, 10, 11]);
    expect(blankLines).toBe(1);
  });

  test('a folder of .txt files: one document per file, sorted, other files ignored', () => {
    const { kind, records } = loadRecords(path.join(DATA, 'docs'));
    expect(kind).toBe('text');
    expect(records.map((r) => path.basename(r.file))).toEqual(['a.txt', 'b.txt', 'c.txt']);
    expect(records[2].kind === 'text' && records[2].text).toBe('Third: café — unicode.\n\n');
  });
});

/** [name, kind, the bad line, the expected problem]; each file has a valid line 1 and the bad line 2. */
const JSONL_ERRORS: Array<[string, DataKind, string, string]> = [
  ['malformed JSON', 'prompt_completion', '{"prompt": "a", "completion": "b"', 'malformed JSON'],
  ['not an object', 'prompt_completion', '["a", "b"]', 'expected a JSON object but found an array'],
  ['missing prompt', 'prompt_completion', '{"completion": "b"}', 'missing field "prompt"'],
  ['non-string completion', 'prompt_completion', '{"prompt": "a", "completion": 5}', 'field "completion" must be a string but is the number 5'],
  ['empty completion', 'prompt_completion', '{"prompt": "a", "completion": "  "}', 'field "completion" is empty'],
  ['missing messages', 'chat', '{"prompt": "a"}', 'missing field "messages"'],
  ['messages not an array', 'chat', '{"messages": {"role": "user"}}', 'field "messages" must be an array but is an object'],
  ['unknown role', 'chat', '{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}', 'messages[0].role: unknown role "tool"; expected one of system, user, assistant'],
  ['missing role', 'chat', '{"messages": [{"content": "x"}]}', 'missing field "messages[0].role"'],
  ['non-string content', 'chat', '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "y"}]}', 'field "messages[0].content" must be a string but is null'],
  ['weight on a user message', 'chat', '{"messages": [{"role": "user", "content": "x", "weight": 1}, {"role": "assistant", "content": "y"}]}', 'messages[0].weight: only assistant messages take a weight'],
  ['weight not 0 or 1', 'chat', '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 0.5}]}', 'messages[1].weight must be 0 or 1 but is the number 0.5'],
  ['empty assistant content', 'chat', '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}', 'messages[1].content is empty'],
  ['no assistant message', 'chat', '{"messages": [{"role": "user", "content": "x"}]}', 'no assistant message'],
  ['every assistant weight 0', 'chat', '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 0}]}', 'every assistant message has weight 0'],
  ['missing label', 'classification', '{"text": "a"}', 'missing field "label"'],
  ['boolean label', 'classification', '{"text": "a", "label": true}', 'field "label" must be a string or a number but is the boolean true'],
  ['null label', 'classification', '{"text": "a", "label": null}', 'field "label" must be a string or a number but is null'],
  ['empty label', 'classification', '{"text": "a", "label": ""}', 'field "label" is empty'],
  ['non-string text', 'classification', '{"text": ["a"], "label": "x"}', 'field "text" must be a string but is an array'],
];

const VALID_LINE: Record<string, string> = {
  prompt_completion: '{"prompt": "p", "completion": " c"}',
  chat: '{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}',
  classification: '{"text": "t", "label": "l"}',
};

describe('validation errors name the file, the line and the problem', () => {
  test.each(JSONL_ERRORS)('%s', (name, kind, bad, problem) => {
    const file = writeData(`${name.replace(/\W+/g, '_')}.jsonl`, [VALID_LINE[kind], bad, VALID_LINE[kind]]);
    expect(() => loadRecords(file, { format: kind })).toThrow(`${file}:2: ${problem}`);
  });

  test.each([
    ['wrong column count', 'text,label\nfine,a\n"has, comma",b,extra\n', 3, 'expected 2 columns as in the header but found 3'],
    ['too few columns', 'text,label\nfine,a\nlonely\n', 3, 'expected 2 columns as in the header but found 1'],
    ['text after a closing quote', 'text,label\nfine,a\n"quoted"x,b\n', 3, 'CSV: expected a comma or the end of the line after a closing quote but found "x"'],
    ['unterminated quote', 'text,label\nfine,a\n"never closed,b\nmore\n', 3, 'CSV: a quoted field is not closed before the end of the file'],
    ['empty label', 'text,label\nfine,a\nno label,\n', 3, 'the "label" column is empty'],
    ['no text column', 'body,label\nfine,a\n', 1, 'CSV header must name a "text" and a "label" column'],
  ])('CSV: %s', (name, content, line, problem) => {
    const file = path.join(tmp, `${name.replace(/\W+/g, '_')}.csv`);
    fs.writeFileSync(file, content);
    expect(() => loadRecords(file)).toThrow(`${file}:${line}: ${problem}`);
  });
});

describe('skipInvalid', () => {
  test('skips exactly the bad lines, returns each with its error, and keeps every good line', () => {
    const lines = [VALID_LINE.prompt_completion, ...JSONL_ERRORS.filter((e) => e[1] === 'prompt_completion').map((e) => e[2]), VALID_LINE.prompt_completion];
    const file = writeData('mixed.jsonl', lines);
    const { records, skipped } = loadRecords(file, { format: 'prompt_completion', skipInvalid: true });
    expect(records.map((r) => r.line)).toEqual([1, lines.length]);
    expect(skipped.map((s) => s.line)).toEqual([2, 3, 4, 5, 6]);
    for (const s of skipped) expect(s.error.startsWith(`${file}:${s.line}: `)).toBe(true);
    expect(skipped[4].error).toContain('field "completion" is empty');
  });

  test('CSV: a bad row is skipped and the rows after it still parse', () => {
    const file = path.join(tmp, 'skip.csv');
    fs.writeFileSync(file, 'text,label\nfine,a\n"bad"x,b\nthree,c,extra\nfour,d\n');
    const { records, skipped } = loadRecords(file, { skipInvalid: true });
    expect(records.map((r) => r.kind === 'classification' && [r.text, r.label, r.line])).toEqual([['fine', 'a', 2], ['four', 'd', 5]]);
    expect(skipped.map((s) => s.line)).toEqual([3, 4]);
  });

  test('without it, the first bad line stops loading', () => {
    const file = writeData('stop.jsonl', [VALID_LINE.classification, '{"text": "a", "label": false}', '{bad']);
    expect(() => loadRecords(file)).toThrow(`${file}:2:`);
  });
});
