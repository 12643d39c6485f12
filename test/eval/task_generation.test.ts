/**
 * generateForTask (the decoding the task evaluations call): batched greedy decoding must give each
 * prompt exactly generate()'s greedy tokens (rows of different lengths sharing steps, slots reused);
 * beam search gives beamSearch()'s best hypothesis; stop strings cut the text where the reference
 * greedy text first contains them.
 */
import { generateForTask } from '../../lib/eval/generation';
import { beamSearch } from '../../lib/model/beam';
import { generate } from '../../lib/model/generate';
import { loadModel } from '../../lib/model/checkpoint';
import { encodeSequence, loadTokenizer } from '../../lib/tokenizer';
import { TINY } from '../helpers';

const model = loadModel(TINY);
const tokenizer = loadTokenizer(TINY);
afterAll(() => model.free());

const PROMPTS = ['Hello there', 'The quick brown fox jumps over', 'A', 'Once upon a time, in a land far away, there lived', 'Question: what is two plus two?\\nAnswer:'];
const greedy = (text: string, maxNewTokens: number) =>
  generate(model, encodeSequence(tokenizer, text), { greedy: true, maxNewTokens, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds });

describe('greedy, batched across prompts', () => {
  test.each([1, 2, 8])('batch size %d: every prompt gets generate()\'s greedy tokens and stop', (batchSize) => {
    const results = generateForTask(model, tokenizer, PROMPTS, { maxNewTokens: 12, batchSize });
    expect(results).toHaveLength(PROMPTS.length);
    results.forEach((r, i) => {
      const reference = greedy(PROMPTS[i], 12);
      expect(r.tokens).toEqual(reference.tokens);
      expect(r.stop).toBe(reference.stop);
      expect(r.text).toBe(tokenizer.decode(reference.tokens));
      expect(r.truncated_prompt_tokens).toBe(0);
    });
  });

  test('token-id prompts are taken as they are', () => {
    const ids = [100, 200, 300];
    const [r] = generateForTask(model, tokenizer, [ids], { maxNewTokens: 6 });
    expect(r.tokens).toEqual(generate(model, ids, { greedy: true, maxNewTokens: 6, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds }).tokens);
  });

  test('maxNewTokens 0 gives empty outputs', () => {
    expect(generateForTask(model, tokenizer, PROMPTS.slice(0, 2), { maxNewTokens: 0 }).map((r) => [r.text, r.stop])).toEqual([['', 'max_new_tokens'], ['', 'max_new_tokens']]);
  });
});

describe('stop strings', () => {
  test('the text ends before the first stop string, decoding ends at the token that completes it', () => {
    const reference = greedy(PROMPTS[1], 16);
    const text = tokenizer.decode(reference.tokens);
    // A stop string taken from the middle of the reference output, so it surely occurs.
    const stopString = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    expect(stopString.length).toBe(2);
    const [r] = generateForTask(model, tokenizer, [PROMPTS[1]], { maxNewTokens: 16, stopStrings: ['never-appears', stopString] });
    expect(r.stop).toBe('stop_string');
    expect(r.text).toBe(text.slice(0, text.indexOf(stopString)));
    // The tokens are the shortest prefix of the greedy tokens whose text contains the stop string.
    const k = reference.tokens.findIndex((_, j) => tokenizer.decode(reference.tokens.slice(0, j + 1)).includes(stopString)) + 1;
    expect(r.tokens).toEqual(reference.tokens.slice(0, k));
  });

  test('an empty stop string is refused', () => {
    expect(() => generateForTask(model, tokenizer, ['x'], { maxNewTokens: 4, stopStrings: [''] })).toThrow(/non-empty string/);
  });
});

describe('beam search', () => {
  test('numBeams 3 gives beamSearch()\'s best hypothesis for every prompt, with its score', () => {
    const results = generateForTask(model, tokenizer, PROMPTS.slice(0, 3), { maxNewTokens: 8, numBeams: 3, lengthPenalty: 0.5 });
    results.forEach((r, i) => {
      const [best] = beamSearch(model, encodeSequence(tokenizer, PROMPTS[i]), {
        numBeams: 3, maxNewTokens: 8, lengthPenalty: 0.5, eosTokenIds: [tokenizer.eosTokenId, ...tokenizer.stopTokenIds],
      });
      expect(r.tokens).toEqual(best.tokens);
      expect(r.score).toBe(best.score);
      expect(r.text).toBe(tokenizer.decode(best.tokens));
    });
  });

  test('bad options name the option', () => {
    expect(() => generateForTask(model, tokenizer, ['x'], { maxNewTokens: 4, numBeams: 0 })).toThrow(/numBeams/);
    expect(() => generateForTask(model, tokenizer, ['x'], { maxNewTokens: -1 })).toThrow(/maxNewTokens/);
  });
});
