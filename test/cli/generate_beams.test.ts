/**
 * `gptune generate --num-beams N --length-penalty X`: the CLI prints beamSearch()'s best hypothesis
 * (run in-process here as the reference), one beam is the greedy output, and flags that make no sense
 * with beam search are refused. Run after `npx tsc -p tsconfig.json` (spawns dist/lib/cli/main.js).
 */
import { beamSearch } from '../../lib/model/beam';
import { loadModel } from '../../lib/model/checkpoint';
import { encodeSequence, loadTokenizer } from '../../lib/tokenizer';
import { TINY } from '../helpers';
import { expectCleanFailure, gptune, lastJSON } from './run';

const PROMPT = 'Once upon a time';

test('--num-beams 3 --length-penalty 0.5 prints the best hypothesis of beamSearch', () => {
  const model = loadModel(TINY), tokenizer = loadTokenizer(TINY);
  let best;
  try {
    [best] = beamSearch(model, encodeSequence(tokenizer, PROMPT), {
      numBeams: 3, maxNewTokens: 10, lengthPenalty: 0.5, eosTokenIds: [tokenizer.eosTokenId, ...tokenizer.stopTokenIds],
    });
  } finally {
    model.free();
  }
  const r = gptune('generate', '--model', TINY, '--prompt', PROMPT, '--max-new-tokens', '10', '--num-beams', '3', '--length-penalty', '0.5', '--json');
  expect(r.stderr).toBe('');
  const j = lastJSON(r.stdout);
  expect(j.tokens).toEqual(best.tokens);
  expect(j.score).toBe(best.score);
  expect(j).toMatchObject({ stop: best.stop, num_beams: 3, text: tokenizer.decode(best.tokens) });
});

test('--num-beams 1 is the greedy output', () => {
  const greedy = lastJSON(gptune('generate', '--model', TINY, '--prompt', PROMPT, '--max-new-tokens', '10', '--greedy', '--json').stdout);
  const one = lastJSON(gptune('generate', '--model', TINY, '--prompt', PROMPT, '--max-new-tokens', '10', '--greedy', '--num-beams', '1', '--json').stdout);
  expect(greedy.tokens.length).toBeGreaterThan(0);
  expect(one.tokens).toEqual(greedy.tokens);
});

test('sampling flags and a length penalty without beams are refused, naming the flag', () => {
  expectCleanFailure(['generate', '--model', TINY, '--prompt', PROMPT, '--num-beams', '2', '--temperature', '0.7'], /--temperature: beam search \(--num-beams 2\) does not sample/);
  expectCleanFailure(['generate', '--model', TINY, '--prompt', PROMPT, '--length-penalty', '2'], /--length-penalty: applies to beam search only/);
  expectCleanFailure(['generate', '--model', TINY, '--prompt', PROMPT, '--num-beams', '0'], /--num-beams/);
});
