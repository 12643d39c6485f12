/**
 * What `gptune train` may do to the disk: --out is written only when it is new, empty or gptune's
 * own previous output (--overwrite replaces that, and nothing else); a read-only or full target fails
 * before the first step, naming the folder and the bytes; a failed final save says where the
 * trained weights are; temporary folders of killed runs are removed; a checkpoint resumes from any
 * working directory; folders given for files are one-line errors naming the flag.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { OutputError } from '../../lib/errors';
import { isAtomicTemporary } from '../../lib/io/atomic';
import { Trainer } from '../../lib/train/trainer';
import { FIXTURES, tempDir, TINY } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/cli/main.js');
const DATA = path.join(FIXTURES, 'eval-text.txt');
const SMALL = ['--steps', '2', '--batch-size', '1', '--seq-len', '16', '--quiet'];

function gptune(args: string[], cwd = ROOT): { code: number; stdout: string; stderr: string } {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under `dir` with its contents, to show that a refused run changed nothing. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      if (fs.statSync(p).isDirectory()) walk(p);
      else out[path.relative(dir, p)] = fs.readFileSync(p, 'base64');
    }
  };
  walk(dir);
  return out;
}

function expectOneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  expect(r.code).not.toBe(0);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

/** A folder of the user's: files, a sub-folder, a .git. */
function userFolder(): string {
  const dir = tempDir('gptune-user-');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'my notes\n');
  fs.mkdirSync(path.join(dir, 'photos'));
  fs.writeFileSync(path.join(dir, 'photos', 'cat.jpg'), 'not really a cat');
  fs.mkdirSync(path.join(dir, '.git'));
  fs.writeFileSync(path.join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  return dir;
}

describe('--out never deletes or replaces what gptune did not write', () => {
  test('a folder holding unrelated files, a sub-folder and .git is refused, naming them; nothing changes', () => {
    const dir = userFolder();
    const before = snapshot(dir);
    const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', dir, ...SMALL]);
    expectOneLineError(r, /--out .*: is not empty and is not a gptune output \(\.git, notes\.txt, photos\)/);
    expect(r.code).toBe(2);
    expect(snapshot(dir)).toEqual(before);
  });

  test('--data d/train.txt --out d keeps the training data', () => {
    const dir = tempDir('gptune-user-');
    fs.copyFileSync(DATA, path.join(dir, 'train.txt'));
    const r = gptune(['train', '--model', TINY, '--data', path.join(dir, 'train.txt'), '--out', dir, ...SMALL]);
    expectOneLineError(r, /is not a gptune output \(train\.txt\)/);
    expect(fs.readFileSync(path.join(dir, 'train.txt'), 'utf8')).toBe(fs.readFileSync(DATA, 'utf8'));
  });

  test('--out . in a folder with files is refused, naming the files gptune would overwrite', () => {
    const dir = userFolder();
    fs.writeFileSync(path.join(dir, 'config.json'), '{"mine": true}\n');
    const before = snapshot(dir);
    const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', '.', ...SMALL], dir);
    expectOneLineError(r, /--out \.: is not empty .*gptune would overwrite config\.json/);
    expect(snapshot(dir)).toEqual(before);
  });

  test('an existing empty folder is fine', () => {
    const dir = tempDir('gptune-empty-');
    const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', dir, ...SMALL]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(true);
  });

  test('a previous gptune output: refused without --overwrite, replaced with it; a file added to it is never touched', () => {
    const out = path.join(tempDir('gptune-again-'), 'out');
    const first = gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL, '--save-every', '1']);
    expect(first.code).toBe(0);
    expect(fs.readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['last', 'step-1', 'step-2']);

    const again = gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL]);
    expectOneLineError(again, /--out .*: holds a previous gptune output \(README\.md, checkpoints, config\.json, .*\); add --overwrite/);

    const replaced = gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL, '--overwrite']);
    expect(replaced.stderr).toBe('');
    expect(replaced.code).toBe(0);
    // The previous run's checkpoints went with it (this run writes none).
    expect(fs.readdirSync(out).sort()).toEqual(['.gptune-output.json', 'README.md', 'config.json', 'gptune_card.json', 'merges.txt', 'metrics.jsonl', 'model.safetensors', 'report.html', 'vocab.json']);

    fs.writeFileSync(path.join(out, 'my-results.csv'), 'a,b\n1,2\n');
    const before = snapshot(out);
    const refused = gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL, '--overwrite']);
    expectOneLineError(refused, /--out .*: holds files gptune did not write \(my-results\.csv\)/);
    expect(snapshot(out)).toEqual(before);
  });

  test('a config file can ask for overwrite too', () => {
    const dir = tempDir('gptune-again-');
    const out = path.join(dir, 'out');
    expect(gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL]).code).toBe(0);
    fs.writeFileSync(path.join(dir, 'run.yaml'), 'overwrite: true\n');
    const r = gptune(['train', '--config', path.join(dir, 'run.yaml'), '--model', TINY, '--data', DATA, '--out', out, ...SMALL]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('paths of the wrong kind are one-line errors naming the flag', () => {
  test('--out is a file', () => {
    const file = path.join(tempDir(), 'model.txt');
    fs.writeFileSync(file, 'keep me');
    expectOneLineError(gptune(['train', '--model', TINY, '--data', DATA, '--out', file, ...SMALL]), /--out .*model\.txt: exists and is a file/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  test('--log is a folder', () => {
    const dir = tempDir();
    const out = path.join(dir, 'out');
    const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', out, '--log', dir, ...SMALL]);
    expectOneLineError(r, /--log .*: is a folder; expected a file/);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('--data is a folder for a JSONL format', () => {
    const dir = tempDir();
    const r = gptune(['train', '--model', TINY, '--data', dir, '--format', 'prompt_completion', '--out', path.join(dir, 'out'), ...SMALL]);
    expectOneLineError(r, /--data .*: is a folder; format prompt_completion reads one file/);
  });

  test('--model is a file', () => {
    const file = path.join(TINY, 'model.safetensors');
    expectOneLineError(gptune(['train', '--model', file, '--data', DATA, '--out', path.join(tempDir(), 'out'), ...SMALL]), /--model .*model\.safetensors: is a file; expected a model folder/);
  });

  test('--out below a file', () => {
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, 'x');
    expectOneLineError(gptune(['train', '--model', TINY, '--data', DATA, '--out', path.join(file, 'out'), ...SMALL]), /--out .*: .*a-file is a file, not a folder/);
  });
});

describe('resuming', () => {
  test('from another working directory, with the first run given relative paths', () => {
    const dir = tempDir('gptune-cwd-');
    fs.copyFileSync(DATA, path.join(dir, 'train.txt'));
    const first = gptune(['train', '--model', TINY, '--data', 'train.txt', '--out', 'out', '--steps', '2', '--batch-size', '1', '--seq-len', '16', '--save-every', '1', '--quiet'], dir);
    expect(first.code).toBe(0);
    const elsewhere = tempDir('gptune-elsewhere-');
    const r = gptune(['train', '--resume', path.join(dir, 'out', 'checkpoints', 'last'), '--steps', '3', '--quiet'], elsewhere);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ steps: 3, saved: path.join(dir, 'out') });
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  });

  test('an output written before manifests existed resumes, unless it holds something gptune does not write', () => {
    const out = path.join(tempDir('gptune-legacy-'), 'out');
    expect(gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL, '--save-every', '1']).code).toBe(0);
    // What a gptune from before manifests (and before metrics.jsonl, report.html and model cards) left.
    for (const name of ['.gptune-output.json', 'metrics.jsonl', 'report.html', 'README.md', 'gptune_card.json']) fs.rmSync(path.join(out, name));
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const refused = gptune(['train', '--resume', path.join(out, 'checkpoints', 'last'), '--steps', '3', '--quiet']);
    expectOneLineError(refused, /--out .*: is not empty and is not a gptune output \(checkpoints, .*notes\.txt/);
    fs.rmSync(path.join(out, 'notes.txt'));
    const r = gptune(['train', '--resume', path.join(out, 'checkpoints', 'last'), '--steps', '3', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, '.gptune-output.json'), 'utf8')).entries).toEqual(expect.arrayContaining(['checkpoints', 'config.json', 'model.safetensors']));
  });

  test('removes the temporary folders a killed run left (gptune\'s pattern, dead pid only)', () => {
    const dir = tempDir('gptune-kill-');
    const out = path.join(dir, 'out');
    expect(gptune(['train', '--model', TINY, '--data', DATA, '--out', out, ...SMALL, '--save-every', '1']).code).toBe(0);
    const checkpoints = path.join(out, 'checkpoints');
    // What SIGKILL in the middle of writeDirAtomic leaves: a half-built folder named after a dead pid.
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const stale = path.join(checkpoints, `.step-3.gptune-tmp-${dead}-0123456789ab`);
    fs.mkdirSync(stale);
    fs.writeFileSync(path.join(stale, 'model.safetensors'), Buffer.alloc(1 << 16));
    const staleInOut = path.join(out, `.model.safetensors.gptune-tmp-${dead}-0123456789ab`);
    fs.writeFileSync(staleInOut, 'half a model');
    // A writer that still runs (this test process) and something that merely looks similar are left alone.
    const live = path.join(checkpoints, `.step-4.gptune-tmp-${process.pid}-0123456789ab`);
    fs.mkdirSync(live);
    const lookalike = path.join(checkpoints, '.step-3.tmp-1-0123456789ab');
    fs.mkdirSync(lookalike);
    const r = gptune(['train', '--resume', path.join(checkpoints, 'last'), '--steps', '3', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.existsSync(staleInOut)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(lookalike)).toBe(true);
  });
});

test('kill -9 while checkpointing every step: the resumed run leaves no temporary folders behind', async () => {
  const out = path.join(tempDir('gptune-kill9-'), 'out');
  const checkpoints = path.join(out, 'checkpoints');
  const child = spawn(process.execPath, [CLI, 'train', '--model', TINY, '--data', DATA, '--out', out, '--steps', '100000', '--batch-size', '1', '--seq-len', '16', '--save-every', '1', '--save-total-limit', '3', '--quiet'], { cwd: ROOT, stdio: 'ignore' });
  let running = true;
  const exited = new Promise((resolve) => child.on('exit', () => { running = false; resolve(null); }));
  const steps = () => (fs.existsSync(checkpoints) ? fs.readdirSync(checkpoints).filter((n) => n.startsWith('step-')).length : 0);
  // A checkpoint is written every step (the oldest beyond three removed: 100000 kept would need more
  // disk than a CI machine has), so most moments are inside a write; whether this one is or
  // not, what the resumed run leaves must hold no temporary. The wait is bounded by the run itself,
  // not by a clock: a loaded CI machine may take well over ten seconds to reach the third step.
  const deadline = Date.now() + 90_000;
  while (running && steps() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(running).toBe(true);
  expect(steps()).toBeGreaterThanOrEqual(3);
  child.kill('SIGKILL');
  await exited;
  const temporaries = () => [out, checkpoints].flatMap((d) => fs.readdirSync(d).filter(isAtomicTemporary));
  const newest = Math.max(...fs.readdirSync(checkpoints).filter((n) => /^step-\d+$/.test(n)).map((n) => Number(n.slice(5))));
  const resumed = gptune(['train', '--resume', out, '--steps', String(newest + 1), '--quiet']);
  expect(resumed.stderr).toBe('');
  expect(resumed.code).toBe(0);
  expect(temporaries()).toEqual([]);
}, 180_000);

/** Mounts a tmpfs at a new folder, or returns why it cannot (then the tests that need it are skipped, saying so). */
function tmpfs(options: string): { dir: string; unmount: () => void } | string {
  const dir = tempDir('gptune-tmpfs-');
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return `mount -t tmpfs not permitted here (${(r.stderr || String(r.error)).trim()})`;
  return { dir, unmount: () => spawnSync('umount', [dir]) };
}

const probe = tmpfs('size=64k');
const mountProblem = typeof probe === 'string' ? probe : null;
if (typeof probe !== 'string') probe.unmount();
const withMount = mountProblem === null ? test : test.skip;
if (mountProblem !== null) console.warn(`skipping the read-only and full-disk tests: ${mountProblem}`);

describe('a read-only or full --out fails before training', () => {
  withMount('read-only: one line naming the folder, before the first step', () => {
    const m = tmpfs('ro,size=1m') as { dir: string; unmount: () => void };
    try {
      const log = path.join(tempDir(), 'log.jsonl');
      const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', path.join(m.dir, 'out'), '--log', log, ...SMALL]);
      expectOneLineError(r, new RegExp(`--out ${m.dir}/out: cannot write in ${m.dir} \\(EROFS\\)`));
      expect(fs.existsSync(log)).toBe(false); // no step ran
    } finally {
      m.unmount();
    }
  });

  withMount('too little space: one line naming the folder, the bytes needed and available, before the first step', () => {
    const m = tmpfs('size=128k') as { dir: string; unmount: () => void };
    try {
      const log = path.join(tempDir(), 'log.jsonl');
      const r = gptune(['train', '--model', TINY, '--data', DATA, '--out', path.join(m.dir, 'out'), '--log', log, ...SMALL]);
      expectOneLineError(r, new RegExp(`--out ${m.dir}/out: needs \\d+ bytes .* of free space but ${m.dir} has 131072 bytes .* available`));
      expect(fs.existsSync(log)).toBe(false);
      expect(fs.readdirSync(m.dir)).toEqual([]);
    } finally {
      m.unmount();
    }
  });

  /** Takes every free byte of the file system at `dir`, as another program might. */
  function fill(dir: string): void {
    const st = fs.statfsSync(dir);
    fs.writeFileSync(path.join(dir, 'filler'), Buffer.alloc(Number(st.bavail * st.bsize)));
  }

  /** A Trainer whose disk (the tmpfs at `full`) is filled by another program after step 1, when the checks have passed. */
  function trainerFillingDisk(full: string, config: ConstructorParameters<typeof Trainer>[0]): Trainer {
    const trainer = new Trainer({ model: TINY, data: DATA, max_steps: 2, batch_size: 1, seq_len: 16, ...config });
    trainer.on('step', (s) => {
      if (s.step === 1) fill(full);
    });
    return trainer;
  }

  withMount('a disk that fills during training: the error names the file and where the trained model is', async () => {
    const m = tmpfs('size=2m') as { dir: string; unmount: () => void };
    try {
      const out = path.join(m.dir, 'out'), checkpoints = path.join(tempDir(), 'checkpoints');
      const failure = trainerFillingDisk(m.dir, { output_dir: out, checkpoint_dir: checkpoints, save_every: 1 }).fit();
      await expect(failure).rejects.toThrow(OutputError);
      await expect(failure).rejects.toThrow(new RegExp(`${out}/\\S+: ENOSPC.*; the trained model is kept in ${checkpoints}/last`));
      expect(fs.existsSync(path.join(checkpoints, 'last', 'model.safetensors'))).toBe(true);
    } finally {
      m.unmount();
    }
  });

  withMount('a checkpoint disk that fills before the final checkpoint: the model still reaches --out, and the error says so', async () => {
    const m = tmpfs('size=4m') as { dir: string; unmount: () => void };
    try {
      const out = path.join(tempDir(), 'out'), checkpoints = path.join(m.dir, 'checkpoints');
      const trainer = new Trainer({ model: TINY, data: DATA, max_steps: 2, batch_size: 1, seq_len: 16, output_dir: out, checkpoint_dir: checkpoints, save_every: 2 });
      trainer.on('checkpoint', (e) => {
        if (e.kind === 'step') fill(m.dir);
      });
      const failure = trainer.fit();
      await expect(failure).rejects.toThrow(new RegExp(`${checkpoints}/last/\\S+: ENOSPC.*; the final checkpoint was not saved; the newest checkpoint on disk is ${checkpoints}/step-2; the model is in ${out}`));
      expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
    } finally {
      m.unmount();
    }
  });

  withMount('a run that writes no checkpoints saves the trained model to checkpoints/last when --out fails', async () => {
    const m = tmpfs('size=2m') as { dir: string; unmount: () => void };
    try {
      const out = path.join(m.dir, 'out'), checkpoints = path.join(tempDir(), 'checkpoints');
      const failure = trainerFillingDisk(m.dir, { output_dir: out, checkpoint_dir: checkpoints }).fit();
      await expect(failure).rejects.toThrow(new RegExp(`${out}/\\S+: ENOSPC.*; the trained model was saved to ${checkpoints}/last instead`));
      expect(fs.existsSync(path.join(checkpoints, 'last', 'model.safetensors'))).toBe(true);
    } finally {
      m.unmount();
    }
  });
});
