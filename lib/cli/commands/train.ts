/** gptune train */
import * as fs from 'fs';
import * as path from 'path';
import { DeviceChoice, setThreads } from '../../device';
import { appendLine } from '../../io/jsonl';
import { saveModel } from '../../model/checkpoint';
import { ADAMW_DEFAULTS } from '../../train/adamw';
import { trainLM } from '../../train/lm';
import { ScheduleName, SCHEDULES } from '../../train/schedule';
import { UsageError } from '../args';
import { COMMON, Command, openModel, out, readTextFile } from '../common';

export const trainCommand: Command = {
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
