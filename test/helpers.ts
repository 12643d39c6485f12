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

/**
 * The flags of a 4-step dpo/orpo run on writePairs' 18 pairs (8 a step with batch size 2 and global batch 8; 5
 * validation pairs in 3 batches, evaluated at steps 2 and 4), full or LoRA; '' marks a switch (--lora).
 */
export function preferenceFlags(dir: string, method: 'dpo' | 'orpo', trained: 'full' | 'LoRA', extra: Record<string, string>): Record<string, string> {
  return {
    data: writePairs(dir), method, steps: '4', 'seq-len': '40', 'validation-fraction': '0.25', 'eval-every': '2', lr: '5e-3', seed: '5',
    ...(trained === 'LoRA' ? { lora: '', 'lora-r': '4', 'lora-targets': 'all-linear', 'lora-dropout': '0.1', lr: '2e-2' } : {}), ...extra,
  };
}

const PREFERENCE_STEP_KEYS = ['loss', 'token_accuracy', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'logps/chosen', 'logps/rejected'];
const ORPO_KEYS = ['nll_loss', 'log_odds_ratio', 'log_odds_chosen'];

/**
 * A data-parallel preference run (its --log `${out}.jsonl`) against one process's with the same global batch
 * (preferenceFlags): per-step loss, reward metrics, tokens and grad_norm, and every val_ metric, to 1e-5.
 */
export function expectPreferenceRunClose(single: string, parallel: string, method: 'dpo' | 'orpo'): void {
  const keys = method === 'orpo' ? [...PREFERENCE_STEP_KEYS, ...ORPO_KEYS] : PREFERENCE_STEP_KEYS;
  const steps = (out: string) => logLines(`${out}.jsonl`).filter((l) => 'loss' in l);
  const evals = (out: string) => logLines(`${out}.jsonl`).filter((l) => 'val_loss' in l);
  const expected = steps(single);
  expect(expected).toHaveLength(4);
  // The run trains: the margins move off the reference's 0 (DPO) and the loss changes.
  expect(expected[3]['rewards/margins']).not.toBe(expected[0]['rewards/margins']);
  expect(expected[3].loss).not.toBe(expected[0].loss);
  // Up to float32 rounding of the gradient sums (4 micro-batches summed in another order). The gradient norm
  // too: AdamW hardly sees a gradient scaled by the workers (normalised by one worker's pairs), the norm does.
  expectLinesClose(steps(parallel), expected, [...keys, 'tokens', 'grad_norm'], 1e-5);
  const expectedEvals = evals(single);
  expect(expectedEvals.map((e) => e.step)).toEqual([2, 4]);
  const valKeys = keys.filter((k) => k !== 'loss' && k !== 'token_accuracy').map((k) => `val_${k}`);
  expectLinesClose(evals(parallel), expectedEvals, ['val_loss', 'val_tokens', 'val_token_accuracy', ...valKeys], 1e-5);
}
