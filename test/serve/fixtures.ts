/** Model and adapter folders the serving tests build, and a `gptune serve` started on 127.0.0.1 port 0. */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import OpenAI from 'openai';
import { writeDirAtomic } from '../../lib/io/atomic';
import { adapterFiles } from '../../lib/lora/files';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { parseModelSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { FIXTURES, tempDir } from '../helpers';
import { SeededRandom } from '../reference/random';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
export const CHATML = path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml');

/** A PEFT adapter folder for the model in `dir` with random non-zero B (so it changes the output); optionally training lm_head too. */
export function adapterFolder(dir: string, seed: number, options: { r?: number; targets?: string | null; headToo?: boolean } = {}): string {
  const model = loadModel(dir);
  try {
    const adapter = model.addAdapter({
      r: options.r ?? 4, alpha: 8, dropout: 0, targets: options.targets ?? null, useRslora: false, modulesToSave: options.headToo ? ['lm_head'] : [],
    }, { seed });
    const rng = new SeededRandom(seed + 100);
    for (const m of adapter.modules) m.B.write(rng.floats(m.B.numel, -0.5, 0.5));
    for (const t of adapter.saved.values()) t.write(rng.floats(t.numel, -0.3, 0.3));
    const out = path.join(tempDir('gptune-adapter-'), 'adapter');
    writeDirAtomic(out, adapterFiles(adapter, dir, out));
    return out;
  } finally {
    model.free();
  }
}

/** A GPT-2 of the given shape with random weights (std 0.2: far from uniform predictions) and the tokenizer of `tokenizerFrom`. */
export function gpt2Folder(spec: string, tokenizerFrom: string, seed: number): string {
  const model = new Decoder(parseModelSpec(spec));
  model.initRandom(seed, 0.2);
  const dir = path.join(tempDir('gptune-serve-model-'), 'model');
  saveModel(model, dir, { tokenizerFrom });
  model.free();
  return dir;
}

export interface Served {
  url: string;
  client: OpenAI;
  proc: ChildProcess;
  exit: Promise<number | null>;
  stderr(): string;
  stop(): Promise<number | null>;
}

/** Starts `gptune serve --port 0 ...args` and resolves once it prints its address. */
export async function startServer(args: string[], options: { apiKey?: string; env?: Record<string, string> } = {}): Promise<Served> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const proc = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], { cwd: ROOT, env: { ...process.env, ...options.env } });
  let stdout = '', stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      stdout += d;
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    void exit.then((code) => reject(new Error(`gptune serve exited with ${code}: ${stderr}`)));
  });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: options.apiKey ?? 'no-key', maxRetries: 0, timeout: 120_000 });
  return {
    url, client, proc, exit, stderr: () => stderr,
    stop: () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exit;
    },
  };
}
