/**
 * gptune export's output rules and bad input: one line on stderr, a non-zero exit, and no file left
 * behind; a file gptune did not write is replaced only with --overwrite.
 */
import { spawnSync } from 'child_process';
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
  expectCleanFailure(exportArgs('--dtype', 'q4_1', '--out', out), /--dtype: expected one of f32, f16, bf16, q8_0, q4_0, q4_k_m but received 'q4_1'/, out);
});

test('unwritable destination: one line naming the --out file (not only its folder), nothing written', () => {
  expectCleanFailure(exportArgs('--out', '/proc/gptune-export.gguf'), /^gptune export: --out \/proc\/gptune-export\.gguf: cannot write in \/proc \(/, '/proc/gptune-export.gguf');
  const missing = path.join(tempDir(), 'no', 'such', 'm.gguf');
  expectCleanFailure(exportArgs('--out', missing), /--out .*m\.gguf: folder .* does not exist/, missing);
});

/** A 512 KiB tmpfs (root only; elsewhere the full-destination test is skipped with the reason). */
const smallDisk = ((): { dir: string } | { why: string } => {
  const dir = tempDir('gptune-full-');
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return { why: 'mounting a small tmpfs needs root on Linux' };
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? { dir } : { why: `mount -t tmpfs failed: ${(r.stderr || r.error?.message || '').trim()}` };
})();
afterAll(() => {
  if ('dir' in smallDisk) spawnSync('umount', [smallDisk.dir]);
});

('dir' in smallDisk ? test : test.skip)(`a full destination: one line naming the --out file and the bytes, nothing left behind${'why' in smallDisk ? ` (skipped: ${smallDisk.why})` : ''}`, () => {
  const { dir } = smallDisk as { dir: string };
  fs.writeFileSync(path.join(dir, 'filler'), Buffer.alloc(400 * 1024));
  const out = path.join(dir, 'm.gguf');
  expectCleanFailure(exportArgs('--dtype', 'f32', '--out', out), new RegExp(`^gptune export: --out ${out.replace(/[.]/g, '\\.')}: needs \\d+ bytes .* of free space but ${dir} has \\d+ bytes`), out);
  expect(fs.readdirSync(dir)).toEqual(['filler']);
  // With the space back, the same export fits.
  fs.rmSync(path.join(dir, 'filler'));
  const r = gptune(...exportArgs('--dtype', 'f32', '--no-measure', '--out', out, '--json'));
  expect(r.stderr).toBe('');
  expect(fs.statSync(out).size).toBe((lastJSON(r.stdout) as { bytes: number }).bytes);
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

test('Q8_0 and Q4_K_M fall back per tensor where rows do not split into the blocks, and say so, one line each', () => {
  const llama = tinyLlamaFolder('new:arch=llama,n_layer=1,n_head=4,n_kv_head=2,n_embd=48,n_inner=64,n_positions=64,vocab_size=350,bos_token_id=349,eos_token_id=349');
  const out = path.join(tempDir(), 'q.gguf');
  let r = gptune('export', '--model', llama, '--format', 'gguf', '--dtype', 'q8_0', '--no-measure', '--out', out);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^blk\.0\.attn_q\.weight\s+F16\s+\d+$/m);
  expect(r.stdout).toMatch(/^blk\.0\.attn_q\.weight: Q8_0 needs a row length multiple of 32, wrote F16$/m);
  expect(r.stdout).toMatch(/^blk\.0\.ffn_down\.weight\s+Q8_0\s+/m);
  r = gptune('export', '--model', llama, '--format', 'gguf', '--dtype', 'q4_k_m', '--no-measure', '--out', out);
  expect(r.code).toBe(0);
  // One layer: use_more_bits(0, 1) holds (0 >= 7 * 1 / 8 = 0), so ffn_down wants Q6_K.
  expect(r.stdout).toMatch(/^blk\.0\.ffn_down\.weight: Q6_K needs a row length multiple of 256, wrote Q8_0$/m);
  expect(r.stdout).toMatch(/^blk\.0\.attn_q\.weight: Q4_K needs a row length multiple of 256, wrote F16$/m);
  expect(r.stdout).toMatch(/^output\.weight: Q6_K needs a row length multiple of 256, wrote F16$/m);
});

test('a tokenizer.json GGUF export cannot map is one line naming the file and what it is; nothing written', () => {
  const llama = tinyLlamaFolder('new:arch=llama,n_layer=1,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=566,bos_token_id=1,eos_token_id=2', 5, path.join(FIXTURES, 'tokenizers', 'sentencepiece-llama2'));
  const file = path.join(llama, 'tokenizer.json');
  const spm = JSON.parse(fs.readFileSync(file, 'utf8'));
  const out = path.join(tempDir(), 'm.gguf');
  // A Unigram model (T5, ALBERT, XLNet): llama.cpp's "llama" tokenizer is not a Unigram one.
  const pieces = Object.keys(spm.model.vocab).map((piece, i) => [piece, -i]);
  fs.writeFileSync(file, JSON.stringify({ ...spm, model: { type: 'Unigram', unk_id: 0, vocab: pieces, byte_fallback: true } }));
  expectCleanFailure(['export', '--model', llama, '--format', 'gguf', '--out', out], new RegExp(`^gptune export: ${file.replace(/[.]/g, '\\.')}: model\\.type "Unigram" is not supported`), out);
  // SentencePiece-style BPE whose normalizer also applies NFKC, which llama.cpp's SPM tokenizer does not.
  const nfkc = { ...spm, normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, ...spm.normalizer.normalizers] } };
  fs.writeFileSync(file, JSON.stringify(nfkc));
  expectCleanFailure(['export', '--model', llama, '--format', 'gguf', '--out', out], new RegExp(`^gptune export: ${file.replace(/[.]/g, '\\.')}: normalizer \\{"type":"Sequence".* is not what llama\\.cpp's SentencePiece tokenizer does`), out);
});

test('adapter GGUF: modules_to_save, a weight, several adapters or q8_0 are one-line errors', () => {
  const dir = tempDir();
  const out = path.join(dir, 'a.gguf');
  const adapter = path.join(FIXTURES, 'lora-gpt2');
  const base = ['export', '--model', TINY, '--format', 'gguf', '--adapter-only', '--out', out];
  expectCleanFailure([...base, '--adapter', `${adapter}:0.5`], /a weight does not go into an adapter GGUF \(llama\.cpp scales it: --lora-scaled FILE 0\.5\)/, out);
  expectCleanFailure([...base, '--adapter', adapter, '--adapter', adapter], /--adapter-only: expected exactly one --adapter but received 2/, out);
  expectCleanFailure([...base, '--adapter', adapter, '--dtype', 'q8_0'], /--dtype q8_0: an adapter GGUF is written as f32, f16 or bf16/, out);
  expectCleanFailure([...base, '--adapter', adapter, '--dtype', 'q4_k_m'], /--dtype q4_k_m: an adapter GGUF is written as f32, f16 or bf16/, out);
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
