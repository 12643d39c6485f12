/** gptune train: the Trainer (lib/train/trainer.ts) driven by a config file and flags. */
import * as path from 'path';
import {
  CONFIG_KEYS, CONFIG_SCHEMA, ConfigError, ConfigKey, FLAGS_SOURCE, loadConfigFile, resolveConfig, TrainConfig,
} from '../../config';
import { CONFIG_FILE, findResumableCheckpoint, readCheckpointConfig } from '../../train/checkpoint_state';
import { Trainer } from '../../train/trainer';
import { FlagSpec, UsageError } from '../args';
import { Command, out } from '../common';

/** One flag per config key, without defaults (so a flag that was not given does not override the file). */
function configFlags(): Record<string, FlagSpec> {
  const flags: Record<string, FlagSpec> = {};
  for (const key of CONFIG_KEYS) {
    const spec = CONFIG_SCHEMA[key];
    const d = spec.default;
    const shown = d === null || (Array.isArray(d) && d.length === 0) ? '' : ` [default ${JSON.stringify(d)}]`;
    flags[spec.flag] = { type: spec.type, choices: spec.choices, min: spec.min, help: `${spec.help}${shown}; config key ${key}` };
  }
  return flags;
}

const FLAG_TO_KEY = new Map<string, ConfigKey>(CONFIG_KEYS.map((k) => [CONFIG_SCHEMA[k].flag, k]));

export const trainCommand: Command = {
  usage: 'gptune train --model DIR|new:... --data FILE --out DIR2 [--steps N | --epochs E] [--config FILE.yaml] [options]',
  description:
    'Fine-tunes a GPT-2 on text (windows of T+1 tokens at stride T) or on the data formats of lib/data. ' +
    'AdamW with weight decay on 2D+ tensors only; optional validation every --eval-every steps with early stopping; ' +
    'resumable checkpoints in OUT/checkpoints (step-N, best, last; --resume DIR continues exactly). ' +
    'Every key of the config file has a flag; flags override the file. Logs one JSON line per step and evaluation to --log; ' +
    'OUT holds the best model (lowest validation loss; the last one without validation) in Hugging Face format at the end. ' +
    'OUT must be new or empty, or a previous gptune output (listed in its .gptune-output.json) that --overwrite replaces or --resume continues; ' +
    'a folder holding anything else is refused, and writability and free space are checked before training. ' +
    'Ctrl-C finishes the current step, writes OUT/checkpoints/last and exits with status 1.',
  flags: {
    config: { type: 'string', help: 'JSON or YAML file of config keys (see lib/config); flags override it' },
    ...configFlags(),
    quiet: { type: 'bool', help: 'no progress on stderr' },
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
        const dir = findResumableCheckpoint(resume);
        baseName = path.join(dir, CONFIG_FILE);
        base = readCheckpointConfig(dir) as Partial<TrainConfig>;
      }
      config = resolveConfig(fileConfig, overrides as Partial<TrainConfig>, {
        base, sources: { base: baseName, file: (v.config as string | undefined) ?? 'config file', overrides: FLAGS_SOURCE },
      });
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const outDir = config.output_dir!;
    const trainer = new Trainer(config, { progress: !v.quiet, handleSignals: true });
    let result;
    try {
      result = await trainer.fit();
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const { model } = result;
    const d = result.dataReport;
    const data = d && {
      kind: d.kind, train_rows: d.trainSplit.rows, validation_rows: d.validationSplit?.rows ?? 0,
      skipped_lines: d.skipped.length, truncated_examples: d.trainSplit.truncatedExamples,
    };
    const summary = {
      saved: result.reason === 'interrupted' ? null : outDir, steps: result.step, parameters: model.numParameters, reason: result.reason,
      val_loss: result.lastEval?.val_loss ?? null, best_val_loss: result.bestValLoss, best_step: result.bestStep, checkpoint: result.lastCheckpoint, data,
    };
    model.free();
    if (result.reason === 'interrupted') {
      const where = result.lastCheckpoint ? `; checkpoint written to ${result.lastCheckpoint} (continue with --resume ${result.lastCheckpoint})` : '';
      throw new Error(`interrupted by ${result.signal} after step ${result.step}${where}`);
    }
    out(JSON.stringify(summary));
  },
};
