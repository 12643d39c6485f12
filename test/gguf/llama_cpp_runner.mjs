// Runs GGUF files through llama.cpp (node-llama-cpp, an ES module jest cannot import) for
// test/gguf/llama_cpp.test.ts. Reads a JSON list of jobs on stdin:
//   { file, lora?: [{ file, scale }], texts: string[], prompt: number[], n: number,
//     score?: number[] | number[][], contextSize?: number (default 64) }
// and writes one JSON line: per job, llama.cpp's ids of each text (no BOS added, special tokens
// parsed) and those ids detokenized (special tokens written out), the file's special token ids, add_bos_token, add_eos_token and chat template, and the greedy
// continuation of `prompt` with each token's probability, the log-probability of each token of
// `score` (each of its sequences) after the ones before it (a fresh sequence each), all in one list;
// or { error }.
import { getLlama } from 'node-llama-cpp';

const jobs = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (d) => { text += d; });
  process.stdin.on('end', () => resolve(text));
}));
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const results = [];
for (const job of jobs) {
  try {
    results.push(await run(job));
  } catch (e) {
    results.push({ error: String(e?.message ?? e) });
  }
}
process.stdout.write(JSON.stringify(results) + '\n');
await llama.dispose();

async function run(job) {
  const model = await llama.loadModel({ modelPath: job.file });
  const ids = job.texts.map((t) => Array.from(model.tokenize(t, true)));
  const detokenized = ids.map((x) => model.detokenize(x, true));
  // An F32 KV cache: llama.cpp's default F16 cache alone moves log-probabilities by ~1e-3.
  const context = await model.createContext({ contextSize: job.contextSize ?? 64, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false, ...(job.lora ? { lora: { adapters: job.lora.map((a) => ({ filePath: a.file, scale: a.scale })) } } : {}) });
  const sequence = context.getSequence();
  const tokens = [], probabilities = [];
  for await (const step of sequence.evaluateWithMetadata(job.prompt, { probabilities: true }, { temperature: 0 })) {
    tokens.push(step.token);
    probabilities.push(step.probabilities.get(step.token));
    if (tokens.length >= job.n) break;
  }
  // Teacher-forced log-probabilities of job.score's tokens (each after the ones before it).
  let scored;
  if (job.score) {
    scored = [];
    for (const tokens of Array.isArray(job.score[0]) ? job.score : [job.score]) {
      await sequence.clearHistory();
      const input = tokens.map((token, i) => (i < tokens.length - 1 ? [token, { generateNext: { probabilities: true } }] : token));
      const output = await sequence.controlledEvaluate(input);
      scored.push(...tokens.slice(1).map((next, i) => Math.log(output[i].next.probabilities.get(next) ?? 0)));
    }
  }
  const t = model.fileInfo.metadata.tokenizer;
  const tokenizer = { eos: t.ggml.eos_token_id, bos: t.ggml.bos_token_id, addBos: t.ggml.add_bos_token, addEos: t.ggml.add_eos_token, template: t.chat_template };
  await context.dispose();
  await model.dispose();
  return { ids, detokenized, tokens, probabilities, tokenizer, scored };
}
