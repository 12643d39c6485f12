/** gptune train: the Trainer (lib/train/trainer.ts) driven by a config file and flags. */
import * as path from 'path';
import {
  CONFIG_KEYS, CONFIG_SCHEMA, ConfigError, ConfigKey, FLAGS_SOURCE, loadConfigFile, resolveConfig, TrainConfig,
} from '../../config';
import { localAdapterFolder } from '../../hub';
import { CONFIG_FILE, findResumableCheckpoint, readCheckpointConfig } from '../../train/checkpoint_state';
import { finishJob, launcherRank } from '../../train/distributed';
import { resumeModelConflict, Trainer } from '../../train/trainer';
import { formatPresetShape, presetShapes } from '../../model/config';
import { FlagSpec, UsageError } from '../args';
import { Command, HUB_FLAGS, hubOptions, out } from '../common';

/** One flag per config key, without defaults (so a flag that was not given does not override the file). */
function configFlags(): Record<string, FlagSpec> {
  const flags: Record<string, FlagSpec> = {};
  for (const key of CONFIG_KEYS) {
    const spec = CONFIG_SCHEMA[key];
    const d = spec.default;
    const shown = d === null || (Array.isArray(d) && d.length === 0) ? '' : ` [default ${JSON.stringify(d)}]`;
    // The config key spelled as a flag (learning_rate -> --learning-rate) also works where the flag is shorter.
    const keyFlag = key.replace(/_/g, '-');
    const aliases = keyFlag === spec.flag ? undefined : [keyFlag];
    const withoutValue = spec.flagWithoutValue as string | number | undefined;
    flags[spec.flag] = { type: spec.type, choices: spec.choices, min: spec.min, aliases, withoutValue, help: `${spec.help}${shown}; config key ${key}` };
  }
  return flags;
}

/**
 * SIGINT/SIGTERM during fit(): the first finishes the current step and writes checkpoints/last
 * (the run ends 'interrupted'); a second one means "now": exit 130 at once, the last complete
 * checkpoint on disk stays valid.
 */
function stopOnFirstSignal(trainer: Trainer): { remove(): void } {
  let received: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received !== null) {
      process.stderr.write(`\n${signal} again: exiting without writing a checkpoint\n`);
      process.exit(130);
    }
    received = signal;
    trainer.stop(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    remove() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** What --model new:... takes: sizes as key=value, or a preset (each listed with its shape) and overrides. */
function freshModelHelp(): string {
  const presets = presetShapes();
  const width = Math.max(...presets.map((p) => `new:${p.name}`.length)) + 2;
  return [
    'Fresh models (random weights, GPT-2\'s tokenizer): --model new:KEY=VALUE,... sets GPT-2 sizes (n_layer, n_head, n_embd, n_positions, n_inner, vocab_size, ...; unset ones are GPT-2 124M\'s);',
    'new:arch=llama|mistral|qwen2|qwen3,KEY=VALUE,... builds that family (its config.json keys, or n_layer, n_head, n_kv_head, n_embd, n_positions);',
    'new:PRESET[,KEY=VALUE,...] starts from a published shape and changes the keys given (e.g. new:gpt2-medium,n_layer=4). Presets:',
    ...presets.map((p) => `  ${`new:${p.name}`.padEnd(width)}${p.modelType.padEnd(7)}${formatPresetShape(p)}`),
  ].join('\n');
}

const FLAG_TO_KEY = new Map<string, ConfigKey>(CONFIG_KEYS.map((k) => [CONFIG_SCHEMA[k].flag, k]));

export const trainCommand: Command = {
  usage: 'gptune train --model DIR|org/name[@revision]|new:... --data FILE --out DIR2 [--steps N | --epochs E] [--config FILE.yaml] [options]',
  description:
    'Fine-tunes a GPT-2 or Llama-family model on text or on examples. Text: a .txt file or a folder of them, cut into windows of T+1 tokens at stride T; examples: ' +
    'JSONL with {"prompt","completion"}, {"messages":[...]} (chat) or {"text","label"} (classification) per line, or a CSV with text and label columns; ' +
    'the tasks: {"context","question","answers"} (qa), {"tokens","tags"} or CoNLL-2003 columns (ner), {"source","target"} (translation, --source-lang/--target-lang name the languages), {"document","summary"} (summarization). ' +
    'Preference tuning: --method dpo or orpo on pairs (OpenAI\'s preference JSONL {"input","preferred_output","non_preferred_output"} or TRL\'s {"prompt","chosen","rejected"}), ' +
    'with --beta, --loss-type sigmoid|ipo|hinge, --label-smoothing, --precompute-ref (DPO) or --lambda (ORPO); logs rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies. ' +
    'AdamW with weight decay on 2D+ tensors only; optional validation every --eval-every steps with early stopping; ' +
    'resumable checkpoints in OUT/checkpoints (step-N, best, last; --resume DIR continues exactly). ' +
    'Every key of the config file has a flag; flags override the file. Logs one JSON line per step and evaluation to --log, and to OUT/metrics.jsonl beside ' +
    'OUT/report.html (the curves, best step and samples; gptune dashboard OUT serves them); --dashboard [PORT] serves them live while training; ' +
    'OUT holds the best model (lowest validation loss; the last one without validation) in Hugging Face format at the end. ' +
    'OUT must be new or empty, or a previous gptune output (listed in its .gptune-output.json) that --overwrite replaces or --resume continues; ' +
    'a folder holding anything else is refused, and writability and free space are checked before training. ' +
    'Ctrl-C finishes the current step, writes OUT/checkpoints/last and exits with status 1. ' +
    'A step whose loss or gradient norm is not finite is skipped (no update; a warning); --max-skipped-steps such steps in a row, ' +
    'or a loss more than --divergence-zscore standard deviations above the mean of the last 100 steps, stop the run as diverged: ' +
    'exit 1, no model written to OUT, the last good checkpoint named. A loss above 3 x ln(vocab_size) or 6 standard deviations warns. ' +
    'Before anything is allocated the run\'s memory (parameters, gradients, AdamW moments, activations and logits of one micro-batch, the host copies a save makes) ' +
    'is checked against the memory available (MemAvailable, the cgroup limit) or --max-memory.' +
    `\n\n${freshModelHelp()}`,
  flags: {
    config: { type: 'string', help: 'JSON or YAML file whose keys are the config keys named after each option below (e.g. learning_rate: 3e-4); flags override it' },
    ...configFlags(),
    quiet: { type: 'bool', help: 'no progress on stderr' },
    ...HUB_FLAGS,
    help: { type: 'bool', help: 'show this help' },
  },
  async run(v) {
    const overrides: Record<string, unknown> = {};
    for (const [flag, value] of Object.entries(v)) {
      const key = FLAG_TO_KEY.get(flag);
      if (key && value !== undefined) overrides[key] = value;
    }
    let config: TrainConfig;
    try {
      const fileConfig = v.config ? loadConfigFile(v.config as string) : {};
      // Resuming from the command line needs no flags but --resume: the checkpoint's own config is
      // the base layer, and the file and flags change what they name (e.g. a larger --steps).
      const resume = (overrides.resume_from ?? fileConfig.resume_from) as string | undefined;
      let base: Partial<TrainConfig> = {};
      let baseName = 'checkpoint config';
      if (resume) {
        const dir = findResumableCheckpoint(resume, '--resume');
        baseName = path.join(dir, CONFIG_FILE);
        base = readCheckpointConfig(dir) as Partial<TrainConfig>;
        // The checkpoint's own weights are what a resumed run trains; a different --model would be ignored.
        const model = (overrides.model ?? fileConfig.model) as string | undefined;
        const trained = model === undefined ? undefined : resumeModelConflict(dir, model);
        if (trained !== undefined) {
          const given = overrides.model !== undefined ? `--model ${model}` : `${v.config}: key 'model' (${model})`;
          throw new UsageError(`${given} conflicts with --resume ${resume}: that checkpoint continues a run of ${trained ?? 'another model'} and resuming loads its weights; drop ${overrides.model !== undefined ? '--model' : "'model'"}, or train ${model} without --resume`);
        }
      }
      config = resolveConfig(fileConfig, overrides as Partial<TrainConfig>, {
        base, sources: { base: baseName, file: (v.config as string | undefined) ?? 'config file', overrides: FLAGS_SOURCE },
      });
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const outDir = config.output_dir!;
    const hub = hubOptions(v);
    // An adapter named by its Hub id (flag or config file) trains from its snapshot folder.
    if (config.adapter !== null) config = { ...config, adapter: await localAdapterFolder(config.adapter, `--${CONFIG_SCHEMA.adapter.flag}`, hub) };
    const trainer = new Trainer(config, { progress: !v.quiet, nameKey: (key) => `--${CONFIG_SCHEMA[key].flag}`, hub: v.quiet ? { ...hub, onProgress: undefined } : hub });
    // Warnings are not progress: --quiet keeps them (the progress lines carry them otherwise).
    // (Under mpirun every rank sees the same warnings: rank 0 prints them.)
    if (v.quiet && (launcherRank() ?? 0) === 0) trainer.on('warning', (w) => process.stderr.write(`gptune train: warning: ${w.message}\n`));
    // Printed even with --quiet: the URL is the only way to the page (port 0 picks it at run time).
    trainer.on('dashboard', ({ url }) => process.stderr.write(`gptune train: dashboard at ${url}\n`));
    let result;
    const stopOnSignal = stopOnFirstSignal(trainer);
    try {
      result = await trainer.fit();
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    } finally {
      stopOnSignal.remove();
    }
    const { model } = result;
    const d = result.dataReport;
    const data = d && {
      kind: d.kind, train_rows: d.trainSplit.rows, validation_rows: d.validationSplit?.rows ?? 0,
      skipped_lines: d.skipped.length, truncated_examples: d.trainSplit.truncatedExamples,
    };
    const summary = {
      saved: result.reason === 'interrupted' || result.reason === 'diverged' ? null : outDir, steps: result.step, parameters: model.numParameters,
      trainable_parameters: model.trainingAdapter?.parameterCount ?? model.numParameters, reason: result.reason,
      val_loss: result.lastEval?.val_loss ?? null, best_val_loss: result.bestValLoss, best_step: result.bestStep, checkpoint: result.lastCheckpoint, data,
    };
    model.free();
    if (result.reason === 'diverged') {
      const good = result.lastGoodCheckpoint ? `; the last good checkpoint is ${result.lastGoodCheckpoint} (continue with --resume ${result.lastGoodCheckpoint} and a lower --lr)` : '';
      // Checkpoints from before the divergence keep the run's history and report.html beside them.
      throw new Error(`training diverged: ${result.divergence}; ${result.lastGoodCheckpoint ? 'no model' : 'nothing'} was written to ${outDir}${good}`);
    }
    if (result.reason === 'interrupted') {
      const where = result.lastCheckpoint ? `; checkpoint written to ${result.lastCheckpoint} (continue with --resume ${result.lastCheckpoint})` : '';
      throw new Error(`interrupted by ${result.signal} after step ${result.step}${where}`);
    }
    // Under mpirun rank 0 reports for the job; every rank then leaves MPI.
    if ((launcherRank() ?? 0) === 0) out(JSON.stringify(summary));
    finishJob();
  },
};
