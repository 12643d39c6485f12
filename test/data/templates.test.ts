/** Prompt templates: the documented defaults, custom templates, and template errors. */
import * as path from 'path';
import { compileTemplate, loadRecords, renderRecord, renderSegments } from '../../lib/data';
import type { DataRecord } from '../../lib/data';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES } from '../helpers';

const DATA = path.join(FIXTURES, 'data');
const at = { file: 'mem', line: 1 };

describe('default templates (as documented in lib/data/templates.ts)', () => {
  test('classification: "Text: {text}\\nLabel:" and the completion " {label}"', () => {
    const r: DataRecord = { kind: 'classification', text: 'Great film', label: 'positive', ...at };
    expect(renderRecord(r)).toEqual({ prompt: 'Text: Great film\nLabel:', completion: ' positive' });
  });

  test('prompt/completion: used as is', () => {
    const r: DataRecord = { kind: 'prompt_completion', prompt: 'Q: 2+2?\nA:', completion: ' 4', ...at };
    expect(renderRecord(r)).toEqual({ prompt: 'Q: 2+2?\nA:', completion: ' 4' });
    expect(renderSegments(r)).toEqual([{ text: 'Q: 2+2?\nA:', trained: false }, { text: ' 4', trained: true }]);
  });

  test('an empty prompt gives one trained segment', () => {
    expect(renderSegments({ kind: 'prompt_completion', prompt: '', completion: 'Once upon', ...at })).toEqual([{ text: 'Once upon', trained: true }]);
  });

  test('chat: role markers, messages joined by newlines, assistant contents trained unless weight 0', () => {
    const { records } = loadRecords(path.join(DATA, 'chat.jsonl'));
    expect(renderSegments(records[0])).toEqual([
      { text: '<|system|>\nYou are terse.\n<|user|>\nHi\n<|assistant|>\n', trained: false },
      { text: 'Hello.', trained: true },
    ]);
    expect(renderSegments(records[1])).toEqual([
      { text: '<|user|>\nName a colour.\n<|assistant|>\nBlue\n<|user|>\nAnother?\n<|assistant|>\n', trained: false },
      { text: 'Red', trained: true },
    ]);
    // A user message after the last assistant one is context that nothing follows.
    expect(renderSegments(records[2])).toEqual([
      { text: '<|user|>\nSay "yes"\n<|assistant|>\n', trained: false },
      { text: 'yes', trained: true },
      { text: '\n<|user|>\nthanks', trained: false },
    ]);
  });

  test('chat renderRecord: prompt up to the last assistant marker, completion its content', () => {
    const { records } = loadRecords(path.join(DATA, 'chat.jsonl'));
    expect(renderRecord(records[1])).toEqual({
      prompt: '<|user|>\nName a colour.\n<|assistant|>\nBlue\n<|user|>\nAnother?\n<|assistant|>\n', completion: 'Red',
    });
    expect(renderRecord(records[2])).toEqual({ prompt: '<|user|>\nSay "yes"\n<|assistant|>\n', completion: 'yes' });
  });

  test('text: the whole document is the completion', () => {
    expect(renderRecord({ kind: 'text', text: 'abc\n', ...at })).toEqual({ prompt: '', completion: 'abc\n' });
  });

  test('GPT-2 tokenises prompt and completion apart exactly as the whole rendered example', () => {
    // The space before the label moves to the completion, so the boundary is "non-space | space",
    // where GPT-2's pre-tokeniser always splits: masking by segment changes no token.
    const tokenizer = loadTokenizer();
    const labels = ['positive', 'negative', '2', 'spam'];
    for (const [i, text] of ['I loved it', 'Dull; too long!', 'ends with space ', 'ends\nwith newline\n'].entries()) {
      const { prompt, completion } = renderRecord({ kind: 'classification', text, label: labels[i], ...at });
      expect([...tokenizer.encode(prompt), ...tokenizer.encode(completion)]).toEqual(tokenizer.encode(prompt + completion));
    }
  });
});

describe('custom templates', () => {
  test('placeholders filled, text after the target trained, spaces before it moved to the completion', () => {
    const r: DataRecord = { kind: 'prompt_completion', prompt: 'cat', completion: 'chat', ...at };
    expect(renderSegments(r, compileTemplate('prompt_completion', 'English: {prompt}\nFrench:  {completion}\n###'))).toEqual([
      { text: 'English: cat\nFrench:', trained: false },
      { text: '  chat\n###', trained: true },
    ]);
  });

  test('classification with {{ }} escapes and the text twice', () => {
    const r: DataRecord = { kind: 'classification', text: 'ok', label: 'pos', ...at };
    expect(renderRecord(r, '{{{text}}} [{text}] => {label}.')).toEqual({ prompt: '{ok} [ok] =>', completion: ' pos.' });
  });

  test('chat with {Role} and a suffix after {content}, which is trained on assistant turns only', () => {
    const r: DataRecord = { kind: 'chat', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], ...at };
    expect(renderSegments(r, compileTemplate('chat', '{Role}: {content};'))).toEqual([
      { text: 'User: Hi;\nAssistant:', trained: false },
      { text: ' Hello;', trained: true },
    ]);
  });

  test.each([
    ['classification', 'Text: {txt} {label}', 'unknown placeholder {txt} for classification data; expected {text}, {label}'],
    ['classification', 'Text: {text}', 'expected {label} exactly once for classification data (it marks what the model must produce) but found it 0 times'],
    ['prompt_completion', '{prompt} {completion} {completion}', 'expected {completion} exactly once for prompt_completion data'],
    ['chat', '<{role}> {content', "unclosed '{' at character 10"],
    ['chat', '{role}} {content}', "unmatched '}' at character 7"],
    ['text', 'Doc: {text}', 'plain text data is used as is'],
  ] as const)('%s %j is rejected', (kind, template, message) => {
    expect(() => compileTemplate(kind, template)).toThrow(message);
  });

  test('a template for another kind is refused', () => {
    expect(() => renderRecord({ kind: 'text', text: 'x', ...at }, compileTemplate('classification'))).toThrow('template for classification data used on a text record (mem:1)');
  });
});
