/**
 * HTTP with the Hub, as huggingface_hub's file_download.py speaks it:
 * - HEAD {endpoint}/{repo}/resolve/{commit}/{file} without following redirects (except relative ones,
 *   e.g. a renamed repo): X-Repo-Commit is the commit, X-Linked-Etag (LFS files; else ETag) the blob's
 *   name with its quotes stripped, X-Linked-Size (else Content-Length) its size, and a Location to
 *   another host the CDN URL to download from (without the Authorization header).
 * - GET into blobs/<etag>.incomplete, continued with `Range: bytes=N-` when a previous run left N bytes,
 *   then renamed to blobs/<etag> once the size (and, for LFS files, whose etag is the sha256, the
 *   sha256) checks out.
 * Errors: X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) picks the message.
 */
import { createHash, Hash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { HubAccessError, HubError, OutputError } from '../errors';
import { VERSION } from '../version';
import { blobPath, cacheWrite, cacheWriteError, HubModelId, formatModelId } from './cache';
import { withBlobLock } from './lock';

/** Bytes received of one file; `total` is null when the server does not say. */
export interface DownloadProgress {
  file: string;
  received: number;
  total: number | null;
  done: boolean;
}

export interface HubConnection {
  endpoint: string;
  token: string | null;
  onProgress?: (p: DownloadProgress) => void;
  /** Told once when another process is downloading a file this one needs (and this one waits for it). */
  onWait?: (message: string) => void;
}

/** What the Hub says about one file of a commit. */
export interface HubFileMetadata {
  commit: string | null;
  etag: string;
  size: number | null;
  /** Where the bytes are: the resolve URL itself, or the CDN URL it redirects to. */
  location: string;
  /** Whether `location` is a redirect off the Hub (the CDN), which gets no token. */
  redirected: boolean;
}

const SHA256 = /^[0-9a-f]{64}$/;
// Metadata requests give up after this long without an answer (huggingface_hub's etag_timeout is 10 s).
const METADATA_TIMEOUT_MS = 10_000;
// A download that receives nothing for this long is abandoned (the partial file is kept for the next run).
const STALL_TIMEOUT_MS = 60_000;

function headers(conn: HubConnection, extra: Record<string, string> = {}): Record<string, string> {
  // identity: a compressed answer's Content-Length is not the file's size (huggingface_hub asks the same).
  const h: Record<string, string> = { 'user-agent': `gptune/${VERSION}`, 'accept-encoding': 'identity', ...extra };
  if (conn.token) h.authorization = `Bearer ${conn.token}`;
  return h;
}

/** fetch, with a failure to connect turned into a HubError that says what to do. */
const UNREACHABLE = 'check the network or HF_ENDPOINT, or use --offline (HF_HUB_OFFLINE=1) to use the cache';

/** fetch, with a failure to connect turned into a HubError naming the host, the reason and `unreachable` (what to do). */
export async function hubFetch(url: string, init: RequestInit, what: string, unreachable = UNREACHABLE): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    const reason = (e as Error).name === 'TimeoutError' ? 'timed out' : describe(e);
    throw new HubError(`${what}: cannot reach ${new URL(url).origin} (${reason}); ${unreachable}`);
  }
}

/** Throws the error a non-2xx answer about `id` (and `file`) means; returns normally for 2xx and 3xx. */
export function checkStatus(res: Response, id: HubModelId, conn: HubConnection, file?: string): void {
  if (res.status < 400) return;
  const code = res.headers.get('x-error-code');
  const model = formatModelId(id);
  const where = `${conn.endpoint}/${id.repoId}`;
  if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound')) {
    const gated = code === 'GatedRepo' ? `is gated: accept its conditions at ${where} and ` : `is private or gated (HTTP ${res.status}): `;
    const token = conn.token ? 'the token in HF_TOKEN has no access to it; use a token of an account that has' : 'set HF_TOKEN to a token with access (none was sent)';
    throw new HubAccessError(`${model} ${gated}${token}`);
  }
  if (code === 'RepoNotFound' || (res.status === 404 && code === null && file === undefined)) {
    const token = conn.token ? '' : ' (if it is private or gated, set HF_TOKEN)';
    throw new HubAccessError(`${id.repoId}: not a local folder, and ${conn.endpoint} has no model repository of that name${token}`);
  }
  if (code === 'RevisionNotFound') throw new HubAccessError(`${model}: revision '${id.revision}' not found in ${where}`);
  if (res.status === 404) throw new HubAccessError(`${model}: ${file ?? 'the file'} not found in the repository`);
  throw new HubError(`${model}${file ? ` ${file}` : ''}: the Hub answered HTTP ${res.status} ${res.statusText} for ${res.url || where}`);
}

/** GET a JSON document of the Hub's API. */
export async function fetchJSON(url: string, id: HubModelId, conn: HubConnection, unreachable?: string): Promise<unknown> {
  const res = await hubFetch(url, { headers: headers(conn), signal: AbortSignal.timeout(METADATA_TIMEOUT_MS) }, formatModelId(id), unreachable);
  checkStatus(res, id, conn);
  try {
    return await res.json();
  } catch (e) {
    throw new HubError(`${formatModelId(id)}: ${url} did not answer JSON (${(e as Error).message})`);
  }
}

export function resolveURL(conn: HubConnection, repoId: string, revision: string, file: string): string {
  return `${conn.endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

/** HEAD of a file's resolve URL: its commit, etag, size and download location. */
export async function fileMetadata(conn: HubConnection, id: HubModelId, commit: string, file: string): Promise<HubFileMetadata> {
  let url = resolveURL(conn, id.repoId, commit, file);
  for (let hops = 0; ; hops++) {
    const res = await hubFetch(url, { method: 'HEAD', redirect: 'manual', headers: headers(conn), signal: AbortSignal.timeout(METADATA_TIMEOUT_MS) }, `${formatModelId(id)} ${file}`);
    checkStatus(res, id, conn, file);
    const location = res.status >= 300 ? res.headers.get('location') : null;
    // Relative redirects stay on the Hub (a renamed repository) and are followed; another host is the CDN.
    if (location !== null && location.startsWith('/') && hops < 5) {
      url = new URL(location, url).toString();
      continue;
    }
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    if (etag === null) throw new HubError(`${formatModelId(id)} ${file}: the server sent no ETag, so the file cannot be cached (is HF_ENDPOINT a Hugging Face Hub?)`);
    const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
    return {
      commit: res.headers.get('x-repo-commit'), etag, size: Number.isSafeInteger(size) && size >= 0 ? size : null,
      location: location === null ? url : new URL(location, url).toString(), redirected: location !== null,
    };
  }
}

/** ETag: "<value>" or W/"<value>" -> <value>; null when absent or not usable as a file name. */
export function normalizeEtag(header: string | null): string | null {
  if (header === null) return null;
  const value = header.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return /^[A-Za-z0-9._-]+$/.test(value) && value !== '.' && value !== '..' ? value : null;
}

/**
 * Makes blobs/<etag> hold the file described by `meta`: downloads it into blobs/<etag>.incomplete,
 * continuing what a previous run left there, checks its size and (LFS) sha256, then renames it; all
 * of it holding .locks/models--org--name/<etag>.lock (lock.ts), so two processes never write one blob.
 */
export async function downloadBlob(conn: HubConnection, id: HubModelId, file: string, repoDir: string, meta: HubFileMetadata): Promise<void> {
  const blob = blobPath(repoDir, meta.etag);
  if (fs.existsSync(blob)) return;
  const name = `${formatModelId(id)} ${file}`;
  // Another process downloading the same blob: wait for it, then use what it published (or continue its partial file).
  await withBlobLock(repoDir, meta.etag, async () => {
    if (!fs.existsSync(blob)) await downloadLocked(conn, id, file, repoDir, meta);
  }, (pid, lock) => conn.onWait?.(`${name}: waiting for process ${pid ?? '?'}, which is downloading the same file (lock ${lock})`));
}

/** downloadBlob's transfer, run while holding the blob's lock. */
async function downloadLocked(conn: HubConnection, id: HubModelId, file: string, repoDir: string, meta: HubFileMetadata): Promise<void> {
  const blob = blobPath(repoDir, meta.etag);
  const incomplete = `${blob}.incomplete`;
  cacheWrite(incomplete, () => fs.mkdirSync(path.dirname(blob), { recursive: true }));
  let have = fs.existsSync(incomplete) ? fs.statSync(incomplete).size : 0;
  // More bytes than the file has: not a prefix of it, so start over.
  if (meta.size !== null && have > meta.size) have = 0;
  checkFreeSpace(path.dirname(blob), meta.size === null ? 0 : meta.size - have, file);
  // The CDN gets no token (huggingface_hub drops it when the location is not the resolve URL).
  const h = headers(meta.redirected ? { ...conn, token: null } : conn, have > 0 ? { range: `bytes=${have}-` } : {});
  const name = `${formatModelId(id)} ${file}`;
  const controller = new AbortController();
  let stall = setTimeout(() => controller.abort(), STALL_TIMEOUT_MS);
  try {
    let res = await hubFetch(meta.location, { headers: h, signal: controller.signal }, name);
    if (res.status === 416 && have > 0 && have !== meta.size) {
      // The partial file is not a prefix the server can continue (its size is unknown or it is longer): start over.
      await res.body?.cancel();
      have = 0;
      const { range: _, ...whole } = h;
      res = await hubFetch(meta.location, { headers: whole, signal: controller.signal }, name);
    }
    if (res.status === 416 && have > 0 && have === meta.size) {
      // Everything was already there: only the checks and the rename were missing.
    } else {
      checkStatus(res, id, conn, file);
      if (res.status >= 300 || res.body === null) throw new HubError(`${name}: the server answered HTTP ${res.status} without the file`);
      // A server that ignores the Range header sends the whole file: start over rather than append it.
      const resumed = have > 0 && res.status === 206 && (res.headers.get('content-range') ?? '').startsWith(`bytes ${have}-`);
      if (!resumed) have = 0;
      const total = meta.size ?? (res.headers.get('content-length') !== null ? have + Number(res.headers.get('content-length')) : null);
      const fd = cacheWrite(incomplete, () => fs.openSync(incomplete, resumed ? 'a' : 'w'));
      let received = have;
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          clearTimeout(stall);
          stall = setTimeout(() => controller.abort(), STALL_TIMEOUT_MS);
          try {
            fs.writeSync(fd, chunk);
          } catch (e) {
            throw cacheWriteError(incomplete, e);
          }
          received += chunk.length;
          conn.onProgress?.({ file, received, total, done: false });
        }
      } catch (e) {
        if (e instanceof OutputError) throw e;
        throw new HubError(`${name}: the download broke off after ${received} of ${total ?? '?'} bytes (${describe(e)}); run again to resume it (kept in ${incomplete})`);
      } finally {
        fs.closeSync(fd);
      }
    }
    await checkAndPublish(incomplete, blob, meta, name);
    conn.onProgress?.({ file, received: fs.statSync(blob).size, total: meta.size, done: true });
  } finally {
    clearTimeout(stall);
  }
}

function describe(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (e as Error).message ?? String(e);
}

/** Size, then sha256 for an LFS file (its etag is the sha256 of its bytes), then the atomic rename to blobs/<etag>. */
async function checkAndPublish(incomplete: string, blob: string, meta: HubFileMetadata, name: string): Promise<void> {
  const size = fs.statSync(incomplete).size;
  if (meta.size !== null && size < meta.size) {
    throw new HubError(`${name}: the download ended after ${size} of ${meta.size} bytes; run again to resume it (kept in ${incomplete})`);
  }
  if (meta.size !== null && size > meta.size) {
    fs.rmSync(incomplete);
    throw new HubError(`${name}: received ${size} bytes but the Hub announced ${meta.size}; the partial file was removed, run again`);
  }
  if (SHA256.test(meta.etag)) {
    const digest = await sha256File(incomplete);
    if (digest !== meta.etag) {
      fs.rmSync(incomplete);
      throw new HubError(`${name}: sha256 ${digest} does not match the Hub's ${meta.etag}; the corrupt download was removed, run again`);
    }
  }
  cacheWrite(blob, () => fs.renameSync(incomplete, blob));
}

async function sha256File(file: string): Promise<string> {
  const hash: Hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Refuses a download the disk cannot hold before it starts. */
function checkFreeSpace(dir: string, bytes: number, file: string): void {
  if (bytes <= 0 || typeof fs.statfsSync !== 'function') return;
  const s = fs.statfsSync(dir);
  const free = s.bavail * s.bsize;
  if (free < bytes) {
    throw new OutputError(`cannot write the Hugging Face cache at ${dir}: ${file} needs ${bytes} bytes but ${free} are free; make room, or set HF_HOME or HF_HUB_CACHE to a disk with room`);
  }
}
