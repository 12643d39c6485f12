/**
 * Where gptune writes, it deletes or replaces only what it created. An output folder (train --out,
 * its checkpoint folder, demo --out) carries a manifest, `.gptune-output.json`, listing the entries
 * (top-level files and folders) gptune wrote there; a folder holding anything else is refused, naming
 * what it holds. A single output file (sample --out, eval --predictions) that exists is replaced only
 * when the user says so. Before a long run, the target is probed for writability and free space so
 * that a read-only or full disk fails in the first second, not after the training.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { OutputError, UsageError } from '../errors';
import { VERSION } from '../version';
import { isAtomicTemporary, removeStaleTemporaries, writeFileAtomic } from './atomic';

export const OUTPUT_MANIFEST = '.gptune-output.json';

/**
 * new:      the folder must be missing or empty (a previous gptune output is refused with `replaceHint`);
 * replace:  a previous gptune output is removed first (the entries its manifest lists, nothing else);
 * continue: a previous gptune output is written into again (a resumed run), nothing is removed.
 */
export type OutputMode = 'new' | 'replace' | 'continue';

export interface OutputFolderOptions {
  /** How the folder is named to the user, e.g. '--out' (messages read "--out DIR: ..."). */
  label: string;
  /** Recorded in the manifest, e.g. 'gptune train'. */
  writer: string;
  mode: OutputMode;
  /** What to do about a previous gptune output in mode 'new', e.g. 'add --overwrite to replace it'. */
  replaceHint: string;
  /** Top-level entries the writer is going to create (listed before they are written, so a killed run's files stay its own). */
  entries: readonly string[];
  /**
   * Mode 'continue' only: a folder without a manifest (written by a gptune from before manifests)
   * is taken as gptune's when this is true and it holds nothing but `entries`; the caller says so
   * when it has other evidence (the checkpoint being resumed lies inside the folder).
   */
  adoptUnlisted?: boolean;
}

interface Manifest {
  written_by: string;
  gptune_version: string;
  entries: string[];
}

/** The top-level entry of folder `dir` that path `p` is or lies under, or null when `p` is not inside `dir`. */
export function entryUnder(dir: string, p: string): string | null {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return null;
  return rel.split(path.sep)[0];
}

/** Lists at most `n` names, then how many more. */
function someNames(names: readonly string[], n = 5): string {
  const shown = names.slice(0, n).join(', ');
  return names.length > n ? `${shown} and ${names.length - n} more` : shown;
}

function isPlainName(name: unknown): name is string {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}

function readManifest(dir: string, label: string): Manifest | null {
  const file = path.join(dir, OUTPUT_MANIFEST);
  if (!fs.existsSync(file)) return null;
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`${label} ${dir}: ${OUTPUT_MANIFEST} is not a gptune manifest (${(e as Error).message}); gptune will not write here`);
  }
  // Only plain names: a manifest must never make gptune delete outside its folder.
  if (typeof m !== 'object' || m === null || !Array.isArray(m.entries) || !m.entries.every(isPlainName)) {
    throw new UsageError(`${label} ${dir}: ${OUTPUT_MANIFEST} is not a gptune manifest (expected {"entries": [file names]}); gptune will not write here`);
  }
  return m;
}

/** An output folder that gptune owns: record() lists entries before they are written. */
export class OutputFolder {
  private readonly entries: Set<string>;

  /** `created`: this writer made the folder (so it may remove it again when it wrote nothing else). */
  constructor(readonly dir: string, private readonly writer: string, entries: Iterable<string>, private readonly created = false) {
    this.entries = new Set(entries);
  }

  /**
   * For a run that ends without output (it diverged before writing anything): when the folder holds
   * nothing but the manifest, removes the manifest, and the folder too when this writer created it,
   * so the user finds the folder as it was. Anything else present is left alone.
   */
  releaseIfUnused(): void {
    if (!fs.existsSync(this.dir)) return;
    const names = fs.readdirSync(this.dir).filter((n) => !isAtomicTemporary(n));
    if (names.length !== 1 || names[0] !== OUTPUT_MANIFEST) return;
    fs.rmSync(path.join(this.dir, OUTPUT_MANIFEST));
    if (this.created && fs.readdirSync(this.dir).length === 0) fs.rmdirSync(this.dir);
  }

  /** Whether the manifest lists this top-level name (gptune wrote it here). */
  lists(name: string): boolean {
    return this.entries.has(name);
  }

  /** Adds top-level names to the manifest (written atomically; a no-op when all are listed). */
  record(names: Iterable<string>): void {
    const before = this.entries.size;
    for (const name of names) {
      if (!isPlainName(name)) throw new Error(`${this.dir}: expected a plain entry name for the output manifest but received ${JSON.stringify(name)}`);
      this.entries.add(name);
    }
    if (this.entries.size !== before || !fs.existsSync(path.join(this.dir, OUTPUT_MANIFEST))) this.writeManifest();
  }

  private writeManifest(): void {
    const m: Manifest = { written_by: this.writer, gptune_version: VERSION, entries: [...this.entries].sort() };
    writeFileAtomic(path.join(this.dir, OUTPUT_MANIFEST), JSON.stringify(m, null, 1) + '\n');
  }
}

/**
 * Lists more entries in the manifest of a folder that has one (a gptune output that a later command
 * adds to, e.g. `gptune card`); a folder without a manifest is left as it is.
 */
export function recordOutputEntries(dir: string, label: string, names: readonly string[]): void {
  const m = readManifest(dir, label);
  if (m !== null) new OutputFolder(dir, m.written_by, m.entries).record(names);
}

/** What claimOutputFolder will do to a folder that planOutputFolder found acceptable. */
export interface OutputPlan {
  dir: string;
  options: OutputFolderOptions;
  /** Entries of a previous gptune output present in the folder (removed in mode 'replace'). */
  previous: string[];
  /** What the folder's manifest lists now. */
  listed: string[];
}

/**
 * Checks that `dir` may be written by this writer (see OutputMode) without changing anything, or
 * throws a UsageError naming the folder and what in it is not gptune's. Cheap: call it before
 * loading models and data, and claimOutputFolder when the run is about to start.
 */
export function planOutputFolder(dir: string, o: OutputFolderOptions): OutputPlan {
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs)) {
    checkWritable(abs, o.label, 0);
    return { dir: abs, options: o, previous: [], listed: [] };
  }
  if (!fs.statSync(abs).isDirectory()) throw new UsageError(`${o.label} ${dir}: exists and is a file; expected a folder (new or empty)`);
  const names = fs.readdirSync(abs).sort();
  const manifest = readManifest(abs, o.label);
  const listed = new Set(manifest?.entries ?? []);
  if (!manifest && o.mode === 'continue' && o.adoptUnlisted && names.every((n) => o.entries.includes(n) || isAtomicTemporary(n))) {
    for (const n of names) if (!isAtomicTemporary(n)) listed.add(n);
  }
  const foreign = names.filter((n) => n !== OUTPUT_MANIFEST && !listed.has(n) && !isAtomicTemporary(n));
  if (foreign.length > 0) {
    const clashes = foreign.filter((n) => o.entries.includes(n));
    const wouldTouch = clashes.length > 0 ? `; gptune would overwrite ${someNames(clashes)}` : '';
    const what = manifest ? 'holds files gptune did not write' : 'is not empty and is not a gptune output';
    throw new UsageError(`${o.label} ${dir}: ${what} (${someNames(foreign)}${wouldTouch}); gptune writes only into a new or empty folder or its own previous output: choose another folder`);
  }
  const previous = names.filter((n) => listed.has(n));
  if (previous.length > 0 && o.mode === 'new') {
    throw new UsageError(`${o.label} ${dir}: holds a previous gptune output (${someNames(previous)}); ${o.replaceHint}`);
  }
  checkWritable(abs, o.label, 0);
  return { dir: abs, options: o, previous, listed: [...listed] };
}

/**
 * Takes the folder a plan accepted: creates it, removes the previous output in mode 'replace' (the
 * listed entries only), removes stale temporaries of killed gptune writers, and writes the manifest
 * with the entries the writer is going to create.
 */
export function claimOutputFolder(plan: OutputPlan): OutputFolder {
  const o = plan.options;
  const created = !fs.existsSync(plan.dir);
  fs.mkdirSync(plan.dir, { recursive: true });
  if (o.mode === 'replace') {
    for (const name of plan.previous) fs.rmSync(path.join(plan.dir, name), { recursive: true, force: true });
  }
  removeStaleTemporaries(plan.dir);
  const folder = new OutputFolder(plan.dir, o.writer, o.mode === 'replace' ? [] : plan.listed, created);
  folder.record(o.entries);
  return folder;
}

/** planOutputFolder then claimOutputFolder. */
export function prepareOutputFolder(dir: string, o: OutputFolderOptions): OutputFolder {
  return claimOutputFolder(planOutputFolder(dir, o));
}

/**
 * Refuses an output file path that is a folder, or an existing file that `isOwn` does not recognise
 * as gptune's own previous output of this kind, unless `overwrite` (the user named this one file
 * and said to replace it); checks that its folder is writable.
 */
export function checkOutputFile(file: string, label: string, o: { overwrite: boolean; isOwn: (head: string) => boolean }): void {
  const abs = path.resolve(file);
  if (fs.existsSync(abs)) {
    if (fs.statSync(abs).isDirectory()) throw new UsageError(`${label} ${file}: is a folder; expected a file name`);
    if (!o.overwrite && !o.isOwn(readHead(abs))) {
      throw new UsageError(`${label} ${file}: exists and was not written by gptune; add --overwrite to replace it, or choose another name`);
    }
  }
  checkWritable(path.dirname(abs), label, 0, file);
}

/** The first 64 KiB of a file as text (enough to recognise what wrote it). */
function readHead(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    return buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether the first line of `head` is a JSON object with every one of `keys` (a JSONL file gptune wrote). */
export function firstLineHasKeys(head: string, keys: readonly string[]): boolean {
  const line = head.split('\n', 1)[0];
  try {
    const x = JSON.parse(line);
    return typeof x === 'object' && x !== null && !Array.isArray(x) && keys.every((k) => k in x);
  } catch {
    return false;
  }
}

/** The nearest existing folder at or above `p` (a file on the way is a UsageError). */
function nearestExisting(p: string, label: string, shown: string): string {
  let at = path.resolve(p);
  while (!fs.existsSync(at)) at = path.dirname(at);
  if (!fs.statSync(at).isDirectory()) throw new UsageError(`${label} ${shown}: ${at} is a file, not a folder`);
  return at;
}

export function formatBytes(n: number): string {
  const mib = n / 2 ** 20;
  return `${n} bytes (${mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(1)} MiB`})`;
}

/** Free bytes for an unprivileged writer on the file system holding `dir`, or null where statfs is missing. */
function availableBytes(dir: string): number | null {
  if (typeof fs.statfsSync !== 'function') return null;
  const s = fs.statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * Checks before any long work that `target` (a folder, existing or not) can be written: a probe file
 * is created and removed in its nearest existing folder, and that file system must have
 * `bytesNeeded` free. Throws an OutputError naming `shown` (the output the user named: the folder,
 * or the file to be written in it), the folder, the reason, and the bytes.
 */
export function checkWritable(target: string, label: string, bytesNeeded: number, shown = target): void {
  const at = nearestExisting(target, label, shown);
  const probe = path.join(at, `.gptune-probe-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
  try {
    fs.writeFileSync(probe, '', { flag: 'wx' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new OutputError(`${label} ${shown}: cannot write in ${at} (${err.code ?? err.message})`);
  }
  fs.unlinkSync(probe);
  const available = availableBytes(at);
  if (available !== null && bytesNeeded > available) {
    throw new OutputError(`${label} ${shown}: needs ${formatBytes(bytesNeeded)} of free space but ${at} has ${formatBytes(available)} available`);
  }
}

/**
 * Sums the bytes each target folder needs per file system (targets on one disk share its free space),
 * then checks each; `shown` names a file to be written in the folder, for the messages.
 */
export function checkSpace(needs: ReadonlyArray<{ target: string; label: string; bytes: number; shown?: string }>): void {
  const byDevice = new Map<number, { target: string; label: string; bytes: number; shown?: string }>();
  for (const n of needs) {
    const dev = fs.statSync(nearestExisting(n.target, n.label, n.target)).dev;
    const seen = byDevice.get(dev);
    if (seen) seen.bytes += n.bytes;
    else byDevice.set(dev, { ...n });
  }
  for (const n of byDevice.values()) checkWritable(n.target, n.label, n.bytes, n.shown);
}
