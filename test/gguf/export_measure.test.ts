/**
 * The measured cost every model export prints: perplexity and next-token accuracy of the source model
 * and of the written file loaded back, on the same held-out tokens. The numbers are those `gptune eval`
 * gives for the source folder and for the written file (the contract users compare against), the F32
 * file's are the source's exactly, and the built-in held-out text ships with the package.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expectCleanFailure, gptune, lastJSON, ROOT } from '../cli/run';
import { FIXTURES, tempDir, TINY } from '../helpers';

const TEXT = path.join(FIXTURES, 'eval-text.txt');

interface Row { dtype: string; bytes: number; perplexity: number; token_accuracy: number; tokens: number }
interface Measured { eval_data: string; seq_len: number; source: Row; exported: Row; perplexity_change_pct: number; token_accuracy_change_pct: number; bytes_change_pct: number }

function exportJSON(...args: string[]): { out: string; bytes: number; measured?: Measured } {
  const out = path.join(tempDir(), 'm.gguf');
  const r = gptune('export', '--model', TINY, '--format', 'gguf', '--out', out, '--json', ...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { ...(lastJSON(r.stdout) as { bytes: number; measured?: Measured }), out };
}

function evalJSON(model: string): { perplexity: number; token_accuracy: number; tokens: number } {
  const r = gptune('eval', '--model', model, '--data', TEXT, '--seq-len', '64', '--json');
  expect(r.code).toBe(0);
  return lastJSON(r.stdout) as { perplexity: number; token_accuracy: number; tokens: number };
}

test("q8_0: the source's and the file's perplexity and token accuracy are gptune eval's, the changes are their ratios", () => {
  const { out, bytes, measured } = exportJSON('--dtype', 'q8_0', '--eval-data', TEXT);
  const m = measured!;
  const source = evalJSON(TINY), exported = evalJSON(out);
  expect(m.eval_data).toBe(TEXT);
  expect(m.seq_len).toBe(64);
  expect(m.source.tokens).toBe(source.tokens);
  expect(m.source.perplexity).toBeCloseTo(source.perplexity, 10);
  expect(m.source.token_accuracy).toBeCloseTo(source.token_accuracy, 12);
  expect(m.exported.perplexity).toBeCloseTo(exported.perplexity, 10);
  expect(m.exported.token_accuracy).toBeCloseTo(exported.token_accuracy, 12);
  expect(m.exported.perplexity).not.toBe(m.source.perplexity);
  expect(m.exported.bytes).toBe(bytes);
  expect(m.exported.dtype).toBe('q8_0');
  expect(m.perplexity_change_pct).toBeCloseTo((100 * (exported.perplexity - source.perplexity)) / source.perplexity, 8);
  // The source's bytes are those of its F32 file.
  const f32 = exportJSON('--dtype', 'f32', '--no-measure');
  expect(m.source.bytes).toBe(f32.bytes);
});

test('f32: the file loaded back scores exactly as the source; --eval-tokens bounds the tokens', () => {
  const m = exportJSON('--dtype', 'f32', '--eval-data', TEXT, '--eval-tokens', '40').measured!;
  expect(m.exported.perplexity).toBe(m.source.perplexity);
  expect(m.exported.token_accuracy).toBe(m.source.token_accuracy);
  expect(m.perplexity_change_pct).toBe(0);
  expect(m.source.tokens).toBe(39);
});

test('by default the held-out text that ships with gptune (listed in package.json files) is used; the table is printed', () => {
  const file = path.join(ROOT, 'data', 'held-out.txt');
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  expect(pkg.files).toContain('data/held-out.txt');
  const out = path.join(tempDir(), 'm.gguf');
  const r = gptune('export', '--model', TINY, '--format', 'gguf', '--dtype', 'q4_0', '--out', out);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`predicted tokens of ${file} (chunks of 64):`);
  expect(r.stdout).toMatch(/^dtype\s+bytes\s+perplexity\s+token accuracy$/m);
  expect(r.stdout).toMatch(/^f32 \(source\)\s+\d+\s+\d+\.\d{4}\s+\d+\.\d\d%$/m);
  expect(r.stdout).toMatch(/^q4_0\s+\d+\s+\d+\.\d{4}\s+\d+\.\d\d%$/m);
  expect(r.stdout).toMatch(/^change\s+-\d+\.\d\d%\s+[+-]\d+\.\d\d%\s+[+-]\d+\.\d\d%$/m);
});

test('--no-measure skips it; a missing --eval-data is one line naming it, before anything is written', () => {
  expect(exportJSON('--dtype', 'f16', '--no-measure').measured).toBeUndefined();
  const out = path.join(tempDir(), 'm.gguf');
  expectCleanFailure(['export', '--model', TINY, '--format', 'gguf', '--out', out, '--eval-data', '/no/such/text.txt'], /--eval-data \/no\/such\/text\.txt: file not found/, out);
  expectCleanFailure(['export', '--model', TINY, '--format', 'gguf', '--out', out, '--eval-tokens', '1'], /--eval-tokens/, out);
});
