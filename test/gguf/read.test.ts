/**
 * GGUF files loaded back as models (lib/gguf/read.ts, load.ts): gptune's own exports of GPT-2 and
 * the Llama family. F32 gives the original parameters bit for bit, the same per-token losses and the
 * same tokenizer; F16, BF16 and Q8_0 give each parameter as the format's definition dequantizes it,
 * computed here in float64 from the definitions (round to nearest even at 10 or 7 mantissa bits;
 * ggml's quantize_row_q8_0_ref), not with gptune's encoders. (test/gguf/llama_cpp_sentencepiece.test.ts
 * checks SentencePiece files' tokenizers on every fixture string against llama.cpp's.) Bad files are one line and a non-zero exit.
 */
import * as fs from 'fs';
import * as path from 'path';
import { planModelGGUF, type ExportDtype } from '../../lib/gguf/export';
import { writeGGUF } from '../../lib/gguf/format';
import { loadGGUFModel } from '../../lib/gguf/load';
import { loadModel } from '../../lib/model/checkpoint';
import { globalParamName, type Decoder } from '../../lib/model/decoder';
import { openModel } from '../../lib/model/open';
import { encodeSequence, HFTokenizer } from '../../lib/tokenizer';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const TOKENIZERS = path.join(FIXTURES, 'tokenizers');
const EVAL_TEXT = path.join(FIXTURES, 'eval-text.txt');
const TEXTS = ['Hello world, this is a test.', 'The quick brown fox\n\njumps over 123 lazy dogs!  Done?', "It's 2026; we're 'here' — café."];

const MODELS: Array<{ name: string; make: () => string }> = [
  { name: 'gpt2', make: () => TINY },
  {
    name: 'llama (GQA, permuted q/k rows, Llama 3 tokenizer)',
    make: () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=576', 12, path.join(TOKENIZERS, 'bytelevel-llama3')),
  },
  {
    name: 'llama (all biases, linear rope scaling, rows not a multiple of 32)',
    make: () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_embd=48,n_inner=80,n_positions=64,vocab_size=350,attention_bias=true,mlp_bias=true', 13, TINY,
      { rope_scaling: { rope_type: 'linear', factor: 2 } }),
  },
  { name: 'qwen2 (tied, ChatML tokenizer)', make: () => tinyLlamaFolder('new:arch=qwen2,n_layer=2,n_head=4,n_kv_head=1,n_embd=32,n_inner=64,n_positions=64,vocab_size=576,tie_word_embeddings=true', 14, path.join(TOKENIZERS, 'bytelevel-chatml')) },
  { name: 'qwen3 (q/k norms, head_dim 16)', make: () => tinyLlamaFolder('new:arch=qwen3,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=350,head_dim=16', 15, TINY) },
  ...['sentencepiece-llama2', 'sentencepiece-mistral'].map((tokenizer, i) => ({
    name: `llama (${tokenizer} tokenizer, SentencePiece in the file)`,
    make: () => tinyLlamaFolder('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=566,bos_token_id=1,eos_token_id=2', 16 + i, path.join(TOKENIZERS, tokenizer)),
  })),
];

/** `dir` exported as `dtype` (the export command's library calls) into a fresh file. */
function exportFile(dir: string, dtype: ExportDtype): string {
  const opened = openModel(dir, 'cpu', 0);
  try {
    const plan = planModelGGUF(opened.model, opened.tokenizer, opened.tokenizerDir, dtype, 'test');
    const file = path.join(tempDir('gptune-gguf-read-'), `m-${dtype}.gguf`);
    writeGGUF(file, plan.kv, plan.tensors);
    return file;
  } finally {
    opened.model.free();
  }
}

/** Per-token losses over the start of the held-out text (one sequence of the model's context). */
function losses(model: Decoder, ids: number[]): Float32Array {
  const T = Math.min(ids.length - 1, model.config.maxPositions);
  const tokens = Int32Array.from(ids.slice(0, T + 1));
  return Float32Array.from(model.forward(tokens.subarray(0, T), 1, T, tokens.subarray(1)).losses);
}

/** x rounded to nearest even with `mantissa` fraction bits, exponent clamped below at `minExponent` (subnormals). */
function roundToFormat(x: number, mantissa: number, minExponent: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  let e = Math.floor(Math.log2(Math.abs(x)));
  while (2 ** e > Math.abs(x)) e--;
  while (2 ** (e + 1) <= Math.abs(x)) e++;
  const ulp = 2 ** (Math.max(e, minExponent) - mantissa);
  const q = x / ulp;
  let n = Math.floor(q);
  const frac = q - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 !== 0)) n += 1;
  return n * ulp;
}
const f16 = (x: number) => roundToFormat(x, 10, -14);
const bf16 = (x: number) => roundToFormat(x, 7, -126);

/** ggml quantize_row_q8_0_ref then dequantize_row_q8_0, in float32 steps, on rows of `cols` values. */
function q8_0(values: Float32Array): Float64Array {
  const out = new Float64Array(values.length);
  for (let b = 0; b < values.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b + j]));
    const d = Math.fround(amax / 127), id = d === 0 ? 0 : Math.fround(1 / d), dHalf = f16(d);
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(values[b + j] * id);
      // roundf halves away from zero, into an int8 (no -0: 0 * d is +0).
      const q = x < 0 ? -Math.round(-x) : Math.round(x);
      out[b + j] = Math.fround(dHalf * (q === 0 ? 0 : q));
    }
  }
  return out;
}

/** What a parameter becomes in a file of `dtype`: 2-D weights take the type (Q8_0 rows not of 32: F16), the rest F32. */
function expectedValues(model: Decoder, name: string, dtype: ExportDtype): ArrayLike<number> {
  const values = model.readParameter(name);
  const shape = model.params.get(name).shape;
  const positions = model.config.positions === 'learned' && name === globalParamName(model.config, 'positions');
  if (shape.length !== 2 || positions || dtype === 'f32') return values;
  if (dtype === 'q8_0' && shape[1] % 32 === 0) return q8_0(values);
  return Float64Array.from(values, dtype === 'bf16' ? bf16 : f16);
}

describe.each(MODELS)('$name', ({ make }) => {
  let dir: string;
  beforeAll(() => {
    dir = make();
  });

  test('F32: the parameters bit for bit, the same losses, config and tokenizer', () => {
    const file = exportFile(dir, 'f32');
    const original = openModel(dir, 'cpu', 0);
    const loaded = loadGGUFModel(file);
    try {
      // GGUF stores neither the init std nor the training-only dropout rates (a GPT-2 read back gets
      // config.json's defaults for them, as transformers would).
      const { json: _a, initializerRange: _b, dropout: _e, ...cfg } = original.model.config;
      const { json: _c, initializerRange: _d, dropout: _f, ...back } = loaded.config;
      expect(back).toEqual(cfg);
      for (const name of original.model.params.tensors.keys()) {
        const a = original.model.readParameter(name), b = loaded.model.readParameter(name);
        expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
      }
      const ids = encodeSequence(original.tokenizer, fs.readFileSync(EVAL_TEXT, 'utf8'));
      expect(losses(loaded.model, ids)).toEqual(losses(original.model, ids));
      for (const text of TEXTS) expect(loaded.tokenizer.encode(text)).toEqual(original.tokenizer.encode(text));
      expect(loaded.tokenizer.decode(original.tokenizer.encode(TEXTS[2]))).toBe(TEXTS[2]);
      for (const key of ['eosTokenId', 'bosTokenId', 'addBosToken', 'chatTemplate'] as const) expect(loaded.tokenizer[key]).toEqual(original.tokenizer[key]);
      expect((loaded.tokenizer as HFTokenizer).addEosToken).toBe(original.tokenizer instanceof HFTokenizer && original.tokenizer.addEosToken);
    } finally {
      original.model.free();
      loaded.model.free();
    }
  });

  test.each(['f16', 'bf16', 'q8_0'] as const)('%s: every parameter as the format dequantizes it; the losses are finite', (dtype) => {
    const file = exportFile(dir, dtype);
    const original = loadModel(dir);
    const loaded = loadModel(file);
    try {
      for (const name of original.params.tensors.keys()) {
        expect(Array.from(loaded.readParameter(name))).toEqual(Array.from(expectedValues(original, name, dtype)));
      }
      const ids = Array.from({ length: 33 }, (_, i) => (i * 7) % 300);
      expect(losses(loaded, ids).every(Number.isFinite)).toBe(true);
    } finally {
      original.free();
      loaded.free();
    }
  });
});

describe('the CLI', () => {
  let f32: string;
  beforeAll(() => {
    f32 = exportFile(TINY, 'f32');
  });

  test('eval --model x.gguf gives the folder\'s loss; generate runs', () => {
    const fromFile = gptune('eval', '--model', f32, '--data', EVAL_TEXT, '--json');
    expect(fromFile.stderr).toBe('');
    expect(fromFile.code).toBe(0);
    const fromFolder = gptune('eval', '--model', TINY, '--data', EVAL_TEXT, '--json');
    expect(lastJSON(fromFile.stdout).loss).toBe(lastJSON(fromFolder.stdout).loss);
    const q8 = gptune('eval', '--model', exportFile(TINY, 'q8_0'), '--data', EVAL_TEXT, '--json');
    expect(q8.code).toBe(0);
    expect(Number.isFinite(lastJSON(q8.stdout).loss as number)).toBe(true);
    const gen = gptune('generate', '--model', f32, '--prompt', 'Hello', '--greedy', '--max-new-tokens', '5');
    expect(gen.code).toBe(0);
    expect(gen.stdout).toBe(gptune('generate', '--model', TINY, '--prompt', 'Hello', '--greedy', '--max-new-tokens', '5').stdout);
  });

  /** A copy of the F32 file changed by `edit`. */
  const broken = (edit: (bytes: Buffer) => Buffer): string => {
    const file = path.join(tempDir(), 'bad.gguf');
    fs.writeFileSync(file, edit(fs.readFileSync(f32)));
    return file;
  };
  const evalArgs = (file: string) => ['eval', '--model', file, '--data', EVAL_TEXT];
  /** Where a string KV value or a tensor info's name ends: the byte after `text` (length-prefixed) in the header. */
  const after = (bytes: Buffer, text: string) => {
    const at = bytes.indexOf(Buffer.from(text, 'utf8'));
    expect(at).toBeGreaterThan(0);
    return at + Buffer.byteLength(text);
  };

  test('a truncated file: one line naming the file and the tensor whose data is cut', () => {
    const file = broken((b) => b.subarray(0, b.length - 100));
    expectCleanFailure(evalArgs(file), /bad\.gguf: tensor blk\.1\.ffn_down\.bias: its data ends at byte \d+ but the file has \d+ bytes \(truncated\?\)/);
    expectCleanFailure(evalArgs(broken((b) => b.subarray(0, 1000))), /bad\.gguf: key tokenizer\.ggml\.tokens: (the file ends at byte 1000|a string length is \d+, more than the \d+ bytes left in the file \(truncated\?\))/);
  });

  test('bad magic: one line saying it is not a GGUF file', () => {
    expectCleanFailure(evalArgs(broken((b) => Buffer.concat([Buffer.from('GGML'), b.subarray(4)]))), /bad\.gguf: header: bad magic 0x4c4d4747; expected "GGUF" .*not a GGUF file/);
  });

  test('a type gptune does not dequantize (Q4_1): one line naming the tensor and the type', () => {
    const file = broken((b) => {
      const c = Buffer.from(b);
      // token_embd.weight: u32 n_dims = 2, u64 ne[0], u64 ne[1], then its u32 type.
      c.writeUInt32LE(12, after(c, 'token_embd.weight') + 4 + 16);
      return c;
    });
    // Q4_K's 256-value blocks do not divide a row of 32: the header check names it first.
    expectCleanFailure(evalArgs(file), /bad\.gguf: tensor token_embd\.weight: ne\[0\] = 32 is not a multiple of Q4_K's block of 256/);
    const q4 = broken((b) => {
      const c = Buffer.from(b);
      // output_norm.bias (64 values, F32 = 256 bytes) as Q4_0: 2 blocks of 18 bytes; later offsets then disagree.
      c.writeUInt32LE(2, after(c, 'output_norm.bias') + 4 + 8);
      return c;
    });
    expectCleanFailure(evalArgs(q4), /bad\.gguf: tensor \S+: data offset \d+; expected \d+/);
    const lastTensor = broken((b) => {
      const c = Buffer.from(b);
      // The last tensor info's type (Q4_1): its size changes but no later offset depends on it.
      c.writeUInt32LE(3, after(c, 'blk.1.ffn_down.bias') + 4 + 8);
      return c;
    });
    expectCleanFailure(evalArgs(lastTensor), /bad\.gguf: tensor blk\.1\.ffn_down\.bias has type Q4_1; gptune reads F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K/);
  });

  test('an unknown architecture: one line naming general.architecture', () => {
    const file = broken((b) => {
      const c = Buffer.from(b);
      // general.architecture: u32 type (string), u64 length 4, "gpt2".
      c.write('bert', after(c, 'general.architecture') + 12, 'utf8');
      return c;
    });
    expectCleanFailure(evalArgs(file), /bad\.gguf: key general\.architecture: is "bert"; gptune loads gpt2, llama, qwen2, qwen3/);
  });

  test('a tokenizer model gptune does not rebuild: one line naming tokenizer.ggml.model', () => {
    const file = broken((b) => {
      const c = Buffer.from(b);
      // tokenizer.ggml.model: u32 type (string), u64 length 4, "gpt2".
      c.write('bert', after(c, 'tokenizer.ggml.model') + 12, 'utf8');
      return c;
    });
    expectCleanFailure(evalArgs(file), /bad\.gguf: key tokenizer\.ggml\.model: is "bert"; gptune rebuilds byte-level BPE \("gpt2"\) and SentencePiece \("llama"\) tokenizers from GGUF$/m);
  });

  test('train from a GGUF file is refused (its output would lack the tokenizer files)', () => {
    expectCleanFailure(['train', '--model', f32, '--data', EVAL_TEXT, '--out', path.join(tempDir(), 'out')], /--model .*\.gguf: a GGUF file is read by eval, generate, sample and chat; give the model folder here/);
  });
});
