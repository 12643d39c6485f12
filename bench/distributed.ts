/**
 * Data-parallel training throughput: `gptune train` of GPT-2 124M (fresh weights, B=4, T=128, 8 sequences per
 * step) as 1 process with 2 threads (the baseline), and under `mpirun -np N` with 1 thread per rank for N = 1
 * and 2, all with the same global batch, so each step computes the same thing. Beside it, the time of the
 * gradient all-reduce (mpi.allreduceSum over a buffer of the model's trained elements, as one step makes it),
 * measured in its own mpirun run. The 2-rank run goes once per --overlap-comm setting (default both: off, then
 * on, in the same bench run), each with the all-reduce time its steps still waited for after the backward
 * (the step log's allreduce_ms: all of it without overlap, what the backward did not hide with it). Prints a
 * table and one JSON line.
 *   node dist/bench/distributed.js [--steps 4] [--spec new:gpt2] [--batch 4] [--seq 128] [--global-batch 8] [--reps 5] [--overlap-comm both|on|off]
 * Tokens/s per run are the mean over its steps after the first (warm-up). Needs mpirun and an addon built with MPI.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addon } from '../lib/native';
import { parseDecoderSpec } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';
import { Rng } from '../lib/util/rng';

const ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
// Shared memory between ranks on this machine; no network probing.
const MPI_ENV = { ...process.env, OMPI_MCA_btl: 'self,vader', OMPI_MCA_plm: 'isolated', OMPI_MCA_btl_vader_single_copy_mechanism: 'none' };
const MPIRUN = ['--allow-run-as-root', '--oversubscribe', '--bind-to', 'none'];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** Child mode under mpirun: times allreduceSum over `numel` floats, `reps` times after one warm-up; rank 0 prints the median ms. */
function allreduceChild(numel: number, reps: number): void {
  const { rank } = addon.mpi.init();
  const arena = new addon.Arena('cpu', numel);
  arena.fill(1);
  const view = { arena, offset: 0, numel };
  const times: number[] = [];
  for (let i = 0; i <= reps; i++) {
    addon.mpi.barrier();
    const started = process.hrtime.bigint();
    addon.mpi.allreduceSum(view);
    if (i > 0) times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  if (rank === 0) console.log(JSON.stringify({ allreduce_ms: times[Math.floor(times.length / 2)] }));
  arena.free();
  addon.mpi.finalize();
}

/** A text of seeded random words, long enough for every step of every run without repeating a window. */
function corpus(file: string, words: number): void {
  const vocabulary = 'the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we'.split(' ');
  const rng = new Rng(7);
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(vocabulary[rng.int(vocabulary.length)]);
  fs.writeFileSync(file, out.join(' '));
}

interface Run { name: string; ranks: number; threads: number; tokensPerS: number; stepMs: number; overlap: string | null; exposedAllreduceMs: number | null }

function train(name: string, ranks: number, threads: number, common: string[], dir: string, overlap: string | null = null): Run {
  const out = path.join(dir, name.replace(/\W+/g, '-'));
  const log = `${out}.jsonl`;
  const args = [CLI, 'train', ...common, '--out', out, '--log', log, '--threads', String(threads), '--quiet', ...(overlap ? ['--overlap-comm', overlap] : [])];
  const r = ranks === 0
    ? spawnSync(process.execPath, args, { encoding: 'utf8' })
    : spawnSync('mpirun', [...MPIRUN, '-np', String(ranks), process.execPath, ...args], { encoding: 'utf8', env: MPI_ENV });
  if (r.status !== 0) throw new Error(`${name}: exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const steps = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'tokens_per_s' in l).slice(1);
  if (steps.length === 0) throw new Error(`${name}: give --steps 2 or more (the first step is warm-up)`);
  const mean = (f: (s: { tokens_per_s: number; ms: number; allreduce_ms?: number }) => number) => steps.reduce((a, s) => a + f(s), 0) / steps.length;
  return {
    name, ranks: Math.max(ranks, 1), threads, tokensPerS: mean((s) => s.tokens_per_s), stepMs: mean((s) => s.ms), overlap,
    exposedAllreduceMs: ranks > 1 ? mean((s) => s.allreduce_ms ?? NaN) : null,
  };
}

function main(): void {
  if (process.argv.includes('--allreduce-child')) {
    allreduceChild(Number(arg('numel', '0')), Number(arg('reps', '5')));
    return;
  }
  if (!addon.mpi.available()) throw new Error(addon.mpi.unavailableReason());
  const spec = arg('spec', 'new:gpt2'), steps = arg('steps', '4'), batch = arg('batch', '4'), seq = arg('seq', '128'), global = arg('global-batch', '8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-bench-distributed-'));
  try {
    const data = path.join(dir, 'corpus.txt');
    corpus(data, 400_000);
    const common = ['--model', spec, '--data', data, '--steps', steps, '--batch-size', batch, '--seq-len', seq, '--global-batch-size', global, '--lr', '1e-4'];
    const overlapSetting = arg('overlap-comm', 'both');
    if (!['both', 'on', 'off'].includes(overlapSetting)) throw new Error(`--overlap-comm: expected both, on or off but received ${overlapSetting}`);
    const runs = [
      train('1 process, 2 threads', 0, 2, common, dir),
      train('mpirun -np 1, 1 thread', 1, 1, common, dir),
      ...(overlapSetting === 'both' ? ['off', 'on'] : [overlapSetting]).map((o) => train(`mpirun -np 2, 1 thread each, overlap ${o}`, 2, 1, common, dir, o)),
    ];
    // The gradient arena of this model: what each step all-reduces.
    const model = new Decoder(parseDecoderSpec(spec));
    const numel = model.trainable.numel;
    model.free();
    const reps = arg('reps', '5');
    const ar = spawnSync('mpirun', [...MPIRUN, '-np', '2', process.execPath, __filename, '--allreduce-child', '--numel', String(numel), '--reps', reps], { encoding: 'utf8', env: MPI_ENV });
    if (ar.status !== 0) throw new Error(`all-reduce timing: exit ${ar.status}: ${ar.stderr.trim()}`);
    const allreduceMs = JSON.parse(ar.stdout.trim().split('\n').pop()!).allreduce_ms as number;
    const base = runs[0].tokensPerS;
    console.log(`${spec}, B=${batch} T=${seq}, ${global} sequences per step, ${steps} steps (first one not counted); load: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log('run                                          tokens/s   ms/step   vs 1 process x 2 threads   all-reduce waited ms/step');
    for (const r of runs) {
      const waited = r.exposedAllreduceMs === null ? '' : r.exposedAllreduceMs.toFixed(1).padStart(10);
      console.log(`${r.name.padEnd(44)} ${r.tokensPerS.toFixed(1).padStart(8)} ${r.stepMs.toFixed(0).padStart(9)}   ${(r.tokensPerS / base).toFixed(3).padStart(6)}x                 ${waited}`);
    }
    const gradientMB = (numel * 4) / 2 ** 20;
    console.log(`all-reduce of the gradients (2 ranks, ${gradientMB.toFixed(1)} MiB, ${((2 * (2 - 1)) / 2 * gradientMB).toFixed(1)} MiB sent per rank): ${allreduceMs.toFixed(1)} ms per step = ${((100 * allreduceMs) / runs[2].stepMs).toFixed(1)}% of a 2-rank step (${runs[2].name})`);
    console.log(JSON.stringify({
      bench: 'distributed', spec, batch: Number(batch), seq: Number(seq), global_batch: Number(global), steps: Number(steps), loadavg: os.loadavg(),
      runs: runs.map((r) => ({
        name: r.name, ranks: r.ranks, threads: r.threads, overlap_comm: r.overlap, tokens_per_s: r.tokensPerS, ms_per_step: r.stepMs, vs_baseline: r.tokensPerS / base,
        allreduce_waited_ms: r.exposedAllreduceMs,
      })),
      gradient_elements: numel, allreduce_ms: allreduceMs, mpi: addon.mpi.library(),
    }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
