/**
 * Using PEFT adapters with a loaded base: applying one or several (each with a weight) on top of the
 * model at run time, and merging them into the base's weights (what `gptune merge` saves, as PEFT's
 * merge_and_unload): W (out, in) += weight * scaling * B @ A on each module's rows of its packed
 * weight. GPT-2 stores Conv1D weights transposed on disk; checkpoint.ts transposes the merged (out, in)
 * weight back, which is PEFT's fan_in_fan_out transpose of the delta.
 */
import { UsageError } from '../errors';
import { Decoder, globalParamName, layerParamName } from '../model/decoder';
import { LoraAdapter } from './adapter';
import { readAdapterFolder } from './files';

export interface ApplyOptions {
  /** The adapter is the one trained (continued training, or a resumed run). */
  trainable?: boolean;
  /** Multiplies the adapter's update (several adapters at once); default 1. */
  weight?: number;
  /** Names the folder in messages (the flag). */
  label?: string;
}

/** Reads the PEFT adapter in `dir`, checks it against the model, and applies it. */
export function loadAdapter(model: Decoder, dir: string, options: ApplyOptions = {}): LoraAdapter {
  const folder = readAdapterFolder(dir, model.config, options.label);
  const weight = options.weight ?? 1;
  if (!Number.isFinite(weight)) throw new UsageError(`${options.label ?? '--adapter'} ${dir}: the weight must be a finite number but is ${weight}`);
  if (options.trainable && weight !== 1) throw new UsageError(`${options.label ?? '--adapter'} ${dir}: a trained adapter has weight 1`);
  const adapter = model.addAdapter(folder.settings, { trainable: options.trainable });
  adapter.weight = weight;
  for (const [name, data] of folder.tensors) adapter.arena.get(name).write(data);
  return adapter;
}

/**
 * Parses an `--adapter` value: "DIR" (weight 1) or "DIR:WEIGHT" when the part after the last colon
 * is a number, so folder names with colons still work.
 */
export function parseAdapterSpec(value: string): { dir: string; weight: number } {
  const m = /^(.*):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$/.exec(value);
  if (m && m[1] !== '') return { dir: m[1], weight: Number(m[2]) };
  return { dir: value, weight: 1 };
}

/**
 * Folds every applied adapter into the base's float32 weights and returns the merged model with no
 * adapters (the same object, or, when an adapter trained the LM head of a tied Llama-family model, a
 * new untied one; the old one is freed). Deltas are accumulated in float64 and added once.
 */
export function mergeAdapters(model: Decoder): Decoder {
  if (model.baseDtype !== 'f32') throw new UsageError(`merge: the base is stored as ${model.baseDtype}; load it as f32 to merge (--base-dtype f32)`);
  const cfg = model.config;
  for (const adapter of model.adapters) {
    const scale = adapter.scaling * adapter.weight, r = adapter.settings.r;
    for (const m of adapter.modules) {
      const name = layerParamName(cfg, m.layer, m.role);
      const W = model.params.get(name), w = W.read(), A = m.A.read(), B = m.B.read(), IN = m.inFeatures;
      const row = new Float64Array(IN);
      for (let o = 0; o < m.outFeatures; o++) {
        row.fill(0);
        for (let k = 0; k < r; k++) {
          const b = B[o * r + k];
          if (b === 0) continue;
          for (let c = 0; c < IN; c++) row[c] += b * A[k * IN + c];
        }
        const base = (m.offset + o) * IN;
        for (let c = 0; c < IN; c++) w[base + c] += scale * row[c];
      }
      W.write(w);
    }
  }
  const savedHead = model.adapterCopy('head')?.read() ?? null, savedEmbed = model.adapterCopy('embed')?.read() ?? null;
  let merged = model;
  if (cfg.tiedHead && (savedHead || savedEmbed)) {
    // PEFT trains a saved module as a copy: the tied twin keeps the base's weights, so the two part.
    if (cfg.modelType === 'gpt2') {
      throw new UsageError('merge: GPT-2 checkpoints tie the LM head to wte, so an adapter that trained lm_head or wte cannot be merged into one; apply it with --adapter instead');
    }
    merged = new Decoder({ ...cfg, tiedHead: false, json: { ...cfg.json, tie_word_embeddings: false } }, model.device, { eosTokenIds: model.eosTokenIds });
    for (const name of model.parameterNames) merged.setParameter(name, model.readParameter(name));
    merged.setParameter(globalParamName(cfg, 'head'), savedHead ?? model.readParameter(globalParamName(cfg, 'embed')));
  } else if (savedHead) {
    merged.setParameter(globalParamName(cfg, 'head'), savedHead);
  }
  if (savedEmbed) merged.setParameter(globalParamName(cfg, 'embed'), savedEmbed);
  if (merged !== model) model.free();
  else model.removeAdapters();
  return merged;
}
