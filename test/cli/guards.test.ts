/**
 * The CLI on runs that diverge, sizes that cannot fit and unclear input: one stderr line naming the
 * flag, key, file or tensor, a non-zero exit, and nothing written to --out.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, saveModel } from '../../lib/model/checkpoint';
import { FIXTURES, tempDir, TINY } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const DATA = path.join(FIXTURES, 'eval-text.txt');

function gptune(...args: string[]): { code: number; stdout: string; stderr: string; ms: number } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const started = Date.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

/** The tiny model with one tensor multiplied by `factor` (NaN for a diverged checkpoint), saved to a new folder. */
function scaledTiny(tensor: string, factor: number): string {
  const dir = path.join(tempDir('gptune-cli-guard-'), 'model');
  const model = loadModel(TINY);
  const t = model.params.get(tensor);
  const v = t.read();
  for (let i = 0; i < v.length; i++) v[i] *= factor;
  t.write(v);
  saveModel(model, dir, { tokenizerFrom: TINY });
  model.free();
  return dir;
}

const TRAIN = ['train', '--model', TINY, '--data', DATA, '--batch-size', '2', '--seq-len', '16'];

describe('divergence', () => {
  test('NaN losses from step 2: updates skipped with a warning each, then exit 1 with one line; --out gets no model', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    const r = gptune(...TRAIN, '--out', out, '--steps', '20', '--lr', '1e10', '--quiet');
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual([2, 3, 4, 5].map((s) => `gptune train: warning: step ${s}: loss NaN; update skipped (${s - 1} in a row, the run stops at 5)`));
    expect(lines.slice(4)).toEqual([`gptune train: training diverged: 5 consecutive steps had a non-finite loss or gradient norm (step 6: loss NaN; max_skipped_steps 5); nothing was written to ${out}`]);
    expect(r.stdout).toBe('');
    expect(fs.existsSync(out)).toBe(false);
  });

  test('--max-skipped-steps, and the last good checkpoint named when there is one', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    const r = gptune(...TRAIN, '--out', out, '--steps', '20', '--lr', '1e10', '--max-skipped-steps', '1', '--save-every', '1', '--quiet');
    expect(r.code).toBe(1);
    const good = path.join(out, 'checkpoints', 'step-1');
    expect(r.stderr.trim().split('\n').pop()).toBe(
      `gptune train: training diverged: 1 consecutive steps had a non-finite loss or gradient norm (step 2: loss NaN; max_skipped_steps 1); no model was written to ${out}; the last good checkpoint is ${good} (continue with --resume ${good} and a lower --lr)`,
    );
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['step-1']);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);
  });

  test('a checkpoint with a NaN weight: eval, generate and train name the tensor and exit 1 (no "loss": null)', () => {
    const dir = scaledTiny('h.0.attn.c_attn.weight', NaN);
    const message = `${path.join(dir, 'model.safetensors')}: tensor "transformer.h.0.attn.c_attn.weight" holds NaN or infinite values (a diverged run's weights?); gptune does not load non-finite weights`;
    for (const [command, ...args] of [
      ['eval', '--model', dir, '--data', DATA, '--json'],
      ['generate', '--model', dir, '--prompt', 'The'],
      ['train', '--model', dir, '--data', DATA, '--out', path.join(dir, '..', 'out'), '--steps', '1'],
    ]) {
      const r = gptune(command, ...args);
      expect([command, r.code, r.stdout, r.stderr]).toEqual([command, 1, '', `gptune ${command}: ${message}\n`]);
    }
  });

  test('eval whose loss overflows is an error, not "loss": null', () => {
    const dir = scaledTiny('ln_f.weight', 1e38);
    const r = gptune('eval', '--model', dir, '--data', DATA, '--json');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^gptune eval: evaluation: the loss over \d+ tokens is (NaN|-?Infinity): the model's outputs are not finite/);
  });
});

describe('sizes that cannot fit', () => {
  test('--batch-size 100000000 is refused at once with the bytes needed and available and the flag to lower', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    const r = gptune('train', '--model', TINY, '--data', DATA, '--out', out, '--batch-size', '100000000');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^gptune train: training needs [\d.]+ TB \(parameters [\d.]+ KB, gradients [\d.]+ KB, AdamW moments [\d.]+ KB, activations [\d.]+ TB, checkpoint writing [\d.]+ KB\) but [\d.]+ [KMGT]?B is (available \(MemAvailable\)|free \(os\.freemem\)|left under the cgroup memory limit); lower batch_size \(--batch-size\), seq_len \(--seq-len\) or the model size/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.ms).toBeLessThan(20000);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('absurd model sizes: new:... names the key; a config.json within the bounds is refused by the memory plan', () => {
    const spec = gptune('train', '--model', 'new:n_layer=100000,n_head=4,n_embd=64', '--data', DATA, '--out', path.join(tempDir(), 'out'));
    expect(spec.code).not.toBe(0);
    expect(spec.stderr).toBe('gptune train: model spec "new:n_layer=100000,n_head=4,n_embd=64": n_layer must be at most 1024 but is 100000\n');
    const dir = tempDir('gptune-cli-guard-');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', vocab_size: 50257, n_positions: 1024, n_embd: 16384, n_layer: 1000, n_head: 128 }));
    for (const command of [['eval', '--data', DATA], ['generate', '--prompt', 'x']]) {
      const r = gptune(command[0], '--model', dir, ...command.slice(1));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^gptune (eval|generate): (evaluation|generation) needs [\d.]+ TB \(parameters [\d.]+ TB, /);
    }
  });

  test('--max-memory for train, eval and generate; an unreadable size names the flag or key', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    const t = gptune(...TRAIN, '--out', out, '--max-memory', '500KB');
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/^gptune train: training needs [\d.]+ [KM]B \(.*\) but 500 KB is allowed by max_memory \(--max-memory\); lower batch_size/);
    const e = gptune('eval', '--model', TINY, '--data', DATA, '--max-memory', '100KiB');
    expect(e.stderr).toMatch(/^gptune eval: evaluation needs [\d.]+ MB \(parameters [\d.]+ KB, activations [\d.]+ MB\) but 102 KB is allowed by max_memory \(--max-memory\); lower --batch-size or --seq-len\n$/);
    const g = gptune('generate', '--model', TINY, '--prompt', 'The', '--max-memory', '100KB');
    expect(g.stderr).toMatch(/^gptune generate: generation needs [\d.]+ KB \(parameters [\d.]+ KB, KV cache [\d.]+ KB\) but 100 KB is allowed by max_memory \(--max-memory\); lower the model size\n$/);
    expect(gptune('eval', '--model', TINY, '--data', DATA, '--max-memory', 'lots').stderr).toBe("gptune eval: --max-memory: expected a size such as 8GB or 512MiB but received 'lots'\n");
    expect(gptune(...TRAIN, '--out', out, '--max-memory', 'lots').stderr).toBe('gptune train: --max-memory: expected a size such as "8GB" or "512MiB" or null but received the string "lots"\n');
    const config = path.join(tempDir('gptune-cli-guard-'), 'run.yaml');
    fs.writeFileSync(config, `model: ${TINY}\ndata: ${DATA}\noutput_dir: ${out}\nmax_memory: 8 parsecs\n`);
    expect(gptune('train', '--config', config).stderr).toBe(`gptune train: ${config}: key 'max_memory': expected a size such as "8GB" or "512MiB" or null but received the string "8 parsecs"\n`);
    // Enough memory: the run goes ahead.
    expect(gptune(...TRAIN, '--out', out, '--steps', '1', '--max-memory', '1GB', '--quiet').code).toBe(0);
  });
});

describe('unclear or silent input', () => {
  test('invalid optimizer values are refused before training, naming the flag or key', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    const cases: Array<[string, string, string]> = [
      ['--eps', '0', 'a number > 0'], ['--beta1', '1', 'a number in [0, 1)'], ['--beta2', '-0.5', 'a number >= 0'],
      ['--lr', '-1', 'a number >= 0'], ['--weight-decay', '-0.1', 'a number >= 0'], ['--grad-clip', '-1', 'a number >= 0'],
    ];
    for (const [flag, value, expected] of cases) {
      const r = gptune(...TRAIN, '--out', out, flag, value);
      expect([flag, r.code]).toEqual([flag, 2]);
      expect(r.stderr).toMatch(new RegExp(`^gptune train: ${flag}: expected ${expected.replace(/[[\]()]/g, '\\$&')} but received`));
    }
    const config = path.join(tempDir('gptune-cli-guard-'), 'run.yaml');
    fs.writeFileSync(config, `model: ${TINY}\ndata: ${DATA}\noutput_dir: ${out}\neps: 0\n`);
    expect(gptune('train', '--config', config).stderr).toBe(`gptune train: ${config}: key 'eps': expected a number > 0 but received number 0\n`);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('eval --compare with a missing folder names --compare, before evaluating --model', () => {
    const r = gptune('eval', '--model', TINY, '--data', DATA, '--compare', '/missing/model');
    expect([r.code, r.stdout, r.stderr]).toEqual([2, '', 'gptune eval: --compare /missing/model: folder not found\n']);
  });

  test('a stray positional argument is an error naming it', () => {
    for (const [command, ...args] of [['train', ...TRAIN.slice(1), 'extra'], ['eval', '--model', TINY, 'extra', '--data', DATA], ['generate', 'extra', '--model', TINY, '--prompt', 'x'], ['info', 'extra']]) {
      const r = gptune(command, ...args);
      expect([command, r.code, r.stderr]).toEqual([command, 2, `gptune ${command}: unexpected argument 'extra' (options start with --; see gptune ${command} --help)\n`]);
    }
  });

  test('--resume with a different --model is an error naming both; the same model is fine', () => {
    const out = path.join(tempDir('gptune-cli-guard-'), 'out');
    expect(gptune(...TRAIN, '--out', out, '--steps', '1', '--save-every', '1', '--quiet').code).toBe(0);
    const checkpoints = path.join(out, 'checkpoints');
    const other = 'new:n_layer=1,n_head=2,n_embd=8,n_positions=32';
    const r = gptune('train', '--resume', checkpoints, '--model', other, '--steps', '2', '--quiet');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`gptune train: --model ${other} conflicts with --resume ${checkpoints}: that checkpoint continues a run of ${TINY} and resuming loads its weights; drop --model, or train ${other} without --resume\n`);
    const same = gptune('train', '--resume', checkpoints, '--model', TINY, '--steps', '2', '--quiet');
    expect(same.stderr).toBe('');
    expect(same.code).toBe(0);
  });
});
