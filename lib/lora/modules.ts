/**
 * LoRA's vocabulary, as Hugging Face PEFT defines it: the settings of an adapter, the linear modules a
 * decoder has under their Hugging Face names, and how `target_modules` picks among them.
 *
 * gptune packs some of a family's linear layers into one matmul (lib/model/decoder.ts): the Llama
 * family's q_proj/k_proj/v_proj are the row blocks of one (QKV, C) weight and gate_proj/up_proj those
 * of one (2H, C) weight. A LoRA module is therefore a column slice [offset, offset + outFeatures) of a
 * packed matmul's output; GPT-2's modules each own their whole matmul. PEFT's adapter names and shapes
 * (A (r, in), B (out, r)) do not depend on this packing.
 */
import { UsageError } from '../errors';
import { attentionWidth, DecoderConfig, ffnInputWidth, qkvWidth } from '../model/decoder_config';

/** The linear weights of a block, as the decoder names their roles (lib/model/decoder.ts LayerRole). */
export type LinearRole = 'qkvw' | 'outw' | 'fcw' | 'projw';
export const LINEAR_ROLES: readonly LinearRole[] = ['qkvw', 'outw', 'fcw', 'projw'];

/** An adapter's hyperparameters (adapter_config.json's keys in camelCase). */
export interface LoraSettings {
  /** Rank r >= 1. */
  r: number;
  /** lora_alpha: the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA). */
  alpha: number;
  /** Dropout probability on the adapter's input (PEFT's lora_dropout), in [0, 1). */
  dropout: number;
  /** Module names as PEFT matches them, or 'all-linear'; null takes the family's default. */
  targets: readonly string[] | 'all-linear' | null;
  useRslora: boolean;
  /** Modules trained in full and saved with the adapter (lm_head, embed_tokens / wte). */
  modulesToSave: readonly string[];
}

export const LORA_DEFAULTS: LoraSettings = { r: 8, alpha: 16, dropout: 0.05, targets: null, useRslora: false, modulesToSave: [] };

/** PEFT's default target_modules per model_type (peft utils/constants.py). */
export function defaultTargets(cfg: DecoderConfig): string[] {
  return cfg.modelType === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj'];
}

/** scaling = alpha / r, or alpha / sqrt(r) with rsLoRA (peft tuners/lora/layer.py update_layer). */
export function loraScaling(s: Pick<LoraSettings, 'r' | 'alpha' | 'useRslora'>): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

/** One linear module of the model under its Hugging Face name. */
export interface LinearModule {
  /** The module's path in the Hugging Face model, e.g. "transformer.h.0.attn.c_attn", "model.layers.3.self_attn.q_proj". */
  key: string;
  layer: number;
  /** The decoder's matmul that computes it, and the columns of that matmul's output it owns. */
  role: LinearRole;
  offset: number;
  inFeatures: number;
  outFeatures: number;
  /** Width of the whole (packed) output row: the stride of the matmul's output. */
  rowWidth: number;
  /** GPT-2's Conv1D: stored (in, out) in checkpoints, so PEFT saves fan_in_fan_out = true. */
  conv1d: boolean;
}

/** Every linear module of the model except the LM head, in layer order. */
export function linearModules(cfg: DecoderConfig): LinearModule[] {
  const C = cfg.width, QKV = qkvWidth(cfg), AW = attentionWidth(cfg), FI = ffnInputWidth(cfg), H = cfg.ffnWidth;
  const out: LinearModule[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const add = (key: string, role: LinearRole, offset: number, inFeatures: number, outFeatures: number, rowWidth: number) =>
      out.push({ key, layer: l, role, offset, inFeatures, outFeatures, rowWidth, conv1d: cfg.modelType === 'gpt2' });
    if (cfg.modelType === 'gpt2') {
      const h = `transformer.h.${l}.`;
      add(`${h}attn.c_attn`, 'qkvw', 0, C, QKV, QKV);
      add(`${h}attn.c_proj`, 'outw', 0, AW, C, C);
      add(`${h}mlp.c_fc`, 'fcw', 0, C, FI, FI);
      add(`${h}mlp.c_proj`, 'projw', 0, H, C, C);
    } else {
      const h = `model.layers.${l}.`, q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim;
      add(`${h}self_attn.q_proj`, 'qkvw', 0, C, q, QKV);
      add(`${h}self_attn.k_proj`, 'qkvw', q, C, kv, QKV);
      add(`${h}self_attn.v_proj`, 'qkvw', q + kv, C, kv, QKV);
      add(`${h}self_attn.o_proj`, 'outw', 0, AW, C, C);
      add(`${h}mlp.gate_proj`, 'fcw', 0, C, H, FI);
      add(`${h}mlp.up_proj`, 'fcw', H, C, H, FI);
      add(`${h}mlp.down_proj`, 'projw', 0, H, C, C);
    }
  }
  return out;
}

/** PEFT's list matching (tuners_utils.py check_target_module_exists): equal, or ends with "." + name. */
export function keyMatches(key: string, name: string): boolean {
  return key === name || key.endsWith(`.${name}`);
}

/** The short names a user writes for the modules (c_attn, attn.c_proj, q_proj, ...), for messages. */
export function moduleNames(cfg: DecoderConfig): string[] {
  const layer0 = linearModules(cfg).filter((m) => m.layer === 0).map((m) => m.key.split('.'));
  const names = new Set(layer0.map((p) => p[p.length - 1]));
  // GPT-2's c_proj is in both attn and mlp: the two-part names pick one.
  if (cfg.modelType === 'gpt2') for (const p of layer0) names.add(p.slice(-2).join('.'));
  return [...names];
}

/**
 * The modules `targets` selects (PEFT semantics), in model order. A name that matches nothing, or a
 * target naming the LM head or an embedding, is a UsageError listing what exists; `label` names the
 * setting in messages (the flag or config key).
 */
export function matchTargets(cfg: DecoderConfig, targets: LoraSettings['targets'], label = 'lora_targets'): LinearModule[] {
  const all = linearModules(cfg);
  if (targets === 'all-linear') return all;
  const names = targets ?? defaultTargets(cfg);
  if (names.length === 0) throw new UsageError(`${label}: expected at least one module name (or all-linear)`);
  for (const name of names) {
    if (typeof name !== 'string' || name === '') throw new UsageError(`${label}: expected module names but received ${JSON.stringify(name)}`);
    if (keyMatches('lm_head', name) || /(^|\.)(wte|wpe|embed_tokens)$/.test(name)) {
      throw new UsageError(`${label}: ${name} is not a linear layer gptune can adapt (LoRA targets the blocks' linear layers); train it in full with lora_modules_to_save`);
    }
    if (!all.some((m) => keyMatches(m.key, name))) {
      throw new UsageError(`${label}: no module named ${name} in this ${cfg.modelType} model; its linear modules are ${moduleNames(cfg).join(', ')} (or all-linear)`);
    }
  }
  return all.filter((m) => names.some((n) => keyMatches(m.key, n)));
}

/** What a module-to-save is in the decoder: a trainable copy of the token embedding or of the LM head. */
export type SavedModule = 'embed' | 'head';

/** The Hugging Face module path of a saved module (its tensor is `<path>.weight`). */
export function savedModuleKey(cfg: DecoderConfig, which: SavedModule): string {
  if (which === 'head') return 'lm_head';
  return cfg.modelType === 'gpt2' ? 'transformer.wte' : 'model.embed_tokens';
}

/** modules_to_save names resolved to the decoder's modules (each at most once). */
export function matchModulesToSave(cfg: DecoderConfig, names: readonly string[], label = 'lora_modules_to_save'): SavedModule[] {
  const out = new Set<SavedModule>();
  for (const name of names) {
    const hit = (['embed', 'head'] as const).find((w) => keyMatches(savedModuleKey(cfg, w), name));
    if (!hit) {
      throw new UsageError(`${label}: gptune can train in full only the LM head (lm_head) or the token embedding (${savedModuleKey(cfg, 'embed').split('.').pop()}), not ${name}`);
    }
    out.add(hit);
  }
  return [...out];
}

/** Checks settings read from flags, a config file or adapter_config.json; `where` names the source. */
export function checkLoraSettings(s: LoraSettings, where: (key: string) => string): void {
  if (!Number.isInteger(s.r) || s.r < 1) throw new UsageError(`${where('r')}: expected a whole number >= 1 but received ${s.r}`);
  if (!Number.isFinite(s.alpha) || s.alpha <= 0) throw new UsageError(`${where('alpha')}: expected a number > 0 but received ${s.alpha}`);
  if (!(s.dropout >= 0 && s.dropout < 1)) throw new UsageError(`${where('dropout')}: expected a probability in [0, 1) but received ${s.dropout}`);
}
