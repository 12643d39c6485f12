/**
 * CUDA kernel benchmark, run on the GPU machine with plain node over the compiled JS:
 *   node dist/bench/gpu.js [--torch FILE] [--quick] [--json FILE]
 * Measures, on the device that gptune sees:
 *   - the two ceilings: device-to-device copy bandwidth (GB/s, bytes read + written) and our own
 *     bf16 matmul at 8192^3 (the best our kernel does; PyTorch/cuBLAS's number comes from --torch);
 *   - matmul TFLOP/s at GPT-2 124M training shapes (B=16, T=1024 -> N=16384 rows), forward and
 *     backward, bf16 and fp32; bf16 twice where cuBLASLt loads: our kernel ("matmul bf16") and
 *     cuBLASLt ("matmul bf16 cublaslt"), on the same bf16 operand copies;
 *   - attention forward and backward at B=16, T=1024, NH=12, C=768;
 *   - the Llama family's kernels at SmolLM2-135M's shapes: grouped-query attention (9 heads on 3 KV
 *     heads), RMSNorm, RoPE, SwiGLU;
 *   - the GGML block-format matmuls (Q4_0 .. Q6_K weights) decoding and prefilling at a 7B MLP shape,
 *     beside fp32;
 *   - a few memory-bound kernels at training shapes, in GB/s.
 * Timing: each kernel warms up, then runs in batches between two synchronizations (the binding
 * launches asynchronously on the backend's stream); the median of the batch times is reported.
 * --torch FILE reads bench/gpu_torch.py's JSON line (run first, same machine) and prints PyTorch's
 * numbers beside ours. Prints a table and one JSON line; --json FILE also writes that line to FILE.
 * --self-check runs every call on CPU arenas at toy sizes: a check of this script's plumbing on
 * machines without a GPU (its numbers mean nothing).
 */
import * as fs from 'fs';
import { GGML_BLOCK_TYPE_LIST } from '../lib/gguf/ggml_types';
import { addon, ArenaHandle, TensorRef } from '../lib/native';

type Precision = 'bf16' | 'fp32';
type MatmulBackend = 'auto' | 'native' | 'cublaslt';
const cuda = addon.cuda;
const K = addon.kernels;

const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const selfCheck = argv.includes('--self-check');
const quick = argv.includes('--quick') || selfCheck;
const arenaDevice = selfCheck ? 'cpu' : 'cuda';
/** Sizes: full (GPT-2 124M training), --quick (a quarter of the rows), --self-check (toys). */
const size = (full: number, quickSize: number, toy: number): number => (selfCheck ? toy : quick ? quickSize : full);

function sync(): void {
  if (!selfCheck) cuda.synchronize!();
}

/** Median milliseconds per call of fn: warm-up, then `batches` timed batches of `perBatch` calls. */
function timeMs(fn: () => void, perBatch = 10, batches = 5): number {
  for (let i = 0; i < 3; i++) fn();
  sync();
  const samples: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i++) fn();
    sync();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6 / perBatch);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

// ---- device buffers filled with random data (never zeros) ----
const arenas: ArenaHandle[] = [];
let seed = 12345;
function random(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
}
/** A device tensor of n floats in [lo, hi): 1M random floats written once, then doubled on the device. */
function randomTensor(n: number, lo = -1, hi = 1): TensorRef {
  const arena = new addon.Arena(arenaDevice, n);
  arenas.push(arena);
  const first = Math.min(n, 1 << 20);
  const host = new Float32Array(first);
  for (let i = 0; i < first; i++) host[i] = lo + (hi - lo) * random();
  arena.write(0, host);
  for (let filled = first; filled < n; filled *= 2) arena.copyFrom(filled, arena, 0, Math.min(filled, n - filled));
  return { arena, offset: 0, numel: n };
}
function freeAll(): void {
  while (arenas.length) arenas.pop()!.free();
}

interface Row { group: string; name: string; ms: number; rate: number; unit: string; torch?: number }
const rows: Row[] = [];
function record(group: string, name: string, ms: number, rate: number, unit: string, torch?: number): void {
  rows.push({ group, name, ms, rate, unit, torch });
}

function main(): void {
  if (!selfCheck && (!cuda.compiled || !cuda.deviceCount || cuda.deviceCount() === 0)) {
    console.log(`bench/gpu: no CUDA device (${cuda.compiled ? cuda.unavailableReason?.() : 'addon built without CUDA'})`);
    console.log(JSON.stringify({ bench: 'gpu', skipped: true }));
    return;
  }
  const device = !selfCheck && cuda.devices ? cuda.devices()[0] : undefined;
  const torchFile = option('torch');
  const torch: Record<string, number> = torchFile && fs.existsSync(torchFile)
    ? (JSON.parse(fs.readFileSync(torchFile, 'utf8').trim().split('\n').pop()!).results ?? {})
    : {};
  const canSetPrecision = typeof cuda.setMatmulPrecision === 'function';
  const precisions: Precision[] = canSetPrecision ? ['bf16', 'fp32'] : ['bf16'];
  // Matmul variants: each precision on our kernels, plus bf16 through cuBLASLt when it loaded.
  const backendInfo = !selfCheck && cuda.matmulBackend ? cuda.matmulBackend() : undefined;
  const ltLoaded = !!backendInfo?.cublasLt.loaded;
  if (backendInfo) {
    const lt = backendInfo.cublasLt;
    console.log(`cuBLASLt: ${lt.loaded ? `${lt.path} (version ${lt.version})` : `not loaded (${lt.reason})`}`);
  }
  type Variant = { precision: Precision; backend: MatmulBackend; group: string };
  const variants: Variant[] = precisions.flatMap((precision): Variant[] =>
    precision === 'bf16' && ltLoaded
      ? [{ precision, backend: 'native', group: precision }, { precision, backend: 'cublaslt', group: 'bf16 cublaslt' }]
      : [{ precision, backend: 'native', group: precision }]);

  // Ceiling 1: device-to-device copy, bytes read + written.
  {
    const n = size(256 << 20, 256 << 20, 1 << 20);  // 1 GiB
    const src = randomTensor(n);
    const dst = new addon.Arena(arenaDevice, n);
    arenas.push(dst);
    const ms = timeMs(() => dst.copyFrom(0, src.arena, 0, n), 5, 5);
    record('ceiling', 'device copy 1 GiB', ms, (2 * n * 4) / ms / 1e6, 'GB/s', torch['copy_gbs']);
    freeAll();
  }
  // Ceiling 2: our bf16 matmul at a large square size.
  for (const { precision, backend, group } of variants) {
    cuda.setMatmulPrecision?.(precision);
    cuda.setMatmulBackend?.(backend);
    const n = size(8192, 4096, 96);
    const a = randomTensor(n * n), w = randomTensor(n * n), out = randomTensor(n * n);
    const ms = timeMs(() => K.matmul_forward(out, a, w, null, n, n, n), precision === 'bf16' ? 5 : 2, 3);
    record('ceiling', `matmul ${group} ${n}^3`, ms, (2 * n ** 3) / ms / 1e9, 'TFLOP/s', torch[`matmul_${precision}_${n}`]);
    freeAll();
  }

  // GPT-2 124M linear layers at B=16, T=1024.
  const N = size(16384, 4096, 32);
  const shapes: [string, number, number][] = [
    ['attn.c_attn', 768, 2304], ['attn.c_proj', 768, 768], ['mlp.c_fc', 768, 3072], ['mlp.c_proj', 3072, 768],
    ['lm_head', 768, 50257],
  ];
  for (const { precision, backend, group } of variants) {
    cuda.setMatmulPrecision?.(precision);
    cuda.setMatmulBackend?.(backend);
    for (const [name, C, OC] of shapes) {
      const inp = randomTensor(N * C), weight = randomTensor(OC * C), bias = randomTensor(OC);
      const out = randomTensor(N * OC), dout = randomTensor(N * OC), dinp = randomTensor(N * C), dweight = randomTensor(OC * C);
      const dbias = randomTensor(OC);
      const flops = 2 * N * C * OC;
      const per = precision === 'bf16' ? 10 : 3;
      const fwd = timeMs(() => K.matmul_forward(out, inp, weight, bias, N, C, OC), per, 5);
      record(`matmul ${group}`, `${name} fwd ${N}x${C}->${OC}`, fwd, flops / fwd / 1e9, 'TFLOP/s', torch[`linear_${precision}_${name}_fwd`]);
      const bwd = timeMs(() => K.matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC), per, 5);
      record(`matmul ${group}`, `${name} bwd`, bwd, (2 * flops) / bwd / 1e9, 'TFLOP/s', torch[`linear_${precision}_${name}_bwd`]);
      freeAll();
    }
  }
  cuda.setMatmulPrecision?.('bf16');
  cuda.setMatmulBackend?.('auto');

  // Attention at B=16, T=1024, NH=12, C=768 (hs 64), causal. FLOPs as flash-attention counts them:
  // forward 2 matmuls of B*NH*T*T*hs multiply-adds, halved by the mask; backward 2.5x the forward.
  const attentionPrecisions: Precision[] = typeof cuda.setAttentionPrecision === 'function' ? ['fp32', 'bf16'] : ['fp32'];
  for (const precision of attentionPrecisions) {
    cuda.setAttentionPrecision?.(precision);
    const B = size(16, 4, 1), T = size(1024, 1024, 64), C = 768, NH = 12;
    const qkv = randomTensor(B * T * 3 * C), out = randomTensor(B * T * C), lse = randomTensor(B * NH * T);
    const dout = randomTensor(B * T * C), dqkv = randomTensor(B * T * 3 * C);
    const fwdFlops = 2 * 2 * B * NH * T * T * (C / NH) / 2;
    const torchKey = precision === 'bf16' ? 'sdpa' : 'sdpa_fp32';
    const fwd = timeMs(() => K.attention_forward(out, lse, qkv, null, B, T, NH, NH, C / NH, 0, 0), 5, 5);
    record(`attention ${precision}`, `forward B=${B} T=${T} NH=${NH} C=${C}`, fwd, fwdFlops / fwd / 1e9, 'TFLOP/s', torch[`${torchKey}_fwd_ms`]);
    const bwd = timeMs(() => K.attention_backward(dqkv, dout, qkv, out, lse, null, B, T, NH, NH, C / NH, 0, 0), 3, 5);
    record(`attention ${precision}`, 'backward', bwd, (2.5 * fwdFlops) / bwd / 1e9, 'TFLOP/s', torch[`${torchKey}_bwd_ms`]);
    freeAll();
  }
  cuda.setAttentionPrecision?.('fp32');

  // The Llama family's kernels at SmolLM2-135M's training shapes (B=16, T=1024: N=16384 rows, C=576,
  // NH=9 query heads on NKV=3 KV heads of HS=64, SwiGLU hidden H=1536): grouped-query attention in bf16
  // (PyTorch's number: SDPA on the K/V heads repeated to 9, transformers' sdpa path), RMSNorm, RoPE
  // (in place on q and k) and SwiGLU, in GB/s over the bytes each must move.
  {
    const B = size(16, 4, 1), T = size(1024, 1024, 64), NH = 9, NKV = 3, HS = 64, C = 576, H = 1536;
    const N = B * T, QKV = (NH + 2 * NKV) * HS;
    cuda.setAttentionPrecision?.('bf16');
    const qkv = randomTensor(N * QKV), out = randomTensor(N * NH * HS), lse = randomTensor(B * NH * T);
    const dout = randomTensor(N * NH * HS), dqkv = randomTensor(N * QKV);
    const fwdFlops = 2 * 2 * B * NH * T * T * HS / 2;
    const fwd = timeMs(() => K.attention_forward(out, lse, qkv, null, B, T, NH, NKV, HS, 0, 0), 5, 5);
    record('llama (smollm2-135m)', `GQA attention bf16 fwd NH=${NH} NKV=${NKV}`, fwd, fwdFlops / fwd / 1e9, 'TFLOP/s', torch['llama_sdpa_fwd_ms']);
    const bwd = timeMs(() => K.attention_backward(dqkv, dout, qkv, out, lse, null, B, T, NH, NKV, HS, 0, 0), 3, 5);
    record('llama (smollm2-135m)', 'GQA attention bf16 bwd', bwd, (2.5 * fwdFlops) / bwd / 1e9, 'TFLOP/s', torch['llama_sdpa_bwd_ms']);
    cuda.setAttentionPrecision?.('fp32');
    const { cos, sin } = { cos: randomTensor(T * HS / 2), sin: randomTensor(T * HS / 2) };
    const rope = timeMs(() => K.rope_forward(qkv, cos, sin, null, B, T, NH, NKV, HS, T, 0), 20, 5);
    record('llama (smollm2-135m)', `rope_forward ${N}x(${NH}+${NKV})x${HS}`, rope, (2 * N * (NH + NKV) * HS * 4) / rope / 1e6, 'GB/s');
    freeAll();
    const x = randomTensor(N * C), y = randomTensor(N * C), w = randomTensor(C), rstd = randomTensor(N, 0.5, 1.5), dx = randomTensor(N * C), dw = randomTensor(C);
    const rms = timeMs(() => K.rmsnorm_forward(y, rstd, x, w, N, C, 1e-5), 20, 5);
    record('llama (smollm2-135m)', `rmsnorm_forward ${N}x${C}`, rms, (2 * N * C * 4) / rms / 1e6, 'GB/s');
    const rmsb = timeMs(() => K.rmsnorm_backward(dx, dw, y, x, w, rstd, N, C), 20, 5);
    record('llama (smollm2-135m)', `rmsnorm_backward ${N}x${C}`, rmsb, (3 * N * C * 4) / rmsb / 1e6, 'GB/s');
    freeAll();
    const gateUp = randomTensor(N * 2 * H), act = randomTensor(N * H), dgateUp = randomTensor(N * 2 * H);
    const sw = timeMs(() => K.swiglu_forward(act, gateUp, N, H), 20, 5);
    record('llama (smollm2-135m)', `swiglu_forward ${N}x${H}`, sw, (3 * N * H * 4) / sw / 1e6, 'GB/s');
    const swb = timeMs(() => K.swiglu_backward(dgateUp, act, gateUp, N, H), 20, 5);
    record('llama (smollm2-135m)', `swiglu_backward ${N}x${H}`, swb, (5 * N * H * 4) / swb / 1e6, 'GB/s');
    freeAll();
  }

  // GGML block formats (weight-only, float32 activations) at a Llama-2-7B MLP shape (C = 4096 -> OC =
  // 11008): decoding (N = 1, the warp-per-row kernel) in GB/s of weight bytes read, beside the fp32
  // matmul's N = 1 on the same shape (4-byte weights, same unit); prefill (N = 512, dequantized slabs
  // on the fp32 GEMM) in TFLOP/s, beside fp32 again.
  {
    const C = size(4096, 4096, 256), OC = size(11008, 11008, 64), prefill = size(512, 512, 16);
    const weight = randomTensor(OC * C);
    const fp32Out = randomTensor(prefill * OC), x = randomTensor(prefill * C);
    cuda.setMatmulPrecision?.('fp32');
    const fp32Decode = timeMs(() => K.matmul_forward(fp32Out, x, weight, null, 1, C, OC), 20, 5);
    record('ggml (7B MLP up)', `fp32 decode N=1 ${C}->${OC}`, fp32Decode, (OC * C * 4) / fp32Decode / 1e6, 'GB/s');
    const fp32Prefill = timeMs(() => K.matmul_forward(fp32Out, x, weight, null, prefill, C, OC), 3, 5);
    record('ggml (7B MLP up)', `fp32 prefill N=${prefill}`, fp32Prefill, (2 * prefill * C * OC) / fp32Prefill / 1e9, 'TFLOP/s');
    cuda.setMatmulPrecision?.('bf16');
    for (const t of GGML_BLOCK_TYPE_LIST) {
      const bytes = (OC * C) / t.block * t.bytes;
      const blocks = new addon.Arena(arenaDevice, Math.ceil(bytes / 4));
      arenas.push(blocks);
      const w = { arena: blocks, offset: 0, numel: Math.ceil(bytes / 4) };
      K.quantize_ggml(w, weight, t.id, OC, C);
      const decode = timeMs(() => K.matmul_ggml_forward(fp32Out, x, w, null, t.id, 1, C, OC, OC), 20, 5);
      record('ggml (7B MLP up)', `${t.name} decode N=1`, decode, bytes / decode / 1e6, 'GB/s');
      const pre = timeMs(() => K.matmul_ggml_forward(fp32Out, x, w, null, t.id, prefill, C, OC, OC), 3, 5);
      record('ggml (7B MLP up)', `${t.name} prefill N=${prefill}`, pre, (2 * prefill * C * OC) / pre / 1e9, 'TFLOP/s');
    }
    freeAll();
  }

  // Memory-bound kernels at training shapes (GB/s over the bytes each must move).
  {
    const rowsN = size(16384, 4096, 16), C = 768, V = 50257;
    const x = randomTensor(rowsN * C), y = randomTensor(rowsN * C), w = randomTensor(C), b = randomTensor(C);
    const mean = randomTensor(rowsN), rstd = randomTensor(rowsN, 0.5, 1.5);
    const ln = timeMs(() => K.layernorm_forward(y, mean, rstd, x, w, b, rowsN, C, 1e-5), 20, 5);
    record('memory', `layernorm_forward ${rowsN}x${C}`, ln, (2 * rowsN * C * 4) / ln / 1e6, 'GB/s');
    const dx = randomTensor(rowsN * C), dw = randomTensor(C), db = randomTensor(C);
    const lnb = timeMs(() => K.layernorm_backward(dx, dw, db, y, x, w, mean, rstd, rowsN, C), 20, 5);
    record('memory', `layernorm_backward ${rowsN}x${C}`, lnb, (4 * rowsN * C * 4) / lnb / 1e6, 'GB/s');
    const g = timeMs(() => K.gelu_forward(y, x, rowsN * C), 20, 5);
    record('memory', `gelu_forward ${rowsN}x${C}`, g, (2 * rowsN * C * 4) / g / 1e6, 'GB/s');
    freeAll();
    const logits = randomTensor(rowsN * V, -4, 4), losses = randomTensor(rowsN), lse = randomTensor(rowsN);
    const targets = new Int32Array(rowsN).map(() => Math.floor(random() * V));
    const ce = timeMs(() => K.crossentropy_forward(losses, lse, null, logits, targets, rowsN, V, -100), 5, 5);
    record('memory', `crossentropy_forward ${rowsN}x${V}`, ce, (rowsN * V * 4) / ce / 1e6, 'GB/s');
    const ceb = timeMs(() => K.crossentropy_backward(logits, logits, lse, targets, null, 1 / rowsN, rowsN, V, -100), 5, 5);
    record('memory', `crossentropy_backward (in place)`, ceb, (2 * rowsN * V * 4) / ceb / 1e6, 'GB/s');
    freeAll();
    const P = size(124_439_808, 124_439_808, 1 << 20);  // GPT-2 124M parameters
    const p = randomTensor(P), m = randomTensor(P, -0.01, 0.01), v = randomTensor(P, 0, 1e-4), grad = randomTensor(P);
    const adam = timeMs(() => K.adamw_update(p, m, v, grad, P, 1e-4, 0.9, 0.95, 1e-8, 0.1, 1, 10), 5, 5);
    record('memory', `adamw_update ${P} params`, adam, (7 * P * 4) / adam / 1e6, 'GB/s');
    const ss = timeMs(() => K.sum_squares(grad, P), 5, 5);
    record('memory', 'sum_squares (grad norm)', ss, (P * 4) / ss / 1e6, 'GB/s');
    freeAll();
  }

  // ---- report ----
  const title = selfCheck ? 'self-check on CPU arenas (toy sizes; the numbers mean nothing)'
    : `gptune CUDA kernels on ${device ? `${device.name} (sm ${device.computeCapability})` : 'GPU'}`;
  console.log(`\n${title}`);
  console.log(`${'group'.padEnd(21)} ${'kernel'.padEnd(40)} ${'ms'.padStart(9)} ${'rate'.padStart(9)} unit     ${Object.keys(torch).length ? 'pytorch' : ''}`);
  for (const r of rows) {
    const torchText = r.torch === undefined ? '' : `${r.torch.toFixed(2)}${r.unit === 'TFLOP/s' && r.group.startsWith('attention') ? ' ms' : ''}`;
    console.log(`${r.group.padEnd(21)} ${r.name.padEnd(40)} ${r.ms.toFixed(3).padStart(9)} ${r.rate.toFixed(1).padStart(9)} ${r.unit.padEnd(8)} ${torchText}`);
  }
  const line = JSON.stringify({ bench: 'gpu', device: selfCheck ? 'cpu self-check' : device?.name, date: new Date().toISOString(), quick, rows });
  console.log(line);
  const jsonFile = option('json');
  if (jsonFile) fs.writeFileSync(jsonFile, `${line}\n`);
}

main();
