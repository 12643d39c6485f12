/**
 * Generation throughput with the KV cache: a fresh model (GPT-2 of the given size, or any "new:"
 * spec with --spec), a prompt of P tokens, N new tokens greedily. Prints one JSON line (prefill ms,
 * new tokens/s).
 *   node dist/bench/generate_speed.js [--n-layer 12 --n-head 12 --n-embd 768 | --spec new:smollm2-135m] [--prompt 16 --new 128 --device cpu|cuda]
 */
import { setPrecision } from '../lib/device';
import { parseDecoderSpec } from '../lib/model/config';
import { generate } from '../lib/model/generate';
import { Decoder } from '../lib/model/decoder';
import { addon } from '../lib/native';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const device = arg('device', 'cpu') as 'cpu' | 'cuda';
if (device === 'cuda') setPrecision(arg('precision', 'bf16') as 'bf16' | 'fp32');
if (arg('threads', '') !== '') addon.setNumThreads(Number(arg('threads', '2')));
const spec = arg('spec', `new:n_layer=${arg('n-layer', '12')},n_head=${arg('n-head', '12')},n_embd=${arg('n-embd', '768')}`);
const config = parseDecoderSpec(spec);
const model = new Decoder(config, device);
model.initRandom(0);
const P = Number(arg('prompt', '16')), N = Number(arg('new', '128'));
const prompt = Array.from({ length: P }, (_, i) => (i * 7919) % config.vocabSize);
generate(model, prompt, { maxNewTokens: 4, greedy: true }); // warm-up
let firstAt = 0;
const t0 = process.hrtime.bigint();
const r = generate(model, prompt, {
  maxNewTokens: N, greedy: true,
  onToken: () => { if (firstAt === 0) firstAt = Number(process.hrtime.bigint() - t0) / 1e6; },
});
const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
console.log(JSON.stringify({
  impl: 'gptune', spec, device, params: model.numParameters, prompt_tokens: P, new_tokens: r.tokens.length,
  prefill_ms: firstAt, decode_tokens_per_s: (r.tokens.length - 1) / ((totalMs - firstAt) / 1000), total_ms: totalMs,
}));
