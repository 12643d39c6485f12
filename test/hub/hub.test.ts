/**
 * --model org/name and `gptune download` against a Hub on 127.0.0.1 (fake_hub.ts: the Hub's URL layout
 * and headers), through HF_ENDPOINT and a temporary HF_HOME: download, then load and generate; the
 * cache laid out as huggingface_hub lays it out (blobs by etag, relative symlinks, refs); a second run
 * downloading nothing, and loading with the server stopped (offline); an interrupted download resumed
 * with a Range request; 401/403, 404 and connection-refused errors; a cache written by hand in
 * huggingface_hub's layout reused.
 *
 * The CLI runs as a child process without blocking (the server lives in this process).
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { saveModel } from '../../lib/model/checkpoint';
import { parseModelSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { loadTokenizer } from '../../lib/tokenizer';
import { globPattern } from '../../lib/hub/resolve';
import { isHubModelSpec, parseHubModelId } from '../../lib/hub/cache';
import { normalizeEtag } from '../../lib/hub/download';
import { downloadProgressLine } from '../../lib/cli/common';
import { readGGUFHeader } from '../../lib/gguf/read';
import { FIXTURES, tempDir } from '../helpers';
import { CLI, ROOT } from '../cli/run';
import { FakeHub, FakeRepo, gitBlobSha1, gptuneWithHub as gptune, repoFiles, Run, sha256 } from './fake_hub';

const CHATML = path.join(FIXTURES, 'tokenizers', 'bytelevel-chatml');
const COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const OTHER_COMMIT = 'ffeeddccbbaa99887766554433221100ffeeddcc';

/** A port on 127.0.0.1 where nothing listens (connection refused). */
async function closedPort(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

let modelDir: string;
let shardedDir: string;
let hub: FakeHub;
let endpoint: string;
let refusing: string;

beforeAll(async () => {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` (npm test does it)`);
  const tokenizer = loadTokenizer(CHATML);
  const model = new Decoder(parseModelSpec(`new:n_layer=1,n_head=2,n_embd=16,n_positions=128,vocab_size=${tokenizer.vocabSize}`));
  model.initRandom(7);
  const root = tempDir('gptune-hub-model-');
  modelDir = path.join(root, 'model');
  shardedDir = path.join(root, 'sharded');
  saveModel(model, modelDir, { tokenizerFrom: CHATML });
  // Shards of at most 20 kB: several model-0000k-of-0000n.safetensors and their index.
  saveModel(model, shardedDir, { tokenizerFrom: CHATML, maxShardSize: 20_000 });
  model.free();
  expect(fs.readdirSync(shardedDir).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(1);
  const repos: Record<string, FakeRepo> = {
    'org/tiny': { commit: COMMIT, refs: { v1: COMMIT }, files: repoFiles(modelDir) },
    'org/sharded': { commit: COMMIT, files: repoFiles(shardedDir) },
    'org/gated': { commit: COMMIT, files: repoFiles(modelDir), gatedToken: 'hf_secret' },
    'org/pickle': { commit: COMMIT, files: { 'config.json': fs.readFileSync(path.join(modelDir, 'config.json')), 'pytorch_model.bin': Buffer.from('x') } },
    'org/handmade': { commit: OTHER_COMMIT, files: repoFiles(modelDir) },
    // A server listing a file outside the repository: never fetched, never written outside the snapshot.
    'org/evil': { commit: COMMIT, files: { 'config.json': Buffer.from('{}'), '../../../escape.txt': Buffer.from('x') } },
  };
  hub = new FakeHub(repos);
  endpoint = await hub.start();
  refusing = await closedPort();
});

afterAll(async () => {
  await hub?.stop();
});

const GENERATE = ['generate', '--prompt', 'Hello there', '--greedy', '--max-new-tokens', '12', '--no-eos-stop', '--json'];

describe('model ids', () => {
  test('org/name[@revision] and bare names parse; paths, files and malformed ids do not', () => {
    expect(parseHubModelId('openai-community/gpt2')).toEqual({ repoId: 'openai-community/gpt2', revision: 'main' });
    expect(parseHubModelId('gpt2')).toEqual({ repoId: 'gpt2', revision: 'main' });
    expect(parseHubModelId('org/name@refs/pr/1')).toEqual({ repoId: 'org/name', revision: 'refs/pr/1' });
    for (const bad of ['a/b/c', 'org/-x', 'org/x.', 'or--g/x', 'org/x@', 'org/x@../main', 'model.gguf', 'org/model.safetensors', '']) {
      expect(parseHubModelId(bad)).toBeNull();
    }
    expect(isHubModelSpec('./gpt2')).toBe(false);
    expect(isHubModelSpec('new:n_layer=1')).toBe(false);
    expect(isHubModelSpec(ROOT)).toBe(false);
    // An existing folder wins over the Hub: "test" is this repository's test folder.
    process.chdir(ROOT);
    expect(isHubModelSpec('test')).toBe(false);
    expect(isHubModelSpec('org/does-not-exist-here')).toBe(true);
  });

  test('ETags and include globs as huggingface_hub reads them', () => {
    expect(normalizeEtag('"abc123"')).toBe('abc123');
    expect(normalizeEtag('W/"abc123"')).toBe('abc123');
    expect(normalizeEtag('"../x"')).toBeNull();
    expect(normalizeEtag(null)).toBeNull();
    expect(globPattern('*.json').test('config.json')).toBe(true);
    expect(globPattern('*.json').test('sub/config.json')).toBe(true); // fnmatch's * crosses '/'
    expect(globPattern('onnx/').test('onnx/model.onnx')).toBe(true);
    expect(globPattern('model-0000[12]-*').test('model-00002-of-00003.safetensors')).toBe(true);
    expect(globPattern('model-0000[!12]-*').test('model-00002-of-00003.safetensors')).toBe(false);
    expect(globPattern('a.b').test('axb')).toBe(false);
  });
});

describe('the progress line', () => {
  test('a terminal gets one rewritten line per file, ended when the file is done; anything else gets nothing', () => {
    let written = '';
    const tty = { isTTY: true, write: (t: string) => ((written += t), true) } as unknown as NodeJS.WriteStream;
    const show = downloadProgressLine(tty)!;
    show({ file: 'model.safetensors', received: 1_000_000, total: 4_000_000, done: false });
    expect(written).toMatch(/^\rdownloading model\.safetensors: 1\.0 \/ 4\.0 MB \(25%\), [\d.]+ MB\/s\x1b\[K$/);
    written = '';
    show({ file: 'model.safetensors', received: 4_000_000, total: 4_000_000, done: true });
    expect(written).toMatch(/^\rdownloading model\.safetensors: 4\.0 \/ 4\.0 MB \(100%\), [\d.]+ MB\/s\x1b\[K\n$/);
    expect(downloadProgressLine({ isTTY: false } as unknown as NodeJS.WriteStream)).toBeUndefined();
  });
});

describe('gptune with a Hub on 127.0.0.1', () => {
  let home: string;
  let env: Record<string, string>;
  let repoDir: string;

  beforeAll(() => {
    home = tempDir('gptune-hf-home-');
    env = { HF_ENDPOINT: endpoint, HF_HOME: home };
    repoDir = path.join(home, 'hub', 'models--org--tiny');
  });

  test('--model org/tiny downloads the files gptune needs, then generates exactly as the local folder does', async () => {
    const local = await gptune([...GENERATE, '--model', modelDir], env);
    expect(local.stderr).toBe('');
    expect(local.code).toBe(0);
    hub.requests.length = 0;
    const fromHub = await gptune([...GENERATE, '--model', 'org/tiny'], env);
    expect(fromHub.stderr).toBe(''); // not a terminal: no progress line
    expect(fromHub.code).toBe(0);
    expect(JSON.parse(fromHub.stdout).tokens).toEqual(JSON.parse(local.stdout).tokens);
    const asked = hub.requests.map((r) => r.url);
    expect(asked[0]).toBe('/api/models/org/tiny/revision/main');
    expect(asked.some((u) => u.includes('README.md') || u.includes('pytorch_model.bin'))).toBe(false);
    // The LFS file came from the CDN location, without the token-bearing resolve URL's GET.
    expect(hub.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/cdn/'))).toHaveLength(1);
  });

  test('the cache is laid out as huggingface_hub lays it out: refs/main, relative symlinks to blobs named by etag', () => {
    expect(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    const snapshot = path.join(repoDir, 'snapshots', COMMIT);
    const expected = fs.readdirSync(modelDir).sort();
    expect(fs.readdirSync(snapshot).sort()).toEqual(expected);
    for (const f of expected) {
      const bytes = fs.readFileSync(path.join(modelDir, f));
      // LFS files are named by their sha256 (X-Linked-Etag), git files by their git blob sha1 (ETag).
      const etag = f.endsWith('.safetensors') ? sha256(bytes) : gitBlobSha1(bytes);
      expect(fs.lstatSync(path.join(snapshot, f)).isSymbolicLink()).toBe(true);
      expect(fs.readlinkSync(path.join(snapshot, f))).toBe(`../../blobs/${etag}`);
      expect(fs.readFileSync(path.join(repoDir, 'blobs', etag)).equals(bytes)).toBe(true);
    }
    expect(fs.readdirSync(path.join(repoDir, 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
  });

  test('a second run downloads nothing; a commit revision asks nothing; with the server gone --offline and HF_HUB_OFFLINE=1 load from the cache', async () => {
    hub.requests.length = 0;
    const again = await gptune([...GENERATE, '--model', 'org/tiny'], env);
    expect(again.code).toBe(0);
    // Only whether main moved: no file is fetched again.
    expect(hub.requests.map((r) => r.url)).toEqual(['/api/models/org/tiny/revision/main']);
    hub.requests.length = 0;
    const pinned = await gptune([...GENERATE, '--model', `org/tiny@${COMMIT}`], env);
    expect(pinned.code).toBe(0);
    expect(hub.requests).toEqual([]);
    const offlineFlag = await gptune([...GENERATE, '--model', 'org/tiny', '--offline'], { ...env, HF_ENDPOINT: refusing });
    expect(offlineFlag.stderr).toBe('');
    expect(JSON.parse(offlineFlag.stdout).tokens).toEqual(JSON.parse(again.stdout).tokens);
    const offlineEnv = await gptune([...GENERATE, '--model', 'org/tiny'], { ...env, HF_ENDPOINT: refusing, HF_HUB_OFFLINE: '1' });
    expect(offlineEnv.code).toBe(0);
    expect(JSON.parse(offlineEnv.stdout).tokens).toEqual(JSON.parse(again.stdout).tokens);
    expect(hub.requests).toEqual([]);
    // Online without a server: the error says the cache has it and how to use it.
    const refused = await gptune([...GENERATE, '--model', 'org/tiny'], { ...env, HF_ENDPOINT: refusing });
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/--model org\/tiny: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); the cache has org\/tiny: use --offline/);
  });

  test('offline, a model or revision the cache lacks is an error naming it', async () => {
    const missing = await gptune([...GENERATE, '--model', 'org/sharded', '--offline'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--model org\/sharded: not in the Hugging Face cache .*refs\/main does not exist.*gptune download org\/sharded/);
    // A snapshot missing a file: remove the weights' pointer of a copy of the cache.
    const copy = tempDir('gptune-hf-home-');
    fs.cpSync(home, copy, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(path.join(copy, 'hub', 'models--org--tiny', 'snapshots', COMMIT, 'model.safetensors'));
    const lacking = await gptune([...GENERATE, '--model', 'org/tiny', '--offline'], { ...env, HF_HOME: copy });
    expect(lacking.code).toBe(2);
    expect(lacking.stderr).toMatch(/offline, and the cached snapshot lacks model\.safetensors/);
  });

  test('a sharded model: the index and every shard it names; download prints the snapshot folder', async () => {
    const r = await gptune(['download', 'org/sharded'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const snapshot = path.join(home, 'hub', 'models--org--sharded', 'snapshots', COMMIT);
    expect(r.stdout.trim()).toBe(snapshot);
    expect(fs.readdirSync(snapshot).sort()).toEqual(fs.readdirSync(shardedDir).sort());
    const gen = await gptune([...GENERATE, '--model', 'org/sharded', '--offline'], env);
    const local = await gptune([...GENERATE, '--model', modelDir], env);
    expect(JSON.parse(gen.stdout).tokens).toEqual(JSON.parse(local.stdout).tokens);
  });

  test('a listed file name that would leave the snapshot folder is skipped', async () => {
    const r = await gptune(['download', 'org/evil', '--include', '*', '--json'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).files).toEqual(['config.json']);
    expect(fs.existsSync(path.join(home, 'escape.txt'))).toBe(false);
    expect(fs.existsSync(path.join(home, 'hub', 'escape.txt'))).toBe(false);
  });

  test('export names a Hub model by its repository, not by its snapshot commit', async () => {
    const file = path.join(tempDir(), 'tiny.gguf');
    const r = await gptune(['export', '--model', 'org/tiny', '--offline', '--format', 'gguf', '--dtype', 'f32', '--out', file], env);
    expect(r.code).toBe(0);
    expect(readGGUFHeader(file).kv.get('general.name')).toEqual('tiny');
  });

  test('download --include takes the files matching the globs instead; --json lists them', async () => {
    const r = await gptune(['download', 'org/tiny@v1', '--include', '*.md', '--include', 'config.json', '--json'], env);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ repo: 'org/tiny', revision: 'v1', commit: COMMIT });
    expect([...result.files].sort()).toEqual(['README.md', 'config.json']);
    expect(fs.readFileSync(path.join(repoDir, 'refs', 'v1'), 'utf8')).toBe(COMMIT);
    expect(fs.readFileSync(path.join(result.dir, 'README.md'), 'utf8')).toBe('# tiny\n');
  });
});

describe('an interrupted download', () => {
  /** A fresh HF_HOME whose blobs/<sha256 of model.safetensors>.incomplete holds `partial(weights)`. */
  function plantIncomplete(partial: (weights: Buffer) => Buffer): { home: string; weights: Buffer; oid: string; blobs: string } {
    const home = tempDir('gptune-hf-home-');
    const weights = fs.readFileSync(path.join(modelDir, 'model.safetensors'));
    const oid = sha256(weights);
    const blobs = path.join(home, 'hub', 'models--org--tiny', 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    fs.writeFileSync(path.join(blobs, `${oid}.incomplete`), partial(weights));
    return { home, weights, oid, blobs };
  }

  test('keeps blobs/<etag>.incomplete, and the next run continues it with a Range request', async () => {
    const home = tempDir('gptune-hf-home-');
    const env = { HF_ENDPOINT: endpoint, HF_HOME: home };
    const weights = fs.readFileSync(path.join(modelDir, 'model.safetensors'));
    const oid = sha256(weights);
    const cutAt = Math.floor(weights.length / 3);
    hub.cut = { sha256: oid, bytes: cutAt };
    const first = await gptune(['download', 'org/tiny'], env);
    expect(first.code).toBe(1);
    expect(first.stderr.trim().split('\n')).toHaveLength(1);
    expect(first.stderr).toMatch(/org\/tiny model\.safetensors: the download broke off after \d+ of \d+ bytes .*run again to resume it/);
    const incomplete = path.join(home, 'hub', 'models--org--tiny', 'blobs', `${oid}.incomplete`);
    const kept = fs.statSync(incomplete).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cutAt);
    expect(fs.existsSync(path.join(home, 'hub', 'models--org--tiny', 'snapshots', COMMIT, 'model.safetensors'))).toBe(false);
    hub.requests.length = 0;
    const second = await gptune(['download', 'org/tiny'], env);
    expect(second.stderr).toBe('');
    expect(second.code).toBe(0);
    const cdnGets = hub.requests.filter((r) => r.url.startsWith('/cdn/'));
    expect(cdnGets).toHaveLength(1);
    expect(cdnGets[0].range).toBe(`bytes=${kept}-`);
    expect(fs.readFileSync(path.join(home, 'hub', 'models--org--tiny', 'blobs', oid)).equals(weights)).toBe(true);
    expect(fs.existsSync(incomplete)).toBe(false);
  });

  test('a run stopped after the last byte but before the rename: the server answers 416 to the Range, and the file is checked and published', async () => {
    const { home, weights, oid, blobs } = plantIncomplete((w) => w);
    hub.requests.length = 0;
    const r = await gptune(['download', 'org/tiny'], { HF_ENDPOINT: endpoint, HF_HOME: home });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(hub.requests.filter((q) => q.url.startsWith('/cdn/')).map((q) => q.range)).toEqual([`bytes=${weights.length}-`]);
    expect(fs.readFileSync(path.join(blobs, oid)).equals(weights)).toBe(true);
  });

  test('a partial file that does not match the sha256 is removed, not published', async () => {
    // Garbage where the first 1000 bytes should be: the resumed tail completes the size, the hash exposes it.
    const { home, oid, blobs } = plantIncomplete(() => Buffer.alloc(1000, 7));
    const r = await gptune(['download', 'org/tiny'], { HF_ENDPOINT: endpoint, HF_HOME: home });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.safetensors: sha256 [0-9a-f]{64} does not match the Hub's [0-9a-f]{64}; the corrupt download was removed/);
    expect(fs.readdirSync(blobs).some((b) => b.startsWith(oid))).toBe(false);
  });
});

describe('Hub errors: one line, non-zero exit', () => {
  const env = () => ({ HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') });

  test('404: no such repository, no such revision', async () => {
    const repo = await gptune([...GENERATE, '--model', 'org/nope'], env());
    expect(repo.code).toBe(2);
    expect(repo.stderr.trim().split('\n')).toHaveLength(1);
    expect(repo.stderr).toMatch(/--model org\/nope: not a local folder, and http:\/\/127\.0\.0\.1:\d+ has no model repository of that name \(if it is private or gated, set HF_TOKEN\)/);
    const rev = await gptune(['download', 'org/tiny@nope'], env());
    expect(rev.code).toBe(2);
    expect(rev.stderr).toMatch(/org\/tiny@nope: revision 'nope' not found/);
  });

  test('401 without a token says to set HF_TOKEN; 403 with a wrong one; the right token works and never reaches the CDN', async () => {
    const none = await gptune(['download', 'org/gated'], env());
    expect(none.code).toBe(2);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toMatch(/org\/gated is gated: .*set HF_TOKEN to a token with access \(none was sent\)/);
    const wrong = await gptune(['download', 'org/gated'], { ...env(), HF_TOKEN: 'hf_wrong' });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/the token in HF_TOKEN has no access/);
    hub.requests.length = 0;
    const right = await gptune(['download', 'org/gated'], { ...env(), HF_TOKEN: 'hf_secret' });
    expect(right.code).toBe(0);
    const toHub = hub.requests.filter((r) => !r.url.startsWith('/cdn/'));
    const toCdn = hub.requests.filter((r) => r.url.startsWith('/cdn/'));
    expect(toHub.every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    expect(toCdn.length).toBe(1);
    expect(toCdn[0].authorization).toBeUndefined();
  });

  test('every command that takes a model resolves a Hub id in it (--model, eval --compare), naming the flag; nothing is written', async () => {
    const work = tempDir('gptune-hub-commands-');
    const text = path.join(work, 'text.txt');
    fs.writeFileSync(text, 'some text to read\n');
    const out = path.join(work, 'out');
    const commands: Array<[string[], string]> = [
      [['eval', '--model', 'org/nope', '--data', text], '--model'],
      [['eval', '--model', modelDir, '--compare', 'org/nope', '--data', text], '--compare'],
      [['generate', '--model', 'org/nope', '--prompt', 'x'], '--model'],
      [['sample', '--model', 'org/nope', '--data', text, '--out', `${out}.md`], '--model'],
      [['chat', '--model', 'org/nope'], '--model'],
      [['merge', '--model', 'org/nope', '--adapter', work, '--out', out], '--model'],
      [['export', '--model', 'org/nope', '--format', 'gguf', '--out', `${out}.gguf`], '--model'],
      [['data', 'inspect', text, '--model', 'org/nope'], '--model'],
      [['train', '--model', 'org/nope', '--data', text, '--out', out, '--steps', '1'], '--model'],
    ];
    for (const [args, flag] of commands) {
      const r = await gptune(args, env());
      expect([args[0], r.code, r.stderr.trim().split('\n').length]).toEqual([args[0], 2, 1]);
      expect(r.stderr).toContain(`gptune ${args[0]}: ${flag} org/nope: not a local folder, and http://127.0.0.1:`);
    }
    expect(fs.readdirSync(work)).toEqual(['text.txt']);
  });

  test('connection refused with nothing cached', async () => {
    const r = await gptune(['download', 'org/tiny'], { ...env(), HF_ENDPOINT: refusing });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/org\/tiny: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); check the network or HF_ENDPOINT/);
  });

  test('a repository with only pytorch_model.bin is refused before anything is downloaded', async () => {
    const e = env();
    const r = await gptune([...GENERATE, '--model', 'org/pickle'], e);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model org\/pickle: the weights are only in pytorch_model\.bin; gptune reads safetensors/);
    expect(fs.existsSync(path.join(e.HF_HOME, 'hub', 'models--org--pickle', 'blobs'))).toBe(false);
  });

  test('a cache that cannot be written is a disk error naming it', async () => {
    const e = env();
    fs.writeFileSync(path.join(e.HF_HOME, 'hub'), 'a file where the cache folder should be');
    const r = await gptune(['download', 'org/tiny'], e);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot write the Hugging Face cache at .*hub.*set HF_HOME or HF_HUB_CACHE/);
  });
});

describe("a cache written in huggingface_hub's layout", () => {
  test('is reused: offline without a server, and online without downloading a file', async () => {
    const home = tempDir('gptune-hf-home-');
    const repoDir = path.join(home, 'hub', 'models--org--handmade');
    // As huggingface_hub writes it: blobs by etag, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/main = commit (no newline).
    fs.mkdirSync(path.join(repoDir, 'blobs'), { recursive: true });
    fs.mkdirSync(path.join(repoDir, 'snapshots', OTHER_COMMIT), { recursive: true });
    fs.mkdirSync(path.join(repoDir, 'refs'));
    fs.writeFileSync(path.join(repoDir, 'refs', 'main'), OTHER_COMMIT);
    for (const f of fs.readdirSync(modelDir)) {
      const bytes = fs.readFileSync(path.join(modelDir, f));
      const etag = f.endsWith('.safetensors') ? sha256(bytes) : gitBlobSha1(bytes);
      fs.writeFileSync(path.join(repoDir, 'blobs', etag), bytes);
      fs.symlinkSync(`../../blobs/${etag}`, path.join(repoDir, 'snapshots', OTHER_COMMIT, f));
    }
    const local = await gptune([...GENERATE, '--model', modelDir], {});
    const offline = await gptune([...GENERATE, '--model', 'org/handmade', '--offline'], { HF_HOME: home, HF_ENDPOINT: refusing });
    expect(offline.stderr).toBe('');
    expect(JSON.parse(offline.stdout).tokens).toEqual(JSON.parse(local.stdout).tokens);
    // HF_HUB_CACHE points at the hub folder directly (it overrides HF_HOME).
    hub.requests.length = 0;
    const online = await gptune([...GENERATE, '--model', 'org/handmade'], { HF_HUB_CACHE: path.join(home, 'hub'), HF_HOME: tempDir(), HF_ENDPOINT: endpoint });
    expect(online.code).toBe(0);
    expect(hub.requests.map((r) => r.url)).toEqual(['/api/models/org/handmade/revision/main']);
    expect(fs.readdirSync(path.join(repoDir, 'blobs')).length).toBe(fs.readdirSync(modelDir).length);
  });
});

describe('train --model org/name', () => {
  test('a LoRA run records the base as PEFT does (repo id + revision = the commit), its checkpoints pin org/tiny@<commit>, and --resume loads that base offline', async () => {
    const home = tempDir('gptune-hf-home-');
    const work = tempDir('gptune-hub-train-');
    const data = path.join(work, 'data.txt');
    fs.writeFileSync(data, 'the quick brown fox jumps over the lazy dog. '.repeat(40));
    const out = path.join(work, 'out');
    const args = ['train', '--model', 'org/tiny', '--data', data, '--out', out, '--steps', '2', '--batch-size', '2', '--seq-len', '16', '--save-every', '1', '--lora', '--quiet'];
    const r = await gptune(args, { HF_ENDPOINT: endpoint, HF_HOME: home });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const adapterConfig = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    expect(adapterConfig.base_model_name_or_path).toBe('org/tiny');
    expect(adapterConfig.revision).toBe(COMMIT);
    const checkpoint = path.join(out, 'checkpoints', 'step-1');
    expect(JSON.parse(fs.readFileSync(path.join(checkpoint, 'train_config.json'), 'utf8')).model).toBe(`org/tiny@${COMMIT}`);
    // Resuming needs the base again: from the cache, with the server unreachable.
    const resumed = await gptune(['train', '--resume', checkpoint, '--steps', '3', '--quiet', '--offline'], { HF_ENDPOINT: refusing, HF_HOME: home });
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout.trim().split('\n').pop()!).steps).toBe(3);
  });
});

describe('two processes downloading the same file (the .locks/ lock file)', () => {
  /** Every file under `dir`, relative, following no links. */
  function allFiles(dir: string, prefix = ''): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]));
  }

  test('started together on a slow link: one downloads, the other waits for it, one correct blob, no temporaries left', async () => {
    const home = tempDir('gptune-hf-home-');
    const env = { HF_ENDPOINT: endpoint, HF_HOME: home };
    const weights = fs.readFileSync(path.join(modelDir, 'model.safetensors'));
    const oid = sha256(weights);
    hub.slow = { sha256: oid, ms: 1500 };
    hub.requests.length = 0;
    let runs: Run[];
    try {
      runs = await Promise.all([gptune(['download', 'org/tiny'], env), gptune(['download', 'org/tiny'], env)]);
    } finally {
      hub.slow = null;
    }
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    const snapshot = path.join(home, 'hub', 'models--org--tiny', 'snapshots', COMMIT);
    expect(runs.map((r) => r.stdout.trim())).toEqual([snapshot, snapshot]);
    // The weights crossed the (slow) link once: the waiting process found them published.
    expect(hub.requests.filter((r) => r.method === 'GET' && r.url.startsWith(`/cdn/${oid}`))).toHaveLength(1);
    const waited = runs.filter((r) => /note: org\/tiny model\.safetensors: waiting for process \d+, which is downloading the same file \(lock .*\.locks\/models--org--tiny\/[0-9a-f]{64}\.lock\)/.test(r.stderr));
    expect(waited).toHaveLength(1);
    expect(fs.readFileSync(path.join(snapshot, 'model.safetensors')).equals(weights)).toBe(true);
    const left = allFiles(path.join(home, 'hub'));
    expect(left.filter((f) => /\.incomplete$|\.lock$|gptune-tmp|stale/.test(f))).toEqual([]);
    expect(left.filter((f) => f.includes('/blobs/'))).toHaveLength(fs.readdirSync(modelDir).length);
  });

  test('a lock left by a process that died is stale: removed, and the download goes ahead', async () => {
    const home = tempDir('gptune-hf-home-');
    const weights = fs.readFileSync(path.join(modelDir, 'model.safetensors'));
    const lock = path.join(home, 'hub', '.locks', 'models--org--tiny', `${sha256(weights)}.lock`);
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    const dead = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['-e', '']);
      child.on('exit', () => resolve(child.pid!));
    });
    fs.writeFileSync(lock, `${dead}\n`);
    const r = await gptune(['download', 'org/tiny'], { HF_ENDPOINT: endpoint, HF_HOME: home });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.existsSync(lock)).toBe(false);
    expect(fs.readFileSync(path.join(r.stdout.trim(), 'model.safetensors')).equals(weights)).toBe(true);
  });
});
