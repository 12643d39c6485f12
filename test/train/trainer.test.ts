/**
 * The Trainer: the `gptune train` step semantics (against trainLM, the contract's reference loop),
 * evaluation cadence and log lines, early stopping keeping the best model, exact resumption,
 * atomic checkpoints under an injected write failure, rotation, iterative fine-tuning, and silence
 * unless progress is asked for. All on the tiny fixture model (2 layers, n_embd 32, vocab 350).
 */
import * as crypto from 'crypto';
import fs = require('fs');
import * as path from 'path';
import { TrainConfig } from '../../lib/config';
import type { Batch, BatchSource, DataState } from '../../lib/data/types';
import { loadModel } from '../../lib/model/checkpoint';
import { Decoder, IGNORE_INDEX } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { readTrainerState, stepCheckpoints } from '../../lib/train/checkpoint_state';
import { evaluate, StepLog as LMStepLog, trainLM } from '../../lib/train/lm';
import { EvalLog, FitResult, StepLog, Trainer } from '../../lib/train/trainer';
import { Rng } from '../../lib/util/rng';
import { FIXTURES, tempDir, TINY } from '../helpers';

const tokenizer = loadTokenizer(TINY);
const EVAL_TEXT = fs.readFileSync(path.join(FIXTURES, 'eval-text.txt'), 'utf8');

/** Writes text files into a fresh temp folder; returns their paths. */
function textFiles(files: Record<string, string>): Record<string, string> & { dir: string } {
  const dir = tempDir('gptune-trainer-');
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = path.join(dir, name);
    fs.writeFileSync(paths[name], text);
  }
  return Object.assign(paths, { dir });
}

/**
 * Validation batches of plain text as lib/data promises them: consecutive windows of T+1 at stride
 * T, then the remaining tokens in one row padded with ignored targets (every token after the first
 * scored once), B rows per batch.
 */
function validationBatches(ids: number[], T: number, B: number): Batch[] {
  const rows: number[][] = [];
  for (let start = 0; start + 1 < ids.length; start += T) rows.push(ids.slice(start, Math.min(start + T + 1, ids.length)));
  const batches: Batch[] = [];
  for (let first = 0; first < rows.length; first += B) {
    const group = rows.slice(first, first + B);
    const inputs = new Int32Array(group.length * T).fill(tokenizer.eosTokenId), targets = new Int32Array(group.length * T).fill(IGNORE_INDEX);
    group.forEach((row, b) => {
      for (let t = 0; t + 1 < row.length; t++) {
        inputs[b * T + t] = row[t];
        targets[b * T + t] = row[t + 1];
      }
    });
    const scoredTokens = group.reduce((n, row) => n + row.length - 1, 0);
    batches.push({ B: group.length, T, inputs, targets, positions: null, segmentIds: null, scoredTokens });
  }
  return batches;
}

/** Runs a Trainer to the end, collecting its events. */
async function run(config: Partial<TrainConfig>, opts: ConstructorParameters<typeof Trainer>[1] = {}) {
  const trainer = new Trainer(config, opts);
  const steps: StepLog[] = [], evals: EvalLog[] = [], order: string[] = [];
  trainer.on('step', (s) => { steps.push(s); order.push(`step ${s.step}`); });
  trainer.on('eval', (e) => { evals.push(e); order.push(`eval ${e.step}`); });
  trainer.on('checkpoint', (c) => order.push(`checkpoint ${c.kind} ${c.step}`));
  trainer.on('early_stop', (e) => order.push(`early_stop ${e.step}`));
  const result = await trainer.fit();
  return { result, steps, evals, order };
}

function freeResult(r: { result: FitResult }): void {
  r.result.model.free();
}

/** File name -> SHA-256 of its bytes, for every file of a folder. */
function folderDigest(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, n))).digest('hex')]));
}

function weightsOf(dir: string): Float32Array {
  const m = loadModel(dir);
  const w = m.params.arena.read(0, m.params.numel);
  m.free();
  return w;
}

/** Windows of T+1 at stride T over the tokens, as the test computes them (independent of text_windows.ts). */
function windowBatch(ids: number[], T: number, windows: number[]): Batch {
  const B = windows.length;
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  windows.forEach((w, b) => {
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = ids[w * T + t];
      targets[b * T + t] = ids[w * T + t + 1];
    }
  });
  return { B, T, inputs, targets, positions: null, segmentIds: null, scoredTokens: B * T };
}

describe('plain text keeps the `gptune train` contract', () => {
  test('step losses and gradient norms equal trainLM\'s (shuffle, grad accumulation, warmup + cosine, clipping, weight decay)', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT });
    const o = {
      steps: 9, batchSize: 3, seqLen: 16, gradAccum: 2, lr: 2e-3, minLr: 1e-4, warmup: 2, schedule: 'cosine' as const,
      gradClip: 0.5, beta1: 0.8, beta2: 0.95, eps: 1e-7, weightDecay: 0.1, shuffle: true, seed: 5,
    };
    const reference: LMStepLog[] = [];
    const model = loadModel(TINY);
    await trainLM(model, Int32Array.from(tokenizer.encode(EVAL_TEXT)), o, (s) => { reference.push(s); });
    const referenceWeights = model.params.arena.read(0, model.params.numel);
    model.free();

    const r = await run({
      model: TINY, data: f['train.txt'], output_dir: path.join(f.dir, 'out'), max_steps: 9, batch_size: 3, seq_len: 16,
      grad_accum_steps: 2, learning_rate: 2e-3, min_lr: 1e-4, warmup_steps: 2, schedule: 'cosine', grad_clip: 0.5,
      beta1: 0.8, beta2: 0.95, eps: 1e-7, weight_decay: 0.1, shuffle: true, seed: 5,
    });
    // Same windows, same kernels, same order of float32 operations: identical numbers, not close ones.
    expect(r.steps.map((s) => s.loss)).toEqual(reference.map((s) => s.loss));
    expect(r.steps.map((s) => s.grad_norm)).toEqual(reference.map((s) => s.grad_norm));
    expect(r.steps.map((s) => s.lr)).toEqual(reference.map((s) => s.lr));
    expect(weightsOf(path.join(f.dir, 'out'))).toEqual(referenceWeights);
    // A plain run (no validation, no save_every) writes the model folder and the run's history and report.
    expect(fs.readdirSync(path.join(f.dir, 'out')).sort()).toEqual(['.gptune-output.json', 'README.md', 'config.json', 'gptune_card.json', 'merges.txt', 'metrics.jsonl', 'model.safetensors', 'report.html', 'vocab.json']);
    freeResult(r);
  });

  test('epochs: an epoch is ceil(windows / B) micro-batches; max_steps overrides epochs', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT }); // 189 tokens: 11 windows of T = 16, 3 batches of 4
    const byEpochs = await run({ model: TINY, data: f['train.txt'], output_dir: null, seq_len: 16, batch_size: 4, epochs: 2 }, {});
    expect(byEpochs.result.totalSteps).toBe(6);
    expect(byEpochs.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6]);
    // Fractional epochs: 12 windows drawn of 11 per epoch after 3 steps.
    expect(byEpochs.steps[2].epoch).toBeCloseTo(1 + 1 / 11, 12);
    freeResult(byEpochs);
    const bySteps = await run({ model: TINY, data: f['train.txt'], output_dir: null, seq_len: 16, batch_size: 4, epochs: 2, max_steps: 2 });
    expect(bySteps.steps).toHaveLength(2);
    freeResult(bySteps);
  });
});

describe('evaluation', () => {
  test('evaluate() = mean loss and argmax accuracy over the scored tokens of all batches', () => {
    const model = loadModel(TINY);
    const ids = tokenizer.encode(EVAL_TEXT);
    // Two batches of different sizes; the second with some targets ignored and a packed layout.
    const b1 = windowBatch(ids, 16, [0, 1, 2]);
    const b2 = windowBatch(ids, 9, [4]);
    b2.targets[0] = IGNORE_INDEX; b2.targets[5] = IGNORE_INDEX;
    b2.positions = Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3, 4]);
    b2.segmentIds = Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1]);
    b2.scoredTokens = 7;
    const r = evaluate(model, [b1, b2]);
    // Independent reference: per-position losses from forward, argmax from the logits rows, in float64.
    let sum = 0, n = 0, correct = 0;
    for (const b of [b1, b2]) {
      const f = model.forward(b.inputs, b.B, b.T, b.targets, { positions: b.positions, segmentIds: b.segmentIds });
      for (let i = 0; i < b.B * b.T; i++) {
        if (b.targets[i] === IGNORE_INDEX) continue;
        sum += f.losses[i];
        n++;
        const row = model.logitsRows(i, 1);
        let best = 0;
        for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
        if (best === b.targets[i]) correct++;
      }
    }
    expect(r.tokens).toBe(48 + 7);
    expect(r.loss).toBeCloseTo(sum / n, 12); // the same float32 losses summed in the same order
    expect(r.perplexity).toBeCloseTo(Math.exp(sum / n), 10);
    expect(r.tokenAccuracy).toBe(correct / n);
    model.free();
  });

  test('evaluate() leaves targets equal to the appended EOS out of the accuracy, not out of the loss', () => {
    const model = loadModel(TINY);
    const eos = tokenizer.eosTokenId;
    const ids = tokenizer.encode(EVAL_TEXT);
    const b = windowBatch(ids, 16, [0, 1]);
    const plain = model.forward(b.inputs, b.B, b.T, b.targets, { predictions: true });
    const predicted = plain.predictions!;
    // EOS as the target where gptune would have appended it (here: where the model does not predict it).
    // The random tiny model predicts none of the text: make some targets its own predictions (right answers).
    const free = [...Array(32).keys()].filter((i) => predicted[i] !== eos);
    expect(free.length).toBeGreaterThanOrEqual(10);
    for (const i of free.slice(0, 6)) b.targets[i] = predicted[i];
    const eosAt = free.slice(6, 10);
    for (const i of eosAt) b.targets[i] = eos;
    let correct = 0, counted = 0;
    for (let i = 0; i < b.B * b.T; i++) {
      if (b.targets[i] === eos) continue;
      counted++;
      if (predicted[i] === b.targets[i]) correct++;
    }
    const r = evaluate(model, [b], eos);
    expect(correct).toBeGreaterThan(0);
    expect(counted).toBe(32 - eosAt.length);
    expect(r.tokenAccuracy).toBe(correct / counted);
    expect(r.tokens).toBe(32); // the loss still scores every target
    expect(evaluate(model, [b]).tokenAccuracy).toBe(correct / 32); // nothing appended: every target counts
    model.free();
  });

  test('eval every N steps and at the end; one JSON line per step and per evaluation', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'The gulls followed the ferry past the lighthouse to the island, counting waves. '.repeat(2) });
    const log = path.join(f.dir, 'logs', 'train.jsonl');
    const r = await run({
      model: TINY, data: f['train.txt'], validation: f['val.txt'], output_dir: path.join(f.dir, 'out'), max_steps: 7, batch_size: 2,
      seq_len: 16, learning_rate: 1e-3, eval_every: 3, log_file: log,
    });
    expect(r.order.filter((e) => !e.startsWith('checkpoint'))).toEqual([
      'step 1', 'step 2', 'step 3', 'eval 3', 'step 4', 'step 5', 'step 6', 'eval 6', 'step 7', 'eval 7',
    ]);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const stepLines = lines.filter((l) => !('val_loss' in l)), evalLines = lines.filter((l) => 'val_loss' in l);
    expect(stepLines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(evalLines.map((l) => l.step)).toEqual([3, 6, 7]);
    for (const l of stepLines) {
      expect(Object.keys(l).sort()).toEqual(['elapsed_s', 'epoch', 'grad_norm', 'loss', 'lr', 'ms', 'step', 'token_accuracy', 'tokens', 'tokens_per_s'].sort());
      expect(l.tokens).toBe(32);
      expect(l.token_accuracy).toBeGreaterThanOrEqual(0);
      expect(l.token_accuracy).toBeLessThanOrEqual(1);
    }
    for (const l of evalLines) {
      expect(l.val_perplexity).toBeCloseTo(Math.exp(l.val_loss), 9);
      expect(l.elapsed_s).toBeGreaterThan(0);
    }
    expect(lines.map((l) => l.elapsed_s)).toEqual([...lines.map((l) => l.elapsed_s)].sort((a, b) => a - b));
    // The last evaluation is of the final model: recompute it from the saved last checkpoint.
    const batches = validationBatches(tokenizer.encode(fs.readFileSync(f['val.txt'], 'utf8')), 16, 2);
    const last = loadModel(path.join(f.dir, 'out', 'checkpoints', 'last'));
    expect(evaluate(last, batches).loss).toBe(evalLines[2].val_loss);
    last.free();
    freeResult(r);
  });
});

describe('early stopping', () => {
  // A tiny model memorising two sentences at a high learning rate gets worse on different text.
  const train = 'one two three four five six seven eight nine ten. '.repeat(6);
  const val = 'The ferry left the harbour at nine, and the gulls followed it out past the lighthouse. ';

  test('stops after `patience` evaluations without improvement and output_dir holds the best model', async () => {
    const f = textFiles({ 'train.txt': train, 'val.txt': val });
    const out = path.join(f.dir, 'out');
    const r = await run({
      model: TINY, data: f['train.txt'], validation: f['val.txt'], output_dir: out, max_steps: 200, batch_size: 2, seq_len: 16,
      learning_rate: 1e-2, eval_every: 2, early_stopping_patience: 3, early_stopping_min_delta: 0.001, shuffle: false,
    });
    const { result, evals } = r;
    expect(result.reason).toBe('early_stopping');
    expect(result.step).toBeLessThan(200);
    const best = Math.min(...evals.map((e) => e.val_loss));
    expect(result.bestValLoss).toBe(best);
    const bestEval = evals.find((e) => e.val_loss === best)!;
    expect(result.bestStep).toBe(bestEval.step);
    // The run stopped exactly `patience` evaluations after the last improvement.
    const lastImprovement = evals.map((e) => e.improved).lastIndexOf(true);
    expect(evals.length - 1 - lastImprovement).toBe(3);
    expect(evals[evals.length - 1].val_loss).toBeGreaterThan(best + 0.001);
    expect(r.order.slice(-3)).toEqual([`eval ${result.step}`, `early_stop ${result.step}`, `checkpoint last ${result.step}`]);
    // output_dir = the best model: its validation loss is the best one, not the last one.
    const valBatches = validationBatches(tokenizer.encode(val), 16, 2);
    for (const dir of [out, path.join(out, 'checkpoints', 'best')]) {
      const m = loadModel(dir);
      expect(evaluate(m, valBatches).loss).toBe(best);
      m.free();
    }
    expect(weightsOf(out)).toEqual(weightsOf(path.join(out, 'checkpoints', 'best')));
    // The last state is kept too, named, and resumable.
    expect(readTrainerState(path.join(out, 'checkpoints', 'last')).step).toBe(result.step);
    expect(fs.existsSync(path.join(out, 'checkpoints', 'last', 'optimizer.safetensors'))).toBe(true);
    freeResult(r);
  });
});

describe('checkpoints and resumption', () => {
  const base = (f: { dir: string; 'train.txt': string; 'val.txt': string }, out: string): Partial<TrainConfig> => ({
    model: TINY, data: f['train.txt'], validation: f['val.txt'], output_dir: out, max_steps: 10, batch_size: 3, seq_len: 16,
    grad_accum_steps: 2, learning_rate: 3e-3, min_lr: 3e-4, warmup_steps: 2, schedule: 'cosine', weight_decay: 0.05, grad_clip: 0.4,
    shuffle: true, seed: 11, eval_every: 3,
  });

  test('resume == uninterrupted: identical losses, evaluations and weights after resuming mid-epoch', async () => {
    // 11 windows, 6 per step: every step crosses or nears an epoch boundary, so the shuffle RNG state matters.
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const full = await run({ ...base(f, path.join(f.dir, 'full')), save_every: 4 });
    expect(stepCheckpoints(path.join(f.dir, 'full', 'checkpoints')).map((c) => c.step)).toEqual([4, 8]);
    freeResult(full);
    const resumed = await run({ ...base(f, path.join(f.dir, 'resumed')), resume_from: path.join(f.dir, 'full', 'checkpoints', 'step-4') });
    expect(resumed.steps.map((s) => s.step)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(resumed.steps.map((s) => s.loss)).toEqual(full.steps.slice(4).map((s) => s.loss));
    expect(resumed.steps.map((s) => s.grad_norm)).toEqual(full.steps.slice(4).map((s) => s.grad_norm));
    expect(resumed.steps.map((s) => s.epoch)).toEqual(full.steps.slice(4).map((s) => s.epoch));
    expect(resumed.evals.map((e) => [e.step, e.val_loss, e.best_step])).toEqual(full.evals.filter((e) => e.step > 4).map((e) => [e.step, e.val_loss, e.best_step]));
    expect(weightsOf(path.join(f.dir, 'resumed', 'checkpoints', 'last'))).toEqual(weightsOf(path.join(f.dir, 'full', 'checkpoints', 'last')));
    expect(weightsOf(path.join(f.dir, 'resumed'))).toEqual(weightsOf(path.join(f.dir, 'full')));
    freeResult(resumed);
  });

  test('with dropout, resume == uninterrupted bit for bit (the masks derive from the seed and step), and evaluations do not drop', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const cfg = (out: string): Partial<TrainConfig> => ({ ...base(f, path.join(f.dir, out)), max_steps: 6, dropout: 0.1 });
    const full = await run({ ...cfg('full'), save_every: 3 });
    const resumed = await run({ ...cfg('resumed'), resume_from: path.join(f.dir, 'full', 'checkpoints', 'step-3') });
    expect(resumed.steps.map((s) => [s.step, s.loss, s.grad_norm])).toEqual(full.steps.slice(3).map((s) => [s.step, s.loss, s.grad_norm]));
    expect(weightsOf(path.join(f.dir, 'resumed'))).toEqual(weightsOf(path.join(f.dir, 'full')));
    // The same run without dropout trains differently (TINY's config.json has no dropout): the masks were applied.
    const plain = await run({ ...cfg('plain'), dropout: null });
    expect(plain.steps[0].loss).not.toBe(full.steps[0].loss);
    // Evaluations are of the model as it is, with no mask: recomputing the last one from the saved model gives it exactly.
    const tokenizer = loadTokenizer(TINY);
    const batches = validationBatches(tokenizer.encode(fs.readFileSync(f['val.txt'], 'utf8')), 16, 2);
    const last = loadModel(path.join(f.dir, 'full', 'checkpoints', 'last'));
    expect(evaluate(last, batches).loss).toBe(full.evals[full.evals.length - 1].val_loss);
    last.free();
    for (const r of [full, resumed, plain]) freeResult(r);
  });

  test('a checkpoint holds the HF model, optimizer state, trainer state and the resolved config', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const out = path.join(f.dir, 'out');
    const r = await run({ ...base(f, out), max_steps: 4, save_every: 4 });
    const dir = path.join(out, 'checkpoints', 'step-4');
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'optimizer.safetensors', 'train_config.json', 'trainer_state.json', 'vocab.json']);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'train_config.json'), 'utf8'));
    expect(saved).toEqual({ ...new Trainer(base(f, out)).config, max_steps: 4, save_every: 4 });
    const state = readTrainerState(dir);
    expect(state.step).toBe(4);
    expect(state.total_steps).toBe(4);
    expect(state.data_state.epoch).toBe(2); // 4 steps x 6 windows = 24 = 2 epochs of 11 + 2
    expect(state.data_state.position).toBe(2);
    expect(weightsOf(dir)).toEqual(weightsOf(path.join(out, 'checkpoints', 'last')));
    freeResult(r);
  });

  test('save_total_limit keeps the newest step-N checkpoints (best and last are never deleted)', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const out = path.join(f.dir, 'out');
    const r = await run({ ...base(f, out), max_steps: 5, save_every: 1, save_total_limit: 2 });
    expect(fs.readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['best', 'last', 'step-4', 'step-5']);
    freeResult(r);
  });

  test('a write failure while checkpointing leaves the previous checkpoint intact and resumable', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const out = path.join(f.dir, 'out');
    const first = await run({ ...base(f, out), max_steps: 3 });
    freeResult(first);
    const lastDir = path.join(out, 'checkpoints', 'last');
    const snapshot = folderDigest(lastDir);

    // Resume to step 6; when step 6 is done, make the third write of the next checkpoint fail as a full disk would.
    const trainer = new Trainer({ ...base(f, out), max_steps: 6, eval_every: 0, eval_at_end: false, resume_from: lastDir });
    const realWriteSync = fs.writeSync;
    let armed = false, writes = 0;
    trainer.on('step', (s) => { armed = s.step === 6; });
    const spy = jest.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      if (armed && ++writes === 3) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return (realWriteSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    try {
      await expect(trainer.fit()).rejects.toThrow(/ENOSPC/);
    } finally {
      spy.mockRestore();
    }
    expect(writes).toBeGreaterThanOrEqual(3);
    expect(fs.readdirSync(path.join(out, 'checkpoints')).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(folderDigest(lastDir)).toEqual(snapshot);
    expect(readTrainerState(lastDir).step).toBe(3);
    const again = await run({ ...base(f, out), max_steps: 4, eval_every: 0, resume_from: lastDir });
    expect(again.steps.map((s) => s.step)).toEqual([4]);
    freeResult(again);
  });

  test('stop() finishes the current step, writes checkpoints/last and reports the interruption', async () => {
    const f = textFiles({ 'train.txt': EVAL_TEXT, 'val.txt': 'Her father counted the gulls at noon. '.repeat(3) });
    const out = path.join(f.dir, 'out');
    const trainer = new Trainer({ ...base(f, out), max_steps: 50 });
    trainer.on('step', (s) => { if (s.step === 2) trainer.stop(); });
    const result = await trainer.fit();
    expect([result.reason, result.signal, result.step]).toEqual(['interrupted', 'stop()', 2]);
    expect(result.lastCheckpoint).toBe(path.join(out, 'checkpoints', 'last'));
    expect(readTrainerState(result.lastCheckpoint!).step).toBe(2);
    // Interrupted: output_dir holds no model, only the checkpoints and the run's history and report.
    expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'checkpoints', 'metrics.jsonl', 'report.html']);
    result.model.free();
  });
});

describe('programmatic use', () => {
  /** Batches from a seeded generator with a few ignored targets; its state is the RNG state. */
  class RandomBatches implements BatchSource {
    readonly itemsPerEpoch = 8;
    readonly batchesPerEpoch = 4;
    private rng: Rng;
    private count = 0;
    constructor(seed: number) { this.rng = new Rng(seed); }
    next(): Batch {
      const B = 2, T = 7;
      const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
      for (let i = 0; i < B * T; i++) {
        inputs[i] = this.rng.int(350);
        targets[i] = this.rng.next() < 0.3 ? IGNORE_INDEX : this.rng.int(350);
      }
      this.count += B;
      return { B, T, inputs, targets, positions: null, segmentIds: null, scoredTokens: targets.filter((t) => t !== IGNORE_INDEX).length };
    }
    getState(): DataState {
      return { epoch: Math.floor(this.count / 8), position: this.count % 8, rng: this.rng.getState(), count: this.count };
    }
    setState(s: DataState): void {
      this.rng.setState(s.rng as ReturnType<Rng['getState']>);
      this.count = s.count as number;
    }
  }

  test('a model and a BatchSource from code; nothing printed; the gradient is that of the mean over all scored tokens', async () => {
    const model = loadModel(TINY);
    const reference = loadModel(TINY);
    const writes = [jest.spyOn(process.stdout, 'write'), jest.spyOn(process.stderr, 'write')];
    const trainer = new Trainer({ max_steps: 1, grad_accum_steps: 3, learning_rate: 1e-3, grad_clip: 0, output_dir: null }, { model, train: new RandomBatches(9) });
    const steps: StepLog[] = [];
    trainer.on('step', (s) => steps.push(s));
    const result = await trainer.fit();
    for (const w of writes) {
      expect(w).not.toHaveBeenCalled();
      w.mockRestore();
    }
    expect(result.model).toBe(model);
    // Reference: the same three micro-batches, backward with the total scored count, one AdamW step.
    const source = new RandomBatches(9);
    const batches = [source.next(), source.next(), source.next()];
    const scored = batches.reduce((n, b) => n + b.scoredTokens, 0);
    reference.zeroGrad();
    let lossSum = 0;
    for (const b of batches) {
      lossSum += reference.forward(b.inputs, b.B, b.T, b.targets).lossSum;
      reference.backward(scored);
    }
    expect(steps[0].loss).toBe(lossSum / scored);
    expect(steps[0].tokens).toBe(scored);
    expect(steps[0].grad_norm).toBe(reference.gradNorm());
    model.free();
    reference.free();
  });

  test('progress on request: plain lines off a terminal, a bar with ETA on one', async () => {
    for (const isTTY of [false, true]) {
      let text = '';
      const stream = { isTTY, columns: 200, write: (s: string) => { text += s; return true; } };
      const model = loadModel(TINY);
      const r = await new Trainer({ max_steps: 3, output_dir: null }, { model, train: new RandomBatches(1), progress: true, progressStream: stream }).fit();
      expect(r.step).toBe(3);
      if (isTTY) {
        expect(text).toMatch(/^\r\[#+-*\] +\d+% 1\/3 .*ETA/);
        expect(text).toContain('3/3');
        expect(text.endsWith('\n')).toBe(true);
      } else {
        expect(text.trim().split('\n').map((l) => l.split(' ')[1])).toEqual(['1/3', '2/3', '3/3']);
        expect(text).not.toContain('\r');
      }
      model.free();
    }
  });

  test('configuration errors name the key, and validation batches must come with a BatchSource', () => {
    const model = loadModel(TINY);
    expect(() => new Trainer({ learning_rat: 1 } as unknown as Partial<TrainConfig>, { model, train: new RandomBatches(1) })).toThrow(/unknown key 'learning_rat' \(did you mean 'learning_rate'\?\)/);
    expect(() => new Trainer({ batch_size: 0 }, { model, train: new RandomBatches(1) })).toThrow(/key 'batch_size': expected a whole number >= 1 but received number 0/);
    expect(() => new Trainer({ validation: 'v.txt' }, { model, train: new RandomBatches(1) })).toThrow(/options.validation/);
    expect(() => new Trainer({ output_dir: 'x' })).toThrow(/'model' is required/);
    model.free();
  });

  test('the library names config keys in its messages; options.nameKey renames them (the CLI names its flags)', async () => {
    const out = tempDir();
    try {
      const config = { model: TINY, data: path.join(out, 'missing.txt'), output_dir: path.join(out, 'run'), max_steps: 1 };
      await expect(new Trainer(config).fit()).rejects.toThrow(/^data \S*missing\.txt: file not found$/);
      await expect(new Trainer(config, { nameKey: (key) => `<${key}>` }).fit()).rejects.toThrow(/^<data> \S*missing\.txt: file not found$/);
      fs.mkdirSync(path.join(out, 'log'));
      const logIsFolder = { ...config, data: path.join(FIXTURES, 'eval-text.txt'), log_file: path.join(out, 'log') };
      await expect(new Trainer(logIsFolder).fit()).rejects.toThrow(/^log_file \S*log: is a folder; expected a file to append JSON lines to$/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('iterative fine-tuning', () => {
  test('the output of one run is a valid model for the next, which starts from the tuned weights', async () => {
    const f = textFiles({ 'domain.txt': EVAL_TEXT, 'task.txt': 'one two three four five six seven eight nine ten. '.repeat(6) });
    const first = path.join(f.dir, 'domain-model'), second = path.join(f.dir, 'task-model');
    const r1 = await run({ model: TINY, data: f['domain.txt'], output_dir: first, max_steps: 5, batch_size: 2, seq_len: 16, learning_rate: 3e-3, shuffle: false });
    freeResult(r1);
    const r2 = await run({ model: first, data: f['task.txt'], output_dir: second, max_steps: 3, batch_size: 2, seq_len: 16, learning_rate: 3e-3, shuffle: false });
    // Step 1 of the second run trains on task windows 0 and 1; its loss is the first run's model's loss on them.
    const tuned: Decoder = loadModel(first);
    const b = windowBatch(tokenizer.encode(fs.readFileSync(f['task.txt'], 'utf8')), 16, [0, 1]);
    expect(r2.steps[0].loss).toBe(tuned.forward(b.inputs, 2, 16, b.targets).loss);
    const base = loadModel(TINY);
    expect(r2.steps[0].loss).not.toBe(base.forward(b.inputs, 2, 16, b.targets).loss);
    tuned.free();
    base.free();
    expect(fs.readdirSync(second).sort()).toEqual(['.gptune-output.json', 'README.md', 'config.json', 'gptune_card.json', 'merges.txt', 'metrics.jsonl', 'model.safetensors', 'report.html', 'vocab.json']);
    expect(fs.readFileSync(path.join(second, 'vocab.json'))).toEqual(fs.readFileSync(path.join(TINY, 'vocab.json')));
    freeResult(r2);
  });
});
