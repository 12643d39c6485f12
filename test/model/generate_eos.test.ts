/**
 * generate() from the API stops at the model's end-of-sequence token by default, as the CLI does
 * (issue 14): config.json's eos_token_id, and generation_config.json's when the folder has one;
 * an explicit eosTokenId (or null) still wins. The stopping points are found by a run with EOS off:
 * the tiny model's greedy tokens, with eos_token_id rewritten to be the 1st or 2nd of them.
 */
import * as fs from 'fs';
import * as path from 'path';
import { generate, loadModel } from '../../lib';
import { tempDir, TINY } from '../helpers';

// A prompt whose greedy continuation starts with two distinct tokens and reaches the fixture's EOS (349) late.
const PROMPT = [100, 200];
const dir = tempDir('gptune-generate-eos-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function greedyWithoutEos(): number[] {
  const model = loadModel(TINY);
  try {
    return generate(model, PROMPT, { greedy: true, maxNewTokens: 8, eosTokenId: null }).tokens;
  } finally {
    model.free();
  }
}

/** TINY copied with config.json's eos_token_id set to `eos`, and a generation_config.json when given. */
function tinyWithEos(name: string, eos: number, generationConfig?: Record<string, unknown>): string {
  const to = path.join(dir, name);
  fs.mkdirSync(to);
  for (const f of fs.readdirSync(TINY)) fs.copyFileSync(path.join(TINY, f), path.join(to, f));
  const config = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(to, 'config.json'), JSON.stringify({ ...config, eos_token_id: eos }));
  if (generationConfig) fs.writeFileSync(path.join(to, 'generation_config.json'), JSON.stringify(generationConfig));
  return to;
}

const tokens = greedyWithoutEos();

test('the greedy run used below produces 8 tokens, the first two distinct', () => {
  expect(tokens).toHaveLength(8);
  expect(tokens[0]).not.toBe(tokens[1]);
});

test("the fixture as shipped (eos_token_id 349) stops where its greedy run first produces 349", () => {
  const at = tokens.indexOf(349);
  expect(at).toBeGreaterThan(0);
  const model = loadModel(TINY);
  try {
    expect(generate(model, PROMPT, { greedy: true, maxNewTokens: 8 })).toEqual({ tokens: tokens.slice(0, at), stop: 'eos' });
  } finally {
    model.free();
  }
});

test("without eosTokenId, generate stops at config.json's eos_token_id (not included)", () => {
  const model = loadModel(tinyWithEos('eos-first', tokens[0]));
  try {
    expect(generate(model, PROMPT, { greedy: true, maxNewTokens: 8 })).toEqual({ tokens: [], stop: 'eos' });
    // An explicit option wins: null never stops, another id stops there instead.
    expect(generate(model, PROMPT, { greedy: true, maxNewTokens: 8, eosTokenId: null })).toEqual({ tokens, stop: 'max_new_tokens' });
    expect(generate(model, PROMPT, { greedy: true, maxNewTokens: 8, eosTokenId: tokens[1] })).toEqual({ tokens: tokens.slice(0, 1), stop: 'eos' });
  } finally {
    model.free();
  }
});

test("generation_config.json's eos_token_id list stops generation too", () => {
  const unused = tokens.includes(0) ? Math.max(...tokens) + 1 : 0;
  const model = loadModel(tinyWithEos('eos-generation', unused, { eos_token_id: [unused, tokens[1]] }));
  try {
    expect(generate(model, PROMPT, { greedy: true, maxNewTokens: 8 })).toEqual({ tokens: tokens.slice(0, 1), stop: 'eos' });
  } finally {
    model.free();
  }
});
