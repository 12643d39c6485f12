/** gptune merge: folds PEFT LoRA adapters into their base and writes a plain Hugging Face checkpoint. */
import { DeviceChoice } from '../../device';
import { contentsBytes } from '../../io/atomic';
import { checkSpace, planOutputFolder, claimOutputFolder } from '../../io/output';
import { parseShardSize } from '../../io/sharded';
import { loadAdapter, mergeAdapters, parseAdapterSpec } from '../../lora/apply';
import { MODEL_FILES, modelFolderFiles, writeModelFiles } from '../../model/checkpoint';
import { planMemory } from '../../model/decoder';
import { CardFacts } from '../../card/card';
import { CARD_FILES, folderFacts, readCardFacts, writeModelCard } from '../../card/folder';
import { COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openModel, HUB_FLAGS, out } from '../common';

export const mergeCommand: Command = {
  usage: 'gptune merge --model BASE_DIR|org/name[@revision] --adapter DIR|org/name[@revision][:WEIGHT] [--adapter ...] --out DIR [--save-dtype f32|bf16]',
  description:
    "Merges LoRA adapters (PEFT folders) into the base model's weights in float32, W += weight * scaling * B @ A " +
    '(transposed for GPT-2\'s Conv1D, as PEFT merges with fan_in_fan_out), and writes a plain Hugging Face model folder ' +
    'with the base\'s config and tokenizer files that any tool loads without PEFT. Modules the adapter trained in full ' +
    '(modules_to_save) replace the base\'s; a tied LM head the adapter trained unties the merged model (Llama family). ' +
    '--out must be new or empty, or a previous gptune merge output that --overwrite replaces.',
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'the base model folder the adapters were trained on; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    adapter: { type: 'strings', required: true, help: 'a PEFT adapter: a folder DIR or a Hugging Face id org/name[@revision] (adapter_config.json + adapter_model.safetensors, downloaded into the HF cache), with :WEIGHT to scale it; repeat to merge several' },
    out: { type: 'string', required: true, help: 'output model folder' },
    'save-dtype': { type: 'string', choices: ['f32', 'bf16'], default: 'f32', help: 'dtype of the merged weights' },
    'max-shard-size': { type: 'string', default: '5GB', help: 'shard the weights above this size (5GB, 500MB, or bytes), as save_pretrained' },
    overwrite: { type: 'bool', help: 'replace a previous gptune merge output in --out (only the files gptune wrote there)' },
    json: { type: 'bool', help: 'print the summary as JSON' },
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v) {
    const outDir = v.out as string;
    const maxShardSize = v['max-shard-size'] as string;
    parseShardSize(maxShardSize, '--max-shard-size');
    const adapters = (v.adapter as string[]).map(parseAdapterSpec);
    // Before anything loads: the output folder must be ours to write.
    const plan = planOutputFolder(outDir, {
      label: '--out', writer: 'gptune merge', mode: v.overwrite ? 'replace' : 'new', entries: [...MODEL_FILES, ...CARD_FILES], adoptUnlisted: false,
      replaceHint: 'add --overwrite to replace it',
    });
    const memory = memoryCheck(v, 'merging', (cfg) => {
      const parts = planMemory(cfg, { batch: null, training: false }).parts;
      // Encoding the merged weights holds a host copy of them (2x with bf16 rounding).
      return { ...parts, 'checkpoint writing': 2 * parts.parameters };
    }, 'the model size');
    let { model } = openModel(v.model as string, v.device as DeviceChoice, 0, memory, '--model');
    try {
      const merged = adapters.map((a) => ({ adapter: a.dir, weight: a.weight, modules: loadAdapter(model, a.dir, { weight: a.weight, label: '--adapter' }).modules.length }));
      model = mergeAdapters(model);
      const files = modelFolderFiles(model, plan.dir, { tokenizerFrom: v.model as string, dtype: v['save-dtype'] as 'f32' | 'bf16', maxShardSize });
      const bytes = Object.values(files).reduce((n, f) => n + contentsBytes(f), 0);
      checkSpace([{ target: plan.dir, label: '--out', bytes }]);
      const folder = claimOutputFolder(plan);
      folder.record(Object.keys(files));
      writeModelFiles(plan.dir, files);
      writeModelCard(plan.dir, mergedCardFacts(plan.dir, v.model as string, merged));
      const summary = { saved: outDir, model: v.model, adapters: merged, parameters: model.numParameters, tied_head: model.config.tiedHead };
      out(v.json ? JSON.stringify(summary) : `merged ${adapters.length} adapter(s) into ${v.model}: ${outDir} (${model.numParameters} parameters)`);
    } finally {
      model.free();
    }
  },
};

/**
 * The merged model's card: the base's license and architecture, the adapters merged, and what the
 * first adapter with a gptune card recorded of its training (data, hyperparameters, losses, audit,
 * evaluations and probe: the merged model computes the same function, up to float32 rounding).
 */
function mergedCardFacts(dir: string, base: string, merged: ReadonlyArray<{ adapter: string; weight: number }>): CardFacts {
  const own = folderFacts(dir, 'gptune merge', { spec: base, dir: base });
  const recorded = (adapter: string): CardFacts | null => {
    try {
      return readCardFacts(adapter);
    } catch {
      return null; // an unreadable record of the adapter's training leaves the card without it, not the merge failed
    }
  };
  const trained = merged.map((m) => recorded(m.adapter)).find((f) => f !== null) ?? null;
  const carried = trained === null ? {} : {
    base_model: trained.base_model ?? own.base_model, license: own.license ?? trained.license, training: trained.training, hyperparameters: trained.hyperparameters,
    results: trained.results, audit: trained.audit, evals: trained.evals, probe: trained.probe,
  };
  return { ...own, ...carried, merged_adapters: merged.map((m) => ({ adapter: m.adapter, weight: m.weight })) };
}
