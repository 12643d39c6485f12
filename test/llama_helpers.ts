/** A tiny Llama-family model folder with a real tokenizer, for the pipeline and CLI tests. */
import * as path from 'path';
import { saveModel } from '../lib/model/checkpoint';
import { parseDecoderSpec } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';
import { tempDir, TINY } from './helpers';

/**
 * GQA (4 heads on 2 KV heads), untied head, RoPE, SwiGLU, over tiny-gpt2's 350-token BPE tokenizer
 * (its vocab.json and merges.txt are copied in, <|endoftext|> = 349), seeded random weights.
 */
export const TINY_LLAMA_SPEC = 'new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=350,bos_token_id=349,eos_token_id=349';

export function tinyLlamaFolder(spec = TINY_LLAMA_SPEC, seed = 5): string {
  const dir = path.join(tempDir('gptune-llama-'), 'model');
  const model = new Decoder(parseDecoderSpec(spec));
  // Wider than the 0.02 default so the untrained model's predictions are far from uniform.
  model.initRandom(seed, 0.2);
  saveModel(model, dir, { tokenizerFrom: TINY });
  model.free();
  return dir;
}
