/**
 * gptune serve under concurrent clients: aggregate generated tokens/s and mean time to first token at
 * 1, 4 and 16 clients, each client sending `--requests` streamed completions one after another (the
 * official openai client; fixed token-id prompts of --prompt tokens, --tokens new tokens each with
 * ignore_eos). The same model is served twice in the same run: with continuous batching
 * (--max-batch 16) and one request at a time (--max-batch 1), the baseline; the ratio is printed.
 * Prints a table and one JSON line.
 * The default model is GPT-2's 6-layer 384-wide shape (random weights, GPT-2's vocabulary), sized for a
 * 2-core machine; --spec new:gpt2 or --model DIR serve another.
 *   node dist/bench/serve.js [--spec new:n_layer=6,n_head=6,n_embd=384 | --model DIR] [--tokens 48 --prompt 32 --requests 2 --levels 1,4,16 --threads N]
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import OpenAI from 'openai';
import { saveModel } from '../lib/model/checkpoint';
import { parseDecoderSpec } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const CLI = path.join(__dirname, '../lib/cli/main.js');
const tokens = Number(arg('tokens', '48')), promptLength = Number(arg('prompt', '32')), requests = Number(arg('requests', '2'));
const levels = arg('levels', '1,4,16').split(',').map(Number);
const threads = arg('threads', '');

/** The model folder: --model, or a fresh --spec (random weights; GPT-2's tokenizer) saved in a temp folder. */
function modelFolder(): { dir: string; label: string; vocab: number; cleanup: () => void } {
  const given = arg('model', '');
  if (given !== '') return { dir: given, label: given, vocab: JSON.parse(fs.readFileSync(path.join(given, 'config.json'), 'utf8')).vocab_size, cleanup: () => undefined };
  const spec = arg('spec', 'new:n_layer=6,n_head=6,n_embd=384');
  const model = new Decoder(parseDecoderSpec(spec));
  model.initRandom(0);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-bench-serve-'));
  const dir = path.join(tmp, 'model');
  saveModel(model, dir);
  const vocab = model.config.vocabSize;
  model.free();
  return { dir, label: spec, vocab, cleanup: () => fs.rmSync(tmp, { recursive: true, force: true }) };
}

interface Server { proc: ChildProcess; client: OpenAI; exit: Promise<number | null> }

async function startServer(dir: string, maxBatch: number): Promise<Server> {
  const args = [CLI, 'serve', '--model', dir, '--served-model-name', 'm', '--port', '0', '--max-batch', String(maxBatch), '--max-model-len', String(promptLength + tokens + 1)];
  if (threads !== '') args.push('--threads', threads);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    void exit.then((code) => reject(new Error(`gptune serve exited with ${code}`)));
  });
  return { proc, exit, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'bench', maxRetries: 0, timeout: 3_600_000 }) };
}

/** One streamed completion: ms to its first token, and the tokens generated. */
async function oneRequest(client: OpenAI, prompt: number[]): Promise<{ ttftMs: number; tokens: number }> {
  const t0 = performance.now();
  let ttftMs = -1, generated = 0;
  const stream = await client.completions.create({
    model: 'm', prompt, max_tokens: tokens, temperature: 0, stream: true, stream_options: { include_usage: true }, ignore_eos: true,
  } as OpenAI.CompletionCreateParamsStreaming);
  for await (const chunk of stream) {
    if (ttftMs < 0 && chunk.choices.length > 0) ttftMs = performance.now() - t0;
    if (chunk.usage) generated = chunk.usage.completion_tokens;
  }
  return { ttftMs, tokens: generated };
}

async function level(client: OpenAI, clients: number, vocab: number) {
  const t0 = performance.now();
  const runs = await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const results = [];
    for (let r = 0; r < requests; r++) {
      const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + (c * requests + r) * 104729) % vocab);
      results.push(await oneRequest(client, prompt));
    }
    return results;
  }));
  const seconds = (performance.now() - t0) / 1000;
  const all = runs.flat();
  const generated = all.reduce((n, r) => n + r.tokens, 0);
  return { clients, tokens: generated, seconds, tokens_per_s: generated / seconds, mean_ttft_ms: all.reduce((s, r) => s + r.ttftMs, 0) / all.length };
}

async function main(): Promise<void> {
  const model = modelFolder();
  const results: Record<'batched' | 'one_at_a_time', Array<Awaited<ReturnType<typeof level>>>> = { batched: [], one_at_a_time: [] };
  // Both servers run at once and each level is measured on one right after the other, so a shared
  // machine's changing load hits both alike.
  const servers: Partial<Record<keyof typeof results, Server>> = {};
  try {
    servers.batched = await startServer(model.dir, Math.max(...levels));
    servers.one_at_a_time = await startServer(model.dir, 1);
    for (const server of Object.values(servers)) await oneRequest(server.client, [1, 2, 3]); // warm-up
    for (const clients of levels) {
      for (const name of ['batched', 'one_at_a_time'] as const) results[name].push(await level(servers[name]!.client, clients, model.vocab));
    }
  } finally {
    for (const server of Object.values(servers)) server.proc.kill('SIGTERM');
    model.cleanup();
  }
  for (const [name, server] of Object.entries(servers)) {
    if ((await server.exit) !== 0) throw new Error(`gptune serve (${name}) did not exit 0 after SIGTERM`);
  }
  console.log(`gptune serve, ${model.label}: ${requests} streamed requests per client, ${promptLength}-token prompts, ${tokens} new tokens each`);
  console.log('clients | batched tok/s | TTFT ms | one-at-a-time tok/s | TTFT ms | tok/s ratio');
  levels.forEach((c, i) => {
    const b = results.batched[i], o = results.one_at_a_time[i];
    console.log(`${String(c).padStart(7)} | ${b.tokens_per_s.toFixed(1).padStart(13)} | ${b.mean_ttft_ms.toFixed(0).padStart(7)} | ${o.tokens_per_s.toFixed(1).padStart(19)} | ${o.mean_ttft_ms.toFixed(0).padStart(7)} | ${(b.tokens_per_s / o.tokens_per_s).toFixed(2).padStart(11)}`);
  });
  console.log(JSON.stringify({ bench: 'serve', model: model.label, prompt_tokens: promptLength, new_tokens: tokens, requests_per_client: requests, threads: threads || null, ...results }));
}

main().catch((e) => {
  console.error(`bench/serve: ${(e as Error).message}`);
  process.exitCode = 1;
});
