#!/usr/bin/env node
/**
 * gptune's command line. Results go to stdout (the last line is JSON with --json); errors go to
 * stderr as one line naming the problem, with a non-zero exit. Nothing is written to --out unless
 * the whole run succeeds (checkpoints are written atomically).
 */
import * as fs from 'fs';
import * as path from 'path';
import { DEVICE_CHOICES, DeviceChoice, resolveDevice, setThreads } from '../device';
import { appendLine } from '../io/jsonl';
import { loadModel, saveModel } from '../model/checkpoint';
import { parseModelSpec } from '../model/config';
import { generate } from '../model/generate';
import { GPT2 } from '../model/gpt2';
import { addon } from '../native';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { ADAMW_DEFAULTS } from '../train/adamw';
import { evalLM, trainLM } from '../train/lm';
import { ScheduleName, SCHEDULES } from '../train/schedule';
import { VERSION } from '../version';
import { FlagSpec, formatHelp, parseFlags, UsageError } from './args';


const COMMON: Record<string, FlagSpec> = {
  threads: { type: 'int', min: 1, help: 'CPU threads for the kernels (default: all cores)' },
  device: { type: 'string', choices: DEVICE_CHOICES, default: 'cpu', help: 'backend: cpu, cuda, or auto (cuda when a GPU is usable)' },
  help: { type: 'bool', help: 'show this help' },
};

interface Command {
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
  run(values: Record<string, unknown>, positionals: string[]): Promise<void> | void;
}

function out(line: string): void {
  process.stdout.write(line + '\n');
}

function readTextFile(file: string, flag: string): string {
  if (!fs.existsSync(file)) throw new UsageError(`${flag} ${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new UsageError(`${flag} ${file}: expected a text file but found a folder`);
  return fs.readFileSync(file, 'utf8');
}

/** A model folder, or "new:..." for a freshly initialised model. */
function openModel(spec: string, device: DeviceChoice, seed: number): { model: GPT2; tokenizer: Tokenizer; tokenizerDir: string | null } {
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

function encodeFile(tokenizer: Tokenizer, file: string, flag: string): Int32Array {
  return Int32Array.from(tokenizer.encode(readTextFile(file, flag)));
}

const info: Command = {
  usage: 'gptune info [--json]',
  description: 'Version, compiled backends, SIMD level and threads, and the GPUs found.',
  flags: { json: { type: 'bool', help: 'print one JSON object' }, threads: COMMON.threads, help: COMMON.help },
  run(v) {
    setThreads(v.threads as number | undefined);
    const cuda = addon.cuda;
    const count = cuda.compiled && cuda.deviceCount ? cuda.deviceCount() : 0;
    const gpus = count > 0 && cuda.devices ? cuda.devices() : [];
    const report = {
      version: VERSION,
      addon_version: addon.version,
      backends: addon.backends,
      simd: addon.simdLevel(),
      threads: addon.numThreads(),
      gpus,
      cuda: cuda.compiled ? (count > 0 ? 'available' : `compiled; unavailable: ${cuda.unavailableReason?.() ?? 'no device'}`) : 'not compiled',
      node: process.version,
    };
    if (v.json) return out(JSON.stringify(report));
    out(`gptune ${report.version}`);
    out(`backends: ${report.backends.join(', ')}`);
    out(`cpu: ${report.simd}, ${report.threads} threads`);
    out(`cuda: ${report.cuda}`);
    for (const g of gpus) out(`  gpu ${g.index}: ${g.name}, ${(g.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${g.computeCapability}`);
  },
};

const evalCommand: Command = {
  usage: 'gptune eval --model DIR --data FILE.txt [--seq-len T] [--batch-size B] [--json]',
  description:
    'Language-model loss on a text file: the whole file is tokenised (no BOS), cut into consecutive chunks of at most T tokens, and every token after the first of its chunk is predicted from the chunk\'s earlier tokens.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder (config.json + model.safetensors)' },
    data: { type: 'string', required: true, help: 'text file' },
    'seq-len': { type: 'int', min: 2, help: 'chunk length (default: n_positions)' },
    'batch-size': { type: 'int', min: 1, default: 4, help: 'chunks per forward pass' },
    json: { type: 'bool', help: 'print the result as one JSON line' },
    ...COMMON,
  },
  run(v) {
    setThreads(v.threads as number | undefined);
    const { model, tokenizer } = openModel(v.model as string, v.device as DeviceChoice, 0);
    const tokens = encodeFile(tokenizer, v.data as string, '--data');
    const T = (v['seq-len'] as number | undefined) ?? model.config.n_positions;
    if (T > model.config.n_positions) throw new UsageError(`--seq-len ${T} exceeds the model's n_positions (${model.config.n_positions})`);
    const started = Date.now();
    const r = evalLM(model, tokens, T, v['batch-size'] as number);
    const result = { loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, token_accuracy: r.accuracy, seconds: (Date.now() - started) / 1000 };
    if (!v.json) out(`loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(2)}  tokens ${r.tokens}  token accuracy ${(100 * r.accuracy).toFixed(2)}%`);
    out(JSON.stringify(result));
    model.free();
  },
};

const trainCommand: Command = {
  usage: 'gptune train --model DIR|new:... --data FILE.txt --out DIR2 --steps N [options]',
  description:
    'Trains a GPT-2 on a text file (continued pretraining). Windows of T+1 tokens at stride T; B windows per micro-batch; AdamW with weight decay on 2D+ tensors only. Logs one JSON line per step; saves DIR2 in Hugging Face format at the end.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder, or new:n_layer=2,n_head=4,n_embd=64,n_positions=128 for a fresh model' },
    data: { type: 'string', required: true, help: 'text file' },
    out: { type: 'string', required: true, help: 'output folder (written atomically at the end)' },
    steps: { type: 'int', min: 1, required: true, help: 'optimizer steps' },
    'batch-size': { type: 'int', min: 1, default: 4, help: 'windows per micro-batch (B)' },
    'grad-accum': { type: 'int', min: 1, default: 1, help: 'micro-batches per optimizer step' },
    'seq-len': { type: 'int', min: 1, help: 'window length T (default: min(n_positions, 256))' },
    lr: { type: 'number', min: 0, default: 3e-4, help: 'peak learning rate' },
    'min-lr': { type: 'number', min: 0, default: 0, help: 'final learning rate of linear/cosine schedules' },
    'weight-decay': { type: 'number', min: 0, default: 0.0, help: 'AdamW decoupled weight decay (2D+ tensors only)' },
    warmup: { type: 'int', min: 0, default: 0, help: 'linear warmup steps' },
    schedule: { type: 'string', choices: SCHEDULES, default: 'constant', help: 'learning-rate schedule' },
    'grad-clip': { type: 'number', min: 0, default: 1.0, help: 'global gradient-norm clip (0 = none)' },
    beta1: { type: 'number', min: 0, default: ADAMW_DEFAULTS.beta1, help: 'AdamW beta1' },
    beta2: { type: 'number', min: 0, default: ADAMW_DEFAULTS.beta2, help: 'AdamW beta2' },
    eps: { type: 'number', min: 0, default: ADAMW_DEFAULTS.eps, help: 'AdamW epsilon' },
    shuffle: { type: 'bool', default: true, help: 'shuffle windows each epoch (--no-shuffle: in order, wrapping)' },
    seed: { type: 'int', min: 0, default: 1337, help: 'seed for shuffling and fresh weights' },
    log: { type: 'string', help: 'append one JSON line per step to this file' },
    quiet: { type: 'bool', help: 'no progress lines' },
    ...COMMON,
  },
  async run(v) {
    setThreads(v.threads as number | undefined);
    const outDir = v.out as string;
    if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) throw new UsageError(`--out ${outDir}: exists and is not a folder`);
    for (const [flag, max] of [['beta1', 1], ['beta2', 1]] as const) {
      if (!((v[flag] as number) < max)) throw new UsageError(`--${flag}: expected a number in [0, 1) but received '${v[flag]}'`);
    }
    const dataText = readTextFile(v.data as string, '--data');
    const { model, tokenizer, tokenizerDir } = openModel(v.model as string, v.device as DeviceChoice, v.seed as number);
    const T = (v['seq-len'] as number | undefined) ?? Math.min(model.config.n_positions, 256);
    if (T > model.config.n_positions) throw new UsageError(`--seq-len ${T} exceeds the model's n_positions (${model.config.n_positions})`);
    const tokens = Int32Array.from(tokenizer.encode(dataText));
    if (tokens.length < T + 1) throw new UsageError(`--data ${v.data}: ${tokens.length} tokens, fewer than --seq-len + 1 = ${T + 1} needed for one window`);
    const logFile = v.log as string | undefined;
    if (logFile) fs.mkdirSync(path.dirname(path.resolve(logFile)), { recursive: true });
    const quiet = Boolean(v.quiet);
    const steps = v.steps as number;
    await trainLM(
      model,
      tokens,
      {
        steps, batchSize: v['batch-size'] as number, seqLen: T, gradAccum: v['grad-accum'] as number,
        lr: v.lr as number, minLr: v['min-lr'] as number, warmup: v.warmup as number, schedule: v.schedule as ScheduleName,
        gradClip: v['grad-clip'] as number, beta1: v.beta1 as number, beta2: v.beta2 as number, eps: v.eps as number,
        weightDecay: v['weight-decay'] as number, shuffle: v.shuffle as boolean, seed: v.seed as number,
      },
      async (log) => {
        if (logFile) appendLine(logFile, JSON.stringify(log));
        if (!quiet) {
          process.stderr.write(`step ${log.step}/${steps}  loss ${log.loss.toFixed(4)}  lr ${log.lr.toExponential(2)}  ${log.ms.toFixed(0)} ms  ${log.tokens_per_s.toFixed(0)} tok/s\n`);
        }
        // Let signals and I/O through between steps.
        await new Promise((resolve) => setImmediate(resolve));
      },
    );
    saveModel(model, outDir, { tokenizerFrom: tokenizerDir });
    out(JSON.stringify({ saved: outDir, steps, parameters: model.numParameters }));
    model.free();
  },
};

const generateCommand: Command = {
  usage: 'gptune generate --model DIR --prompt TEXT [--max-new-tokens N --temperature X --top-k K --top-p P --seed S]',
  description: 'Continues a prompt with a KV cache and prints the continuation. --temperature 0 (or --greedy) picks the most likely token.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder' },
    prompt: { type: 'string', required: true, help: 'text to continue' },
    'max-new-tokens': { type: 'int', min: 0, default: 50, help: 'tokens to generate at most' },
    temperature: { type: 'number', min: 0, default: 1.0, help: 'softmax temperature (0 = greedy)' },
    greedy: { type: 'bool', help: 'always pick the most likely token' },
    'top-k': { type: 'int', min: 0, default: 0, help: 'sample from the k most likely tokens (0 = all)' },
    'top-p': { type: 'number', min: 0, default: 1.0, help: 'nucleus sampling threshold (1 = off)' },
    seed: { type: 'int', min: 0, default: 0, help: 'sampling seed' },
    'no-eos-stop': { type: 'bool', help: 'keep going past <|endoftext|>' },
    json: { type: 'bool', help: 'print {text, tokens, stop} as JSON' },
    ...COMMON,
  },
  run(v) {
    setThreads(v.threads as number | undefined);
    if (!((v['top-p'] as number) > 0 && (v['top-p'] as number) <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1] but received '${v['top-p']}'`);
    const { model, tokenizer } = openModel(v.model as string, v.device as DeviceChoice, 0);
    const prompt = tokenizer.encode(v.prompt as string);
    if (prompt.length === 0) throw new UsageError('--prompt: the prompt is empty');
    if (prompt.length > model.config.n_positions) {
      throw new UsageError(`--prompt: ${prompt.length} tokens is longer than the model's context of ${model.config.n_positions} (n_positions)`);
    }
    const r = generate(model, prompt, {
      maxNewTokens: v['max-new-tokens'] as number, temperature: v.temperature as number, greedy: Boolean(v.greedy),
      topK: v['top-k'] as number, topP: v['top-p'] as number, seed: v.seed as number,
      eosTokenId: v['no-eos-stop'] ? null : tokenizer.eosTokenId,
    });
    const text = tokenizer.decode(r.tokens);
    if (v.json) out(JSON.stringify({ text, tokens: r.tokens, stop: r.stop }));
    else out(text);
    model.free();
  },
};

export const COMMANDS: Record<string, Command> = { info, eval: evalCommand, train: trainCommand, generate: generateCommand };

function mainHelp(): string {
  return [
    `gptune ${VERSION}: fine-tune GPT-2 models on Node.js with native kernels`,
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.description.split('. ')[0]}`),
    '',
    'gptune COMMAND --help shows each command\'s options.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    out(mainHelp());
    return 0;
  }
  if (name === '--version') {
    out(VERSION);
    return 0;
  }
  const command = COMMANDS[name];
  try {
    if (!command) throw new UsageError(`unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    if (rest.includes('--help')) {
      out(formatHelp(command.usage, command.description, command.flags));
      return 0;
    }
    const { values, positionals } = parseFlags(name, rest, command.flags);
    await command.run(values, positionals);
    return 0;
  } catch (e) {
    const message = (e as Error).message.split('\n')[0];
    process.stderr.write(`gptune ${name ?? ''}: ${message.startsWith(name + ':') ? message.slice(name.length + 2) : message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
