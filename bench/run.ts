/**
 * `npm run bench`: matmul GFLOP/s at GPT-2 shapes, the GGML block-format matmuls beside fp32 (bench/ggml_matmul.ts), and the training-step throughput of GPT-2 124M
 * (B=4, T=256) and of a small model, gptune next to PyTorch run in the same session (Debian's
 * python3-torch at /usr/bin/python3, 2 threads, OPENBLAS_CORETYPE=SkylakeX). Prints a table and
 * one JSON line. Then the Llama family (benchLlama), LoRA / QLoRA (bench/lora.ts) and GGUF decode beside
 * llama.cpp (bench/gguf_decode.ts). Options: --quick (small model only), --no-torch, --no-ggml,
 * --no-llama, --no-lora, --no-gguf, --threads N, --steps N.
 */
import * as fs from 'fs';
import * as path from 'path';
import { benchCheckpointing } from './checkpointing';
import { ROOT, runJSON, StepResult } from './child';
import { benchGGUFDecode } from './gguf_decode';
import { benchLora } from './lora';

const flag = (name: string) => process.argv.includes(`--${name}`);
function num(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const CONFIGS = [
  { name: 'gpt2-124M B=4 T=256', nLayer: 12, nHead: 12, nEmbd: 768, vocab: 50257, nPositions: 1024, batch: 4, seq: 256, big: true },
  { name: 'small 6L-384 B=8 T=128', nLayer: 6, nHead: 6, nEmbd: 384, vocab: 50257, nPositions: 256, batch: 8, seq: 128, big: false },
];

async function main(): Promise<void> {
  const threads = num('threads', 2), steps = num('steps', 3);
  const rows: Record<string, unknown>[] = [];
  const summary: Record<string, unknown> = { date: new Date().toISOString(), threads };

  // Kernel-level: matmul GFLOP/s (bench/matmul.ts, when built).
  const matmulModule = path.join(__dirname, 'matmul.js');
  if (fs.existsSync(matmulModule) || fs.existsSync(path.join(__dirname, 'matmul.ts'))) {
    const { benchMatmul } = require('./matmul') as { benchMatmul: () => Promise<Array<{ name: string; shape: string; gflops: number; ms: number }>> };
    const m = await benchMatmul();
    console.log('\nmatmul (2 threads)');
    for (const r of m) console.log(`  ${r.name.padEnd(28)} ${r.shape.padEnd(22)} ${r.gflops.toFixed(1).padStart(7)} GFLOP/s ${r.ms.toFixed(2).padStart(9)} ms`);
    summary.matmul = m;
  }
  // GGML block-format matmuls beside the fp32 one (bench/ggml_matmul.ts).
  if (!flag('no-ggml')) {
    const { benchGgmlMatmul, printGgmlMatmul } = require('./ggml_matmul') as typeof import('./ggml_matmul');
    const g = await benchGgmlMatmul();
    console.log('');
    printGgmlMatmul(g);
    summary.ggml_matmul = g;
  }

  console.log('\ntraining step (forward + backward + clip + AdamW), float32, CPU');
  console.log(`  ${'config'.padEnd(26)} ${'impl'.padEnd(8)} ${'tokens/s'.padStart(10)} ${'ms/step'.padStart(10)} ${'peak RSS MB'.padStart(12)}`);
  for (const c of CONFIGS) {
    if (flag('quick') && c.big) continue;
    const args = ['--n-layer', c.nLayer, '--n-head', c.nHead, '--n-embd', c.nEmbd, '--vocab', c.vocab, '--n-positions', c.nPositions,
      '--batch', c.batch, '--seq', c.seq, '--steps', steps, '--threads', threads].map(String);
    const ours = runJSON(process.execPath, [path.join(__dirname, 'train_step.js'), ...args]);
    let torch: StepResult | { error: string } | null = null;
    if (!flag('no-torch')) {
      torch = runJSON('/usr/bin/python3', [path.join(ROOT, 'bench/torch_baseline.py'), ...args],
        { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' });
    }
    for (const [impl, r] of [['gptune', ours], ['pytorch', torch]] as const) {
      if (!r) continue;
      if ('error' in r) console.log(`  ${c.name.padEnd(26)} ${impl.padEnd(8)} ${r.error}`);
      else console.log(`  ${c.name.padEnd(26)} ${impl.padEnd(8)} ${r.tokens_per_s.toFixed(1).padStart(10)} ${r.ms_per_step.toFixed(0).padStart(10)} ${r.peak_rss_mb.toFixed(0).padStart(12)}`);
    }
    const row: Record<string, unknown> = { config: c.name, gptune: ours, pytorch: torch };
    if (torch && !('error' in torch) && !('error' in ours)) {
      row.speed_ratio = ours.tokens_per_s / torch.tokens_per_s;
      row.memory_ratio = ours.peak_rss_mb / torch.peak_rss_mb;
      console.log(`  ${''.padEnd(26)} ratio    gptune/pytorch speed ${(row.speed_ratio as number).toFixed(2)}x, peak memory ${(row.memory_ratio as number).toFixed(2)}x`);
    }
    rows.push(row);
  }
  summary.train = rows;
  if (!flag('quick') && !flag('no-llama')) summary.llama = benchLlama(threads, steps, summary.matmul as Array<{ gflops: number }> | undefined);
  // Each 0.5B-shaped LoRA step takes tens of seconds on 2 cores: at most 2 timed steps there.
  if (!flag('quick') && !flag('no-lora')) summary.lora = benchLora(threads, Math.min(steps, 2), 1, { torch: !flag('no-torch') });
  if (!flag('quick') && !flag('no-gguf')) summary.gguf_decode = await benchGGUFDecode(threads);
  console.log(JSON.stringify(summary));
}

/**
 * The Llama family: a SmolLM2-135M-shaped training step (B=4, T=256) and batch-1 generation beside
 * bench/torch_llama_baseline.py (scripts/torch_llama.py) in the same run, the training step's model
 * FLOPs against the best matmul rate measured above, and the peak RSS of one Qwen2.5-0.5B-shaped
 * training step at B=1, T=512 (gptune only: the memory target of issue 11), and the SmolLM2 step
 * with and without gradient checkpointing (bench/checkpointing.ts).
 */
function benchLlama(threads: number, steps: number, matmul: Array<{ gflops: number }> | undefined): Record<string, unknown> {
  const env = { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' };
  const peak = matmul && matmul.length > 0 ? Math.max(...matmul.map((m) => m.gflops)) : null;
  const out: Record<string, unknown> = { sgemm_peak_gflops: peak };
  const common = ['--threads', String(threads)];
  console.log(`\nLlama family, float32, CPU (${threads} threads)`);
  const train = ['--batch', '4', '--seq', '256', '--steps', String(steps), ...common];
  const ours = runJSON(process.execPath, [path.join(__dirname, 'train_step.js'), '--spec', 'new:smollm2-135m', ...train]);
  const torch = flag('no-torch') ? null : runJSON('/usr/bin/python3', [path.join(ROOT, 'bench/torch_llama_baseline.py'), '--mode', 'train', ...train], env);
  for (const [impl, r] of [['gptune', ours], ['pytorch', torch]] as const) {
    if (!r) continue;
    if ('error' in r) { console.log(`  SmolLM2-135M step B=4 T=256 ${impl.padEnd(8)} ${r.error}`); continue; }
    const gflops = r.model_gflops_per_s as number;
    const mfu = peak ? ` MFU ${(100 * gflops / peak).toFixed(0)}% of ${peak.toFixed(0)} GFLOP/s` : '';
    console.log(`  SmolLM2-135M step B=4 T=256 ${impl.padEnd(8)} ${r.tokens_per_s.toFixed(1).padStart(8)} tokens/s ${r.ms_per_step.toFixed(0).padStart(7)} ms ${r.peak_rss_mb.toFixed(0).padStart(6)} MB peak RSS ${gflops.toFixed(1)} model GFLOP/s${mfu}`);
  }
  out.smollm2_train = { gptune: ours, pytorch: torch };
  const gen = ['--prompt', '16', '--new', '128', ...common];
  const oursGen = runJSON(process.execPath, [path.join(__dirname, 'generate_speed.js'), '--spec', 'new:smollm2-135m', ...gen]);
  const torchGen = flag('no-torch') ? null : runJSON('/usr/bin/python3', [path.join(ROOT, 'bench/torch_llama_baseline.py'), '--mode', 'generate', ...gen], env);
  for (const [impl, r] of [['gptune', oursGen], ['pytorch', torchGen]] as const) {
    if (!r) continue;
    if ('error' in r) console.log(`  SmolLM2-135M generate B=1    ${impl.padEnd(8)} ${r.error}`);
    else console.log(`  SmolLM2-135M generate B=1    ${impl.padEnd(8)} ${(r.decode_tokens_per_s as number).toFixed(1).padStart(8)} tokens/s, prefill of 16 tokens ${(r.prefill_ms as number).toFixed(0)} ms`);
  }
  out.smollm2_generate = { gptune: oursGen, pytorch: torchGen };
  const qwen = runJSON(process.execPath, [path.join(__dirname, 'train_step.js'), '--spec', 'new:qwen2.5-0.5b', '--batch', '1', '--seq', '512', '--steps', '1', '--warmup', '0', ...common]);
  if ('error' in qwen) console.log(`  Qwen2.5-0.5B step B=1 T=512 gptune   ${qwen.error}`);
  else console.log(`  Qwen2.5-0.5B step B=1 T=512 gptune   ${qwen.tokens_per_s.toFixed(1).padStart(8)} tokens/s ${qwen.ms_per_step.toFixed(0).padStart(7)} ms ${qwen.peak_rss_mb.toFixed(0).padStart(6)} MB peak RSS`);
  out.qwen25_05b_memory = qwen;
  out.smollm2_checkpointing = benchCheckpointing(threads, steps);
  return out;
}

main().catch((e) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
