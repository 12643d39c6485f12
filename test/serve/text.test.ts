/**
 * StopStringText: a completion's text as tokens arrive, cut before the first stop string, releasing
 * only text that cannot change. Its pieces, concatenated, must be the final text, whatever the stops.
 */
import { loadTokenizer } from '../../lib/tokenizer';
import { StopStringText } from '../../lib/serve/text';

const tokenizer = loadTokenizer(); // GPT-2's byte-level BPE

function run(text: string, stops: string[]) {
  const ids = tokenizer.encode(text);
  const t = new StopStringText(tokenizer, stops);
  const pieces: string[] = [];
  for (const id of ids) {
    pieces.push(t.push(id));
    if (t.stopped) break;
  }
  pieces.push(t.finish());
  return { pieces, text: t.text, stopped: t.stopped };
}

test('no stop: the pieces are the decoded text, each released as its token arrives', () => {
  const r = run('Hello world, how are you?', []);
  expect(r.pieces.join('')).toBe('Hello world, how are you?');
  expect(r.text).toBe('Hello world, how are you?');
  expect(r.pieces.filter((p) => p !== '').length).toBeGreaterThan(3);
  expect(r.stopped).toBe(false);
});

test('a stop string that spans tokens ends the text before it; the earliest of several wins', () => {
  const r = run('The answer is 42. END of story. STOP', ['STOP', '. END']);
  expect(r.text).toBe('The answer is 42');
  expect(r.pieces.join('')).toBe(r.text);
  expect(r.stopped).toBe(true);
});

test('text that may begin a stop string is held back until it cannot, and released at the end', () => {
  const ids = tokenizer.encode('wait, please wait');
  const t = new StopStringText(tokenizer, [', stop']);
  const released = ids.map((id) => t.push(id));
  // After "wait," the comma could start ", stop": it is not released with its token.
  expect(released[0] + released[1]).toBe('wait');
  expect(released.join('') + t.finish()).toBe('wait, please wait');
});

test('a character split across tokens (U+FFFD so far) is released whole', () => {
  const ids = tokenizer.encode('naïve 🙂 ok');
  const t = new StopStringText(tokenizer, []);
  const pieces = ids.map((id) => t.push(id));
  expect(pieces.every((p) => !p.includes('\uFFFD'))).toBe(true);
  expect(pieces.join('') + t.finish()).toBe('naïve 🙂 ok');
});
