import fs = require('fs');
import * as path from 'path';
import { spawnSync } from 'child_process';
import { isAtomicTemporary, removeStaleTemporaries, writeDirAtomic, writeFileAtomic } from '../../lib/io/atomic';
import { tempDir } from '../helpers';

/** Make the `failOnCall`-th fs.writeSync call (1-based) fail as a full disk would. */
function failWriteOnCall(failOnCall: number): jest.SpyInstance {
  const realWriteSync = fs.writeSync;
  let calls = 0;
  return jest.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
    calls++;
    if (calls === failOnCall) {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
    return (realWriteSync as (...a: unknown[]) => number)(...args);
  }) as typeof fs.writeSync);
}

describe('writeFileAtomic', () => {
  let dir: string;
  beforeEach(() => { dir = tempDir('gptune-atomic-'); });
  afterEach(() => { jest.restoreAllMocks(); fs.rmSync(dir, { recursive: true, force: true }); });

  test('creates and replaces a file; strings, bytes and chunk lists are written back to back', () => {
    const file = path.join(dir, 'out.bin');
    writeFileAtomic(file, 'first version');
    expect(fs.readFileSync(file, 'utf8')).toBe('first version');
    writeFileAtomic(file, [Buffer.from('ab'), new Uint8Array([0x63, 0x64]), new Uint8Array(0), Buffer.from('€')]);
    expect(fs.readFileSync(file, 'utf8')).toBe('abcd€');
    writeFileAtomic(file, new Uint8Array([1, 2, 3]));
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    expect(fs.readdirSync(dir)).toEqual(['out.bin']);
  });

  test('a failure in the middle of writing leaves the old file intact and no temporary file behind', () => {
    const file = path.join(dir, 'checkpoint.bin');
    writeFileAtomic(file, 'old contents');
    const spy = failWriteOnCall(2); // the second chunk fails
    expect(() => writeFileAtomic(file, [Buffer.from('new part 1'), Buffer.from('new part 2')])).toThrow(/ENOSPC/);
    expect(spy).toHaveBeenCalledTimes(2);
    expect(fs.readFileSync(file, 'utf8')).toBe('old contents');
    expect(fs.readdirSync(dir)).toEqual(['checkpoint.bin']);
  });

  test('a failure when there was no file before leaves nothing behind', () => {
    const file = path.join(dir, 'fresh.bin');
    failWriteOnCall(1);
    expect(() => writeFileAtomic(file, 'data')).toThrow(/ENOSPC/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('writeDirAtomic', () => {
  let parent: string;
  beforeEach(() => { parent = tempDir('gptune-atomic-dir-'); });
  afterEach(() => { jest.restoreAllMocks(); fs.rmSync(parent, { recursive: true, force: true }); });

  const listing = (dir: string) => Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(path.join(dir, n), 'utf8')]));

  test('creates a folder, then replaces it as a whole (files missing from the new version disappear)', () => {
    const dir = path.join(parent, 'nested', 'step-100');
    writeDirAtomic(dir, { 'config.json': '{"a":1}', 'model.safetensors': Buffer.from('weights-v1'), 'extra.txt': 'x' });
    expect(listing(dir)).toEqual({ 'config.json': '{"a":1}', 'extra.txt': 'x', 'model.safetensors': 'weights-v1' });
    writeDirAtomic(dir, { 'config.json': '{"a":2}', 'model.safetensors': [Buffer.from('weights'), Buffer.from('-v2')] });
    expect(listing(dir)).toEqual({ 'config.json': '{"a":2}', 'model.safetensors': 'weights-v2' });
    expect(fs.readdirSync(path.join(parent, 'nested'))).toEqual(['step-100']);
  });

  test('a failure while writing the second file keeps the old folder complete and leaves no temporary folders', () => {
    const dir = path.join(parent, 'latest');
    writeDirAtomic(dir, { 'config.json': 'old config', 'model.safetensors': 'old weights' });
    failWriteOnCall(2);
    expect(() => writeDirAtomic(dir, { 'config.json': 'new config', 'model.safetensors': 'new weights' })).toThrow(/ENOSPC/);
    expect(listing(dir)).toEqual({ 'config.json': 'old config', 'model.safetensors': 'old weights' });
    expect(fs.readdirSync(parent)).toEqual(['latest']);
  });

  test('a failure of the final rename puts the old folder back', () => {
    const dir = path.join(parent, 'latest');
    writeDirAtomic(dir, { 'a.txt': 'old' });
    const realRename = fs.renameSync;
    let renames = 0;
    jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      renames++;
      if (renames === 2) throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' }); // new folder -> place
      realRename(from, to);
    });
    expect(() => writeDirAtomic(dir, { 'a.txt': 'new' })).toThrow(/EIO/);
    expect(listing(dir)).toEqual({ 'a.txt': 'old' });
    expect(fs.readdirSync(parent)).toEqual(['latest']);
  });

  test('rejects file names with path separators and a target that is a file', () => {
    expect(() => writeDirAtomic(path.join(parent, 'd'), { '../escape.txt': 'x' })).toThrow(/expected a plain file name \(no path separators\) but received "..\/escape.txt"/);
    const file = path.join(parent, 'plain-file');
    fs.writeFileSync(file, 'keep me');
    expect(() => writeDirAtomic(file, { 'a.txt': 'x' })).toThrow(`${file}: expected a folder (or nothing) at this path but found a file`);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    expect(fs.readdirSync(parent)).toEqual(['plain-file']);
  });
});

describe('errors name the file', () => {
  let dir: string;
  beforeEach(() => { dir = tempDir('gptune-atomic-'); });
  afterEach(() => { jest.restoreAllMocks(); fs.rmSync(dir, { recursive: true, force: true }); });

  test('a full disk while writing a file or a folder names the file being written, and keeps the error code', () => {
    failWriteOnCall(1);
    const file = path.join(dir, 'model.safetensors');
    let caught: NodeJS.ErrnoException | undefined;
    try { writeFileAtomic(file, 'weights'); } catch (e) { caught = e as NodeJS.ErrnoException; }
    expect(caught?.message).toBe(`${file}: ENOSPC: no space left on device, write`);
    expect(caught?.code).toBe('ENOSPC');
    jest.restoreAllMocks();
    failWriteOnCall(2);
    const folder = path.join(dir, 'step-7');
    expect(() => writeDirAtomic(folder, { 'config.json': '{}', 'optimizer.safetensors': 'moments' }))
      .toThrow(`${path.join(folder, 'optimizer.safetensors')}: ENOSPC: no space left on device, write`);
  });
});

describe('temporaries of killed writers', () => {
  let dir: string;
  beforeEach(() => { dir = tempDir('gptune-stale-'); });
  afterEach(() => { jest.restoreAllMocks(); fs.rmSync(dir, { recursive: true, force: true }); });

  /** A pid that ran and exited (the test's own child). */
  const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid!;

  test('temporary names are recognisable as gptune\'s and carry the writer\'s pid', () => {
    const seen: string[] = [];
    const realRename = fs.renameSync;
    jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      seen.push(...[from, to].map((p) => path.basename(String(p))).filter((n) => n.startsWith('.')));
      realRename(from, to);
    });
    writeFileAtomic(path.join(dir, 'a.json'), '1');
    writeDirAtomic(path.join(dir, 'last'), { 'x.txt': '1' });
    writeDirAtomic(path.join(dir, 'last'), { 'x.txt': '2' });
    expect(seen).toHaveLength(4); // file, folder, folder + the old folder moved aside
    for (const name of seen) {
      expect(isAtomicTemporary(name)).toBe(true);
      expect(name).toMatch(new RegExp(`^\\.(a\\.json|last)\\.gptune-(tmp|old)-${process.pid}-[0-9a-f]{12}$`));
    }
    expect(isAtomicTemporary('.last.tmp-12-0123456789ab')).toBe(false);
    expect(isAtomicTemporary('last')).toBe(false);
  });

  test('removes a dead writer\'s temporaries, restores an orphaned old folder, keeps a live writer\'s and everything else', () => {
    const dead = deadPid();
    fs.mkdirSync(path.join(dir, `.step-5.gptune-tmp-${dead}-0123456789ab`));
    fs.writeFileSync(path.join(dir, `.step-5.gptune-tmp-${dead}-0123456789ab`, 'model.safetensors'), 'partial');
    fs.writeFileSync(path.join(dir, `.config.json.gptune-tmp-${dead}-abcdefabcdef`), 'partial');
    // Killed between the two renames of writeDirAtomic: `last` is gone, its complete old version is here.
    fs.mkdirSync(path.join(dir, `.last.gptune-old-${dead}-0123456789ab`));
    fs.writeFileSync(path.join(dir, `.last.gptune-old-${dead}-0123456789ab`, 'model.safetensors'), 'complete');
    // Killed after the second rename: `best` is in place, the old one is garbage.
    fs.mkdirSync(path.join(dir, 'best'));
    fs.mkdirSync(path.join(dir, `.best.gptune-old-${dead}-0123456789ab`));
    const live = `.step-6.gptune-tmp-${process.pid}-0123456789ab`;
    fs.mkdirSync(path.join(dir, live));
    fs.writeFileSync(path.join(dir, '.step-5.tmp-1-0123456789ab'), 'not ours');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not ours');
    expect(removeStaleTemporaries(dir)).toHaveLength(4);
    expect(fs.readdirSync(dir).sort()).toEqual([live, '.step-5.tmp-1-0123456789ab', 'best', 'last', 'notes.txt'].sort());
    expect(fs.readFileSync(path.join(dir, 'last', 'model.safetensors'), 'utf8')).toBe('complete');
    expect(removeStaleTemporaries(path.join(dir, 'missing'))).toEqual([]);
  });
});

