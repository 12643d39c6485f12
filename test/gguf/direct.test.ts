/**
 * A quantized GGUF file run directly (`--model x.gguf`: its Q8_0 / Q4_K / Q6_K blocks in the matmuls,
 * no float32 copy of a quantized weight): the same logits as the same file loaded dequantized to
 * float32 (loadGGUFModel's dequantize), and the same 20 greedy tokens as llama.cpp itself
 * (node-llama-cpp, llama_cpp_runner.mjs). The Q8_0 and Q4_K_M files are made by llama.cpp's own
 * quantizer (llama_model_quantize through ctypes, llama_quantize.py) from gptune's F32 export of a small
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
import { main } from '../../lib/cli/main';
import { loadGGUFModel } from '../../lib/gguf/load';
import { saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { encodeSequence, loadTokenizer } from '../../lib/tokenizer';
import { AdamW } from '../../lib/train/adamw';
import { FIXTURES, relMaxError, tempDir, TINY } from '../helpers';

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
  const f32 = path.join(tempDir('gptune-gguf-direct-'), 'f32.gguf'), out = path.join(path.dirname(f32), `ftype${ftype}.gguf`);
  const silence = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    expect(await main(['export', '--model', dir, '--format', 'gguf', '--dtype', 'f32', '--out', f32, '--json'])).toBe(0);
  } finally {
    silence.mockRestore();
  }
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'llama_quantize.py'), f32, out, String(ftype)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`llama_quantize.py failed: ${r.stderr.split('\n').filter(Boolean).pop()}`);
  return out;
}

function llamaCppGreedy(file: string, prompt: number[]): number[] {
  const job = { file, texts: [], prompt, n: N };
  const r = spawnSync(process.execPath, [path.join(__dirname, 'llama_cpp_runner.mjs')], { input: JSON.stringify([job]), encoding: 'utf8', timeout: 100000 });
  if (r.status !== 0) throw new Error(`llama_cpp_runner failed (${r.status}): ${r.stderr}`);
  const [result] = JSON.parse(r.stdout.trim().split('\n').pop()!) as Array<{ tokens: number[]; error?: string }>;
  if (result.error !== undefined) throw new Error(`llama.cpp could not run ${file}: ${result.error}`);
  return result.tokens;
}

let dir: string;
beforeAll(() => {
  dir = trainedFolder();
});

describe.each([['Q8_0', 7]] as const)('a %s file made by llama.cpp', (_name, ftype) => {
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
      expect(ours).toEqual(llamaCppGreedy(file, prompt));
    } finally {
      model.free();
    }
  });
});
