/**
 * Times gptune's training step (forward, backward, global-norm clip, AdamW) for one model config on
 * random tokens, in its own process so peak RSS belongs to this config alone. Prints one JSON line.
 *   node dist/bench/train_step.js --n-layer 12 --n-head 12 --n-embd 768 --vocab 50257 \
 *     --n-positions 1024 --batch 4 --seq 256 --steps 3 --warmup 1 --threads 2 [--device cuda --precision bf16]
 *   node dist/bench/train_step.js --spec new:smollm2-135m --batch 4 --seq 256 ...   (any "new:" model spec)
 *   ... --gradient-checkpointing   (recompute each block in backward: bench/checkpointing.ts)
 *   ... --lora-r 16 --lora-alpha 32 --lora-targets all-linear|default|q_proj,v_proj --base-dtype f32|bf16|int8|nf4
 *       (a LoRA adapter, PEFT's init, no dropout, trained on a frozen base stored in that format: bench/lora.ts)
 * On CUDA each step ends with a device synchronisation, so its wall time includes all its kernels.
 * model_flops_per_token is 6N + 12 L T (NH HS) (N every parameter, a tied embedding once, as the
 * PyTorch baselines count it). peak_rss_after_load_mb is the peak before the first step (building and
 * filling the model), and memory_plan the arenas planMemory() plans for the run, by part.
 */
import { Decoder, planMemory } from '../lib/model/decoder';
import { BASE_DTYPES, BaseDtype } from '../lib/model/frozen_base';
import { LoraSettings } from '../lib/lora/modules';
import { parseDecoderSpec } from '../lib/model/config';
import { attentionWidth } from '../lib/model/decoder_config';
import { setPrecision } from '../lib/device';
import { addon } from '../lib/native';
import { AdamW, clipScale } from '../lib/train/adamw';
import { Rng } from '../lib/util/rng';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function textArg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** The adapter the flags ask for, or null (full fine-tuning). Dropout 0, as the PyTorch baseline's. */
function loraFlags(): LoraSettings | null {
  const r = arg('lora-r', 0);
  if (r === 0) return null;
  const t = textArg('lora-targets', 'default');
  const targets = t === 'default' ? null : t === 'all-linear' ? 'all-linear' : t.split(',');
  return { r, alpha: arg('lora-alpha', 2 * r), dropout: 0, targets, useRslora: false, modulesToSave: [] };
}

export function main(): void {
  const nLayer = arg('n-layer', 12), nHead = arg('n-head', 12), nEmbd = arg('n-embd', 768);
  const vocab = arg('vocab', 50257), nPositions = arg('n-positions', 1024);
  const B = arg('batch', 4), T = arg('seq', 256), steps = arg('steps', 3), warmup = arg('warmup', 1);
  addon.setNumThreads(arg('threads', 2));
  const device = textArg('device', 'cpu') as 'cpu' | 'cuda';
  const precision = textArg('precision', 'bf16') as 'bf16' | 'fp32';
  if (device === 'cuda') setPrecision(precision);
  const sync = () => { if (device === 'cuda') addon.cuda.synchronize?.(); };
  const spec = textArg('spec', `new:n_layer=${nLayer},n_head=${nHead},n_embd=${nEmbd},vocab_size=${vocab},n_positions=${nPositions}`);
  const config = parseDecoderSpec(spec);
  const baseDtype = textArg('base-dtype', 'f32') as BaseDtype;
  if (!BASE_DTYPES.includes(baseDtype)) throw new RangeError(`--base-dtype: expected one of ${BASE_DTYPES.join(', ')} but received ${baseDtype}`);
  const lora = loraFlags();
  const model = new Decoder(config, device, { baseDtype });
  model.initRandom(0);
  const adapter = lora ? model.addAdapter(lora, { trainable: true, seed: 0 }) : null;
  const checkpointing = process.argv.includes('--gradient-checkpointing');
  model.setGradientCheckpointing(checkpointing);
  const peakAfterLoad = process.resourceUsage().maxRSS / 1024;
  const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
  const rng = new Rng(1);
  const V = config.vocabSize;
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(V));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(V));
  const times: number[] = [];
  let loss = NaN;
  for (let s = 0; s < warmup + steps; s++) {
    const t0 = process.hrtime.bigint();
    model.zeroGrad();
    const r = model.forward(tokens, B, T, targets);
    model.backward(r.count);
    opt.update(3e-4, clipScale(model.gradNorm(), 1.0));
    sync();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (s >= warmup) times.push(ms);
    loss = r.loss;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const mem = model.memory();
  const flopsPerToken = 6 * model.numParameters + 12 * config.layers * T * attentionWidth(config);
  console.log(JSON.stringify({
    impl: 'gptune', spec, model_type: config.modelType, base_dtype: baseDtype,
    lora: lora && adapter ? { r: lora.r, alpha: lora.alpha, targets: lora.targets ?? 'default', modules: adapter.modules.length } : null,
    trainable_params: model.trainable.numel, device, precision: device === 'cuda' ? precision : 'fp32', params: model.numParameters, batch: B, seq: T, gradient_checkpointing: checkpointing,
    threads: addon.numThreads(), simd: addon.simdLevel(),
    ms_per_step: median, tokens_per_s: (B * T) / (median / 1000), peak_rss_mb: process.resourceUsage().maxRSS / 1024, peak_rss_after_load_mb: peakAfterLoad,
    memory_plan_mb: Object.fromEntries(Object.entries(planMemory(config, { batch: { B, T }, training: true, lora, baseDtype, gradientCheckpointing: checkpointing }).parts)
      .map(([part, bytes]) => [part, bytes / 2 ** 20])),
    model_flops_per_token: flopsPerToken, model_gflops_per_s: ((B * T) / (median / 1000)) * flopsPerToken / 1e9,
    arena_mb: { params: mem.paramsBytes / 2 ** 20, grads: mem.gradsBytes / 2 ** 20, activations: mem.activationsBytes / 2 ** 20 },
    loss, steps,
  }));
}

if (require.main === module) main();
