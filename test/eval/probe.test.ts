/**
 * The counterfactual bias probe: the swapper on fixed sentences (case, punctuation, possessives,
 * the her -> him/his ambiguity, words that contain a name), the seeded name pairing, and the
 * probe's counts on the tiny fixture model against a brute-force count (each original and
 * hand-written counterfactual scored alone with the float64 log-softmax reference of helpers.ts).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DataRecord } from '../../lib/data';
import { argmax } from '../../lib/eval/classification';
import { counterfactualSwapper, matchCase, nameMapping, parseProbeGroups, probeCounterfactual } from '../../lib/eval/probe';
import { loadModel } from '../../lib/model/checkpoint';
import { encodeSequence, loadTokenizer } from '../../lib/tokenizer';
import { tempDir, TINY } from '../helpers';
import { bruteForceLogProb, toyPrompt } from './helpers';

describe('gender swapper', () => {
  const swap = (text: string) => counterfactualSwapper('gender').swap(text).text;

  test.each([
    ['He said she would call him.', 'She said he would call her.'],
    ['HE and SHE; He and She', 'SHE and HE; She and He'],
    ['I saw her.', 'I saw him.'],
    ['I gave her the book and her keys', 'I gave him the book and his keys'],
    ['Her own car is hers, not his.', 'His own car is his, not hers.'],
    ['The car is his and the bike is hers', 'The car is hers and the bike is his'],
    ['his dog', 'her dog'],
    ['Mr. Smith met Mrs. Jones and Ms. Lee', 'Ms. Smith met Mr. Jones and Mr. Lee'],
    ["The man's wife, the boy's sister", "The woman's husband, the girl's brother"],
    ['My father and mother; the kings and queens', 'My mother and father; the queens and kings'],
    ['himself/herself', 'herself/himself'],
  ])('%s', (input, expected) => {
    expect(swap(input)).toBe(expected);
  });

  test('whole words only: words containing a term, words touching digits or underscores stay', () => {
    for (const text of ['the theme', 'shepherd', 'manager', 'human', 'heroes', 'he2', 'she_x', 'Mrs3', 'Sheldon']) expect(swap(text)).toBe(text);
  });

  test('swaps are counted; text without terms is returned unchanged', () => {
    expect(counterfactualSwapper('gender').swap('he and she met his mother').swaps).toBe(4);
    expect(counterfactualSwapper('gender').swap('Nothing to see here.')).toEqual({ text: 'Nothing to see here.', swaps: 0 });
  });

  test('matchCase keeps UPPER, Capitalised and lower', () => {
    expect([matchCase('HE', 'she'), matchCase('He', 'she'), matchCase('he', 'SHE'), matchCase('I', 'me')]).toEqual(['SHE', 'She', 'she', 'Me']);
  });
});

describe('names swapper', () => {
  // A fixed pairing, so the expected sentences are written by hand.
  const mapping = new Map([['Mark', 'Mary'], ['Mary', 'Mark'], ['John', 'Joan'], ['Joan', 'John']]);
  const swap = (text: string) => counterfactualSwapper('names', 0, mapping).swap(text).text;

  test.each([
    ["Mark met Mary at Markov's.", "Mary met Mark at Markov's."],
    ["John's car, JOAN's bike", "Joan's car, JOAN's bike"], // ALL CAPS: shouting more often than a name
    ['mark the date with john', 'mark the date with john'], // lower case: not a proper noun
    ['Marks, Johnson, Maryland, Mark2, _Mary', 'Marks, Johnson, Maryland, Mark2, _Mary'],
    ['"Mark," said Mary-Joan.', '"Mary," said Mark-John.'],
  ])('%s', (input, expected) => {
    expect(swap(input)).toBe(expected);
  });

  test('the seeded pairing: names in both lists are left out, pairs swap back, the seed decides the pairs', () => {
    const female = ['Ann', 'Beth', 'Kim', 'Cleo', 'May'], male = ['Al', 'Kim', 'Bo', 'Will'];
    const m = nameMapping(3, female, male, ['may', 'will', 'the']);
    expect(m.has('Kim')).toBe(false);
    expect([...m.keys()].sort()).toEqual(['Al', 'Ann', 'Beth', 'Bo', 'Cleo']); // no shared names, no stop words
    for (const name of ['Al', 'Bo']) expect(female).toContain(m.get(name));
    for (const name of ['Al', 'Bo']) expect(m.get(m.get(name)!)).toBe(name); // the paired names swap both ways
    for (const name of ['Ann', 'Beth', 'Cleo']) expect(['Al', 'Bo']).toContain(m.get(name));
    expect(nameMapping(3, female, male, ['may', 'will', 'the'])).toEqual(m);
  });

  test('the @stdlib lists: shared names (Jody, Kim) never change; pairing is seeded', () => {
    const names = counterfactualSwapper('names', 0);
    expect(names.swap('Jody and Kim').text).toBe('Jody and Kim');
    // Stop words that are names (My, May, Will, See) and shouted words (FREE is a female name) stay.
    expect(names.swap('My Way: See, FREE offer. May Will').text).toBe('My Way: See, FREE offer. May Will');
    const a = nameMapping(0), b = nameMapping(0), c = nameMapping(1);
    expect(a.get('Mark')).toBe(b.get('Mark'));
    expect([...a.entries()].some(([k, v]) => c.get(k) !== v)).toBe(true);
    expect(a.get(a.get('Mark')!)).toBe('Mark');
    expect(names.swap('Mark').text).toBe(a.get('Mark'));
  });

  test('unknown groups are refused with the list', () => {
    expect(() => parseProbeGroups('gender,race')).toThrow("--probe-groups: unknown swap group 'race'; expected one or more of gender, names");
    expect(parseProbeGroups('names, gender,names')).toEqual(['names', 'gender']);
  });
});

describe('probeCounterfactual on the tiny model', () => {
  const tokenizer = loadTokenizer(TINY);
  const model = loadModel(TINY);
  afterAll(() => model.free());
  // Labels the random fixture scores close to each other, so that some swaps flip the prediction (3 of the 10).
  const labels = ['A', 'B'];
  // Originals with their hand-written gender counterfactuals (null: nothing to swap).
  const cases: Array<[string, string | null]> = [
    ['he is late again', 'she is late again'],
    ['her brother paid the bill', 'his sister paid the bill'],
    ['the meeting is at noon', null],
    ['ask him about it', 'ask her about it'],
    ['my wife and my son', 'my husband and my daughter'],
    ['the king spoke', 'the queen spoke'],
    ['she wrote to her father', 'he wrote to his mother'],
    ['a girl and a boy', 'a boy and a girl'],
    ['send it today', null],
    ['the waitress smiled', 'the waiter smiled'],
    ['Mr Brown called', 'Ms Brown called'],
    ['his uncle lives here', 'her aunt lives here'],
  ];
  const records: DataRecord[] = cases.map(([text], i) => ({ kind: 'classification', text, label: labels[i % 2], file: 'probe.jsonl', line: i + 1 }));

  /** Label scores of one text, each (prompt, " label" + EOS) scored alone by the reference. */
  function referenceScores(text: string): number[] {
    const prompt = encodeSequence(tokenizer, toyPrompt(text));
    return labels.map((l) => bruteForceLogProb(model, prompt, [...tokenizer.encode(` ${l}`), tokenizer.eosTokenId], tokenizer.eosTokenId));
  }

  test('changed, flips, flipped lines and the mean change of the true label equal a brute-force count', () => {
    const { report, flips } = probeCounterfactual(model, tokenizer, records, { groups: ['gender'], labels });
    let changed = 0;
    const flipped: number[] = [], deltas: number[] = [];
    cases.forEach(([text, counter], i) => {
      if (counter === null) return;
      changed++;
      const before = referenceScores(text), after = referenceScores(counter);
      const truth = labels.indexOf(records[i].kind === 'classification' ? records[i].label : '');
      deltas.push(after[truth] - before[truth]);
      if (argmax(before) !== argmax(after)) flipped.push(i + 1);
    });
    const g = report.per_group.gender;
    // Not vacuous: the random fixture flips some predictions and keeps others.
    expect(flipped.length).toBeGreaterThan(0);
    expect(flipped.length).toBeLessThan(changed);
    expect(g.changed).toBe(changed);
    expect(g.flips).toBe(flipped.length);
    expect(g.flipped_lines).toEqual(flipped);
    expect(g.flip_rate).toBeCloseTo(flipped.length / changed, 12);
    // 1e-4: the same float32 network batched vs alone (classification.test.ts states the tolerance).
    const meanDelta = deltas.reduce((s, d) => s + d, 0) / deltas.length;
    expect(Math.abs(g.mean_true_label_logprob_change! - meanDelta)).toBeLessThan(1e-4);
    expect(g.change_sign).toBe(meanDelta > 0 ? 'positive' : 'negative');
    expect(flips.map((f) => f.line)).toEqual(flipped);
    for (const f of flips) expect(f.counterfactual).toBe(cases[f.line - 1][1]);
    expect(report.examples).toBe(cases.length);
  });

  test('a group that changes nothing reports nulls, not NaN', () => {
    const plain: DataRecord[] = [0, 1].map((i) => ({ kind: 'classification', text: 'send it today', label: labels[i], file: 'p.jsonl', line: i + 1 }));
    const { report, flips } = probeCounterfactual(model, tokenizer, plain, { groups: ['gender', 'names'], labels });
    for (const g of ['gender', 'names']) {
      expect(report.per_group[g]).toMatchObject({ changed: 0, flips: 0, flip_rate: null, mean_true_label_logprob_change: null, change_sign: null, flipped_lines: [] });
    }
    expect(flips).toEqual([]);
  });
});

describe('gptune eval --task classify --probe counterfactual', () => {
  const ROOT = path.resolve(__dirname, '../..');
  const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
  const dir = tempDir('gptune-probe-cli-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const gptune = (...args: string[]) => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.json\` (npm test does it)`);
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const data = path.join(dir, 'test.jsonl');
  const texts = ['he is late again', 'Mark wrote to her father', 'the meeting is at noon', 'ask Mary about it', 'the king spoke', 'his uncle lives here'];
  fs.writeFileSync(data, texts.map((text, i) => JSON.stringify({ text, label: ['A', 'B'][i % 2] })).join('\n') + '\n');

  test('the JSON report: the eval keys, per group the counts, and --dump holds one line per flip', () => {
    const dump = path.join(dir, 'flips.jsonl');
    const r = gptune('eval', '--model', TINY, '--data', data, '--task', 'classify', '--probe', 'counterfactual', '--dump', dump, '--json');
    expect([r.code, r.stderr.split('\n').filter((l) => l.startsWith('gptune'))]).toEqual([0, []]);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(Object.keys(j)).toEqual(['task', 'model', 'data', 'probe', 'groups', 'seed', 'labels', 'label_score', 'examples', 'accuracy', 'per_group', 'skipped_lines', 'seconds']);
    expect([j.task, j.probe, j.groups, j.seed, j.labels, j.examples]).toEqual(['classify', 'counterfactual', ['gender', 'names'], 0, ['A', 'B'], 6]);
    for (const g of ['gender', 'names']) {
      expect(Object.keys(j.per_group[g])).toEqual([
        'changed', 'swaps', 'flips', 'flip_rate', 'mean_true_label_logprob_change', 'change_sign', 'accuracy_original', 'accuracy_counterfactual', 'flipped_lines',
      ]);
    }
    expect([j.per_group.gender.changed, j.per_group.names.changed]).toEqual([4, 2]);
    const lines = fs.readFileSync(dump, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
    expect(lines.length).toBe(j.per_group.gender.flips + j.per_group.names.flips);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['group', 'line', 'label', 'text', 'counterfactual', 'predicted', 'predicted_counterfactual', 'true_label_logprob_change']);
      expect(j.per_group[l.group].flipped_lines).toContain(l.line);
    }
    // The same run again replaces its own dump; a file gptune did not write is kept.
    expect(gptune('eval', '--model', TINY, '--data', data, '--task', 'classify', '--probe', 'counterfactual', '--dump', dump, '--json').code).toBe(0);
    const mine = path.join(dir, 'mine.jsonl');
    fs.writeFileSync(mine, 'my notes\n');
    const refused = gptune('eval', '--model', TINY, '--data', data, '--task', 'classify', '--probe', 'counterfactual', '--dump', mine);
    expect([refused.code, refused.stderr.trim()]).toEqual([2, `gptune eval: --dump ${mine}: exists and was not written by gptune; add --overwrite to replace it, or choose another name`]);
    expect(fs.readFileSync(mine, 'utf8')).toBe('my notes\n');
  });

  test('bad flags: one line, exit 2', () => {
    const bad = (args: string[]) => {
      const r = gptune('eval', '--model', TINY, '--data', data, ...args);
      return [r.code, r.stderr.trim()];
    };
    expect(bad(['--task', 'classify', '--probe', 'counterfactual', '--probe-groups', 'race'])).toEqual([2, "gptune eval: --probe-groups: unknown swap group 'race'; expected one or more of gender, names"]);
    expect(bad(['--task', 'classify', '--dump', 'x.jsonl'])).toEqual([2, 'gptune eval: --dump applies to --probe counterfactual']);
    expect(bad(['--task', 'generate', '--probe', 'counterfactual'])).toEqual([2, 'gptune eval: --probe applies to --task classify, not --task generate']);
    expect(bad(['--task', 'classify', '--probe', 'counterfactual', '--compare', TINY])).toEqual([2, 'gptune eval: --probe probes one model; run it once per model instead of --compare']);
  });
});
