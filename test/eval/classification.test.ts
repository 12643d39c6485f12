/**
 * Classification by label likelihood: the batched scores equal an independent brute-force
 * computation (one forward pass per full sequence, log-softmax in float64), and on a task whose
 * answer is known a briefly fine-tuned model classifies held-out examples correctly while the
 * untouched base model does not.
 *
 * Tolerance for the brute-force comparison: both sides evaluate the same float32 network; the
 * per-token log-probabilities differ by float32 rounding of logits of magnitude < 10 (~1e-6 each)
 * and by the float32 loss kernel, so sums over <= 6 tokens agree to ~1e-5. 1e-4 absolute keeps a
 * margin, while scoring the wrong position or token moves a score by 1e-2 or more even on the
 * random fixture (its log-probabilities spread by ~0.1 across tokens; the test checks that too).
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadRecords } from '../../lib/data';
import { classificationExamples, evaluateClassification } from '../../lib/eval';
import { argmax, classifyExamples } from '../../lib/eval/classification';
import { CompletionItem, scoreCompletions } from '../../lib/eval/likelihood';
import { loadModel } from '../../lib/model/checkpoint';
import { loadTokenizer } from '../../lib/tokenizer';
import { tempDir, TINY } from '../helpers';
import { SeededRandom } from '../reference/random';
import { bruteForceLogProb, toyExamples, toyPrompt, trainedToyClassifier, TOY_LABELS } from './helpers';

const tokenizer = loadTokenizer(TINY);
const EOS = tokenizer.eosTokenId;

function randomTokens(rng: SeededRandom, n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => Math.floor(rng.next() * vocab));
}

describe('scoreCompletions', () => {
  const model = loadModel(TINY);
  afterAll(() => model.free());
  const V = model.config.vocabSize, N = model.contextLength;
  const rng = new SeededRandom(11);
  // Awkward sizes: 1-token prompts and completions, an empty prompt, odd lengths, a row exactly at
  // the context limit, and one whose prompt must be cut from the left.
  const shapes: Array<[number, number]> = [[1, 1], [0, 3], [7, 1], [13, 5], [N, 1], [N - 3, 4], [N + 9, 2], [30, 6], [2, 2]];
  const items: CompletionItem[] = shapes.map(([p, c]) => ({ prompt: randomTokens(rng, p, V), completion: randomTokens(rng, c, V) }));

  test.each([1, 3, 16])('batch size %i equals the brute-force log-likelihood', (batchSize) => {
    const scores = scoreCompletions(model, items, { batchSize, contextTokenId: EOS });
    items.forEach((item, i) => {
      const ref = bruteForceLogProb(model, item.prompt, item.completion, EOS);
      expect(Math.abs(scores[i].logProb - ref)).toBeLessThan(1e-4);
      expect(scores[i].tokens).toBe(item.completion.length);
    });
    expect(scores.map((s) => s.truncatedPromptTokens)).toEqual(shapes.map(([p, c]) => Math.max(0, p - (N + 1 - c))));
  });

  test('a token budget that forces one row per forward gives the same scores', () => {
    const a = scoreCompletions(model, items, { batchSize: 16, contextTokenId: EOS });
    const b = scoreCompletions(model, items, { batchSize: 16, maxBatchTokens: 1, contextTokenId: EOS });
    a.forEach((s, i) => expect(Math.abs(s.logProb - b[i].logProb)).toBeLessThan(1e-4));
  });

  test('the scores depend on the completion and its position (the check above can fail)', () => {
    const prompt = randomTokens(rng, 9, V);
    const [x, y, shifted] = scoreCompletions(model, [
      { prompt, completion: [5, 17] },
      { prompt, completion: [5, 200] },
      { prompt: prompt.slice(1), completion: [5, 17] },
    ], { contextTokenId: EOS });
    expect(Math.abs(x.logProb - y.logProb)).toBeGreaterThan(1e-3);
    expect(Math.abs(x.logProb - shifted.logProb)).toBeGreaterThan(1e-3);
  });

  test('errors: empty completion, completion longer than the context', () => {
    expect(() => scoreCompletions(model, [{ prompt: [1], completion: [] }], { contextTokenId: EOS })).toThrow(/item 0 has an empty completion/);
    expect(() => scoreCompletions(model, [{ prompt: [1], completion: randomTokens(rng, N + 1, V) }], { contextTokenId: EOS }))
      .toThrow(/completion has 65 tokens, more than the model's context of 64/);
  });
});

describe('classifyExamples', () => {
  const examples = toyExamples(7, 3).map((e) => ({ prompt: toyPrompt(e.text), label: e.label, candidates: TOY_LABELS.map((l) => ` ${l}`) }));

  test.each([
    ['sum', true], ['mean', true], ['sum', false], ['mean', false],
  ] as const)('label score %s, EOS %s: predictions are the argmax of brute-force scores', (labelScore, labelEos) => {
    const model = loadModel(TINY);
    const r = classifyExamples(model, tokenizer, examples, TOY_LABELS, { labelScore, labelEos, batchSize: 4 });
    examples.forEach((e, i) => {
      const prompt = tokenizer.encode(e.prompt);
      const ref = TOY_LABELS.map((label) => {
        const completion = tokenizer.encode(` ${label}`);
        if (labelEos) completion.push(EOS);
        const lp = bruteForceLogProb(model, prompt, completion, EOS);
        return labelScore === 'sum' ? lp : lp / completion.length;
      });
      r.predictions[i].scores.forEach((s, k) => expect(Math.abs(s - ref[k])).toBeLessThan(1e-4));
      expect(r.predictions[i].predicted).toBe(TOY_LABELS[argmax(ref)]);
      expect(r.predictions[i].label).toBe(e.label);
    });
    // The report is consistent with the predictions.
    const correct = r.predictions.filter((p) => p.predicted === p.label).length;
    expect(r.accuracy).toBeCloseTo(correct / examples.length, 12);
    expect(r.confusion_matrix.labels).toEqual(TOY_LABELS);
    expect(r.confusion_matrix.matrix.flat().reduce((a, b) => a + b, 0)).toBe(examples.length);
    expect(r.label_score).toBe(labelScore);
    expect(r.label_eos).toBe(labelEos);
    model.free();
  });

  test('a briefly fine-tuned model learns the known answer; the base model does not', async () => {
    const heldOut = toyExamples(30, 99).map((e) => ({ prompt: toyPrompt(e.text), label: e.label, candidates: TOY_LABELS.map((l) => ` ${l}`) }));
    const base = loadModel(TINY);
    const before = classifyExamples(base, tokenizer, heldOut, TOY_LABELS);
    base.free();
    const tuned = await trainedToyClassifier(tokenizer);
    const after = classifyExamples(tuned, tokenizer, heldOut, TOY_LABELS);
    tuned.free();
    // Balanced classes: chance is 1/3, and the random base model leans to one label.
    expect(before.accuracy).toBeLessThan(0.6);
    expect(after.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(after.f1).toBeGreaterThanOrEqual(0.9);
    const diagonal = after.confusion_matrix.matrix.reduce((sum, row, i) => sum + row[i], 0);
    expect(diagonal).toBe(Math.round(after.accuracy * heldOut.length));
  });

  test('errors name the problem', () => {
    const model = loadModel(TINY);
    expect(() => classifyExamples(model, tokenizer, examples, ['red'])).toThrow(/at least 2 candidate labels/);
    expect(() => classifyExamples(model, tokenizer, [{ ...examples[0], label: 'purple' }], TOY_LABELS)).toThrow(/label "purple" is not among the candidate labels/);
    expect(() => classifyExamples(model, tokenizer, [{ ...examples[0], candidates: [' red'] }], TOY_LABELS)).toThrow(/1 candidate completions but there are 3 labels/);
    model.free();
  });
});

describe('evaluateClassification on data records', () => {
  const dir = tempDir('gptune-eval-classify-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const csv = path.join(dir, 'data.csv');
  fs.writeFileSync(csv, 'label,text\n2,"one, two"\n10,ten\n2,deux\n');

  test('prompts and candidate completions come from the template, labels from the data (numeric order)', () => {
    const { records } = loadRecords(csv);
    const byDefault = classificationExamples(records, ['2', '10']);
    expect(byDefault[0]).toEqual({ prompt: 'Text: one, two\nLabel:', label: '2', candidates: [' 2', ' 10'] });
    const custom = classificationExamples(records, ['2', '10'], 'Q: {text}\nA: {label}.');
    expect(custom[1]).toEqual({ prompt: 'Q: ten\nA:', label: '10', candidates: [' 2.', ' 10.'] });

    const model = loadModel(TINY);
    const r = evaluateClassification(model, tokenizer, records, null, 'Q: {text}\nA: {label}.');
    expect(r.labels).toEqual(['2', '10']);
    const direct = classifyExamples(model, tokenizer, custom, ['2', '10']);
    expect(r.predictions).toEqual(direct.predictions);
    expect(() => evaluateClassification(model, tokenizer, records, ['2', '3'])).toThrow(/data\.csv:3: label "10" is not among the candidate labels \["2","3"\]/);
    model.free();
  });
});
