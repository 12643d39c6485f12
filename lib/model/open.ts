/**
 * Opening a model for a run: a Hugging Face folder (with its tokenizer), or "new:..." for a freshly
 * initialised model with GPT-2's tokenizer. Used by the CLI and by the Trainer.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DeviceChoice, resolveDevice } from '../device';
import { UsageError } from '../errors';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { checkMemoryBudget } from '../util/memory';
import { loadModel } from './checkpoint';
import { GPT2Config, loadGPT2Config, parseModelSpec } from './config';
import { GPT2 } from './gpt2';

export interface OpenedModel {
  model: GPT2;
  tokenizer: Tokenizer;
  /** The folder the tokenizer came from (copied into saved checkpoints), null for new: models. */
  tokenizerDir: string | null;
}

/** The memory a run will allocate, checked against the host's budget before the model is allocated. */
export interface MemoryCheck {
  /** What is planned (e.g. "training"), to start the message. */
  what: string;
  /** The run's memory plan by part, once the model's config is known (lib/model/gpt2.ts planMemory). */
  plan: (config: GPT2Config) => Record<string, number>;
  /** The user's cap (max_memory / --max-memory), or null for what the machine has. */
  maxBytes: number | null;
  /** What to lower when it does not fit, e.g. "batch_size (--batch-size) or seq_len (--seq-len)". */
  lower: string;
}

/**
 * A model folder, or "new:..." for a freshly initialised model. With `memory`, the run's plan is
 * checked on the CPU (host arenas) before any arena is allocated; GPU arenas report their own
 * out-of-memory errors, naming the size.
 */
export function openModel(spec: string, device: DeviceChoice, seed: number, memory?: MemoryCheck, flag = '--model'): OpenedModel {
  const dev = resolveDevice(device);
  const checkMemory = (config: GPT2Config) => {
    if (memory && dev === 'cpu') checkMemoryBudget(memory.what, memory.plan(config), memory.maxBytes, memory.lower);
  };
  if (spec.startsWith('new:')) {
    const config = parseModelSpec(spec);
    checkMemory(config);
    const tokenizer = loadTokenizer();
    if (config.vocab_size < tokenizer.vocabSize) {
      throw new UsageError(`${flag} ${spec}: vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tokenizer.vocabSize} (${tokenizer.name})`);
    }
    const model = new GPT2(config, dev);
    model.initRandom(seed, config.initializer_range);
    return { model, tokenizer, tokenizerDir: null };
  }
  if (!fs.existsSync(spec)) throw new UsageError(`${flag} ${spec}: folder not found (give a Hugging Face GPT-2 folder or new:n_layer=...,n_head=...,n_embd=...)`);
  if (!fs.statSync(spec).isDirectory()) throw new UsageError(`${flag} ${spec}: is a file; expected a model folder (config.json + model.safetensors) or new:n_layer=...`);
  if (fs.existsSync(path.join(spec, 'config.json'))) checkMemory(loadGPT2Config(spec));
  const tokenizer = loadTokenizer(spec);
  const model = loadModel(spec, { device: dev });
  if (tokenizer.vocabSize > model.config.vocab_size) {
    model.free();
    throw new Error(`${spec}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  return { model, tokenizer, tokenizerDir: spec };
}
