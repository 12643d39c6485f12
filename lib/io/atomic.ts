/**
 * Crash-safe writes: a reader either sees the old file/folder or the complete new one, never a
 * half-written one. Checkpoints are hundreds of MB; a Ctrl-C or an out-of-disk error in the middle of
 * saving must not destroy the previous good checkpoint.
 *
 * Files: write to a temporary sibling, fsync it, rename over the target (atomic on POSIX within one
 * file system, hence "sibling"), fsync the directory so the rename itself survives a power cut.
 * Folders: build the whole folder as a temporary sibling, then swap it in with two renames.
 *
 * Temporary siblings are named `.<name>.gptune-tmp-<pid>-<12 hex>` (or `gptune-old-`), so that a run
 * killed with SIGKILL leaves leftovers that removeStaleTemporaries can recognise as gptune's own and
 * as abandoned (the pid no longer runs) without touching anything else.
 * Errors name the file: Node's write/fsync errors ("ENOSPC: no space left on device, write") do not.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';

/**
 * What a file's contents may be given as. An array of chunks is written back to back, so a
 * safetensors file (header + one chunk per tensor) never has to be concatenated in memory.
 */
export type FileContents = string | Uint8Array | readonly Uint8Array[];
/**
 * Contents produced chunk by chunk while they are written (a generator), so a file of many
 * gigabytes (a GGUF export) is never held in memory whole.
 */
export type StreamedContents = FileContents | Iterable<Uint8Array>;

/** Largest single write; Node's fs.writeSync rejects lengths above 2 GiB - 1. */
const MAX_WRITE_BYTES = 1 << 30;

type TemporaryKind = 'tmp' | 'old';

/** `.<target name>.gptune-<kind>-<pid>-<12 hex>`: what temporarySiblingPath makes, nothing else. */
const TEMPORARY_NAME = /^\.(.+)\.gptune-(tmp|old)-(\d+)-[0-9a-f]{12}$/;

/** A name for a temporary sibling of `target` that no other writer (process or call) will pick. */
function temporarySiblingPath(target: string, kind: TemporaryKind): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  const unique = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  // Leading dot: hidden from casual `ls`, and never mistaken for a checkpoint by a glob on the name.
  return path.join(dir, `.${base}.gptune-${kind}-${unique}`);
}

/** Whether `name` is a temporary sibling that writeFileAtomic / writeDirAtomic create. */
export function isAtomicTemporary(name: string): boolean {
  return TEMPORARY_NAME.test(name);
}

/** Whether a process with this id runs (on this machine); EPERM means it runs as another user. */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary siblings in `dir` left by writers that no longer run (a run killed with
 * SIGKILL while it saved a checkpoint leaves a `.gptune-tmp-` folder of the checkpoint's size).
 * Only gptune's own pattern is touched, and only when its pid is not a live process: a concurrent
 * writer's temporaries stay. An abandoned `.gptune-old-` folder whose target is missing (a kill
 * between the two renames of writeDirAtomic) is the complete previous version: it is renamed back.
 * Returns the paths removed or restored.
 */
export function removeStaleTemporaries(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const handled: string[] = [];
  for (const name of names) {
    const m = TEMPORARY_NAME.exec(name);
    if (!m || processAlive(Number(m[3]))) continue;
    const stale = path.join(dir, name);
    const target = path.join(dir, m[1]);
    if (m[2] === 'old' && !fs.existsSync(target)) fs.renameSync(stale, target);
    else fs.rmSync(stale, { recursive: true, force: true });
    handled.push(stale);
  }
  return handled;
}

/** The error of a failed write, with the file it was writing in the message (the code is kept). */
function naming(err: unknown, file: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.message !== 'string' || e.message.startsWith(file)) return e;
  return Object.assign(new Error(`${file}: ${e.message}`), { code: e.code, errno: e.errno, syscall: e.syscall, path: file });
}

function writeAllToFd(fd: number, contents: StreamedContents, filePath: string): void {
  const chunks: Iterable<Uint8Array> =
    typeof contents === 'string' ? [Buffer.from(contents, 'utf8')] :
    contents instanceof Uint8Array ? [contents] : contents;
  for (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) {
      throw new Error(`${filePath}: expected file contents as a string, Uint8Array or array of Uint8Array but received ${typeof chunk}`);
    }
    let written = 0;
    while (written < chunk.byteLength) {
      const length = Math.min(chunk.byteLength - written, MAX_WRITE_BYTES);
      // writeSync may write fewer bytes than asked (e.g. on a signal); loop until all are out.
      written += fs.writeSync(fd, chunk, written, length);
    }
  }
}

/** fsync a directory so that renames/creations inside it are durable. Some file systems refuse
 * to open or fsync directories (EISDIR/EINVAL/EPERM on a few platforms); durability is best-effort
 * there, atomicity is not affected. */
function fsyncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EACCES') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Write, fsync and close one new file (which must not exist yet); errors name `shownAs`. */
function writeNewFileDurably(filePath: string, contents: StreamedContents, shownAs: string): void {
  // 'wx': fail rather than write into a file someone else created with the same temporary name.
  const fd = fs.openSync(filePath, 'wx', 0o644);
  try {
    writeAllToFd(fd, contents, filePath);
    fs.fsyncSync(fd);
  } catch (err) {
    throw naming(err, shownAs);
  } finally {
    fs.closeSync(fd);
  }
}

function removeQuietly(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    // Cleanup after a failure must not hide the original error.
  }
}

/** Bytes `contents` takes on disk. */
export function contentsBytes(contents: FileContents): number {
  if (typeof contents === 'string') return Buffer.byteLength(contents);
  if (contents instanceof Uint8Array) return contents.byteLength;
  return contents.reduce((n, chunk) => n + chunk.byteLength, 0);
}

/**
 * Atomically replace (or create) the file at `filePath` with `contents`. On any error the old file
 * is untouched, no temporary file is left behind, and the error is rethrown.
 */
export function writeFileAtomic(filePath: string, contents: StreamedContents): void {
  const target = path.resolve(filePath);
  const tempPath = temporarySiblingPath(target, 'tmp');
  try {
    writeNewFileDurably(tempPath, contents, target);
    fs.renameSync(tempPath, target);
  } catch (err) {
    removeQuietly(tempPath);
    throw naming(err, target);
  }
  fsyncDirectory(path.dirname(target));
}

/** Names inside a folder written by writeDirAtomic: plain file names, no sub-folders. */
function checkPlainFileName(dir: string, name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new Error(`${dir}: expected a plain file name (no path separators) but received ${JSON.stringify(name)}`);
  }
}

/**
 * Atomically replace (or create) the folder `dir` so that it holds exactly `files`
 * (file name -> contents). The folder is built as a temporary sibling; when every file is written
 * and fsynced it is renamed into place. An existing folder is renamed away first and deleted only
 * after the new one is in place.
 *
 * Crash windows: before the first rename, `dir` is the old folder; after the second, it is the new
 * one. A crash exactly between the two renames leaves no `dir` but a complete old folder named
 * `.<name>.gptune-old-*` beside it (POSIX has no atomic directory exchange that Node exposes); a crash while
 * building leaves a `.<name>.gptune-tmp-*` sibling (removeStaleTemporaries deals with both). An error (as opposed to a crash)
 * always leaves the old folder in place and no temporary siblings.
 */
export function writeDirAtomic(dir: string, files: Record<string, FileContents>): void {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  for (const name of Object.keys(files)) checkPlainFileName(dir, name);
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) {
    throw new Error(`${dir}: expected a folder (or nothing) at this path but found a file`);
  }
  fs.mkdirSync(parent, { recursive: true });

  const tempDir = temporarySiblingPath(target, 'tmp');
  try {
    fs.mkdirSync(tempDir);
    for (const [name, contents] of Object.entries(files)) {
      writeNewFileDurably(path.join(tempDir, name), contents, path.join(target, name));
    }
    fsyncDirectory(tempDir);
  } catch (err) {
    removeQuietly(tempDir);
    throw naming(err, target);
  }

  let oldDir: string | undefined;
  try {
    if (fs.existsSync(target)) {
      oldDir = temporarySiblingPath(target, 'old');
      fs.renameSync(target, oldDir);
    }
    fs.renameSync(tempDir, target);
  } catch (err) {
    // Put the old folder back if it was moved away, so an error never loses the old checkpoint.
    if (oldDir !== undefined && !fs.existsSync(target) && fs.existsSync(oldDir)) {
      try { fs.renameSync(oldDir, target); } catch { /* keep the original error */ }
    }
    removeQuietly(tempDir);
    throw naming(err, target);
  }
  fsyncDirectory(parent);
  if (oldDir !== undefined) removeQuietly(oldDir);
}
