/**
 * --adapter org/name[@revision][:WEIGHT]: a PEFT adapter repository on a Hub on 127.0.0.1 (fake_hub.ts,
 * the adapter of test/fixtures/lora-gpt2 in PEFT's layout) gives every command that takes --adapter
 * exactly what the same adapter folder gives; only adapter_config.json and adapter_model.safetensors
 * are downloaded, into the same cache as models, and are reused offline; a 404 names --adapter and the
 * repository on one line before anything is written; an adapter_model.bin is refused.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FIXTURES, tempDir, TINY } from '../helpers';
import { FakeHub, gptuneWithHub as gptune, repoFiles } from './fake_hub';

const LORA = path.join(FIXTURES, 'lora-gpt2');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const DATA = path.join(FIXTURES, 'eval-text.txt');
const GENERATE = ['generate', '--model', TINY, '--prompt', 'Hello', '--greedy', '--max-new-tokens', '8', '--no-eos-stop', '--json'];

let hub: FakeHub;
let endpoint: string;
let home: string;
let env: Record<string, string>;

beforeAll(async () => {
  hub = new FakeHub({
    'org/lora-gpt2': { commit: COMMIT, refs: { v1: COMMIT }, files: repoFiles(LORA, { 'adapter_model.bin': Buffer.from('a pickle gptune must not fetch') }) },
    'org/lora-pickle': { commit: COMMIT, files: { 'adapter_config.json': fs.readFileSync(path.join(LORA, 'adapter_config.json')), 'adapter_model.bin': Buffer.from('x') } },
  });
  endpoint = await hub.start();
  home = tempDir('gptune-hf-home-');
  env = { HF_ENDPOINT: endpoint, HF_HOME: home };
});

afterAll(async () => {
  await hub?.stop();
});

/** A --json result without its timing (which differs from run to run). */
function result(stdout: string): Record<string, unknown> {
  const { seconds: _, ...rest } = JSON.parse(stdout.trim().split('\n').pop()!);
  return rest;
}

/** The same command with `adapter` (a Hub id) and with `folder`: both succeed with the same --json result, which is returned. */
async function sameAsFolder(args: (adapter: string) => string[], hubEnv: Record<string, string>, adapter = 'org/lora-gpt2', folder = LORA): Promise<Record<string, unknown>> {
  const fromFolder = await gptune(args(folder), {});
  expect(fromFolder.stderr).toBe('');
  expect(fromFolder.code).toBe(0);
  const fromHub = await gptune(args(adapter), hubEnv);
  expect(fromHub.stderr).toBe('');
  expect(fromHub.code).toBe(0);
  expect(result(fromHub.stdout)).toEqual(result(fromFolder.stdout));
  return result(fromHub.stdout);
}

describe('--adapter org/name', () => {
  test('generate: downloads the two adapter files only, into the HF cache, and generates as the folder does', async () => {
    hub.requests.length = 0;
    await sameAsFolder((a) => [...GENERATE, '--adapter', a], env);
    const snapshot = path.join(home, 'hub', 'models--org--lora-gpt2', 'snapshots', COMMIT);
    expect(fs.readdirSync(snapshot).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(fs.readFileSync(path.join(snapshot, 'adapter_model.safetensors')).equals(fs.readFileSync(path.join(LORA, 'adapter_model.safetensors')))).toBe(true);
    expect(hub.requests.some((r) => r.url.includes('adapter_model.bin'))).toBe(false);
    expect(fs.readFileSync(path.join(home, 'hub', 'models--org--lora-gpt2', 'refs', 'main'), 'utf8')).toBe(COMMIT);
  });

  test('offline from the cache, at a revision and with a :WEIGHT, every command gives what the folder gives', async () => {
    const offline = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    hub.requests.length = 0;
    // A weight after the id; the revision pinned to the commit.
    await sameAsFolder((a) => [...GENERATE, '--adapter', a], offline, `org/lora-gpt2@${COMMIT}:0.5`, `${LORA}:0.5`);
    const evalArgs = (a: string) => ['eval', '--model', TINY, '--adapter', a, '--data', DATA, '--seq-len', '16', '--json'];
    const full = await sameAsFolder(evalArgs, offline);
    // The :WEIGHT reached the adapter: half of it is another model.
    const half = await sameAsFolder(evalArgs, offline, 'org/lora-gpt2:0.5', `${LORA}:0.5`);
    expect(half.loss).not.toBe(full.loss);
    const work = tempDir('gptune-hub-adapter-');
    // merge and export write files: the same bytes from the Hub id as from the folder.
    for (const [name, args] of [
      ['merge', (a: string, out: string) => ['merge', '--model', TINY, '--adapter', a, '--out', out]],
      ['export', (a: string, out: string) => ['export', '--model', TINY, '--adapter', a, '--adapter-only', '--format', 'gguf', '--dtype', 'f32', '--out', `${out}.gguf`]],
    ] as const) {
      const a = await gptune(args(LORA, path.join(work, `${name}-folder`)), {});
      const b = await gptune(args('org/lora-gpt2', path.join(work, `${name}-hub`)), offline);
      expect([name, a.code, b.code, b.stderr]).toEqual([name, 0, 0, '']);
    }
    expect(fs.readFileSync(path.join(work, 'merge-hub', 'model.safetensors')).equals(fs.readFileSync(path.join(work, 'merge-folder', 'model.safetensors')))).toBe(true);
    // general.name is the repository's name, not the snapshot's commit: lora-gpt2 both ways.
    expect(fs.readFileSync(path.join(work, 'export-hub.gguf')).equals(fs.readFileSync(path.join(work, 'export-folder.gguf')))).toBe(true);
    const review = path.join(work, 'review.jsonl');
    const s = await gptune(['sample', '--model', TINY, '--adapter', 'org/lora-gpt2', '--data', path.join(FIXTURES, 'eval', 'generate.jsonl'), '-n', '1', '--out', review], offline);
    expect([s.code, s.stderr]).toEqual([0, '']);
    expect(fs.existsSync(review)).toBe(true);
    // train --adapter continues the Hub adapter: the run starts from its weights.
    const trained = path.join(work, 'trained');
    const t = await gptune(['train', '--model', TINY, '--adapter', 'org/lora-gpt2', '--data', DATA, '--out', trained, '--steps', '1', '--batch-size', '2', '--seq-len', '16', '--quiet'], offline);
    expect([t.code, t.stderr]).toEqual([0, '']);
    expect(fs.readdirSync(trained)).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors']));
    expect(hub.requests).toEqual([]);
  });

  test('gptune download org/adapter fetches the adapter files', async () => {
    const fresh = { HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') };
    const r = await gptune(['download', 'org/lora-gpt2', '--json'], fresh);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ repo: 'org/lora-gpt2', commit: COMMIT, files: ['adapter_config.json', 'adapter_model.safetensors'] });
  });

  test('a repository that is not there: one line naming --adapter, exit 2, nothing written, for every command that takes --adapter', async () => {
    const work = tempDir('gptune-hub-adapter-');
    const out = path.join(work, 'out');
    const commands: string[][] = [
      ['generate', '--model', TINY, '--prompt', 'x'],
      ['eval', '--model', TINY, '--data', DATA],
      ['sample', '--model', TINY, '--data', DATA, '--out', `${out}.md`],
      ['chat', '--model', TINY],
      ['merge', '--model', TINY, '--out', out],
      ['export', '--model', TINY, '--format', 'gguf', '--out', `${out}.gguf`],
      ['train', '--model', TINY, '--data', DATA, '--out', out, '--steps', '1'],
    ];
    for (const args of commands) {
      const r = await gptune([...args, '--adapter', 'org/nope'], { HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') });
      expect([args[0], r.code, r.stderr.trim().split('\n').length]).toEqual([args[0], 2, 1]);
      expect(r.stderr).toContain(`gptune ${args[0]}: --adapter org/nope: not a local folder, and ${endpoint} has no model repository of that name`);
    }
    expect(fs.readdirSync(work)).toEqual([]);
  });

  test('an adapter whose weights are only adapter_model.bin is refused before anything is downloaded', async () => {
    const e = { HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') };
    const r = await gptune([...GENERATE, '--adapter', 'org/lora-pickle'], e);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--adapter org\/lora-pickle: the adapter's weights are only in adapter_model\.bin; gptune reads safetensors/);
    expect(fs.existsSync(path.join(e.HF_HOME, 'hub', 'models--org--lora-pickle', 'blobs'))).toBe(false);
  });
});
