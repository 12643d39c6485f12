/**
 * `gptune demo --base org/name --tiny`: the demo's whole study from a model served by a Hub on
 * 127.0.0.1 (test/hub/fake_hub.ts) instead of the built-in pretraining, for a tiny GPT-2 (a ChatML
 * byte-level tokenizer) and a tiny Llama (SentencePiece Llama 2 tokenizer: BOS added, EOS </s>; no
 * biases, RMSNorm, SwiGLU; a context of 64 tokens, shorter than the tiny preset's 96). The report names
 * the base by repository and commit and says its training cost is not the demo's; every run uses the
 * base's tokenizer and context; scratch is the base's architecture with fresh weights; a second run
 * works offline from the cache; a repository that is not there is one line before --out exists.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { readSafetensors } from '../../lib/io/safetensors';
import { saveModel } from '../../lib/model/checkpoint';
import { parseDecoderSpec, parseModelSpec } from '../../lib/model/config';
import { Decoder } from '../../lib/model/decoder';
import { FIXTURES, tempDir } from '../helpers';
import { FakeHub, gptuneWithHub as gptune, repoFiles } from '../hub/fake_hub';
import { provenanceProblems } from './provenance';

const COMMIT = '5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e';
const TOKENIZERS = path.join(FIXTURES, 'tokenizers');

interface Family {
  name: string;
  repo: string;
  spec: string;
  tokenizer: string;
  /** The tokenizer's end-of-sequence text: the separator of the domain text's documents. */
  eos: string;
  /** The sequence length every run must use: min(tiny preset's 96, the base's context). */
  seqLen: number;
}

const FAMILIES: Family[] = [
  { name: 'GPT-2', repo: 'org/tiny-gpt2', spec: 'new:n_layer=1,n_head=2,n_embd=16,n_positions=128,vocab_size=560', tokenizer: 'bytelevel-chatml', eos: '<|im_end|>', seqLen: 96 },
  {
    name: 'Llama', repo: 'org/tiny-llama', spec: 'new:arch=llama,n_layer=1,n_head=2,n_kv_head=1,n_embd=16,n_inner=32,n_positions=64,vocab_size=566,bos_token_id=1,eos_token_id=2',
    tokenizer: 'sentencepiece-llama2', eos: '</s>', seqLen: 64,
  },
];

const folders: Record<string, string> = {};
let hub: FakeHub;
let endpoint: string;
let refusing: string;

beforeAll(async () => {
  const root = tempDir('gptune-demo-base-models-');
  for (const f of FAMILIES) {
    const model = new Decoder(f.spec.includes('arch=') ? parseDecoderSpec(f.spec) : parseModelSpec(f.spec));
    model.initRandom(11);
    folders[f.repo] = path.join(root, f.tokenizer);
    saveModel(model, folders[f.repo], { tokenizerFrom: path.join(TOKENIZERS, f.tokenizer) });
    model.free();
  }
  hub = new FakeHub(Object.fromEntries(FAMILIES.map((f) => [f.repo, { commit: COMMIT, files: repoFiles(folders[f.repo]) }])));
  endpoint = await hub.start();
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  refusing = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

afterAll(async () => {
  await hub?.stop();
});

describe.each(FAMILIES)('gptune demo --base with a tiny $name from the Hub', (f) => {
  const home = tempDir('gptune-hf-home-');
  const out = path.join(tempDir('gptune-demo-base-'), 'out');
  let run: { code: number; stdout: string; stderr: string };
  let report: any;
  let markdown: string;

  beforeAll(async () => {
    hub.requests.length = 0;
    run = await gptune(['demo', '--base', f.repo, '--tiny', '--out', out, '--threads', '1', '--json'], { HF_ENDPOINT: endpoint, HF_HOME: home });
    if (run.code === 0) {
      report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
      markdown = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    }
  }, 300_000);

  test('finishes with a report that names the base (repository and commit) and says its training cost is not the demo\'s', () => {
    expect(run.stderr).toContain('[demo');
    expect(run.code).toBe(0);
    const headline = JSON.parse(run.stdout.trim().split('\n').pop()!);
    expect(headline.base).toEqual({ given: f.repo, repo_id: f.repo, commit: COMMIT });
    expect(report.base.source).toMatchObject({
      given: f.repo, repo_id: f.repo, revision: 'main', commit: COMMIT, downloaded: true,
      dir: path.join(home, 'hub', `models--${f.repo.replace('/', '--')}`, 'snapshots', COMMIT),
    });
    expect(report.base.source.training_cost).toMatch(/not in this report's compute figures/);
    expect(report.base.source.model_type).toBe(f.name === 'GPT-2' ? 'gpt2' : 'llama');
    expect(markdown).toContain(`\`${f.repo}\` from the Hugging Face Hub at commit \`${COMMIT}\``);
    expect(markdown).toContain("The base model's own pretraining happened before this demo, elsewhere: its cost is not in this report's compute figures");
    expect(provenanceProblems(markdown, report)).toEqual([]);
    // No pretraining run, no learned BPE; the base's cost is its download, not a training stage.
    expect(report.runs.pretrain).toBeUndefined();
    expect(report.tokenizer.merges).toBeUndefined();
    expect(report.compute[1]).toMatchObject({ stage: 'obtain the base (downloaded from the Hub)', train_tokens: 0 });
    expect(report.compute.filter((c: { stage: string }) => /pretrain/.test(c.stage))).toEqual([]);
    // Only the files gptune loads were fetched.
    expect(hub.requests.some((r) => /README|pytorch_model/.test(r.url))).toBe(false);
  });

  test("every run uses the base's tokenizer and context, scratch its architecture, the adapter records it as PEFT does", () => {
    const tokenizerFiles = fs.readdirSync(folders[f.repo]).filter((n) => n !== 'config.json' && n !== 'model.safetensors').sort();
    for (const m of ['base', 'task', 'domain', 'combined', 'scratch', 'task_few', 'scratch_few', 'subject']) {
      const files = fs.readdirSync(path.join(out, 'models', m)).sort();
      const card = m === 'base' ? [] : ['README.md', 'gptune_card.json'];
      expect([m, files]).toEqual([m, [...card, 'config.json', 'model.safetensors', ...tokenizerFiles].sort()]);
      for (const t of tokenizerFiles) expect(fs.readFileSync(path.join(out, 'models', m, t)).equals(fs.readFileSync(path.join(folders[f.repo], t)))).toBe(true);
    }
    for (const [name, run] of Object.entries<any>(report.runs)) expect([name, run.seq_len]).toEqual([name, f.seqLen]);
    expect(report.settings.model.n_positions).toBe(f.seqLen);
    // The examples were cut to fit that context with the tokenizer's BOS and EOS: nothing was truncated.
    for (const name of ['task', 'task_few', 'subject', 'scratch']) expect([name, report.runs[name].truncated_examples]).toEqual([name, 0]);
    // The augmentation study fine-tunes this base too (GPT-2 and Llama): three arms of task_few's step count.
    expect(report.augmentation.arms.map((a: any) => [a.name, a.run.steps])).toEqual(['eda', 'noise', 'balance'].map((n) => [n, report.runs.task_few.steps]));
    // Documents of the domain text are separated by the base's own EOS text.
    const domain = fs.readFileSync(path.join(out, 'data', 'domain-train.txt'), 'utf8');
    expect(domain.split(f.eos)).toHaveLength(report.data.emails.train.used);
    // Scratch: the base's config, other weights.
    const baseConfig = JSON.parse(fs.readFileSync(path.join(folders[f.repo], 'config.json'), 'utf8'));
    const scratchConfig = JSON.parse(fs.readFileSync(path.join(out, 'models', 'scratch', 'config.json'), 'utf8'));
    for (const key of ['model_type', 'vocab_size', f.name === 'GPT-2' ? 'n_layer' : 'num_hidden_layers', f.name === 'GPT-2' ? 'n_embd' : 'hidden_size']) {
      expect([key, scratchConfig[key]]).toEqual([key, baseConfig[key]]);
    }
    const baseWeights = readSafetensors(path.join(folders[f.repo], 'model.safetensors'));
    const scratchWeights = readSafetensors(path.join(out, 'models', 'scratch', 'model.safetensors'));
    expect([...scratchWeights.tensors.keys()].sort()).toEqual([...baseWeights.tensors.keys()].sort());
    const name = [...baseWeights.tensors.keys()].find((k) => /embed_tokens|wte/.test(k))!;
    expect(Buffer.from(scratchWeights.tensors.get(name)!.data.buffer).equals(Buffer.from(baseWeights.tensors.get(name)!.data.buffer))).toBe(false);
    const adapterConfig = JSON.parse(fs.readFileSync(path.join(out, 'models', 'task_lora', 'adapter_config.json'), 'utf8'));
    expect(adapterConfig.base_model_name_or_path).toBe(f.repo);
    expect(adapterConfig.revision).toBe(COMMIT);
  });

  test('runs again offline from the Hugging Face cache (HF_HUB_OFFLINE=1, the Hub unreachable)', async () => {
    hub.requests.length = 0;
    const again = await gptune(['demo', '--base', f.repo, '--tiny', '--out', out, '--threads', '1', '--json', '--quiet'], { HF_ENDPOINT: refusing, HF_HOME: home, HF_HUB_OFFLINE: '1' });
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    const second = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(second.base.source).toMatchObject({ repo_id: f.repo, commit: COMMIT, downloaded: false });
    expect(second.compute[1].stage).toBe('obtain the base (from the Hugging Face cache)');
    // The same seed, data and base: the same test predictions.
    expect(second.classification).toEqual(expect.objectContaining({ task: expect.objectContaining({ confusion: report.classification.task.confusion }) }));
    expect(hub.requests).toEqual([]);
  }, 300_000);
});

test('a --base the Hub does not have is one line naming it, exit 2, before --out is created', async () => {
  const out = path.join(tempDir('gptune-demo-base-'), 'out');
  const r = await gptune(['demo', '--base', 'org/nope', '--tiny', '--out', out], { HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') });
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain(`gptune demo: --base org/nope: not a local folder, and ${endpoint} has no model repository of that name`);
  expect(fs.existsSync(out)).toBe(false);
});

test('--base with the options of the demo\'s own base cache is refused', async () => {
  const out = path.join(tempDir('gptune-demo-base-'), 'out');
  const r = await gptune(['demo', '--base', 'org/tiny-gpt2', '--tiny', '--no-cache', '--out', out], { HF_ENDPOINT: endpoint, HF_HOME: tempDir('gptune-hf-home-') });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--base org\/tiny-gpt2: --no-cache is about the demo's own pretrained base, which --base replaces/);
  expect(fs.existsSync(out)).toBe(false);
});

test('--base DIR: a model folder, named by its path in the report', async () => {
  const out = path.join(tempDir('gptune-demo-base-'), 'out');
  const dir = folders['org/tiny-llama'];
  const r = await gptune(['demo', '--base', dir, '--tiny', '--out', out, '--threads', '1', '--quiet'], {});
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  expect(report.base.source).toMatchObject({ given: dir, repo_id: null, commit: null, dir, model_type: 'llama', downloaded: false });
  expect(report.compute[1].stage).toBe('obtain the base (a local folder)');
  const markdown = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  expect(markdown).toContain(`the folder \`${dir}\``);
  expect(provenanceProblems(markdown, report)).toEqual([]);
}, 300_000);
