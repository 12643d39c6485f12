/**
 * Preference pairs (lib/data/preference.ts): OpenAI's preference JSONL and TRL's {prompt, chosen,
 * rejected} (strings, message lists, implicit prompt), one-line FILE:LINE errors, skip_invalid, and the
 * batches: 2P rows (chosen sides then rejected sides), the loss on the answers and EOS only, messages
 * through the model's chat template.
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildPreferenceDatasets, detectKind, isPreferenceFile, loadPreferencePairs, PairStore, parsePreferenceLine } from '../../lib/data';
import { compileTemplate } from '../../lib/data/templates';
import { IGNORE_INDEX } from '../../lib/metrics/lm';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, tempDir, TINY } from '../helpers';

const tokenizer = loadTokenizer(TINY);
let tmp: string;
beforeAll(() => { tmp = tempDir('gptune-preference-'); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function file(name: string, lines: unknown[]): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return f;
}

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });
const openai = (prompt: string, chosen: string, rejected: string) => ({
  input: { messages: [user(prompt)] }, preferred_output: [assistant(chosen)], non_preferred_output: [assistant(rejected)],
});

describe('parsing', () => {
  test('OpenAI preference format: input.messages, one preferred and one non-preferred assistant message', () => {
    const pair = parsePreferenceLine(JSON.stringify({ ...openai('Hi?', 'Hello.', 'Go away.'), extra: 1 }), 'f.jsonl', 3);
    expect(pair).toEqual({ prompt: [{ role: 'user', content: 'Hi?' }], chosen: 'Hello.', rejected: 'Go away.', file: 'f.jsonl', line: 3 });
  });

  test('TRL string form, explicit message prompt, and implicit prompt (shared conversation before the answer)', () => {
    expect(parsePreferenceLine(JSON.stringify({ prompt: 'Q: 2+2?\nA:', chosen: ' 4', rejected: ' 5' }), 'f', 1))
      .toMatchObject({ prompt: 'Q: 2+2?\nA:', chosen: ' 4', rejected: ' 5' });
    expect(parsePreferenceLine(JSON.stringify({ prompt: [user('2+2?')], chosen: [assistant('4')], rejected: [assistant('5')] }), 'f', 1))
      .toMatchObject({ prompt: [{ role: 'user', content: '2+2?' }], chosen: '4', rejected: '5' });
    const convo = [{ role: 'system', content: 'Be brief.' }, user('2+2?')];
    expect(parsePreferenceLine(JSON.stringify({ chosen: [...convo, assistant('4')], rejected: [...convo, assistant('five')] }), 'f', 1))
      .toMatchObject({ prompt: convo, chosen: '4', rejected: 'five' });
  });

  test.each([
    ['prompts of chosen and rejected that differ', { chosen: [user('a'), assistant('x')], rejected: [user('b'), assistant('y')] }, /^f\.jsonl:7: the prompts of chosen and rejected differ at message 1/],
    ['an empty preferred output', { ...openai('q', '   ', 'no'), }, /^f\.jsonl:7: preferred_output\[0\]\.content is empty/],
    ['no preferred output', { ...openai('q', 'a', 'b'), preferred_output: [] }, /^f\.jsonl:7: field "preferred_output" is empty; expected exactly one assistant message/],
    ['more than one preferred output', { ...openai('q', 'a', 'b'), preferred_output: [assistant('a'), assistant('b')] }, /^f\.jsonl:7: field "preferred_output" has 2 messages; expected exactly one assistant message/],
    ['a preferred output that is not the assistant\'s', { ...openai('q', 'a', 'b'), preferred_output: [user('a')] }, /^f\.jsonl:7: preferred_output\[0\]\.role must be assistant but is user/],
    ['an unknown role in the input', { ...openai('q', 'a', 'b'), input: { messages: [{ role: 'robot', content: 'q' }] } }, /^f\.jsonl:7: input\.messages\[0\]\.role: unknown role "robot"/],
    ['a missing input', { preferred_output: [assistant('a')], non_preferred_output: [assistant('b')] }, /^f\.jsonl:7: missing field "input"/],
    ['an empty chosen string', { prompt: 'p', chosen: '', rejected: 'r' }, /^f\.jsonl:7: the chosen answer is empty/],
    ['a string prompt with message answers', { prompt: 'p', chosen: [assistant('a')], rejected: [assistant('b')] }, /^f\.jsonl:7: field "prompt" is a string but the answers are message lists/],
    ['a conversation that does not end with the answer', { chosen: [user('a'), assistant('x'), user('c')], rejected: [user('a'), assistant('y')] }, /^f\.jsonl:7: chosen\[2\]\.role must be assistant/],
    ['string answers without a prompt', { chosen: 'a', rejected: 'b' }, /^f\.jsonl:7: missing field "prompt"/],
    ['malformed JSON', '{"chosen": ', /^f\.jsonl:7: malformed JSON/],
  ])('%s is a one-line FILE:LINE error', (_, line, message) => {
    const text = typeof line === 'string' ? line : JSON.stringify(line);
    let error: Error | null = null;
    try {
      parsePreferenceLine(text, 'f.jsonl', 7);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error!.message.includes('\n')).toBe(false);
  });

  test('loading names the file and line of the first bad line, or skips bad lines with skipInvalid', () => {
    const f = file('mixed.jsonl', [openai('a', 'b', 'c'), '', { prompt: 'p', chosen: '', rejected: 'r' }, openai('d', 'e', 'f')]);
    expect(() => loadPreferencePairs(f)).toThrow(`${f}:3: the chosen answer is empty`);
    const loaded = loadPreferencePairs(f, { skipInvalid: true });
    expect(loaded.pairs.map((p) => p.line)).toEqual([1, 4]);
    expect(loaded.skipped).toEqual([{ file: f, line: 3, error: `${f}:3: the chosen answer is empty: the preferred answer must have something to train on` }]);
    expect(loaded.blankLines).toBe(1);
  });

  test('detection: a preference file is recognised, and the SFT formats point to --method dpo/orpo', () => {
    const f = file('trl.jsonl', [{ prompt: 'p', chosen: 'a', rejected: 'b' }]);
    expect(isPreferenceFile(f)).toBe(true);
    expect(isPreferenceFile(file('pc.jsonl', [{ prompt: 'p', completion: 'c' }]))).toBe(false);
    expect(() => detectKind(f)).toThrow(`${f}:1: holds preference pairs (preferred/non-preferred or chosen/rejected answers): train on them with --method dpo or orpo`);
  });
});

describe('tokens and batches', () => {
  const rendering = { tokenizer, template: compileTemplate('prompt_completion'), seqLen: 40 };

  test('a batch of P pairs is 2P rows, chosen sides first; targets only on the answer and its EOS', () => {
    const store = new PairStore();
    const pairs = [
      { prompt: 'The sea', chosen: ' is wide', rejected: ' whale', file: 'f', line: 1 },
      { prompt: 'A ship of', chosen: ' Ahab', rejected: ' the sea of the', file: 'f', line: 2 },
    ];
    for (const p of pairs) store.add(p, rendering);
    const batch = store.batch([1, 0], 40, tokenizer.eosTokenId);
    expect(batch.B).toBe(4);
    expect(batch.pairs).toEqual([1, 0]);
    const rowText = (row: number) => {
      const ids = Array.from(batch.inputs.subarray(row * 40, (row + 1) * 40));
      return tokenizer.decode(ids.slice(0, ids.indexOf(tokenizer.eosTokenId)));
    };
    expect([0, 1, 2, 3].map(rowText)).toEqual(['A ship of Ahab', 'The sea is wide', 'A ship of the sea of the', 'The sea whale']);
    // Row 1 (pair 0's chosen side): the targets are the answer's tokens and EOS, predicted from the position before each.
    const prompt = tokenizer.encode('The sea'), answer = tokenizer.encode(' is wide');
    const targets = Array.from(batch.targets.subarray(40, 80));
    const want = new Array(40).fill(IGNORE_INDEX);
    [...answer, tokenizer.eosTokenId].forEach((id, k) => { want[prompt.length - 1 + k] = id; });
    expect(targets).toEqual(want);
  });

  test('message prompts go through the model\'s chat template: the answer turn is trained, the prompt is not', () => {
    const chatml = loadTokenizer(path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml'));
    const store = new PairStore();
    store.add({ prompt: [{ role: 'user', content: 'Hi' }], chosen: 'Hello.', rejected: 'Bye.', file: 'f', line: 1 }, { ...rendering, tokenizer: chatml, seqLen: 64 });
    const chosen = store.examples.get(0);
    const trainedText = chatml.decode(Array.from(chosen.tokens).filter((_, i) => chosen.trained[i]));
    expect(trainedText).toBe('Hello.<|im_end|>');
    expect(chatml.decode(Array.from(chosen.tokens))).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n');
  });

  test('buildPreferenceDatasets: a held-out fraction of pairs, the report counts pairs and rows, resumable order', () => {
    const lines = Array.from({ length: 10 }, (_, i) => ({ prompt: `#${i} the sea`, chosen: ' is wide', rejected: ' is a whale of the sea' }));
    const f = file('ten.jsonl', lines);
    const d = buildPreferenceDatasets({ train: f, validationFraction: 0.2, tokenizer, seqLen: 32, pairsPerBatch: 3, shuffle: true, seed: 3 });
    expect(d.report.kind).toBe('preference');
    expect(d.report.trainSplit.examples).toBe(8);
    expect(d.report.trainSplit.rows).toBe(16);
    expect(d.report.validationSplit!.examples).toBe(2);
    expect(d.validation.map((b) => b.B)).toEqual([4]);
    const first = d.train.next();
    const state = d.train.getState();
    const next = [d.train.next(), d.train.next()];
    const again = buildPreferenceDatasets({ train: f, validationFraction: 0.2, tokenizer, seqLen: 32, pairsPerBatch: 3, shuffle: true, seed: 3 });
    again.train.setState(state);
    expect([again.train.next(), again.train.next()]).toEqual(next);
    expect(first.B).toBe(6);
  });

  test('a prompt longer than T loses its start, the answers survive', () => {
    const store = new PairStore();
    store.add({ prompt: 'the sea '.repeat(30), chosen: ' Ahab', rejected: ' whale', file: 'f', line: 1 }, { ...rendering, seqLen: 12 });
    expect(store.truncatedSides).toBe(2);
    const chosen = store.examples.get(0);
    expect(chosen.tokens.length).toBe(12);
    expect(tokenizer.decode(Array.from(chosen.tokens).filter((_, i) => chosen.trained[i]))).toBe(' Ahab<|endoftext|>');
    expect(chosen.trained[0]).toBe(0);
  });
});
