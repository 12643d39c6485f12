/**
 * Data-parallel training over MPI ranks (`mpirun -np N gptune train ...`, or `srun`), llm.c's way:
 *
 * - Every rank holds the whole model and builds the same batches from the same seed. A step takes
 *   N x grad_accum_steps micro-batches in the run's global order; rank r trains on its run of
 *   grad_accum_steps of them (rank-major), so the global order, and with it every loss, depends on the
 *   seed only: N ranks compute what one process computes with grad_accum_steps x N.
 * - Each rank's backward scales by the step's global count of scored tokens (DPO/ORPO: of pairs, and of
 *   chosen answer tokens for ORPO's nll), so the SUM of the ranks' gradients is the gradient of the
 *   step's mean loss; the sum is taken in place over the gradient arena (MPI on CPU ranks, NCCL on GPU
 *   ranks), bitwise the same on every rank, so the weights stay identical. Loss sums, token counts,
 *   accuracy and DPO/ORPO's reward sums are summed over the ranks in float64.
 * - Overlap (`overlapComm`): the last micro-batch's backward hands each region of the gradient arena to the
 *   all-reduce as soon as it is final (Decoder.gradientRegions: the head and final norm, each block from the
 *   last to the first, the embeddings), so the reduction of late layers runs while earlier layers' backward
 *   computes: on CPU ranks a communication thread runs the same ring (mpi.reduceAsync), on GPU ranks
 *   ncclAllReduce on NCCL's stream after an event on the backend's (nccl.reduceAsync); reduceGradients then
 *   waits for them. ZeRO-1 is not overlapped (its reduce-scatter splits the whole arena into shards).
 * - ZeRO-1 (`zero: 1`): the gradients are reduce-scattered instead; each rank keeps AdamW's moments of
 *   its shard of the layout only, updates that shard, and the weights are all-gathered. A checkpoint
 *   gathers the moments (a full optimizer.safetensors, as a single process writes), so a run resumes
 *   on any number of ranks.
 * - Evaluation is split: rank r evaluates its share of the validation batches (`part`; each local replica
 *   its share of that, `replicaPart`) and the sums (loss, tokens, accuracy, preference sums) are added over
 *   the replicas, then over the ranks, in float64 (`sumInPlace`).
 * - Rank 0 alone writes (the Trainer asks `writes`); every rank takes the same decisions (evaluations,
 *   early stopping, checkpoints, stopping on a signal), from values agreed on through collectives.
 *
 * A single process (no launcher) gets a DataParallel of size 1 whose collectives do nothing, so the
 * Trainer has one code path.
 *
 * Local replicas (`devices: 0,1`, no launcher): one process holds one copy of the model per GPU and
 * counts them like ranks (size = ranks x replicas; replica j of rank r is worker r x replicas + j). A
 * step trains each replica on its run of micro-batches, then a ReplicaReducer sums the replicas'
 * gradient arenas (NCCL's grouped all-reduce over the communicators of ncclCommInitAll) and every
 * replica updates its own copy with its own AdamW on identical sums. DPO/ORPO steps split the same way
 * (each replica with its own reference), and evaluation too: each replica evaluates its share of the
 * validation batches (replicaPart), the sums added over the replicas, then over the ranks. The Trainer
 * samples and saves replica 0. CPU replicas, summed on the host, exist only as a test seam
 * (GPTUNE_TEST_CPU_REPLICAS, test/train/replicas.test.ts): they check the replica logic where no GPU is.
 */
import { addon, DeviceName, TensorRef } from '../native';
import type { DeviceChoice } from '../device';
import { DistributedError, UsageError } from '../errors';
import { Decoder, GradientRegionListener } from '../model/decoder';
import { AdamW, AdamWOptions, ParameterRange } from './adamw';
import { loadOptimizerState } from './checkpoint_state';
import type { RankGroup } from './preference';

/** Variables a launcher sets in every rank: Open MPI's mpirun, MPICH/Intel MPI (PMI), PMIx (Open MPI 5, Slurm's srun --mpi=pmix). */
export const LAUNCHER_VARIABLES = ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_RANK'] as const;
/** Variables holding the rank's index among the ranks of its node (which GPU it drives). */
const LOCAL_RANK_VARIABLES = ['OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID', 'SLURM_LOCALID', 'PMIX_LOCAL_RANK'] as const;

/** "NAME=value" of the launcher variable this process was started with, or null when no launcher started it. */
export function launcherVariable(env: NodeJS.ProcessEnv = process.env): string | null {
  const name = LAUNCHER_VARIABLES.find((n) => env[n] !== undefined && env[n] !== '');
  return name === undefined ? null : `${name}=${env[name]}`;
}

export interface DataParallelOptions {
  /** 0: all-reduce the gradients; 1: ZeRO-1 (optimizer state sharded over the ranks). */
  zero: 0 | 1;
  /** Seconds any collective may take before the job is declared broken. */
  collectiveTimeout: number;
  /** CUDA devices this process trains on, one replica each (config devices, parsed); null: one device. */
  devices: number[] | null;
  /** The run's device setting (GPTUNE_TEST_CPU_REPLICAS needs cpu). */
  device: DeviceChoice;
  /** Overlap the gradient all-reduce with the backward: on, off, or auto (off for now: docs/scaling.md). Default auto. */
  overlapComm?: 'auto' | 'on' | 'off';
  /** How messages name the config keys. */
  nameKey: (key: 'zero' | 'collective_timeout' | 'devices' | 'overlap_comm') => string;
}

/** What the last reduceGradients cost: the regions overlapped (0: one reduction after the backward) and the ms it waited. */
export interface ReductionTiming {
  regions: number;
  /** Milliseconds reduceGradients blocked: the all-reduce time the backward did not hide. */
  exposedMs: number;
}

type Backend = 'none' | 'mpi' | 'nccl';

/** The test seam's variable: N CPU replicas in one process (test/train/replicas.test.ts). */
export const CPU_REPLICAS_VARIABLE = 'GPTUNE_TEST_CPU_REPLICAS';

/**
 * Sums the gradient arenas of a process's replicas in place: afterwards every view (one per replica,
 * (n) floats each, replica order) holds bitwise the same sum, so the replicas' weights never drift apart.
 */
export interface ReplicaReducer {
  allReduceSum(views: readonly TensorRef[]): void;
}

/**
 * CPU replicas: the sum is computed once, in float32 in replica order, into replica 0's arena, then
 * copied to the others (bitwise the same sum everywhere).
 */
export class HostReducer implements ReplicaReducer {
  allReduceSum(views: readonly TensorRef[]): void {
    const [first, ...rest] = views;
    const sum = first.arena.data.subarray(first.offset, first.offset + first.numel);
    for (const v of rest) {
      if (v.numel !== first.numel) throw new RangeError(`HostReducer: a replica's gradients hold ${v.numel} floats, replica 0's ${first.numel}`);
      const x = v.arena.data.subarray(v.offset, v.offset + v.numel);
      for (let i = 0; i < sum.length; i++) sum[i] += x[i];
    }
    for (const v of rest) v.arena.copyFrom(v.offset, first.arena, first.offset, first.numel);
  }
}

/** GPU replicas: NCCL's all-reduce on every communicator of ncclCommInitAll, in one group (native/cuda/nccl.cu). */
export class NcclGroupReducer implements ReplicaReducer {
  allReduceSum(views: readonly TensorRef[]): void {
    addon.nccl.allreduceSumAll!([...views]);
  }
}

/** GPTUNE_TEST_CPU_REPLICAS as a count (null when unset); anything but a whole number from 1 to 64 is refused. */
function cpuTestReplicas(env: NodeJS.ProcessEnv): number | null {
  const value = env[CPU_REPLICAS_VARIABLE];
  if (value === undefined || value === '') return null;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 64) {
    throw new UsageError(`${CPU_REPLICAS_VARIABLE}=${value}: expected a number of CPU replicas from 1 to 64 (a test seam; unset it to train normally)`);
  }
  return Number(value);
}

export class DataParallel implements RankGroup {
  private backend: Backend = 'none';
  /** ZeRO-1 on a GPU: the equal shard NCCL's reduce-scatter and all-gather use. */
  private ncclShard = 0;
  /** Whether MPI granted the thread level the communication thread needs (MPI_THREAD_SERIALIZED). */
  private mpiThreads = false;
  private mpiThreadLevel = 'single';
  /** Elements of the gradient arena handed to the overlapped all-reduce since the last reduceGradients. */
  private issued = 0;
  /** How messages name config keys (flags on the command line). */
  private nameKey: DataParallelOptions['nameKey'] = (key) => key;
  /** Whether the gradient all-reduce overlaps the backward (decideOverlap). */
  private overlapOn = false;
  /** The last reduceGradients' cost. */
  lastReduction: ReductionTiming = { regions: 0, exposedMs: 0 };

  /** Sums the replicas' gradients when this process holds more than one (null otherwise). */
  private reducer: ReplicaReducer | null = null;

  /**
   * `ranks` MPI processes, each holding `replicas` copies of the model (on `devices`, one each, or on the
   * CPU); one of the two is 1.
   */
  private constructor(
    readonly rank: number, readonly ranks: number, readonly replicas: number, readonly zero: 0 | 1, private readonly launched: boolean,
    readonly devices: number[] | null = null, private readonly overlapComm: 'auto' | 'on' | 'off' = 'auto',
  ) {}

  /** Workers in the job: ranks x local replicas. A step's global batch splits over them. */
  get size(): number {
    return this.ranks * this.replicas;
  }

  /** How messages name the job's workers: "2 rank(s)", "2 GPUs (devices 0,1)", "2 CPU replicas". */
  get workers(): string {
    if (this.replicas === 1) return `${this.ranks} rank(s)`;
    return this.devices ? `${this.replicas} GPUs (devices ${this.devices.join(',')})` : `${this.replicas} CPU replicas`;
  }

  /** Whether the collectives do nothing: one process, or one CPU rank. */
  private get alone(): boolean {
    return this.backend === 'none';
  }

  /**
   * The job this process belongs to: MPI's world when a launcher started it (MPI_Init happens here), a
   * single process otherwise. Throws UsageError when MPI is needed and missing.
   */
  static start(options: DataParallelOptions): DataParallel {
    const launcher = launcherVariable();
    const mpi = addon.mpi;
    const testReplicas = cpuTestReplicas(process.env);
    if (testReplicas !== null && (launcher !== null || options.devices !== null || options.device !== 'cpu')) {
      throw new UsageError(`${CPU_REPLICAS_VARIABLE} is a test seam for CPU runs of one process (device cpu, no ${options.nameKey('devices')}, no MPI launcher); unset it`);
    }
    if (options.devices !== null) return DataParallel.onDevices(options.devices, launcher, options);
    if (testReplicas !== null && testReplicas > 1) {
      if (options.zero === 1) throw new UsageError(`${options.nameKey('zero')} 1 shards the optimizer over MPI ranks; CPU replicas all-reduce: give ${options.nameKey('zero')} 0`);
      const dp = new DataParallel(0, 1, testReplicas, 0, false);
      dp.reducer = new HostReducer();
      return dp;
    }
    if (launcher === null) {
      if (options.zero === 1) {
        throw new UsageError(`${options.nameKey('zero')} 1 shards the optimizer over MPI ranks: launch the run with mpirun -np N (or srun), or give ${options.nameKey('zero')} 0${mpi.available() ? '' : `; besides, ${mpi.unavailableReason()}`}`);
      }
      return new DataParallel(0, 1, 1, 0, false);
    }
    if (!mpi.available()) {
      throw new UsageError(`this process was started by an MPI launcher (${launcher}) but ${mpi.unavailableReason()}; without it every rank would train alone`);
    }
    const { rank, size, threadLevel, overlap } = mpi.init();
    mpi.setTimeout(options.collectiveTimeout);
    const dp = new DataParallel(rank, size, 1, options.zero, true, null, options.overlapComm ?? 'auto');
    dp.mpiThreads = overlap;
    dp.mpiThreadLevel = threadLevel;
    dp.nameKey = options.nameKey;
    dp.backend = size > 1 ? 'mpi' : 'none';
    return dp;
  }

  /**
   * `devices 0,1`: one process, one replica per listed GPU. Checked before anything loads: no MPI launcher
   * (there each rank drives one GPU), a CUDA build, indices of existing GPUs, and NCCL when there are
   * several. The communicators are made in attach().
   */
  private static onDevices(devices: number[], launcher: string | null, options: DataParallelOptions): DataParallel {
    const flag = `${options.nameKey('devices')} ${devices.join(',')}`;
    if (launcher !== null) {
      throw new UsageError(`${flag} drives several GPUs from one process, but an MPI launcher started this one (${launcher}): under mpirun/srun give each rank one GPU instead (drop ${options.nameKey('devices')})`);
    }
    if (options.zero === 1) {
      throw new UsageError(`${flag}: ${options.nameKey('zero')} 1 shards the optimizer over MPI ranks and is not supported over the GPUs of one process; give ${options.nameKey('zero')} 0 (or one rank per GPU under mpirun)`);
    }
    if (!addon.cuda.compiled) {
      throw new UsageError(`${flag}: this gptune addon was built without CUDA (nvcc was not found when it was built), so it has no GPUs to train on; rebuild it with nvcc on PATH (GPTUNE_CUDA=ON)`);
    }
    const count = addon.cuda.deviceCount?.() ?? 0;
    const missing = devices.find((d) => d >= count);
    if (missing !== undefined) {
      const have = count === 0 ? `no usable GPU (${addon.cuda.unavailableReason?.() || 'no CUDA device found'})` : `${count} GPU(s), 0 to ${count - 1}`;
      throw new UsageError(`${flag}: there is no GPU ${missing}; this machine has ${have}`);
    }
    if (devices.length > 1 && !addon.nccl.available()) {
      throw new UsageError(`${flag}: the GPUs sum their gradients with NCCL, but ${addon.nccl.unavailableReason()}`);
    }
    return new DataParallel(0, 1, devices.length, 0, false, devices);
  }

  /** Makes replica j's device current (the GPU of devices[j]; nothing on the CPU). Arenas live on the device current when made. */
  useReplica(j: number): void {
    if (this.devices !== null) addon.cuda.setDevice!(this.devices[j]);
  }

  /** Whether this rank writes files (outputs, checkpoints, logs, metrics): rank 0 only. */
  get writes(): boolean {
    return this.rank === 0;
  }

  /**
   * The GPU a rank drives, chosen before the model loads: its index among the node's ranks, modulo the
   * node's GPUs (one rank per GPU, as llm.c). Returns the device index set, or null on the CPU.
   */
  selectDevice(device: DeviceName): number | null {
    if (this.devices !== null) {
      this.useReplica(0);
      return this.devices[0];
    }
    if (device !== 'cuda' || this.ranks === 1) return null;
    const name = LOCAL_RANK_VARIABLES.find((n) => process.env[n] !== undefined);
    const local = name === undefined ? this.rank : Number(process.env[name]);
    const count = addon.cuda.deviceCount?.() ?? 0;
    if (count === 0) throw new UsageError(`rank ${this.rank}: device cuda asked for, but this node has no usable GPU`);
    addon.cuda.setDevice!(local % count);
    return local % count;
  }

  /**
   * Ties the job to the model it trains: GPU ranks start NCCL (rank 0 makes the unique id, MPI
   * broadcasts it), even a job of one rank (so that one GPU checks the NCCL path against a plain run).
   * Throws UsageError when a GPU rank has no NCCL.
   */
  attach(model: Decoder, collectiveTimeout: number): void {
    if (this.devices !== null && this.replicas > 1) {
      // One communicator per GPU (ncclCommInitAll); replica 0's device is current again afterwards.
      addon.nccl.initAll!(this.devices);
      addon.nccl.setTimeout!(collectiveTimeout);
      this.reducer = new NcclGroupReducer();
      this.useReplica(0);
      return;
    }
    if (!this.launched || model.device !== 'cuda') return;
    const nccl = addon.nccl;
    if (!nccl.available()) throw new UsageError(`rank ${this.rank}: GPU ranks reduce gradients with NCCL: ${nccl.unavailableReason()}`);
    const id = this.rank === 0 ? nccl.uniqueId!() : new Uint8Array(128);
    addon.mpi.broadcast(id, 0);
    nccl.initRank!(id, this.ranks, this.rank);
    nccl.setTimeout!(collectiveTimeout);
    this.backend = 'nccl';
    if (this.zero === 1) {
      const n = model.trainable.numel;
      if (n % this.ranks !== 0) {
        throw new UsageError(`zero 1 on GPUs needs the ${n} trained elements to split evenly over ${this.ranks} ranks (NCCL's reduce-scatter); use zero 0 or another number of GPUs`);
      }
      this.ncclShard = n / this.ranks;
    }
  }

  /** This rank's part of the trained layout under ZeRO-1 (the whole layout otherwise). */
  shard(numel: number): ParameterRange {
    if (this.zero === 0 || this.alone) return { offset: 0, numel };
    if (this.backend === 'nccl') return { offset: this.rank * this.ncclShard, numel: this.ncclShard };
    return addon.mpi.shard(numel);
  }

  /** The optimizer of this rank: AdamW over its shard under ZeRO-1, over everything otherwise. */
  optimizer(model: Decoder, options: AdamWOptions): AdamW {
    const n = model.trainable.numel;
    const range = this.shard(n);
    return range.numel === n ? new AdamW(model, options) : new AdamW(model, options, range);
  }

  /**
   * A step's micro-batches (size x grad_accum_steps, in global order): the run of them of this rank's
   * local replica j (worker rank x replicas + j) and the global index of its first.
   */
  mine<T>(all: readonly T[], replica = 0): { items: T[]; first: number } {
    const each = all.length / this.size;
    if (!Number.isInteger(each)) throw new RangeError(`DataParallel.mine: ${all.length} micro-batches do not split over ${this.workers}`);
    const worker = this.rank * this.replicas + replica;
    return { items: all.slice(worker * each, (worker + 1) * each), first: worker * each };
  }

  /**
   * This rank's share of a list every rank holds in the same order (the validation batches): the
   * contiguous run [floor(n r / N), floor(n (r + 1) / N)) over the N ranks, so the shares cover the list
   * once; a rank may get none when n < N. It is the union of its replicas' shares (replicaPart), in order.
   */
  part<T>(all: readonly T[]): T[] {
    const n = all.length;
    return all.slice(Math.floor((n * this.rank) / this.ranks), Math.floor((n * (this.rank + 1)) / this.ranks));
  }

  /**
   * Local replica j's share of such a list: worker w = rank x replicas + j of the size workers takes
   * [floor(n w / size), floor(n (w + 1) / size)), so the replicas' shares split their rank's share (part)
   * exactly and the workers' shares cover the list once; a replica may get none when n < size.
   */
  replicaPart<T>(all: readonly T[], replica: number): T[] {
    if (!Number.isInteger(replica) || replica < 0 || replica >= this.replicas) throw new RangeError(`DataParallel.replicaPart: replica ${replica} of ${this.replicas}`);
    const n = all.length, w = this.rank * this.replicas + replica;
    return all.slice(Math.floor((n * w) / this.size), Math.floor((n * (w + 1)) / this.size));
  }

  /**
   * Element-wise sums over the ranks, in place, in double precision (reduced to rank 0, then broadcast):
   * bitwise the same on every rank, so every rank takes the same decisions from them.
   */
  sumInPlace(values: Float64Array): void {
    if (this.alone) return;
    this.collective(() => addon.mpi.allreduceSum(values));
  }

  /** Element-wise sums over the ranks of a few numbers (sumInPlace). */
  sum(values: number[]): number[] {
    if (this.alone) return values;
    const x = Float64Array.from(values);
    this.sumInPlace(x);
    return Array.from(x);
  }

  /**
   * Decides, once the model is attached, whether the gradient all-reduce overlaps the backward: ZeRO-0 on
   * several ranks with overlap_comm on (auto is off for now), and on CPU ranks only where MPI granted the
   * communication thread's thread level. Returns why overlap asked for is not done (one line), else null.
   */
  decideOverlap(): string | null {
    this.overlapOn = false;
    const asked = `${this.nameKey('overlap_comm')} ${this.overlapComm}`;
    if (this.reducer !== null && this.overlapComm === 'on') return `${asked}: the GPUs of one process (${this.nameKey('devices')}) are reduced after the backward (not overlapped)`;
    // auto is off for now: on CPU ranks the overlap did not pay where it was measured, and no GPU run has
    // measured it yet (docs/scaling.md).
    if (this.alone || this.overlapComm !== 'on') return null;
    if (this.zero === 1) return `${asked}: ${this.nameKey('zero')} 1 reduce-scatters the whole gradient arena after the backward (not overlapped)`;
    if (this.backend === 'mpi' && !this.mpiThreads) {
      return `${asked}: MPI granted thread level ${this.mpiThreadLevel}, the communication thread needs serialized; the gradients are reduced after the backward`;
    }
    this.overlapOn = true;
    return null;
  }

  /** Whether the gradient all-reduce overlaps the backward (after decideOverlap). */
  get overlapping(): boolean {
    return this.overlapOn;
  }

  /**
   * The listener for the backward of a step's last micro-batch: each final region of model.grads starts its
   * all-reduce at once (reduceGradients waits for them). Null when not overlapping: reduceGradients then
   * reduces the whole arena after the backward. Every rank hands the same regions in the same order.
   */
  gradientListener(model: Decoder): GradientRegionListener | null {
    if (!this.overlapOn) return null;
    const arena = model.grads!.arena;
    return (offset, numel) => {
      const view = { arena, offset, numel };
      this.collective(() => (this.backend === 'nccl' ? addon.nccl.reduceAsync!(view) : addon.mpi.reduceAsync(view)));
      this.issued += numel;
    };
  }

  /**
   * After a failure between gradientListener's first region and reduceGradients: waits for the regions in
   * flight (each bounded by the collective timeout) so that nothing reduces into memory about to be freed,
   * ignoring their errors (the first failure is the one reported).
   */
  settle(): void {
    if (this.issued === 0) return;
    this.issued = 0;
    try {
      if (this.backend === 'nccl') addon.nccl.reduceWait!();
      else addon.mpi.reduceWait();
    } catch {
      // the failure being reported already ends the run
    }
  }

  /**
   * After the backward passes (`models`: this process's replicas, replica order): ZeRO-0 makes every
   * replica's grads the sum over all workers; ZeRO-1 (ranks only) puts the sum of this rank's shard in
   * place (the rest of model.grads then holds partial sums, used by nothing). When the last backward
   * handed its regions to gradientListener's listener (ranks only), this waits for their all-reduces.
   */
  reduceGradients(models: readonly Decoder[]): void {
    this.lastReduction = { regions: 0, exposedMs: 0 };
    if (this.reducer === null && this.alone) return;
    const started = process.hrtime.bigint();
    const regions = this.reduce(models);
    this.lastReduction = { regions, exposedMs: Number(process.hrtime.bigint() - started) / 1e6 };
  }

  /** reduceGradients' work; returns the overlapped regions it waited for (0: one reduction now). */
  private reduce(models: readonly Decoder[]): number {
    if (this.reducer !== null) {
      const reducer = this.reducer;
      this.collective(() => reducer.allReduceSum(models.map((m) => m.grads!.all())));
      return 0;
    }
    const grads = models[0].grads!;
    if (this.issued === 0) {
      this.reduceWhole(grads);
      return 0;
    }
    const issued = this.issued;
    this.issued = 0;
    let regions = 0;
    this.collective(() => ({ regions } = this.backend === 'nccl' ? addon.nccl.reduceWait!() : addon.mpi.reduceWait()));
    // The regions cover the arena exactly once (Decoder.gradientRegions); anything else is a defect here.
    if (issued !== grads.numel) throw new Error(`reduceGradients: the overlapped regions covered ${issued} of the ${grads.numel} gradient elements`);
    return regions;
  }

  private reduceWhole(grads: NonNullable<Decoder['grads']>): void {
    const all = grads.all();
    if (this.zero === 0) {
      this.collective(() => (this.backend === 'nccl' ? addon.nccl.allreduceSum!(all) : addon.mpi.allreduceSum(all)));
      return;
    }
    const range = this.shard(grads.numel);
    // In place: the output is this rank's shard of the same buffer (for NCCL and for gptune's MPI ring).
    const shard = { arena: grads.arena, offset: range.offset, numel: range.numel };
    this.collective(() => (this.backend === 'nccl' ? addon.nccl.reduceScatterSum!(all, shard) : addon.mpi.reduceScatterSum(all, shard)));
  }

  /** The global gradient norm after reduceGradients (under ZeRO-1 from the shards' sums of squares). */
  gradNorm(model: Decoder): number {
    if (this.zero === 0 || this.alone) return model.gradNorm();
    const grads = model.grads!;
    const range = this.shard(grads.numel);
    const local = range.numel === 0 ? 0 : addon.kernels.sum_squares({ arena: grads.arena, offset: range.offset, numel: range.numel }, range.numel);
    return Math.sqrt(this.sum([local])[0]);
  }

  /** After an optimizer update: under ZeRO-1 every rank's updated shard of the weights goes to every rank. */
  afterUpdate(model: Decoder): void {
    if (this.zero === 0 || this.alone) return;
    const all = model.trainable.all();
    this.collective(() => (this.backend === 'nccl' ? addon.nccl.allGather!(all, this.ncclShard) : addon.mpi.allGather(all)));
  }

  /**
   * The optimizer a checkpoint holds: `optimizer` itself, or under ZeRO-1 a whole one gathered from every
   * rank's shard (a collective: every rank calls this at the same save). release() frees a gathered one.
   */
  gatheredOptimizer(model: Decoder, optimizer: AdamW): { optimizer: AdamW; release(): void } {
    if (optimizer.range.numel === model.trainable.numel) return { optimizer, release() {} };
    const whole = new AdamW(model, optimizer.options);
    try {
      whole.step = optimizer.step;
      const { offset, numel } = optimizer.range;
      for (const [part, full] of [[optimizer.m, whole.m], [optimizer.v, whole.v]] as const) {
        if (numel > 0) full.arena.copyFrom(offset, part.arena, 0, numel);
        const all = full.all();
        this.collective(() => (this.backend === 'nccl' ? addon.nccl.allGather!(all, this.ncclShard) : addon.mpi.allGather(all)));
      }
    } catch (e) {
      whole.free();
      throw e;
    }
    return { optimizer: whole, release: () => whole.free() };
  }

  /** Restores `optimizer` (this rank's shard under ZeRO-1) from a checkpoint's whole optimizer state. */
  loadOptimizer(dir: string, model: Decoder, optimizer: AdamW): void {
    if (optimizer.range.numel === model.trainable.numel) {
      loadOptimizerState(dir, optimizer);
      return;
    }
    const whole = new AdamW(model, optimizer.options);
    try {
      loadOptimizerState(dir, whole);
      const { offset, numel } = optimizer.range;
      if (numel > 0) {
        optimizer.m.arena.copyFrom(0, whole.m.arena, offset, numel);
        optimizer.v.arena.copyFrom(0, whole.v.arena, offset, numel);
      }
      optimizer.step = whole.step;
    } finally {
      whole.free();
    }
  }

  /** Runs a collective; its failure (a timeout, MPI or NCCL) becomes a DistributedError naming this rank. */
  private collective(run: () => void): void {
    try {
      run();
    } catch (e) {
      const message = (e as Error).message;
      throw new DistributedError(message.startsWith('rank ') ? message : `rank ${this.rank}: ${message}`);
    }
  }
}

/** Variables holding a rank's index in the job, as launchers set them before MPI starts. */
const RANK_VARIABLES = ['OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'PMIX_RANK', 'SLURM_PROCID'] as const;

/** This process's rank when a launcher started it (from its variables: known before MPI starts), else null. */
export function launcherRank(env: NodeJS.ProcessEnv = process.env): number | null {
  if (launcherVariable(env) === null) return null;
  const name = RANK_VARIABLES.find((n) => env[n] !== undefined && /^\d+$/.test(env[n]!));
  return name === undefined ? null : Number(env[name]);
}

/** Whether this process runs MPI (initialized, not finalized) in a job of more than one rank. */
export function inMpiJob(): boolean {
  if (launcherVariable() === null || !addon.mpi.available()) return false;
  try {
    return addon.mpi.size() > 1;
  } catch {
    return false; // MPI was never initialized (the command failed before training started)
  }
}

/** Ends every rank of the job with `code` (MPI_Abort): no rank is left waiting for this one. */
export function abortJob(code: number): void {
  addon.mpi.abort(code);
}

/** MPI_Finalize, once, at the end of a successful run (a no-op when MPI never started). */
export function finishJob(): void {
  if (launcherVariable() !== null && addon.mpi.available()) addon.mpi.finalize();
}
