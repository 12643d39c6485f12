/**
 * Several model replicas in one process (`gptune train --devices 0,1`), checked without a GPU through the
 * test seam GPTUNE_TEST_CPU_REPLICAS=N: N CPU replicas whose gradients are summed on the host
 * (lib/train/distributed.ts HostReducer) instead of NCCL's grouped all-reduce. The seam is not a user
 * feature: it is refused with --devices, --device cuda or under an MPI launcher. What it covers is the
 * replica logic the GPU path shares: the global batch split over replicas like ranks, each replica's
 * backward scaled by the step's global token count, identical sums on every replica, every replica's own
 * AdamW update, replica 0 for saving, every replica restored on resume, DPO/ORPO steps with a reference per
 * replica (or the precomputed table shared), and the evaluation split over the replicas. The NCCL path
 * (native/cuda/nccl.cu all_reduce_sum_all) is not run here.
 *
 * References: a single process with the same global batch (GPT-2, the Llama family, and LoRA), and the
 * uninterrupted replica run for a resumed one.
 */
import { spawnSync } from 'child_process';
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

interface Run { code: number; stdout: string; stderr: string }

/** `gptune ARGS` with `env` added to this process's environment (no MPI launcher variables). */
function gptune(args: string[], env: Record<string, string> = {}): Run {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const base = { ...process.env };
  for (const name of ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_RANK', 'GPTUNE_TEST_CPU_REPLICAS']) delete base[name];
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...base, ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const REPLICAS = { GPTUNE_TEST_CPU_REPLICAS: '2' };

/** A 5-step run: B 2, T 16, 8 sequences per step (4 micro-batches: 2 per replica), weight decay and clipping on. */
function trainArgs(model: string, out: string, flags: Record<string, string> = {}, switches: string[] = []): string[] {
  const all: Record<string, string> = {
    model, data: DATA, out, log: `${out}.jsonl`, steps: '5', 'batch-size': '2', 'seq-len': '16', 'global-batch-size': '8', lr: '2e-3',
    'weight-decay': '0.1', 'grad-clip': '0.5', threads: '1', ...flags,
  };
  // A flag given '' is a switch (--lora), as in `switches`.
  return ['train', ...Object.entries(all).flatMap(([k, v]) => (v === '' ? [`--${k}`] : [`--${k}`, v])), ...switches, '--quiet'];
}

/** The same run (`flags`) in one process (DIR/single) and over 2 CPU replicas (DIR/replicas), both succeeding. */
function singleAndReplicas(model: string, dir: string, flags: Record<string, string>): { single: string; replicas: string; two: Run } {
  const single = path.join(dir, 'single'), replicas = path.join(dir, 'replicas');
  const one = gptune(trainArgs(model, single, flags));
  expect(one.stderr).toBe('');
  expect(one.code).toBe(0);
  const two = gptune(trainArgs(model, replicas, flags), REPLICAS);
  expect(two.stderr).toBe('');
  expect(two.code).toBe(0);
  return { single, replicas, two };
}

/** The validation loss of a saved model (`gptune eval`, a process of its own; an adapter folder with its base). */
function evalLoss(model: string, base?: string): number {
  const r = gptune(['eval', '--model', base ?? model, ...(base ? ['--adapter', model] : []), '--data', DATA, '--seq-len', '16', '--json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.trim().split('\n').pop()!).loss;
}

/** Every tensor of two safetensors files, bit for bit. */
function expectSameTensors(a: string, b: string): void {
  const x = readSafetensors(a), y = readSafetensors(b);
  expect([...y.tensors.keys()].sort()).toEqual([...x.tensors.keys()].sort());
  for (const [name, t] of x.tensors) expect(Buffer.from(toFloat32(y.tensors.get(name)!).buffer).equals(Buffer.from(toFloat32(t).buffer))).toBe(true);
}

describe('replicas in one process (CPU replicas through the test seam)', () => {
  test.each([
    ['GPT-2', () => TINY, [] as string[]],
    ['Llama', () => tinyLlamaFolder(), [] as string[]],
    ['Llama + LoRA', () => tinyLlamaFolder(), ['--lora']],
  ])('%s: 2 replicas give the losses of 1 process with the same global batch, the same saved model, and resume bit-exact', (_name, modelOf, switches) => {
    const model = modelOf();
    const dir = tempDir('gptune-replicas-');
    const single = path.join(dir, 'single'), replicas = path.join(dir, 'replicas');
    const one = gptune(trainArgs(model, single, {}, switches));
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const two = gptune(trainArgs(model, replicas, { 'save-every': '3' }, switches), REPLICAS);
    expect(two.stderr).toBe('');
    expect(two.code).toBe(0);
    expect(JSON.parse(two.stdout.trim().split('\n').pop()!)).toMatchObject({ steps: 5, reason: 'completed' });
    const expected = logLosses(`${single}.jsonl`);
    expect(expected).toHaveLength(5);
    // The model learned: the last loss is below the first (so equal losses are not two untrained runs).
    expect(expected[4]).toBeLessThan(expected[0]);
    // Up to float32 rounding of the gradient sums (two replicas' sums of 2 micro-batches added, instead of 4 in a row).
    const replicaLosses = logLosses(`${replicas}.jsonl`);
    expectLossesClose(replicaLosses, expected, 1e-5);
    const base = switches.includes('--lora') ? model : undefined;
    expect(Math.abs(evalLoss(replicas, base) - evalLoss(single, base))).toBeLessThan(1e-5);

    // The step-3 checkpoint (replica 0's weights and AdamW state, written once) resumes every replica: steps 4
    // and 5 are those of the uninterrupted replica run, bit for bit, and so is the saved model.
    const step3 = path.join(replicas, 'checkpoints', 'step-3');
    const state = JSON.parse(fs.readFileSync(path.join(step3, 'trainer_state.json'), 'utf8'));
    expect([state.world_size, state.global_batch]).toEqual([2, 8]);
    const resumed = path.join(dir, 'resumed');
    const r = gptune(['train', '--resume', step3, '--out', resumed, '--log', `${resumed}.jsonl`, '--quiet'], REPLICAS);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(logLosses(`${resumed}.jsonl`)).toEqual(replicaLosses.slice(3));
    const weights = switches.includes('--lora') ? 'adapter_model.safetensors' : 'model.safetensors';
    expectSameTensors(path.join(replicas, weights), path.join(resumed, weights));
  }, 240_000);

  test('bad input: one line each, exit status 2, nothing written', () => {
    const dir = tempDir('gptune-replicas-');
    const out = (name: string) => path.join(dir, name);
    const line = (r: Run) => {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      return r.stderr;
    };
    // The list itself: indices, each once.
    expect(line(gptune(trainArgs(TINY, out('a'), { devices: '0,0' })))).toBe(
      'gptune train: --devices 0,0: device 0 is listed twice (each GPU holds one copy of the model)\n');
    expect(line(gptune(trainArgs(TINY, out('b'), { devices: '0,gpu1' })))).toBe(
      'gptune train: --devices 0,gpu1: expected CUDA device indices separated by commas (e.g. 0,1) but found "gpu1"\n');
    // devices implies cuda: a cpu the user asked for contradicts it.
    expect(line(gptune(trainArgs(TINY, out('c'), { devices: '0,1', device: 'cpu' })))).toBe(
      'gptune train: --devices 0,1 lists CUDA devices, but --device is cpu; leave it unset or give cuda\n');
    // Under an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE in every rank) each rank drives one GPU.
    expect(line(gptune(trainArgs(TINY, out('d'), { devices: '0,1' }), { OMPI_COMM_WORLD_SIZE: '2' }))).toBe(
      'gptune train: --devices 0,1 drives several GPUs from one process, but an MPI launcher started this one (OMPI_COMM_WORLD_SIZE=2): under mpirun/srun give each rank one GPU instead (drop --devices)\n');
    expect(line(gptune(trainArgs(TINY, out('e'), { devices: '0,1', zero: '1' })))).toBe(
      'gptune train: --devices 0,1: --zero 1 shards the optimizer over MPI ranks and is not supported over the GPUs of one process; give --zero 0 (or one rank per GPU under mpirun)\n');
    // What the addon and the machine lack, in the order they are checked.
    const devices = gptune(trainArgs(TINY, out('f'), { devices: '0,1' }));
    const count = addon.cuda.compiled ? addon.cuda.deviceCount!() : 0;
    if (!addon.cuda.compiled) {
      expect(line(devices)).toBe('gptune train: --devices 0,1: this gptune addon was built without CUDA (nvcc was not found when it was built), so it has no GPUs to train on; rebuild it with nvcc on PATH (GPTUNE_CUDA=ON)\n');
    } else if (count < 2) {
      expect(line(devices)).toMatch(/^gptune train: --devices 0,1: there is no GPU \d; this machine has .*\n$/);
    } else if (!addon.nccl.available()) {
      expect(line(devices)).toMatch(/^gptune train: --devices 0,1: the GPUs sum their gradients with NCCL, but NCCL is not available .*libnccl\.so\.2.*GPTUNE_NCCL.*\n$/);
    }
    if (addon.cuda.compiled) {
      expect(line(gptune(trainArgs(TINY, out('g'), { devices: `${count},${count + 1}` })))).toMatch(new RegExp(`^gptune train: --devices ${count},${count + 1}: there is no GPU ${count}; this machine has `));
    }
    // The global batch splits over replicas as over ranks.
    expect(line(gptune(trainArgs(TINY, out('h'), { 'global-batch-size': '6' }), REPLICAS))).toBe(
      'gptune train: --global-batch-size 6 does not split over 2 CPU replicas x --batch-size 2: give a multiple of 4\n');
    // The test seam is refused outside a plain CPU run of one process, and with a value that is not a count.
    for (const [flags, env] of [[{ devices: '0,1' }, REPLICAS], [{ device: 'cuda' }, REPLICAS], [{}, { ...REPLICAS, OMPI_COMM_WORLD_SIZE: '2' }]] as const) {
      expect(line(gptune(trainArgs(TINY, out('i'), flags), env))).toBe(
        'gptune train: GPTUNE_TEST_CPU_REPLICAS is a test seam for CPU runs of one process (device cpu, no --devices, no MPI launcher); unset it\n');
    }
    expect(line(gptune(trainArgs(TINY, out('j')), { GPTUNE_TEST_CPU_REPLICAS: 'two' }))).toBe(
      'gptune train: GPTUNE_TEST_CPU_REPLICAS=two: expected a number of CPU replicas from 1 to 64 (a test seam; unset it to train normally)\n');
    for (const name of 'abcdefghij') expect(fs.existsSync(out(name))).toBe(false);
  }, 120_000);

  test('a checkpoint of a --devices run: --device cpu continues it on the CPU; without it the recorded devices are checked', () => {
    const dir = tempDir('gptune-replicas-');
    const first = path.join(dir, 'first');
    const r = gptune(trainArgs(TINY, first, { steps: '2', 'save-every': '1' }));
    expect(r.code).toBe(0);
    // What a --devices 0,1 run records (written by hand: no GPU here).
    const step1 = path.join(first, 'checkpoints', 'step-1');
    const configFile = path.join(step1, 'train_config.json');
    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), devices: '0,1', device: 'cuda' }));
    const onCpu = gptune(['train', '--resume', step1, '--out', path.join(dir, 'cpu'), '--log', path.join(dir, 'cpu.jsonl'), '--device', 'cpu', '--quiet']);
    expect(onCpu.stderr).toBe('');
    expect(onCpu.code).toBe(0);
    // The resumed run continues the recorded one: step 2 as the run that wrote the checkpoint took it.
    expect(logLosses(path.join(dir, 'cpu.jsonl'))).toEqual(logLosses(`${first}.jsonl`).slice(1));
    const asRecorded = gptune(['train', '--resume', step1, '--out', path.join(dir, 'gpu'), '--quiet']);
    expect(asRecorded.code).toBe(2);
    expect(asRecorded.stderr).toMatch(/^gptune train: --devices 0,1: .*\n$/);
    expect(fs.existsSync(path.join(dir, 'gpu'))).toBe(false);
  }, 60_000);

  test.each([
    ['GPT-2', () => TINY],
    ['Llama', () => tinyLlamaFolder()],
  ])('%s: sft evaluation split over 2 replicas gives the val_loss, val_tokens and token accuracy of one process', (_name, modelOf) => {
    const model = modelOf();
    const dir = tempDir('gptune-replicas-');
    // 27 validation rows of 16 tokens in batches of 2: 14 batches, 7 per replica.
    // Learning rate 0: the weights stay those of the starting model in both runs, so the evaluations differ
    // only by the grouping of their float64 sums, and 1e-6 holds.
    const flags = { validation: writeValidationText(dir), 'eval-every': '2', steps: '4', lr: '0' };
    const { single, replicas } = singleAndReplicas(model, dir, flags);
    const evals = (out: string) => logLines(path.join(out, 'metrics.jsonl')).filter((l) => 'val_loss' in l);
    const expected = evals(single);
    expect(expected.map((e) => e.step)).toEqual([2, 4]);
    const got = evals(replicas);
    expectLinesClose(got, expected, ['val_loss', 'val_perplexity', 'val_token_accuracy'], 1e-6);
    // Each validation token counted once over the replicas (a replica evaluating everything would double them).
    expect(got.map((e) => [e.val_tokens, e.improved, e.best_step])).toEqual(expected.map((e) => [e.val_tokens, e.improved, e.best_step]));
  }, 120_000);

  test('each replica evaluates its share of the validation batches only (the Trainer with batches of its own)', () => {
    const dir = tempDir('gptune-replicas-');
    const script = path.join(dir, 'count.js');
    // Every forward pass of a validation batch is recorded with the model copy that ran it (copies numbered in
    // the order they first run a forward: replica 0 takes the step's first micro-batch).
    fs.writeFileSync(script, `
      const fs = require('fs');
      const lib = require(${JSON.stringify(path.join(ROOT, 'dist/lib/index.js'))});
      const { buildDatasets } = require(${JSON.stringify(path.join(ROOT, 'dist/lib/data/index.js'))});
      const tokenizer = lib.loadTokenizer(${JSON.stringify(TINY)});
      const data = buildDatasets({ train: ${JSON.stringify(DATA)}, validation: ${JSON.stringify(writeValidationText(dir))}, tokenizer, seqLen: 16,
        batchSize: 2, packing: false, trainOnPrompt: false, shuffle: false, seed: 1 });
      const batchOf = new Map(data.validation.map((b, i) => [b.inputs, i]));
      const reads = data.validation.map(() => []);
      const copies = new Map();
      const forward = lib.Decoder.prototype.forward;
      lib.Decoder.prototype.forward = function (inputs, ...rest) {
        if (!copies.has(this)) copies.set(this, copies.size);
        if (batchOf.has(inputs)) reads[batchOf.get(inputs)].push(copies.get(this));
        return forward.call(this, inputs, ...rest);
      };
      const trainer = new lib.Trainer({ model: ${JSON.stringify(TINY)}, output_dir: null, max_steps: 2, eval_every: 1, batch_size: 2, seq_len: 16,
        global_batch_size: 4, learning_rate: 0, threads: 1 }, { train: data.train, validation: data.validation });
      const losses = [];
      trainer.on('eval', (e) => losses.push(e.val_loss));
      trainer.fit().then((r) => {
        r.model.free();
        fs.writeFileSync(process.argv[2], JSON.stringify({ reads, losses, copies: copies.size }));
      });
    `);
    const run = (out: string, env: Record<string, string>) => {
      const base = { ...process.env };
      delete base.GPTUNE_TEST_CPU_REPLICAS;
      const r = spawnSync(process.execPath, [script, path.join(dir, out)], { cwd: ROOT, encoding: 'utf8', env: { ...base, ...env } });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(fs.readFileSync(path.join(dir, out), 'utf8'));
    };
    const one = run('single.json', {}), two = run('replicas.json', REPLICAS);
    // 14 batches, 2 evaluations: one process reads each batch twice with its one copy; with 2 replicas
    // replica 0 reads the first 7 and replica 1 the last 7, twice each, and no batch is read by both.
    expect([one.copies, two.copies]).toEqual([1, 2]);
    expect(one.reads).toEqual(Array(14).fill([0, 0]));
    expect(two.reads).toEqual([...Array(7).fill([0, 0]), ...Array(7).fill([1, 1])]);
    expect(two.losses).toHaveLength(2);
    two.losses.forEach((l: number, i: number) => expect(Math.abs(l - one.losses[i]) / one.losses[i]).toBeLessThan(1e-6));
  }, 60_000);

  test.each([
    // model, method, what is trained, extra flags: each reference kind (a frozen copy per replica, each replica
    // with its adapter off, the precomputed table shared) and dropout (masks drawn by the micro-batch's place in
    // the global batch) appear.
    ['GPT-2', 'dpo', 'full', { dropout: '0.1' }],
    ['GPT-2', 'dpo', 'LoRA', { 'precompute-ref': '' }],
    ['GPT-2', 'orpo', 'full', {}],
    ['GPT-2', 'orpo', 'LoRA', {}],
    ['Llama', 'dpo', 'full', { 'precompute-ref': '' }],
    ['Llama', 'dpo', 'LoRA', {}],
    ['Llama', 'orpo', 'full', { dropout: '0.1' }],
    ['Llama', 'orpo', 'LoRA', {}],
  ] as Array<[string, 'dpo' | 'orpo', 'full' | 'LoRA', Record<string, string>]>)('%s %s %s %p: 2 replicas give the per-step losses, reward metrics and evaluations of 1 process with the same global batch', (name, method, trained, extra) => {
    const model = name === 'GPT-2' ? TINY : tinyLlamaFolder();
    const dir = tempDir('gptune-replicas-');
    // 1 process: 4 micro-batches of 2 pairs a step; 2 replicas: 2 each; the 3 validation batches split 1 / 2
    // over the replicas. DPO's loss is the default sigmoid.
    const flags = preferenceFlags(dir, method, trained, extra);
    const { single, replicas, two } = singleAndReplicas(model, dir, flags);
    expect(JSON.parse(two.stdout.trim().split('\n').pop()!)).toMatchObject({ saved: replicas, steps: 4, reason: 'completed' });
    expectPreferenceRunClose(single, replicas, method);
  }, 120_000);
  test('GPT-2 dpo full over 2 replicas: a checkpoint resumes both, each replica\'s reference the starting model again, bit for bit', () => {
    const dir = tempDir('gptune-replicas-');
    const flags = { ...preferenceFlags(dir, 'dpo', 'full', {}), 'save-every': '2' };
    const full = path.join(dir, 'full'), resumed = path.join(dir, 'resumed');
    const r = gptune(trainArgs(TINY, full, flags), REPLICAS);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // The resumed run's references are the starting model (config model), not the step-2 weights: a reference
    // taken from the checkpoint would start its margins at 0 again and change steps 3 and 4.
    const again = gptune(['train', '--resume', path.join(full, 'checkpoints', 'step-2'), '--out', resumed, '--log', `${resumed}.jsonl`, '--quiet'], REPLICAS);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    const steps = (out: string) => logLines(`${out}.jsonl`).filter((l) => 'loss' in l).map((l) => [l.step, l.loss, l['rewards/margins'], l.grad_norm]);
    expect(steps(full)).toHaveLength(4);
    expect(steps(resumed)).toEqual(steps(full).slice(2));
    expectSameTensors(path.join(full, 'model.safetensors'), path.join(resumed, 'model.safetensors'));
  }, 120_000);
});
