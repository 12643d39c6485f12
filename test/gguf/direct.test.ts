/**
 * A quantized GGUF file run directly (`--model x.gguf`: its Q8_0 / Q4_K / Q6_K blocks in the matmuls,
 * no float32 copy of a quantized weight): the same logits as the same file loaded dequantized to
 * float32 (loadGGUFModel's dequantize), and the same 20 greedy tokens as llama.cpp itself
 * (node-llama-cpp, llama_cpp_runner.mjs). The Q8_0 and Q4_K_M files are made by llama.cpp's own
 * quantizer (llama_model_quantize, driven by llama_quantize.cc) from gptune's F32 export of a small
 * model trained for a few dozen steps (confident predictions: quantization noise and llama.cpp's
 * 8-bit activations do not flip its greedy choices). Q4_K_M mixes types inside the fused q/k/v (Q4_K
 * attn_q/attn_k, Q6_K attn_v in some layers) and stores the tied token_embd as Q6_K: the head runs
 * those blocks while the embedding lookup reads them dequantized.
 * Tolerance: both sides are float32 with the same weight values (the blocks dequantized as ggml does),
 * differing in summation order only: 1e-5 of the logits' scale.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadGGUFModel } from '../../lib/gguf/load';
import { saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { encodeSequence, loadTokenizer } from '../../lib/tokenizer';
import { AdamW } from '../../lib/train/adamw';
import { FIXTURES, relMaxError, tempDir, TINY } from '../helpers';
import { compileLlamaQuantize, exportGGUF, runLlamaCpp } from './llama_cpp_helpers';

const TOLERANCE = 1e-5;
const N = 20;
const PROMPT = 'Once upon a time, there was';

/** A tied Llama-family model (C = 256 so Q4_K applies) trained 60 AdamW steps on the held-out text fixture. */
function trainedFolder(): string {
  const model = new Decoder(parseDecoderSpec('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=256,n_inner=512,n_positions=64,vocab_size=350,tie_word_embeddings=true'));
  model.initRandom(7);
  const ids = encodeSequence(loadTokenizer(TINY), fs.readFileSync(path.join(FIXTURES, 'eval-text.txt'), 'utf8'));
  const B = 4, T = 32, opt = new AdamW(model);
  for (let step = 0; step < 60; step++) {
    const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = ((step * B + b) * 29) % (ids.length - T - 1);
      for (let t = 0; t < T; t++) {
        tokens[b * T + t] = ids[start + t];
        targets[b * T + t] = ids[start + t + 1];
      }
    }
    model.zeroGrad();
    const r = model.forward(tokens, B, T, targets);
    model.backward(r.count);
    opt.update(3e-3);
  }
  const dir = path.join(tempDir('gptune-gguf-direct-'), 'model');
  saveModel(model, dir, { tokenizerFrom: TINY });
  opt.free();
  model.free();
  return dir;
}

/** The F32 export of `dir`, quantized by llama.cpp to `ftype` (llama.h: 7 Q8_0, 15 Q4_K_M). */
async function llamaQuantized(dir: string, ftype: number): Promise<string> {
  const out = tempDir('gptune-gguf-direct-'), f32 = path.join(out, 'f32.gguf'), file = path.join(out, `ftype${ftype}.gguf`);
  await exportGGUF('--model', dir, '--dtype', 'f32', '--no-measure', '--out', f32);
  const r = spawnSync(compileLlamaQuantize(out), [f32, file, String(ftype)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`llama_quantize failed: ${r.stderr.split('\n').filter(Boolean).pop()}`);
  return file;
}

let dir: string;
beforeAll(() => {
  dir = trainedFolder();
});

describe.each([['Q8_0', 7], ['Q4_K_M', 15]] as const)('a %s file made by llama.cpp', (_name, ftype) => {
  let file: string;
  beforeAll(async () => {
    file = await llamaQuantized(dir, ftype);
  });

  test('runs its blocks directly: the logits of the file dequantized to float32, with no float32 copy of its weights', () => {
    const direct = loadGGUFModel(file), dequantized = loadGGUFModel(file, { dequantize: true });
    try {
      expect(direct.model.baseDtype).toBe('gguf');
      expect(dequantized.model.baseDtype).toBe('f32');
      // Every linear weight and the head left the float32 arena: what is left is the embedding, norms and biases.
      const cfg = direct.model.config;
      expect(direct.model.params.numel).toBeLessThan(cfg.vocabSize * cfg.width + 4096);
      expect(direct.model.memory().paramsBytes).toBeLessThan(0.5 * dequantized.model.memory().paramsBytes);
      const T = 24, tokens = Int32Array.from({ length: 2 * T }, (_, i) => (i * 37 + 11) % 350);
      direct.model.forward(tokens, 2, T);
      dequantized.model.forward(tokens, 2, T);
      expect(relMaxError(direct.model.logitsRows(0, 2 * T), dequantized.model.logitsRows(0, 2 * T))).toBeLessThan(TOLERANCE);
    } finally {
      direct.model.free();
      dequantized.model.free();
    }
  });

  test("gives llama.cpp's 20 greedy tokens", () => {
    const { model, tokenizer } = loadGGUFModel(file);
    try {
      const prompt = encodeSequence(tokenizer, PROMPT);
      const ours = generate(model, prompt, { maxNewTokens: N, greedy: true, eosTokenId: null }).tokens;
      expect(ours).toHaveLength(N);
      expect(ours).toEqual(runLlamaCpp([{ file, texts: [], prompt, n: N }])[0].tokens);
    } finally {
      model.free();
    }
  });
});
