/**
 * A LoRA adapter's tensors in one arena, laid out for the decoder:
 *   <module>.lora_A.weight (r, in) and <module>.lora_B.weight (out, r) for every targeted module, in
 *   model order, then the full copies of the modules to save (<module>.weight, e.g. lm_head.weight).
 * Every tensor is a matrix and takes weight decay, so the arena is one AdamW region. The names are
 * PEFT's state-dict keys without the `base_model.model.` prefix (lib/lora/files.ts adds it on disk).
 */
import type { DeviceName } from '../native';
import type { DecoderConfig } from '../model/decoder_config';
import { Tensor, TensorArena, TensorSpec } from '../tensor';
import { Rng } from '../util/rng';
import {
  LinearModule, LinearRole, LoraSettings, loraScaling, matchModulesToSave, matchTargets, SavedModule, savedModuleKey,
} from './modules';

export interface AdapterModule extends LinearModule {
  A: Tensor;
  B: Tensor;
  /** Position among the adapter's modules (dropout streams and per-block buffers are numbered by it). */
  index: number;
  /** Position among the adapter's modules of the same layer. */
  slot: number;
}

/** Where the adapter's per-block buffers go: how many modules each layer has, and the rank. */
export interface AdapterShape {
  r: number;
  perLayer: number;
}

/** The per-block buffer shape of a rank-r adapter on `modules` (every layer has as many: targets match by name, not by layer). */
export function adapterShape(r: number, modules: readonly LinearModule[]): AdapterShape {
  return { r, perLayer: modules.filter((m) => m.layer === 0).length };
}

export function loraA(key: string): string {
  return `${key}.lora_A.weight`;
}

export function loraB(key: string): string {
  return `${key}.lora_B.weight`;
}

/** The tensor specs of an adapter for `cfg`, in arena order. */
export function adapterSpecs(cfg: DecoderConfig, settings: LoraSettings, labels: { targets?: string; modulesToSave?: string } = {}): {
  specs: TensorSpec[]; modules: LinearModule[]; saved: SavedModule[];
} {
  const modules = matchTargets(cfg, settings.targets, labels.targets);
  const saved = matchModulesToSave(cfg, settings.modulesToSave, labels.modulesToSave);
  const specs: TensorSpec[] = [];
  for (const m of modules) specs.push({ name: loraA(m.key), shape: [settings.r, m.inFeatures] }, { name: loraB(m.key), shape: [m.outFeatures, settings.r] });
  for (const s of saved) specs.push({ name: `${savedModuleKey(cfg, s)}.weight`, shape: [cfg.vocabSize, cfg.width] });
  return { specs, modules, saved };
}

export class LoraAdapter {
  readonly arena: TensorArena;
  readonly modules: AdapterModule[];
  readonly saved: Map<SavedModule, Tensor>;
  readonly scaling: number;
  /** Multiplies the adapter's update when several adapters are applied at once (1 = as trained). */
  weight = 1;
  private readonly byLayerRole = new Map<string, AdapterModule[]>();

  constructor(readonly config: DecoderConfig, readonly settings: LoraSettings, device: DeviceName, labels: { targets?: string; modulesToSave?: string } = {}) {
    const { specs, modules, saved } = adapterSpecs(config, settings, labels);
    this.arena = new TensorArena(device, specs);
    this.scaling = loraScaling(settings);
    const slots = new Map<number, number>();
    this.modules = modules.map((m, index) => {
      const slot = slots.get(m.layer) ?? 0;
      slots.set(m.layer, slot + 1);
      const am: AdapterModule = { ...m, A: this.arena.get(loraA(m.key)), B: this.arena.get(loraB(m.key)), index, slot };
      const key = `${m.layer}.${m.role}`;
      this.byLayerRole.set(key, [...(this.byLayerRole.get(key) ?? []), am]);
      return am;
    });
    this.saved = new Map(saved.map((s) => [s, this.arena.get(`${savedModuleKey(config, s)}.weight`)]));
  }

  /** The adapter's modules on layer l's matmul `role`. */
  on(l: number, role: LinearRole): readonly AdapterModule[] {
    return this.byLayerRole.get(`${l}.${role}`) ?? [];
  }

  /** Rank and modules per layer, for the per-block buffers. */
  get shape(): AdapterShape {
    return adapterShape(this.settings.r, this.modules);
  }

  /**
   * PEFT's initialisation (init_lora_weights=True): A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in),
   * 1/sqrt(in)), B = 0, so the adapted model starts equal to the base. Saved modules are copied from
   * the base by the decoder.
   */
  initPeft(seed: number): void {
    const rng = new Rng(seed);
    for (const m of this.modules) {
      const bound = 1 / Math.sqrt(m.inFeatures);
      const a = new Float32Array(m.A.numel);
      for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
      m.A.write(a);
      m.B.fill(0);
    }
  }

  /** Trainable parameters: the elements of every A, B and saved module. */
  get parameterCount(): number {
    let n = 0;
    for (const t of this.arena.tensors.values()) n += t.numel;
    return n;
  }

  /** Arena order: every tensor is a matrix (one weight-decay region). */
  get names(): string[] {
    return [...this.arena.tensors.keys()];
  }

  free(): void {
    this.arena.free();
  }
}
