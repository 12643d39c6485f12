// llama.cpp's batch-1 decode speed on a GGUF file (node-llama-cpp 3.21.1's prebuilt CPU build), the
// baseline of bench/gguf_decode.ts: reads { file, prompt: number[], n, threads } as JSON on stdin,
// evaluates the prompt, generates n tokens greedily (no end-of-sequence stop: evaluate() yields until
// asked to stop) and prints one JSON line: decode tokens/s over tokens 2..n (the first token's time is
// the prompt's prefill), the prefill ms, the tokens, and the load ms.
import { getLlama } from 'node-llama-cpp';

const job = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (d) => { text += d; });
  process.stdin.on('end', () => resolve(text));
}));
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const loadStart = performance.now();
const model = await llama.loadModel({ modelPath: job.file });
const context = await model.createContext({ contextSize: job.prompt.length + job.n + 8, threads: job.threads, batchSize: 512 });
const loadMs = performance.now() - loadStart;
const sequence = context.getSequence();
const tokens = [];
const t0 = performance.now();
let firstAt = 0;
for await (const token of sequence.evaluate(job.prompt, { temperature: 0 })) {
  if (tokens.length === 0) firstAt = performance.now() - t0;
  tokens.push(token);
  if (tokens.length >= job.n) break;
}
const totalMs = performance.now() - t0;
process.stdout.write(JSON.stringify({
  impl: 'llama.cpp', file: job.file, threads: job.threads, prompt_tokens: job.prompt.length, new_tokens: tokens.length,
  prefill_ms: firstAt, decode_tokens_per_s: (tokens.length - 1) / ((totalMs - firstAt) / 1000), load_ms: loadMs, tokens,
}) + '\n');
await context.dispose();
await model.dispose();
await llama.dispose();
