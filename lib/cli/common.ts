/** Shared pieces of the CLI commands: common flags, output, model and data opening. */
import * as fs from 'fs';
import { DEVICE_CHOICES, DeviceChoice, PRECISIONS, resolveDevice } from '../device';
import { loadModel } from '../model/checkpoint';
import { parseModelSpec } from '../model/config';
import { GPT2 } from '../model/gpt2';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { FlagSpec, UsageError } from './args';

export const COMMON: Record<string, FlagSpec> = {
  threads: { type: 'int', min: 1, help: 'CPU threads for the kernels (default: all cores)' },
  device: { type: 'string', choices: DEVICE_CHOICES, default: 'cpu', help: 'backend: cpu, cuda, or auto (cuda when a GPU is usable)' },
  precision: { type: 'string', choices: PRECISIONS, default: 'bf16', help: 'GPU matmul/attention precision: bf16 (mixed, fp32 master weights) or fp32; the CPU always uses fp32' },
  help: { type: 'bool', help: 'show this help' },
};

export interface Command {
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
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

export interface OpenedModel {
  model: GPT2;
  tokenizer: Tokenizer;
  /** The folder the tokenizer came from (copied into saved checkpoints), null for new: models. */
  tokenizerDir: string | null;
}

/** A model folder, or "new:..." for a freshly initialised model. */
export function openModel(spec: string, device: DeviceChoice, seed: number): OpenedModel {
  const dev = resolveDevice(device);
  if (spec.startsWith('new:')) {
    const config = parseModelSpec(spec);
    const tokenizer = loadTokenizer();
    if (config.vocab_size < tokenizer.vocabSize) {
      throw new UsageError(`--model ${spec}: vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tokenizer.vocabSize} (${tokenizer.name})`);
    }
    const model = new GPT2(config, dev);
    model.initRandom(seed, config.initializer_range);
    return { model, tokenizer, tokenizerDir: null };
  }
  if (!fs.existsSync(spec)) throw new UsageError(`--model ${spec}: folder not found (give a Hugging Face GPT-2 folder or new:n_layer=...,n_head=...,n_embd=...)`);
  const tokenizer = loadTokenizer(spec);
  const model = loadModel(spec, { device: dev });
  if (tokenizer.vocabSize > model.config.vocab_size) {
    model.free();
    throw new Error(`${spec}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  return { model, tokenizer, tokenizerDir: spec };
}

export function encodeFile(tokenizer: Tokenizer, file: string, flag: string): Int32Array {
  return Int32Array.from(tokenizer.encode(readTextFile(file, flag)));
}
