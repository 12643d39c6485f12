import fs = require('fs');
import * as path from 'path';
import { writeDirAtomic, writeFileAtomic } from '../../lib/io/atomic';
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
