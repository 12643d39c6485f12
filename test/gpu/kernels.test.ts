/**
 * CUDA kernels against the CPU kernels, on the same seeded random inputs at awkward sizes.
 *
 * Runs with node's own test runner on a GPU machine (no npm packages there):
 *   node --test dist/test/gpu/
 * Every float input is random (never zeros); every output buffer on the device is poisoned with NaN
 * before the kernel runs, so an element the kernel fails to write fails the comparison. Errors are
 * ||cuda - cpu|| / ||cpu|| over the whole tensor (for kernels that accumulate, over the increment:
 * result minus the shared random starting value).
 * Tolerances: 1e-5 for fp32 paths (float32 rounding in different summation orders and fast-math
 * exp/div, ~1e-6 expected); bf16 matmuls 1e-2 on general inputs (operands rounded to 8 mantissa
 * bits: ~3e-3 expected) and 1e-4 on inputs that are exactly representable in bf16 (then only the
 * tensor cores' fp32 accumulation differs from the CPU's, at ~1e-6; any wrong fragment would be
 * off by O(1)); bf16 attention (head size 64) on bf16-exact inputs: lse 1e-5, out and dqkv 5e-3
 * (P and dS are rounded to bf16 for their products: 2^-9 at most, ~1.5e-3 on the emulator).
 * Skips, with the reason printed, where CUDA is not compiled in or no GPU is present; under jest
 * (the CPU test suite) it registers one skipped test. GPTUNE_GPU_TEST_DEVICE=cpu runs the whole file
 * with CPU arenas in place of CUDA ones (CPU against CPU): a check of this file's own plumbing
 * (shapes, argument order, views at offsets) on machines without a GPU.
 */
import * as assert from 'node:assert';
import * as nodeTest from 'node:test';
import { addon, ArenaHandle, F, TensorRef } from '../../lib/native';
import { floatSlots, readElements, writeElements } from '../../lib/tensor';

type Precision = 'bf16' | 'fp32';
const cuda = addon.cuda;
const K = addon.kernels;

const underJest = process.env.JEST_WORKER_ID !== undefined;
const selfCheck = process.env.GPTUNE_GPU_TEST_DEVICE === 'cpu';
const testDevice = selfCheck ? 'cpu' : 'cuda';
const deviceCount = cuda.compiled && cuda.deviceCount ? cuda.deviceCount() : 0;
const skipReason = selfCheck
  ? undefined
  : !cuda.compiled
    ? 'this addon was built without CUDA'
    : deviceCount === 0
      ? `no usable GPU: ${cuda.unavailableReason ? cuda.unavailableReason() : 'unknown reason'}`
      : undefined;

// ---- seeded random numbers (mulberry32) ----
let seed = 0x9e3779b9;
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function randomArray(n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * random();
  return a;
}
function randomInts(n: number, below: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.floor(random() * below);
  return a;
}
/** Rounds every element to the nearest bf16 (ties to even), so bf16 casts of it are exact. */
function bf16Exact(a: Float32Array): Float32Array {
  const out = new Float32Array(a);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i];
    bits[i] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  }
  return out;
}

// ---- device buffers ----
const allocated: ArenaHandle[] = [];
/** A CUDA tensor holding `host`, at a view offset of `offset` floats into its arena. */
function toDevice(host: Float32Array, offset = 0): TensorRef {
  const arena = new addon.Arena(testDevice, Math.max(1, host.length + offset));
  allocated.push(arena);
  arena.write(offset, host);
  return { arena, offset, numel: host.length };
}
/** An output on the device, poisoned with NaN. */
function poisoned(n: number, offset = 0): TensorRef {
  const arena = new addon.Arena(testDevice, Math.max(1, n + offset));
  allocated.push(arena);
  arena.fill(NaN);
  return { arena, offset, numel: n };
}
function fromDevice(t: TensorRef): Float32Array {
  return t.arena.read(t.offset, t.numel);
}
function freeAll(): void {
  while (allocated.length) allocated.pop()!.free();
}

// ---- comparisons ----
function relL2(got: Float32Array, want: Float32Array): number {
  assert.strictEqual(got.length, want.length, 'length mismatch');
  let diff = 0, norm = 0;
  for (let i = 0; i < got.length; i++) {
    if (!Number.isFinite(got[i]) && Number.isFinite(want[i])) return Infinity;  // NaN: unwritten or broken
    diff += (got[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
}
function expectClose(name: string, got: Float32Array, want: Float32Array, tolerance: number): void {
  const err = relL2(got, want);
  assert.ok(err <= tolerance, `${name}: relative error ${err.toExponential(2)} exceeds ${tolerance}`);
}
/** For accumulating kernels: compares (got - base) with (want - base). */
/**
 * Compares the increments (result - shared starting value). When the exact increment cancels to
 * (near) zero, e.g. LayerNorm's dinp at C = 1, where g - mean(g) = 0 and x - mean(x) = 0, an error
 * relative to it means nothing; `termScale` then gives the magnitude of the terms being cancelled
 * (for dinp: rstd * weight * dout), and the error is measured against the larger of the two. A
 * wrong kernel is off by the order of those terms, so this still fails it.
 */
function expectIncrementClose(name: string, got: Float32Array, want: Float32Array, base: Float32Array, tolerance: number, termScale?: Float32Array): void {
  const g = new Float32Array(got.length), w = new Float32Array(want.length);
  let diff = 0, ref = 0, terms = 0;
  for (let i = 0; i < got.length; i++) {
    g[i] = got[i] - base[i];
    w[i] = want[i] - base[i];
    diff += (g[i] - w[i]) ** 2;
    ref += w[i] ** 2;
    if (termScale) terms += termScale[i] ** 2;
  }
  if (!termScale) return expectClose(name, g, w, tolerance);
  const err = Math.sqrt(diff) / Math.max(Math.sqrt(ref), Math.sqrt(terms));
  assert.ok(err <= tolerance, `${name}: error ${err.toExponential(2)} relative to max(|increment|, |terms|) exceeds ${tolerance}`);
}

const FP32 = 1e-5;
const BF16 = 1e-2;
const BF16_EXACT_INPUTS = 1e-4;

/** Without the setter only the backend's default (bf16) can be tested. */
const canSetPrecision = typeof cuda.setMatmulPrecision === 'function';
const canSetAttention = typeof cuda.setAttentionPrecision === 'function';
function setMatmulPrecision(p: Precision): void {
  if (canSetPrecision) cuda.setMatmulPrecision!(p);
}

// ---- the tests ----
const describe = nodeTest.describe;
const test = nodeTest.test;

if (underJest) {
  (globalThis as unknown as { test: { skip(name: string, fn: () => void): void } }).test.skip(
    'CUDA kernel tests run with `node --test dist/test/gpu/` on a GPU machine', () => undefined);
} else if (skipReason) {
  console.log(`CUDA kernel tests skipped: ${skipReason}`);
  test('CUDA kernels match the CPU kernels', { skip: skipReason }, () => undefined);
} else {
  const info = !selfCheck && cuda.devices ? cuda.devices()[0] : undefined;
  console.log(selfCheck ? 'self-check: CPU arenas stand in for CUDA ones'
    : `CUDA device: ${info ? `${info.name} (sm ${info.computeCapability}, ${(info.totalMemory / 2 ** 30).toFixed(0)} GiB)` : '?'}`);

  describe('device memory', { skip: selfCheck ? 'self-check' : undefined }, () => {
    test('an impossible allocation throws a sized out-of-memory error, and the device keeps working', () => {
      assert.throws(() => new addon.Arena('cuda', 2 ** 40),
        /CUDA out of memory: tried to allocate [\d.]+ MiB with [\d.]+ MiB free of [\d.]+ MiB; lower the batch size or seq_len/);
      const x = randomArray(1000);
      const t = toDevice(x, 3);
      K.scale_inplace(t, 2, x.length);
      expectClose('scale after OOM', fromDevice(t), x.map((v) => 2 * v), 0);
      freeAll();
    });
  });

  /**
   * matmul_forward then matmul_backward on the device against the CPU kernels. Views at odd float
   * offsets (inp, bias, dweight) exercise unaligned pointers; the output is poisoned with NaN.
   */
  function checkMatmul(label: string, N: number, C: number, OC: number, exact: boolean, tolerance: number): void {
    const prep = exact ? bf16Exact : (a: Float32Array) => a;
    const inp = prep(randomArray(N * C)), weight = prep(randomArray(OC * C)), bias = randomArray(OC);
    const dout = prep(randomArray(N * OC));
    const outCpu = new Float32Array(N * OC);
    K.matmul_forward(outCpu, inp, weight, bias, N, C, OC);
    const dInp = toDevice(inp, 1), dW = toDevice(weight), dB = toDevice(bias, 2), dOut = poisoned(N * OC);
    K.matmul_forward(dOut, dInp, dW, dB, N, C, OC);
    expectClose(`matmul_forward ${label}`, fromDevice(dOut), outCpu, tolerance);

    const dinp0 = randomArray(N * C), dw0 = randomArray(OC * C), db0 = randomArray(OC);
    const dinpCpu = dinp0.slice(), dwCpu = dw0.slice(), dbCpu = db0.slice();
    K.matmul_backward(dinpCpu, dwCpu, dbCpu, dout, inp, weight, N, C, OC);
    const gDinp = toDevice(dinp0), gDw = toDevice(dw0, 1), gDb = toDevice(db0), gDout = toDevice(dout);
    K.matmul_backward(gDinp, gDw, gDb, gDout, dInp, dW, N, C, OC);
    expectIncrementClose(`matmul_backward dinp ${label}`, fromDevice(gDinp), dinpCpu, dinp0, tolerance);
    expectIncrementClose(`matmul_backward dweight ${label}`, fromDevice(gDw), dwCpu, dw0, tolerance);
    expectIncrementClose(`matmul_backward dbias ${label}`, fromDevice(gDb), dbCpu, db0, FP32);
    // Null gradient outputs are skipped, not written.
    K.matmul_backward(null, gDw, null, gDout, dInp, dW, N, C, OC);
    freeAll();
  }
  const matmulShapes = [
    [1, 3, 5], [37, 45, 29], [130, 64, 257], [200, 136, 9], [512, 768, 2304],
  ];

  describe('matmul', () => {
    // Our own kernels: pinned to 'native', since 'auto' would hand bf16 to cuBLASLt where it loads.
    nodeTest.before(() => cuda.setMatmulBackend?.('native'));
    for (const precision of ['fp32', 'bf16'] as Precision[]) {
      for (const exact of precision === 'bf16' ? [false, true] : [false]) {
        for (const [N, C, OC] of matmulShapes) {
          const label = `${precision}${exact ? ' bf16-exact inputs' : ''} N=${N} C=${C} OC=${OC}`;
          const tolerance = precision === 'fp32' ? FP32 : exact ? BF16_EXACT_INPUTS : BF16;
          const skip = precision === 'fp32' && !canSetPrecision ? 'binding lacks cuda.setMatmulPrecision' : undefined;
          test(`forward and backward ${label}`, { skip }, () => {
            setMatmulPrecision(precision);
            checkMatmul(label, N, C, OC, exact, tolerance);
          });
        }
      }
    }
    nodeTest.after(() => {
      setMatmulPrecision('bf16');
      cuda.setMatmulBackend?.('auto');
    });
  });

  // The bf16 path through cuBLASLt (dlopen()ed at run time; absent on many machines): same checks
  // and tolerances as our bf16 kernel, plus the lm head's width (OC = 50257, odd) at a few rows.
  describe('matmul through cuBLASLt', () => {
    const backend = cuda.compiled && cuda.matmulBackend ? cuda.matmulBackend() : undefined;
    const ltSkip = selfCheck ? 'self-check runs on CPU arenas'
      : !backend ? 'binding lacks cuda.matmulBackend'
        : !backend.cublasLt.loaded ? `cuBLASLt not loaded: ${backend.cublasLt.reason}` : undefined;
    console.log(ltSkip ? `cuBLASLt matmul tests skipped: ${ltSkip}`
      : `cuBLASLt: ${backend!.cublasLt.path} (version ${backend!.cublasLt.version})`);

    test('backend selection: auto resolves to cuBLASLt exactly when it loaded; cublaslt without it throws the reason',
      { skip: backend ? undefined : 'binding lacks cuda.matmulBackend' }, () => {
        const loaded = backend!.cublasLt.loaded;
        cuda.setMatmulBackend!('auto');
        assert.strictEqual(cuda.matmulBackend!().active, loaded ? 'cublaslt' : 'native');
        cuda.setMatmulBackend!('native');
        assert.strictEqual(cuda.matmulBackend!().active, 'native');
        if (loaded) {
          cuda.setMatmulBackend!('cublaslt');
          assert.strictEqual(cuda.matmulBackend!().active, 'cublaslt');
        } else {
          assert.throws(() => cuda.setMatmulBackend!('cublaslt'), /cuBLASLt could not be loaded \(.+\)/);
          assert.strictEqual(cuda.matmulBackend!().setting, 'native', 'a refused setting leaves the previous one');
        }
        assert.throws(() => cuda.setMatmulBackend!('cublas' as 'auto'), /expected 'auto' or 'native' or 'cublaslt' for backend .* but received the string 'cublas'/);
        cuda.setMatmulBackend!('auto');
      });

    for (const exact of [false, true]) {
      for (const [N, C, OC] of matmulShapes.concat([[3, 768, 50257]])) {
        const label = `cuBLASLt bf16${exact ? ' bf16-exact inputs' : ''} N=${N} C=${C} OC=${OC}`;
        test(`forward and backward ${label}`, { skip: ltSkip }, () => {
          setMatmulPrecision('bf16');
          cuda.setMatmulBackend!('cublaslt');
          assert.strictEqual(cuda.matmulBackend!().active, 'cublaslt');
          checkMatmul(label, N, C, OC, exact, exact ? BF16_EXACT_INPUTS : BF16);
        });
      }
    }
    nodeTest.after(() => cuda.setMatmulBackend?.('auto'));
  });

  describe('attention', () => {
    // NKV = NH is GPT-2's multi-head case; the others share kv heads (ratios 2, 3, 4; one kv head).
    const cases: { B: number; T: number; NH: number; NKV: number; HS: number; segments: boolean }[] = [
      { B: 2, T: 37, NH: 3, NKV: 3, HS: 8, segments: false },
      { B: 2, T: 200, NH: 2, NKV: 2, HS: 64, segments: false }, // several tiles
      { B: 2, T: 45, NH: 3, NKV: 3, HS: 5, segments: true },    // scalar loads
      { B: 1, T: 70, NH: 2, NKV: 2, HS: 128, segments: true },
      { B: 3, T: 129, NH: 3, NKV: 3, HS: 64, segments: true },  // packed examples
      { B: 1, T: 1, NH: 1, NKV: 1, HS: 64, segments: false },
      { B: 2, T: 37, NH: 4, NKV: 2, HS: 10, segments: true },
      { B: 2, T: 129, NH: 9, NKV: 3, HS: 64, segments: true },  // SmolLM2's heads
      { B: 1, T: 70, NH: 4, NKV: 1, HS: 64, segments: false },
      { B: 2, T: 45, NH: 6, NKV: 2, HS: 6, segments: false },
    ];
    // bf16 (tensor cores, head size 64 only) on bf16-exact inputs: scores and lse are then exact
    // up to fp32 rounding (1e-5); out and dqkv carry the bf16 rounding of P and dS (2^-9 at most,
    // ~1.5e-3 measured on the emulator): 5e-3.
    const bf16Cases = cases.filter((c) => c.HS === 64).concat([{ B: 2, T: 300, NH: 2, NKV: 2, HS: 64, segments: true }]);
    // Dropout on the probabilities: the GPU draws the CPU's mask (one definition, dropout_mask.h); with
    // p > 0 the bf16 setting runs the fp32 kernels (no dropout in the tensor-core ones), so fp32's
    // tolerance, doubled for values scaled by up to 1/(1-p).
    const dropoutCases = [
      { B: 2, T: 129, NH: 3, NKV: 3, HS: 64, segments: true, dropout: 0.2, bf16: false },
      { B: 2, T: 37, NH: 4, NKV: 2, HS: 10, segments: false, dropout: 0.5, bf16: false },
      { B: 2, T: 129, NH: 9, NKV: 3, HS: 64, segments: true, dropout: 0.1, bf16: true },
    ];
    const runs = cases.map((c) => ({ ...c, bf16: false, dropout: 0 }))
      .concat(canSetAttention ? bf16Cases.map((c) => ({ ...c, bf16: true, dropout: 0 })) : [])
      .concat(dropoutCases.filter((c) => canSetAttention || !c.bf16));
    for (const { B, T, NH, NKV, HS, segments, bf16, dropout } of runs) {
      const label = `${bf16 ? 'bf16 ' : ''}B=${B} T=${T} NH=${NH} NKV=${NKV} HS=${HS}${segments ? ' segments' : ''}${dropout ? ` dropout ${dropout}` : ''}`;
      const tolerance = dropout > 0 ? 2 * FP32 : bf16 ? 5e-3 : FP32;
      const seed = 4242 + T;
      const W = (NH + 2 * NKV) * HS, O = NH * HS;
      test(`forward and backward ${label}`, () => {
        cuda.setAttentionPrecision?.(bf16 ? 'bf16' : 'fp32');
        const prep = bf16 ? bf16Exact : (a: Float32Array) => a;
        const qkv = prep(randomArray(B * T * W, -2, 2)), dout = prep(randomArray(B * T * O)), dqkv0 = randomArray(B * T * W);
        let seg: Int32Array | null = null;
        if (segments) {
          seg = new Int32Array(B * T);
          for (let b = 0; b < B; b++) {
            let id = 0;
            for (let t = 0; t < T; t++) {
              if (t > 0 && random() < 0.08) id++;  // packed examples of random lengths
              seg[b * T + t] = id;
            }
          }
        }
        const outCpu = new Float32Array(B * T * O), lseCpu = new Float32Array(B * NH * T), dqkvCpu = dqkv0.slice();
        K.attention_forward(outCpu, lseCpu, qkv, seg, B, T, NH, NKV, HS, dropout, seed);
        K.attention_backward(dqkvCpu, dout, qkv, outCpu, lseCpu, seg, B, T, NH, NKV, HS, dropout, seed);
        const gQkv = toDevice(qkv), gOut = poisoned(B * T * O), gLse = poisoned(B * NH * T, 1);
        K.attention_forward(gOut, gLse, gQkv, seg, B, T, NH, NKV, HS, dropout, seed);
        expectClose(`attention_forward out ${label}`, fromDevice(gOut), outCpu, tolerance);
        expectClose(`attention_forward lse ${label}`, fromDevice(gLse), lseCpu, FP32);
        const gDout = toDevice(dout), gDqkv = toDevice(dqkv0);
        K.attention_backward(gDqkv, gDout, gQkv, gOut, gLse, seg, B, T, NH, NKV, HS, dropout, seed);
        expectIncrementClose(`attention_backward dqkv ${label}`, fromDevice(gDqkv), dqkvCpu, dqkv0, tolerance);
        cuda.setAttentionPrecision?.('fp32');
        freeAll();
      });
    }
    for (const [NH, NKV, HS] of [[2, 2, 16], [2, 2, 64], [9, 3, 64], [4, 1, 10]]) {
      test(`KV-cache decoding NH=${NH} NKV=${NKV} HS=${HS}`, () => {
        const B = 2, Tq = 3, past = 70, maxT = 80, KV = NKV * HS, W = (NH + 2 * NKV) * HS, O = NH * HS;
        const kc = randomArray(B * maxT * KV), vc = randomArray(B * maxT * KV), qkv = randomArray(B * Tq * W);
        const kcCpu = kc.slice(), vcCpu = vc.slice(), outCpu = new Float32Array(B * Tq * O);
        K.attention_cached_forward(outCpu, kcCpu, vcCpu, qkv, B, Tq, past, maxT, NH, NKV, HS);
        const gKc = toDevice(kc), gVc = toDevice(vc), gQkv = toDevice(qkv), gOut = poisoned(B * Tq * O);
        K.attention_cached_forward(gOut, gKc, gVc, gQkv, B, Tq, past, maxT, NH, NKV, HS);
        expectClose(`attention_cached_forward out NH=${NH} NKV=${NKV} HS=${HS}`, fromDevice(gOut), outCpu, FP32);
        expectClose('kcache', fromDevice(gKc), kcCpu, 0);
        expectClose('vcache', fromDevice(gVc), vcCpu, 0);
        freeAll();
      });
    }
    for (const [NH, NKV, HS] of [[2, 2, 16], [9, 3, 64], [4, 1, 10]]) {
      test(`continuous-batching decode (per-row slots and lengths) NH=${NH} NKV=${NKV} HS=${HS}`, () => {
        // Rows in slots 3, 0, 2 of 4 at lengths 70, 5, 33; slot 1 untouched.
        const S = 4, B = 3, Tq = 2, maxT = 80, KV = NKV * HS, W = (NH + 2 * NKV) * HS, O = NH * HS;
        const slots = Int32Array.of(3, 0, 2), pasts = Int32Array.of(70, 5, 33);
        const kc = randomArray(S * maxT * KV), vc = randomArray(S * maxT * KV), qkv = randomArray(B * Tq * W);
        const kcCpu = kc.slice(), vcCpu = vc.slice(), outCpu = new Float32Array(B * Tq * O);
        K.attention_cached_rows_forward(outCpu, kcCpu, vcCpu, qkv, slots, pasts, B, Tq, S, maxT, NH, NKV, HS);
        const gKc = toDevice(kc), gVc = toDevice(vc), gQkv = toDevice(qkv), gOut = poisoned(B * Tq * O);
        K.attention_cached_rows_forward(gOut, gKc, gVc, gQkv, slots, pasts, B, Tq, S, maxT, NH, NKV, HS);
        expectClose(`attention_cached_rows_forward out NH=${NH} NKV=${NKV} HS=${HS}`, fromDevice(gOut), outCpu, FP32);
        expectClose('kcache', fromDevice(gKc), kcCpu, 0);
        expectClose('vcache', fromDevice(gVc), vcCpu, 0);
        freeAll();
      });
    }
  });

  describe('Llama-family kernels', () => {
    for (const [N, C] of [[1, 1], [37, 13], [300, 576]]) {
      test(`rmsnorm forward and backward N=${N} C=${C}`, () => {
        const inp = randomArray(N * C, -2, 2), w = randomArray(C, 0.5, 1.5), dout = randomArray(N * C);
        const out = new Float32Array(N * C), rstd = new Float32Array(N);
        K.rmsnorm_forward(out, rstd, inp, w, N, C, 1e-6);
        const gInp = toDevice(inp, 3), gW = toDevice(w), gOut = poisoned(N * C), gRstd = poisoned(N, 2);
        K.rmsnorm_forward(gOut, gRstd, gInp, gW, N, C, 1e-6);
        expectClose('rmsnorm_forward out', fromDevice(gOut), out, FP32);
        expectClose('rmsnorm_forward rstd', fromDevice(gRstd), rstd, FP32);
        const dinp0 = randomArray(N * C), dw0 = randomArray(C), dinp = dinp0.slice(), dw = dw0.slice();
        K.rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
        const gDinp = toDevice(dinp0), gDw = toDevice(dw0);
        K.rmsnorm_backward(gDinp, gDw, toDevice(dout), gInp, gW, gRstd, N, C);
        expectIncrementClose('rmsnorm_backward dinp', fromDevice(gDinp), dinp, dinp0, FP32);
        expectIncrementClose('rmsnorm_backward dweight', fromDevice(gDw), dw, dw0, FP32);
        freeAll();
      });
    }
    for (const [N, NH, NKV, HS] of [[7, 4, 2, 10], [64, 16, 8, 128]]) {
      test(`qknorm forward and backward N=${N} NH=${NH} NKV=${NKV} HS=${HS}`, () => {
        const W = (NH + 2 * NKV) * HS, S = N * (NH + NKV);
        const inp = randomArray(N * W, -2, 2), qw = randomArray(HS, 0.5, 1.5), kw = randomArray(HS, 0.5, 1.5), dout = randomArray(N * W);
        const out = new Float32Array(N * W), rstd = new Float32Array(S);
        K.qknorm_forward(out, rstd, inp, qw, kw, N, NH, NKV, HS, 1e-6);
        const gInp = toDevice(inp), gQw = toDevice(qw), gKw = toDevice(kw), gOut = poisoned(N * W), gRstd = poisoned(S);
        K.qknorm_forward(gOut, gRstd, gInp, gQw, gKw, N, NH, NKV, HS, 1e-6);
        expectClose('qknorm_forward out', fromDevice(gOut), out, FP32);
        expectClose('qknorm_forward rstd', fromDevice(gRstd), rstd, FP32);
        const dinp0 = randomArray(N * W), dqw0 = randomArray(HS), dkw0 = randomArray(HS);
        const dinp = dinp0.slice(), dqw = dqw0.slice(), dkw = dkw0.slice();
        K.qknorm_backward(dinp, dqw, dkw, dout, inp, qw, kw, rstd, N, NH, NKV, HS);
        const gDinp = toDevice(dinp0), gDqw = toDevice(dqw0), gDkw = toDevice(dkw0);
        K.qknorm_backward(gDinp, gDqw, gDkw, toDevice(dout), gInp, gQw, gKw, gRstd, N, NH, NKV, HS);
        expectIncrementClose('qknorm_backward dinp', fromDevice(gDinp), dinp, dinp0, FP32);
        expectIncrementClose('qknorm_backward dq_weight', fromDevice(gDqw), dqw, dqw0, FP32);
        expectIncrementClose('qknorm_backward dk_weight', fromDevice(gDkw), dkw, dkw0, FP32);
        freeAll();
      });
    }
    for (const [NH, NKV, HS, withPositions] of [[4, 2, 10, true], [9, 3, 64, false], [1, 1, 2, true]] as [number, number, number, boolean][]) {
      test(`rope forward and backward NH=${NH} NKV=${NKV} HS=${HS}${withPositions ? ' positions' : ' pos_offset'}`, () => {
        const B = 2, T = 19, maxPos = 40, half = HS / 2, W = (NH + 2 * NKV) * HS;
        const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
        for (let p = 0; p < maxPos; p++)
          for (let i = 0; i < half; i++) {
            const angle = p * 10000 ** (-(2 * i) / HS);
            cos[p * half + i] = Math.cos(angle);
            sin[p * half + i] = Math.sin(angle);
          }
        const positions = withPositions ? randomInts(B * T, maxPos) : null, posOffset = withPositions ? 0 : maxPos - T;
        const qkv = randomArray(B * T * W, -2, 2);
        const cpu = qkv.slice(), cpuBack = qkv.slice();
        K.rope_forward(cpu, cos, sin, positions, B, T, NH, NKV, HS, maxPos, posOffset);
        K.rope_backward(cpuBack, cos, sin, positions, B, T, NH, NKV, HS, maxPos, posOffset);
        const gCos = toDevice(cos), gSin = toDevice(sin, 5), gQkv = toDevice(qkv), gBack = toDevice(qkv, 1);
        K.rope_forward(gQkv, gCos, gSin, positions, B, T, NH, NKV, HS, maxPos, posOffset);
        K.rope_backward(gBack, gCos, gSin, positions, B, T, NH, NKV, HS, maxPos, posOffset);
        expectClose('rope_forward', fromDevice(gQkv), cpu, FP32);
        expectClose('rope_backward', fromDevice(gBack), cpuBack, FP32);
        freeAll();
      });
    }
    for (const [N, H] of [[1, 1], [9, 7], [64, 1536]]) {
      test(`swiglu forward and backward N=${N} H=${H}`, () => {
        const inp = randomArray(N * 2 * H, -8, 8), dout = randomArray(N * H), dinp0 = randomArray(N * 2 * H);
        const out = new Float32Array(N * H), dinp = dinp0.slice();
        K.swiglu_forward(out, inp, N, H);
        K.swiglu_backward(dinp, dout, inp, N, H);
        const gInp = toDevice(inp, 1), gOut = poisoned(N * H), gDinp = toDevice(dinp0);
        K.swiglu_forward(gOut, gInp, N, H);
        K.swiglu_backward(gDinp, toDevice(dout), gInp, N, H);
        expectClose('swiglu_forward', fromDevice(gOut), out, FP32);
        expectIncrementClose('swiglu_backward', fromDevice(gDinp), dinp, dinp0, FP32);
        freeAll();
      });
    }
    test('encoder without a position table', () => {
      const B = 3, T = 5, C = 12, V = 50;
      const wte = randomArray(V * C), tokens = randomInts(B * T, V), out = new Float32Array(B * T * C);
      K.encoder_forward(out, tokens, null, wte, null, B, T, C, 0);
      const gOut = poisoned(B * T * C);
      K.encoder_forward(gOut, tokens, null, toDevice(wte), null, B, T, C, 0);
      expectClose('encoder_forward (wpe null)', fromDevice(gOut), out, 0);
      const dout = randomArray(B * T * C), dwte0 = randomArray(V * C), dwte = dwte0.slice();
      K.encoder_backward(dwte, null, dout, tokens, null, B, T, C, 0);
      const gDwte = toDevice(dwte0);
      K.encoder_backward(gDwte, null, toDevice(dout), tokens, null, B, T, C, 0);
      expectIncrementClose('encoder_backward dwte (dwpe null)', fromDevice(gDwte), dwte, dwte0, FP32);
      freeAll();
    });
  });

  describe('layernorm', () => {
    for (const [N, C] of [[1, 1], [19, 13], [64, 768], [33, 100]]) {
      test(`forward and backward N=${N} C=${C}`, () => {
        const inp = randomArray(N * C, -2, 3), w = randomArray(C), b = randomArray(C), dout = randomArray(N * C);
        const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
        K.layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5);
        const gInp = toDevice(inp), gW = toDevice(w), gB = toDevice(b), gOut = poisoned(N * C), gMean = poisoned(N), gRstd = poisoned(N);
        K.layernorm_forward(gOut, gMean, gRstd, gInp, gW, gB, N, C, 1e-5);
        expectClose('layernorm_forward out', fromDevice(gOut), out, FP32);
        expectClose('layernorm_forward mean', fromDevice(gMean), mean, FP32);
        expectClose('layernorm_forward rstd', fromDevice(gRstd), rstd, FP32);
        const dinp0 = randomArray(N * C), dw0 = randomArray(C), db0 = randomArray(C);
        const dinp = dinp0.slice(), dw = dw0.slice(), db = db0.slice();
        K.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
        const gDinp = toDevice(dinp0, 1), gDw = toDevice(dw0), gDb = toDevice(db0), gDout = toDevice(dout);
        K.layernorm_backward(gDinp, gDw, gDb, gDout, gInp, gW, gMean, gRstd, N, C);
        const terms = Float32Array.from(dout, (d, i) => rstd[Math.floor(i / C)] * w[i % C] * d);
        expectIncrementClose('layernorm_backward dinp', fromDevice(gDinp), dinp, dinp0, FP32, terms);
        expectIncrementClose('layernorm_backward dweight', fromDevice(gDw), dw, dw0, FP32);
        expectIncrementClose('layernorm_backward dbias', fromDevice(gDb), db, db0, FP32);
        freeAll();
      });
    }
  });

  describe('elementwise', () => {
    for (const [n, offset] of [[1, 0], [7, 1], [1027, 0], [100003, 3]]) {
      test(`gelu, residual, add, scale, fill, sum_squares n=${n} view offset ${offset}`, () => {
        const x = randomArray(n, -6, 6), y = randomArray(n), dout = randomArray(n), acc0 = randomArray(n);
        const out = new Float32Array(n);
        K.gelu_forward(out, x, n);
        const gX = toDevice(x, offset), gY = toDevice(y), gD = toDevice(dout, offset), gOut = poisoned(n, offset);
        K.gelu_forward(gOut, gX, n);
        expectClose('gelu_forward', fromDevice(gOut), out, FP32);
        const acc = acc0.slice();
        K.gelu_backward(acc, x, dout, n);
        const gAcc = toDevice(acc0);
        K.gelu_backward(gAcc, gX, gD, n);
        // The increment dout * gelu'(x) can be ~0 (gelu' crosses zero near x = -0.75): its error is
        // measured against ||dout||, the scale of its terms (|gelu'| <= 1.13).
        const gotAcc = fromDevice(gAcc);
        let diff = 0, scale = 0;
        for (let i = 0; i < n; i++) {
          diff += ((gotAcc[i] - acc0[i]) - (acc[i] - acc0[i])) ** 2;
          scale += dout[i] ** 2;
        }
        const geluErr = Number.isFinite(diff) ? Math.sqrt(diff / scale) : Infinity;
        assert.ok(geluErr <= FP32, `gelu_backward: error ${geluErr.toExponential(2)} relative to ||dout|| exceeds ${FP32}`);
        K.residual_forward(out, x, y, n);
        K.residual_forward(gOut, gX, gY, n);
        expectClose('residual_forward', fromDevice(gOut), out, FP32);
        // Dropout: the GPU draws the CPU's mask, one multiply (and add) per element: equal bit for bit.
        for (const p of [0.1, 0.5]) {
          const seed = 99 + n, dropped = new Float32Array(n), acc = y.slice();
          K.dropout_forward(dropped, x, y, n, p, seed);
          K.dropout_backward(acc, x, n, p, seed);
          const gDropped = poisoned(n), gAcc2 = toDevice(y);
          K.dropout_forward(gDropped, gX, gY, n, p, seed);
          K.dropout_backward(gAcc2, gX, n, p, seed);
          expectClose(`dropout_forward p=${p}`, fromDevice(gDropped), dropped, 0);
          expectClose(`dropout_backward p=${p}`, fromDevice(gAcc2), acc, 0);
        }
        K.add_inplace(gX, gY, n);
        expectClose('add_inplace', fromDevice(gX), out, FP32);
        K.scale_inplace(gY, -0.75, n);
        const scaled = y.map((v) => -0.75 * v);
        expectClose('scale_inplace', fromDevice(gY), scaled, 0);
        const want = K.sum_squares(scaled, n), got = K.sum_squares(gY, n);
        assert.ok(Math.abs(got - want) <= 1e-9 * want, `sum_squares: ${got} vs ${want}`);
        K.fill(gY, 2.5, n);
        expectClose('fill', fromDevice(gY), new Float32Array(n).fill(2.5), 0);
        freeAll();
      });
    }
  });

  describe('encoder', () => {
    for (const [B, T, C, withPositions] of [[3, 5, 12, false], [2, 7, 13, true], [4, 64, 768, true]] as [number, number, number, boolean][]) {
      test(`forward and backward B=${B} T=${T} C=${C}${withPositions ? ' positions' : ' pos_offset 2'}`, () => {
        const V = 50, maxT = T + 3;
        const wte = randomArray(V * C), wpe = randomArray(maxT * C), tokens = randomInts(B * T, V);
        const positions = withPositions ? randomInts(B * T, T) : null;
        const posOffset = withPositions ? 0 : 2;
        const out = new Float32Array(B * T * C);
        K.encoder_forward(out, tokens, positions, wte, wpe, B, T, C, posOffset);
        const gWte = toDevice(wte), gWpe = toDevice(wpe, 1), gOut = poisoned(B * T * C);
        K.encoder_forward(gOut, tokens, positions, gWte, gWpe, B, T, C, posOffset);
        expectClose('encoder_forward', fromDevice(gOut), out, FP32);
        const dout = randomArray(B * T * C), dwte0 = randomArray(V * C), dwpe0 = randomArray(maxT * C);
        const dwte = dwte0.slice(), dwpe = dwpe0.slice();
        K.encoder_backward(dwte, dwpe, dout, tokens, positions, B, T, C, posOffset);
        const gDwte = toDevice(dwte0), gDwpe = toDevice(dwpe0), gDout = toDevice(dout);
        K.encoder_backward(gDwte, gDwpe, gDout, tokens, positions, B, T, C, posOffset);
        expectIncrementClose('encoder_backward dwte', fromDevice(gDwte), dwte, dwte0, FP32);
        expectIncrementClose('encoder_backward dwpe', fromDevice(gDwpe), dwpe, dwpe0, FP32);
        freeAll();
      });
    }
  });

  describe('crossentropy and softmax', () => {
    for (const [N, V] of [[1, 1], [6, 5], [9, 50257]]) {
      test(`forward, in-place backward, softmax N=${N} V=${V}`, () => {
        const ignore = -100;
        const logits = randomArray(N * V, -4, 4);
        if (V > 3) logits[3] = logits[1] = 9;  // a tie for row 0's maximum: the first index wins
        const targets = randomInts(N, V);
        if (N > 2) targets[2] = ignore;
        const losses = new Float32Array(N), lse = new Float32Array(N), pred = new Int32Array(N);
        K.crossentropy_forward(losses, lse, pred, logits, targets, N, V, ignore);
        const gLogits = toDevice(logits, 1), gLosses = poisoned(N), gLse = poisoned(N), gPred = new Int32Array(N).fill(-7);
        K.crossentropy_forward(gLosses, gLse, gPred, gLogits, targets, N, V, ignore);
        expectClose('crossentropy_forward losses', fromDevice(gLosses), losses, FP32);
        expectClose('crossentropy_forward lse', fromDevice(gLse), lse, FP32);
        assert.deepStrictEqual(Array.from(gPred), Array.from(pred), 'crossentropy_forward predictions');
        const dl = logits.slice();
        const gWeighted = toDevice(logits, 1);
        K.crossentropy_backward(dl, dl, lse, targets, null, 1 / 7, N, V, ignore);
        K.crossentropy_backward(gLogits, gLogits, gLse, targets, null, 1 / 7, N, V, ignore);
        expectClose('crossentropy_backward in place', fromDevice(gLogits), dl, FP32);
        const weights = randomArray(N, -2, 2), dlWeighted = logits.slice();
        K.crossentropy_backward(dlWeighted, dlWeighted, lse, targets, weights, 1 / 7, N, V, ignore);
        K.crossentropy_backward(gWeighted, gWeighted, gLse, targets, toDevice(weights), 1 / 7, N, V, ignore);
        expectClose('crossentropy_backward with row weights', fromDevice(gWeighted), dlWeighted, FP32);
        const probs = new Float32Array(N * V);
        K.softmax_forward(probs, logits, 1 / 0.7, N, V);
        const gIn = toDevice(logits), gProbs = poisoned(N * V);
        K.softmax_forward(gProbs, gIn, 1 / 0.7, N, V);
        expectClose('softmax_forward', fromDevice(gProbs), probs, FP32);
        freeAll();
      });
    }
  });

  describe('adamw', () => {
    test('per-tensor update n=1001, step 3, weight decay and grad scale', () => {
      const n = 1001;
      const p = randomArray(n), m = randomArray(n, -0.1, 0.1), v = randomArray(n, 0, 0.01), g = randomArray(n);
      const pc = p.slice(), mc = m.slice(), vc = v.slice();
      K.adamw_update(pc, mc, vc, g, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 3);
      const gp = toDevice(p), gm = toDevice(m, 1), gv = toDevice(v), gg = toDevice(g);
      K.adamw_update(gp, gm, gv, gg, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 3);
      expectIncrementClose('adamw params', fromDevice(gp), pc, p, FP32);
      expectClose('adamw m', fromDevice(gm), mc, FP32);
      expectClose('adamw v', fromDevice(gv), vc, FP32);
      freeAll();
    });
    const multiSkip = selfCheck ? 'CUDA-only entry point' : cuda.adamwUpdateMulti ? undefined : 'binding lacks cuda.adamwUpdateMulti';
    test('multi-tensor update matches per-tensor updates', { skip: multiSkip }, () => {
      const sizes = [40000, 1, 77], decay = [0.1, 0, 0];
      const tensors = sizes.map((n, i) => {
        const p = randomArray(n), m = randomArray(n, -0.1, 0.1), v = randomArray(n, 0, 0.01), g = randomArray(n);
        const pc = p.slice(), mc = m.slice(), vc = v.slice();
        K.adamw_update(pc, mc, vc, g, n, 2e-3, 0.8, 0.99, 1e-6, decay[i], 0.7, 1);
        return { p, pc, vc, ref: { params: toDevice(p), m: toDevice(m), v: toDevice(v), grads: toDevice(g), weightDecay: decay[i] } };
      });
      cuda.adamwUpdateMulti!(tensors.map((t) => t.ref), 2e-3, 0.8, 0.99, 1e-6, 0.7, 1);
      tensors.forEach((t, i) => {
        expectIncrementClose(`adamw multi params ${i}`, fromDevice(t.ref.params), t.pc, t.p, FP32);
        expectClose(`adamw multi v ${i}`, fromDevice(t.ref.v), t.vc, FP32);
      });
      freeAll();
    });
  });

  // native/cuda/quant.cu against native/cpu/quant.cc, the quantized and bf16 weights held in device
  // arena views (float slots, lib/tensor.ts writeElements): quantizing, dequantizing and bf16
  // rounding give the same bits on both (both apply gptune/quant_format.h's float32 steps to normal
  // floats); the matmuls differ only in float32 summation order (FP32). N <= 8 takes the direct
  // forward kernel, larger N the dequantized slabs; C = 4096, OC = 2000 spans two slabs.
  describe('quantized and bf16 weights', () => {
    type Bytes = Int8Array | Uint8Array | Uint16Array;
    const onDevice = (values: Bytes): TensorRef => {
      const arena = new addon.Arena(testDevice, floatSlots(values.byteLength) + 1);
      allocated.push(arena);
      arena.fill(NaN);
      return writeElements(arena, 1, values);
    };
    const bits = (a: Bytes | Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const expectSameBits = (name: string, got: Bytes | Float32Array, want: Bytes | Float32Array) =>
      assert.ok(bits(got).equals(bits(want)), `${name}: the device result differs from the CPU's bits`);
    /** Rows of magnitudes 10^-3..10^1, as trained layers have. */
    const spreadWeights = (n: number, row: number) => {
      const w = randomArray(n);
      for (let i = 0; i < n; i += row) {
        const scale = 10 ** (-3 + 4 * random());
        for (let j = i; j < Math.min(n, i + row); j++) w[j] = Math.fround(w[j] * scale);
      }
      return w;
    };

    const shapes = [[1, 1, 1], [1, 63, 21], [5, 65, 7], [8, 130, 33], [9, 257, 40], [17, 63, 45], [33, 130, 19],
      [512, 768, 2304], [3, 4096, 1000], [40, 4096, 2000]];
    for (const [N, C, OC] of shapes) {
      test(`int8, nf4, bf16: storage bit-identical to the CPU's, matmuls within float32 rounding, N=${N} C=${C} OC=${OC}`, () => {
        const n = OC * C, blocks = Math.ceil(n / 64);
        const w = spreadWeights(n, C), inp = randomArray(N * C), bias = randomArray(OC), dout = randomArray(N * OC), dinp0 = randomArray(N * C);
        const gW = toDevice(w, 3), gInp = toDevice(inp, 1), gBias = toDevice(bias, 2), gDout = toDevice(dout);

        const q = new Int8Array(n), scale = new Float32Array(OC);
        K.quantize_int8(q, scale, w, OC, C);
        const gQ = onDevice(new Int8Array(n).fill(85)), gScale = poisoned(OC);
        K.quantize_int8(gQ, gScale, gW, OC, C);
        expectSameBits('quantize_int8 q', readElements(gQ, Int8Array, n), q);
        expectSameBits('quantize_int8 scale', fromDevice(gScale), scale);

        const packed = new Uint8Array(Math.ceil(n / 2)), qabsmax = new Uint8Array(blocks);
        const absmax2 = new Float32Array(Math.ceil(blocks / 256)), offset = new Float32Array(1);
        K.quantize_nf4(packed, qabsmax, absmax2, offset, w, n);
        const gPacked = onDevice(new Uint8Array(packed.length).fill(85)), gQabsmax = onDevice(new Uint8Array(blocks).fill(85));
        const gAbsmax2 = poisoned(absmax2.length), gOffset = poisoned(1);
        K.quantize_nf4(gPacked, gQabsmax, gAbsmax2, gOffset, gW, n);
        expectSameBits('quantize_nf4 packed', readElements(gPacked, Uint8Array, packed.length), packed);
        expectSameBits('quantize_nf4 qabsmax', readElements(gQabsmax, Uint8Array, blocks), qabsmax);
        expectSameBits('quantize_nf4 absmax2', fromDevice(gAbsmax2), absmax2);
        expectSameBits('quantize_nf4 offset', fromDevice(gOffset), offset);

        const bf16 = new Uint16Array(n);
        K.convert_f32_to_bf16(bf16, w, n);
        const gBf16 = onDevice(new Uint16Array(n).fill(0x5555));
        K.convert_f32_to_bf16(gBf16, gW, n);
        expectSameBits('convert_f32_to_bf16', readElements(gBf16, Uint16Array, n), bf16);

        const deq = new Float32Array(n), gDeq = poisoned(n);
        K.dequantize_int8(deq, q, scale, OC, C);
        K.dequantize_int8(gDeq, gQ, gScale, OC, C);
        expectSameBits('dequantize_int8', fromDevice(gDeq), deq);
        K.dequantize_nf4(deq, packed, qabsmax, absmax2, offset, n);
        K.dequantize_nf4(gDeq, gPacked, gQabsmax, gAbsmax2, gOffset, n);
        expectSameBits('dequantize_nf4', fromDevice(gDeq), deq);

        const formats: [string, (out: F, inp: F, b: F | null, cpu: boolean) => void, (dinp: F, dout: F, cpu: boolean) => void][] = [
          ['int8', (out, x, b, cpu) => K.matmul_int8_forward(out, x, cpu ? q : gQ, cpu ? scale : gScale, b, N, C, OC),
            (dinp, dy, cpu) => K.matmul_int8_backward(dinp, dy, cpu ? q : gQ, cpu ? scale : gScale, N, C, OC)],
          ['nf4', (out, x, b, cpu) => K.matmul_nf4_forward(out, x, cpu ? packed : gPacked, cpu ? qabsmax : gQabsmax, cpu ? absmax2 : gAbsmax2, cpu ? offset : gOffset, b, N, C, OC),
            (dinp, dy, cpu) => K.matmul_nf4_backward(dinp, dy, cpu ? packed : gPacked, cpu ? qabsmax : gQabsmax, cpu ? absmax2 : gAbsmax2, cpu ? offset : gOffset, N, C, OC)],
          ['bf16', (out, x, b, cpu) => K.matmul_bf16_forward(out, x, cpu ? bf16 : gBf16, b, N, C, OC),
            (dinp, dy, cpu) => K.matmul_bf16_backward(dinp, dy, cpu ? bf16 : gBf16, N, C, OC)],
        ];
        for (const [name, forward, backward] of formats) {
          for (const withBias of [true, false]) {
            const outCpu = new Float32Array(N * OC), gOut = poisoned(N * OC, 1);
            forward(outCpu, inp, withBias ? bias : null, true);
            forward(gOut, gInp, withBias ? gBias : null, false);
            expectClose(`matmul_${name}_forward${withBias ? '' : ' (no bias)'}`, fromDevice(gOut), outCpu, FP32);
          }
          const dinpCpu = dinp0.slice(), gDinp = toDevice(dinp0, 1);
          backward(dinpCpu, dout, true);
          backward(gDinp, gDout, false);
          expectIncrementClose(`matmul_${name}_backward dinp`, fromDevice(gDinp), dinpCpu, dinp0, FP32);
        }
        freeAll();
      });
    }

    test('host typed arrays in a CUDA call, and CUDA views in a CPU call, are refused naming the argument', { skip: selfCheck ? 'needs two devices' : undefined }, () => {
      const N = 2, C = 64, OC = 3, n = OC * C;
      assert.throws(() => K.matmul_int8_forward(poisoned(N * OC), toDevice(randomArray(N * C)), new Int8Array(n), toDevice(randomArray(OC)), null, N, C, OC),
        /matmul_int8_forward: q is a host typed array \(cpu\) but the earlier tensors are on cuda; all tensors of one call must be on the same device/);
      assert.throws(() => K.matmul_bf16_forward(new Float32Array(N * OC), new Float32Array(N * C), onDevice(new Uint16Array(n)), null, N, C, OC),
        /matmul_bf16_forward: w is on cuda but the earlier tensors are on cpu; all tensors of one call must be on the same device/);
      assert.throws(() => K.quantize_nf4(new Uint8Array(n / 2), onDevice(new Uint8Array(3)), poisoned(1), poisoned(1), toDevice(randomArray(n)), n),
        /quantize_nf4: qabsmax is on cuda but the earlier tensors are on cpu/);
      freeAll();
    });
  });

  /**
   * LoRA adapters: lora_forward then lora_backward on the device against the CPU kernels, into a
   * column slice of wider rows (offset > 0, ld > offset + OC) with dout NaN outside the slice; fp32
   * products (1e-5) and bf16 (1e-2). The dropout mask must be bit-identical on both backends: with
   * C = R = OC = 1 and inp = A = B = 1, u is each element's multiplier (0 or 1/(1-p)) exactly.
   */
  describe('lora', () => {
    for (const [precision, tolerance] of [['fp32', FP32], ['bf16', BF16]] as [Precision, number][]) {
      for (const [N, C, R, OC, ld, offset, p] of [[1, 13, 1, 5, 5, 0, 0], [7, 37, 3, 11, 20, 4, 0.3], [512, 896, 16, 128, 1152, 1024, 0.05]]) {
        test(`lora forward and backward ${precision} N=${N} C=${C} R=${R} OC=${OC} ld=${ld} offset=${offset} p=${p}`, () => {
          setMatmulPrecision(precision);
          const inp = randomArray(N * C), A = randomArray(R * C), B = randomArray(OC * R), out0 = randomArray(N * ld);
          const dout = randomArray(N * ld);
          for (let n = 0; n < N; n++) for (let c = 0; c < ld; c++) if (c < offset || c >= offset + OC) dout[n * ld + c] = NaN;
          const out = out0.slice(), u = new Float32Array(N * R);
          K.lora_forward(out, u, inp, A, B, N, C, R, OC, ld, offset, 2, p, 31);
          const gOut = toDevice(out0, 1), gU = poisoned(N * R), gInp = toDevice(inp, 3), gA = toDevice(A), gB = toDevice(B, 2);
          K.lora_forward(gOut, gU, gInp, gA, gB, N, C, R, OC, ld, offset, 2, p, 31);
          expectClose('lora_forward u', fromDevice(gU), u, tolerance);
          expectIncrementClose('lora_forward out', fromDevice(gOut), out, out0, tolerance);
          const dinp0 = randomArray(N * C), dA0 = randomArray(R * C), dB0 = randomArray(OC * R);
          const dinp = dinp0.slice(), dA = dA0.slice(), dB = dB0.slice(), du = new Float32Array(N * R);
          K.lora_backward(dinp, dA, dB, du, dout, u, inp, A, B, N, C, R, OC, ld, offset, 2, p, 31);
          const gDinp = toDevice(dinp0), gDA = toDevice(dA0, 1), gDB = toDevice(dB0), gDu = poisoned(N * R);
          K.lora_backward(gDinp, gDA, gDB, gDu, toDevice(dout), toDevice(u), gInp, gA, gB, N, C, R, OC, ld, offset, 2, p, 31);
          expectClose('lora_backward du', fromDevice(gDu), du, tolerance);
          expectIncrementClose('lora_backward dinp', fromDevice(gDinp), dinp, dinp0, tolerance);
          expectIncrementClose('lora_backward dA', fromDevice(gDA), dA, dA0, tolerance);
          expectIncrementClose('lora_backward dB', fromDevice(gDB), dB, dB0, tolerance);
          freeAll();
        });
      }
    }
    test('the dropout mask is bit-identical to the CPU backend\'s (1e6 elements, p = 0.1, seed 2^53-1)', () => {
      setMatmulPrecision('fp32');
      const n = 1_000_000, p = 0.1, seed = 2 ** 53 - 1;
      const ones = new Float32Array(n).fill(1), u = new Float32Array(n);
      K.lora_forward(new Float32Array(n), u, ones, ones, ones, n, 1, 1, 1, 1, 0, 1, p, seed);
      const gOnes = toDevice(ones), gU = poisoned(n);
      K.lora_forward(poisoned(n), gU, gOnes, gOnes, gOnes, n, 1, 1, 1, 1, 0, 1, p, seed);
      const got = fromDevice(gU);
      for (let i = 0; i < n; i++) if (!Object.is(got[i], u[i])) assert.fail(`mask element ${i}: CUDA ${got[i]}, CPU ${u[i]}`);
      freeAll();
    });
  });
}
