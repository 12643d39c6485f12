/** Shared pieces of the CLI commands: common flags, output, model and data opening. */
import * as fs from 'fs';
import { DEVICE_CHOICES, DeviceChoice, PRECISIONS } from '../device';
import { localAdapterFolder, localModelFolder } from '../hub';
import type { DownloadProgress, HubOptions } from '../hub';
import { loadAdapter, parseAdapterSpec } from '../lora/apply';
import { BASE_DTYPES, BaseDtype, QUANTIZE_DTYPES, QuantizeDtype, storageOptions } from '../model/frozen_base';
import { planMemory } from '../model/decoder';
import { openModel, OpenedModel } from '../model/open';
import type { Tokenizer } from '../tokenizer';
import type { MemoryCheck } from '../model/open';
import { parseByteSize } from '../util/memory';
import { FlagSpec, UsageError } from './args';

export const COMMON: Record<string, FlagSpec> = {
  threads: { type: 'int', min: 1, help: 'CPU threads for the kernels (default: all cores)' },
  device: { type: 'string', choices: DEVICE_CHOICES, default: 'cpu', help: 'backend: cpu, cuda, or auto (cuda when a GPU is usable)' },
  precision: { type: 'string', choices: PRECISIONS, default: 'bf16', help: 'GPU matmul/attention precision: bf16 (mixed, fp32 master weights) or fp32; the CPU always uses fp32' },
  help: { type: 'bool', help: 'show this help' },
};

export const MAX_MEMORY_FLAG: Record<string, FlagSpec> = {
  'max-memory': { type: 'string', help: 'refuse to start when the run needs more memory than this (e.g. 8GB, 512MiB; default: what is available)' },
};

/**
 * The memory check of a command's run: its plan once the model's config is known (before anything
 * is allocated), against --max-memory or what the machine has.
 */
export function memoryCheck(v: Record<string, unknown>, what: string, plan: MemoryCheck['plan'], lower: string): MemoryCheck {
  const text = v['max-memory'] as string | undefined;
  const maxBytes = text === undefined ? null : parseByteSize(text);
  if (maxBytes === null && text !== undefined) throw new UsageError(`--max-memory: expected a size such as 8GB or 512MiB but received '${text}'`);
  return { what, plan, maxBytes, lower };
}

export interface Command {
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
  /** Flags naming a model that may be a Hugging Face Hub id: main() downloads it and passes the snapshot folder. */
  modelFlags?: string[];
  /** Flags naming PEFT adapters (DIR[:WEIGHT], repeatable) that may be Hub ids (org/name[@revision][:WEIGHT]): main() downloads them likewise. */
  adapterFlags?: string[];
  /** Whether the command reads positional arguments (it checks them); otherwise any is an error. */
  positionals?: boolean;
  run(values: Record<string, unknown>, positionals: string[]): Promise<void> | void;
}

export function out(line: string): void {
  process.stdout.write(line + '\n');
}

export function readTextFile(file: string, flag: string): string {
  if (!fs.existsSync(file)) throw new UsageError(`${flag} ${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new UsageError(`${flag} ${file}: expected a text file but found a folder`);
  return fs.readFileSync(file, 'utf8');
}

export { openModel };
export type { OpenedModel };

/**
 * --adapter, --base-dtype and --quantize: PEFT LoRA adapters applied on the loaded base, and how its
 * weights are stored (eval, generate, sample, chat). --quantize stores the blocks' linear weights
 * as --base-dtype does AND the LM head; the two flags may both be given only when they agree.
 */
export const ADAPTER_FLAGS: Record<string, FlagSpec> = {
  adapter: { type: 'strings', help: 'apply a PEFT LoRA adapter on the model: a folder DIR or a Hugging Face id org/name[@revision], with :WEIGHT to scale it; repeat to apply several at once' },
  'base-dtype': { type: 'string', choices: BASE_DTYPES, help: "store the base's linear weights as f32 (default), bf16, int8, nf4 (QLoRA inference), q8_0 or q4_k" },
  quantize: {
    type: 'string', choices: QUANTIZE_DTYPES,
    help: "weight-only quantized inference: the linear weights and the LM head in int8 (row-wise absmax), q8_0 or q4_k (ggml's blocks; q5_0 where a width is not a multiple of 256); a GGUF file's own quantized weights run as they are without it",
  },
};

/** openModel with the command's --base-dtype / --quantize (a GGUF file allowed), then every --adapter applied in order. */
export function openWithAdapters(v: Record<string, unknown>, spec: string, memory: MemoryCheck, flag: string): OpenedModel {
  const baseDtype = v['base-dtype'] as BaseDtype | undefined, quantize = v.quantize as QuantizeDtype | undefined;
  // The flags' conflict named as flags, before anything is read.
  const storage = storageOptions(baseDtype, quantize, { baseDtype: '--base-dtype', quantize: '--quantize' });
  // The plan's parameters in the store these flags ask for (a GGUF file's own blocks are planned as float32: an upper bound).
  const stored: MemoryCheck = { ...memory, plan: (cfg) => ({ ...memory.plan(cfg), parameters: planMemory(cfg, { batch: null, training: false, ...storage }).parts.parameters }) };
  const opened = openModel(spec, v.device as DeviceChoice, 0, stored, flag, { baseDtype, quantize, gguf: true });
  if (opened.model.storageNote !== null) process.stderr.write(`note: ${opened.model.storageNote}\n`);
  try {
    for (const value of (v.adapter as string[] | undefined) ?? []) {
      const { dir, weight } = parseAdapterSpec(value);
      loadAdapter(opened.model, dir, { weight, label: '--adapter' });
    }
  } catch (e) {
    opened.model.free();
    throw e;
  }
  return opened;
}

export function encodeFile(tokenizer: Tokenizer, file: string, flag: string): Int32Array {
  return Int32Array.from(tokenizer.encode(readTextFile(file, flag)));
}

/** --offline, for every command that takes a model (a Hub id such as gpt2 or org/name@revision). */
export const HUB_FLAGS: Record<string, FlagSpec> = {
  offline: { type: 'bool', help: 'take a Hugging Face model id (--model org/name) from the local cache only, never the network (as HF_HUB_OFFLINE=1)' },
};

/** The Hub settings of a command: --offline (else HF_HUB_OFFLINE), and a progress line on a terminal. */
export function hubOptions(v: Record<string, unknown>): HubOptions {
  return {
    offline: v.offline === true ? true : undefined, onProgress: downloadProgressLine(process.stderr),
    onWait: (message) => process.stderr.write(`note: ${message}\n`),
  };
}

/**
 * Replaces each of the command's model flags that holds a Hub model id (not an existing path) by
 * its snapshot folder in the cache, downloading what is missing; errors name the flag.
 */
export async function resolveModelFlags(command: Command, v: Record<string, unknown>): Promise<void> {
  for (const flag of command.modelFlags ?? []) {
    const spec = v[flag];
    if (typeof spec === 'string') v[flag] = (await localModelFolder(spec, `--${flag}`, hubOptions(v))).dir;
  }
  for (const flag of command.adapterFlags ?? []) {
    const specs = v[flag];
    if (!Array.isArray(specs)) continue;
    const local: string[] = [];
    for (const spec of specs as string[]) local.push(await localAdapterSpec(spec, `--${flag}`, v));
    v[flag] = local;
  }
}

/** An adapter value DIR[:WEIGHT] with a Hub id in place of DIR replaced by its snapshot folder (the :WEIGHT kept as written). */
export async function localAdapterSpec(value: string, label: string, v: Record<string, unknown>): Promise<string> {
  const { dir } = parseAdapterSpec(value);
  return `${await localAdapterFolder(dir, label, hubOptions(v))}${value.slice(dir.length)}`;
}

/** A download's progress as one rewritten line on a terminal (file, MB received of the total, rate); nothing otherwise. */
export function downloadProgressLine(stream: NodeJS.WriteStream): ((p: DownloadProgress) => void) | undefined {
  if (!stream.isTTY) return undefined;
  let shown = 0;
  let started = { file: '', at: 0, from: 0 };
  return (p) => {
    const now = Date.now();
    if (p.file !== started.file) started = { file: p.file, at: now, from: p.received };
    if (!p.done && now - shown < 100) return;
    shown = now;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const rate = (p.received - started.from) / Math.max(1e-3, (now - started.at) / 1000);
    const total = p.total === null ? '' : ` / ${mb(p.total)} MB (${Math.floor((100 * p.received) / Math.max(1, p.total))}%)`;
    stream.write(`\rdownloading ${p.file}: ${mb(p.received)}${total ? total : ' MB'}, ${mb(rate)} MB/s\x1b[K${p.done ? '\n' : ''}`);
  };
}

/**
 * A progress line on a terminal ("eval: 12/40 examples", rewritten in place at most every 100 ms
 * and erased at the end, so what follows starts on a clean line); undefined off a terminal, so
 * piped and redirected output is unchanged.
 */
export function progressLine(stream: NodeJS.WriteStream, what: string, unit: string): ((done: number, total: number) => void) | undefined {
  if (!stream.isTTY) return undefined;
  let shown = 0;
  return (done, total) => {
    const now = Date.now();
    if (done >= total) {
      stream.write('\r\x1b[K');
      return;
    }
    if (now - shown < 100) return;
    shown = now;
    stream.write(`\r${what}: ${done}/${total} ${unit} (${Math.floor((100 * done) / Math.max(1, total))}%)\x1b[K`);
  };
}

/**
 * Writes a generation's text as its tokens arrive: each token's new characters once decoded, holding
 * back a trailing U+FFFD (a character whose UTF-8 bytes are split across tokens) until it completes.
 * finish() writes what is left of the final text; the whole written text equals decode(all tokens).
 */
export function tokenStream(tokenizer: Tokenizer, write: (text: string) => void): { onToken(token: number): void; finish(tokens: readonly number[]): void } {
  const produced: number[] = [];
  let written = '';
  const flush = (text: string) => {
    if (!text.startsWith(written)) return; // a decoder that rewrites earlier text: wait for finish()
    const rest = text.slice(written.length);
    if (rest !== '') write(rest);
    written = text;
  };
  return {
    onToken(token) {
      produced.push(token);
      flush(tokenizer.decode(produced).replace(/\uFFFD+$/, ''));
    },
    finish(tokens) {
      const text = tokenizer.decode([...tokens]);
      if (text.startsWith(written)) flush(text);
      else write(`\n${text}`);
    },
  };
}
