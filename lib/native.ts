/**
 * Loads the native addon and describes it for TypeScript, so every call from the model into the
 * kernels is type-checked. The loader tries each candidate location and, when all fail, lists
 * every attempt and what to do about it.
 */
import * as fs from 'fs';
import * as path from 'path';

export type DeviceName = 'cpu' | 'cuda';

/** Native float32 storage on one device, owned by the addon. */
export interface ArenaHandle {
  readonly numel: number;
  readonly device: DeviceName;
  /** CPU arenas only: a zero-copy Float32Array over the whole arena. */
  readonly data: Float32Array;
  read(offset: number, n?: number): Float32Array;
  write(offset: number, src: Float32Array): void;
  fill(value: number, offset?: number, n?: number): void;
  copyFrom(offset: number, src: ArenaHandle, srcOffset: number, n: number): void;
  free(): void;
}

/** A contiguous range of an arena: what kernels take on any device. */
export interface TensorRef {
  arena: ArenaHandle;
  offset: number;
  numel: number;
}

/** A float tensor argument: a view into an arena, or (CPU only) a plain Float32Array. */
export type F = TensorRef | Float32Array;
export type I = Int32Array;
/**
 * Quantized (int8 codes; packed NF4 codes and 8-bit block scales) and bf16 weights: a typed array
 * (CPU), or on any device a view whose offset and numel count the arena's 4-byte float slots, the
 * bytes starting at offset * 4 (lib/tensor.ts writeElements puts a typed array into an arena).
 */
export type I8 = Int8Array | TensorRef;
export type U8 = Uint8Array | TensorRef;
export type U16 = Uint16Array | TensorRef;

/** The kernels, with the argument order of native/include/gptune/kernels.inc. */
export interface Kernels {
  matmul_forward(out: F, inp: F, weight: F, bias: F | null, N: number, C: number, OC: number): void;
  matmul_backward(dinp: F | null, dweight: F | null, dbias: F | null, dout: F, inp: F, weight: F, N: number, C: number, OC: number): void;
  /** int8 weight-only, per output channel: q (OC,C), scale (OC) = absmax/127 (kernels.inc). */
  quantize_int8(q: I8, scale: F, weight: F, OC: number, C: number): void;
  dequantize_int8(weight: F, q: I8, scale: F, OC: number, C: number): void;
  matmul_int8_forward(out: F, inp: F, q: I8, scale: F, bias: F | null, N: number, C: number, OC: number): void;
  /** Input gradient only (a frozen base): dinp (N,C) += dout (N,OC) @ dequant(W). */
  matmul_int8_backward(dinp: F | null, dout: F, q: I8, scale: F, N: number, C: number, OC: number): void;
  /**
   * NF4 (QLoRA) over n weights: packed (ceil(n/2)) two codes a byte, earlier element high; qabsmax
   * (ceil(n/64)) double-quantized block absmax; absmax2 (ceil(ceil(n/64)/256)); offset (1).
   */
  quantize_nf4(packed: U8, qabsmax: U8, absmax2: F, offset: F, weight: F, n: number): void;
  dequantize_nf4(weight: F, packed: U8, qabsmax: U8, absmax2: F, offset: F, n: number): void;
  matmul_nf4_forward(out: F, inp: F, packed: U8, qabsmax: U8, absmax2: F, offset: F, bias: F | null, N: number, C: number, OC: number): void;
  matmul_nf4_backward(dinp: F | null, dout: F, packed: U8, qabsmax: U8, absmax2: F, offset: F, N: number, C: number, OC: number): void;
  /** bf16 frozen weights: w (OC,C) bfloat16 bit patterns, widened exactly; fp32 inputs and sums. */
  matmul_bf16_forward(out: F, inp: F, w: U16, bias: F | null, N: number, C: number, OC: number): void;
  /** Input gradient only: dinp (N,C) += dout (N,OC) @ w. */
  matmul_bf16_backward(dinp: F | null, dout: F, w: U16, N: number, C: number, OC: number): void;
  /** w_out (n) = inp rounded to bf16 (nearest, ties to even; NaN stays NaN). */
  convert_f32_to_bf16(w_out: U16, inp: F, n: number): void;
  /**
   * GGML block formats (kernels.inc; type ids, block sizes and bytes in lib/gguf/ggml_types.ts): a weight of
   * `rows` rows of C values (C a multiple of the type's block) stored as blocks (rows * C/block * blockBytes
   * bytes), quantized and dequantized bit for bit as ggml's reference code does.
   */
  quantize_ggml(blocks: U8, weight: F, type: number, rows: number, C: number): void;
  dequantize_ggml(weight: F, blocks: U8, type: number, rows: number, C: number): void;
  /** out[n*outStride + o] = inp (N,C) @ dequant(w)^T (OC rows of C) + bias, o < OC; outStride >= OC. */
  matmul_ggml_forward(out: F, inp: F, w: U8, bias: F | null, type: number, N: number, C: number, OC: number, outStride: number): void;
  /** Input gradient only: dinp (N,C) += dout[n*doutStride + o] (o < OC) @ dequant(w). */
  matmul_ggml_backward(dinp: F | null, dout: F, w: U8, type: number, N: number, C: number, OC: number, doutStride: number): void;
  /**
   * LoRA adapter after a base matmul (PEFT: y = base(x) + scaling * B(A(dropout(x)))): A (R,C), B (OC,R)
   * as PEFT's lora_A / lora_B weights; u (N,R) = dropout(inp) @ A^T is saved for the backward; out rows
   * have stride ld and columns [offset, offset + OC) get += scaling * u @ B^T. dropout p in [0,1),
   * its mask a pure function of (seed, n*C + c) with seed a whole number in [0, 2^53-1].
   */
  lora_forward(out: F, u: F, inp: F, A: F, B: F, N: number, C: number, R: number, OC: number, ld: number, offset: number, scaling: number, dropout: number, seed: number): void;
  /** du (N,R) is overwritten; dinp (N,C), dA (R,C), dB (OC,R) accumulate; dout has out's stride and offset. */
  lora_backward(dinp: F | null, dA: F | null, dB: F | null, du: F, dout: F, u: F, inp: F, A: F, B: F, N: number, C: number, R: number, OC: number, ld: number, offset: number, scaling: number, dropout: number, seed: number): void;
  /** wpe null: no learned position table (Llama family), out = wte[token]. */
  encoder_forward(out: F, tokens: I, positions: I | null, wte: F, wpe: F | null, B: number, T: number, C: number, posOffset: number): void;
  encoder_backward(dwte: F | null, dwpe: F | null, dout: F, tokens: I, positions: I | null, B: number, T: number, C: number, posOffset: number): void;
  layernorm_forward(out: F, mean: F | null, rstd: F | null, inp: F, weight: F, bias: F, N: number, C: number, eps: number): void;
  layernorm_backward(dinp: F | null, dweight: F | null, dbias: F | null, dout: F, inp: F, weight: F, mean: F, rstd: F, N: number, C: number): void;
  gelu_forward(out: F, inp: F, n: number): void;
  gelu_backward(dinp: F, inp: F, dout: F, n: number): void;
  residual_forward(out: F, a: F, b: F, n: number): void;
  /**
   * Inverted dropout of n floats, element i kept iff keep(seed, i, p) (native/include/gptune/dropout_mask.h):
   * out = residual + dropout(inp), or dropout(inp) when residual is null; p in [0, 1), seed an integer in [0, 2^53).
   */
  dropout_forward(out: F, inp: F, residual: F | null, n: number, p: number, seed: number): void;
  /** dinp += dout times the same multipliers (0 or 1/(1-p)). */
  dropout_backward(dinp: F, dout: F, n: number, p: number, seed: number): void;
  add_inplace(dst: F, src: F, n: number): void;
  scale_inplace(x: F, s: number, n: number): void;
  fill(x: F, value: number, n: number): void;
  sum_squares(x: F, n: number): number;
  /**
   * Grouped-query attention: qkv (B,T,(NH+2*NKV)*HS), out (B,T,NH*HS), lse (B,NH,T); GPT-2 is NKV = NH, HS = C/NH.
   * dropout p in [0, 1) on the probabilities (0: none), mask index ((b*NH + h)*T + key)*T + query; the backward takes the forward's p and seed.
   */
  attention_forward(out: F, lse: F, qkv: F, segmentIds: I | null, B: number, T: number, NH: number, NKV: number, HS: number, dropout: number, seed: number): void;
  attention_backward(dqkv: F, dout: F, qkv: F, out: F, lse: F, segmentIds: I | null, B: number, T: number, NH: number, NKV: number, HS: number, dropout: number, seed: number): void;
  /** kcache, vcache (B,maxT,NKV*HS): the cache holds the NKV kv heads only. */
  attention_cached_forward(out: F, kcache: F, vcache: F, qkv: F, B: number, Tq: number, past: number, maxT: number, NH: number, NKV: number, HS: number): void;
  /** Continuous batching: kcache, vcache (S,maxT,NKV*HS); row b writes and reads slot slots[b] (distinct) from position pasts[b]. */
  attention_cached_rows_forward(out: F, kcache: F, vcache: F, qkv: F, slots: I, pasts: I, B: number, Tq: number, S: number, maxT: number, NH: number, NKV: number, HS: number): void;
  rmsnorm_forward(out: F, rstd: F | null, inp: F, weight: F, N: number, C: number, eps: number): void;
  rmsnorm_backward(dinp: F | null, dweight: F | null, dout: F, inp: F, weight: F, rstd: F, N: number, C: number): void;
  /** Qwen3's per-head q_norm/k_norm on packed qkv (N,(NH+2*NKV)*HS); rstd (N,NH+NKV). */
  qknorm_forward(out: F, rstd: F | null, inp: F, qWeight: F, kWeight: F, N: number, NH: number, NKV: number, HS: number, eps: number): void;
  qknorm_backward(dinp: F | null, dqWeight: F | null, dkWeight: F | null, dout: F, inp: F, qWeight: F, kWeight: F, rstd: F, N: number, NH: number, NKV: number, HS: number): void;
  /** In place on the q and k heads of qkv; cos, sin (maxPos, HS/2); position positions[b*T+t] or posOffset + t. */
  rope_forward(qkv: F, cos: F, sin: F, positions: I | null, B: number, T: number, NH: number, NKV: number, HS: number, maxPos: number, posOffset: number): void;
  rope_backward(dqkv: F, cos: F, sin: F, positions: I | null, B: number, T: number, NH: number, NKV: number, HS: number, maxPos: number, posOffset: number): void;
  /** inp (N,2H) = [gate | up] per row; out (N,H) = silu(gate) * up. */
  swiglu_forward(out: F, inp: F, N: number, H: number): void;
  swiglu_backward(dinp: F, dout: F, inp: F, N: number, H: number): void;
  crossentropy_forward(losses: F, lse: F, predictions: I | null, logits: F, targets: I, N: number, V: number, ignoreIndex: number): void;
  /** dlogits (N,V) = scale * rowWeights[row] * (softmax - onehot) (rowWeights null: 1 for every row); 0 for ignored rows. */
  crossentropy_backward(dlogits: F, logits: F, lse: F, targets: I, rowWeights: F | null, scale: number, N: number, V: number, ignoreIndex: number): void;
  softmax_forward(probs: F, logits: F, invTemperature: number, N: number, V: number): void;
  adamw_update(params: F, m: F, v: F, grads: F, n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, gradScale: number, step: number): void;
}

export interface CudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  freeMemory: number;
  computeCapability: string;
}

export type CudaPrecision = 'bf16' | 'fp32';
export type CudaMatmulBackend = 'auto' | 'native' | 'cublaslt';

export interface CublasLtStatus {
  loaded: boolean;
  path: string;
  version: number;
  /** Why it did not load (every path tried, with dlopen's message). */
  reason: string;
}

/** The addon's `cuda` object; every function is absent when the addon was built without CUDA. */
export interface CudaBindings {
  compiled: boolean;
  /** Usable GPUs; 0 (never an exception) without a driver or a device. */
  deviceCount?(): number;
  unavailableReason?(): string;
  devices?(): CudaDevice[];
  setDevice?(index: number): void;
  /** Waits for the backend's stream; rethrows asynchronous kernel errors. */
  synchronize?(): void;
  setMatmulPrecision?(p: CudaPrecision): void;
  setAttentionPrecision?(p: CudaPrecision): void;
  precision?(): { matmul: CudaPrecision; attention: CudaPrecision };
  /** auto: cuBLASLt (when it loads) for shapes whose dimensions are multiples of 8, gptune's GEMM otherwise. */
  setMatmulBackend?(b: CudaMatmulBackend): void;
  matmulBackend?(): { setting: CudaMatmulBackend; active: 'native' | 'cublaslt'; cublasLt: CublasLtStatus };
  /** AdamW over several (params, m, v, grads) CUDA views in one launch. */
  adamwUpdateMulti?(
    tensors: { params: TensorRef; m: TensorRef; v: TensorRef; grads: TensorRef; weightDecay: number }[],
    lr: number, beta1: number, beta2: number, eps: number, gradScale: number, step: number,
  ): void;
}

/** A host buffer a collective works on in place: a Float32Array or a CPU arena view. */
type HostFloats = Float32Array | TensorRef;

/**
 * The addon's `mpi` object (native/napi/mpi.cc). Without MPI in the build, available() is false and every
 * other function throws one line saying how to get it. A collective that has not returned after setTimeout()
 * seconds (default 300) ends the whole job (MPI_Abort) with a line on stderr naming the ranks that never reached it.
 */
export interface MpiBindings {
  available(): boolean;
  /** '' when built with MPI, else what to install and how to rebuild. */
  unavailableReason(): string;
  /**
   * MPI_Init_thread once per process (under mpirun / srun), asking for MPI_THREAD_SERIALIZED. threadLevel is
   * what MPI granted; overlap says whether reduceAsync may run (serialized or multiple granted).
   */
  init(): { rank: number; size: number; threadLevel: 'single' | 'funneled' | 'serialized' | 'multiple' | 'unknown'; overlap: boolean };
  rank(): number;
  size(): number;
  setTimeout(seconds: number): void;
  /** In place: x becomes the element-wise sum over ranks (a Float64Array for scalars that need double precision). */
  allreduceSum(x: HostFloats | Float64Array): void;
  /**
   * Queues the in-place all-reduce of x (a CPU arena view) on the communication thread and returns at once (the
   * sums are bitwise those of allreduceSum). Until reduceWait() returns, every other collective refuses.
   */
  reduceAsync(x: TensorRef): void;
  /** Waits for every region reduceAsync queued; seconds waited here (the exposed time) and spent reducing. Throws the first failure. */
  reduceWait(): { regions: number; waitedSeconds: number; busySeconds: number };
  /** This rank's part [offset, offset + numel) of a buffer of `numel` elements under reduceScatterSum / allGather. */
  shard(numel: number): { offset: number; numel: number };
  /** shard receives the sum over ranks of this rank's part of full (full is worked on in place: its other parts then hold partial sums). */
  reduceScatterSum(full: HostFloats, shard: HostFloats): void;
  /** In place: every rank's part of full is copied to every rank. */
  allGather(full: HostFloats): void;
  broadcast(x: HostFloats | Uint8Array, root: number): void;
  barrier(): void;
  /** MPI_Abort: ends every rank of the job with exit code `code`. */
  abort(code: number): void;
  finalize(): void;
  /** The MPI library's version line. */
  library(): string;
}

/** The addon's `nccl` object: NCCL loaded at run time in CUDA builds; only available/unavailableReason otherwise. */
export interface NcclBindings {
  available(): boolean;
  unavailableReason(): string;
  version?(): number;
  uniqueId?(): Uint8Array;
  initRank?(id: Uint8Array, nranks: number, rank: number): void;
  initAll?(devices: number[]): void;
  setTimeout?(seconds: number): void;
  allreduceSum?(x: TensorRef, comm?: number): void;
  /** allreduceSum issued on NCCL's stream after the backend's work so far, not waited for. */
  reduceAsync?(x: TensorRef, comm?: number): void;
  /** Waits (against the timeout) for every reduceAsync since the last wait. */
  reduceWait?(comm?: number): { regions: number; waitedSeconds: number };
  reduceScatterSum?(full: TensorRef, shard: TensorRef, comm?: number): void;
  allGather?(full: TensorRef, shardNumel: number, comm?: number): void;
  /**
   * One process driving several GPUs (after initAll): views[i] on communicator i's GPU, all of one length;
   * each becomes the sum of all of them, the collectives issued in one NCCL group and awaited together.
   */
  allreduceSumAll?(views: TensorRef[]): void;
  /** Communicators this process holds (1 after initRank, the device count after initAll). */
  communicators?(): number;
  destroy?(): void;
}

export interface Addon {
  version: string;
  backends: string[];
  Arena: new (device: DeviceName, numel: number) => ArenaHandle;
  kernels: Kernels;
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F, lda: number, B: F, ldb: number, beta: number, C: F, ldc: number): void;
  /** The CPU's scalar reference of the GGML block matmuls (native/cpu/ggml_quant.h), CPU tensors only: for tests. */
  ggmlReference: Pick<Kernels, 'matmul_ggml_forward' | 'matmul_ggml_backward'>;
  cuda: CudaBindings;
  mpi: MpiBindings;
  nccl: NcclBindings;
  setNumThreads(n: number): void;
  numThreads(): number;
  simdLevel(): string;
  /**
   * Caps the SIMD level the CPU kernels use (GPTUNE_SIMD=avx2|portable does it at startup): for tests and benchmarks
   * of the narrower paths on a wider CPU; 'avx512' restores the CPU's own level. Returns simdLevel() afterwards.
   * Call it only while no kernel runs.
   */
  setSimdLimit(level: 'avx512' | 'avx2' | 'portable'): string;
  memory(): { cpuBytes: number; cudaBytes: number; blocks: number };
}

/** Where the addon may be: an explicit GPTUNE_ADDON path first, then the build folders. */
function candidates(): string[] {
  const root = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
  const list: string[] = [];
  if (process.env.GPTUNE_ADDON) list.push(path.resolve(process.env.GPTUNE_ADDON));
  list.push(path.join(root, 'build', 'Release', 'gptune.node'));
  list.push(path.join(root, 'build', 'Debug', 'gptune.node'));
  return list;
}

function load(): { addon: Addon; file: string } {
  const attempts: string[] = [];
  for (const file of candidates()) {
    if (!fs.existsSync(file)) {
      attempts.push(`${file}: not found`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      return { addon: require(file) as Addon, file };
    } catch (e) {
      attempts.push(`${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    `gptune: could not load the native addon. Tried:\n  ${attempts.join('\n  ')}\n` +
      'Build it with `npm run build:native` (cmake-js; needs cmake and a C++17 compiler) or ' +
      '`npm run build:gyp` (node-gyp), or point GPTUNE_ADDON at a built gptune.node.',
  );
}

const loaded = load();
export const addon: Addon = loaded.addon;
/** The gptune.node file that was loaded (for child processes that must load the same build). */
export const addonPath: string = loaded.file;
export const kernels: Kernels = addon.kernels;
