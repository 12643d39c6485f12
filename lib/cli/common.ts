/** Shared pieces of the CLI commands: common flags, output, model and data opening. */
import * as fs from 'fs';
import { DEVICE_CHOICES, PRECISIONS } from '../device';
import type { Tokenizer } from '../tokenizer';
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

export { openModel } from '../model/open';
export type { OpenedModel } from '../model/open';

export function encodeFile(tokenizer: Tokenizer, file: string, flag: string): Int32Array {
  return Int32Array.from(tokenizer.encode(readTextFile(file, flag)));
}
