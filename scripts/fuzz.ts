/**
 * Seeded, time-bounded fuzz pass over what takes untrusted input: the kernel bindings (random
 * argument types, shapes, views, hostile getters) and the safetensors, JSONL/CSV data and config
 * readers (mutated valid files). Every input must give a result or a typed error; a crash kills
 * this process (CI fails on the signal), and anything else is a finding printed with the seed and
 * iteration that reproduce it (exit 1):
 *   - kernels: a thrown value that is not an Error whose message starts with the binding's name;
 *   - readers: an engine error (TypeError, RangeError, ...) escaping our code, or a plain Error that
 *     does not name the file; a call slower than 5 s (a hang in the making).
 *
 *   ts-node --transpile-only scripts/fuzz.ts [--seed 1] [--iterations N] [--seconds 60] [--only kernels|readers]
 * The inputs depend on the seed only: the same seed and iteration count replay the same run. CI
 * fixes both and gives a time cap as a guard; a run the cap cut short says so.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { types } from 'util';
import { addon, kernels, F } from '../lib/native';
import { encodeSafetensors, readSafetensors, toFloat32 } from '../lib/io/safetensors';
import { loadRecords } from '../lib/data/records';
import { DataError } from '../lib/data/read';
import { ConfigError, DEFAULT_CONFIG, loadConfigFile } from '../lib/config';
import { UsageError } from '../lib/errors';
import { seededRandom } from '../test/helpers';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
};
const seed = Number(flag('seed', '1'));
const seconds = Number(flag('seconds', '60'));
const iterations = Number(flag('iterations', 'Infinity'));
const only = flag('only', 'all');
if (!Number.isInteger(seed) || !(seconds > 0) || !(iterations > 0) || !['all', 'kernels', 'readers'].includes(only)) {
  console.error('usage: fuzz.ts [--seed <integer>] [--iterations <n>] [--seconds <positive number>] [--only all|kernels|readers]');
  process.exit(2);
}

const rand = seededRandom(seed);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)];

interface Finding {
  target: string;
  iteration: number;
  input: string;
  problem: string;
}
const findings: Finding[] = [];
// Per target: calls that returned a result, and calls refused with an acceptable error.
const outcomes: Record<string, { ok: number; refused: number }> = {};
const tally = (target: string, ok: boolean) => {
  const t = (outcomes[target] ??= { ok: 0, refused: 0 });
  if (ok) t.ok++;
  else t.refused++;
};

// ---- kernel bindings ----

/**
 * Argument kinds: f float tensor, f? optional, i Int32Array (valid ids), i? optional, d dimension, n count, x number, b boolean;
 * q int8 weights, u uint8 weights, h bf16 weights (typed arrays or arena views in float slots);
 * g a GGML block type id (mostly one of the five), dg a dimension that is mostly a whole number of GGML blocks.
 */
const KERNELS: Record<string, string> = {
  matmul_forward: 'f f f f? d d d',
  matmul_backward: 'f? f? f? f f f d d d',
  quantize_int8: 'q f f d d',
  dequantize_int8: 'f q f d d',
  matmul_int8_forward: 'f f q f f? d d d',
  matmul_int8_backward: 'f? f q f d d d',
  quantize_nf4: 'u u f f f n',
  dequantize_nf4: 'f u u f f n',
  matmul_nf4_forward: 'f f u u f f f? d d d',
  matmul_nf4_backward: 'f? f u u f f d d d',
  matmul_bf16_forward: 'f f h f? d d d',
  matmul_bf16_backward: 'f? f h d d d',
  convert_f32_to_bf16: 'h f n',
  quantize_ggml: 'u f g d dg',
  dequantize_ggml: 'f u g d dg',
  matmul_ggml_forward: 'f f u f? g d dg d d',
  matmul_ggml_backward: 'f? f u g d dg d d',
  encoder_forward: 'f i i? f f? d d d d0',
  encoder_backward: 'f? f? f i i? d d d d0',
  layernorm_forward: 'f f? f? f f f d d x',
  layernorm_backward: 'f? f? f? f f f f f d d',
  gelu_forward: 'f f n',
  gelu_backward: 'f f f n',
  residual_forward: 'f f f n',
  add_inplace: 'f f n',
  scale_inplace: 'f x n',
  fill: 'f x n',
  sum_squares: 'f n',
  attention_forward: 'f f f i? d d d d d',
  attention_backward: 'f f f f f i? d d d d d',
  attention_cached_forward: 'f f f f d d d0 d d d d',
  rmsnorm_forward: 'f f? f f d d x',
  rmsnorm_backward: 'f? f? f f f f d d',
  qknorm_forward: 'f f? f f f d d d d x',
  qknorm_backward: 'f? f? f? f f f f f d d d d',
  rope_forward: 'f f f i? d d d d d d d0',
  rope_backward: 'f f f i? d d d d d d d0',
  swiglu_forward: 'f f d d',
  swiglu_backward: 'f f f d d',
  lora_forward: 'f f f f f d d d d d d0 x x n',
  lora_backward: 'f? f? f? f f f f f f d d d d d d0 x x n',
  crossentropy_forward: 'f f i? f i d d x',
  crossentropy_backward: 'f f f i f? x d d x',
  softmax_forward: 'f f x d d',
  adamw_update: 'f f f f n x x x x x x d',
};
// ES2024's resizable ArrayBuffer constructor, which the ES2022 typings do not describe.
const ResizableArrayBuffer = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
const TENSOR = 4096; // every generated tensor is this long, so small dimensions are mostly valid

const arenas: ReturnType<typeof newArena>[] = [];
function newArena(n: number) {
  return new addon.Arena('cpu', n);
}

/** A valid value for an argument kind: small dims, generous tensors (views or arrays). */
function valid(kind: string): unknown {
  switch (kind.replace('?', '')) {
    case 'f': {
      if (rand() < 0.5) return new Float32Array(TENSOR).map(() => rand() - 0.5);
      const arena = newArena(TENSOR * 2);
      arenas.push(arena);
      return { arena, offset: int(0, TENSOR), numel: TENSOR };
    }
    case 'i':
      return new Int32Array(TENSOR); // id 0 is valid everywhere
    case 'q':
    case 'u':
    case 'h': {
      if (rand() < 0.5) {
        const type = kind.startsWith('q') ? Int8Array : kind.startsWith('u') ? Uint8Array : Uint16Array;
        return new type(TENSOR).map(() => int(0, 255));
      }
      const arena = newArena(TENSOR * 2);
      arenas.push(arena);
      return { arena, offset: int(0, TENSOR), numel: TENSOR };  // float slots: 4 bytes each
    }
    case 'd':
      return pick([1, 1, 2, 3, 4, 8]);
    case 'd0':
      return int(0, 2);
    case 'g':
      return pick([2, 6, 8, 12, 14, 2, 8, 12, 1, 0, 13]);
    case 'dg':
      return pick([32, 64, 256, 32, 1, 48]);
    case 'n':
      return int(0, 64);
    case 'x':
      return pick([0.5, 1e-5, 0.9, 1, 0.1]);
    default:
      return true;
  }
}

/** Something hostile in place of an argument; `others` are the call's other arguments. */
function hostile(others: unknown[]): unknown {
  const victim = others.find((a) => a && typeof a === 'object' && !types.isProxy(a) && Object.getOwnPropertyDescriptor(a, 'arena')?.value instanceof addon.Arena) as
    | { arena: { free(): void } }
    | undefined;
  // The victim may be a look-alike arena (Object.create(Arena.prototype)), whose free() throws.
  const freeVictim = () => {
    try {
      victim?.arena.free();
    } catch {
      /* not a real arena */
    }
  };
  const typed = others.find((a) => ArrayBuffer.isView(a)) as Float32Array | undefined;
  const arena = newArena(TENSOR);
  arenas.push(arena);
  const choices: (() => unknown)[] = [
    () => pick([undefined, null, NaN, -1, Infinity, 2 ** 31, 2 ** 53, 1.5, '3', true, {}, [], () => 0, Symbol('s'), 10n]),
    () => new Float64Array(8),
    () => pick([new Int8Array(int(0, 3)), new Uint8Array(int(0, 3)), new Uint16Array(int(0, 3)), new Uint16Array(TENSOR)]),
    () => new Uint8Array(new ResizableArrayBuffer(TENSOR, { maxByteLength: TENSOR * 2 })),
    () => new Float32Array(int(0, 3)),
    () => new Int32Array(8).fill(pick([-1, 1 << 30, -100])),
    () => ({ arena, offset: pick([-1, TENSOR, 2 ** 53, NaN, '0', 1.5]), numel: int(0, TENSOR) }),
    () => ({ arena, offset: 0, numel: pick([TENSOR + 1, -1, NaN, 2 ** 60]) }),
    () => ({ arena: pick([{}, null, Object.create(addon.Arena.prototype), arena.data]), offset: 0, numel: 4 }),
    () => {
      arena.free();
      return { arena, offset: 0, numel: 4 };
    },
    // Getters that free, shrink, transfer or throw while the call's arguments are being read.
    () => ({ arena, offset: 0, get numel() { freeVictim(); return TENSOR; } }),
    () => ({ arena, offset: 0, get numel() { if (typed) structuredClone(typed.buffer, { transfer: [typed.buffer] }); return TENSOR; } }),
    () => ({ get arena() { throw new Error('getter throws'); }, offset: 0, numel: 4 }),
    () => new Proxy({}, { get: () => { freeVictim(); return 0; } }),
    () => new Float32Array(new ResizableArrayBuffer(TENSOR * 4, { maxByteLength: TENSOR * 8 })),
    () => {
      const detached = new Float32Array(4);
      structuredClone(detached.buffer, { transfer: [detached.buffer] });
      return detached;
    },
  ];
  return pick(choices)();
}

function fuzzKernels(iteration: number): void {
  const name = pick(Object.keys(KERNELS));
  const kinds = KERNELS[name].split(' ');
  const args = kinds.map((k) => (k.endsWith('?') && rand() < 0.3 ? null : valid(k)));
  const mutations = rand() < 0.2 ? 0 : int(1, 3);
  for (let m = 0; m < mutations; m++) {
    const i = int(0, args.length - 1);
    args[i] = hostile(args);
  }
  if (rand() < 0.05) args.push(0); // wrong argument count
  // Describing must not run the arguments' getters or proxy traps.
  const label = (a: unknown) => (a === null ? 'null' : types.isProxy(a) ? 'Proxy' : ArrayBuffer.isView(a) ? Object.prototype.toString.call(a) : typeof a);
  const describe = () => `${name}(${args.map(label).join(', ')})`;
  try {
    (kernels as unknown as Record<string, (...a: unknown[]) => unknown>)[name](...args);
    tally('kernels', true);
  } catch (e) {
    tally('kernels', false);
    if (!(e instanceof Error) && !(e && typeof e === 'object' && 'message' in e)) {
      findings.push({ target: 'kernels', iteration, input: describe(), problem: `threw a non-Error: ${String(e)}` });
      return;
    }
    const message = (e as Error).message;
    if (message !== 'getter throws' && !message.startsWith(`${name}:`))
      findings.push({ target: 'kernels', iteration, input: describe(), problem: `error does not name the kernel: ${message}` });
  }
  if (arenas.length > 256) arenas.splice(0).forEach((a) => a.free());
}

// ---- readers ----

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-fuzz-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

/** Byte-level mutations of a valid input: flips, truncation, duplication, splices of awkward text. */
function mutateBytes(input: Uint8Array): Uint8Array {
  let bytes = Buffer.from(input);
  const splices = ['null', '-1', '1e999', '"', '{', '}', '[]', '9007199254740993', '"F16"', '"I64"', '\u0000', '\n', '\ufffd', ',', ':'];
  for (let m = int(1, 4); m > 0; m--) {
    const at = int(0, Math.max(0, bytes.length - 1));
    switch (int(0, 4)) {
      case 0:
        if (bytes.length) bytes[at] ^= 1 << int(0, 7);
        break;
      case 1:
        bytes = bytes.subarray(0, at);
        break;
      case 2:
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(splices)), bytes.subarray(at)]);
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + int(1, 16)))]);
        break;
      default:
        if (bytes.length) bytes[at] = int(0, 255);
    }
  }
  return bytes;
}

function validSafetensors(): Uint8Array {
  const tensors = Array.from({ length: int(1, 3) }, (_, i) => {
    const shape = Array.from({ length: int(0, 3) }, () => int(1, 4));
    const n = shape.reduce((p, d) => p * d, 1);
    return { name: `t${i}`, shape, data: new Float32Array(n).map(() => rand()) };
  });
  return Buffer.concat(encodeSafetensors(tensors, rand() < 0.5 ? { format: 'pt' } : {}));
}

/** Replaces one value somewhere inside `value` (or `value` itself) by an awkward JSON value. */
function mutateJson(value: unknown): unknown {
  const awkward = () => pick<unknown>([null, -1, 0, 1e308, -1e-308, 2 ** 53 + 1, '', 'x'.repeat(int(0, 300)), true, [], {}, [null], { role: 7 }, '\ud800', 'NaN']);
  if (value === null || typeof value !== 'object' || rand() < 0.2) return awkward();
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [...value] : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (keys.length === 0 || rand() < 0.1) {
    (copy as Record<string, unknown>)[pick(['text', 'prompt', 'completion', 'messages', 'label', 'content', 'role', 'lr', '__proto__'])] = awkward();
    return copy;
  }
  const key = pick(keys);
  if (rand() < 0.15) delete (copy as Record<string, unknown>)[key];
  else (copy as Record<string, unknown>)[key] = mutateJson((copy as Record<string, unknown>)[key]);
  return copy;
}

/** A valid data file (JSONL of one kind, or CSV), value-mutated or not; bytes are mutated later. */
function validData(): { text: string; ext: string } {
  const kind = int(0, 4);
  const records = Array.from({ length: int(1, 5) }, (): unknown => {
    switch (kind) {
      case 0:
        return { text: 'hello world' };
      case 1:
        return { prompt: 'Q?', completion: 'A.' };
      case 2:
        return { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] };
      default:
        return { text: 'great film', label: pick(['pos', 'neg']) };
    }
  });
  if (kind === 4) return { text: `text,label\n"a, b",pos\nc,"n""eg"\n`, ext: '.csv' };
  const lines = records.map((r) => JSON.stringify(rand() < 0.5 ? mutateJson(r) : r));
  return { text: lines.join('\n') + '\n', ext: '.jsonl' };
}

/** A valid config (a random subset of the defaults, some values mutated) as JSON or YAML. */
function validConfig(): { text: string; ext: string } {
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(DEFAULT_CONFIG)) if (rand() < 0.3) config[key] = value;
  const mutated = rand() < 0.5 ? mutateJson(config) : config;
  // YAML as "key: <JSON value>" lines (JSON is valid YAML flow syntax); a non-object config as one value.
  const yaml = mutated !== null && typeof mutated === 'object' && !Array.isArray(mutated)
    ? Object.entries(mutated).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n') + '\n'
    : `${JSON.stringify(mutated)}\n`;
  return rand() < 0.5 ? { text: JSON.stringify(mutated, null, 1), ext: '.json' } : { text: yaml, ext: '.yaml' };
}

const ENGINE_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError];

function fuzzReader(iteration: number): void {
  const which = pick(['safetensors', 'data', 'config']);
  let file: string;
  let read: () => unknown;
  if (which === 'safetensors') {
    file = path.join(scratch, `m${iteration}.safetensors`);
    fs.writeFileSync(file, rand() < 0.9 ? mutateBytes(validSafetensors()) : validSafetensors());
    read = () => [...readSafetensors(file).tensors.values()].map((t) => toFloat32(t));
  } else {
    const { text, ext } = which === 'data' ? validData() : validConfig();
    file = path.join(scratch, `${which}${iteration}${ext}`);
    fs.writeFileSync(file, rand() < 0.5 ? mutateBytes(Buffer.from(text)) : Buffer.from(text));
    read = which === 'data' ? () => loadRecords(file, { skipInvalid: rand() < 0.5 }) : () => loadConfigFile(file);
  }
  const started = Date.now();
  try {
    read();
    tally(which, true);
  } catch (e) {
    tally(which, false);
    const typed = e instanceof ConfigError || e instanceof DataError || e instanceof UsageError;
    const engine = ENGINE_ERRORS.some((E) => e instanceof E);
    const namesFile = e instanceof Error && e.message.includes(file);
    if (!(e instanceof Error) || engine || (!typed && !namesFile)) {
      const kind = e instanceof Error ? e.constructor.name : typeof e;
      const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
      const copy = path.join(os.tmpdir(), `gptune-fuzz-finding-${seed}-${iteration}${path.extname(file)}`);
      fs.copyFileSync(file, copy);
      findings.push({ target: which, iteration, input: copy, problem: `${kind}: ${message}` });
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
  if (Date.now() - started > 5000) findings.push({ target: which, iteration, input: file, problem: 'took more than 5 s' });
}

// ---- the loop ----

const deadline = Date.now() + seconds * 1000;
let iteration = 0;
for (; iteration < iterations && Date.now() < deadline && findings.length < 20; iteration++) {
  const target = only === 'all' ? (rand() < 0.5 ? 'kernels' : 'readers') : only;
  if (target === 'kernels') fuzzKernels(iteration);
  else fuzzReader(iteration);
}
arenas.splice(0).forEach((a) => a.free());
const cutShort = Number.isFinite(iterations) && iteration < iterations && findings.length < 20;
const summary = { seed, iterations: iteration, seconds: Math.round(Date.now() - deadline + seconds * 1000) / 1000, outcomes, findings: findings.length, cutShort };
if (cutShort) console.log(`the ${seconds} s cap stopped the run after ${iteration} of ${iterations} iterations`);
for (const f of findings) console.log(`finding: ${f.target} iteration ${f.iteration}: ${f.problem}\n  input: ${f.input}`);
console.log(JSON.stringify(summary));
process.exit(findings.length ? 1 : 0);
