/**
 * One writer per blob across processes, as huggingface_hub's `.locks/models--org--name/<etag>.lock`
 * (beside the repository folders in the hub cache). huggingface_hub holds an flock on that file;
 * Node has no flock, so gptune creates the file with O_EXCL and writes its pid into it:
 *   - created: this process downloads the blob, then removes the lock;
 *   - exists, its pid alive: another download of the same blob runs; wait for it (saying so once),
 *     then find the blob published (or continue the partial file it left);
 *   - exists, its pid dead (killed mid-download): stale; it is moved aside and the claim retried.
 * Pids are this machine's: a cache shared with another host over a network disk sees that host's
 * live downloads as stale.
 */
import * as fs from 'fs';
import * as path from 'path';
import { cacheWrite } from './cache';

/** How often a waiting process looks at the lock again. */
const POLL_MS = 100;
// A lock file still empty after this long belongs to a process that died between creating and writing it.
const EMPTY_LOCK_STALE_MS = 10_000;

/** .locks/models--org--name/<etag>.lock for the repository folder `repoDir` of a hub cache. */
export function blobLockPath(repoDir: string, etag: string): string {
  return path.join(path.dirname(repoDir), '.locks', path.basename(repoDir), `${etag}.lock`);
}

/** Whether `pid` is a live process on this machine (EPERM: alive, someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid a lock file holds; null while it is empty (being written) or gone. */
function lockHolder(lock: string): number | null {
  try {
    const pid = Number(fs.readFileSync(lock, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Whether the lock was abandoned: its pid is dead, or it stayed empty far longer than a write takes. */
function isStale(lock: string, holder: number | null): boolean {
  if (holder !== null) return holder !== process.pid && !alive(holder);
  try {
    return Date.now() - fs.statSync(lock).mtimeMs > EMPTY_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Removes a stale lock without removing a fresh one another process took meanwhile: the file is
 * renamed aside (atomic), and if what was moved is not the stale holder's, it is linked back.
 */
function breakStaleLock(lock: string, holder: number | null): void {
  const aside = `${lock}.stale-${process.pid}`;
  try {
    fs.renameSync(lock, aside);
  } catch {
    return; // another waiter broke it first
  }
  if (lockHolder(aside) !== holder) {
    try {
      fs.linkSync(aside, lock);
    } catch {
      // A third process already holds a new lock: theirs stands.
    }
  }
  fs.rmSync(aside, { force: true });
}

/** Tries to create the lock holding this pid; false when another process holds it. */
function tryLock(lock: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lock, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    fs.writeSync(fd, `${process.pid}\n`);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/**
 * Runs `fn` holding the lock of blobs/<etag> of `repoDir`, waiting while a live process holds it
 * (`onWait` is told once, with that process's pid), and removes the lock afterwards.
 */
export async function withBlobLock<T>(repoDir: string, etag: string, fn: () => Promise<T>, onWait?: (pid: number | null, lock: string) => void): Promise<T> {
  const lock = blobLockPath(repoDir, etag);
  cacheWrite(lock, () => fs.mkdirSync(path.dirname(lock), { recursive: true }));
  let told = false;
  while (!cacheWrite(lock, () => tryLock(lock))) {
    const holder = lockHolder(lock);
    if (isStale(lock, holder)) {
      breakStaleLock(lock, holder);
      continue;
    }
    if (!told) onWait?.(holder, lock);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  try {
    return await fn();
  } finally {
    // Only our own lock: a lock broken as stale by a mistaken waiter is not ours to remove any more.
    if (lockHolder(lock) === process.pid) fs.rmSync(lock, { force: true });
  }
}
