/**
 * The task formats of issue 16 (qa, ner, translation, summarization): detection, validation with
 * FILE:LINE messages, CoNLL column files, the templates' prompt/answer split and loss mask, the
 * chat form for models with a chat template, and the NER output form and its decoder. Expected
 * texts are written by hand from the documented formats.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  compileTemplate, DataError, decodeEntities, detectKind, findTagProblem, formatEntities, loadRecords, renderRecord, taskMessages,
  tokenizeRecord, type DataRecord, type TaskRecord,
} from '../../lib/data';
import { generationExamples } from '../../lib/eval';
import { loadTokenizer } from '../../lib/tokenizer';
import { chatTemplateOf } from '../../lib/tokenizer/chat_template';
import { FIXTURES, TINY, tempDir } from '../helpers';

const dir = tempDir('gptune-tasks-data-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, lines: readonly (string | object)[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

const QA = { context: 'The cat sat on the mat in Paris.', question: 'Where did the cat sit?', answers: ['on the mat', 'the mat'] };
const NER = { tokens: ['EU', 'rejects', 'German', 'call', 'to', 'boycott', 'British', 'lamb', '.'], tags: ['B-ORG', 'O', 'B-MISC', 'O', 'O', 'O', 'B-MISC', 'O', 'O'] };

describe('detection from keys, extensions and -DOCSTART-', () => {
  test.each([
    ['qa.jsonl', QA, 'qa'],
    ['squad.jsonl', { context: 'a b', question: 'q?', answers: { text: ['a'], answer_start: [0] } }, 'qa'],
    ['ner.jsonl', NER, 'ner'],
    ['mt.jsonl', { source: 'Hallo', target: 'Hello' }, 'translation'],
    ['sum.jsonl', { document: 'A long text.', summary: 'Short.' }, 'summarization'],
  ])('%s', (name, line, kind) => {
    expect(detectKind(write(name, [line]))).toBe(kind);
  });

  test('.conll/.iob files and files starting with -DOCSTART- are ner; a .txt stays text', () => {
    const body = ['-DOCSTART- -X- -X- O', '', 'EU NNP B-NP B-ORG', 'rejects VBZ B-VP O'];
    expect(detectKind(write('a.conll', body))).toBe('ner');
    expect(detectKind(write('a.iob', body))).toBe('ner');
    expect(detectKind(write('eng.train', body))).toBe('ner');
    expect(detectKind(write('a.txt', body))).toBe('text');
  });

  test('unknown keys: the message lists the task formats too', () => {
    expect(() => detectKind(write('odd.jsonl', [{ foo: 1 }]))).toThrow(/"context"\+"question"\+"answers" \(qa\), "tokens"\+"tags" \(ner\), "source"\+"target" \(translation\) or "document"\+"summary" \(summarization\)/);
  });
});

describe('reading and validating', () => {
  test('QA: plain and SQuAD answers; an answer not in the context warns (counted), it is not an error', () => {
    const file = write('qa2.jsonl', [QA, { context: 'Rome is old.', question: 'What is old?', answers: { text: ['Rome', 'The eternal city'], answer_start: [0, -1] } }]);
    const loaded = loadRecords(file);
    expect(loaded.kind).toBe('qa');
    expect(loaded.records.map((r) => (r as TaskRecord & { answers: string[] }).answers)).toEqual([['on the mat', 'the mat'], ['Rome', 'The eternal city']]);
    expect(loaded.warnings).toEqual([{ file, line: 2, warning: `${file}:2: answer "The eternal city" is not in the context` }]);
  });

  test.each([
    ['an empty question', { ...QA, question: '  ' }, /:1: field "question" is empty$/],
    ['an empty context', { ...QA, context: '' }, /:1: field "context" is empty$/],
    ['no answers', { ...QA, answers: [] }, /:1: field "answers" is an empty array: a question needs at least one gold answer/],
    ['an empty answer', { ...QA, answers: ['x', ''] }, /:1: "answers\[1\]" is empty$/],
    ['SQuAD answers without text', { ...QA, answers: { answer_start: [0] } }, /:1: missing field "answers.text"$/],
    ['an empty source', { source: ' ', target: 'x' }, /:1: field "source" is empty$/],
    ['an empty document', { document: '', summary: 'x' }, /:1: field "document" is empty$/],
    ['a missing summary', { document: 'x' }, /:1: missing field "summary"$/],
    ['tags and tokens of different lengths', { tokens: ['a', 'b', 'c'], tags: ['O', 'O'] }, /:1: "tokens" has 3 items but "tags" has 2: expected one tag per token$/],
    ['an I- tag after O', { tokens: ['in', 'New', 'York'], tags: ['O', 'O', 'I-LOC'] }, /:1: tags\[2\]: I-LOC follows O: an entity starts with B-LOC \(IOB2; convert IOB1 data first\)$/],
    ['an I- tag starting the sentence', { tokens: ['York'], tags: ['I-LOC'] }, /:1: tags\[0\]: I-LOC starts the sentence/],
    ['an I- tag of another type', { tokens: ['New', 'York'], tags: ['B-ORG', 'I-LOC'] }, /:1: tags\[1\]: I-LOC follows B-ORG/],
    ['a BIOES tag', { tokens: ['Paris'], tags: ['S-LOC'] }, /:1: tags\[0\]: unknown tag "S-LOC": expected O, B-TYPE or I-TYPE \(IOB2\)$/],
    ['a lowercase o', { tokens: ['x'], tags: ['o'] }, /:1: tags\[0\]: unknown tag "o"/],
    ['a token with a space', { tokens: ['New York'], tags: ['B-LOC'] }, /:1: tokens\[0\] is the string "New York": a token is non-empty and holds no whitespace$/],
  ])('%s: one FILE:LINE error', (_, line, message) => {
    const file = write('bad.jsonl', [line]);
    const kind = 'tokens' in line ? 'ner' : 'question' in line ? 'qa' : 'source' in line ? 'translation' : 'summarization';
    expect(() => loadRecords(file, { format: kind })).toThrow(DataError);
    expect(() => loadRecords(file, { format: kind })).toThrow(message);
  });

  test('--skip-invalid keeps the good lines and lists the bad ones with their line numbers', () => {
    const file = write('mixed.jsonl', [NER, { tokens: ['a'], tags: ['I-X'] }, '', NER]);
    const loaded = loadRecords(file, { skipInvalid: true });
    expect(loaded.records.map((r) => r.line)).toEqual([1, 4]);
    expect(loaded.skipped.map((s) => s.line)).toEqual([2]);
    expect(loaded.blankLines).toBe(1);
  });

  test('CoNLL-2003 columns: -DOCSTART- skipped, blank lines between sentences, last column the tag, a record at its first line', () => {
    const file = write('train.conll', [
      '-DOCSTART- -X- -X- O', '',
      'EU NNP B-NP B-ORG', 'rejects VBZ B-VP O', 'German JJ B-NP B-MISC', '',
      'Peter NNP B-NP B-PER', 'Blackburn NNP I-NP I-PER', '', '',
      'BRUSSELS NNP B-NP B-LOC',
    ]);
    const loaded = loadRecords(file);
    expect(loaded.kind).toBe('ner');
    expect(loaded.records).toEqual([
      { kind: 'ner', tokens: ['EU', 'rejects', 'German'], tags: ['B-ORG', 'O', 'B-MISC'], file, line: 3 },
      { kind: 'ner', tokens: ['Peter', 'Blackburn'], tags: ['B-PER', 'I-PER'], file, line: 7 },
      { kind: 'ner', tokens: ['BRUSSELS'], tags: ['B-LOC'], file, line: 11 },
    ]);
  });

  test('CoNLL: an I- without a B- names its own line and its position in the sentence; a one-column line is an error', () => {
    const file = write('bad.conll', ['Peter B-PER', '', 'in O', 'New O', 'York I-LOC']);
    expect(() => loadRecords(file)).toThrow(`${file}:5: token 3 of the sentence: I-LOC follows O: an entity starts with B-LOC (IOB2; convert IOB1 data first)`);
    const oneColumn = write('one.conll', ['Peter B-PER', 'Smith']);
    expect(() => loadRecords(oneColumn)).toThrow(`${oneColumn}:2: expected a token and a tag separated by whitespace but found "Smith"`);
    const skipped = loadRecords(file, { skipInvalid: true });
    expect(skipped.records).toHaveLength(1);
    expect(skipped.skipped.map((s) => s.line)).toEqual([5]);
  });

  test('a CoNLL file named .txt is read as CoNLL when the format is given', () => {
    const file = write('conll.txt', ['Paris B-LOC', 'is O']);
    expect(loadRecords(file, { format: 'ner' }).records).toEqual([{ kind: 'ner', tokens: ['Paris', 'is'], tags: ['B-LOC', 'O'], file, line: 1 }]);
  });
});

describe('templates: the prompt, the answer (trained) and the variables', () => {
  const at = { file: 'f', line: 1 };
  test('qa trains on the first gold answer after "Answer:"', () => {
    expect(renderRecord({ kind: 'qa', ...QA, ...at })).toEqual({
      prompt: 'Context: The cat sat on the mat in Paris.\nQuestion: Where did the cat sit?\nAnswer:', completion: ' on the mat',
    });
  });

  test('ner writes one "TYPE: span" line per entity, "none" without entities', () => {
    expect(renderRecord({ kind: 'ner', ...NER, ...at })).toEqual({
      prompt: 'Sentence: EU rejects German call to boycott British lamb .\nEntities:\n', completion: 'ORG: EU\nMISC: German\nMISC: British',
    });
    expect(renderRecord({ kind: 'ner', tokens: ['Hello', 'there'], tags: ['O', 'O'], ...at }).completion).toBe('none');
    expect(formatEntities(['in', 'New', 'York', 'City', 'and', 'Rome'], ['O', 'B-LOC', 'I-LOC', 'I-LOC', 'O', 'B-LOC'])).toBe('LOC: New York City\nLOC: Rome');
  });

  test('translation: "Source"/"Target" by default, the language names when given; they belong to translation only', () => {
    const record: DataRecord = { kind: 'translation', source: 'Guten Morgen', target: 'Good morning', ...at };
    expect(renderRecord(record)).toEqual({ prompt: 'Source: Guten Morgen\nTarget:', completion: ' Good morning' });
    const named = compileTemplate('translation', undefined, { sourceLang: 'German', targetLang: 'English' });
    expect(renderRecord(record, named)).toEqual({ prompt: 'German: Guten Morgen\nEnglish:', completion: ' Good morning' });
    const own = compileTemplate('translation', 'Translate {source_lang} to {target_lang}: {source} => {target}', { sourceLang: 'German', targetLang: 'English' });
    expect(renderRecord(record, own)).toEqual({ prompt: 'Translate German to English: Guten Morgen =>', completion: ' Good morning' });
    expect(() => compileTemplate('qa', undefined, { sourceLang: 'German' })).toThrow('--source-lang applies to translation data, not qa');
    expect(() => compileTemplate('translation', undefined, { targetLang: ' ' })).toThrow('--target-lang: expected a language name but received an empty string');
    expect(() => compileTemplate('translation', '{source} {answer}')).toThrow(/unknown placeholder \{answer\} for translation data/);
  });

  test('summarization uses GPT-2\'s "TL;DR:" cue; a multi-line summary is trained whole', () => {
    expect(renderRecord({ kind: 'summarization', document: 'Line one.\nLine two.', summary: 'One.\nTwo.', ...at })).toEqual({
      prompt: 'Line one.\nLine two.\nTL;DR:', completion: ' One.\nTwo.',
    });
  });

  test('the loss is on the answer and EOS only (GPT-2 tokenizer)', () => {
    const tokenizer = loadTokenizer(TINY);
    const record: DataRecord = { kind: 'qa', ...QA, ...at };
    const template = compileTemplate('qa');
    const ex = tokenizeRecord(record, template, tokenizer, false, null);
    const { prompt, completion } = renderRecord(record, template);
    const promptTokens = tokenizer.encode(prompt).length;
    const trained = [...ex.trained];
    expect(trained.slice(0, promptTokens).every((t) => t === 0)).toBe(true);
    expect(trained.slice(promptTokens).every((t) => t === 1)).toBe(true);
    expect(tokenizer.decode([...ex.tokens.slice(promptTokens, -1)])).toBe(completion);
    expect(ex.tokens[ex.tokens.length - 1]).toBe(tokenizer.eosTokenId);
  });
});

describe('chat form for models with a chat template', () => {
  const at = { file: 'f', line: 1 };
  test('a user request and the assistant\'s answer; only the answer and <|im_end|> are trained (ChatML)', () => {
    const tokenizer = loadTokenizer(path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml'));
    const chat = chatTemplateOf(tokenizer)!;
    const template = compileTemplate('translation', undefined, { sourceLang: 'German', targetLang: 'English' });
    const record: TaskRecord = { kind: 'translation', source: 'Guten Morgen', target: 'Good morning', ...at };
    expect(taskMessages(record, template)).toEqual([
      { role: 'user', content: 'Translate from German to English:\nGuten Morgen' },
      { role: 'assistant', content: 'Good morning' },
    ]);
    const ex = tokenizeRecord(record, template, tokenizer, false, chat);
    const trainedText = tokenizer.decode([...ex.tokens].filter((_, i) => ex.trained[i] === 1));
    expect(trainedText).toBe('Good morning<|im_end|>');
    expect(tokenizer.decode([...ex.tokens])).toContain('<|im_start|>user\nTranslate from German to English:\nGuten Morgen<|im_end|>');
  });

  test('evaluation asks a chat model the same question, up to the assistant\'s turn, with the answer as the reference', () => {
    const tokenizer = loadTokenizer(path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml'));
    const records: DataRecord[] = [{ kind: 'qa', ...QA, ...at }];
    expect(generationExamples(records, undefined, tokenizer)).toEqual([{
      // This ChatML template (Qwen's) adds its default system message when the conversation has none.
      prompt: '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAnswer the question from the context.\nContext: The cat sat on the mat in Paris.\nQuestion: Where did the cat sit?<|im_end|>\n<|im_start|>assistant\n',
      reference: 'on the mat', chat: true,
    }]);
    // An explicit --template wins over the chat template, as for chat data.
    expect(generationExamples(records, 'Q: {question} A: {answer}', tokenizer)).toEqual([{ prompt: 'Q: Where did the cat sit? A:', reference: ' on the mat' }]);
  });
});

describe('NER decoding of model output', () => {
  const tokens = ['John', 'Smith', 'met', 'John', 'in', 'New', 'York', '.'];
  test('well-formed output round-trips to the gold tags', () => {
    const tags = ['B-PER', 'I-PER', 'O', 'B-PER', 'O', 'B-LOC', 'I-LOC', 'O'];
    const d = decodeEntities(formatEntities(tokens, tags), tokens);
    expect(d.tags).toEqual(tags);
    expect([d.malformed, d.unmatched]).toEqual([0, 0]);
  });

  test('a repeated span goes to the next occurrence left to right', () => {
    expect(decodeEntities('PER: John\nPER: John', tokens).tags).toEqual(['B-PER', 'O', 'O', 'B-PER', 'O', 'O', 'O', 'O']);
  });

  test('out-of-order entities are found among the free tokens; spans not there are unmatched', () => {
    const d = decodeEntities('LOC: New York\nPER: John Smith\nORG: Acme\nPER: New York', tokens);
    expect(d.tags).toEqual(['B-PER', 'I-PER', 'O', 'O', 'O', 'B-LOC', 'I-LOC', 'O']);
    expect([d.malformed, d.unmatched]).toEqual([0, 2]);
  });

  test('malformed lines are counted and skipped; blank lines, "none" and spacing around ":" are fine', () => {
    const d = decodeEntities('\n  LOC :  New   York  \nthe model rambles\n: York\nPER:\nNone\n', tokens);
    expect(d.tags).toEqual(['O', 'O', 'O', 'O', 'O', 'B-LOC', 'I-LOC', 'O']);
    expect([d.malformed, d.unmatched]).toEqual([3, 0]);
  });

  test('"none", empty output and a truncated last line', () => {
    expect(decodeEntities('none', tokens).tags.every((t) => t === 'O')).toBe(true);
    expect(decodeEntities('', tokens)).toEqual({ tags: Array(8).fill('O'), entities: [], malformed: 0, unmatched: 0 });
    const cut = decodeEntities('PER: John Smith\nLOC: New Yo', tokens);
    expect(cut.tags).toEqual(['B-PER', 'I-PER', 'O', 'O', 'O', 'O', 'O', 'O']);
    expect(cut.unmatched).toBe(1);
  });

  test('case and punctuation must match the tokens exactly', () => {
    expect(decodeEntities('LOC: new york', tokens).unmatched).toBe(1);
    expect(decodeEntities('LOC: York.', tokens).unmatched).toBe(1);
  });

  test('findTagProblem accepts valid IOB2', () => {
    expect(findTagProblem(['B-PER', 'I-PER', 'B-PER', 'O', 'B-LOC', 'I-LOC', 'I-LOC'])).toBeNull();
    expect(findTagProblem([])).toBeNull();
  });
});
