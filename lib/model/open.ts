/**
 * Opening a model for a run: a Hugging Face folder (with its tokenizer), or "new:..." for a freshly
 * initialised model with GPT-2's tokenizer. Used by the CLI and by the Trainer.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DeviceChoice, resolveDevice } from '../device';
import { UsageError } from '../errors';
import { ggufModelConfig, isGGUFPath, loadGGUFModel } from '../gguf/load';
import { isHubModelSpec } from '../hub/cache';
import { loadTokenizer, Tokenizer } from '../tokenizer';
import { checkMemoryBudget } from '../util/memory';
import { loadModel } from './checkpoint';
import { loadModelConfig, parseDecoderSpec } from './config';
import { Decoder } from './decoder';
import type { DecoderConfig } from './decoder_config';
import { BaseDtype, QuantizeDtype, storageOptions } from './frozen_base';

export interface OpenedModel {
  model: Decoder;
  tokenizer: Tokenizer;
  /** The folder the tokenizer came from (copied into saved checkpoints), null for new: models and GGUF files. */
  tokenizerDir: string | null;
}

/** The memory a run will allocate, checked against the host's budget before the model is allocated. */
export interface MemoryCheck {
  /** What is planned (e.g. "training"), to start the message. */
  what: string;
  /** The run's memory plan by part, once the model's config is known (lib/model/decoder.ts planMemory). */
  plan: (config: DecoderConfig) => Record<string, number>;
  /** The user's cap (max_memory / --max-memory), or null for what the machine has. */
  maxBytes: number | null;
  /** What to lower when it does not fit, e.g. "batch_size (--batch-size) or seq_len (--seq-len)". */
  lower: string;
}

/**
 * A model folder, "new:..." for a freshly initialised model, or (options.gguf) a GGUF model file. With `memory`, the run's plan is
 * checked on the CPU (host arenas) before any arena is allocated; GPU arenas report their own
 * out-of-memory errors, naming the size. `flag` names `spec` in messages (the config key by
 * default; the CLI passes its flag).
 */
export function openModel(spec: string, device: DeviceChoice, seed: number, memory?: MemoryCheck, flag = 'model', options: { baseDtype?: BaseDtype; quantize?: QuantizeDtype; gguf?: boolean } = {}): OpenedModel {
  const dev = resolveDevice(device);
  const checkMemory = (config: DecoderConfig) => {
    if (memory && dev === 'cpu') checkMemoryBudget(memory.what, memory.plan(config), memory.maxBytes, memory.lower);
  };
  if (spec.startsWith('new:')) {
    const config = parseDecoderSpec(spec);
    checkMemory(config);
    const tokenizer = loadTokenizer();
    if (config.vocabSize < tokenizer.vocabSize) {
      throw new UsageError(`${flag} ${spec}: vocab_size ${config.vocabSize} is smaller than the tokenizer's ${tokenizer.vocabSize} (${tokenizer.name})`);
    }
    const model = new Decoder(config, dev, storageOptions(options.baseDtype, options.quantize));
    model.initRandom(seed);
    return { model, tokenizer, tokenizerDir: null };
  }
  if (isGGUFPath(spec) && fs.existsSync(spec) && fs.statSync(spec).isFile()) {
    // Training, merging or exporting from a GGUF file would save a model without its tokenizer files.
    if (!options.gguf) throw new UsageError(`${flag} ${spec}: a GGUF file is read by eval, generate, sample and chat; give the model folder here`);
    checkMemory(ggufModelConfig(spec));
    const { model, tokenizer } = loadGGUFModel(spec, { device: dev, baseDtype: options.baseDtype, quantize: options.quantize });
    return { model, tokenizer, tokenizerDir: null };
  }
  if (!fs.existsSync(spec)) {
    // The CLI and the Trainer download a Hub id first (lib/hub resolveHubModel); openModel reads local files only.
    const hub = isHubModelSpec(spec) ? '; for a Hugging Face model id, resolveHubModel (lib/hub) downloads it and gives its folder' : '';
    throw new UsageError(`${flag} ${spec}: folder not found (give a Hugging Face model folder (GPT-2, Llama, Mistral, Qwen2, Qwen3) or new:n_layer=...,n_head=...,n_embd=...)${hub}`);
  }
  if (!fs.statSync(spec).isDirectory()) throw new UsageError(`${flag} ${spec}: is a file; expected a model folder (config.json + model.safetensors) or new:n_layer=...`);
  if (fs.existsSync(path.join(spec, 'config.json'))) checkMemory(loadModelConfig(spec));
  const tokenizer = loadTokenizer(spec);
  const model = loadModel(spec, { device: dev, baseDtype: options.baseDtype, quantize: options.quantize });
  if (tokenizer.vocabSize > model.config.vocabSize) {
    model.free();
    throw new Error(`${spec}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocabSize}`);
  }
  return { model, tokenizer, tokenizerDir: spec };
}
