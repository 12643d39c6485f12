/**
 * Opening a model for a run: a Hugging Face folder (with its tokenizer), or "new:..." for a freshly
 * initialised model with GPT-2's tokenizer. Used by the CLI and by the Trainer.
 */
import * as fs from 'fs';
import { DeviceChoice, resolveDevice } from '../device';
import { UsageError } from '../errors';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { loadModel } from './checkpoint';
import { parseDecoderSpec } from './config';
import { Decoder } from './decoder';

export interface OpenedModel {
  model: Decoder;
  tokenizer: Tokenizer;
  /** The folder the tokenizer came from (copied into saved checkpoints), null for new: models. */
  tokenizerDir: string | null;
}

/** A model folder, or "new:..." for a freshly initialised model. */
export function openModel(spec: string, device: DeviceChoice, seed: number): OpenedModel {
  const dev = resolveDevice(device);
  if (spec.startsWith('new:')) {
    const config = parseDecoderSpec(spec);
    const tokenizer = loadTokenizer();
    if (config.vocabSize < tokenizer.vocabSize) {
      throw new UsageError(`--model ${spec}: vocab_size ${config.vocabSize} is smaller than the tokenizer's ${tokenizer.vocabSize} (${tokenizer.name})`);
    }
    const model = new Decoder(config, dev);
    model.initRandom(seed);
    return { model, tokenizer, tokenizerDir: null };
  }
  if (!fs.existsSync(spec)) throw new UsageError(`--model ${spec}: folder not found (give a Hugging Face model folder (GPT-2, Llama, Mistral, Qwen2, Qwen3) or new:n_layer=...,n_head=...,n_embd=...)`);
  const tokenizer = loadTokenizer(spec);
  const model = loadModel(spec, { device: dev });
  if (tokenizer.vocabSize > model.config.vocabSize) {
    model.free();
    throw new Error(`${spec}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocabSize}`);
  }
  return { model, tokenizer, tokenizerDir: spec };
}
