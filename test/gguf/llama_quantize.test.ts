/**
 * `gptune export --dtype q4_k_m | q4_0 | q8_0` against llama.cpp's own quantizer: the model is exported
 * as F32 by gptune, quantized by llama_model_quantize (node-llama-cpp's prebuilt libllama, driven by
 * llama_quantize.cc, compiled here), and gptune's own quantized export of the same model must hold the
 * same tensors (names, ggml types, shapes) with byte-identical data, and be within 2% of its size.
 * GPT-2 and the Llama family, each with a hidden size that is a multiple of 256 (real Q4_K / Q6_K
 * blocks) and one that is not (llama.cpp's fallbacks: Q4_K -> Q5_0, Q6_K -> Q8_0, F16 where rows are
 * not a multiple of 32); tied and untied heads; enough layers for use_more_bits to pick some. And a
 * 70B-shaped Llama (80 layers, GQA: llama.cpp's LLM_TYPE_70B) whose Q4_K_M stores attn_v as Q5_K, which
 * llama.cpp runs to gptune's greedy tokens.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { GGML_TYPE } from '../../lib/gguf/format';
import { GGML_BLOCK_TYPES } from '../../lib/gguf/ggml_types';
import { loadGGUFModel } from '../../lib/gguf/load';
import { readGGUFHeader, readTensor } from '../../lib/gguf/read';
import { saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec } from '../../lib/model/config';
import { Decoder, globalParamName } from '../../lib/model/decoder';
import { generate } from '../../lib/model/generate';
import { encodeSequence } from '../../lib/tokenizer';
import { tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { compileLlamaQuantize, exportGGUF, LIBLLAMA, runLlamaCpp } from './llama_cpp_helpers';


/** llama_ftype of each dtype (include/llama.h). */
const FTYPES = { q4_0: 2, q8_0: 7, q4_k_m: 15 } as const;
type Dtype = keyof typeof FTYPES;

const MODELS = [
  { name: 'gpt2, n_embd 256 (Q4_K and Q6_K blocks)', spec: 'new:n_layer=4,n_head=4,n_embd=256,n_positions=64,vocab_size=350' },
  { name: 'gpt2, n_embd 96 (fallbacks to Q5_0 and Q8_0)', spec: 'new:n_layer=3,n_head=4,n_embd=96,n_positions=64,vocab_size=350' },
  { name: 'llama, hidden 256, untied head', spec: 'new:arch=llama,n_layer=5,n_head=4,n_kv_head=2,n_embd=256,n_inner=512,n_positions=64,vocab_size=350' },
  { name: 'llama, hidden 96, tied head (token_embd is the head)', spec: 'new:arch=llama,n_layer=3,n_head=4,n_kv_head=2,n_embd=96,n_inner=160,n_positions=64,vocab_size=350,tie_word_embeddings=true' },
  { name: 'qwen2, hidden 48 (rows not a multiple of 32: F16)', spec: 'new:arch=qwen2,n_layer=2,n_head=4,n_kv_head=2,n_embd=48,n_inner=96,n_positions=64,vocab_size=350' },
];

interface Compared {
  ours: string;
  theirs: string;
  summary: Array<{ name: string; type: string; fallback?: string }>;
}

const available = fs.existsSync(LIBLLAMA);
const results = new Map<string, Compared>();
let quantizer = '';

function tensorBytes(file: string, offset: number, n: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    fs.readSync(fd, b, 0, n, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** Both files hold the same tensors (names, ggml types, shapes) with byte-identical data. */
function expectSameTensors(ours: string, theirs: string): void {
  const a = readGGUFHeader(ours), b = readGGUFHeader(theirs);
  const describe = (h: typeof a) => [...h.tensors.values()].map((t) => `${t.name} ${t.type} [${t.ne.join(', ')}]`).sort();
  expect(describe(a)).toEqual(describe(b));
  for (const t of a.tensors.values()) {
    const u = b.tensors.get(t.name)!;
    const equal = tensorBytes(ours, t.fileOffset, t.nbytes).equals(tensorBytes(theirs, u.fileOffset, u.nbytes));
    if (!equal) throw new Error(`${t.name} (${t.type}): gptune's bytes differ from llama.cpp's`);
  }
}

/**
 * Every block-type tensor of `file` (of `only` that type) read by gptune equals ggml's own dequantize_row_*
 * of its bytes, bit for bit.
 */
function expectGgmlDequantization(file: string, only?: string): void {
  const h = readGGUFHeader(file);
  const work = tempDir('gptune-dequantize-');
  for (const t of h.tensors.values()) {
    if (!(t.type in GGML_BLOCK_TYPES) || (only !== undefined && t.type !== only)) continue;
    const blocks = path.join(work, 'blocks'), floats = path.join(work, 'floats');
    fs.writeFileSync(blocks, tensorBytes(file, t.fileOffset, t.nbytes));
    const n = t.ne.reduce((a, b) => a * b, 1);
    const r = spawnSync(quantizer, ['dequantize', String(GGML_TYPE[t.type as keyof typeof GGML_TYPE]), String(n), blocks, floats], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ggml's dequantize_row for ${t.type} failed: ${r.stderr}`);
    const values = readTensor(h, t.name);
    if (!Buffer.from(values.buffer, values.byteOffset, values.byteLength).equals(fs.readFileSync(floats))) throw new Error(`${t.name} (${t.type}): gptune's values differ from ggml's`);
  }
}

beforeAll(async () => {
  if (!available) return;
  quantizer = compileLlamaQuantize(tempDir('gptune-llama-quantize-'));
  for (const [m, { spec }] of MODELS.entries()) {
    const model = tinyLlamaFolder(spec, 40 + m);
    const out = path.dirname(model);
    const f32 = path.join(out, 'f32.gguf');
    await exportGGUF('--model', model, '--dtype', 'f32', '--no-measure', '--out', f32);
    for (const dtype of Object.keys(FTYPES) as Dtype[]) {
      const ours = path.join(out, `${dtype}.gguf`), theirs = path.join(out, `llama-${dtype}.gguf`);
      const summary = (await exportGGUF('--model', model, '--dtype', dtype, '--no-measure', '--out', ours)).tensors as Compared['summary'];
      const q = spawnSync(quantizer, [f32, theirs, String(FTYPES[dtype])], { encoding: 'utf8' });
      if (q.status !== 0) throw new Error(`llama_model_quantize ${dtype} failed: ${q.stderr}`);
      results.set(`${m}/${dtype}`, { ours, theirs, summary });
    }
  }
}, 300000);

const cases = MODELS.flatMap((m, i) => (Object.keys(FTYPES) as Dtype[]).map((dtype) => [m.name, dtype, i] as const));

(available ? describe.each(cases) : describe.skip.each(cases))('%s, %s', (_name, dtype, m) => {
  test("same tensors (names, types, shapes) as llama.cpp's quantizer, data byte for byte", () => {
    const { ours, theirs } = results.get(`${m}/${dtype}`)!;
    expectSameTensors(ours, theirs);
    const a = readGGUFHeader(ours), b = readGGUFHeader(theirs);
    expect(a.kv.get('general.file_type')).toBe(FTYPES[dtype]);
    expect(a.kv.get('general.quantization_version')).toBe(b.kv.get('general.quantization_version'));
  });

  test("file size within 2% of llama.cpp's", () => {
    const { ours, theirs } = results.get(`${m}/${dtype}`)!;
    expect(Math.abs(fs.statSync(ours).size / fs.statSync(theirs).size - 1)).toBeLessThan(0.02);
  });

  test("gptune reads llama.cpp's file: every quantized tensor dequantizes to ggml's own dequantize_row_* values, bit for bit, and the model loads", () => {
    const { theirs } = results.get(`${m}/${dtype}`)!;
    expectGgmlDequantization(theirs);
    const h = readGGUFHeader(theirs);
    const loaded = loadGGUFModel(theirs);
    try {
      // GPT-2's head (Q6_K, or Q8_0) and embedding (Q4_K, Q4_0, ...) differ once quantized: the head is untied then.
      const untiedGPT2 = loaded.config.modelType === 'gpt2' && dtype !== 'q8_0';
      expect(loaded.config.modelType === 'gpt2' ? loaded.config.tiedHead : null).toBe(loaded.config.modelType === 'gpt2' ? !untiedGPT2 : null);
      if (untiedGPT2) {
        const head = loaded.model.readParameter('lm_head.weight'), stored = readTensor(h, 'output.weight');
        expect(Buffer.from(head.buffer, head.byteOffset, head.byteLength).equals(Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength))).toBe(true);
      }
    } finally {
      loaded.model.free();
    }
  });

  test('every fallback is said, naming the tensor, the type wanted, its block and the type written', () => {
    const { ours, summary } = results.get(`${m}/${dtype}`)!;
    const types = new Map([...readGGUFHeader(ours).tensors.values()].map((t) => [t.name, t.type]));
    for (const t of summary) {
      if (t.fallback === undefined) continue;
      expect(t.fallback).toMatch(new RegExp(`^${t.name.replace(/\./g, '\\.')}: (Q4_K|Q6_K|Q8_0|Q4_0) needs a row length multiple of (32|256), wrote ${types.get(t.name)}$`));
    }
  });
});

if (!available) test.skip(`llama.cpp agreement: ${LIBLLAMA} is missing (node-llama-cpp 3.21.1 is a devDependency: npm install)`, () => {});

test('the models cover what the comparison is for: real K-quant blocks, every fallback, Q6_K layers, tied and untied heads', () => {
  if (!available) return;
  const all = (dtype: Dtype, m: number) => results.get(`${m}/${dtype}`)!.summary;
  const type = (dtype: Dtype, m: number, name: string) => all(dtype, m).find((t) => t.name === name)!.type;
  // gpt2 n_embd 256, 4 layers: use_more_bits picks layers 2 and 3 (7*4/8 = 3; (2 - 0) % 3 == 2).
  expect([0, 1, 2, 3].map((l) => type('q4_k_m', 0, `blk.${l}.attn_qkv.weight`))).toEqual(['Q4_K', 'Q4_K', 'Q6_K', 'Q6_K']);
  expect(type('q4_k_m', 0, 'output.weight')).toBe('Q6_K');
  expect(type('q4_k_m', 0, 'token_embd.weight')).toBe('Q4_K');
  expect(type('q4_0', 0, 'output.weight')).toBe('Q6_K');
  // n_embd 96: Q4_K -> Q5_0, Q6_K -> Q8_0.
  expect(type('q4_k_m', 1, 'blk.0.ffn_up.weight')).toBe('Q5_0');
  expect(type('q4_k_m', 1, 'output.weight')).toBe('Q8_0');
  // llama 256 untied, 5 layers: layers 2 and 4 (7*5/8 = 4) get Q6_K attn_v and ffn_down.
  expect([0, 1, 2, 3, 4].map((l) => type('q4_k_m', 2, `blk.${l}.attn_v.weight`))).toEqual(['Q4_K', 'Q4_K', 'Q6_K', 'Q4_K', 'Q6_K']);
  expect([0, 1, 2, 3, 4].map((l) => type('q4_k_m', 2, `blk.${l}.ffn_down.weight`))).toEqual(['Q4_K', 'Q4_K', 'Q6_K', 'Q4_K', 'Q6_K']);
  // tied llama 96: token_embd is the head (Q6_K wanted, Q8_0 written).
  expect(type('q4_k_m', 3, 'token_embd.weight')).toBe('Q8_0');
  expect(type('q4_0', 3, 'blk.0.attn_q.weight')).toBe('Q4_0');
  // hidden 48: F16.
  expect(type('q4_k_m', 4, 'blk.0.attn_q.weight')).toBe('F16');
  expect(type('q8_0', 4, 'blk.0.attn_q.weight')).toBe('F16');
  expect(type('q4_k_m', 4, 'blk.0.ffn_down.weight')).toBe('Q5_0');
});

/**
 * A 70B-shaped Llama at a tiny width: 80 layers and GQA make llama.cpp's LLM_TYPE_70B, whose Q4_K_M
 * stores attn_v as Q5_K (Q6_K on the use_more_bits layers); width 256 is one Q5_K super-block per row
 * (attn_output's and ffn_down's 64- and 32-value rows fall back to Q5_0 / Q8_0). Layers are drawn at
 * std 0.02 and the embedding and untied head at 0.5: 80 layers of larger random weights are chaotic
 * (llama.cpp's 8-bit activations alone change the greedy tokens), these keep each layer a small, smooth
 * change to a residual stream that predicts confidently (llama.cpp's probabilities of its choices here:
 * 0.41 to 0.99).
 */
const SEVENTY_B_SPEC = 'new:arch=llama,n_layer=80,n_head=2,n_kv_head=1,head_dim=32,n_embd=256,n_inner=32,n_positions=64,vocab_size=350';

function seventyBShapedFolder(): string {
  const model = new Decoder(parseDecoderSpec(SEVENTY_B_SPEC));
  try {
    model.initRandom(70, 0.02);
    for (const role of ['embed', 'head'] as const) {
      const name = globalParamName(model.config, role);
      model.setParameter(name, model.readParameter(name).map((v) => v * 25));
    }
    const dir = path.join(tempDir('gptune-llama-70b-'), 'model');
    saveModel(model, dir, { tokenizerFrom: TINY });
    return dir;
  } finally {
    model.free();
  }
}

(available ? describe : describe.skip)('a 70B-shaped Llama (80 layers, GQA) as Q4_K_M: attn_v in Q5_K', () => {
  let ours = '', theirs = '';
  beforeAll(async () => {
    const model = seventyBShapedFolder();
    const out = path.dirname(model), f32 = path.join(out, 'f32.gguf');
    ours = path.join(out, 'q4_k_m.gguf');
    theirs = path.join(out, 'llama-q4_k_m.gguf');
    await exportGGUF('--model', model, '--dtype', 'f32', '--no-measure', '--out', f32);
    await exportGGUF('--model', model, '--dtype', 'q4_k_m', '--no-measure', '--out', ours);
    const q = spawnSync(quantizer, [f32, theirs, String(FTYPES.q4_k_m)], { encoding: 'utf8' });
    if (q.status !== 0) throw new Error(`llama_model_quantize q4_k_m failed: ${q.stderr}`);
  }, 300000);

  test("the same tensors as llama.cpp's quantizer, byte for byte, with Q5_K attn_v on every layer use_more_bits leaves", () => {
    expectSameTensors(ours, theirs);
    const types = new Map([...readGGUFHeader(ours).tensors.values()].map((t) => [t.name, t.type]));
    // use_more_bits(i, 80): i < 10, i >= 70, or (i - 10) % 3 == 2.
    for (let l = 0; l < 80; l++) {
      const more = l < 10 || l >= 70 || (l - 10) % 3 === 2;
      expect([l, types.get(`blk.${l}.attn_v.weight`)]).toEqual([l, more ? 'Q6_K' : 'Q5_K']);
      expect([l, types.get(`blk.${l}.attn_q.weight`)]).toEqual([l, 'Q4_K']);
    }
  });

  test("gptune reads llama.cpp's Q5_K blocks as ggml's dequantize_row_q5_K does, bit for bit", () => {
    // The other types' tensors are the models above's (one ggml call per tensor: all 563 here take minutes).
    expectGgmlDequantization(theirs, 'Q5_K');
  });

  test("llama.cpp runs gptune's file to the 20 greedy tokens gptune gives on it, running its blocks directly or dequantized", () => {
    const greedy = (dequantize: boolean) => {
      const { model, tokenizer } = loadGGUFModel(ours, { dequantize });
      try {
        expect(model.baseDtype).toBe(dequantize ? 'f32' : 'gguf');
        const prompt = encodeSequence(tokenizer, 'Once upon a time, there was');
        return { prompt, tokens: generate(model, prompt, { maxNewTokens: 20, greedy: true, eosTokenId: null }).tokens };
      } finally {
        model.free();
      }
    };
    const direct = greedy(false);
    expect(direct.tokens).toHaveLength(20);
    expect(greedy(true).tokens).toEqual(direct.tokens);
    expect(runLlamaCpp([{ file: ours, texts: [], prompt: direct.prompt, n: 20 }])[0].tokens).toEqual(direct.tokens);
  });
});
