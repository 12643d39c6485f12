/**
 * A Hub model id -> a local snapshot folder gptune can load. Online: the revision's commit and file
 * list come from GET /api/models/{repo}/revision/{revision} ({sha, siblings: [{rfilename}]}), then each
 * file gptune needs that the snapshot lacks is downloaded (lib/hub/download.ts) and linked, and
 * refs/<revision> records the commit. A snapshot that already has every file costs that one request
 * (the branch may have moved) and no download; a commit-hash revision whose snapshot is complete, or
 * offline mode (HF_HUB_OFFLINE=1, --offline), costs none.
 */
import * as fs from 'fs';
import * as path from 'path';
import { HubAccessError, HubError } from '../errors';
import { INDEX_FILE, SINGLE_FILE } from '../io/sharded';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILES, ADAPTER_WEIGHTS_FILE } from '../lora/files';
import { TOKENIZER_FILES } from '../model/checkpoint';
import {
  cachedCommit, formatModelId, hasSnapshotFile, HubModelId, hubEndpoint, hubToken, isCommitHash, isHubModelSpec, linkSnapshotFile, offlineFromEnv,
  parseHubModelId, repoCacheDir, snapshotDir, writeRef,
} from './cache';
import { downloadBlob, DownloadProgress, fetchJSON, fileMetadata, HubConnection } from './download';

export interface HubOptions {
  /** Use the cache only (default: HF_HUB_OFFLINE). */
  offline?: boolean;
  /** Download the files matching these globs (fnmatch: * also crosses '/') instead of the ones gptune loads. */
  include?: string[];
  /** Bytes received, per file, as they arrive. */
  onProgress?: (p: DownloadProgress) => void;
  /** Told when another process is downloading a file this one needs (this one waits for it). */
  onWait?: (message: string) => void;
}

export interface HubSnapshot {
  /** snapshots/<commit> in the cache: a model folder. */
  dir: string;
  repoId: string;
  revision: string;
  commit: string;
  /** The files of the snapshot gptune asked for (repo-relative). */
  files: string[];
}

/** The model id `spec` names; throws when it is not one. */
function modelId(spec: string): HubModelId {
  const id = parseHubModelId(spec);
  if (id === null) throw new HubAccessError(`${spec}: not a Hugging Face model id (expected org/name or org/name@revision)`);
  return id;
}

/** `spec` pinned to the commit it resolved to: org/name@<commit>, which names the same weights forever. */
export function pinnedModelId(snapshot: HubSnapshot): string {
  return `${snapshot.repoId}@${snapshot.commit}`;
}

/**
 * The local folder a model spec names: for a Hub model id that is not an existing path, its snapshot
 * (downloaded as needed; `snapshot` says which commit); anything else as given. Hub errors start with
 * `label` (e.g. "--model").
 */
export async function localModelFolder(spec: string, label: string, options: HubOptions = {}): Promise<{ dir: string; snapshot: HubSnapshot | null }> {
  if (!isHubModelSpec(spec)) return { dir: spec, snapshot: null };
  try {
    const snapshot = await resolveHubModel(spec, options);
    return { dir: snapshot.dir, snapshot };
  } catch (e) {
    if (e instanceof HubAccessError || e instanceof HubError) e.message = `${label} ${e.message}`;
    throw e;
  }
}

/**
 * What a snapshot must hold: the files to fetch, picked from the repository's file list (and fetched
 * through `fetchFile`, which may read what it fetched to pick more, e.g. a shard index), and the first
 * file a cached snapshot lacks (null: complete). `missing` is null where no set of files is required
 * (--include): such a snapshot is never taken from the cache without asking the Hub, except offline.
 */
interface SnapshotContents {
  fetch(id: HubModelId, siblings: string[], fetchFile: (file: string) => Promise<void>, repoDir: string, commit: string): Promise<string[]>;
  missing: ((repoDir: string, commit: string) => string | null) | null;
}

/** The files gptune loads as a model (config, weights and shards, tokenizer); an adapter repository gets its adapter files. */
const MODEL_CONTENTS: SnapshotContents = {
  async fetch(id, siblings, fetchFile, repoDir, commit) {
    const names = new Set(siblings);
    // `gptune download org/adapter`: a PEFT adapter repository has no config.json of its own.
    if (!names.has('config.json') && names.has(ADAPTER_CONFIG_FILE)) return ADAPTER_CONTENTS.fetch(id, siblings, fetchFile, repoDir, commit);
    const weights = weightFiles(id, names);
    const files = ['config.json', ...TOKENIZER_FILES.filter((f) => names.has(f)), ...weights];
    for (const file of files) await fetchFile(file);
    if (weights[0] === INDEX_FILE) {
      const shards = shardsOfIndex(formatModelId(id), repoDir, commit);
      for (const shard of shards) {
        if (!names.has(shard)) throw new HubAccessError(`${formatModelId(id)}: ${INDEX_FILE} names ${shard}, which the repository does not have`);
        await fetchFile(shard);
      }
      files.push(...shards);
    }
    return files;
  },
  missing: (repoDir, commit) => (hasSnapshotFile(repoDir, commit, ADAPTER_CONFIG_FILE) && !hasSnapshotFile(repoDir, commit, 'config.json')
    ? ADAPTER_CONTENTS.missing!(repoDir, commit) : missingFromCache(repoDir, commit)),
};

/** A PEFT adapter: adapter_config.json and adapter_model.safetensors (adapter_model.bin is refused). */
const ADAPTER_CONTENTS: SnapshotContents = {
  async fetch(id, siblings, fetchFile) {
    const names = new Set(siblings);
    const model = formatModelId(id);
    if (!names.has(ADAPTER_CONFIG_FILE)) throw new HubAccessError(`${model}: the repository has no ${ADAPTER_CONFIG_FILE} (not a PEFT adapter)`);
    if (!names.has(ADAPTER_WEIGHTS_FILE)) {
      if (names.has('adapter_model.bin')) {
        throw new HubAccessError(`${model}: the adapter's weights are only in adapter_model.bin; gptune reads safetensors (pick a revision that has ${ADAPTER_WEIGHTS_FILE}, or save it with PEFT's save_pretrained(safe_serialization=True))`);
      }
      throw new HubAccessError(`${model}: the repository has ${ADAPTER_CONFIG_FILE} but no ${ADAPTER_WEIGHTS_FILE}`);
    }
    for (const file of ADAPTER_FILES) await fetchFile(file);
    return ADAPTER_FILES.slice();
  },
  missing: (repoDir, commit) => ADAPTER_FILES.find((f) => !hasSnapshotFile(repoDir, commit, f)) ?? null,
};

/** Makes the snapshot of `spec` (org/name[@revision]) hold the files gptune loads, downloading what it lacks. */
export async function resolveHubModel(spec: string, options: HubOptions = {}): Promise<HubSnapshot> {
  const include = options.include;
  if (include === undefined) return resolveSnapshot(spec, options, MODEL_CONTENTS);
  const patterns = include.map(globPattern);
  return resolveSnapshot(spec, options, {
    async fetch(id, siblings, fetchFile) {
      // A name that would leave the snapshot folder (.., absolute) is never fetched, whatever the server lists.
      const files = siblings.filter((f) => isRepoPath(f) && patterns.some((p) => p.test(f)));
      if (files.length === 0) throw new HubAccessError(`${formatModelId(id)}: no file matches ${include.join(', ')} (it has ${siblings.slice(0, 20).join(', ')}${siblings.length > 20 ? ', ...' : ''})`);
      for (const file of files) await fetchFile(file);
      return files;
    },
    missing: null,
  });
}

/** Makes the snapshot of `spec` (org/name[@revision]) hold a PEFT adapter's two files, downloading what it lacks. */
export async function resolveHubAdapter(spec: string, options: Omit<HubOptions, 'include'> = {}): Promise<HubSnapshot> {
  return resolveSnapshot(spec, options, ADAPTER_CONTENTS);
}

/**
 * The local adapter folder an --adapter value names: for a Hub id that is not an existing path, its
 * snapshot (downloaded as needed); anything else as given. Hub errors start with `label`.
 */
export async function localAdapterFolder(spec: string, label: string, options: Omit<HubOptions, 'include'> = {}): Promise<string> {
  if (!isHubModelSpec(spec)) return spec;
  try {
    return (await resolveHubAdapter(spec, options)).dir;
  } catch (e) {
    if (e instanceof HubAccessError || e instanceof HubError) e.message = `${label} ${e.message}`;
    throw e;
  }
}

async function resolveSnapshot(spec: string, options: HubOptions, contents: SnapshotContents): Promise<HubSnapshot> {
  const id = modelId(spec);
  const repoDir = repoCacheDir(id.repoId);
  const offline = options.offline ?? offlineFromEnv();
  const complete = (commit: string) => contents.missing !== null && contents.missing(repoDir, commit) === null;
  if (offline || (isCommitHash(id.revision) && complete(id.revision))) return cachedSnapshot(id, repoDir, contents.missing);
  const conn: HubConnection = { endpoint: hubEndpoint(), token: hubToken(), onProgress: options.onProgress, onWait: options.onWait };
  // What to say if the Hub cannot be reached: whether --offline would help.
  const cachedCommitOfRef = cachedCommit(repoDir, id.revision);
  const cached = cachedCommitOfRef !== null && (contents.missing ?? missingFromCache)(repoDir, cachedCommitOfRef) === null;
  const unreachable = cached
    ? `the cache has ${formatModelId(id)}: use --offline (HF_HUB_OFFLINE=1) to load it`
    : `check the network or HF_ENDPOINT (the cache does not have ${formatModelId(id)} for --offline to use)`;
  const { commit, siblings } = await revisionInfo(conn, id, unreachable);
  const fetchFile = async (file: string) => {
    if (hasSnapshotFile(repoDir, commit, file)) return;
    const meta = await fileMetadata(conn, id, commit, file);
    await downloadBlob(conn, id, file, repoDir, meta);
    linkSnapshotFile(repoDir, commit, file, meta.etag);
  };
  const files = await contents.fetch(id, siblings, fetchFile, repoDir, commit);
  writeRef(repoDir, id.revision, commit);
  return { dir: snapshotDir(repoDir, commit), repoId: id.repoId, revision: id.revision, commit, files };
}

async function revisionInfo(conn: HubConnection, id: HubModelId, unreachable: string): Promise<{ commit: string; siblings: string[] }> {
  const url = `${conn.endpoint}/api/models/${id.repoId}/revision/${encodeURIComponent(id.revision)}`;
  const json = await fetchJSON(url, id, conn, unreachable) as { sha?: unknown; siblings?: unknown };
  const siblings = Array.isArray(json.siblings) ? json.siblings.map((s) => (s as { rfilename?: unknown })?.rfilename) : null;
  if (typeof json.sha !== 'string' || !isCommitHash(json.sha) || siblings === null || !siblings.every((s): s is string => typeof s === 'string')) {
    throw new HubError(`${formatModelId(id)}: ${url} did not answer {sha: <40 hex>, siblings: [{rfilename}]} (is HF_ENDPOINT a Hugging Face Hub?)`);
  }
  return { commit: json.sha, siblings };
}

/** The weight file to fetch first: model.safetensors, else the shard index (its shards follow); pytorch_model.bin is refused. */
function weightFiles(id: HubModelId, names: Set<string>): string[] {
  if (!names.has('config.json')) throw new HubAccessError(`${formatModelId(id)}: the repository has no config.json (not a transformers model)`);
  if (names.has(SINGLE_FILE)) return [SINGLE_FILE];
  if (names.has(INDEX_FILE)) return [INDEX_FILE];
  const pickle = [...names].find((n) => /(^|\/)pytorch_model[^/]*\.bin$/.test(n));
  if (pickle !== undefined) {
    throw new HubAccessError(`${formatModelId(id)}: the weights are only in ${pickle}; gptune reads safetensors (pick a revision that has model.safetensors, or convert it with save_pretrained(safe_serialization=True))`);
  }
  throw new HubAccessError(`${formatModelId(id)}: the repository has no ${SINGLE_FILE} or ${INDEX_FILE}`);
}

/** The shard files named by the snapshot's model.safetensors.index.json, in order. */
function shardsOfIndex(model: string, repoDir: string, commit: string): string[] {
  const file = path.join(snapshotDir(repoDir, commit), INDEX_FILE);
  let map: unknown;
  try {
    map = (JSON.parse(fs.readFileSync(file, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new HubAccessError(`${file}: not JSON (${(e as Error).message})`);
  }
  if (typeof map !== 'object' || map === null || !Object.values(map).every((v) => typeof v === 'string' && isRepoPath(v))) {
    throw new HubAccessError(`${file}: weight_map is not an object of tensor name -> shard file (${model})`);
  }
  return [...new Set(Object.values(map as Record<string, string>))].sort();
}

/** A repo-relative file name that stays inside the snapshot. */
function isRepoPath(name: string): boolean {
  return name !== '' && !path.isAbsolute(name) && !name.split('/').some((s) => s === '' || s === '.' || s === '..');
}

/**
 * The first file a cached snapshot needs to be loaded but lacks (config.json, the weights, a tokenizer),
 * or null when it has them all.
 */
function missingFromCache(repoDir: string, commit: string): string | null {
  const has = (f: string) => hasSnapshotFile(repoDir, commit, f);
  if (!has('config.json')) return 'config.json';
  if (!has(SINGLE_FILE)) {
    if (!has(INDEX_FILE)) return SINGLE_FILE;
    let shards: string[];
    try {
      shards = shardsOfIndex(commit, repoDir, commit);
    } catch {
      return INDEX_FILE;
    }
    const missing = shards.find((s) => !has(s));
    if (missing !== undefined) return missing;
  }
  if (!has('tokenizer.json') && !(has('vocab.json') && has('merges.txt'))) return 'tokenizer.json';
  return null;
}

/** The snapshot the cache holds for `id`, or an error naming what is missing. */
function cachedSnapshot(id: HubModelId, repoDir: string, missingFrom: SnapshotContents['missing']): HubSnapshot {
  const model = formatModelId(id);
  const commit = cachedCommit(repoDir, id.revision);
  const where = commit === null ? path.join(repoDir, 'refs', id.revision) : snapshotDir(repoDir, commit);
  const offlineHint = `download it while online (gptune download ${model})`;
  if (commit === null || !fs.existsSync(snapshotDir(repoDir, commit))) {
    throw new HubAccessError(`${model}: not in the Hugging Face cache (offline, and ${where} does not exist); ${offlineHint}`);
  }
  const dir = snapshotDir(repoDir, commit);
  if (missingFrom !== null) {
    const missing = missingFrom(repoDir, commit);
    if (missing !== null) throw new HubAccessError(`${model}: offline, and the cached snapshot lacks ${missing} (${path.join(dir, missing)}); ${offlineHint}`);
  }
  const files = listFiles(dir);
  return { dir, repoId: id.repoId, revision: id.revision, commit, files };
}

function listFiles(dir: string, prefix = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`])).sort();
}

/** An fnmatch glob (*, ?, [seq], [!seq]) as huggingface_hub's allow_patterns match it: * crosses '/', a trailing '/' means the folder's files. */
export function globPattern(glob: string): RegExp {
  const g = glob.endsWith('/') ? `${glob}*` : glob;
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' && g.indexOf(']', i + 2) > 0) {
      const end = g.indexOf(']', i + 2);
      const body = g.slice(i + 1, end);
      re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}
