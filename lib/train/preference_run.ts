/**
 * What the Trainer needs for `method: dpo | orpo` (lib/train/preference.ts holds the losses): the pairs
 * from the data files, the reference model and the objective, and the log lines' extra fields. The
 * reference is the starting model, frozen:
 *
 *   LoRA              the trained model with its adapter switched off (no second copy of the weights)
 *   full fine-tuning  a copy of the weights before the first step (a second Decoder without gradients);
 *                     a resumed run loads the starting model again (config model), not the checkpoint
 *   precompute_ref    either of those run once over every training and validation pair before the first
 *                     step, then a table (a full copy is freed); under several ranks each computes its
 *                     share of the training pairs (the table is summed over the ranks) and of the
 *                     validation batches (the ones its replicas evaluate); the table is host data, so
 *                     the replicas of one process share it (replica 0's reference computes it)
 *
 * With several replicas in one process (devices 0,1) each has its own reference: its frozen copy on its
 * device, or itself with the adapter off.
 *
 * ORPO has no reference.
 */
import { buildPreferenceDatasets, DataReport, pairValidationBatches } from '../data';
import type { Batch, BatchSource } from '../data/types';
import type { TrainConfig } from '../config';
import { Decoder } from '../model/decoder';
import type { Tokenizer } from '../tokenizer';
import {
  AdapterOffReference, FrozenReference, ONE_PROCESS, PrecomputedReference, PreferenceMetrics, PreferenceObjective, PreferenceSettings, RankGroup,
  ReferenceModel,
} from './preference';

export function preferenceSettings(c: TrainConfig): PreferenceSettings | null {
  if (c.method === 'sft') return null;
  return { method: c.method, beta: c.beta, lossType: c.loss_type, labelSmoothing: c.label_smoothing, lambda: c.orpo_lambda };
}

export interface PreferenceData {
  train: BatchSource;
  validation: Batch[];
  report: DataReport;
  /** Every training pair once, in batches (for precompute_ref). */
  allTrainingPairs: () => Batch[];
  trainingPairs: number;
}

/** Training pairs and validation batches from config.data / validation / validation_fraction. */
export function preferenceData(c: TrainConfig, tokenizer: Tokenizer, T: number): PreferenceData {
  const d = buildPreferenceDatasets({
    train: c.data!, validation: c.validation ?? undefined, validationFraction: c.validation_fraction > 0 ? c.validation_fraction : undefined,
    tokenizer, seqLen: T, pairsPerBatch: c.batch_size, shuffle: c.shuffle, seed: c.seed, template: c.template ?? undefined, skipInvalid: c.skip_invalid,
  });
  return {
    train: d.train, validation: d.validation, report: d.report, trainingPairs: d.trainPairs.count,
    allTrainingPairs: () => pairValidationBatches(d.trainPairs, c.batch_size, T, tokenizer.eosTokenId),
  };
}

/**
 * The objective of a dpo/orpo run on `models`, the local replicas (one model copy except with devices 0,1;
 * before any step). openStart loads the starting model again (a resumed full fine-tuning run, whose models
 * hold the checkpoint's weights) on the current device. With precompute_ref, `data` gives the training pairs
 * to compute once (null when the batches came from the caller: refused); `ranks` splits that work (every
 * rank of a data-parallel job calls this) and `useReplica(j)` makes replica j's device current.
 */
export async function preferenceObjective(
  c: TrainConfig, models: readonly Decoder[], resumed: boolean, openStart: () => Promise<Decoder>, data: PreferenceData | null, validation: Batch[] | null,
  ranks: RankGroup = ONE_PROCESS, useReplica: (j: number) => void = () => {},
): Promise<PreferenceObjective> {
  const settings = preferenceSettings(c)!;
  if (settings.method === 'orpo') return new PreferenceObjective(settings, null);
  // Replica j's reference, on its device: the model itself with the adapter off, or a frozen copy.
  const referenceOf = async (j: number): Promise<ReferenceModel> => {
    const model = models[j];
    useReplica(j);
    if (model.trainingAdapter) return new AdapterOffReference(model);
    if (resumed) return new FrozenReference(await openStart());
    return FrozenReference.copyOf(model, (config, device) => new Decoder(config, device));
  };
  const references: ReferenceModel[] = [];
  const freeAll = () => {
    for (const [j, r] of references.entries()) {
      useReplica(j);
      r.free();
    }
    useReplica(0);
  };
  try {
    // precompute_ref: one table for the process (host data), computed by replica 0's reference alone.
    for (let j = 0; j < (c.precompute_ref ? 1 : models.length); j++) references.push(await referenceOf(j));
  } catch (e) {
    freeAll();
    throw e;
  }
  useReplica(0);
  if (!c.precompute_ref) return new PreferenceObjective(settings, references);
  const [reference] = references;
  try {
    if (data === null) throw new Error('precompute_ref: needs the training pairs built from config.data (not batches passed as options.train)');
    const objective = new PreferenceObjective(settings, new PrecomputedReference(reference, data.allTrainingPairs(), data.trainingPairs, ranks));
    // This process evaluates its share of the validation batches only (ranks.part: every replica's share, as the Trainer's evaluation).
    if (validation) objective.cacheValidationReference(ranks.part(validation), reference);
    return objective;
  } finally {
    freeAll();
  }
}

/** The log line's preference fields: TRL's names in a step line, val_-prefixed in an evaluation line. */
export function metricFields(m: PreferenceMetrics, prefix: '' | 'val_'): Record<string, number> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [`${prefix}${k}`, v]));
}
