/** gptune export: a model (adapters merged) or a LoRA adapter as a GGUF file for llama.cpp. */
import * as fs from 'fs';
import * as path from 'path';
import { DeviceChoice } from '../../device';
import { UsageError } from '../../errors';
import { GGUFPlan, writeGGUF, ggufFileBytes } from '../../gguf';
import { EXPORT_DTYPES, ExportDtype, planAdapterGGUF, planModelGGUF, WRITER_KEY } from '../../gguf/export';
import { checkOutputFile, checkSpace, formatBytes } from '../../io/output';
import { loadAdapter, mergeAdapters, parseAdapterSpec } from '../../lora/apply';
import { readAdapterFolder } from '../../lora/files';
import { loadModelConfig } from '../../model/config';
import { planMemory } from '../../model/decoder';
import { ffnInputWidth, qkvWidth } from '../../model/decoder_config';
import { snapshotModelId } from '../../hub/cache';
import { COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openModel, HUB_FLAGS, out } from '../common';

/** The summary table: one line per tensor (name, type, bytes), fallbacks named, and the file size. */
function report(plan: GGUFPlan, file: string, json: boolean, what: Record<string, unknown>): void {
  const bytes = fs.statSync(file).size;
  if (json) {
    out(JSON.stringify({ ...what, out: file, bytes, tensors: plan.summary }));
    return;
  }
  const width = Math.max(6, ...plan.summary.map((t) => t.name.length));
  out(`${'tensor'.padEnd(width)}  type  ${'bytes'.padStart(12)}`);
  for (const t of plan.summary) out(`${t.name.padEnd(width)}  ${t.type.padEnd(4)}  ${String(t.bytes).padStart(12)}${t.fallback ? `  (${t.fallback})` : ''}`);
  out(`wrote ${file}: ${plan.summary.length} tensors, ${formatBytes(bytes)}`);
}

/** general.name: the folder's name, or a Hub model's repository name (not its snapshot's commit). */
function modelName(dir: string): string {
  return path.basename(snapshotModelId(dir) ?? path.resolve(dir));
}

export const exportCommand: Command = {
  usage: 'gptune export --model DIR|org/name[@revision] [--adapter DIR[:WEIGHT] ...] [--adapter-only] --format gguf --dtype f32|f16|bf16|q8_0 --out FILE.gguf',
  description:
    'Writes a model as a GGUF file that llama.cpp (and node-llama-cpp, Ollama, LM Studio) runs: GPT-2 and the Llama family ' +
    '(llama, mistral, qwen2, qwen3), the tokenizer (byte-level BPE) and chat template included. With --adapter the PEFT ' +
    'adapters are merged into the weights first. With --adapter-only, the one --adapter is written as a LoRA adapter GGUF ' +
    'instead (llama.cpp --lora; --model names its base). Norms, biases and position embeddings stay F32; a weight whose rows ' +
    'do not split into Q8_0 blocks of 32 is written as F16, and the summary says so. --out is replaced only when gptune ' +
    'wrote it, or with --overwrite.',
  modelFlags: ['model'],
  flags: {
    model: { type: 'string', required: true, help: 'the model folder (with --adapter-only: the base the adapter was trained on); or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    adapter: { type: 'strings', help: 'a PEFT adapter folder: DIR, or DIR:WEIGHT to scale it; repeat to merge several' },
    'adapter-only': { type: 'bool', help: 'write the one --adapter as a LoRA adapter GGUF instead of merging it' },
    format: { type: 'string', choices: ['gguf'], required: true, help: 'output format' },
    dtype: { type: 'string', choices: EXPORT_DTYPES, default: 'f16', help: 'type of the 2-D weights (an adapter: f32, f16 or bf16)' },
    out: { type: 'string', required: true, help: 'the GGUF file to write' },
    overwrite: { type: 'bool', help: 'replace --out even if gptune did not write it' },
    json: { type: 'bool', help: 'print the summary as one JSON line' },
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v) {
    const file = v.out as string, dtype = v.dtype as ExportDtype;
    const adapters = ((v.adapter as string[] | undefined) ?? []).map(parseAdapterSpec);
    if (!fs.existsSync(path.dirname(path.resolve(file)))) throw new UsageError(`--out ${file}: folder ${path.dirname(path.resolve(file))} does not exist`);
    checkOutputFile(file, '--out', { overwrite: v.overwrite === true, isOwn: (head) => head.startsWith('GGUF') && head.includes(WRITER_KEY) });
    let plan: GGUFPlan;
    let what: Record<string, unknown>;
    if (v['adapter-only']) {
      if (adapters.length !== 1) throw new UsageError(`--adapter-only: expected exactly one --adapter but received ${adapters.length}`);
      if (adapters[0].weight !== 1) throw new UsageError(`--adapter ${adapters[0].dir}:${adapters[0].weight}: a weight does not go into an adapter GGUF (llama.cpp scales it: --lora-scaled FILE ${adapters[0].weight})`);
      if (dtype === 'q8_0') throw new UsageError('--dtype q8_0: an adapter GGUF is written as f32, f16 or bf16');
      const cfg = loadModelConfig(v.model as string);
      plan = planAdapterGGUF(cfg, readAdapterFolder(adapters[0].dir, cfg), dtype);
      what = { adapter: adapters[0].dir, model: v.model, dtype };
      checkSpace([{ target: path.dirname(path.resolve(file)), label: '--out', bytes: ggufFileBytes(plan.kv, plan.tensors) }]);
      writeGGUF(file, plan.kv, plan.tensors);
    } else {
      const memory = memoryCheck(v, 'exporting', (cfg) => {
        const parts = planMemory(cfg, { batch: null, training: false }).parts;
        // One tensor at a time is copied out of the model and encoded: at most the largest matrix, twice.
        const largest = cfg.width * Math.max(cfg.vocabSize, qkvWidth(cfg), ffnInputWidth(cfg));
        return { ...parts, 'tensor encoding': 2 * 4 * largest };
      }, 'the model size');
      const opened = openModel(v.model as string, v.device as DeviceChoice, 0, memory, '--model');
      let model = opened.model;
      try {
        for (const a of adapters) loadAdapter(model, a.dir, { weight: a.weight, label: '--adapter' });
        if (adapters.length > 0) model = mergeAdapters(model);
        plan = planModelGGUF(model, opened.tokenizer, opened.tokenizerDir, dtype, modelName(v.model as string));
        what = { model: v.model, adapters: adapters.map((a) => `${a.dir}:${a.weight}`), dtype, architecture: model.config.modelType };
        checkSpace([{ target: path.dirname(path.resolve(file)), label: '--out', bytes: ggufFileBytes(plan.kv, plan.tensors) }]);
        writeGGUF(file, plan.kv, plan.tensors);
      } finally {
        model.free();
      }
    }
    report(plan, file, v.json === true, what);
  },
};
