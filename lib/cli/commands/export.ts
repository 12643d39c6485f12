/** gptune export: a model (adapters merged) or a LoRA adapter as a GGUF file for llama.cpp. */
import * as fs from 'fs';
import * as path from 'path';
import { DeviceChoice } from '../../device';
import { UsageError } from '../../errors';
import { GGUFPlan, writeGGUF, ggufFileBytes } from '../../gguf';
import { EXPORT_DTYPES, ExportDtype, FLOAT_DTYPES, FloatDtype, planAdapterGGUF, planModelGGUF, WRITER_KEY } from '../../gguf/export';
import { loadGGUFModel } from '../../gguf/load';
import {
  builtInHeldOutFile, CostRow, DEFAULT_EVAL_TOKENS, evalSeqLen, ExportCost, exportCost, formatCost, heldOutTokens, scoreModel,
} from '../../gguf/measure';
import { checkOutputFile, checkSpace, formatBytes } from '../../io/output';
import { loadAdapter, mergeAdapters, parseAdapterSpec } from '../../lora/apply';
import { readAdapterFolder } from '../../lora/files';
import { loadModelConfig } from '../../model/config';
import { planMemory } from '../../model/decoder';
import { contextLength, ffnInputWidth, qkvWidth } from '../../model/decoder_config';
import { snapshotModelId } from '../../hub/cache';
import { COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openModel, HUB_FLAGS, out, readTextFile } from '../common';

/**
 * The summary: one line per tensor (name, type, bytes), each type fallback and each note on what
 * llama.cpp does differently on a line of its own, the file size, and the measured cost when there is one.
 */
function report(plan: GGUFPlan, file: string, json: boolean, what: Record<string, unknown>, cost: ExportCost | null): void {
  const bytes = fs.statSync(file).size;
  if (json) {
    out(JSON.stringify({ ...what, out: file, bytes, tensors: plan.summary, ...(plan.notes.length > 0 ? { notes: plan.notes } : {}), ...(cost ? { measured: cost } : {}) }));
    return;
  }
  const width = Math.max(6, ...plan.summary.map((t) => t.name.length));
  out(`${'tensor'.padEnd(width)}  type  ${'bytes'.padStart(12)}`);
  for (const t of plan.summary) out(`${t.name.padEnd(width)}  ${t.type.padEnd(4)}  ${String(t.bytes).padStart(12)}`);
  for (const t of plan.summary) if (t.fallback) out(t.fallback);
  for (const note of plan.notes) out(note);
  out(`wrote ${file}: ${plan.summary.length} tensors, ${formatBytes(bytes)}`);
  if (cost) for (const line of formatCost(cost)) out(line);
}

/** The held-out text to measure on: --eval-data, or the built-in text (read before any long work, so a bad file fails first). */
function heldOutText(v: Record<string, unknown>): { text: string; source: string } {
  const file = (v['eval-data'] as string | undefined) ?? builtInHeldOutFile();
  return { text: readTextFile(file, '--eval-data'), source: file };
}

/** general.name: the folder's name, or a Hub model's repository name (not its snapshot's commit). */
function modelName(dir: string): string {
  return path.basename(snapshotModelId(dir) ?? path.resolve(dir));
}

export const exportCommand: Command = {
  usage: 'gptune export --model DIR|org/name[@revision] [--adapter DIR|org/name[@revision][:WEIGHT] ...] [--adapter-only] --format gguf --dtype f32|f16|bf16|q8_0|q4_0|q4_k_m --out FILE.gguf [--eval-data FILE] [--eval-tokens N] [--no-measure]',
  description:
    'Writes a model as a GGUF file that llama.cpp (and node-llama-cpp, Ollama, LM Studio) runs: GPT-2 and the Llama family ' +
    '(llama, mistral, qwen2, qwen3), the tokenizer (byte-level BPE) and chat template included. With --adapter the PEFT ' +
    'adapters are merged into the weights first. With --adapter-only, the one --adapter is written as a LoRA adapter GGUF ' +
    'instead (llama.cpp --lora; --model names its base). Norms, biases and position embeddings stay F32. q8_0, q4_0 and ' +
    "q4_k_m give each weight the type llama.cpp's llama-quantize gives it (Q4_K_M: Q6_K for the head and for attn_v/ffn_down " +
    'on some layers, Q5_K for the other attn_v of a 70B-type model), falling back to a type with smaller blocks (or F16) where its rows do not split into the blocks, and ' +
    'saying so. Every model export measures its cost: perplexity and next-token accuracy of the source model and of the ' +
    'written file loaded back, on --eval-data (plain text) or the held-out text that ships with gptune. --out is replaced ' +
    'only when gptune wrote it, or with --overwrite.',
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'the model folder (with --adapter-only: the base the adapter was trained on); or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    adapter: { type: 'strings', help: 'a PEFT adapter: a folder DIR or a Hugging Face id org/name[@revision] (adapter_config.json + adapter_model.safetensors, downloaded into the HF cache), with :WEIGHT to scale it; repeat to merge several' },
    'adapter-only': { type: 'bool', help: 'write the one --adapter as a LoRA adapter GGUF instead of merging it' },
    format: { type: 'string', choices: ['gguf'], required: true, help: 'output format' },
    dtype: { type: 'string', choices: EXPORT_DTYPES, default: 'f16', help: "type of the 2-D weights, or llama.cpp's quantization mix (an adapter: f32, f16 or bf16)" },
    out: { type: 'string', required: true, help: 'the GGUF file to write' },
    overwrite: { type: 'bool', help: 'replace --out even if gptune did not write it' },
    json: { type: 'bool', help: 'print the summary as one JSON line' },
    measure: { type: 'bool', default: true, help: 'measure perplexity and token accuracy before and after (--no-measure skips it)' },
    'eval-data': { type: 'string', help: 'plain text to measure on (default: the held-out text that ships with gptune)' },
    'eval-tokens': { type: 'int', min: 2, default: DEFAULT_EVAL_TOKENS, help: 'measure on at most this many tokens of it' },
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
    let cost: ExportCost | null = null;
    if (v['adapter-only']) {
      if (adapters.length !== 1) throw new UsageError(`--adapter-only: expected exactly one --adapter but received ${adapters.length}`);
      if (v['eval-data'] !== undefined) throw new UsageError('--eval-data: --adapter-only writes no model to measure (export the model with --adapter to measure the merged weights)');
      if (adapters[0].weight !== 1) throw new UsageError(`--adapter ${adapters[0].dir}:${adapters[0].weight}: a weight does not go into an adapter GGUF (llama.cpp scales it: --lora-scaled FILE ${adapters[0].weight})`);
      if (!(FLOAT_DTYPES as readonly string[]).includes(dtype)) throw new UsageError(`--dtype ${dtype}: an adapter GGUF is written as f32, f16 or bf16`);
      const cfg = loadModelConfig(v.model as string);
      plan = planAdapterGGUF(cfg, readAdapterFolder(adapters[0].dir, cfg), dtype as FloatDtype);
      // An adapter from the Hub is named by its repository, as a model is, not by its snapshot's commit.
      plan.kv.set('general.name', { type: 'string', value: modelName(adapters[0].dir) });
      what = { adapter: adapters[0].dir, model: v.model, dtype };
      checkSpace([{ target: path.dirname(path.resolve(file)), label: '--out', bytes: ggufFileBytes(plan.kv, plan.tensors), shown: file }]);
      writeGGUF(file, plan.kv, plan.tensors);
    } else {
      const measure = v.measure !== false;
      const evalText = measure ? heldOutText(v) : null;
      const memory = memoryCheck(v, 'exporting', (cfg) => {
        // Measuring runs one chunk at a time (scoreModel: batch 1).
        const parts = planMemory(cfg, { batch: measure ? { B: 1, T: evalSeqLen(contextLength(cfg)) } : null, training: false }).parts;
        // One tensor at a time is copied out of the model and encoded: at most the largest matrix, twice.
        const largest = cfg.width * Math.max(cfg.vocabSize, qkvWidth(cfg), ffnInputWidth(cfg));
        return { ...parts, 'tensor encoding': 2 * 4 * largest };
      }, 'the model size');
      const opened = openModel(v.model as string, v.device as DeviceChoice, 0, memory, '--model');
      let model = opened.model;
      let held: Int32Array | null = null;
      let source: CostRow | null = null;
      try {
        for (const a of adapters) loadAdapter(model, a.dir, { weight: a.weight, label: '--adapter' });
        if (adapters.length > 0) model = mergeAdapters(model);
        const name = modelName(v.model as string);
        plan = planModelGGUF(model, opened.tokenizer, opened.tokenizerDir, dtype, name);
        what = { model: v.model, adapters: adapters.map((a) => `${a.dir}:${a.weight}`), dtype, architecture: model.config.modelType };
        checkSpace([{ target: path.dirname(path.resolve(file)), label: '--out', bytes: ggufFileBytes(plan.kv, plan.tensors), shown: file }]);
        if (evalText) {
          // The source is scored before anything is written, so the model is held once, not beside its reloaded copy.
          const label = v['eval-data'] !== undefined ? `--eval-data ${evalText.source}` : evalText.source;
          held = heldOutTokens(opened.tokenizer, evalText.text, v['eval-tokens'] as number, label);
          const f32 = planModelGGUF(model, opened.tokenizer, opened.tokenizerDir, 'f32', name);
          source = { dtype: 'f32 (source)', bytes: ggufFileBytes(f32.kv, f32.tensors), ...scoreModel(model, held) };
        }
        writeGGUF(file, plan.kv, plan.tensors);
      } finally {
        model.free();
      }
      if (evalText && held && source) {
        const loaded = loadGGUFModel(file, { device: opened.model.device });
        try {
          const exported = { dtype, bytes: fs.statSync(file).size, ...scoreModel(loaded.model, held) };
          cost = exportCost(evalText.source, evalSeqLen(loaded.model.contextLength), source, exported);
        } finally {
          loaded.model.free();
        }
      }
    }
    report(plan, file, v.json === true, what, cost);
  },
};
