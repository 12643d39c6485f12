/**
 * Sharded Hugging Face checkpoints (lib/io/sharded.ts) against the fixture tiny-llama-sharded, which
 * scripts/make_llama_fixtures.py splits as save_pretrained does (huggingface_hub's rule, max shard size
 * 91168 bytes, index written with json.dumps(indent=2, sort_keys=True)).
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeDirAtomic } from '../../lib/io/atomic';
import {
  checkpointFiles, findCheckpointFiles, INDEX_FILE, parseShardSize, planShards, readCheckpointTensors,
} from '../../lib/io/sharded';
import { Float32TensorToWrite, readSafetensors, toFloat32, writeSafetensors } from '../../lib/io/safetensors';
import { CheckpointError } from '../../lib/errors';
import { FIXTURES, tempDir } from '../helpers';

const SHARDED = path.join(FIXTURES, 'tiny-llama-sharded');
const SINGLE = path.join(FIXTURES, 'tiny-llama');
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
const FIXTURE_MAX_SHARD_BYTES = 91168;  // make_llama_fixtures.py: total // 2 + 1024

/** transformers' state-dict order for LlamaForCausalLM (module registration order), untied head. */
function llamaStateDictOrder(layers: number): string[] {
  const names = ['model.embed_tokens.weight'];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    names.push(...['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj',
      'mlp.up_proj', 'mlp.down_proj', 'input_layernorm', 'post_attention_layernorm'].map((m) => `${p}${m}.weight`));
  }
  return [...names, 'model.norm.weight', 'lm_head.weight'];
}

function tinyLlamaTensors(): Float32TensorToWrite[] {
  const st = readSafetensors(path.join(SINGLE, 'model.safetensors')).tensors;
  return llamaStateDictOrder(2).map((name) => ({ name, shape: st.get(name)!.shape, data: toFloat32(st.get(name)!) }));
}

const temporaryRoots: string[] = [];
afterAll(() => temporaryRoots.forEach((root) => fs.rmSync(root, { recursive: true, force: true })));

/** A writable copy of the sharded fixture, with `edit` applied to its folder. */
function brokenCopy(edit: (dir: string) => void): string {
  const root = tempDir('gptune-shard-');
  temporaryRoots.push(root);
  const dir = path.join(root, 'ckpt');
  fs.cpSync(SHARDED, dir, { recursive: true });
  edit(dir);
  return dir;
}

function editIndex(dir: string, change: (index: { metadata: Record<string, unknown>; weight_map: Record<string, string> }) => unknown): void {
  const file = path.join(dir, INDEX_FILE);
  const changed = change(JSON.parse(fs.readFileSync(file, 'utf8')));
  fs.writeFileSync(file, typeof changed === 'string' ? changed : JSON.stringify(changed));
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).not.toContain('\n');
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('reading a sharded checkpoint', () => {
  test('the shards give exactly tiny-llama\'s tensors, each from the shard the index names', () => {
    const index = JSON.parse(fs.readFileSync(path.join(SHARDED, INDEX_FILE), 'utf8'));
    const tensors = readCheckpointTensors(SHARDED);
    const whole = readSafetensors(path.join(SINGLE, 'model.safetensors')).tensors;
    expect([...tensors.keys()].sort()).toEqual([...whole.keys()].sort());
    for (const [name, t] of tensors) {
      expect(t.shape).toEqual(whole.get(name)!.shape);
      expect(Buffer.compare(t.data, whole.get(name)!.data)).toBe(0);
      expect(path.basename(t.file)).toBe(index.weight_map[name]);
    }
    expect(findCheckpointFiles(SHARDED).files.map((f) => path.basename(f))).toEqual([SHARD1, SHARD2]);
  });

  test('a single model.safetensors is read as one shard with no index', () => {
    const found = findCheckpointFiles(SINGLE);
    expect(found).toEqual({ files: [path.join(SINGLE, 'model.safetensors')] });
    expect(readCheckpointTensors(SINGLE).size).toBe(21);
  });
});

describe('writing a sharded checkpoint', () => {
  test('tiny-llama split at the fixture\'s size gives save_pretrained\'s index, byte for byte', () => {
    const files = checkpointFiles(tinyLlamaTensors(), 'out', FIXTURE_MAX_SHARD_BYTES);
    expect(Object.keys(files).sort()).toEqual([SHARD1, SHARD2, INDEX_FILE]);
    expect(files[INDEX_FILE]).toBe(fs.readFileSync(path.join(SHARDED, INDEX_FILE), 'utf8'));
  });

  test('round trip through writeDirAtomic: same tensors; one file and no index when it fits', () => {
    const tensors = tinyLlamaTensors();
    const root = tempDir('gptune-shard-');
    const sharded = path.join(root, 'sharded');
    writeDirAtomic(sharded, checkpointFiles(tensors, sharded, '40KB'));  // 40000-byte shards
    const names = fs.readdirSync(sharded).sort();
    expect(names).toContain(INDEX_FILE);
    const shardCount = names.length - 1;
    expect(shardCount).toBeGreaterThan(4);
    names.filter((n) => n !== INDEX_FILE).forEach((n, i) => {
      expect(n).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.safetensors`);
    });
    const index = JSON.parse(fs.readFileSync(path.join(sharded, INDEX_FILE), 'utf8'));
    expect(index.metadata).toEqual({ total_size: tensors.reduce((sum, t) => sum + 4 * t.data.length, 0) });
    const back = readCheckpointTensors(sharded);
    for (const t of tensors) {
      expect(back.get(t.name)!.shape).toEqual(t.shape);
      expect(Buffer.compare(back.get(t.name)!.data, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(0);
    }

    const single = path.join(root, 'single');
    writeDirAtomic(single, checkpointFiles(tensors, single));  // default "5GB"
    expect(fs.readdirSync(single)).toEqual(['model.safetensors']);
    expect(readSafetensors(path.join(single, 'model.safetensors')).metadata).toEqual({ format: 'pt' });
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('shard plan follows huggingface_hub: close a shard before it would overflow; a too-large tensor alone, at once', () => {
    expect(planShards([30, 20, 10, 40], 50)).toEqual([[0, 1], [2, 3]]);
    expect(planShards([30, 21], 50)).toEqual([[0], [1]]);
    expect(planShards([10, 100, 10, 10], 50)).toEqual([[1], [0, 2, 3]]);
    expect(planShards([], 50)).toEqual([[]]);
  });

  test('max shard sizes parse as transformers parses them', () => {
    expect(parseShardSize('5GB')).toBe(5e9);
    expect(parseShardSize('5GiB')).toBe(5 * 2 ** 30);
    expect(parseShardSize('200MB')).toBe(2e8);
    expect(parseShardSize('10kib')).toBe(10240);
    expect(parseShardSize('5Gb')).toBe(625e6);  // lowercase b: bits
    expect(parseShardSize('12345')).toBe(12345);
    expect(parseShardSize(4096)).toBe(4096);
    for (const bad of ['1.5GB', '5TB', '', 'GB', '0', '-1MB']) {
      expect(errorOf(() => parseShardSize(bad, '--max-shard-size')).message).toMatch(/^--max-shard-size: expected .* but received/);
    }
    expect(errorOf(() => parseShardSize(0.5)).message).toMatch(/received 0.5$/);
  });
});

describe('bad sharded checkpoints: one line naming the file and the key', () => {
  test('a missing shard', () => {
    const dir = brokenCopy((d) => fs.rmSync(path.join(d, SHARD2)));
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(
      `${path.join(dir, INDEX_FILE)}: shard "${SHARD2}" (holding "lm_head.weight") not found: ${path.join(dir, SHARD2)}`);
  });

  test('the index names a tensor its shard does not contain', () => {
    const dir = brokenCopy((d) => editIndex(d, (ix) => { ix.weight_map['model.extra.weight'] = SHARD1; return ix; }));
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(
      `${path.join(dir, SHARD1)}: has no tensor "model.extra.weight", which ${INDEX_FILE} maps to it`);
  });

  test('the index puts a tensor in the wrong shard', () => {
    const dir = brokenCopy((d) => editIndex(d, (ix) => { ix.weight_map['lm_head.weight'] = SHARD1; return ix; }));
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(
      `${path.join(dir, INDEX_FILE)}: weight_map puts "lm_head.weight" in ${SHARD1} but it is in ${SHARD2}`);
  });

  test('a shard holds a tensor the index does not list', () => {
    const dir = brokenCopy((d) => editIndex(d, (ix) => { delete ix.weight_map['model.norm.weight']; return ix; }));
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(
      `${path.join(dir, SHARD2)}: tensor "model.norm.weight" is not in ${INDEX_FILE}'s weight_map`);
  });

  test('a tensor in two shards', () => {
    const dir = brokenCopy((d) => {
      const shard1 = readSafetensors(path.join(d, SHARD1)).tensors;
      const tensors = [...shard1].map(([name, t]) => ({ name, shape: t.shape, data: toFloat32(t) }));
      tensors.push({ name: 'model.norm.weight', shape: [48], data: new Float32Array(48).fill(1) });
      fs.rmSync(path.join(d, SHARD1));
      writeSafetensors(path.join(d, SHARD1), tensors, { format: 'pt' });
    });
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(
      `${path.join(dir, SHARD2)}: tensor "model.norm.weight" is also in ${SHARD1} (a tensor must be in one shard)`);
  });

  test.each([
    ['not JSON', () => '{"weight_map": ', /: not valid JSON \(/],
    ['no weight_map', () => ({ metadata: { total_size: 1 } }), /: key "weight_map": expected an object of tensor name -> shard file but found nothing/],
    ['weight_map an array', () => ({ weight_map: [SHARD1] }), /: key "weight_map": expected an object/],
    ['empty weight_map', () => ({ weight_map: {} }), /: key "weight_map" is empty/],
    ['a shard outside the folder', () => ({ weight_map: { 'a.weight': `../${SHARD1}` } }),
      /: weight_map\["a.weight"\]: expected a shard file name beside the index but found "\.\.\/model-00001/],
    ['a shard that is not a string', () => ({ weight_map: { 'a.weight': 1 } }), /: weight_map\["a.weight"\]: expected a shard file name/],
    ['total_size a string', () => ({ metadata: { total_size: '180288' }, weight_map: { 'a.weight': SHARD1 } }),
      /: key "metadata.total_size": expected a non-negative integer but found "180288"/],
  ])('a malformed index: %s', (_what, content, message) => {
    const dir = brokenCopy((d) => editIndex(d, content));
    const err = errorOf(() => readCheckpointTensors(dir));
    expect(err.message.startsWith(`${path.join(dir, INDEX_FILE)}: `)).toBe(true);
    expect(err.message).toMatch(message);
  });

  test('a folder with neither model.safetensors nor an index', () => {
    const dir = tempDir('gptune-shard-');
    expect(errorOf(() => readCheckpointTensors(dir)).message).toBe(`${dir}: neither model.safetensors nor ${INDEX_FILE} found`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
