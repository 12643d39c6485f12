/**
 * The LoRA fixtures (scripts/make_lora_fixtures.py) are well formed: adapter_config.json has every key PEFT
 * 0.20's save_pretrained writes, adapter_model.safetensors holds exactly the tensors PEFT would save for the
 * targets its config names (lora_A (r,in), lora_B (out,r) also for GPT-2's Conv1D, the saved head (V,C)),
 * and the references cover the same tensors. The merged weights are recomputed here in float64 from the
 * base and adapter files (W + scaling * B@A, transposed for Conv1D), a check of the Python merge by a second
 * implementation. Expectations come from PEFT's conventions (../shared/specs/lora-gguf-ddp.md §1), not from
 * gptune's LoRA code.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, readSafetensorsHeader, SafetensorsTensor, toFloat32 } from '../../lib/io/safetensors';
import { FIXTURES } from '../helpers';

const CASES = ['lora-gpt2', 'lora-llama', 'lora-qwen2'];
const PEFT = 'base_model.model.';
const IGNORE_INDEX = -100;

// asdict(LoraConfig) of PEFT 0.20.0 without runtime_config, plus PeftConfig's own fields.
const PEFT_CONFIG_KEYS = ['alora_invocation_tokens', 'alpha_pattern', 'arrow_config', 'auto_mapping',
  'base_model_name_or_path', 'bias', 'corda_config', 'ensure_weight_tying', 'eva_config', 'exclude_modules',
  'fan_in_fan_out', 'inference_mode', 'init_lora_weights', 'layer_replication', 'layers_pattern', 'layers_to_transform',
  'loftq_config', 'lora_alpha', 'lora_bias', 'lora_dropout', 'lora_ga_config', 'megatron_config', 'megatron_core',
  'modules_to_save', 'monteclora_config', 'peft_type', 'peft_version', 'qalora_group_size', 'r', 'rank_pattern',
  'revision', 'target_modules', 'target_parameters', 'task_type', 'trainable_token_indices', 'use_bdlora', 'use_dora',
  'use_qalora', 'use_rslora', 'velora_config'];

interface LoraRef {
  base: string; adapter: string; r: number; lora_alpha: number; use_rslora: boolean;
  B: number; T: number; tokens: number[]; targets: number[]; n_scored: number; loss: number; merged_loss: number;
  train_losses: number[]; scaling: Record<string, number>;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; decayed: string[] };
}

/** A linear layer of the base: its HF module key, checkpoint tensor name, (in, out), and layout. */
interface BaseLinear { key: string; tensor: string; nIn: number; nOut: number; conv1d: boolean }

/** Every Linear/Conv1D of the base checkpoint but the head, under Hugging Face's module keys. */
function baseLinears(base: Map<string, SafetensorsTensor>, modelType: string): BaseLinear[] {
  const out: BaseLinear[] = [];
  for (const [name, t] of base) {
    if (modelType === 'gpt2') {
      const m = /^(h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj))\.weight$/.exec(name);
      // Conv1D stores (in, out); GPT2LMHeadModel keeps the decoder under `transformer.`
      if (m) out.push({ key: `transformer.${m[1]}`, tensor: name, nIn: t.shape[0], nOut: t.shape[1], conv1d: true });
    } else {
      const m = /^(model\.layers\.\d+\.(self_attn|mlp)\.[a-z]+_proj)\.weight$/.exec(name);
      if (m) out.push({ key: m[1], tensor: name, nIn: t.shape[1], nOut: t.shape[0], conv1d: false });
    }
  }
  return out;
}

/** PEFT's list rule: a key matches an entry it equals or that it ends with after a dot. */
function matches(key: string, entries: string[]): boolean {
  return entries.some((e) => key === e || key.endsWith(`.${e}`));
}

function values(t: SafetensorsTensor): Float64Array {
  if (t.dtype === 'F64') return new Float64Array(new Uint8Array(t.data).buffer);
  return Float64Array.from(toFloat32(t));
}

describe.each(CASES)('%s fixture', (name) => {
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}-ref.json`), 'utf8')) as LoraRef;
  const config = JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'adapter_config.json'), 'utf8'));
  const baseDir = path.join(FIXTURES, '..', '..', config.base_model_name_or_path);
  const baseConfig = JSON.parse(fs.readFileSync(path.join(baseDir, 'config.json'), 'utf8'));
  const base = readSafetensors(path.join(baseDir, 'model.safetensors')).tensors;
  const adapter = readSafetensors(path.join(FIXTURES, name, 'adapter_model.safetensors'));
  const refTensors = readSafetensors(path.join(FIXTURES, `${name}-ref.safetensors`)).tensors;
  const linears = baseLinears(base, baseConfig.model_type);
  const targets = linears.filter((l) => matches(l.key, config.target_modules));
  const savesHead = (config.modules_to_save ?? []).includes('lm_head');

  test('adapter_config.json: every key PEFT 0.20 saves, values consistent with the reference', () => {
    expect(Object.keys(config).sort()).toEqual([...PEFT_CONFIG_KEYS].sort());
    expect(config).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', inference_mode: true, bias: 'none', lora_dropout: 0,
      r: ref.r, lora_alpha: ref.lora_alpha, use_rslora: ref.use_rslora, fan_in_fan_out: baseConfig.model_type === 'gpt2',
    });
    expect(path.resolve(baseDir)).toBe(path.resolve(FIXTURES, '..', '..', ref.base));
    // every entry names some module (PEFT refuses a target that matches nothing)
    for (const entry of config.target_modules) expect({ entry, found: linears.some((l) => matches(l.key, [entry])) }).toEqual({ entry, found: true });
    expect(targets.length).toBeGreaterThan(0);
  });

  test('adapter_model.safetensors: lora_A (r,in) and lora_B (out,r) for every target, the saved head, F32, format pt', () => {
    expect(adapter.metadata).toEqual({ format: 'pt' });
    const want = new Map<string, number[]>();
    for (const l of targets) {
      want.set(`${PEFT}${l.key}.lora_A.weight`, [ref.r, l.nIn]);
      want.set(`${PEFT}${l.key}.lora_B.weight`, [l.nOut, ref.r]);
    }
    if (savesHead) want.set(`${PEFT}lm_head.weight`, [baseConfig.vocab_size, baseConfig.hidden_size ?? baseConfig.n_embd]);
    expect(new Map([...adapter.tensors].map(([k, t]) => [k, t.shape]))).toEqual(want);
    expect(new Set([...adapter.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F32']));
    // B is deliberately not zero (scripts/README.md): every gradient is then non-trivial
    for (const l of targets) expect(Math.max(...toFloat32(adapter.tensors.get(`${PEFT}${l.key}.lora_B.weight`)!).map(Math.abs))).toBeGreaterThan(0);
  });

  test('references: batch, losses, scaling, a gradient and a final value for every adapter tensor', () => {
    const V = baseConfig.vocab_size;
    expect(ref.tokens).toHaveLength(ref.B * ref.T);
    expect(ref.targets).toHaveLength(ref.B * ref.T);
    expect(ref.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < V)).toBe(true);
    expect(ref.targets.every((t) => t === IGNORE_INDEX || (Number.isInteger(t) && t >= 0 && t < V))).toBe(true);
    expect(ref.targets.filter((t) => t !== IGNORE_INDEX)).toHaveLength(ref.n_scored);
    expect(ref.n_scored).toBeLessThan(ref.B * ref.T);
    expect(ref.train_losses).toHaveLength(5);
    expect(ref.train_losses[0]).toBe(ref.loss);
    expect(Math.abs(ref.merged_loss - ref.loss)).toBeLessThan(1e-12);
    const scaling = ref.use_rslora ? ref.lora_alpha / Math.sqrt(ref.r) : ref.lora_alpha / ref.r;
    expect(ref.scaling).toEqual(Object.fromEntries(targets.map((l) => [l.key, scaling])));
    for (const prefix of ['grad.', 'final.']) {
      const got = new Map([...refTensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
      expect([...got.keys()].sort()).toEqual([...adapter.tensors.keys()].sort());
      for (const [k, t] of got) expect({ k, dtype: t.dtype, shape: t.shape }).toEqual({ k, dtype: 'F64', shape: adapter.tensors.get(k)!.shape });
    }
    expect(ref.adamw.decayed.sort()).toEqual([...adapter.tensors.keys()].sort());
    expect(refTensors.get('logits')!.shape).toEqual([ref.B, ref.T, V]);
  });

  test('merged weights = base + scaling * B@A (Conv1D transposed), recomputed in float64', () => {
    const scaling = ref.use_rslora ? ref.lora_alpha / Math.sqrt(ref.r) : ref.lora_alpha / ref.r;
    const mergedNames = [...refTensors.keys()].filter((k) => k.startsWith('merged.')).map((k) => k.slice(7)).sort();
    expect(mergedNames).toEqual([...targets.map((l) => l.tensor), ...(savesHead ? ['lm_head.weight'] : [])].sort());
    let worst = 0;
    for (const l of targets) {
      const W = values(base.get(l.tensor)!);
      const A = values(adapter.tensors.get(`${PEFT}${l.key}.lora_A.weight`)!);   // (r, in)
      const Bm = values(adapter.tensors.get(`${PEFT}${l.key}.lora_B.weight`)!);  // (out, r)
      const merged = values(refTensors.get(`merged.${l.tensor}`)!);
      for (let o = 0; o < l.nOut; o++) {
        for (let i = 0; i < l.nIn; i++) {
          let delta = 0;
          for (let k = 0; k < ref.r; k++) delta += Bm[o * ref.r + k] * A[k * l.nIn + i];
          const at = l.conv1d ? i * l.nOut + o : o * l.nIn + i;   // Conv1D (in, out), Linear (out, in)
          const exact = W[at] + scaling * delta;
          // the file holds the float64 merge rounded to float32: half an ulp, plus float64 noise
          worst = Math.max(worst, Math.abs(merged[at] - exact) / (2 ** -24 * Math.abs(exact) + 1e-14));
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
    if (savesHead) expect(values(refTensors.get('merged.lm_head.weight')!)).toEqual(values(adapter.tensors.get(`${PEFT}lm_head.weight`)!));
  });
});
