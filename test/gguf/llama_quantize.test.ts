/**
 * `gptune export --dtype q4_k_m | q4_0 | q8_0` against llama.cpp's own quantizer: the model is exported
 * as F32 by gptune, quantized by llama_model_quantize (node-llama-cpp's prebuilt libllama, driven by
 * llama_quantize.cc, compiled here), and gptune's own quantized export of the same model must hold the
 * same tensors (names, ggml types, shapes) with byte-identical data, and be within 2% of its size.
 * GPT-2 and the Llama family, each with a hidden size that is a multiple of 256 (real Q4_K / Q6_K
 * blocks) and one that is not (llama.cpp's fallbacks: Q4_K -> Q5_0, Q6_K -> Q8_0, F16 where rows are
 * not a multiple of 32); tied and untied heads; enough layers for use_more_bits to pick some.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { GGML_TYPE } from '../../lib/gguf/format';
import { loadGGUFModel } from '../../lib/gguf/load';
import { readGGUFHeader, readTensor } from '../../lib/gguf/read';
import { tempDir } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';
import { compileLlamaQuantize, exportGGUF, LIBLLAMA } from './llama_cpp_helpers';


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
    const a = readGGUFHeader(ours), b = readGGUFHeader(theirs);
    const describe = (h: typeof a) => [...h.tensors.values()].map((t) => `${t.name} ${t.type} [${t.ne.join(', ')}]`).sort();
    expect(describe(a)).toEqual(describe(b));
    for (const t of a.tensors.values()) {
      const u = b.tensors.get(t.name)!;
      const equal = tensorBytes(ours, t.fileOffset, t.nbytes).equals(tensorBytes(theirs, u.fileOffset, u.nbytes));
      if (!equal) throw new Error(`${t.name} (${t.type}): gptune's bytes differ from llama.cpp's`);
    }
    expect(a.kv.get('general.file_type')).toBe(FTYPES[dtype]);
    expect(a.kv.get('general.quantization_version')).toBe(b.kv.get('general.quantization_version'));
  });

  test("file size within 2% of llama.cpp's", () => {
    const { ours, theirs } = results.get(`${m}/${dtype}`)!;
    expect(Math.abs(fs.statSync(ours).size / fs.statSync(theirs).size - 1)).toBeLessThan(0.02);
  });

  test("gptune reads llama.cpp's file: every quantized tensor dequantizes to ggml's own dequantize_row_* values, bit for bit, and the model loads", () => {
    const { theirs } = results.get(`${m}/${dtype}`)!;
    const h = readGGUFHeader(theirs);
    const work = tempDir('gptune-dequantize-');
    for (const t of h.tensors.values()) {
      if (!['Q4_0', 'Q5_0', 'Q8_0', 'Q4_K', 'Q6_K'].includes(t.type)) continue;
      const blocks = path.join(work, 'blocks'), floats = path.join(work, 'floats');
      fs.writeFileSync(blocks, tensorBytes(theirs, t.fileOffset, t.nbytes));
      const n = t.ne.reduce((a, b) => a * b, 1);
      const r = spawnSync(quantizer, ['dequantize', String(GGML_TYPE[t.type as keyof typeof GGML_TYPE]), String(n), blocks, floats], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ggml's dequantize_row for ${t.type} failed: ${r.stderr}`);
      const values = readTensor(h, t.name);
      if (!Buffer.from(values.buffer, values.byteOffset, values.byteLength).equals(fs.readFileSync(floats))) throw new Error(`${t.name} (${t.type}): gptune's values differ from ggml's`);
    }
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
