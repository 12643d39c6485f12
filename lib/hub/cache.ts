/**
 * Hugging Face Hub model ids and the local cache, laid out exactly as Python's huggingface_hub lays it
 * out, so that either one reuses what the other downloaded:
 *
 *   $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME defaulting to ~/.cache/huggingface)
 *     models--org--name/
 *       blobs/<etag>                        the file's bytes (etag: git sha1, or sha256 for LFS files)
 *       blobs/<etag>.incomplete             a download in progress (continued with a Range request)
 *       snapshots/<commit>/<file>           -> ../../blobs/<etag> (relative symlinks)
 *       refs/<revision>                     the commit a branch or tag pointed to (40 hex, no newline)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getHFHubCachePath, getRepoFolderName } from '@huggingface/hub';
import { OutputError } from '../errors';

/** A model on the Hub: `org/name` (or a bare `name` such as gpt2) and a branch, tag or commit. */
export interface HubModelId {
  repoId: string;
  revision: string;
}

export const DEFAULT_REVISION = 'main';
const COMMIT_HASH = /^[0-9a-f]{40}$/;
// The Hub's rule for each part of a repo id: letters, digits, '-', '_', '.', not starting or ending with '-' or '.', at most 96 characters.
const REPO_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$/;
// Names that are files gptune reads, never repo ids (a missing x.gguf is "file not found", not a Hub lookup).
const FILE_SUFFIX = /\.(gguf|safetensors|json|bin|txt|jsonl)$/i;

export function isCommitHash(revision: string): boolean {
  return COMMIT_HASH.test(revision);
}

/** "org/name@revision", "org/name" or "gpt2" as a Hub model id, or null when `spec` cannot be one. */
export function parseHubModelId(spec: string): HubModelId | null {
  const at = spec.indexOf('@');
  const id = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : spec.slice(at + 1);
  const parts = id.split('/');
  if (parts.length > 2 || FILE_SUFFIX.test(id)) return null;
  if (!parts.every((p) => REPO_PART.test(p) && !p.includes('--') && !p.includes('..'))) return null;
  // A revision names a file under refs/ (refs/pr/1 is a folder there): no empty, '.' or '..' segment.
  if (revision === '' || /\s/.test(revision) || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) return null;
  return { repoId: id, revision };
}

/**
 * Whether a --model value is a Hub model id rather than a local path: it is not an existing file or
 * folder (a local folder always wins, so `gpt2` next to a ./gpt2 folder is that folder), not new:...,
 * and has the shape of a repo id.
 */
export function isHubModelSpec(spec: string): boolean {
  return !spec.startsWith('new:') && !spec.startsWith('.') && !path.isAbsolute(spec) && !fs.existsSync(spec) && parseHubModelId(spec) !== null;
}

/** `org/name@revision` for messages. */
export function formatModelId(id: HubModelId): string {
  return id.revision === DEFAULT_REVISION ? id.repoId : `${id.repoId}@${id.revision}`;
}

/** The hub cache folder: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (as huggingface_hub resolves it). */
export function hubCacheDir(): string {
  return getHFHubCachePath();
}

/** models--org--name inside the cache. */
export function repoCacheDir(repoId: string, cacheDir = hubCacheDir()): string {
  return path.join(cacheDir, getRepoFolderName({ name: repoId, type: 'model' }));
}

/** The repo id of a snapshot folder in a hub cache (.../models--org--name/snapshots/<commit>), or null for any other folder. */
export function snapshotModelId(dir: string): string | null {
  const full = path.resolve(dir);
  const commit = path.basename(full);
  const snapshots = path.dirname(full);
  const repo = path.basename(path.dirname(snapshots));
  if (!isCommitHash(commit) || path.basename(snapshots) !== 'snapshots' || !repo.startsWith('models--')) return null;
  return repo.slice('models--'.length).split('--').join('/');
}

export function snapshotDir(repoDir: string, commit: string): string {
  return path.join(repoDir, 'snapshots', commit);
}

export function blobPath(repoDir: string, etag: string): string {
  return path.join(repoDir, 'blobs', etag);
}

/** The commit `revision` names in the cache: itself when it is a commit hash, else refs/<revision>, else null. */
export function cachedCommit(repoDir: string, revision: string): string | null {
  if (isCommitHash(revision)) return revision;
  const ref = path.join(repoDir, 'refs', revision);
  if (!fs.existsSync(ref) || !fs.statSync(ref).isFile()) return null;
  const commit = fs.readFileSync(ref, 'utf8').trim();
  return isCommitHash(commit) ? commit : null;
}

/** Records that `revision` (a branch or tag) is at `commit`, as huggingface_hub does (written atomically). */
export function writeRef(repoDir: string, revision: string, commit: string): void {
  if (isCommitHash(revision) || cachedCommit(repoDir, revision) === commit) return;
  const ref = path.join(repoDir, 'refs', revision);
  cacheWrite(ref, () => {
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    const tmp = `${ref}.gptune-tmp-${process.pid}`;
    fs.writeFileSync(tmp, commit);
    fs.renameSync(tmp, ref);
  });
}

/**
 * Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink (so the cache can be
 * moved), replacing the pointer atomically.
 */
export function linkSnapshotFile(repoDir: string, commit: string, file: string, etag: string): string {
  const pointer = path.join(snapshotDir(repoDir, commit), ...file.split('/'));
  cacheWrite(pointer, () => {
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    const tmp = `${pointer}.gptune-tmp-${process.pid}`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(path.relative(path.dirname(pointer), blobPath(repoDir, etag)), tmp);
    fs.renameSync(tmp, pointer);
  });
  return pointer;
}

/** Whether snapshots/<commit>/<file> resolves to a file (a dangling pointer counts as missing). */
export function hasSnapshotFile(repoDir: string, commit: string, file: string): boolean {
  const pointer = path.join(snapshotDir(repoDir, commit), ...file.split('/'));
  try {
    return fs.statSync(pointer).isFile();
  } catch {
    return false;
  }
}

const DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOTDIR', 'EEXIST']);

/** Runs a write into the cache; a disk error becomes an OutputError naming the path and where the cache can go instead. */
export function cacheWrite<T>(file: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    throw cacheWriteError(file, e);
  }
}

export function cacheWriteError(file: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === undefined || !DISK_ERRORS.has(code)) return e as Error;
  return new OutputError(`cannot write the Hugging Face cache at ${file} (${code}: ${(e as Error).message.split('\n')[0]}); set HF_HOME or HF_HUB_CACHE to a writable folder with room`);
}

/** HF_HUB_OFFLINE as huggingface_hub reads it: 1, ON, YES or TRUE (any case). */
export function offlineFromEnv(): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((process.env.HF_HUB_OFFLINE ?? '').trim().toUpperCase());
}

/** HF_ENDPOINT (a mirror), else https://huggingface.co, without a trailing slash. */
export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
}

/** HF_TOKEN, else the token file huggingface-cli login writes (HF_TOKEN_PATH, else $HF_HOME/token), else null. */
export function hubToken(): string | null {
  const fromEnv = process.env.HF_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const home = process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  const file = process.env.HF_TOKEN_PATH ?? path.join(home, 'token');
  try {
    return fs.readFileSync(file, 'utf8').trim() || null;
  } catch {
    return null;
  }
}
