/**
 * The one table at the end of scripts/gpu-run.sh: what the run checked and measured, read back from
 * the files it wrote under OUT (each step's own log stays there for the details).
 *   node dist/bench/gpu_summary.js OUT
 * Reads: gpu-test.log (node --test's totals and failures), hf-check.log (transformers' JSON line),
 * train-step.tsv and generate.tsv (a label, a tab, then bench/train_step.js's or
 * bench/generate_speed.js's JSON line, or nothing when the step failed or ran out of time),
 * torch-llama.json and torch.json (bench/gpu_torch.py's JSON lines), gpu.json (bench/gpu.js).
 * A missing or unreadable file shows as such in its row: the table never hides a step that did not run.
 * Training rows: gptune's tokens/s, median step ms, model TFLOP/s (6N + 12LTC a token) and the GiB of
 * its parameter, gradient and activation arenas; PyTorch's tokens/s and torch.cuda.max_memory_allocated
 * for the same model at B=16, T=1024, bf16 (GPT-2 124M/350M and SmolLM2-135M have one).
 */
import * as fs from 'fs';
import * as path from 'path';

type Json = Record<string, unknown>;

function readText(file: string): string | undefined {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

/** The last line of a file that parses as a JSON object, if any. */
function lastJson(text: string | undefined): Json | undefined {
  for (const line of (text ?? '').trim().split('\n').reverse()) {
    try {
      const value: unknown = JSON.parse(line);
      if (value && typeof value === 'object') return value as Json;
    } catch {
      // not a JSON line: keep looking
    }
  }
  return undefined;
}

/** (label, JSON or undefined) per line of a label<TAB>json file. */
function labelled(text: string | undefined): Array<[string, Json | undefined]> {
  return (text ?? '').split('\n').filter((l) => l.trim()).map((line) => {
    const tab = line.indexOf('\t');
    const label = tab < 0 ? line : line.slice(0, tab);
    return [label, tab < 0 ? undefined : lastJson(line.slice(tab + 1))];
  });
}

const fmt = (x: unknown, digits = 0): string => (typeof x === 'number' && Number.isFinite(x)
  ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-');

export function summarize(out: string): string[] {
  const rows: string[][] = [['check / measurement', 'gptune', 'PyTorch eager', 'gptune/PyTorch']];
  const testLog = readText(path.join(out, 'gpu-test.log'));
  if (testLog === undefined) {
    rows.push(['GPU tests (node --test dist/test/gpu/)', 'did not run', '', '']);
  } else {
    const total = (key: string) => Number(new RegExp(`^# ${key} (\\d+)$`, 'm').exec(testLog)?.[1] ?? NaN);
    const failed = testLog.split('\n').filter((l) => /^\s*not ok \d+ - /.test(l)).map((l) => l.replace(/^\s*not ok \d+ - /, ''));
    rows.push(['GPU tests (node --test dist/test/gpu/)',
      Number.isNaN(total('tests')) ? 'no totals (timed out?)' : `${total('pass')} pass, ${total('fail')} fail, ${total('skipped')} skipped`, '', '']);
    for (const name of failed.slice(0, 12)) rows.push([`  FAILED: ${name}`, '', '', '']);
    for (const m of testLog.matchAll(/^ok \d+ - (.*?) # SKIP (.*)$/gm)) rows.push([`  SKIPPED: ${m[1]}`, m[2].slice(0, 60), '', '']);
  }
  const hf = lastJson(readText(path.join(out, 'hf-check.log')));
  rows.push(['transformers loads gptune\'s saves (same logits)', hf ? (hf.ok ? 'ok' : 'DIFFERENT') : 'did not run', '', '']);
  for (const [name, m] of Object.entries((hf?.models ?? {}) as Record<string, Json>)) {
    const detail = typeof m.error === 'string' ? m.error.slice(0, 60) : `max |logit diff| ${Number(m.max_abs_logit_diff).toExponential(1)}, tied ${m.tied}`;
    rows.push([`  ${name}`, m.ok ? 'ok' : 'FAILED', detail, '']);
  }

  const torch: Json = {
    ...((lastJson(readText(path.join(out, 'torch.json')))?.results ?? {}) as Json),
    ...((lastJson(readText(path.join(out, 'torch-llama.json')))?.results ?? {}) as Json),
  };
  if (typeof torch.llama_sdpa_vs_eager_rel === 'number') {
    rows.push(['PyTorch Llama: sdpa vs eager loss (fp32)', '', `${torch.llama_sdpa_vs_eager_rel.toExponential(1)} rel`, '']);
  }
  // Which PyTorch result a gptune training row compares against: same model, bf16, B=16, T=1024.
  const torchKey = (r: Json): string | undefined => {
    if (r.precision !== 'bf16' || r.batch !== 16 || r.seq !== 1024) return undefined;
    if (String(r.spec).startsWith('new:smollm2-135m')) return '_llama';
    if (r.model_type !== 'gpt2') return undefined;
    return Number(r.params) > 200e6 ? '_350m' : '';
  };
  for (const [label, r] of labelled(readText(path.join(out, 'train-step.tsv')))) {
    if (!r) {
      rows.push([`train ${label}`, 'failed or timed out', '', '']);
      continue;
    }
    const key = torchKey(r);
    const theirs = key === undefined ? undefined : torch[`train_tokens_per_s${key}`];
    const ours = r.tokens_per_s as number;
    const arenas = Object.values((r.arena_mb ?? {}) as Record<string, number>).reduce((a, b) => a + b, 0) / 1024;
    rows.push([`train ${label}`, `${fmt(ours)} tok/s, ${fmt(r.ms_per_step, 1)} ms, ${fmt(Number(r.model_gflops_per_s) / 1000, 1)} TFLOP/s, arenas ${fmt(arenas, 1)} GiB`,
      typeof theirs === 'number' ? `${fmt(theirs)} tok/s, ${fmt(torch[`peak_memory_gib${key}`], 1)} GiB` : '',
      typeof theirs === 'number' ? `${(ours / theirs).toFixed(2)}x` : '']);
  }
  for (const [label, r] of labelled(readText(path.join(out, 'generate.tsv')))) {
    rows.push([`generate ${label}`, r ? `${fmt(r.decode_tokens_per_s)} tok/s, prefill ${fmt(r.prefill_ms, 1)} ms` : 'failed or timed out', '', '']);
  }
  const kernels = lastJson(readText(path.join(out, 'gpu.json')));
  rows.push(['kernel benchmark (gpu.log)', kernels ? `${(kernels.rows as unknown[] | undefined)?.length ?? 0} rows` : 'did not run', '', '']);

  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r, i) => {
    const line = r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
    return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
  });
}

if (require.main === module) {
  const out = process.argv[2];
  if (!out || !fs.existsSync(out)) {
    console.error(`gpu_summary: expected the run's output folder as the first argument, received ${out ?? 'nothing'}`);
    process.exit(2);
  }
  console.log(summarize(out).join('\n'));
}
