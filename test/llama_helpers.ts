/**
 * Llama-family test helpers: the float64 PyTorch reference fixtures (test/model/llama_reference.test.ts
 * on the CPU, test/gpu/llama.test.ts on CUDA) and a tiny model folder with a real tokenizer (pipeline
 * and CLI tests).
 */
import * as fs from 'fs';
import * as path from 'path';
import { saveModel } from '../lib/model/checkpoint';
import { parseDecoderSpec } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';
import { FIXTURES, tempDir, TINY } from './helpers';

/** What scripts/make_llama_fixtures.py writes into test/fixtures/<name>-ref.json. */
export interface LlamaRef {
  B: number; T: number; tokens: number[][]; targets: number[][]; n_scored: number;
  loss: number; loss_f64: number; rope_inv_freq: number[];
  train: {
    lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number; decayed: string[];
    losses_f64: number[]; grad_norms_f64: number[];
  };
  generate: { prompt: number[]; max_new_tokens: number; new_tokens: number[]; min_top2_logit_margin: number };
}

/**
 * The tiny reference configs: GQA + llama3 scaling, MHA + linear scaling + all biases + tied, Qwen2
 * biases, Qwen3 q/k norms with NH*HS != C, Mistral's window.
 */
export const LLAMA_FIXTURES = ['tiny-llama', 'tiny-llama-mha', 'tiny-qwen2', 'tiny-qwen3', 'tiny-mistral'];

export function llamaRef(name: string): LlamaRef {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}-ref.json`), 'utf8')) as LlamaRef;
}

/** The index of the largest value (ties: the lowest index), as torch.argmax. */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * GQA (4 heads on 2 KV heads), untied head, RoPE, SwiGLU, over tiny-gpt2's 350-token BPE tokenizer
 * (its vocab.json and merges.txt are copied in, <|endoftext|> = 349), seeded random weights; or
 * another spec, seed, tokenizer folder, and config.json keys patched in.
 */
export const TINY_LLAMA_SPEC = 'new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=350,bos_token_id=349,eos_token_id=349';

export function tinyLlamaFolder(spec = TINY_LLAMA_SPEC, seed = 5, tokenizerDir = TINY, patch: Record<string, unknown> = {}): string {
  const dir = path.join(tempDir('gptune-llama-'), 'model');
  const model = new Decoder(parseDecoderSpec(spec));
  // Wider than the 0.02 default so the untrained model's predictions are far from uniform.
  model.initRandom(seed, 0.2);
  saveModel(model, dir, { tokenizerFrom: tokenizerDir });
  model.free();
  // config.json's keys that a spec does not set (e.g. rope_scaling).
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), ...patch }, null, 2));
  return dir;
}
