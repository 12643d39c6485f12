/**
 * LoRA from the command line, for GPT-2 and the Llama family: `train --lora` writes a PEFT adapter
 * folder (and nothing of the base), `eval/generate --adapter` apply it, `merge` folds it into a plain
 * checkpoint that evaluates like base + adapter, a LoRA run resumes exactly (dropout included), QLoRA
 * (--base-dtype nf4/int8) trains, and bad input fails on one line with nothing written.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../lib/io/safetensors';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { tinyLlamaFolder } from '../llama_helpers';

const DATA = path.join(FIXTURES, 'eval-text.txt');

function logLines(file: string): Array<Record<string, number>> {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

function train(model: string, out: string, ...extra: string[]) {
  return gptune('train', '--model', model, '--data', DATA, '--out', out, '--batch-size', '2', '--seq-len', '16', '--lr', '5e-3', '--seed', '3', '--quiet', ...extra);
}

function evalLoss(...args: string[]): number {
  const r = gptune('eval', '--data', DATA, '--seq-len', '16', '--json', ...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (lastJSON(r.stdout) as { loss: number }).loss;
}

let llama: string;
beforeAll(() => {
  llama = tinyLlamaFolder();
});

describe.each([['GPT-2', () => TINY, 'c_attn'], ['Llama', () => llama, 'q_proj']])('%s', (_name, base, target) => {
  test('train --lora writes a PEFT adapter; eval --adapter applies it; merge gives the same model as a plain checkpoint', () => {
    const dir = tempDir('gptune-lora-cli-'), out = path.join(dir, 'adapter'), merged = path.join(dir, 'merged');
    const r = train(base(), out, '--lora', '--lora-r', '4', '--lora-alpha', '8', '--lora-targets', 'all-linear', '--steps', '4');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const files = fs.readdirSync(out).sort();
    expect(files).toContain('adapter_config.json');
    expect(files).toContain('adapter_model.safetensors');
    expect(files).not.toContain('model.safetensors');
    expect(files).not.toContain('config.json');
    const config = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.05, bias: 'none', inference_mode: true, use_rslora: false });
    expect(config.base_model_name_or_path).toBe(path.resolve(base()));
    expect(config.fan_in_fan_out).toBe(target === 'c_attn');
    const st = readSafetensors(path.join(out, 'adapter_model.safetensors'));
    expect(st.metadata).toEqual({ format: 'pt' });
    const keys = [...st.tensors.keys()];
    expect(keys.every((k) => /^base_model\.model\..*\.lora_[AB]\.weight$/.test(k))).toBe(true);
    expect(keys.some((k) => k.includes(`.${target}.lora_A.weight`))).toBe(true);

    const baseLoss = evalLoss('--model', base());
    const adapted = evalLoss('--model', base(), '--adapter', out);
    expect(adapted).not.toBe(baseLoss);
    // Half the adapter's weight lands between the two.
    const half = evalLoss('--model', base(), '--adapter', `${out}:0.5`);
    expect((half - baseLoss) * (adapted - half)).toBeGreaterThan(0);

    const m = gptune('merge', '--model', base(), '--adapter', out, '--out', merged, '--json');
    expect(m.stderr).toBe('');
    expect(m.code).toBe(0);
    expect(fs.existsSync(path.join(merged, 'model.safetensors'))).toBe(true);
    expect(Math.abs(evalLoss('--model', merged) - adapted)).toBeLessThan(1e-5 * adapted);
    // merge does not write into a folder it did not create.
    expectCleanFailure(['merge', '--model', base(), '--adapter', out, '--out', merged], /holds a previous gptune output.*--overwrite/);

    const g = gptune('generate', '--model', base(), '--adapter', out, '--prompt', 'The', '--max-new-tokens', '5', '--temperature', '0', '--json');
    expect(g.code).toBe(0);
  });

  test('a LoRA run resumes exactly (adapter, AdamW state and dropout masks)', () => {
    const dir = tempDir('gptune-lora-resume-');
    const full = path.join(dir, 'full'), part = path.join(dir, 'part');
    const common = ['--lora', '--lora-r', '2', '--lora-dropout', '0.2', '--save-every', '2'];
    expect(train(base(), full, ...common, '--steps', '4', '--log', path.join(dir, 'full.jsonl')).code).toBe(0);
    expect(train(base(), part, ...common, '--steps', '2').code).toBe(0);
    const checkpoint = path.join(part, 'checkpoints', 'step-2');
    expect(fs.readdirSync(checkpoint).sort()).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json']));
    expect(fs.existsSync(path.join(checkpoint, 'model.safetensors'))).toBe(false);
    const r = gptune('train', '--resume', part, '--steps', '4', '--log', path.join(dir, 'resumed.jsonl'), '--quiet');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(logLines(path.join(dir, 'resumed.jsonl')).map((l) => l.loss)).toEqual(logLines(path.join(dir, 'full.jsonl')).slice(2).map((l) => l.loss));
    const a = readSafetensors(path.join(full, 'adapter_model.safetensors')), b = readSafetensors(path.join(part, 'adapter_model.safetensors'));
    for (const [k, t] of a.tensors) expect(Buffer.compare(Buffer.from(t.data), Buffer.from(b.tensors.get(k)!.data))).toBe(0);
  });

  test.each(['nf4', 'int8', 'bf16'])('QLoRA: --base-dtype %s trains an adapter on the quantized base, and --adapter continues it', (dtype) => {
    const dir = tempDir('gptune-qlora-'), out = path.join(dir, 'out'), more = path.join(dir, 'more');
    const r = train(base(), out, '--lora', '--base-dtype', dtype, '--steps', '6', '--log', path.join(dir, 'log.jsonl'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const losses = logLines(path.join(dir, 'log.jsonl')).map((l) => l.loss);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    const c = train(base(), more, '--adapter', out, '--base-dtype', dtype, '--steps', '2');
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(evalLoss('--model', base(), '--base-dtype', dtype, '--adapter', more)).toBeLessThan(evalLoss('--model', base(), '--base-dtype', dtype));
  });
});

test('with validation, --out receives the best adapter; sample and eval --compare take adapters too', () => {
  const dir = tempDir('gptune-lora-best-'), out = path.join(dir, 'out'), log = path.join(dir, 'log.jsonl');
  const r = train(TINY, out, '--lora', '--lora-r', '4', '--steps', '6', '--validation-fraction', '0.2', '--eval-every', '2', '--log', log);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const best = path.join(out, 'checkpoints', 'best');
  expect(fs.readdirSync(best)).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors']));
  // The published adapter is the best checkpoint's, byte for byte.
  expect(Buffer.compare(fs.readFileSync(path.join(out, 'adapter_model.safetensors')), fs.readFileSync(path.join(best, 'adapter_model.safetensors')))).toBe(0);
  const review = path.join(dir, 'review.jsonl');
  const s = gptune('sample', '--model', TINY, '--adapter', out, '--data', path.join(FIXTURES, 'eval', 'generate.jsonl'), '-n', '1', '--out', review);
  expect(s.stderr).toBe('');
  expect(s.code).toBe(0);
  const e = gptune('eval', '--model', TINY, '--adapter', out, '--compare', TINY, '--data', DATA, '--seq-len', '16', '--json');
  expect(e.code).toBe(0);
});

describe('bad input: one line, non-zero exit, nothing written', () => {
  test('r <= 0, an unknown target (the modules that exist are listed), a LoRA key without --lora, a quantized base without LoRA', () => {
    const dir = tempDir('gptune-lora-bad-'), out = path.join(dir, 'out');
    expectCleanFailure(['train', '--model', TINY, '--data', DATA, '--out', out, '--lora', '--lora-r', '0'], /--lora-r: expected a whole number >= 1 but received '0'/, out);
    expectCleanFailure(['train', '--model', TINY, '--data', DATA, '--out', out, '--lora', '--lora-targets', 'q_proj'],
      /--lora-targets: no module named q_proj in this gpt2 model; its linear modules are c_attn, c_proj, c_fc/, out);
    expectCleanFailure(['train', '--model', TINY, '--data', DATA, '--out', out, '--lora-r', '16'], /lora_r needs lora \(--lora\)/, out);
    expectCleanFailure(['train', '--model', TINY, '--data', DATA, '--out', out, '--base-dtype', 'nf4'], /base_dtype nf4 needs lora/, out);
  });

  test('an adapter for another base: its target names or shapes do not fit, named with the base it was trained on', () => {
    const dir = tempDir('gptune-lora-mismatch-');
    // A Llama adapter on GPT-2: q_proj does not exist there.
    expectCleanFailure(['eval', '--model', TINY, '--data', DATA, '--adapter', path.join(FIXTURES, 'lora-llama')],
      /adapter_config\.json: "target_modules": no module named .* in this gpt2 model.*\(the adapter was trained on test\/fixtures\/tiny-llama\)/);
    // The tiny-llama adapter on another Llama shape: the shapes differ.
    expectCleanFailure(['eval', '--model', llama, '--data', DATA, '--adapter', path.join(FIXTURES, 'lora-llama')],
      /adapter_model\.safetensors: tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" has shape \[4, 48\] but this base model needs \[4, 32\] \(the adapter was trained on test\/fixtures\/tiny-llama\)/);
    const out = path.join(dir, 'merged');
    expectCleanFailure(['merge', '--model', llama, '--adapter', path.join(FIXTURES, 'lora-llama'), '--out', out], /has shape \[4, 48\]/, out);
    expectCleanFailure(['eval', '--model', TINY, '--data', DATA, '--adapter', path.join(dir, 'none')], /--adapter .*none: folder not found/);
  });
});
