/**
 * LoRA and QLoRA on CPU (issue 12's measured evidence): one training step (forward, backward, clip,
 * AdamW) at B=1, T=512 on random tokens, full fine-tuning against a LoRA adapter (r=16, alpha=32, no
 * dropout) on a frozen base stored as f32, bf16, int8 or nf4, for GPT-2 124M and the Qwen2.5-0.5B
 * shape (random weights), each configuration in its own process (bench/train_step.ts) so that each
 * peak RSS is its own, and PyTorch in the same run where it has a counterpart
 * (bench/torch_lora_baseline.py: float32 and bfloat16 bases, full fine-tuning of a float32 one; it
 * has no int8 or nf4). Then issue 12's targets: LoRA on an nf4 base of the 0.5B shape under 2 GiB
 * peak RSS, and the Qwen2.5-1.5B shape training with LoRA at all (nf4 and bf16 bases, gradient
 * checkpointing). Prints a table, the ratios (gptune/PyTorch, LoRA/full) and one JSON line.
 *   node dist/bench/lora.js [--threads 2] [--steps 2] [--warmup 1] [--no-torch] [--only gpt2|qwen0.5b|qwen1.5b]
 * `npm run bench` runs it too (bench/run.ts). The 0.5B rows time one step after one warm-up; the 1.5B
 * rows one step with no warm-up (that step also allocates the activations and the adapter's gradients
 * and moments, which are small next to it).
 */
import * as path from 'path';
import { ROOT, runJSON, StepResult } from './child';

type Result = StepResult | { error: string };
type Mode = 'full' | 'all-linear' | 'default';
type Base = 'f32' | 'bf16' | 'int8' | 'nf4';

interface Shape {
  /** Short name (--only), the "new:" spec gptune builds, the baseline's --shape. */
  key: string;
  title: string;
  spec: string;
  torchShape: string;
  /** The configurations measured, in order (a full fine-tuning row first: the LoRA rows are compared to it). */
  rows: Array<{ mode: Mode; base: Base; checkpointing?: boolean }>;
  /** Timed steps and untimed warm-up steps when not those of the command line (the larger shapes). */
  steps?: number;
  warmup?: number;
}

const R = 16, ALPHA = 32, B = 1, T = 512;
/** PyTorch's names for the base formats it has (bench/torch_lora_baseline.py DTYPES). */
const TORCH_DTYPE: Partial<Record<Base, string>> = { f32: 'float32', bf16: 'bfloat16' };
/** Issue 12: LoRA on an nf4 base of the 0.5B shape stays under this peak RSS. */
const NF4_05B_TARGET_MB = 2048;

const EVERY_BASE: Shape['rows'] = [
  { mode: 'full', base: 'f32' },
  { mode: 'all-linear', base: 'f32' }, { mode: 'all-linear', base: 'bf16' }, { mode: 'all-linear', base: 'int8' }, { mode: 'all-linear', base: 'nf4' },
  { mode: 'default', base: 'f32' }, { mode: 'default', base: 'nf4' },
];

const SHAPES: Shape[] = [
  { key: 'gpt2', title: 'GPT-2 124M', spec: 'new:gpt2', torchShape: 'gpt2-124m', rows: EVERY_BASE },
  {
    // The 2 GiB target is checked with and without gradient checkpointing.
    key: 'qwen0.5b', title: 'Qwen2.5-0.5B shape', spec: 'new:qwen2.5-0.5b', torchShape: 'qwen2.5-0.5b', steps: 1,
    rows: [EVERY_BASE[0], { mode: 'all-linear', base: 'nf4', checkpointing: true }, ...EVERY_BASE.slice(1)],
  },
  {
    key: 'qwen1.5b', title: 'Qwen2.5-1.5B shape', spec: 'new:qwen2.5-1.5b', torchShape: 'qwen2.5-1.5b', steps: 1, warmup: 0,
    rows: [{ mode: 'all-linear', base: 'nf4', checkpointing: true }, { mode: 'all-linear', base: 'bf16', checkpointing: true }],
  },
];

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

interface Row {
  shape: string;
  mode: Mode;
  base: Base;
  gradient_checkpointing: boolean;
  gptune: Result;
  pytorch: Result | null;
  /** gptune / PyTorch, when both ran. */
  speed_ratio?: number;
  memory_ratio?: number;
  /** gptune's LoRA row / gptune's full fine-tuning of the same shape, when both ran. */
  lora_over_full_speed?: number;
  lora_over_full_memory?: number;
}

const ok = (r: Result | null): r is StepResult => r !== null && !('error' in r);

function modeLabel(mode: Mode, targets: string): string {
  return mode === 'full' ? 'full fine-tuning' : `LoRA r=${R} ${mode === 'default' ? `default (${targets})` : 'all-linear'}`;
}

/** Runs one configuration with gptune and, where it has one, its PyTorch counterpart. */
function measure(shape: Shape, row: Shape['rows'][number], threads: number, steps: number, warmup: number, torch: boolean): Row {
  const timing = ['--steps', String(shape.steps ?? steps), '--warmup', String(shape.warmup ?? warmup)];
  const common = ['--batch', String(B), '--seq', String(T), '--threads', String(threads), ...timing];
  const checkpointing = row.checkpointing ?? false;
  const lora = row.mode === 'full' ? [] : ['--lora-r', String(R), '--lora-alpha', String(ALPHA), '--lora-targets', row.mode];
  const gptune = runJSON(process.execPath, [path.join(__dirname, 'train_step.js'), '--spec', shape.spec, '--base-dtype', row.base, ...lora,
    ...(checkpointing ? ['--gradient-checkpointing'] : []), ...common]);
  let pytorch: Result | null = null;
  const dtype = TORCH_DTYPE[row.base];
  // The baseline has no gradient checkpointing: its 1.5B rows would measure another memory layout.
  if (torch && dtype && !checkpointing) {
    const targets = row.mode === 'full' ? ['--full'] : ['--r', String(R), '--alpha', String(ALPHA), '--targets', row.mode === 'default' ? defaultTargets(shape) : 'all-linear'];
    pytorch = runJSON('/usr/bin/python3', [path.join(ROOT, 'bench/torch_lora_baseline.py'), '--shape', shape.torchShape, '--base-dtype', dtype, ...targets, ...common],
      { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' });
  }
  const out: Row = { shape: shape.title, mode: row.mode, base: row.base, gradient_checkpointing: checkpointing, gptune, pytorch };
  if (ok(gptune) && ok(pytorch)) {
    out.speed_ratio = gptune.tokens_per_s / pytorch.tokens_per_s;
    out.memory_ratio = gptune.peak_rss_mb / pytorch.peak_rss_mb;
  }
  return out;
}

/** PEFT's default targets of each family (lib/lora/modules.ts defaultTargets), as the baseline takes them. */
function defaultTargets(shape: Shape): string {
  return shape.torchShape.startsWith('gpt2') ? 'c_attn' : 'q_proj,v_proj';
}

function printRow(shape: Shape, r: Row): void {
  const name = `${shape.title}${r.gradient_checkpointing ? ' (ckpt)' : ''}`;
  const label = modeLabel(r.mode, defaultTargets(shape));
  for (const [impl, res] of [['gptune', r.gptune], ['pytorch', r.pytorch]] as const) {
    if (res === null) continue;
    const head = `  ${name.padEnd(28)} ${label.padEnd(36)} ${r.base.padEnd(5)} ${impl.padEnd(8)}`;
    if (!ok(res)) {
      console.log(`${head} ${res.error}`);
      continue;
    }
    const trainable = (res.trainable_params as number) / 1e6;
    console.log(`${head} ${res.tokens_per_s.toFixed(1).padStart(8)} ${(res.ms_per_step / 1000).toFixed(2).padStart(8)} ${res.peak_rss_mb.toFixed(0).padStart(8)} ${trainable.toFixed(2).padStart(10)}`);
  }
  const ratios: string[] = [];
  if (r.speed_ratio !== undefined) ratios.push(`gptune/pytorch speed ${r.speed_ratio.toFixed(2)}x, peak RSS ${r.memory_ratio!.toFixed(2)}x`);
  if (r.lora_over_full_speed !== undefined) ratios.push(`LoRA/full speed ${r.lora_over_full_speed.toFixed(2)}x, peak RSS ${r.lora_over_full_memory!.toFixed(2)}x`);
  if (ratios.length > 0) console.log(`  ${''.padEnd(28)} ${''.padEnd(36)} ${''.padEnd(5)} ratio    ${ratios.join('; ')}`);
}

export interface LoraBenchResult {
  rows: Row[];
  targets: Record<string, unknown>;
}

export function benchLora(threads: number, steps: number, warmup = 1, options: { torch?: boolean; only?: string | null } = {}): LoraBenchResult {
  const torch = options.torch ?? true;
  const rows: Row[] = [];
  console.log(`\nLoRA / QLoRA training step (fwd + bwd + clip + AdamW), B=${B}, T=${T}, CPU (${threads} threads), alpha ${ALPHA}, no dropout`);
  console.log(`  ${'shape'.padEnd(28)} ${'trains'.padEnd(36)} ${'base'.padEnd(5)} ${'impl'.padEnd(8)} ${'tokens/s'.padStart(8)} ${'s/step'.padStart(8)} ${'peak MB'.padStart(8)} ${'trained M'.padStart(10)}`);
  for (const shape of SHAPES) {
    if (options.only && options.only !== shape.key) continue;
    let full: StepResult | null = null;
    for (const spec of shape.rows) {
      const r = measure(shape, spec, threads, steps, warmup, torch);
      if (spec.mode === 'full' && ok(r.gptune)) full = r.gptune;
      if (spec.mode !== 'full' && full && ok(r.gptune)) {
        r.lora_over_full_speed = r.gptune.tokens_per_s / full.tokens_per_s;
        r.lora_over_full_memory = r.gptune.peak_rss_mb / full.peak_rss_mb;
      }
      printRow(shape, r);
      rows.push(r);
    }
  }
  const targets: Record<string, unknown> = {};
  const nf4 = rows.filter((r) => r.shape === 'Qwen2.5-0.5B shape' && r.base === 'nf4' && r.mode !== 'full');
  if (nf4.length > 0) {
    targets.qwen05b_nf4_lora_under_2GiB = nf4.map((r) => ({
      mode: r.mode + (r.gradient_checkpointing ? ', gradient checkpointing' : ''), peak_rss_mb: ok(r.gptune) ? r.gptune.peak_rss_mb : null, met: ok(r.gptune) && r.gptune.peak_rss_mb < NF4_05B_TARGET_MB,
    }));
    for (const t of targets.qwen05b_nf4_lora_under_2GiB as Array<{ mode: string; peak_rss_mb: number | null; met: boolean }>) {
      console.log(`  target: Qwen2.5-0.5B, LoRA (${t.mode}) on nf4 under ${NF4_05B_TARGET_MB} MB peak RSS: ${t.met ? 'met' : 'MISSED'} (${t.peak_rss_mb?.toFixed(0) ?? 'no result'} MB)`);
    }
  }
  const big = rows.filter((r) => r.shape === 'Qwen2.5-1.5B shape');
  if (big.length > 0) {
    targets.qwen15b_lora_trains = big.map((r) => ({
      base: r.base, trains: ok(r.gptune) && Number.isFinite(r.gptune.loss as number),
      peak_rss_mb: ok(r.gptune) ? r.gptune.peak_rss_mb : null, s_per_step: ok(r.gptune) ? r.gptune.ms_per_step / 1000 : null,
    }));
    for (const t of targets.qwen15b_lora_trains as Array<{ base: string; trains: boolean; peak_rss_mb: number | null; s_per_step: number | null }>) {
      console.log(`  target: Qwen2.5-1.5B shape trains with LoRA on a ${t.base} base: ${t.trains ? `yes, ${t.s_per_step!.toFixed(1)} s/step, ${t.peak_rss_mb!.toFixed(0)} MB peak RSS` : 'NO'}`);
    }
  }
  return { rows, targets };
}

if (require.main === module) {
  const only = option('only', '');
  if (only && !SHAPES.some((s) => s.key === only)) {
    console.error(`bench/lora: --only expects one of ${SHAPES.map((s) => s.key).join(', ')} but received ${only}`);
    process.exitCode = 1;
  } else {
    const result = benchLora(Number(option('threads', '2')), Number(option('steps', '2')), Number(option('warmup', '1')),
      { torch: !process.argv.includes('--no-torch'), only: only || null });
    console.log(JSON.stringify({ date: new Date().toISOString(), ...result }));
  }
}
