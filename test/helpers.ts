/** Shared test helpers: fixture paths and error measures. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readSafetensors, toFloat32 } from '../lib/io/safetensors';

// Compiled copies (dist/test/, for the GPU suite run with plain node) read the source tree's fixtures.
const compiled = path.basename(path.dirname(__dirname)) === 'dist';
export const FIXTURES = path.resolve(__dirname, compiled ? '../../test/fixtures' : 'fixtures');
export const TINY = path.join(FIXTURES, 'tiny-gpt2');

export interface TinyRef {
  B: number; T: number;
  tokens: number[][]; targets: number[][]; targets_masked: number[][];
  n_scored: number; n_scored_masked: number;
  loss: number; loss_f64: number; loss_masked: number; loss_masked_f64: number;
  variants: Record<string, { loss: number; loss_masked: number; logits_key: string }>;
  train: {
    lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number;
    losses: number[]; grad_norms: number[];
    clipped: { max_norm: number; losses: number[]; grad_norms_before_clip: number[] };
    accumulation: { micro_batches: number; losses: number[]; micro_losses: number[][] };
  };
  eval: { seq_len: number; tokens: number; loss: number; perplexity: number; file_tokens: number; ids: number[] };
  generate: { prompt_text: string; prompt: number[]; max_new_tokens: number; new_tokens: number[] };
}

export function tinyRef(): TinyRef {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-gpt2-ref.json'), 'utf8')) as TinyRef;
}

/** Named float tensors of a fixture safetensors file, as Float64Arrays. */
export function fixtureTensors(file: string): Map<string, { shape: number[]; data: Float64Array }> {
  const st = readSafetensors(path.join(FIXTURES, file));
  const out = new Map<string, { shape: number[]; data: Float64Array }>();
  for (const [name, t] of st.tensors) {
    let data: Float64Array;
    if (t.dtype === 'F64') {
      data = new Float64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    } else {
      data = Float64Array.from(toFloat32(t));
    }
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** max |a - b| / max |b|: error relative to the reference's scale. */
export function relMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / (maxRef || 1);
}

export function relError(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** (rows, cols) row-major -> (cols, rows). */
export function transpose(src: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** The per-step losses of a training run's --log file (its evaluation lines left out). */
export function logLosses(logFile: string): number[] {
  return fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'loss' in l).map((l) => l.loss as number);
}

/** Two runs' per-step losses: as many, and none further apart than `tolerance`. */
export function expectLossesClose(actual: number[], expected: number[], tolerance: number): void {
  expect(actual).toHaveLength(expected.length);
  const worst = Math.max(...actual.map((a, i) => Math.abs(a - expected[i])));
  expect(worst).toBeLessThan(tolerance);
}

export function tempDir(prefix = 'gptune-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Seeded uniform [0, 1) generator (mulberry32), so failures reproduce. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The JSON lines of a log file (metrics.jsonl, --log). */
export function logLines(logFile: string): Array<Record<string, number>> {
  return fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

/** Each key of each line equal to the expected line's, to `tolerance` relative (absolute below 1). */
export function expectLinesClose(actual: Array<Record<string, number>>, expected: Array<Record<string, number>>, keys: string[], tolerance: number): void {
  expect(actual.map((l) => l.step)).toEqual(expected.map((l) => l.step));
  for (const [i, want] of expected.entries()) {
    for (const key of keys) {
      expect([key, typeof actual[i][key]]).toEqual([key, 'number']);
      const error = Math.abs(actual[i][key] - want[key]) / Math.max(1, Math.abs(want[key]));
      if (!(error <= tolerance)) throw new Error(`step ${want.step}: ${key} is ${actual[i][key]}, the reference had ${want[key]} (error ${error} > ${tolerance})`);
    }
  }
}

/** 14 lines of text: 27 validation rows of 16 tokens (tiny GPT-2's tokenizer; the tiny Llama uses it too). */
export function writeValidationText(dir: string): string {
  const file = path.join(dir, 'validation.txt');
  fs.writeFileSync(file, Array.from({ length: 14 }, (_, i) => `Line ${i} of the held-out text: the ${['cat', 'dog', 'fox'][i % 3]} sat on mat ${i * 7}.`).join('\n') + '\n');
  return file;
}

/**
 * 18 preference pairs (OpenAI's format) with a learnable preference: the answer that repeats the
 * prompt's animal is preferred (as test/train/preference_trainer.test.ts).
 */
export function writePairs(dir: string): string {
  const animals = ['whale', 'gull', 'shark', 'seal', 'crab', 'cod'];
  const lines = Array.from({ length: 18 }, (_, i) => {
    const a = animals[i % animals.length], b = animals[(i + 2) % animals.length];
    return JSON.stringify({
      input: { messages: [{ role: 'user', content: `Name the ${a}.` }] },
      preferred_output: [{ role: 'assistant', content: `The ${a}.` }], non_preferred_output: [{ role: 'assistant', content: `The ${b} again.` }],
    });
  });
  const file = path.join(dir, 'pairs.jsonl');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
