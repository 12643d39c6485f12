/**
 * gptune export's output rules and bad input: one line on stderr, a non-zero exit, and no file left
 * behind; a file gptune did not write is replaced only with --overwrite.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeDirAtomic } from '../../lib/io/atomic';
import { adapterFiles } from '../../lib/lora/files';
import { loadModel } from '../../lib/model/checkpoint';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const exportArgs = (...extra: string[]) => ['export', '--model', TINY, '--format', 'gguf', ...extra];

test('unknown dtype: one line naming --dtype and the choices, nothing written', () => {
  const out = path.join(tempDir(), 'm.gguf');
  expectCleanFailure(exportArgs('--dtype', 'q4_0', '--out', out), /--dtype: expected one of f32, f16, bf16, q8_0 but received 'q4_0'/, out);
});

test('unwritable destination: one line naming --out, nothing written', () => {
  expectCleanFailure(exportArgs('--out', '/proc/gptune-export.gguf'), /--out \/proc: cannot write in \/proc/, '/proc/gptune-export.gguf');
  const missing = path.join(tempDir(), 'no', 'such', 'm.gguf');
  expectCleanFailure(exportArgs('--out', missing), /--out .*m\.gguf: folder .* does not exist/, missing);
});

test("a file gptune did not write is kept unless --overwrite; its own output is replaced", () => {
  const dir = tempDir();
  const out = path.join(dir, 'm.gguf');
  fs.writeFileSync(out, 'my notes');
  expectCleanFailure(exportArgs('--out', out), /exists and was not written by gptune; add --overwrite/);
  expect(fs.readFileSync(out, 'utf8')).toBe('my notes');
  let r = gptune(...exportArgs('--out', out, '--overwrite', '--json'));
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const summary = lastJSON(r.stdout) as { bytes: number; tensors: unknown[] };
  expect(fs.statSync(out).size).toBe(summary.bytes);
  r = gptune(...exportArgs('--out', out, '--dtype', 'f32'));
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/token_embd\.weight\s+F32\s+44800\n/);
  expect(r.stdout).toMatch(/wrote .*m\.gguf: 29 tensors, \d+ bytes/);
  expect(fs.readdirSync(dir)).toEqual(['m.gguf']);
});

test('Q8_0 falls back to F16 per tensor where rows are not a multiple of 32, and says so', () => {
  const llama = tinyLlamaFolder('new:arch=llama,n_layer=1,n_head=4,n_kv_head=2,n_embd=48,n_inner=64,n_positions=64,vocab_size=350,bos_token_id=349,eos_token_id=349');
  const out = path.join(tempDir(), 'q.gguf');
  const r = gptune('export', '--model', llama, '--format', 'gguf', '--dtype', 'q8_0', '--out', out);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/blk\.0\.attn_q\.weight\s+F16\s+\d+\s+\(rows of 48 values are not a multiple of 32: F16 instead of Q8_0\)/);
  expect(r.stdout).toMatch(/blk\.0\.ffn_down\.weight\s+Q8_0\s+/);
});

test('a tokenizer llama.cpp has no byte-level name for (SentencePiece) is one line naming tokenizer.json; nothing written', () => {
  const llama = tinyLlamaFolder('new:arch=llama,n_layer=1,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=576');
  const spm = path.join(FIXTURES, 'tokenizers', 'sentencepiece-llama2');
  for (const f of fs.readdirSync(spm)) if (f !== 'cases.json') fs.copyFileSync(path.join(spm, f), path.join(llama, f));
  for (const f of ['vocab.json', 'merges.txt']) fs.rmSync(path.join(llama, f));
  const out = path.join(tempDir(), 'm.gguf');
  expectCleanFailure(['export', '--model', llama, '--format', 'gguf', '--out', out], /tokenizer\.json: model\.type "BPE" with byte_fallback \(SentencePiece-style\) is not supported by GGUF export yet/, out);
});

test('adapter GGUF: modules_to_save, a weight, several adapters or q8_0 are one-line errors', () => {
  const dir = tempDir();
  const out = path.join(dir, 'a.gguf');
  const adapter = path.join(FIXTURES, 'lora-gpt2');
  const base = ['export', '--model', TINY, '--format', 'gguf', '--adapter-only', '--out', out];
  expectCleanFailure([...base, '--adapter', `${adapter}:0.5`], /a weight does not go into an adapter GGUF \(llama\.cpp scales it: --lora-scaled FILE 0\.5\)/, out);
  expectCleanFailure([...base, '--adapter', adapter, '--adapter', adapter], /--adapter-only: expected exactly one --adapter but received 2/, out);
  expectCleanFailure([...base, '--adapter', adapter, '--dtype', 'q8_0'], /an adapter GGUF is written as f32, f16 or bf16/, out);
  const withSaved = path.join(dir, 'saved');
  const model = loadModel(TINY);
  const trained = model.addAdapter({ r: 2, alpha: 4, dropout: 0, targets: null, useRslora: false, modulesToSave: ['lm_head'] }, { seed: 1 });
  writeDirAtomic(withSaved, adapterFiles(trained, TINY, withSaved));
  model.free();
  expectCleanFailure([...base, '--adapter', withSaved], /trains lm_head in full \(modules_to_save\); llama\.cpp's LoRA GGUF holds only lora_a\/lora_b pairs/, out);
  // The PEFT fixture itself exports.
  const ok = gptune(...base, '--adapter', adapter, '--json');
  expect(ok.stderr).toBe('');
  expect((lastJSON(ok.stdout) as { tensors: Array<{ name: string }> }).tensors.map((t) => t.name).slice(0, 2)).toEqual(['blk.0.attn_qkv.weight.lora_a', 'blk.0.attn_qkv.weight.lora_b']);
});
