/**
 * `gptune generate --chat` and `gptune chat` with a tiny GPT-2 built here on the bytelevel-chatml
 * tokenizer fixture (ChatML template; generation_config.json: eos_token_id [<|im_end|>, <|endoftext|>],
 * do_sample, temperature 0.7, top_k 20, top_p 0.8).
 *
 * The model's weights are set so that its next-token distribution is known without running it:
 * ln_f's weight is 0 and its bias 30 * e_0, so every position's final hidden state is 30 * e_0 and
 * the (tied) logits are 30 * wte[:, 0]. Column 0 of wte is 0 except 1 for " the" and for <|endoftext|>,
 * which therefore share all the probability (the other tokens have e^-30 each): every reply is
 * " the" repeated until <|endoftext|>, a stop token only through generation_config.json.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { resolveSampling } from '../../lib/cli/sampling';
import { saveModel } from '../../lib/model/checkpoint';
import { parseModelSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, tempDir, TINY } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const CHATML = path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml');
const END_OF_TEXT = 558; // <|endoftext|>: the fixture's added tokens are <|im_end|> 556, <|im_start|> 557, <|endoftext|> 558

function gptune(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', input });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const tokenizer = loadTokenizer(CHATML);
const THE = tokenizer.encode(' the');
let modelDir = '';

beforeAll(() => {
  expect(THE).toHaveLength(1);
  const model = new Decoder(parseModelSpec(`new:n_layer=1,n_head=2,n_embd=16,n_positions=128,vocab_size=${tokenizer.vocabSize}`));
  model.initRandom(1);
  const C = model.config.width;
  const wte = model.params.get('wte.weight').read();
  for (let v = 0; v < tokenizer.vocabSize; v++) wte[v * C] = v === THE[0] || v === END_OF_TEXT ? 1 : 0;
  model.params.get('wte.weight').write(wte);
  model.params.get('ln_f.weight').write(new Float32Array(C));
  const bias = new Float32Array(C);
  bias[0] = 30;
  model.params.get('ln_f.bias').write(bias);
  modelDir = path.join(tempDir('gptune-chat-'), 'model');
  saveModel(model, modelDir, { tokenizerFrom: CHATML });
  model.free();
});

const lines = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l));

test('generation_config.json supplies the sampling defaults; flags override them', () => {
  expect(resolveSampling({}, CHATML)).toEqual({ temperature: 0.7, greedy: false, topK: 20, topP: 0.8 });
  expect(resolveSampling({ temperature: 1.5, 'top-k': 3, 'top-p': 1 }, CHATML)).toEqual({ temperature: 1.5, greedy: false, topK: 3, topP: 1 });
  // The SentencePiece fixtures' generation_config.json has no sampling keys: gptune's defaults.
  expect(resolveSampling({}, path.join(FIXTURES, 'tokenizers', 'sentencepiece-llama2'))).toEqual({ temperature: 1, greedy: false, topK: 0, topP: 1 });
  expect(() => resolveSampling({ 'top-p': 0 }, CHATML)).toThrow("--top-p: expected a number in (0, 1] but received '0'");
});

test('generate --chat: the prompt is the rendered user message, and generation stops at generation_config.json\'s <|endoftext|>', () => {
  // The ChatML template with its default system message, written out by hand.
  const rendered = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
  let stoppedAtEos = 0;
  for (let seed = 0; seed < 6; seed++) {
    const r = gptune(['generate', '--model', modelDir, '--chat', '--prompt', 'Hi', '--max-new-tokens', '40', '--seed', String(seed), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = lines(r.stdout).pop();
    expect(j.prompt_tokens).toBe(tokenizer.encode(rendered).length);
    expect(j.tokens.every((t: number) => t === THE[0])).toBe(true);
    expect(j.text).toBe(' the'.repeat(j.tokens.length));
    if (j.stop === 'eos') stoppedAtEos++;
  }
  // Each step stops with probability 1/2: all six running to 40 tokens has probability 2^-240.
  expect(stoppedAtEos).toBe(6);
  // --no-eos-stop: <|endoftext|> is generated like any token.
  const r = gptune(['generate', '--model', modelDir, '--chat', '--prompt', 'Hi', '--max-new-tokens', '30', '--no-eos-stop', '--json']);
  const j = lines(r.stdout).pop();
  expect(j.stop).toBe('max_new_tokens');
  expect(j.tokens).toContain(END_OF_TEXT);
});

test('chat with piped stdin: one reply per line, the conversation kept between them', () => {
  const r = gptune(['chat', '--model', modelDir, '--system', 'Be brief.', '--seed', '3', '--json'], 'Hi\n\nAnd then?\n');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const [first, second] = lines(r.stdout);
  expect([first.turn, second.turn, first.stop, second.stop]).toEqual([0, 1, 'eos', 'eos']);
  for (const j of [first, second]) expect(j.reply).toBe(' the'.repeat(j.tokens.length));
  const head = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
  expect(first.prompt_tokens).toBe(tokenizer.encode(head).length);
  // The second prompt holds the first exchange: the reply as the assistant's message, then the new line.
  const again = `${head}${first.reply}<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n`;
  expect(second.prompt_tokens).toBe(tokenizer.encode(again).length);

  // Without --json the replies are printed as text, one per line (streamed token by token).
  const text = gptune(['chat', '--model', modelDir, '--system', 'Be brief.', '--seed', '3'], 'Hi\n\nAnd then?\n');
  expect(text.code).toBe(0);
  expect(text.stdout).toBe(`${first.reply}\n${second.reply}\n`);
});

test('data inspect and train read chat JSONL through the chat template; the trained model keeps the tokenizer files', () => {
  const dir = tempDir('gptune-chat-train-');
  const data = path.join(dir, 'chat.jsonl');
  const conversation = [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'the the' }];
  fs.writeFileSync(data, `${JSON.stringify({ messages: conversation })}\n`.repeat(4));
  const inspect = gptune(['data', 'inspect', data, '--model', modelDir, '--seq-len', '64', '--json']);
  expect(inspect.stderr).toBe('');
  const report = lines(inspect.stdout).pop();
  // Trained per example: the assistant's content and <|im_end|> (not the "\n" after it), as the tokenizer encodes them.
  expect(report.trained_tokens).toBe(4 * tokenizer.encode('the the<|im_end|>').length);
  expect(report.tokenizer).toBe(`tokenizer.json:${modelDir}`);
  const out = path.join(dir, 'out');
  const train = gptune(['train', '--model', modelDir, '--data', data, '--out', out, '--steps', '2', '--batch-size', '2', '--seq-len', '64']);
  expect(train.code).toBe(0);
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    expect(fs.readFileSync(path.join(out, file), 'utf8')).toBe(fs.readFileSync(path.join(CHATML, file), 'utf8'));
  }
  expect(loadTokenizer(out).chatTemplate).toBe(tokenizer.chatTemplate);
});

test('a model without a chat template: chat and generate --chat are usage errors on one line', () => {
  for (const args of [['chat', '--model', TINY], ['generate', '--model', TINY, '--chat', '--prompt', 'Hi']]) {
    const r = gptune(args, 'Hi\n');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/has no chat template/);
  }
});
