/**
 * GGUF decode speed, gptune beside llama.cpp on the same file: batch 1, greedy, a short prompt, N new
 * tokens (default 128), the same threads (default 2), for a GPT-2 124M shape and a SmolLM2-135M shape
 * (hidden 576, 30 layers, 9 heads on 3 KV heads, intermediate 1536, vocab 49152, tied, rope theta
 * 100000) with random weights, each exported by gptune to F32, Q8_0 and Q4_K_M. gptune runs the file
 * directly (`--model x.gguf`: its quantized weights as stored); llama.cpp runs it through
 * node-llama-cpp (bench/llama_cpp_decode.mjs). Each measurement is a child process. Prints a table
 * (tokens/s, gptune/llama.cpp, file bytes), gptune's per-token profile (time in kernels by kernel vs
 * the rest: JavaScript and N-API per call), and one JSON line.
 *   node dist/bench/gguf_decode.js [--threads 2] [--new 128] [--dtypes f32,q8_0,q4_k_m] [--shapes gpt2,smollm2]
 * The child mode (`--child FILE`) is gptune's own measurement.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { main as cli } from '../lib/cli/main';
import { loadGGUFModel } from '../lib/gguf/load';
import { saveModel } from '../lib/model/checkpoint';
import { parseDecoderSpec } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';
import { generate } from '../lib/model/generate';
import { addon, kernels } from '../lib/native';
import { ROOT, runJSON } from './child';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const SHAPES: Record<string, { label: string; spec: string; tokenizer: string | undefined }> = {
  // GPT-2's own tokenizer (the default of new: models).
  gpt2: { label: 'GPT-2 124M', spec: 'new:n_layer=12,n_head=12,n_embd=768', tokenizer: undefined },
  // SmolLM2-135M's shape; tiny-gpt2's 350-token byte-level BPE (the file pads the vocabulary to 49152).
  smollm2: { label: 'SmolLM2-135M', spec: 'new:smollm2-135m', tokenizer: path.join(ROOT, 'test/fixtures/tiny-gpt2') },
};
const PROMPT = [464, 2068, 7586, 21831, 18045, 625, 262, 16931].map((id) => id % 350);

/** gptune's measurement in this process: load the file, warm up, time N greedy tokens, then profile N/4 more by kernel. */
function child(file: string, threads: number, n: number): void {
  addon.setNumThreads(threads);
  const loadStart = process.hrtime.bigint();
  const { model } = loadGGUFModel(file);
  const loadMs = Number(process.hrtime.bigint() - loadStart) / 1e6;
  const options = { greedy: true, eosTokenId: null };
  generate(model, PROMPT, { ...options, maxNewTokens: 4 });
  let firstAt = 0;
  const t0 = process.hrtime.bigint();
  const r = generate(model, PROMPT, { ...options, maxNewTokens: n, onToken: () => { if (firstAt === 0) firstAt = Number(process.hrtime.bigint() - t0) / 1e6; } });
  const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const profile = profileDecode(model, Math.max(8, n >> 2));
  console.log(JSON.stringify({
    impl: 'gptune', file, threads, prompt_tokens: PROMPT.length, new_tokens: r.tokens.length, prefill_ms: firstAt,
    decode_tokens_per_s: (r.tokens.length - 1) / ((totalMs - firstAt) / 1000), load_ms: loadMs, tokens: r.tokens,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024, profile,
  }));
  model.free();
}

/**
 * Where a decode step's time goes: every kernel call timed (wrapped), summed by kernel, per token;
 * what is left of the step is JavaScript and the N-API crossings (the wrapper's own cost included,
 * so the rest is an upper bound).
 */
function profileDecode(model: Decoder, n: number): { ms_per_token: number; kernels_ms: Record<string, number>; rest_ms: number } {
  const table = kernels as unknown as Record<string, (...a: unknown[]) => unknown>;
  const original = { ...table };
  const spent: Record<string, number> = {};
  for (const [name, fn] of Object.entries(original)) {
    if (typeof fn !== 'function') continue;
    table[name] = (...a: unknown[]) => {
      const t = process.hrtime.bigint();
      try {
        return fn(...a);
      } finally {
        spent[name] = (spent[name] ?? 0) + Number(process.hrtime.bigint() - t) / 1e6;
      }
    };
  }
  let firstAt = 0, atFirst: Record<string, number> = {};
  const t0 = process.hrtime.bigint();
  let r;
  try {
    r = generate(model, PROMPT, { greedy: true, eosTokenId: null, maxNewTokens: n, onToken: () => {
      if (firstAt === 0) {
        firstAt = Number(process.hrtime.bigint() - t0) / 1e6;
        atFirst = { ...spent };
      }
    } });
  } finally {
    Object.assign(table, original);
  }
  const steps = r.tokens.length - 1, ms = Number(process.hrtime.bigint() - t0) / 1e6 - firstAt;
  const perToken: Record<string, number> = {};
  for (const [name, t] of Object.entries(spent)) {
    const v = (t - (atFirst[name] ?? 0)) / steps;
    if (v > 0.001) perToken[name] = Number(v.toFixed(3));
  }
  const inKernels = Object.values(perToken).reduce((a, b) => a + b, 0);
  return { ms_per_token: Number((ms / steps).toFixed(3)), kernels_ms: perToken, rest_ms: Number((ms / steps - inKernels).toFixed(3)) };
}

/** `gptune export --format gguf` in this process (the CLI's own code), quietly. */
async function exportGGUF(model: string, dtype: string, out: string): Promise<void> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let code: number;
  try {
    code = await cli(['export', '--model', model, '--format', 'gguf', '--dtype', dtype, '--no-measure', '--out', out, '--json']);
  } finally {
    process.stdout.write = write;
  }
  if (code !== 0) throw new Error(`export --dtype ${dtype} of ${model} failed (exit ${code})`);
}

interface Row { shape: string; dtype: string; bytes: number; gptune: Record<string, unknown>; llamacpp: Record<string, unknown>; ratio: number | null }

export async function benchGGUFDecode(threads = 2, n = 128, dtypes = ['f32', 'q8_0', 'q4_k_m'], shapes = Object.keys(SHAPES)): Promise<Row[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-gguf-decode-'));
  const rows: Row[] = [];
  console.log(`\nGGUF decode, batch 1, greedy, ${PROMPT.length}-token prompt, ${n} new tokens, ${threads} threads, CPU (random weights)`);
  console.log(`  ${'model'.padEnd(14)} ${'type'.padEnd(7)} ${'file MB'.padStart(8)} ${'gptune tok/s'.padStart(13)} ${'llama.cpp tok/s'.padStart(16)} ${'ratio'.padStart(6)}`);
  try {
    for (const key of shapes) {
      const shape = SHAPES[key];
      const folder = path.join(dir, key);
      const model = new Decoder(parseDecoderSpec(shape.spec));
      model.initRandom(0);
      saveModel(model, folder, { tokenizerFrom: shape.tokenizer });
      model.free();
      for (const dtype of dtypes) {
        const file = path.join(dir, `${key}-${dtype}.gguf`);
        await exportGGUF(folder, dtype, file);
        const bytes = fs.statSync(file).size;
        const script = path.join(__dirname, __filename.endsWith('.ts') ? '../dist/bench/gguf_decode.js' : 'gguf_decode.js');
        const ours = runJSON(process.execPath, [script, '--child', file, '--threads', String(threads), '--new', String(n)]) as Record<string, unknown>;
        const r = spawnSync(process.execPath, [path.join(ROOT, 'bench/llama_cpp_decode.mjs')], {
          input: JSON.stringify({ file, prompt: PROMPT, n, threads }), encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 24,
        });
        let theirs: Record<string, unknown>;
        try {
          theirs = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
        } catch {
          theirs = { error: `llama_cpp_decode.mjs exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-1)[0]}` };
        }
        const a = ours.decode_tokens_per_s as number | undefined, b = theirs.decode_tokens_per_s as number | undefined;
        const ratio = a !== undefined && b !== undefined ? a / b : null;
        const cell = (x: Record<string, unknown>, v: number | undefined) => (v !== undefined ? v.toFixed(1) : String(x.error));
        console.log(`  ${shape.label.padEnd(14)} ${dtype.padEnd(7)} ${(bytes / 1e6).toFixed(1).padStart(8)} ${cell(ours, a).padStart(13)} ${cell(theirs, b).padStart(16)} ${ratio === null ? '' : ratio.toFixed(2).padStart(6)}`);
        const profile = ours.profile as { ms_per_token: number; kernels_ms: Record<string, number>; rest_ms: number } | undefined;
        if (profile) {
          const top = Object.entries(profile.kernels_ms).sort((x, y) => y[1] - x[1]).slice(0, 4).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
          console.log(`  ${''.padEnd(23)} gptune per token ${profile.ms_per_token.toFixed(2)} ms: ${top}; outside kernels ${profile.rest_ms.toFixed(2)} ms`);
        }
        rows.push({ shape: shape.label, dtype, bytes, gptune: ours, llamacpp: theirs, ratio });
        fs.rmSync(file);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (require.main === module) {
  const threads = Number(arg('threads', '2')), n = Number(arg('new', '128'));
  if (process.argv.includes('--child')) {
    child(arg('child', ''), threads, n);
  } else {
    benchGGUFDecode(threads, n, arg('dtypes', 'f32,q8_0,q4_k_m').split(','), arg('shapes', 'gpt2,smollm2').split(','))
      .then((rows) => console.log(JSON.stringify({ date: new Date().toISOString(), threads, new_tokens: n, gguf_decode: rows.map((r) => ({ ...r, gptune: { ...r.gptune, tokens: undefined }, llamacpp: { ...r.llamacpp, tokens: undefined } })) })))
      .catch((e) => {
        console.error(`bench: ${(e as Error).message}`);
        process.exitCode = 1;
      });
  }
}
