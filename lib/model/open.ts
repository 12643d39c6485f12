/**
 * Opening a model for a run: a Hugging Face folder (with its tokenizer), or "new:..." for a freshly
 * initialised model with GPT-2's tokenizer. Used by the CLI and by the Trainer.
 */
import * as fs from 'fs';
import { DeviceChoice, resolveDevice } from '../device';
import { UsageError } from '../errors';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { loadModel } from './checkpoint';
import { parseModelSpec } from './config';
import { GPT2 } from './gpt2';

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
  if (!fs.statSync(spec).isDirectory()) throw new UsageError(`--model ${spec}: is a file; expected a model folder (config.json + model.safetensors) or new:n_layer=...`);
  const tokenizer = loadTokenizer(spec);
  const model = loadModel(spec, { device: dev });
  if (tokenizer.vocabSize > model.config.vocab_size) {
    model.free();
    throw new Error(`${spec}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  return { model, tokenizer, tokenizerDir: spec };
}
