/**
 * NCCL on a GPU (native/cuda/nccl.cu, loaded at run time): one rank's collectives leave a CUDA buffer as it was
 * (the sum over one rank), and `mpirun -np 1 gptune train --device cuda`, whose gradients then go through
 * ncclAllReduce (ZeRO-0) or ncclReduceScatter + ncclAllGather (ZeRO-1), gives the losses of the same run
 * without a launcher, bitwise (one rank adds nothing), with the all-reduce overlapped with the backward
 * (--overlap-comm on: nccl.reduceAsync per gradient region, nccl.reduceWait) and not. One process driving GPUs (ncclCommInitAll): the grouped
 * all-reduce over one GPU keeps the buffer, over two gives the plain sum on both; with two GPUs,
 * `gptune train --devices 0,1` gives the losses of the plain one-GPU run with the same global batch (sft, DPO, ORPO + LoRA).
 *   node --test dist/test/gpu/        (on a GPU machine with libnccl.so.2 or GPTUNE_NCCL, and mpirun for the run)
 */
import * as assert from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as nodeTest from 'node:test';
import { addon } from '../../lib/native';
import { skip as gpuSkip, underJest } from './target';

const ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/tiny-gpt2');
const DATA = path.join(ROOT, 'test/fixtures/eval-text.txt');

const ncclSkip = gpuSkip ?? (addon.nccl.available() ? undefined : addon.nccl.unavailableReason());
const mpirun = spawnSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' }).stdout.trim();
const runSkip = ncclSkip ?? (mpirun === '' ? 'mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)' : !addon.mpi.available() ? addon.mpi.unavailableReason() : undefined);

const gpus = gpuSkip ? 0 : addon.cuda.deviceCount!();
const twoSkip = ncclSkip ?? (gpus < 2 ? `--devices needs 2 GPUs; this machine has ${gpus}` : undefined);

function losses(args: string[], launcher: boolean, data = DATA): number[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-nccl-'));
  const log = path.join(dir, 'log.jsonl');
  const train = [CLI, 'train', '--model', TINY, '--data', data, '--out', path.join(dir, 'out'), '--log', log, '--device', 'cuda', '--precision', 'fp32',
    '--steps', '5', '--batch-size', '2', '--seq-len', '16', '--global-batch-size', '8', '--lr', '2e-3', '--weight-decay', '0.1', '--quiet', ...args];
  const env = { ...process.env, OMPI_MCA_btl: 'self,vader', OMPI_MCA_plm: 'isolated' };
  const r = launcher
    ? spawnSync(mpirun, ['--allow-run-as-root', '--oversubscribe', '-np', '1', process.execPath, ...train], { encoding: 'utf8', env })
    : spawnSync(process.execPath, train, { encoding: 'utf8' });
  assert.strictEqual(r.status, 0, r.stderr);
  return fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
}

if (underJest) {
  (globalThis as unknown as { test: { skip: (n: string, f: () => void) => void } }).test.skip(
    'GPU NCCL tests: run `node --test dist/test/gpu/` on a GPU machine (skipped under jest)', () => undefined);
} else {
  if (ncclSkip) console.log(`# GPU NCCL tests skipped: ${ncclSkip}`);
  else if (runSkip) console.log(`# GPU NCCL training test skipped: ${runSkip}`);

  nodeTest.describe('NCCL on cuda', () => {
    nodeTest.it('one rank: all-reduce, reduce-scatter and all-gather keep the buffer', { skip: ncclSkip }, () => {
      const nccl = addon.nccl;
      assert.ok(nccl.version!() >= 20000, `NCCL 2.x expected, got ${nccl.version!()}`);
      nccl.initRank!(nccl.uniqueId!(), 1, 0);
      const n = 1000;
      const values = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3 + i / 7);
      const arena = new addon.Arena('cuda', 2 * n);
      try {
        arena.write(0, values);
        const view = { arena, offset: 0, numel: n };
        nccl.allreduceSum!(view);
        assert.deepStrictEqual(arena.read(0, n), values);
        nccl.reduceScatterSum!(view, { arena, offset: n, numel: n });
        assert.deepStrictEqual(arena.read(n, n), values);
        nccl.allGather!(view, n);
        assert.deepStrictEqual(arena.read(0, n), values);
        assert.throws(() => nccl.allGather!(view, 3), /must be a whole number of shards of 3/);
        // The overlapped all-reduce: regions issued after the backend's work, waited for together.
        arena.write(0, values);
        nccl.reduceAsync!({ arena, offset: 500, numel: 500 });
        nccl.reduceAsync!({ arena, offset: 1, numel: 499 });
        nccl.reduceAsync!({ arena, offset: 0, numel: 1 });
        assert.strictEqual(nccl.reduceWait!().regions, 3);
        assert.deepStrictEqual(arena.read(0, n), values);
        assert.strictEqual(nccl.reduceWait!().regions, 0);
      } finally {
        arena.free();
        nccl.destroy!();
      }
    });

    nodeTest.it('initAll over one GPU: the grouped all-reduce keeps the buffer and checks its arguments', { skip: ncclSkip }, () => {
      const nccl = addon.nccl;
      nccl.initAll!([0]);
      const n = 999;
      const values = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 2 - i / 9);
      const arena = new addon.Arena('cuda', n + 1);
      const host = new addon.Arena('cpu', n);
      try {
        assert.strictEqual(nccl.communicators!(), 1);
        arena.write(0, values);
        nccl.allreduceSumAll!([{ arena, offset: 0, numel: n }]);
        assert.deepStrictEqual(arena.read(0, n), values);
        assert.throws(() => nccl.allreduceSumAll!([]), /views holds 0 views; expected one per communicator \(1/);
        assert.throws(() => nccl.allreduceSumAll!([{ arena: host, offset: 0, numel: n }]), /must be CUDA arena views/);
      } finally {
        arena.free();
        host.free();
        nccl.destroy!();
      }
    });

    nodeTest.it('initAll over two GPUs: the grouped all-reduce gives the sum on both, bitwise the same', { skip: twoSkip }, () => {
      const nccl = addon.nccl;
      nccl.initAll!([0, 1]);
      const n = 4097;
      // Exact in float32: the sum is x0 + x1 with no rounding.
      const x0 = Float32Array.from({ length: n }, (_, i) => i / 4), x1 = Float32Array.from({ length: n }, (_, i) => 3 * i + 1);
      addon.cuda.setDevice!(0);
      const a = new addon.Arena('cuda', n);
      addon.cuda.setDevice!(1);
      const b = new addon.Arena('cuda', n);
      try {
        addon.cuda.setDevice!(0);
        a.write(0, x0);
        addon.cuda.setDevice!(1);
        b.write(0, x1);
        addon.cuda.setDevice!(0);
        nccl.allreduceSumAll!([{ arena: a, offset: 0, numel: n }, { arena: b, offset: 0, numel: n }]);
        const sum = Float32Array.from(x0, (v, i) => v + x1[i]);
        assert.deepStrictEqual(a.read(0, n), sum);
        addon.cuda.setDevice!(1);
        assert.deepStrictEqual(b.read(0, n), sum);
        addon.cuda.setDevice!(0);
        assert.throws(() => nccl.allreduceSumAll!([{ arena: b, offset: 0, numel: n }, { arena: a, offset: 0, numel: n }]), /buffer 0 must be memory of GPU 0 .*on GPU 1/);
        assert.throws(() => nccl.allreduceSumAll!([{ arena: a, offset: 0, numel: n }, { arena: b, offset: 0, numel: n - 1 }]), /every view must have the same length/);
      } finally {
        // Each arena freed while its own GPU is current.
        addon.cuda.setDevice!(0);
        a.free();
        addon.cuda.setDevice!(1);
        b.free();
        addon.cuda.setDevice!(0);
        nccl.destroy!();
      }
    });

    nodeTest.it('--devices 0,1 gives the losses of one GPU with the same global batch', { skip: twoSkip }, () => {
      const plain = losses([], false);
      const replicas = losses(['--devices', '0,1'], false);
      assert.strictEqual(replicas.length, 5);
      // Up to float32 rounding of the gradient sums (2 GPUs' sums of 2 micro-batches added instead of 4 in a row).
      for (const [i, l] of replicas.entries()) assert.ok(Math.abs(l - plain[i]) < 1e-5, `step ${i + 1}: ${l} vs ${plain[i]}`);
    });

    nodeTest.it('--devices 0,1 with DPO (a frozen reference per GPU) and ORPO + LoRA gives the losses of one GPU with the same global batch', { skip: twoSkip }, () => {
      // 16 pairs, 8 a step: each GPU takes 2 micro-batches of 2 pairs with its own reference.
      const pairs = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-nccl-')), 'pairs.jsonl');
      fs.writeFileSync(pairs, Array.from({ length: 16 }, (_, i) => JSON.stringify({ prompt: `Q: ${i}\nA:`, chosen: i % 2 ? ' yes' : ' no', rejected: i % 2 ? ' no' : ' yes' })).join('\n') + '\n');
      for (const method of [['--method', 'dpo'], ['--method', 'orpo', '--lora']]) {
        const plain = losses(method, false, pairs);
        const replicas = losses([...method, '--devices', '0,1'], false, pairs);
        assert.strictEqual(replicas.length, 5);
        for (const [i, l] of replicas.entries()) assert.ok(Math.abs(l - plain[i]) < 1e-5, `${method.join(' ')} step ${i + 1}: ${l} vs ${plain[i]}`);
      }
    });

    nodeTest.it('mpirun -np 1 on the GPU (NCCL, ZeRO-0 overlapped and not, ZeRO-1) gives the losses of the plain run', { skip: runSkip }, () => {
      const plain = losses([], false);
      assert.strictEqual(plain.length, 5);
      assert.deepStrictEqual(losses(['--zero', '0', '--overlap-comm', 'off'], true), plain);
      assert.deepStrictEqual(losses(['--zero', '0', '--overlap-comm', 'on'], true), plain);
      assert.deepStrictEqual(losses(['--zero', '1'], true), plain);
    });
  });
}
