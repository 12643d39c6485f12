/**
 * `gptune serve` through the official openai client (a devDependency), server on 127.0.0.1 port 0:
 * models, completions and chat completions streamed and not, greedy output equal to `gptune
 * generate --greedy` alone and inside a batch of 16 different requests, LoRA adapters picked by the
 * request's `model` (tiny GPT-2 with the PEFT fixture, tiny Llama with an adapter that also trains
 * lm_head), stop strings, seeds, n, logprobs against the model's own forward pass, usage, errors in
 * OpenAI's shape with the server still serving, the API key, a load of 32 concurrent streams, and
 * SIGTERM finishing a stream in flight before exiting 0. Hand-written HTTP only for what the client
 * cannot send (a body too large, bad JSON, no key).
 */
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import OpenAI from 'openai';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { encodeSequence, loadTokenizer, Tokenizer } from '../../lib/tokenizer';
import { encodeChat } from '../../lib/tokenizer/chat_template';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { FIXTURES, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { adapterFolder, CHATML, gpt2Folder, Served, startServer } from './fixtures';

jest.setTimeout(240_000);

const GPT2_LORA = path.join(FIXTURES, 'lora-gpt2');
/** vLLM's ignore_eos: fixed-length completions whatever the random weights predict. */
const FIXED = { ignore_eos: true } as Record<string, unknown>;

/** What `gptune generate --greedy --no-eos-stop` prints as text. */
function cliGreedy(model: string, prompt: string, maxNewTokens: number, adapter?: string): string {
  const r = gptune('generate', '--model', model, '--prompt', prompt, '--greedy', '--no-eos-stop', '--max-new-tokens', String(maxNewTokens), '--json', ...(adapter ? ['--adapter', adapter] : []));
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return lastJSON(r.stdout).text as string;
}

/** The library's generate() for a text prompt (what the CLI runs), greedy, no end-of-sequence stop. */
function libraryGreedy(model: Decoder, tokenizer: Tokenizer, prompt: string, maxNewTokens: number): number[] {
  return generate(model, encodeSequence(tokenizer, prompt), { maxNewTokens, greedy: true, eosTokenId: null }).tokens;
}

async function metrics(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Object.fromEntries(text.split('\n').filter((l) => l.startsWith('gptune_')).map((l) => [l.split(' ')[0].slice('gptune_'.length), Number(l.split(' ')[1])]));
}

/** The error a call rejects with (an openai APIError). */
async function apiError(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call;
  } catch (e) {
    expect(e).toBeInstanceOf(OpenAI.APIError);
    return e as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error('the request succeeded');
}

describe('tiny GPT-2 with the PEFT adapter fixture as model "sql"', () => {
  let server: Served;
  let tokenizer: Tokenizer;
  let model: Decoder;
  beforeAll(async () => {
    server = await startServer(['--model', TINY, '--served-model-name', 'tiny', '--adapter', `sql=${GPT2_LORA}`]);
    tokenizer = loadTokenizer(TINY);
    model = loadModel(TINY);
  });
  afterAll(async () => {
    model.free();
    expect(await server.stop()).toBe(0);
  });

  test('GET /v1/models lists the base and the adapter by name', async () => {
    const ids = [];
    for await (const m of server.client.models.list()) {
      expect(m.object).toBe('model');
      ids.push(m.id);
    }
    expect(ids).toEqual(['tiny', 'sql']);
    expect((await server.client.models.retrieve('sql')).id).toBe('sql');
  });

  test('greedy completion alone: the text of `gptune generate --greedy`, usage counted', async () => {
    const prompt = 'The quick brown fox';
    const r = await server.client.completions.create({ model: 'tiny', prompt, max_tokens: 20, temperature: 0, ...FIXED });
    expect(r.object).toBe('text_completion');
    expect(r.id).toMatch(/^cmpl-/);
    expect(Math.abs(r.created - Date.now() / 1000)).toBeLessThan(60);
    expect(r.choices[0].text).toBe(cliGreedy(TINY, prompt, 20));
    expect(r.choices[0].finish_reason).toBe('length');
    const promptTokens = encodeSequence(tokenizer, prompt).length;
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 20, total_tokens: promptTokens + 20 });
    // The same prompt as token ids.
    const ids = await server.client.completions.create({ model: 'tiny', prompt: encodeSequence(tokenizer, prompt), max_tokens: 20, temperature: 0, ...FIXED });
    expect(ids.choices[0].text).toBe(r.choices[0].text);
  });

  test('16 different greedy requests at once, half streamed: each is generate()\'s output, and they shared decode steps', async () => {
    const prompts = Array.from({ length: 16 }, (_, i) => `Request ${i}: ${'abcdefghijklmnop'.slice(0, 1 + i)} and`);
    const before = await metrics(server.url);
    const texts = await Promise.all(prompts.map(async (prompt, i) => {
      const maxTokens = 10 + i;
      if (i % 2 === 0) return (await server.client.completions.create({ model: 'tiny', prompt, max_tokens: maxTokens, temperature: 0, ...FIXED })).choices[0].text;
      let text = '';
      for await (const chunk of await server.client.completions.create({ model: 'tiny', prompt, max_tokens: maxTokens, temperature: 0, stream: true, ...FIXED })) text += chunk.choices[0]?.text ?? '';
      return text;
    }));
    expect(texts).toEqual(prompts.map((p, i) => tokenizer.decode(libraryGreedy(model, tokenizer, p, 10 + i))));
    const after = await metrics(server.url);
    const rows = after.decode_rows_total - before.decode_rows_total, steps = after.decode_steps_total - before.decode_steps_total;
    expect(rows).toBe(prompts.reduce((n, _, i) => n + 10 + i - 1, 0)); // every token but each first (from its prefill)
    expect(rows / steps).toBeGreaterThan(4);
  });

  test('the adapter named by `model` is applied: `gptune generate --adapter` output, while base requests alongside stay the base\'s', async () => {
    // tiny-gpt2's greedy text is the same with the fixture's small update, so sampled with a seed
    // (generate's --seed is the request's seed) and compared by log-probabilities.
    const prompt = 'SELECT name FROM';
    const ask = (model: string) => server.client.completions.create({ model, prompt, max_tokens: 16, temperature: 1, seed: 5, logprobs: 0, ...FIXED });
    const [adapted, base] = await Promise.all([ask('sql'), ask('tiny')]);
    expect(adapted.model).toBe('sql');
    const cli = (adapter: string[]) => {
      const r = gptune('generate', '--model', TINY, '--prompt', prompt, '--temperature', '1', '--seed', '5', '--no-eos-stop', '--max-new-tokens', '16', '--json', ...adapter);
      expect(r.code).toBe(0);
      return lastJSON(r.stdout).text;
    };
    expect(adapted.choices[0].text).toBe(cli(['--adapter', GPT2_LORA]));
    expect(base.choices[0].text).toBe(cli([]));
    expect(adapted.choices[0].logprobs!.token_logprobs![0]).not.toBeCloseTo(base.choices[0].logprobs!.token_logprobs![0], 4);
  });

  test('stop strings end the text before them, streamed or not; max_tokens ends it with "length"', async () => {
    const prompt = 'Once upon a time';
    const full = (await server.client.completions.create({ model: 'tiny', prompt, max_tokens: 30, temperature: 0, ...FIXED })).choices[0].text;
    const stop = full.slice(8, 10);
    const cut = full.indexOf(stop);
    const r = await server.client.completions.create({ model: 'tiny', prompt, max_tokens: 30, temperature: 0, stop: ['@@never@@', stop], ...FIXED });
    expect(r.choices[0].text).toBe(full.slice(0, cut));
    expect(r.choices[0].finish_reason).toBe('stop');
    let streamed = '', finish: string | null = null;
    for await (const chunk of await server.client.completions.create({ model: 'tiny', prompt, max_tokens: 30, temperature: 0, stop, stream: true, ...FIXED })) {
      streamed += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(streamed).toBe(full.slice(0, cut));
    expect(finish).toBe('stop');
  });

  test('seed: the same sampled request gives the same n choices again; another seed differs', async () => {
    const ask = (seed: number) => server.client.completions.create({ model: 'tiny', prompt: 'Hello', max_tokens: 12, temperature: 1, top_p: 0.95, seed, n: 3, ...FIXED });
    const [a, b, c] = await Promise.all([ask(11), ask(11), ask(12)]);
    expect(a.choices.map((x) => x.index)).toEqual([0, 1, 2]);
    expect(b.choices.map((x) => x.text)).toEqual(a.choices.map((x) => x.text));
    expect(new Set(a.choices.map((x) => x.text)).size).toBeGreaterThan(1);
    expect(c.choices.map((x) => x.text)).not.toEqual(a.choices.map((x) => x.text));
    expect(a.usage!.completion_tokens).toBe(36);
  });

  test('logprobs: the sampled token\'s natural-log probability under the unmodified softmax, and the top k, as the model\'s forward pass gives them', async () => {
    const prompt = 'It was the best';
    const r = await server.client.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0.7, seed: 3, logprobs: 3, ...FIXED });
    const lp = r.choices[0].logprobs!;
    expect(lp.tokens!.join('')).toBe(r.choices[0].text);
    // Recompute from the full sequence's logits (the training forward, not the decoder); the
    // sampled ids are generate()'s with the same seed (test/serve/scheduler.test.ts).
    const promptIds = encodeSequence(tokenizer, prompt);
    const ids = generate(model, promptIds, { maxNewTokens: 6, temperature: 0.7, seed: 3, eosTokenId: null }).tokens;
    expect(lp.tokens).toEqual(ids.map((id) => tokenizer.decode([id])));
    const seq = Int32Array.from([...promptIds, ...ids]);
    model.forward(seq, 1, seq.length);
    const V = model.config.vocabSize;
    ids.forEach((id, i) => {
      const logits = model.logitsRows(promptIds.length - 1 + i);
      const max = Math.max(...logits);
      const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
      expect(lp.token_logprobs![i]).toBeCloseTo(logits[id] - lse, 4);
      // The legacy format keys the top tokens by their text, so two that decode alike (U+FFFD) share an entry.
      const order = Array.from({ length: V }, (_, v) => v).sort((x, y) => logits[y] - logits[x]).slice(0, 3);
      const want = new Map<string, number>();
      for (const v of order) if (!want.has(tokenizer.decode([v]))) want.set(tokenizer.decode([v]), logits[v] - lse);
      const top = lp.top_logprobs![i];
      expect(Object.keys(top).sort()).toEqual([...want.keys()].sort());
      for (const [text, value] of want) expect(top[text]).toBeCloseTo(value, 4);
    });
    expect(lp.text_offset![1]).toBe(lp.tokens![0].length);
  });

  test('bad requests get OpenAI\'s error object (400, 404, 413) and the server keeps serving', async () => {
    const bad = await apiError(server.client.completions.create({ model: 'tiny', prompt: 'x', temperature: -1 }));
    expect(bad.status).toBe(400);
    expect(bad.type).toBe('invalid_request_error');
    expect(bad.param).toBe('temperature');
    expect(bad.message).toMatch(/'temperature' must be a number in \[0, 2\] but is -1/);
    const unknown = await apiError(server.client.completions.create({ model: 'gpt-4o', prompt: 'x' }));
    expect(unknown.status).toBe(404);
    expect(unknown.code).toBe('model_not_found');
    const long = await apiError(server.client.completions.create({ model: 'tiny', prompt: 'word '.repeat(80) }));
    expect(long.status).toBe(400);
    expect(long.code).toBe('context_length_exceeded');
    const chat = await apiError(server.client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }));
    expect(chat.status).toBe(400);
    expect(chat.message).toMatch(/has no chat template/);
    for (const [body, status, pattern] of [
      ['{"model": "tiny", "prompt": ', 400, /could not parse the JSON body/],
      [JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(5 * 1024 * 1024) }), 413, /larger than 4194304 bytes/],
      [JSON.stringify({ model: 'tiny', prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }), 400, /'stop' must be/],
      [JSON.stringify({ model: 'tiny', prompt: [1, 2, 99999] }), 400, /prompt\[2\] = 99999 is not a token id/],
    ] as const) {
      const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      expect(res.status).toBe(status);
      const json = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(json.error.message).toMatch(pattern);
    }
    expect((await fetch(`${server.url}/v1/embeddings`, { method: 'POST', body: '{}' })).status).toBe(404);
    const ok = await server.client.completions.create({ model: 'tiny', prompt: 'still here', max_tokens: 3, temperature: 0, ...FIXED });
    expect(ok.usage!.completion_tokens).toBe(3);
  });

  test('a client that goes away mid-stream frees its sequence; the requests beside it finish whole', async () => {
    const abort = new AbortController();
    // The client aborts after its second chunk and stops reading (chunks already in its buffer when it
    // aborts would otherwise still be yielded: one network read can carry several).
    const aborted = (async () => {
      let chunks = 0;
      for await (const chunk of await server.client.completions.create({ model: 'tiny', prompt: 'gone', max_tokens: 40, stream: true, ...FIXED }, { signal: abort.signal })) {
        if (chunk.choices[0]?.text !== undefined && ++chunks === 2) {
          abort.abort();
          break;
        }
      }
      return chunks;
    })();
    const others = [1, 2].map((i) => server.client.completions.create({ model: 'tiny', prompt: `stay ${i}`, max_tokens: 40, temperature: 0, ...FIXED }));
    expect(await aborted).toBe(2);
    for (const r of await Promise.all(others)) expect(r.usage!.completion_tokens).toBe(40);
    // Nothing is left queued or decoding.
    for (let i = 0; i < 50 && (await metrics(server.url)).sequences_pending > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await metrics(server.url)).sequences_pending).toBe(0);
  });

  test('load: 32 concurrent streams of 32 tokens (batches of 16) all complete without error', async () => {
    const results = await Promise.all(Array.from({ length: 32 }, async (_, i) => {
      let text = '', usage: OpenAI.CompletionUsage | null | undefined = null, chunks = 0;
      const stream = await server.client.completions.create({
        model: i % 4 === 3 ? 'sql' : 'tiny', prompt: `Stream ${i} says`, max_tokens: 32, temperature: 0.9, seed: i, stream: true, stream_options: { include_usage: true }, ...FIXED,
      });
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.text ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      return { text, usage, chunks };
    }));
    for (const r of results) {
      expect(r.usage!.completion_tokens).toBe(32);
      expect(r.chunks).toBeGreaterThan(2);
    }
  });
});

describe('a chat model (tiny GPT-2 with a ChatML template)', () => {
  let server: Served;
  let dir: string;
  beforeAll(async () => {
    dir = gpt2Folder(`new:n_layer=2,n_head=2,n_embd=32,n_positions=256,vocab_size=${loadTokenizer(CHATML).vocabSize}`, CHATML, 4);
    server = await startServer(['--model', dir, '--served-model-name', 'chatty', '--max-batch', '4']);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'What is a tokenizer?' }] }];

  test('the messages go through the chat template; the greedy reply is `gptune generate --chat --greedy`\'s; streamed deltas concatenate to it', async () => {
    const r = await server.client.chat.completions.create({ model: 'chatty', messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 24, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices[0].message.role).toBe('assistant');
    const cli = gptune('generate', '--model', dir, '--chat', '--prompt', 'Hi', '--greedy', '--max-new-tokens', '24', '--json');
    expect(cli.code).toBe(0);
    const want = lastJSON(cli.stdout);
    expect(r.choices[0].message.content).toBe(want.text);
    expect(r.usage!.prompt_tokens).toBe(want.prompt_tokens);
    expect(r.choices[0].finish_reason).toBe((want.tokens as number[]).length < 24 ? 'stop' : 'length');

    const whole = await server.client.chat.completions.create({ model: 'chatty', messages, max_tokens: 40, temperature: 0, ...FIXED });
    let streamed = '', role: string | undefined, finish: string | null = null, usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of await server.client.chat.completions.create({ model: 'chatty', messages, max_tokens: 40, temperature: 0, stream: true, stream_options: { include_usage: true }, ...FIXED })) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      role = role ?? choice.delta.role;
      streamed += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
    expect(role).toBe('assistant');
    expect(streamed).toBe(whole.choices[0].message.content);
    expect(finish).toBe('length');
    expect(usage).toEqual(whole.usage);
  });

  test('logprobs with top_logprobs: greedy picks the most likely token; the values are the forward pass\'s log-softmax', async () => {
    const r = await server.client.chat.completions.create({ model: 'chatty', messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2, ...FIXED });
    const content = r.choices[0].logprobs!.content!;
    expect(content).toHaveLength(5);
    const tokenizer = loadTokenizer(dir), model = loadModel(dir);
    try {
      const prompt = encodeChat(tokenizer, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is a tokenizer?' }], true);
      const ids = generate(model, prompt, { maxNewTokens: 5, greedy: true, eosTokenId: null }).tokens;
      const seq = Int32Array.from([...prompt, ...ids]);
      model.forward(seq, 1, seq.length);
      content.forEach((entry, i) => {
        const logits = model.logitsRows(prompt.length - 1 + i);
        const max = Math.max(...logits);
        const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
        expect(entry.token).toBe(tokenizer.decode([ids[i]]));
        expect(entry.bytes).toEqual([...Buffer.from(entry.token, 'utf8')]);
        expect(entry.logprob).toBeCloseTo(logits[ids[i]] - lse, 4);
        expect(entry.top_logprobs).toHaveLength(2);
        expect(entry.top_logprobs[0].logprob).toBe(entry.logprob);
        expect(entry.top_logprobs[1].logprob).toBeLessThanOrEqual(entry.logprob);
      });
    } finally {
      model.free();
    }
  });
});

test('tiny Llama with an adapter that also trains lm_head: greedy base and adapter output equal `gptune generate`\'s', async () => {
  const dir = tinyLlamaFolder();
  const adapter = adapterFolder(dir, 7, { targets: 'all-linear', headToo: true });
  const server = await startServer(['--model', dir, '--served-model-name', 'llama', '--adapter', `tuned=${adapter}`]);
  try {
    const prompt = 'the cat sat';
    const [base, tuned] = await Promise.all(['llama', 'tuned'].map((model) => server.client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, ...FIXED })));
    expect(base.choices[0].text).toBe(cliGreedy(dir, prompt, 20));
    expect(tuned.choices[0].text).toBe(cliGreedy(dir, prompt, 20, adapter));
    expect(tuned.choices[0].text).not.toBe(base.choices[0].text);
  } finally {
    expect(await server.stop()).toBe(0);
  }
});

test('--api-key (or GPTUNE_API_KEY): 401 in OpenAI\'s shape without the key or with another; served with it', async () => {
  const server = await startServer(['--model', TINY, '--served-model-name', 'tiny'], { apiKey: 'sk-right', env: { GPTUNE_API_KEY: 'sk-right' } });
  try {
    expect((await server.client.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 2, ...FIXED })).usage!.completion_tokens).toBe(2);
    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const denied = await apiError(wrong.models.list());
    expect(denied.status).toBe(401);
    expect(denied.code).toBe('invalid_api_key');
    const none = await fetch(`${server.url}/v1/models`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  } finally {
    expect(await server.stop()).toBe(0);
  }
});

test('SIGTERM: a stream in flight is finished, new connections are refused, and the process exits 0', async () => {
  // Wide enough that 300 tokens take a while, so the signal arrives mid-stream; a shutdown timeout
  // far beyond what a loaded test machine needs to finish them.
  const dir = gpt2Folder('new:n_layer=4,n_head=4,n_embd=256,n_positions=1024,vocab_size=350', TINY, 9);
  const server = await startServer(['--model', dir, '--served-model-name', 'm', '--shutdown-timeout', '600']);
  let text = '', chunksAfterSignal = 0, signalled = false, usage: OpenAI.CompletionUsage | null | undefined;
  const stream = await server.client.completions.create({ model: 'm', prompt: 'a', max_tokens: 300, temperature: 0, stream: true, stream_options: { include_usage: true }, ...FIXED });
  for await (const chunk of stream) {
    if (!signalled) {
      server.proc.kill('SIGTERM');
      signalled = true;
    } else chunksAfterSignal++;
    text += chunk.choices[0]?.text ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  expect(usage!.completion_tokens).toBe(300);
  expect(chunksAfterSignal).toBeGreaterThan(10);
  expect(await server.exit).toBe(0);
  expect(server.stderr()).toMatch(/SIGTERM: finishing the requests in flight/);
  await expect(fetch(`${server.url}/health`)).rejects.toThrow();
});

test('bad flags are one-line usage errors before anything listens', async () => {
  expectCleanFailure(['serve', '--model', TINY, '--adapter', 'nodir'], /--adapter: expected NAME=DIR .* but received 'nodir'/);
  expectCleanFailure(['serve', '--model', TINY, '--adapter', 'a=/missing/adapter'], /--adapter a \/missing\/adapter: folder not found/);
  expectCleanFailure(['serve', '--model', TINY, '--served-model-name', 'x', '--adapter', `x=${GPT2_LORA}`], /the name x is already taken/);
  expectCleanFailure(['serve', '--model', TINY, '--max-model-len', '100000'], /--max-model-len: 100000 is longer than the model's n_positions \(64\)/);
  const taken = http.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = taken.address() as AddressInfo;
    expectCleanFailure(['serve', '--model', TINY, '--port', String(port)], /--host 127\.0\.0\.1 --port \d+: cannot listen \(EADDRINUSE\)/);
  } finally {
    taken.close();
  }
});
