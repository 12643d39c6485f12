/**
 * Weight-only quantized inference (`--quantize int8|q8_0|q4_k`, loadModel's `quantize`): the model
 * must compute exactly the float32 model whose linear weights AND LM head are the format's
 * dequantized values, the embedding lookup staying float32 (a tied head becomes a quantized copy).
 * The reference is the plain float32 Decoder (untied, so its head can differ from its embedding)
 * with those weights set; the dequantized values come from the format kernels (quantize_ggml /
 * dequantize_ggml are bit-exact to ggml and int8 to bitsandbytes, tested in their own suites).
 * Both sides compute in float32 with the same weight values and differ only in summation order:
 * 1e-5 of the logits' scale is far above that (sqrt(C) * 2^-24 per dot product, two layers) and
 * far below what quantization itself moves (checked: the quantized logits differ from the
 * unquantized model's by more than 10x the tolerance).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UsageError } from '../../lib/errors';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder, globalParamName, linearWeightNames } from '../../lib/model/decoder';
import { GGML_BLOCK_TYPES, ggmlBlockBytes, ggmlBlockType } from '../../lib/gguf/ggml_types';
import { QuantizeDtype, storageOptions, weightFormat, WeightFormat } from '../../lib/model/frozen_base';
import { generate } from '../../lib/model/generate';
import { kernels } from '../../lib/native';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { FIXTURES, relMaxError, tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const TOLERANCE = 1e-5;

/** `values` (OC, C) stored in `format` and read back as float32, through the format kernels. */
function dequantized(values: Float32Array, format: WeightFormat | null, OC: number, C: number): Float32Array {
  if (format === null) return values;
  if (format.dtype === 'int8') {
    const q = new Int8Array(OC * C), scale = new Float32Array(OC), out = new Float32Array(OC * C);
    kernels.quantize_int8(q, scale, values, OC, C);
    kernels.dequantize_int8(out, q, scale, OC, C);
    return out;
  }
  if (format.dtype !== 'ggml') throw new Error(`unexpected format ${format.dtype}`);
  const out = new Float32Array(OC * C);
  let row = 0;
  for (const p of format.parts) {
    const blocks = new Uint8Array(ggmlBlockBytes(ggmlBlockType(p.type)!, p.rows, C)), id = GGML_BLOCK_TYPES[p.type].id;
    kernels.quantize_ggml(blocks, values.subarray(row * C, (row + p.rows) * C), id, p.rows, C);
    kernels.dequantize_ggml(out.subarray(row * C, (row + p.rows) * C), blocks, id, p.rows, C);
    row += p.rows;
  }
  return out;
}

/** The float32 model `source` would be with every weight `formatOf` names replaced by its dequantized values, head untied. */
function referenceModel(source: Decoder, formatOf: (name: string, OC: number, C: number) => WeightFormat | null): Decoder {
  const cfg = source.config;
  const ref = new Decoder({ ...cfg, tiedHead: false });
  const stored = new Set(linearWeightNames(cfg));
  for (const name of source.parameterNames) {
    const values = source.readParameter(name), shape = source.params.get(name).shape;
    ref.setParameter(name, stored.has(name) ? dequantized(values, formatOf(name, shape[0], shape[1]), shape[0], shape[1]) : values);
  }
  const head = globalParamName(cfg, cfg.tiedHead ? 'embed' : 'head');
  ref.setParameter(globalParamName(cfg, 'head'), dequantized(source.readParameter(head), formatOf('head', cfg.vocabSize, cfg.width), cfg.vocabSize, cfg.width));
  return ref;
}

const T = 12;
const tokens = Int32Array.from({ length: 2 * T }, (_, i) => (i * 37 + 11) % 131);
const targets = Int32Array.from({ length: 2 * T }, (_, i) => (i * 53 + 7) % 131);

/** Model folders: widths 32 and 48 (q4_k falls back to Q5_0; 48 is no multiple of 32: q8_0 leaves those float32) and 256 (Q4_K). */
const MODELS: Array<[string, () => string]> = [
  ['tiny-gpt2 (C=32)', () => TINY],
  ['llama tied (C=48, rows not a multiple of 32)', () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=48,n_inner=64,n_positions=64,vocab_size=350,tie_word_embeddings=true', 21)],
  ['gpt2 (C=256)', () => tinyLlamaFolder('new:n_layer=2,n_head=4,n_embd=256,n_positions=64,vocab_size=350', 22)],
  ['llama untied GQA (C=256, I=512)', () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=256,n_inner=512,n_positions=64,vocab_size=350', 23)],
];

describe.each(MODELS)('%s', (_name, folder) => {
  let dir: string;
  beforeAll(() => {
    dir = folder();
  });

  test.each(['int8', 'q8_0', 'q4_k'] as const)('--quantize %s computes the float32 model of its dequantized linear weights and head', (dtype: QuantizeDtype) => {
    const plain = loadModel(dir), quantized = loadModel(dir, { quantize: dtype });
    const reference = referenceModel(plain, (_n, OC, C) => weightFormat(dtype, OC, C));
    try {
      // Only norms, biases and the embedding (and a fallback's float32 weights) stay in the float32 arena.
      expect(quantized.params.numel).toBeLessThan(plain.params.numel);
      const q = quantized.forward(tokens, 2, T, targets), r = reference.forward(tokens, 2, T, targets);
      const got = quantized.logitsRows(0, 2 * T), want = reference.logitsRows(0, 2 * T);
      expect(relMaxError(got, want)).toBeLessThan(TOLERANCE);
      expect(Math.abs(q.loss - r.loss)).toBeLessThan(TOLERANCE * Math.abs(r.loss));
      plain.forward(tokens, 2, T, targets);
      expect(relMaxError(plain.logitsRows(0, 2 * T), want)).toBeGreaterThan(10 * TOLERANCE);
      // Generation runs the same head: greedy tokens of the reference.
      const prompt = [5, 17, 42];
      const a = generate(quantized, prompt, { maxNewTokens: 8, greedy: true }), b = generate(reference, prompt, { maxNewTokens: 8, greedy: true });
      expect(a.tokens).toEqual(b.tokens);
    } finally {
      plain.free();
      quantized.free();
      reference.free();
    }
  });
});

test('q4_k says once which weights took llama.cpp fallbacks (Q5_0 where C % 256 != 0, float32 where C % 32 != 0)', () => {
  const cfg = loadModel(TINY).config;
  const model = new Decoder(cfg, 'cpu', storageOptions(undefined, 'q4_k'));
  try {
    // tiny-gpt2: every input width (32, 128) is a multiple of 32 but not of 256; 2 layers x 4 weights + the head.
    expect(model.storageNote).toBe("q4_k: 9 of 9 weights have an input width that is not a multiple of 256; stored 9 as Q5_0 (llama.cpp's fallback)");
  } finally {
    model.free();
  }
  const wide = new Decoder(parseDecoderSpec('new:n_layer=1,n_head=4,n_embd=256,n_positions=64,vocab_size=350'), 'cpu', storageOptions(undefined, 'q4_k'));
  try {
    expect(wide.storageNote).toBeNull();
  } finally {
    wide.free();
  }
});

test('a weight whose row ranges have different GGML types (Q4_K q, Q8_0 k, Q6_K v) computes each range as a column slice, forward and backward', () => {
  const cfg = loadModel(tinyLlamaFolder('new:arch=llama,n_layer=1,n_head=4,n_kv_head=2,n_embd=256,n_inner=256,n_positions=64,vocab_size=350', 24)).config;
  const q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim, C = cfg.width;
  const mixed: WeightFormat = { dtype: 'ggml', parts: [{ type: 'Q4_K', rows: q }, { type: 'Q8_0', rows: kv }, { type: 'Q6_K', rows: kv }] };
  const qkv = linearWeightNames(cfg).find((n) => n.includes('qkv_proj'))!;
  const plain = new Decoder(cfg);
  plain.initRandom(3, 0.2);
  const model = new Decoder(cfg, 'cpu', { formats: new Map([[qkv, mixed]]) });
  // Every weight float32 but qkv, whose ranges are dequantized from the same blocks the GGML model stores.
  const reference = referenceModel(plain, (name) => (name === qkv ? mixed : null));
  try {
    for (const name of plain.parameterNames) if (name !== qkv) model.setParameter(name, plain.readParameter(name));
    const w = plain.readParameter(qkv);
    let row = 0;
    mixed.parts.forEach((p, i) => {
      const blocks = new Uint8Array(ggmlBlockBytes(ggmlBlockType(p.type)!, p.rows, C));
      kernels.quantize_ggml(blocks, w.subarray(row * C, (row + p.rows) * C), GGML_BLOCK_TYPES[p.type].id, p.rows, C);
      model.setParameterBlocks(qkv, i, blocks);
      row += p.rows;
    });
    expect(relMaxError(model.readParameter(qkv), reference.readParameter(qkv))).toBe(0);
    const settings = { r: 4, alpha: 8, dropout: 0, targets: 'all-linear', useRslora: false, modulesToSave: [] };
    for (const m of [model, reference]) {
      m.addAdapter(settings, { trainable: true, seed: 9 });
      m.zeroGrad();
    }
    const a = model.forward(tokens, 2, T, targets), b = reference.forward(tokens, 2, T, targets);
    expect(relMaxError(model.logitsRows(0, 2 * T), reference.logitsRows(0, 2 * T))).toBeLessThan(TOLERANCE);
    model.backward(a.count);
    reference.backward(b.count);
    // The adapter's gradients flow through every base weight's input gradient (dout_stride on the qkv slices).
    expect(relMaxError(model.grads!.all().read(), reference.grads!.all().read())).toBeLessThan(TOLERANCE);
  } finally {
    plain.free();
    model.free();
    reference.free();
  }
});

test('bad values and conflicting options are one-line UsageErrors naming both', () => {
  expect(() => loadModel(TINY, { quantize: 'q3_k' as QuantizeDtype })).toThrow(UsageError);
  expect(() => loadModel(TINY, { quantize: 'q3_k' as QuantizeDtype })).toThrow(/^options\.quantize: expected one of int8, q8_0, q4_k but received the string "q3_k"$/);
  expect(() => loadModel(TINY, { quantize: 'q8_0', baseDtype: 'nf4' })).toThrow(/options\.quantize q8_0 conflicts with options\.baseDtype nf4/);
  const same = loadModel(TINY, { quantize: 'int8', baseDtype: 'int8' });
  expect(same.baseDtype).toBe('int8');
  same.free();
});

describe('the CLI', () => {
  const EVAL_TEXT = path.join(FIXTURES, 'eval-text.txt');
  let dir: string;
  /** The reference model of `dtype` saved as a float32 folder (untied head), with dir's tokenizer. */
  const referenceFolder = (dtype: QuantizeDtype): string => {
    const plain = loadModel(dir), reference = referenceModel(plain, (_n, OC, C) => weightFormat(dtype, OC, C));
    const out = path.join(tempDir('gptune-quantize-ref-'), 'model');
    try {
      saveModel(reference, out, { tokenizerFrom: dir });
      // The source's config.json keys are kept on save: untie the head there too.
      const configFile = path.join(out, 'config.json');
      fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), tie_word_embeddings: false }));
    } finally {
      plain.free();
      reference.free();
    }
    return out;
  };
  beforeAll(() => {
    dir = tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=256,n_inner=512,n_positions=64,vocab_size=350,tie_word_embeddings=true', 25);
  });

  test('eval --quantize q4_k gives the loss of the float32 model of its dequantized weights', () => {
    const quantized = gptune('eval', '--model', dir, '--data', EVAL_TEXT, '--quantize', 'q4_k', '--json');
    expect(quantized.stderr).toBe('');
    expect(quantized.code).toBe(0);
    const reference = gptune('eval', '--model', referenceFolder('q4_k'), '--data', EVAL_TEXT, '--json');
    const plain = gptune('eval', '--model', dir, '--data', EVAL_TEXT, '--json');
    expect(reference.stderr).toBe('');
    const [q, r, p] = [quantized, reference, plain].map((x) => lastJSON(x.stdout).loss as number);
    expect(Math.abs(q - r)).toBeLessThan(TOLERANCE * r);
    expect(Math.abs(p - r)).toBeGreaterThan(10 * TOLERANCE * r);
  });

  test('generate --quantize q8_0 gives the greedy tokens of the float32 model of its dequantized weights', () => {
    const args = ['--prompt', 'Once upon a time', '--greedy', '--max-new-tokens', '12', '--no-eos-stop', '--json'];
    const quantized = gptune('generate', '--model', dir, '--quantize', 'q8_0', ...args);
    expect(quantized.code).toBe(0);
    const reference = gptune('generate', '--model', referenceFolder('q8_0'), ...args);
    expect(lastJSON(quantized.stdout).tokens).toEqual(lastJSON(reference.stdout).tokens);
    expect((lastJSON(quantized.stdout).tokens as number[]).length).toBe(12);
  });

  test('--max-memory plans the quantized store: a budget under the float32 weights fits --quantize q8_0', () => {
    const model = loadModel(dir), budget = Math.floor(0.75 * 4 * model.numParameters);
    model.free();
    const args = ['--model', dir, '--prompt', 'Hi', '--max-new-tokens', '2', '--max-memory', `${budget}B`];
    expectCleanFailure(['generate', ...args], /generation needs .* but .* is allowed/);
    expect(gptune('generate', ...args, '--quantize', 'q8_0').code).toBe(0);
  });

  test('a fallback is said once; bad values and conflicting flags are one-line errors', () => {
    const r = gptune('generate', '--model', TINY, '--prompt', 'Hi', '--max-new-tokens', '2', '--quantize', 'q4_k');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("note: q4_k: 9 of 9 weights have an input width that is not a multiple of 256; stored 9 as Q5_0 (llama.cpp's fallback)\n");
    expectCleanFailure(['eval', '--model', TINY, '--data', EVAL_TEXT, '--quantize', 'q3_k'], /--quantize.*one of int8, q8_0, q4_k/);
    expectCleanFailure(['generate', '--model', TINY, '--prompt', 'Hi', '--quantize', 'q8_0', '--base-dtype', 'nf4'], /--quantize q8_0 conflicts with --base-dtype nf4/);
  });
});
