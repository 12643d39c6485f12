/**
 * Model cards for the demo's model folders (models/NAME): what each run trained on (the email data
 * files with their hashes), its settings, its losses, and its results on the test emails, in the
 * same format `gptune train` writes (lib/card).
 */
import * as path from 'path';
import { CardEval, CardFacts } from '../card/card';
import { dataFileFacts, folderFacts, hyperparameters, taskEval, trainingDataFacts, validationEval, writeModelCard } from '../card/folder';
import type { TrainConfig } from '../config';
import type { DataReport } from '../data';
import type { ProbeReport } from '../eval/probe';
import type { RunRecord } from './training';
import type { ClassificationRow, GenerationRow } from './types';

export interface DemoCard {
  /** The model folder (models/NAME). */
  dir: string;
  /** The model it started from (a Hub id, a folder), or null for the runs from random weights. */
  base: { spec: string; dir: string } | null;
  record: RunRecord;
  data: DataReport;
  config: TrainConfig;
  /** Results on the test emails. */
  evals: CardEval[];
  /** The demo's test file, listed beside the training and validation files. */
  testFile: string;
  testExamples: number;
  probe?: ProbeReport | null;
  /** The data audit's summary lines of the data it trained on, when audited. */
  audit: string[] | null;
}

/** A classifier's test row as a model-index result. */
export function classificationEval(row: ClassificationRow, testFile: string): CardEval {
  return taskEval('classify', { ...row }, path.basename(testFile), 'gptune demo', 'demo', 'Spam classification');
}

/** A subject writer's test row (BLEU, ROUGE F as the demo reports them) as a model-index result. */
export function generationEval(row: GenerationRow, testFile: string): CardEval {
  const values = { bleu: row.bleu, rouge1: { f: row.rouge1 }, rouge2: { f: row.rouge2 }, rougeL: { f: row.rougeL } };
  return taskEval('generate', values, path.basename(testFile), 'gptune demo', 'demo', 'Subject-line generation');
}

/** Writes models/NAME's README.md and gptune_card.json. */
export function writeDemoCard(c: DemoCard): void {
  const training = trainingDataFacts(c.data);
  training.files.push(dataFileFacts(c.testFile, 'test', c.testExamples));
  // The demo keeps the training loss in buckets of consecutive steps: the last bucket's mean.
  const last = c.record.train_curve[c.record.train_curve.length - 1];
  const facts: CardFacts = {
    ...folderFacts(c.dir, 'gptune demo', c.base),
    training,
    hyperparameters: hyperparameters(c.config),
    results: {
      steps: c.record.steps, stop_reason: c.record.stop_reason, final_train_loss: last?.loss ?? null, final_val_loss: c.record.final_val_loss,
      best_val_loss: c.record.best_val_loss, best_step: c.record.best_step,
    },
    evals: [...validationEval(training, c.record.best_val_loss), ...c.evals],
    probe: c.probe ?? null,
    audit: c.audit,
  };
  writeModelCard(c.dir, facts);
}
