/**
 * A Hugging Face Hub on 127.0.0.1 for tests, answering in the Hub's URL layout and headers (as
 * huggingface_hub's file_download.py reads them):
 *   GET  /api/models/{repo}/revision/{rev}   {id, sha, siblings: [{rfilename}]}
 *   HEAD|GET /{repo}/resolve/{rev}/{file}    X-Repo-Commit; a git file: 200, ETag "<git blob sha1>";
 *                                            an LFS file: 302 to /cdn/<sha256> with X-Linked-Etag "<sha256>",
 *                                            X-Linked-Size, and the pointer file's ETag (which a client must not use)
 *   GET  /cdn/{sha256}                        the bytes, honouring Range (206 + Content-Range)
 * Errors carry X-Error-Code as the Hub sends it: RepoNotFound (404), RevisionNotFound (404),
 * EntryNotFound (404), GatedRepo (401 without a token, 403 with a wrong one).
 */
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { CLI, ROOT } from '../cli/run';

export interface FakeRepo {
  commit: string;
  /** Branches and tags -> commit (main is added). */
  refs?: Record<string, string>;
  /** Repo-relative name -> bytes. Files ending .safetensors or .bin are LFS files. */
  files: Record<string, Buffer>;
  /** Files are served only with this bearer token. */
  gatedToken?: string;
}

export interface RecordedRequest {
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
}

/** git's blob id: sha1("blob <size>\0" + bytes), the ETag the Hub sends for files stored in git. */
export function gitBlobSha1(bytes: Buffer): string {
  return createHash('sha1').update(Buffer.concat([Buffer.from(`blob ${bytes.length}\0`), bytes])).digest('hex');
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function isLfs(name: string): boolean {
  return /\.(safetensors|bin)$/.test(name);
}

export class FakeHub {
  readonly requests: RecordedRequest[] = [];
  /** The next CDN GET of this sha256 sends `bytes` bytes, then the connection is destroyed. */
  cut: { sha256: string; bytes: number } | null = null;
  /** Every CDN GET of this sha256 sends the first half of its bytes, waits `ms`, then the rest (a slow link). */
  slow: { sha256: string; ms: number } | null = null;
  private server: http.Server | null = null;

  constructor(readonly repos: Record<string, FakeRepo>) {}

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    this.requests.push({ method: req.method ?? '', url, range: req.headers.range, authorization: req.headers.authorization });
    const fail = (status: number, code: string) => {
      res.writeHead(status, { 'X-Error-Code': code, 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: code }));
    };
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.split('?')[0]);
    if (cdn) return this.serveBlob(req, res, cdn[1]);
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url);
    const resolve = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId === undefined ? undefined : this.repos[repoId];
    if (repo === undefined) return fail(404, 'RepoNotFound');
    if (repo.gatedToken !== undefined && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
      return fail(req.headers.authorization === undefined ? 401 : 403, 'GatedRepo');
    }
    const revision = decodeURIComponent((api ?? resolve)![2]);
    const refs: Record<string, string> = { main: repo.commit, ...repo.refs };
    const commit = revision === repo.commit ? repo.commit : refs[revision];
    if (commit !== repo.commit) return fail(404, 'RevisionNotFound');
    if (api) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id: repoId, sha: commit, siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })) }));
      return;
    }
    const file = resolve![3].split('/').map(decodeURIComponent).join('/');
    const bytes = repo.files[file];
    if (bytes === undefined) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': commit });
      res.end();
      return;
    }
    if (isLfs(file)) {
      const oid = sha256(bytes);
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${bytes.length}\n`);
      res.writeHead(302, {
        Location: `http://${req.headers.host}/cdn/${oid}?X-Amz-Signature=fake`, 'X-Repo-Commit': commit,
        ETag: `"${gitBlobSha1(pointer)}"`, 'X-Linked-Etag': `"${oid}"`, 'X-Linked-Size': String(bytes.length),
        'Content-Length': '0',
      });
      res.end();
      return;
    }
    res.writeHead(200, { 'X-Repo-Commit': commit, ETag: `"${gitBlobSha1(bytes)}"`, 'Content-Length': String(bytes.length) });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  }

  private serveBlob(req: http.IncomingMessage, res: http.ServerResponse, oid: string): void {
    const bytes = Object.values(this.repos).flatMap((r) => Object.values(r.files)).find((b) => sha256(b) === oid);
    if (bytes === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start >= bytes.length && range) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` });
      res.end();
      return;
    }
    const body = bytes.subarray(start);
    res.writeHead(range ? 206 : 200, {
      'Content-Length': String(body.length), ...(range ? { 'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    if (this.cut !== null && this.cut.sha256 === oid) {
      const n = this.cut.bytes;
      this.cut = null;
      res.write(body.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (this.slow !== null && this.slow.sha256 === oid) {
      const half = Math.floor(body.length / 2);
      res.write(body.subarray(0, half), () => setTimeout(() => res.end(body.subarray(half)), this.slow?.ms ?? 0));
      return;
    }
    res.end(body);
  }
}

export interface Run { code: number; stdout: string; stderr: string }

/** The CLI with a clean Hub environment plus `env`, not blocking this process's event loop (the server answers meanwhile). */
export function gptuneWithHub(args: string[], env: Record<string, string>): Promise<Run> {
  const base = { ...process.env };
  for (const k of ['HF_ENDPOINT', 'HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'XDG_CACHE_HOME', 'HF_TOKEN_PATH']) delete base[k];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...base, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A model (or adapter) folder's files as the fake Hub serves them, plus files gptune must not download. */
export function repoFiles(dir: string, extra: Record<string, Buffer> = {}): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const f of fs.readdirSync(dir)) files[f] = fs.readFileSync(path.join(dir, f));
  return { ...files, 'README.md': Buffer.from('# tiny\n'), 'pytorch_model.bin': Buffer.from('not read by gptune'), ...extra };
}
