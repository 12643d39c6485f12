/**
 * Continuous batching (lib/serve/scheduler.ts over lib/model/batch_decode.ts) against generate(), the
 * one-sequence decoder whose greedy output is checked against PyTorch (test/model): every sequence
 * decoded inside a batch of 16 different ones, joining and leaving at different steps, must produce
 * exactly generate()'s tokens, greedy and sampled with the same seed, on GPT-2 (learned positions) and
 * the Llama family (RoPE at per-row positions, grouped-query caches, Qwen3's q/k norms, Mistral), with
 * LoRA adapters picked per sequence, and with prompts longer than one prefill chunk.
 */
import * as path from 'path';
import { LoraAdapter } from '../../lib/lora/adapter';
import { loadAdapter } from '../../lib/lora/apply';
import { PREFILL_CHUNK } from '../../lib/model/batch_decode';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { FinishReason, GeneratedToken, logprobsOf, Sampling, Scheduler, SequenceSpec } from '../../lib/serve/scheduler';
import { FIXTURES, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { SeededRandom } from '../reference/random';
import { adapterFolder } from './fixtures';

const GREEDY: Sampling = { greedy: true, temperature: 0, topK: 0, topP: 1 };

interface Job {
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  seed: number;
  adapter: LoraAdapter | null;
}

/** 16 prompts of 1 to 40 tokens with 3 to 20 new tokens each (fewer in a short context), so rows join and leave at different steps. */
function jobs(vocab: number, maxLength: number, seed: number, count = 16, sampling: (i: number) => Sampling = () => GREEDY): Job[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: count }, (_, i) => {
    // Within the context (Mistral's is its sliding window): the prompt takes at most half of it.
    const length = 1 + Math.floor(rng.next() * Math.min(40, maxLength / 2));
    return {
      prompt: Array.from({ length }, () => Math.floor(rng.next() * vocab)),
      maxTokens: Math.min(3 + Math.floor(rng.next() * 18), maxLength - length), sampling: sampling(i), seed: 1000 + i, adapter: null,
    };
  });
}

/** Runs the jobs through one scheduler; `late` of them are submitted only once the first has produced 3 tokens. */
async function serve(model: Decoder, work: Job[], maxBatch: number, late = 0) {
  const scheduler = new Scheduler(model, { maxBatch, maxLength: model.contextLength });
  const results = work.map(() => ({ tokens: [] as number[], finish: null as FinishReason | null }));
  const submit = (i: number) => {
    const spec: SequenceSpec = { ...work[i], stopTokenIds: new Set(), logprobs: null };
    scheduler.submit(spec, {
      onToken: (t: GeneratedToken) => {
        results[i].tokens.push(t.token);
        if (i === 0 && results[0].tokens.length === 3) for (let j = work.length - late; j < work.length; j++) submit(j);
      },
      onFinish: (reason) => (results[i].finish = reason),
      onError: (e) => {
        throw e;
      },
    });
  };
  for (let i = 0; i < work.length - late; i++) submit(i);
  await scheduler.whenIdle();
  const stats = { ...scheduler.stats };
  scheduler.free();
  return { results, stats };
}

/** What generate() produces for a job on a model carrying only the job's adapter. */
function reference(model: Decoder, job: Job): number[] {
  return generate(model, job.prompt, { maxNewTokens: job.maxTokens, ...job.sampling, seed: job.seed, eosTokenId: null }).tokens;
}

describe.each([
  ['GPT-2', () => TINY],
  ['Llama (GQA, llama3 RoPE scaling)', () => path.join(FIXTURES, 'tiny-llama')],
  ['Qwen3 (q/k norms)', () => path.join(FIXTURES, 'tiny-qwen3')],
  ['Mistral', () => path.join(FIXTURES, 'tiny-mistral')],
])('%s', (_, dir) => {
  let model: Decoder;
  beforeAll(() => (model = loadModel(dir())));
  afterAll(() => model.free());

  test('greedy: each of 16 sequences decoded together is generate()\'s output; alone (max batch 1) too', async () => {
    const work = jobs(model.config.vocabSize, model.contextLength, 7);
    const want = work.map((job) => reference(model, job));
    const together = await serve(model, work, 16, 6);
    expect(together.results.map((r) => r.tokens)).toEqual(want);
    expect(together.results.map((r) => r.finish)).toEqual(work.map(() => 'length'));
    // The rows really shared steps: far fewer steps than rows decoded.
    expect(together.stats.rows).toBeGreaterThan(4 * together.stats.steps);
    const alone = await serve(model, work.slice(0, 4), 1);
    expect(alone.results.map((r) => r.tokens)).toEqual(want.slice(0, 4));
    expect(alone.stats.rows).toBe(alone.stats.steps);
  });

  test('sampling (temperature, top-k, top-p) with a seed per sequence: generate()\'s tokens for that seed, in a batch of 12 with slots reused', async () => {
    const settings: Sampling[] = [{ greedy: false, temperature: 0.8, topK: 0, topP: 0.9 }, { greedy: false, temperature: 1.3, topK: 5, topP: 1 }, { greedy: false, temperature: 1, topK: 0, topP: 1 }];
    const work = jobs(model.config.vocabSize, model.contextLength, 8, 12, (i) => settings[i % 3]);
    const want = work.map((job) => reference(model, job));
    const { results } = await serve(model, work, 5, 3);
    expect(results.map((r) => r.tokens)).toEqual(want);
  });
});

test('LoRA: sequences for two adapters and the base interleaved in one scheduler each get generate()\'s output with only their adapter applied', async () => {
  // A Llama folder with a tokenizer-sized vocabulary, and two adapters with non-zero B; one also trains lm_head.
  const dir = tinyLlamaFolder();
  const adapterDirs = [adapterFolder(dir, 3, { r: 2 }), adapterFolder(dir, 4, { r: 4, targets: 'all-linear', headToo: true })];
  const served = loadModel(dir);
  const adapters = adapterDirs.map((d) => loadAdapter(served, d));
  const singles = [loadModel(dir), ...adapterDirs.map((d) => {
    const m = loadModel(dir);
    loadAdapter(m, d);
    return m;
  })];
  try {
    const work = jobs(served.config.vocabSize, served.contextLength, 9, 15).map((job, i) => ({ ...job, adapter: [null, ...adapters][i % 3] }));
    const want = work.map((job, i) => reference(singles[i % 3], job));
    // The adapters change the output (else this test could not tell them apart).
    expect(want[1]).not.toEqual(reference(singles[0], work[1]));
    expect(want[2]).not.toEqual(reference(singles[0], work[2]));
    const { results } = await serve(served, work, 16, 5);
    expect(results.map((r) => r.tokens)).toEqual(want);
  } finally {
    served.free();
    for (const m of singles) m.free();
  }
});

test(`a prompt longer than one prefill chunk (${PREFILL_CHUNK} positions) is prefilled in chunks with generate()'s result`, async () => {
  const dir = tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=600,vocab_size=350,bos_token_id=349,eos_token_id=349');
  const model = loadModel(dir);
  try {
    const rng = new SeededRandom(12);
    const work: Job[] = [PREFILL_CHUNK + 45, 2 * PREFILL_CHUNK, 7].map((length) => ({
      prompt: Array.from({ length }, () => Math.floor(rng.next() * 350)), maxTokens: 12, sampling: GREEDY, seed: 0, adapter: null,
    }));
    const want = work.map((job) => reference(model, job));
    const { results } = await serve(model, work, 3);
    expect(results.map((r) => r.tokens)).toEqual(want);
  } finally {
    model.free();
  }
});

test('a sequence ends at a stop token (not emitted) or at the context; cancel frees its slot for the next in line', async () => {
  const model = loadModel(TINY);
  try {
    const prompt = [5, 6, 7];
    const free = reference(model, { prompt, maxTokens: 20, sampling: GREEDY, seed: 0, adapter: null });
    const stop = free[4];
    const scheduler = new Scheduler(model, { maxBatch: 1, maxLength: model.contextLength });
    const got: Record<string, { tokens: number[]; finish: FinishReason | null }> = {};
    const run = (name: string, spec: Partial<SequenceSpec>, cancelAfter = Infinity) => {
      got[name] = { tokens: [], finish: null };
      const handle = scheduler.submit({ prompt, maxTokens: 20, sampling: GREEDY, seed: 0, stopTokenIds: new Set(), logprobs: null, adapter: null, ...spec }, {
        onToken: (t) => {
          got[name].tokens.push(t.token);
          if (got[name].tokens.length === cancelAfter) handle.cancel();
        },
        onFinish: (reason) => (got[name].finish = reason),
        onError: (e) => {
          throw e;
        },
      });
    };
    run('cancelled', {}, 2);
    run('stop', { stopTokenIds: new Set([stop]) });
    const long = Array.from({ length: model.contextLength - 3 }, (_, i) => (i * 7) % 300);
    run('context', { prompt: long, maxTokens: 50 });
    await scheduler.whenIdle();
    scheduler.free();
    expect(got.cancelled).toEqual({ tokens: free.slice(0, 2), finish: null });
    expect(got.stop).toEqual({ tokens: free.slice(0, free.indexOf(stop)), finish: 'stop' });
    // generate() stops with context_full when the cache is full: 3 positions left, 3 tokens.
    const full = generate(model, long, { maxNewTokens: 50, greedy: true, eosTokenId: null });
    expect(full.stop).toBe('context_full');
    expect(got.context).toEqual({ tokens: full.tokens, finish: 'length' });
  } finally {
    model.free();
  }
});

test('logprobsOf: log-softmax of the unmodified logits in float64, and the k most likely tokens, most likely first', () => {
  const logits = Float32Array.of(0.5, 2, -1, 2, 0.25);
  const lse = Math.log([0.5, 2, -1, 2, 0.25].reduce((s, x) => s + Math.exp(x), 0));
  const r = logprobsOf(logits, 4, 3);
  expect(r.logprob).toBeCloseTo(0.25 - lse, 12);
  expect(r.top.map((t) => t.token)).toEqual([1, 3, 0]);
  expect(r.top[2].logprob).toBeCloseTo(0.5 - lse, 12);
  expect(logprobsOf(logits, 0, 0).top).toEqual([]);
});
