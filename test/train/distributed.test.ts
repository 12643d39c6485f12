/**
 * Data-parallel training under Open MPI (`mpirun --oversubscribe -np N gptune train ...` on loopback): the
 * collectives against plain sums; N ranks give the per-step losses of one process with the same global
 * batch (GPT-2 and the Llama family), saved models that evaluate the same; ZeRO-1 = ZeRO-0; checkpoints
 * of sharded runs resume with another number of ranks; DPO and ORPO (full and LoRA, precompute_ref, ZeRO-1)
 * give one process's losses and reward metrics; the evaluation split over the ranks gives one process's
 * validation results; a rank killed or hung ends the job non-zero within the collective timeout, naming
 * the rank, the last complete checkpoint still loadable; bad input. The overlapped all-reduce
 * (--overlap-comm on): reduceAsync's sums are allreduceSum's, bitwise; the losses equal one process's and the
 * unoverlapped run's, the weights stay identical on every rank (GPT-2, Llama, LoRA, 2 micro-batches per rank);
 * a rank killed, stopped or late during it ends the job within the timeout, naming it.
 *
 * Needs mpirun and an addon built with MPI (CMake found libopenmpi-dev); skipped with the reason otherwise
 * (.ci/run installs both).
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { addon } from '../../lib/native';
import { readSafetensors, toFloat32 } from '../../lib/io/safetensors';
import {
  expectLinesClose, expectLossesClose, expectPreferenceRunClose, FIXTURES, logLines, logLosses, preferenceFlags, tempDir, TINY, writeValidationText,
} from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const DATA = path.join(FIXTURES, 'eval-text.txt');

const mpirunPath = spawnSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' }).stdout.trim();
const skipReason = mpirunPath === '' ? 'mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)'
  : !addon.mpi.available() ? addon.mpi.unavailableReason() : null;
if (skipReason !== null) process.stderr.write(`distributed.test.ts skipped: ${skipReason}\n`);
const describeMpi = skipReason === null ? describe : describe.skip;

// Shared memory between the ranks of this one machine, no network probing, no ssh (quick start-up).
const MPI_ENV = { ...process.env, OMPI_MCA_btl: 'self,vader', OMPI_MCA_plm: 'isolated', OMPI_MCA_btl_vader_single_copy_mechanism: 'none', OMPI_MCA_rmaps_base_oversubscribe: '1' };
const MPIRUN = ['--allow-run-as-root', '--oversubscribe'];

interface Run { code: number; stdout: string; stderr: string; seconds: number }

function gptune(args: string[]): Run {
  const started = Date.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

/** `node args...` as one process (no launcher). */
function gptuneNode(args: string[]): Run {
  const started = Date.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

function mpirun(np: number, program: string[], timeoutMs = 120_000): Run {
  const started = Date.now();
  const r = spawnSync(mpirunPath, [...MPIRUN, '-np', String(np), ...program], { cwd: ROOT, encoding: 'utf8', env: MPI_ENV, timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

function evalLoss(model: string): number {
  const r = gptune(['eval', '--model', model, '--data', DATA, '--seq-len', '16', '--json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.trim().split('\n').pop()!).loss;
}

/** A 5-step run: B 2, T 16, 8 sequences per step, weight decay and clipping on, one thread per rank; `flags` change or add flags. */
function trainArgs(model: string, out: string, flags: Record<string, string> = {}): string[] {
  const all: Record<string, string> = {
    model, data: DATA, out, log: `${out}.jsonl`, steps: '5', 'batch-size': '2', 'seq-len': '16', 'global-batch-size': '8', lr: '2e-3',
    'weight-decay': '0.1', 'grad-clip': '0.5', threads: '1', ...flags,
  };
  // A flag given '' is a switch (--lora).
  return [CLI, 'train', ...Object.entries(all).flatMap(([k, v]) => (v === '' ? [`--${k}`] : [`--${k}`, v])), '--quiet'];
}

describeMpi('data-parallel training under mpirun', () => {
  test('the collectives give the plain sums, the shards and the broadcast, on every rank', () => {
    const dir = tempDir('gptune-mpi-');
    const script = path.join(dir, 'collectives.js');
    // Rank r holds x[i] = (r + 1) * (i + 1) + i / 8 (exact in float32): the sum over N ranks is (i + 1) N (N + 1) / 2 + N i / 8.
    fs.writeFileSync(script, `
      const { addon } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/native.js'))});
      const mpi = addon.mpi;
      const { rank, size } = mpi.init();
      const x = Float32Array.from({ length: 1001 }, (_, i) => (rank + 1) * (i + 1) + i / 8);
      mpi.allreduceSum(x);
      const d = Float64Array.from([rank + 0.1, 1e17, rank]);
      mpi.allreduceSum(d);
      const full = Float32Array.from({ length: 10 }, (_, i) => 100 * rank + i);
      const part = mpi.shard(10);
      const shard = new Float32Array(part.numel);
      mpi.reduceScatterSum(full, shard);
      const gathered = new Float32Array(10).fill(-1);
      gathered.set(shard, part.offset);
      mpi.allGather(gathered);
      const b = new Uint8Array([rank, rank]);
      mpi.broadcast(b, size - 1);
      mpi.barrier();
      // A file per rank: mpirun interleaves the ranks' stdout in chunks.
      require('fs').writeFileSync(require('path').join(${JSON.stringify(dir)}, 'rank-' + rank + '.json'), JSON.stringify({ rank, size, x: Array.from(x), d: Array.from(d), part, shard: Array.from(shard), gathered: Array.from(gathered), b: Array.from(b) }));
      mpi.finalize();
    `);
    const N = 3;
    const r = mpirun(N, [process.execPath, script]);
    expect(r.code).toBe(0);
    const ranks = [0, 1, 2].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `rank-${k}.json`), 'utf8')));
    expect(ranks.map((x) => x.rank)).toEqual([0, 1, 2]);
    const sumRanks = (f: (r: number) => number) => [0, 1, 2].reduce((s, k) => s + f(k), 0);
    let covered = 0;
    for (const got of ranks) {
      expect(got.size).toBe(N);
      expect(got.x).toEqual(Array.from({ length: 1001 }, (_, i) => ((i + 1) * N * (N + 1)) / 2 + (N * i) / 8));
      expect(got.d).toEqual([sumRanks((k) => k + 0.1), 3e17, 3]);
      expect(got.part.offset).toBe(covered);
      covered += got.part.numel;
      expect(got.shard).toEqual(Array.from({ length: got.part.numel }, (_, j) => sumRanks((k) => 100 * k + got.part.offset + j)));
      expect(got.gathered).toEqual(Array.from({ length: 10 }, (_, i) => sumRanks((k) => 100 * k + i)));
      expect(got.b).toEqual([N - 1, N - 1]);
    }
    expect(covered).toBe(10);
  });

  test('without mpi.init() a collective throws one line, and MPI never crashes the process', () => {
    expect(() => addon.mpi.allreduceSum(new Float32Array(2))).toThrow(/^mpi\.allreduceSum: MPI is not initialized; call mpi\.init\(\) first/);
    expect(() => addon.mpi.shard(10)).toThrow(/not initialized/);
    expect(() => addon.mpi.setTimeout(-1)).toThrow(/seconds must be > 0/);
  });

  test.each([
    ['GPT-2', () => TINY],
    ['Llama', () => tinyLlamaFolder()],
  ])('%s: 2 ranks give the losses of 1 process with the same global batch, and the same saved model', (_name, modelOf) => {
    const model = modelOf();
    const dir = tempDir('gptune-mpi-');
    const single = path.join(dir, 'single'), ranks = path.join(dir, 'ranks');
    const one = gptune(trainArgs(model, single).slice(1));
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const two = mpirun(2, [process.execPath, ...trainArgs(model, ranks)]);
    expect(two.code).toBe(0);
    // Rank 0 alone reports and writes: one summary line, one log.
    expect(two.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(two.stdout)).toMatchObject({ saved: ranks, steps: 5, reason: 'completed' });
    const expected = logLosses(`${single}.jsonl`);
    expect(expected).toHaveLength(5);
    // Up to float32 rounding of the gradient sums (4 micro-batches summed in another order).
    expectLossesClose(logLosses(`${ranks}.jsonl`), expected, 1e-5);
    // The model learned: the last loss is below the first.
    expect(expected[4]).toBeLessThan(expected[0]);
    expect(Math.abs(evalLoss(ranks) - evalLoss(single))).toBeLessThan(1e-5);
  }, 120_000);

  test('ZeRO-1 gives the losses of ZeRO-0; its gathered checkpoint resumes on 1 process as the 2-rank run continues', () => {
    const dir = tempDir('gptune-mpi-');
    const zero0 = path.join(dir, 'zero0'), zero1 = path.join(dir, 'zero1');
    const a = mpirun(2, [process.execPath, ...trainArgs(TINY, zero0, { 'save-every': '3' })]);
    expect(a.code).toBe(0);
    const b = mpirun(2, [process.execPath, ...trainArgs(TINY, zero1, { zero: '1', 'save-every': '3' })]);
    expect(b.code).toBe(0);
    const reference = logLosses(`${zero0}.jsonl`);
    expectLossesClose(logLosses(`${zero1}.jsonl`), reference, 1e-5);
    // The checkpoint holds the whole optimizer state (the shards gathered) and the world it was written by.
    const step3 = path.join(zero1, 'checkpoints', 'step-3');
    const state = JSON.parse(fs.readFileSync(path.join(step3, 'trainer_state.json'), 'utf8'));
    expect([state.world_size, state.global_batch]).toEqual([2, 8]);
    const gathered = readSafetensors(path.join(step3, 'optimizer.safetensors'));
    const plain = readSafetensors(path.join(zero0, 'checkpoints', 'step-3', 'optimizer.safetensors'));
    expect([...gathered.tensors.keys()].sort()).toEqual([...plain.tensors.keys()].sort());
    for (const [name, t] of plain.tensors) {
      const x = toFloat32(t), y = toFloat32(gathered.tensors.get(name)!);
      const scale = Math.max(...x.map(Math.abs));
      expect(Math.max(...x.map((v, i) => Math.abs(v - y[i])))).toBeLessThanOrEqual(1e-3 * scale + 1e-12);
    }
    // Resumed on one process with the same global batch (4 micro-batches), steps 4 and 5 continue the run.
    const resumed = path.join(dir, 'resumed');
    const r = gptune(['train', '--resume', step3, '--zero', '0', '--out', resumed, '--log', `${resumed}.jsonl`, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectLossesClose(logLosses(`${resumed}.jsonl`), reference.slice(3), 1e-5);
    // Another global batch would change what a step means: refused, naming the key to set.
    const other = gptune(['train', '--resume', step3, '--zero', '0', '--out', path.join(dir, 'other'), '--global-batch-size', '4', '--quiet']);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/^gptune train: --resume .*step-3: its run took 8 sequences per step \(2 rank\(s\) or device\(s\)\); this one would take 4 .*set --global-batch-size 8 to continue it\n$/);
  }, 180_000);

  test('the evaluation split: the ranks\' shares of a list cover it once, in order; float64 sums are the same on every rank', () => {
    const dir = tempDir('gptune-mpi-');
    const script = path.join(dir, 'split.js');
    fs.writeFileSync(script, `
      const { DataParallel, finishJob } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/train/distributed.js'))});
      const dp = DataParallel.start({ zero: 0, collectiveTimeout: 30, devices: null, device: 'cpu', nameKey: (k) => k });
      const parts = [0, 1, 2, 3, 4, 5, 7].map((n) => dp.part(Array.from({ length: n }, (_, i) => i)));
      const x = Float64Array.from([0.1 * (dp.rank + 1), 1e17, dp.rank === 1 ? 1 : 0]);
      dp.sumInPlace(x);
      require('fs').writeFileSync(require('path').join(${JSON.stringify(dir)}, 'rank-' + dp.rank + '.json'), JSON.stringify({ parts, x: Array.from(x) }));
      finishJob();
    `);
    const r = mpirun(3, [process.execPath, script]);
    expect(r.code).toBe(0);
    const ranks = [0, 1, 2].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `rank-${k}.json`), 'utf8')));
    [0, 1, 2, 3, 4, 5, 7].forEach((n, j) => {
      // Concatenated in rank order, the shares are the list itself; no two shares differ by more than one item.
      expect(ranks.flatMap((k) => k.parts[j])).toEqual(Array.from({ length: n }, (_, i) => i));
      const sizes = ranks.map((k) => k.parts[j].length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    });
    for (const k of ranks) expect(k.x).toEqual(ranks[0].x);
    expect(Math.abs(ranks[0].x[0] - 0.6)).toBeLessThan(1e-15);
    expect(ranks[0].x.slice(1)).toEqual([3e17, 1]);
  });

  test.each([
    ['GPT-2', () => TINY],
    ['Llama', () => tinyLlamaFolder()],
  ])('%s: sft evaluation split over 2 ranks gives the val_loss, val_tokens and token accuracy of one process; early stopping stops both at the same step', (_name, modelOf) => {
    const model = modelOf();
    const dir = tempDir('gptune-mpi-');
    // 27 validation rows of 16 tokens in batches of 2: 14 batches, 7 per rank (27 rows: rank 1's last batch holds one).
    const validation = writeValidationText(dir);
    // Learning rate 0: the weights stay bitwise those of the starting model on every rank and in the single
    // process, so the evaluations differ only by the grouping of their sums (float64), and 1e-6 holds.
    // (A trained run's weights differ by float32 rounding of the gradient sums: the losses test above.)
    const flags = { validation, 'eval-every': '2', steps: '6', lr: '0', 'early-stopping-patience': '2' };
    const single = path.join(dir, 'single'), ranks = path.join(dir, 'ranks');
    const one = gptune(trainArgs(model, single, flags).slice(1));
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const two = mpirun(2, [process.execPath, ...trainArgs(model, ranks, flags)]);
    expect(two.stderr).toBe('');
    expect(two.code).toBe(0);
    // (Every rank evaluating every batch would pass this test too: the next one checks which batches each rank reads.)
    const evals = (out: string) => logLines(path.join(out, 'metrics.jsonl')).filter((l) => 'val_loss' in l);
    const expected = evals(single);
    // Evaluations at steps 2, 4, 6: the first improves, the next two do not (the same loss): early stopping after step 6.
    expect(expected.map((e) => [e.step, e.improved])).toEqual([[2, true], [4, false], [6, false]]);
    expect(JSON.parse(one.stdout)).toMatchObject({ reason: 'early_stopping' });
    expect(JSON.parse(two.stdout)).toMatchObject({ reason: 'early_stopping', steps: 6 });
    expect(JSON.parse(one.stdout).data.validation_rows).toBe(27);
    const got = evals(ranks);
    expectLinesClose(got, expected, ['val_loss', 'val_perplexity', 'val_token_accuracy'], 1e-6);
    // Each validation token counted once over the ranks (a rank evaluating everything would double them).
    expect(got.map((e) => [e.val_tokens, e.improved, e.best_step])).toEqual(expected.map((e) => [e.val_tokens, e.improved, e.best_step]));
  }, 120_000);

  test('each rank evaluates its share of the validation batches only (the Trainer with batches of its own)', () => {
    const dir = tempDir('gptune-mpi-');
    const validation = writeValidationText(dir);
    const script = path.join(dir, 'count.js');
    // Every validation batch counts the forward passes that read its inputs, per rank.
    fs.writeFileSync(script, `
      const fs = require('fs'), path = require('path');
      const lib = require(${JSON.stringify(path.join(ROOT, 'dist/lib/index.js'))});
      const { buildDatasets } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/data/index.js'))});
      const { launcherRank } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/train/distributed.js'))});
      const rank = launcherRank() ?? 0;
      const tokenizer = lib.loadTokenizer(${JSON.stringify(TINY)});
      const data = buildDatasets({ train: ${JSON.stringify(DATA)}, validation: ${JSON.stringify(validation)}, tokenizer, seqLen: 16, batchSize: 2,
        packing: false, trainOnPrompt: false, shuffle: false, seed: 1 });
      const reads = data.validation.map(() => 0);
      const batches = data.validation.map((b, i) => ({ ...b, get inputs() { reads[i]++; return b.inputs; } }));
      const trainer = new lib.Trainer({ model: ${JSON.stringify(TINY)}, output_dir: null, max_steps: 2, eval_every: 1, batch_size: 2, seq_len: 16,
        learning_rate: 0, threads: 1 }, { train: data.train, validation: batches });
      const losses = [];
      trainer.on('eval', (e) => losses.push(e.val_loss));
      trainer.fit().then((r) => {
        r.model.free();
        fs.writeFileSync(path.join(${JSON.stringify(dir)}, process.argv[2] + '-' + rank + '.json'), JSON.stringify({ reads, losses }));
        require(${JSON.stringify(path.join(ROOT, 'dist/lib/train/distributed.js'))}).finishJob();
      });
    `);
    const single = spawnSync(process.execPath, [script, 'single'], { cwd: ROOT, encoding: 'utf8' });
    expect(single.stderr).toBe('');
    const two = mpirun(2, [process.execPath, script, 'ranks']);
    expect(two.stderr).toBe('');
    expect(two.code).toBe(0);
    const read = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));
    const one = read('single-0'), r0 = read('ranks-0'), r1 = read('ranks-1');
    // 14 batches, 2 evaluations: one process reads each batch twice; rank 0 the first 7, rank 1 the last 7.
    expect(one.reads).toEqual(Array(14).fill(2));
    expect(r0.reads).toEqual([...Array(7).fill(2), ...Array(7).fill(0)]);
    expect(r1.reads).toEqual([...Array(7).fill(0), ...Array(7).fill(2)]);
    // Every rank got the same result, the single process's up to the grouping of the float64 sums.
    expect(r1.losses).toEqual(r0.losses);
    expect(r0.losses).toHaveLength(2);
    r0.losses.forEach((l: number, i: number) => expect(Math.abs(l - one.losses[i]) / one.losses[i]).toBeLessThan(1e-6));
  }, 60_000);

  test.each([
    // model, method, what is trained, extra flags: each reference kind (frozen copy, adapter off, precomputed), ZeRO-1
    // and dropout (masks drawn by the micro-batch's place in the global batch) appear with both models.
    ['GPT-2', 'dpo', 'full', { dropout: '0.1' }],
    ['GPT-2', 'dpo', 'LoRA', { 'precompute-ref': '' }],
    ['GPT-2', 'orpo', 'full', { zero: '1' }],
    ['GPT-2', 'orpo', 'LoRA', {}],
    ['Llama', 'dpo', 'full', { 'precompute-ref': '', zero: '1' }],
    ['Llama', 'dpo', 'LoRA', {}],
    ['Llama', 'orpo', 'full', { dropout: '0.1' }],
    ['Llama', 'orpo', 'LoRA', { zero: '1' }],
  ] as Array<[string, 'dpo' | 'orpo', 'full' | 'LoRA', Record<string, string>]>)('%s %s %s %p: 2 ranks give the per-step losses, reward metrics and evaluations of 1 process with the same global batch', (name, method, trained, extra) => {
    const model = name === 'GPT-2' ? TINY : tinyLlamaFolder();
    const dir = tempDir('gptune-mpi-');
    // 1 process: 4 micro-batches of 2 pairs a step; 2 ranks: 2 each; the 3 validation batches split 1 / 2 over the ranks.
    const flags = preferenceFlags(dir, method, trained, extra);
    const single = path.join(dir, 'single'), ranks = path.join(dir, 'ranks');
    const one = gptune(trainArgs(model, single, { ...flags, zero: '0' }).slice(1));
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const two = mpirun(2, [process.execPath, ...trainArgs(model, ranks, flags)]);
    expect(two.stderr).toBe('');
    expect(two.code).toBe(0);
    expect(JSON.parse(two.stdout)).toMatchObject({ saved: ranks, steps: 4, reason: 'completed' });
    expectPreferenceRunClose(single, ranks, method);
  }, 120_000);
  test('reduceAsync gives allreduceSum\'s sums of each region bitwise; every other collective refuses while regions are in flight', () => {
    const dir = tempDir('gptune-mpi-');
    const script = path.join(dir, 'overlap.js');
    // Rank r holds x[i] = sin(i + r) (not exact in float32: the order of the sums shows in the bits); regions of
    // awkward sizes (1: chunks of no element on two of the three ranks; odd) over one arena, queued out of
    // order as a backward hands them; allreduceSum of the same regions one by one is the reference.
    fs.writeFileSync(script, `
      const { addon } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/native.js'))});
      const mpi = addon.mpi;
      const init = mpi.init();
      const n = 10007;
      const values = Float32Array.from({ length: n }, (_, i) => Math.sin(i + init.rank));
      const a = new addon.Arena('cpu', n), b = new addon.Arena('cpu', n);
      a.write(0, values);
      b.write(0, values);
      const cuts = [[9000, 1007], [5, 1], [6, 8994], [0, 5]];
      for (const [offset, numel] of cuts) mpi.allreduceSum({ arena: a, offset, numel });
      for (const [offset, numel] of cuts) mpi.reduceAsync({ arena: b, offset, numel });
      let refused = '';
      try { mpi.barrier(); } catch (e) { refused = e.message; }
      let typed = '';
      try { mpi.reduceAsync(new Float32Array(4)); } catch (e) { typed = e.message; }
      const waited = mpi.reduceWait();
      mpi.barrier();
      const same = Buffer.from(a.read(0, n).buffer).equals(Buffer.from(b.read(0, n).buffer));
      require('fs').writeFileSync(require('path').join(${JSON.stringify(dir)}, 'rank-' + init.rank + '.json'),
        JSON.stringify({ init, same, refused, typed, waited, sums: Array.from(b.read(0, n)) }));
      mpi.finalize();
    `);
    const N = 3;
    const r = mpirun(N, [process.execPath, script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ranks = [0, 1, 2].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `rank-${k}.json`), 'utf8')));
    for (const got of ranks) {
      // Open MPI 4.1 grants MPI_THREAD_SERIALIZED (asked for); a build that grants less falls back (overlap false).
      expect(got.init).toMatchObject({ threadLevel: expect.stringMatching(/^(serialized|multiple)$/), overlap: true });
      expect(got.same).toBe(true);
      expect(got.refused).toBe('mpi.barrier: 4 region(s) of an overlapped all-reduce are in flight; call mpi.reduceWait() first (the communication thread alone calls MPI meanwhile)');
      expect(got.typed).toBe('mpi.reduceAsync: expected a CPU arena view {arena, offset, numel} for x (argument 1) but received a Float32Array of length 4');
      expect(got.waited.regions).toBe(4);
      // The sums in float64 of the ranks' float32 values, to float32 rounding.
      const worst = Math.max(...got.sums.map((v: number, i: number) => Math.abs(v - [0, 1, 2].reduce((s, k) => s + Math.fround(Math.sin(i + k)), 0))));
      expect(worst).toBeLessThan(1e-6);
      // Bitwise the same on every rank.
      expect(got.sums).toEqual(ranks[0].sums);
    }
  });

  /** Trains with the library's Trainer on every rank (or alone): the step losses, a checksum of the trained weights, the regions handed to reduceAsync. */
  function trainerScript(dir: string): string {
    const script = path.join(dir, 'trainer.js');
    fs.writeFileSync(script, `
      const crypto = require('crypto'), fs = require('fs'), path = require('path');
      const dist = ${JSON.stringify(path.join(ROOT, 'dist/lib'))};
      const { addon } = require(dist + '/native.js');
      const { Trainer } = require(dist + '/train/trainer.js');
      const { loadModel } = require(dist + '/model/checkpoint.js');
      const { loadTokenizer } = require(dist + '/tokenizer/index.js');
      const [modelDir, out, configJson] = process.argv.slice(2);
      let regions = 0;
      const reduceAsync = addon.mpi.reduceAsync;
      addon.mpi.reduceAsync = (view) => { regions++; return reduceAsync(view); };
      const model = loadModel(modelDir);
      const trainer = new Trainer(JSON.parse(configJson), { model, tokenizer: loadTokenizer(modelDir) });
      const losses = [];
      trainer.on('step', (s) => losses.push(s.loss));
      trainer.fit().then(() => {
        const t = model.trainable;
        const checksum = crypto.createHash('sha256').update(Buffer.from(t.arena.read(0, t.numel).buffer)).digest('hex');
        const rank = process.env.OMPI_COMM_WORLD_RANK ?? 'single';
        fs.writeFileSync(path.join(out, 'rank-' + rank + '.json'), JSON.stringify({ losses, checksum, regions }));
        if (rank !== 'single') addon.mpi.finalize();
      }, (e) => { console.error(e.message); process.exit(1); });
    `);
    return script;
  }

  test.each([
    ['GPT-2', () => TINY, false],
    ['Llama', () => tinyLlamaFolder(), false],
    ['GPT-2 LoRA', () => TINY, true],
    ['Llama LoRA', () => tinyLlamaFolder(), true],
  ])('%s, --overlap-comm on: the losses of 1 process and of the unoverlapped run; the weights identical on both ranks', (_name, modelOf, lora) => {
    const model = modelOf();
    const dir = tempDir('gptune-mpi-');
    const script = trainerScript(dir);
    // 8 sequences per step of B 2: 2 micro-batches per rank (only the last one's backward overlaps), 4 in one process.
    const config = (overlap: string) => JSON.stringify({
      data: DATA, max_steps: 5, batch_size: 2, seq_len: 16, global_batch_size: 8, learning_rate: 2e-3, weight_decay: 0.1, grad_clip: 0.5, threads: 1,
      overlap_comm: overlap, ...(lora ? { lora: true, lora_r: 4 } : {}),
    });
    const results: Record<string, { losses: number[]; checksum: string; regions: number }[]> = {};
    for (const mode of ['single', 'on', 'off']) {
      const out = path.join(dir, mode);
      fs.mkdirSync(out);
      const r = mode === 'single'
        ? gptuneNode([script, model, out, config('off')])
        : mpirun(2, [process.execPath, script, model, out, config(mode)]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      results[mode] = fs.readdirSync(out).sort().map((f) => JSON.parse(fs.readFileSync(path.join(out, f), 'utf8')));
    }
    const [single] = results.single;
    expect(single.losses).toHaveLength(5);
    expect(single.losses[4]).toBeLessThan(single.losses[0]);
    const layers = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')).n_layer ?? JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')).num_hidden_layers;
    for (const mode of ['on', 'off']) {
      const [rank0, rank1] = results[mode];
      // Up to float32 rounding of the gradient sums (4 micro-batches summed in another order).
      expectLossesClose(rank0.losses, single.losses, 1e-5);
      expect(rank1.losses).toEqual(rank0.losses);
      // The weights never drift apart: bitwise the same on both ranks.
      expect(rank1.checksum).toBe(rank0.checksum);
    }
    expectLossesClose(results.on[0].losses, results.off[0].losses, 1e-5);
    // Overlapped: at least one region per block each step; not overlapped: none.
    expect(results.on[0].regions).toBeGreaterThanOrEqual(5 * layers);
    expect(results.off[0].regions).toBe(0);
  }, 180_000);

  /** Rank `rank`'s process among mpirun's children (Open MPI sets OMPI_COMM_WORLD_RANK in each). */
  function rankPid(mpirunPid: number, rank: number): number | null {
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const ppid = Number(fs.readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
        if (ppid !== mpirunPid) continue;
        const env = fs.readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
        if (env.includes(`OMPI_COMM_WORLD_RANK=${rank}`)) return Number(entry);
      } catch {
        // the process ended while it was read
      }
    }
    return null;
  }

  async function faultRun(signal: NodeJS.Signals, timeout: number, flags: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; seconds: number; out: string; faultAt: number }> {
    const dir = tempDir('gptune-mpi-');
    const out = path.join(dir, 'out');
    const child: ChildProcess = spawn(mpirunPath, [...MPIRUN, '-np', '2', process.execPath, ...trainArgs(TINY, out, { steps: '100000', 'save-every': '2', 'save-total-limit': '2', 'collective-timeout': String(timeout), ...flags })], { cwd: ROOT, env: MPI_ENV });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let victim: number | null = null;
    try {
      // Wait for a few checkpoints, then hit rank 1.
      const deadline = Date.now() + 60_000;
      const saved = () => (fs.existsSync(path.join(out, 'checkpoints')) ? fs.readdirSync(path.join(out, 'checkpoints')).filter((n) => /^step-\d+$/.test(n)).map((n) => Number(n.slice(5))) : []);
      while (Date.now() < deadline && child.exitCode === null && !saved().some((step) => step >= 6)) await new Promise((r) => setTimeout(r, 100));
      expect(`exit code ${child.exitCode}: ${stderr}`).toBe('exit code null: ');
      victim = rankPid(child.pid!, 1);
      expect(victim).not.toBeNull();
      const faultAt = Date.now();
      process.kill(victim!, signal);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), (timeout + 30) * 1000)))]);
      clearTimeout(timer);
      return { code, stderr, seconds: (Date.now() - faultAt) / 1000, out, faultAt };
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      if (victim !== null) try { process.kill(victim, 'SIGKILL'); } catch { /* gone already */ }
    }
  }

  function expectLoadableCheckpoint(out: string): void {
    const steps = fs.readdirSync(path.join(out, 'checkpoints')).filter((n) => /^step-\d+$/.test(n));
    expect(steps.length).toBeGreaterThan(0);
    const newest = steps.sort((a, b) => Number(b.slice(5)) - Number(a.slice(5)))[0];
    expect(Number.isFinite(evalLoss(path.join(out, 'checkpoints', newest)))).toBe(true);
  }

  // Without and with the overlapped all-reduce (the communication thread runs the collectives then).
  const FAULT_MODES: [string, Record<string, string>][] = [['', {}], [', --overlap-comm on', { 'overlap-comm': 'on' }]];

  test.each(FAULT_MODES)('a rank killed mid-run ends the job non-zero at once; the last complete checkpoint loads%s', async (_mode, flags) => {
    const r = await faultRun('SIGKILL', 20, flags);
    expect(r.code).not.toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.seconds).toBeLessThan(20);
    // Open MPI names the rank that died.
    expect(r.stderr).toMatch(/rank 1 .*exited on signal 9|signal 9 \(Killed\)/s);
    expectLoadableCheckpoint(r.out);
  }, 120_000);

  test.each(FAULT_MODES)('a rank that hangs ends the job within --collective-timeout with a message%s', async (_mode, flags) => {
    const r = await faultRun('SIGSTOP', 3, flags);
    expect(`${r.code}: ${r.stderr}`).not.toMatch(/^null/);
    expect(r.code).not.toBe(0);
    expect(r.seconds).toBeLessThan(3 + 15);
    // SIGSTOP lands between collectives (rank 1 is named) or inside one (every rank reached it: the waiting rank
    // cannot tell which one stopped); the test below names it deterministically.
    expect(r.stderr).toMatch(/gptune: rank 0: [a-z-]+ #\d+ did not complete within 3 s \(collective timeout\): (rank\(s\) 1 never reached it|every rank reached it, so one stopped inside it) \(dead or hung\); ending the job/);
    expectLoadableCheckpoint(r.out);
  }, 120_000);

  test('a rank that does not reach a collective is named when the others time out', () => {
    const dir = tempDir('gptune-mpi-');
    const script = path.join(dir, 'late.js');
    // Rank 2 keeps computing for 20 s before its barrier; the others wait 2 s.
    fs.writeFileSync(script, `
      const { addon } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/native.js'))});
      const { rank } = addon.mpi.init();
      addon.mpi.setTimeout(2);
      addon.mpi.barrier();
      if (rank === 2) { const t = Date.now(); while (Date.now() - t < 20000); }
      addon.mpi.barrier();
      addon.mpi.finalize();
    `);
    const r = mpirun(3, [process.execPath, script], 60_000);
    expect(r.code).not.toBe(0);
    expect(r.seconds).toBeLessThan(15);
    expect(r.stderr).toMatch(/gptune: rank [01]: barrier #2 did not complete within 2 s \(collective timeout\): rank\(s\) 2 never reached it \(dead or hung\); ending the job/);
  }, 60_000);

  test('a rank that does not reach an overlapped region is named when the others time out', () => {
    const dir = tempDir('gptune-mpi-');
    const script = path.join(dir, 'late-region.js');
    // Rank 1 computes for 20 s before it hands its regions over; rank 0's communication thread waits 2 s on the
    // first one while rank 0 itself waits in reduceWait.
    fs.writeFileSync(script, `
      const { addon } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/native.js'))});
      const { rank } = addon.mpi.init();
      addon.mpi.setTimeout(2);
      addon.mpi.barrier();
      const arena = new addon.Arena('cpu', 1000);
      if (rank === 1) { const t = Date.now(); while (Date.now() - t < 20000); }
      addon.mpi.reduceAsync({ arena, offset: 500, numel: 500 });
      addon.mpi.reduceAsync({ arena, offset: 0, numel: 500 });
      addon.mpi.reduceWait();
      addon.mpi.finalize();
    `);
    const r = mpirun(2, [process.execPath, script], 60_000);
    expect(r.code).not.toBe(0);
    expect(r.seconds).toBeLessThan(15);
    expect(r.stderr).toMatch(/gptune: rank 0: all-reduce #2 did not complete within 2 s \(collective timeout\): rank\(s\) 1 never reached it \(dead or hung\); ending the job/);
  }, 60_000);

  test('bad input: one line each, non-zero exit', () => {
    const dir = tempDir('gptune-mpi-');
    const zero = gptune(trainArgs(TINY, path.join(dir, 'a'), { zero: '1' }).slice(1));
    expect(zero.code).toBe(2);
    expect(zero.stderr).toBe('gptune train: --zero 1 shards the optimizer over MPI ranks: launch the run with mpirun -np N (or srun), or give --zero 0\n');
    const split = mpirun(2, [process.execPath, ...trainArgs(TINY, path.join(dir, 'b'), { 'global-batch-size': '6' })]);
    expect(split.code).not.toBe(0);
    // Rank 0 reports it (every rank has the same command line).
    expect(split.stderr.split('\n').filter((l) => l.startsWith('gptune'))).toEqual(['gptune train: --global-batch-size 6 does not split over 2 rank(s) x --batch-size 2: give a multiple of 4']);
    expect(fs.existsSync(path.join(dir, 'b'))).toBe(false);
    // Overlap asked for where it is not done: one note on rank 0, and the run goes on unoverlapped.
    const zero1 = mpirun(2, [process.execPath, ...trainArgs(TINY, path.join(dir, 'd'), { zero: '1', 'overlap-comm': 'on', steps: '1' }).filter((a) => a !== '--quiet')]);
    expect(zero1.code).toBe(0);
    expect(zero1.stderr.split('\n').filter((l) => l.startsWith('note:'))).toEqual(['note: --overlap-comm on: --zero 1 reduce-scatters the whole gradient arena after the backward (not overlapped)']);
    const both = gptune(trainArgs(TINY, path.join(dir, 'c'), { 'grad-accum': '2' }).slice(1));
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^gptune train: .*give grad_accum_steps \(2\) or global_batch_size \(8\), not both\n$/);
  }, 60_000);
});
