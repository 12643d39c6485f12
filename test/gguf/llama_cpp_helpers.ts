/**
 * Shared by the GGUF tests that check gptune's files with llama.cpp itself: llama_cpp_runner.mjs
 * (node-llama-cpp in a child process) and `gptune export` run in this process.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { main } from '../../lib/cli/main';
import { loadAdapter } from '../../lib/lora/apply';
import { loadModel } from '../../lib/model/checkpoint';
import { generate } from '../../lib/model/generate';
import { lastJSON } from '../cli/run';

/** A file for llama_cpp_runner.mjs: see its header for what each field asks. */
export interface Job {
  file: string; lora?: Array<{ file: string; scale: number }>; texts: string[]; prompt: number[]; n: number;
  /** Token sequences scored teacher-forced, each in a fresh sequence of at most contextSize tokens. */
  score?: number[] | number[][]; contextSize?: number;
}

export interface JobResult {
  ids: number[][]; detokenized: string[]; tokens: number[]; probabilities: number[];
  tokenizer: { eos?: number; bos?: number; addBos?: boolean; addEos?: boolean; template?: string };
  scored?: number[];
}

export function perplexity(logprobs: readonly number[]): number {
  return Math.exp(-logprobs.reduce((a, b) => a + b, 0) / logprobs.length);
}

export function runLlamaCpp(jobs: Job[], timeout = 100000): JobResult[] {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'llama_cpp_runner.mjs')], { input: JSON.stringify(jobs), encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`llama_cpp_runner failed (${r.status}): ${r.stderr}`);
  const results = JSON.parse(r.stdout.trim().split('\n').pop()!) as Array<JobResult & { error?: string }>;
  results.forEach((res, i) => {
    if (res.error !== undefined) throw new Error(`llama.cpp could not run ${jobs[i].file}${jobs[i].lora ? ' with its adapter' : ''}: ${res.error}`);
  });
  return results;
}

/**
 * gptune's greedy continuation (`n` tokens, as `gptune generate --greedy`) of `prompt` and each new
 * token's log-probability (from one forward over the whole sequence).
 */
export function gptuneGreedy(dir: string, prompt: number[], n: number, adapter?: string): { tokens: number[]; logprobs: number[] } {
  const model = loadModel(dir);
  try {
    if (adapter) loadAdapter(model, adapter);
    const { tokens } = generate(model, prompt, { maxNewTokens: n, greedy: true, eosTokenId: null });
    const ids = Int32Array.from([...prompt, ...tokens]);
    const T = ids.length - 1;
    const { losses } = model.forward(ids.subarray(0, T), 1, T, ids.subarray(1));
    return { tokens, logprobs: tokens.map((_, i) => -losses[prompt.length - 1 + i]) };
  } finally {
    model.free();
  }
}

const LIB_DIR = path.resolve(__dirname, '../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64');
export const LIBLLAMA = path.join(LIB_DIR, 'libllama.v0.4.0.so');

/** llama_quantize.cc compiled into `dir` against node-llama-cpp's libllama and libggml-base: the command's path. */
export function compileLlamaQuantize(dir: string): string {
  const quantizer = path.join(dir, 'llama_quantize');
  const cc = spawnSync('g++', ['-O1', '-o', quantizer, path.join(__dirname, 'llama_quantize.cc'), LIBLLAMA, path.join(LIB_DIR, 'libggml-base.so'), `-Wl,-rpath,${LIB_DIR}`], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`compiling llama_quantize.cc failed: ${cc.stderr}`);
  return quantizer;
}

/** `gptune export --format gguf --json ...` run in this process (the CLI's own code, without a process start per file). */
export async function exportGGUF(...args: string[]): Promise<Record<string, unknown>> {
  let stdout = '', stderr = '';
  const outSpy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => { stdout += String(chunk); return true; });
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => { stderr += String(chunk); return true; });
  let code: number;
  try {
    code = await main(['export', '--format', 'gguf', '--json', ...args]);
  } finally {
    outSpy.mockRestore();
    errSpy.mockRestore();
  }
  if (code !== 0) throw new Error(`export failed: ${stderr}`);
  return lastJSON(stdout);
}
