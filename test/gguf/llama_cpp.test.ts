/**
 * GGUF export checked by llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU build, run in a
 * child process by llama_cpp_runner.mjs): for GPT-2 and the Llama family (llama with llama3 rope
 * scaling and Llama 3's tokenizer; llama with every bias and linear scaling; qwen2 tied with a
 * ChatML tokenizer; qwen3 with q/k norms and NH*HS != C), the file's tokenizer gives gptune's ids,
 * greedy continuation gives gptune's 20 tokens (F32 and F16), and each token's log-probability
 * agrees to 1e-3 (F32). LoRA adapter GGUFs applied by llama.cpp (--lora) give the tokens of
 * gptune with --adapter. Every model is tiny and random (std 0.2, far from uniform predictions).
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeDirAtomic } from '../../lib/io/atomic';
import { adapterFiles } from '../../lib/lora/files';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { encodeSequence, HFTokenizer, loadTokenizer, Tokenizer } from '../../lib/tokenizer';
import { spawnSync } from 'child_process';
import { compileLlamaQuantize, exportGGUF as exportToGGUF, gptuneGreedy as greedyContinuation, Job, JobResult, perplexity, runLlamaCpp } from './llama_cpp_helpers';
import { FIXTURES, seededRandom, tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { ggmlGelu, gpt2LogProbs, GPT2Weights } from '../reference/gpt2';

const TOKENIZERS = path.join(FIXTURES, 'tokenizers');
const TEXTS = ['Hello world, this is a test.', 'The quick brown fox\n\njumps over 123 lazy dogs!  Done?', "It's 2026; we're 'here' — café."];
const PROMPT = 'Once upon a time, there was';
const N = 20;

/** A PEFT adapter for `base` on every linear module with random A and B (B = 0 would be a no-op). */
function adapterFolder(base: string, seed: number, useRslora: boolean): string {
  const dir = path.join(tempDir('gptune-gguf-adapter-'), 'adapter');
  const model = loadModel(base);
  const adapter = model.addAdapter({ r: 4, alpha: 8, dropout: 0, targets: 'all-linear', useRslora, modulesToSave: [] });
  const rand = seededRandom(seed);
  for (const m of adapter.modules) {
    m.A.write(Float32Array.from({ length: m.A.numel }, () => (rand() - 0.5) * 0.6));
    m.B.write(Float32Array.from({ length: m.B.numel }, () => (rand() - 0.5) * 0.6));
  }
  writeDirAtomic(dir, adapterFiles(adapter, base, dir));
  model.free();
  return dir;
}

/** gptune's greedy continuation of `prompt` (N tokens), with --adapter. */
const gptuneGreedy = (dir: string, prompt: number[], adapter?: string) => greedyContinuation(dir, prompt, N, adapter);

/** The first 64 tokens of a held-out text (every model's context), scored by llama.cpp for perplexity. */
function heldOut(tokenizer: Tokenizer): number[] {
  return encodeSequence(tokenizer, fs.readFileSync(path.join(FIXTURES, 'eval-text.txt'), 'utf8')).slice(0, 64);
}

/** The export under test, without the measured cost (test/gguf/export_measure.test.ts checks it). */
const exportGGUF = (...args: string[]) => exportToGGUF('--no-measure', ...args);

const MODELS: Array<{ name: string; make: () => string }> = [
  { name: 'gpt2', make: () => tinyLlamaFolder('new:n_layer=2,n_head=4,n_embd=64,n_positions=64,vocab_size=350', 11, TINY) },
  {
    name: 'llama (GQA, llama3 rope scaling, Llama 3 tokenizer)',
    make: () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=576', 12, path.join(TOKENIZERS, 'bytelevel-llama3'),
      { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }),
  },
  {
    name: 'llama (all biases, linear rope scaling, rows not a multiple of 32)',
    make: () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_embd=48,n_inner=80,n_positions=64,vocab_size=350,attention_bias=true,mlp_bias=true', 13, TINY,
      { rope_scaling: { rope_type: 'linear', factor: 2 } }),
  },
  {
    name: 'qwen2 (tied, ChatML tokenizer, add_eos_token)',
    make: () => {
      const dir = tinyLlamaFolder('new:arch=qwen2,n_layer=2,n_head=4,n_kv_head=1,n_embd=32,n_inner=64,n_positions=64,vocab_size=576,tie_word_embeddings=true', 14, path.join(TOKENIZERS, 'bytelevel-chatml'));
      const config = path.join(dir, 'tokenizer_config.json');
      fs.writeFileSync(config, JSON.stringify({ ...JSON.parse(fs.readFileSync(config, 'utf8')), add_eos_token: true }));
      return dir;
    },
  },
  { name: 'qwen3 (q/k norms, head_dim 16)', make: () => tinyLlamaFolder('new:arch=qwen3,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=350,head_dim=16', 15, TINY) },
];

/** Models with an adapter test: GPT-2, llama's graph (permuted q/k rows; rsLoRA), qwen2's (NEOX rows). */
const ADAPTER_MODELS = [0, 1, 3];

interface Prepared {
  name: string;
  dir: string;
  prompt: number[];
  ids: number[][];
  f32: JobResult;
  f16: JobResult;
  q8: JobResult;
  bf16: JobResult;
  /** llama.cpp's own Q8_0 quantization of the F32 file (llama_model_quantize), run the same way. */
  theirQ8: JobResult;
  q8Summary: Array<{ name: string; type: string; fallback?: string }>;
  /** The adapter applied by llama.cpp (--lora), and merged into the exported model (export --adapter). */
  adapter?: { dir: string; result: JobResult; merged: JobResult };
}

const prepared: Prepared[] = [];

beforeAll(async () => {
  const jobs: Job[] = [];
  const pending: Array<Omit<Prepared, 'f32' | 'f16' | 'q8' | 'bf16' | 'theirQ8' | 'adapter'> & { jobIndex: number; adapterDir?: string }> = [];
  const quantizer = compileLlamaQuantize(tempDir('gptune-llama-quantize-'));
  for (const [m, { name, make }] of MODELS.entries()) {
    const dir = make();
    const out = path.dirname(dir);
    const tokenizer = loadTokenizer(dir);
    const prompt = encodeSequence(tokenizer, PROMPT);
    const ids = TEXTS.map((t) => tokenizer.encode(t));
    for (const dtype of ['f32', 'f16', 'bf16']) await exportGGUF('--model', dir, '--dtype', dtype, '--out', path.join(out, `${dtype}.gguf`));
    const q8 = await exportGGUF('--model', dir, '--dtype', 'q8_0', '--out', path.join(out, 'q8_0.gguf'));
    // llama_ftype 7 = MOSTLY_Q8_0 (include/llama.h).
    const quantized = spawnSync(quantizer, [path.join(out, 'f32.gguf'), path.join(out, 'llama-q8_0.gguf'), '7'], { encoding: 'utf8' });
    if (quantized.status !== 0) throw new Error(`llama_model_quantize failed: ${quantized.stderr}`);
    const jobIndex = jobs.length;
    for (const dtype of ['f32', 'f16', 'q8_0', 'bf16', 'llama-q8_0']) jobs.push({ file: path.join(out, `${dtype}.gguf`), texts: TEXTS, prompt, n: N, score: heldOut(tokenizer) });
    let adapterDir: string | undefined;
    // One GPT-2 adapter and one for each llama.cpp graph family (llama's permuted q/k rows, qwen's NEOX rows), rsLoRA on one.
    if (ADAPTER_MODELS.includes(m)) {
      adapterDir = adapterFolder(dir, 20 + m, m === ADAPTER_MODELS[1]);
      await exportGGUF('--model', dir, '--adapter', adapterDir, '--adapter-only', '--dtype', 'f32', '--out', path.join(out, 'adapter.gguf'));
      jobs.push({ file: path.join(out, 'f32.gguf'), lora: [{ file: path.join(out, 'adapter.gguf'), scale: 1 }], texts: [], prompt, n: N });
      await exportGGUF('--model', dir, '--adapter', adapterDir, '--dtype', 'f32', '--out', path.join(out, 'merged.gguf'));
      jobs.push({ file: path.join(out, 'merged.gguf'), texts: [], prompt, n: N });
    }
    pending.push({ name, dir, prompt, ids, jobIndex, adapterDir, q8Summary: q8.tensors as Prepared['q8Summary'] });
  }
  const results = runLlamaCpp(jobs);
  for (const p of pending) {
    const at = p.jobIndex;
    prepared.push({
      name: p.name, dir: p.dir, prompt: p.prompt, ids: p.ids, q8Summary: p.q8Summary,
      f32: results[at], f16: results[at + 1], q8: results[at + 2], bf16: results[at + 3], theirQ8: results[at + 4],
      adapter: p.adapterDir ? { dir: p.adapterDir, result: results[at + 5], merged: results[at + 6] } : undefined,
    });
  }
}, 110000);

describe.each(MODELS.map((m, i) => [m.name, i] as const))('%s', (_name, i) => {
  test("llama.cpp's tokenizer from the GGUF gives gptune's ids; special tokens, add_bos_token and the chat template are the tokenizer's", () => {
    const p = prepared[i];
    for (const r of [p.f32, p.f16, p.q8, p.bf16]) expect(r.ids).toEqual(p.ids);
    const tokenizer = loadTokenizer(p.dir);
    const t = p.f32.tokenizer;
    expect(t).toEqual({
      eos: tokenizer.eosTokenId, bos: tokenizer.bosTokenId ?? undefined, addBos: tokenizer.addBosToken,
      addEos: tokenizer instanceof HFTokenizer && tokenizer.addEosToken, template: tokenizer.chatTemplate ?? undefined,
    });
    if (i === 3) expect(t.addEos).toBe(true);
  });

  test("greedy continuation is gptune's for F32 and F16 (Q8_0 and BF16 files run)", () => {
    const p = prepared[i];
    const ref = gptuneGreedy(p.dir, p.prompt);
    expect(p.f32.tokens).toEqual(ref.tokens);
    expect(p.f16.tokens).toEqual(ref.tokens);
    expect(p.q8.tokens).toHaveLength(N);
    expect(p.bf16.tokens).toHaveLength(N);
  });

  // GPT-2: see the test after this block (llama.cpp's GELU is not the exact one).
  if (i !== 0) test("log-probabilities of the F32 file agree with gptune's to 1e-3", () => {
    const p = prepared[i];
    const ref = gptuneGreedy(p.dir, p.prompt);
    const llamaLogprobs = p.f32.probabilities.map(Math.log);
    for (let k = 0; k < N; k++) expect(Math.abs(llamaLogprobs[k] - ref.logprobs[k])).toBeLessThan(1e-3);
  });

  // The reference for what Q8_0 can reach is llama.cpp's own quantization of the same F32 file, run the same way.
  // Where llama.cpp's CPU kernels compute Q8_0 wrongly, its own file misses the 1% too, and the check says nothing
  // about gptune's file. Seen on an Intel Xeon with AMX (2026-12-08), where node-llama-cpp 3.21.1 loads its
  // libggml-cpu-sapphirerapids build: perplexity about 36 against F32's 1317 on the 32-wide models, changing from
  // run to run, with llama.cpp's own file as with gptune's (likely llama.cpp's AMX Q8_0 path, whose alignment
  // checks upstream fixed in ggml-org/llama.cpp#19867 and #19925; the AMD EPYC of earlier sessions passed the
  // check). gptune's Q8_0 bytes are checked against llama.cpp's quantizer on every machine
  // (test/gguf/llama_quantize.test.ts).
  test("Q8_0's perplexity on a held-out text is within 1% of F32's (llama.cpp on both files) wherever llama.cpp's own Q8_0 is", () => {
    const p = prepared[i];
    const f32 = perplexity(p.f32.scored!), q8 = perplexity(p.q8.scored!), theirs = perplexity(p.theirQ8.scored!);
    expect(p.f32.scored).toHaveLength(63);
    expect(p.theirQ8.scored).toHaveLength(63);
    if (Math.abs(theirs / f32 - 1) >= 0.01) {
      console.warn(`${p.name}: llama.cpp's own Q8_0 file scores perplexity ${theirs.toFixed(4)} against F32's ${f32.toFixed(4)} on this CPU (gptune's: ${q8.toFixed(4)}): llama.cpp's Q8_0 kernels are wrong here, so the 1% check cannot be made`);
      return;
    }
    expect(Math.abs(q8 / f32 - 1)).toBeLessThan(0.01);
  });

  test('Q8_0: weights are Q8_0 blocks, or F16 (said so) where rows are not a multiple of 32; norms and biases F32', () => {
    for (const t of prepared[i].q8Summary) {
      if (/norm|bias|position_embd|rope_freqs/.test(t.name)) expect(t.type).toBe('F32');
      else if (t.fallback) expect([t.type, t.fallback]).toEqual(['F16', `${t.name}: Q8_0 needs a row length multiple of 32, wrote F16`]);
      else expect(t.type).toBe('Q8_0');
    }
  });

  if (ADAPTER_MODELS.includes(i)) test('a LoRA adapter GGUF applied by llama.cpp, and a model exported with the adapter merged, give the greedy tokens of gptune --adapter', () => {
    const p = prepared[i];
    const base = gptuneGreedy(p.dir, p.prompt);
    const ref = gptuneGreedy(p.dir, p.prompt, p.adapter!.dir);
    expect(ref.tokens).not.toEqual(base.tokens);
    expect(p.adapter!.result.tokens).toEqual(ref.tokens);
    expect(p.adapter!.merged.tokens).toEqual(ref.tokens);
  });
});

/**
 * llama.cpp's CPU GELU rounds its input and output to float16 (ggml-cpu/vec.h GGML_GELU_FP16): that
 * alone moves GPT-2's log-probabilities by ~1e-3 from the exact function gptune (and PyTorch)
 * computes. So the F32 file's log-probabilities are compared, to 1e-3, with a float64 GPT-2 that uses
 * ggml's GELU, and that reference with the exact GELU is first checked against gptune.
 */
test("gpt2: log-probabilities of the F32 file agree to 1e-3 with a float64 GPT-2 using llama.cpp's float16 GELU", () => {
  const p = prepared[0];
  const ref = gptuneGreedy(p.dir, p.prompt);
  const model = loadModel(p.dir);
  const cfg = model.config;
  const weights: GPT2Weights = { C: cfg.width, NH: cfg.heads, layers: cfg.layers, eps: cfg.normEps, get: (name) => model.readParameter(name) };
  const ids = [...p.prompt, ...ref.tokens];
  const exact = gpt2LogProbs(weights, ids).slice(p.prompt.length - 1);
  const ggml = gpt2LogProbs(weights, ids, ggmlGelu).slice(p.prompt.length - 1);
  model.free();
  for (let k = 0; k < N; k++) expect(Math.abs(exact[k] - ref.logprobs[k])).toBeLessThan(1e-4);
  const llamaLogprobs = p.f32.probabilities.map(Math.log);
  for (let k = 0; k < N; k++) expect(Math.abs(llamaLogprobs[k] - ggml[k])).toBeLessThan(1e-3);
});
