/**
 * A training run's history: every step and evaluation it logged, the samples it generated at
 * evaluations, and where each (resumed) part of the run started and ended. The Trainer keeps it in
 * memory for the live dashboard and appends each line to OUT/metrics.jsonl as it happens (one whole
 * line per write), so that `gptune dashboard OUT` and report.html show the same run afterwards. A
 * resumed run first cuts the file back to the checkpoint's step (atomically), then appends: the
 * history of a run continued any number of times reads as one run.
 *
 * metrics.jsonl holds one JSON object per line, told apart by their keys:
 *   {"start": {...}}                                a run (or resumed part) begins: RunStart
 *   {"step", "loss", "lr", "tokens_per_s", ...}     an optimizer step: StepLog (the --log line)
 *   {"step", "val_loss", "best_step", ...}          an evaluation: EvalLog (the --log line)
 *   {"step", "samples": [{"prompt", "text"}]}       greedy samples at an evaluation: SampleLog
 *   {"end": {...}}                                  the part ends: RunEnd
 * JSON has no NaN: a skipped step's loss is written as null and read back as NaN.
 */
import * as fs from 'fs';
import { FileFormatError } from '../errors';
import { writeFileAtomic } from '../io/atomic';

export const HISTORY_FILE = 'metrics.jsonl';

/** One JSON log line per optimizer step (the `gptune train` contract's fields plus a few). */
export interface StepLog {
  step: number;
  /** Fractional epoch after this step: items consumed / items per epoch. */
  epoch: number;
  /** Mean training loss of the step's scored tokens, before the update. */
  loss: number;
  /** Argmax accuracy over the step's scored targets, the EOS appended after each example/document left out (lib/metrics/lm.ts). */
  token_accuracy: number;
  lr: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  ms: number;
  /** Token positions processed per second (B*T per micro-batch). */
  tokens_per_s: number;
  /** Scored tokens in this step. */
  tokens: number;
  elapsed_s: number;
  /** Present (true) when the step's loss or gradient norm was not finite and its update was skipped. */
  skipped?: true;
  /**
   * Under mpirun: milliseconds the step waited for the gradient all-reduce after the backward (with
   * overlap_comm, only what the backward did not hide).
   */
  allreduce_ms?: number;
  /**
   * method dpo/orpo (lib/train/preference.ts), TRL's names, means over the step's pairs; loss is then
   * the preference loss and token_accuracy that of the chosen answers.
   */
  'rewards/chosen'?: number;
  'rewards/rejected'?: number;
  'rewards/margins'?: number;
  'rewards/accuracies'?: number;
  'logps/chosen'?: number;
  'logps/rejected'?: number;
  /** ORPO only. */
  nll_loss?: number;
  log_odds_ratio?: number;
  log_odds_chosen?: number;
}

/** One JSON log line per evaluation; told apart from step lines by val_loss. */
export interface EvalLog {
  step: number;
  epoch: number;
  val_loss: number;
  val_perplexity: number;
  val_token_accuracy: number;
  val_tokens: number;
  /** best_metric improved by more than early_stopping_min_delta (the first evaluation always improves). */
  improved: boolean;
  best_val_loss: number;
  best_step: number;
  ms: number;
  elapsed_s: number;
  /** method dpo/orpo: the step line's preference metrics over the validation pairs (val_perplexity is then NaN). */
  'val_rewards/chosen'?: number;
  'val_rewards/rejected'?: number;
  'val_rewards/margins'?: number;
  'val_rewards/accuracies'?: number;
  'val_logps/chosen'?: number;
  'val_logps/rejected'?: number;
  val_nll_loss?: number;
  val_log_odds_ratio?: number;
  val_log_odds_chosen?: number;
}

/** Greedy continuations of the sample prompts after a step. */
export interface SampleLog {
  step: number;
  samples: Array<{ prompt: string; text: string }>;
}

export interface RunStart {
  start: {
    /** The step this part starts after (0, or the resumed checkpoint's step). */
    step: number;
    total_steps: number;
    model: string | null;
    output_dir: string | null;
    /** ISO 8601. */
    time: string;
  };
}

export interface RunEnd {
  end: {
    step: number;
    /** The Trainer's StopReason: completed, early_stopping, interrupted, diverged. */
    reason: string;
    time: string;
  };
}

export type HistoryLine = StepLog | EvalLog | SampleLog | RunStart | RunEnd;

/** The step a line belongs to (a start line: the step it starts after). */
function lineStep(line: HistoryLine): number {
  if ('start' in line) return line.start.step;
  if ('end' in line) return line.end.step;
  return line.step;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isStep = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** A parsed metrics.jsonl line as a HistoryLine, or a description of what is wrong with it. */
function classify(x: unknown): HistoryLine | string {
  if (!isObject(x)) return 'expected a JSON object';
  if (isObject(x.start)) return isStep(x.start.step) && isStep(x.start.total_steps) ? (x as unknown as RunStart) : 'a start line needs step and total_steps';
  if (isObject(x.end)) return isStep(x.end.step) && typeof x.end.reason === 'string' ? (x as unknown as RunEnd) : 'an end line needs step and reason';
  if (!isStep(x.step)) return 'expected "step" (a whole number >= 0), "start" or "end"';
  if (Array.isArray(x.samples)) {
    const ok = x.samples.every((s) => isObject(s) && typeof s.prompt === 'string' && typeof s.text === 'string');
    return ok ? (x as unknown as SampleLog) : 'expected samples as [{"prompt": string, "text": string}]';
  }
  if ('val_loss' in x) {
    if (!isStep(x.best_step)) return 'an evaluation line needs best_step';
    return { ...(x as unknown as EvalLog), val_loss: (x.val_loss as number | null) ?? NaN };
  }
  if ('loss' in x) return { ...(x as unknown as StepLog), loss: (x.loss as number | null) ?? NaN };
  return 'expected a step line (loss), an evaluation line (val_loss), a samples line, "start" or "end"';
}

/**
 * The lines of a metrics.jsonl text; a bad line is a FileFormatError naming `file` and the line.
 * A last line without its newline is a write in progress (the run is live) and is left out.
 */
function parseLines(text: string, file: string): HistoryLine[] {
  const lines = text.split('\n');
  // After the last '\n' comes '' for a complete file, else a line still being written.
  lines.pop();
  const out: HistoryLine[] = [];
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      throw new FileFormatError(`${file}:${i + 1}: not a JSON line (${(e as Error).message})`);
    }
    const line = classify(parsed);
    if (typeof line === 'string') throw new FileFormatError(`${file}:${i + 1}: ${line}`);
    out.push(line);
  });
  return out;
}

export class RunHistory {
  readonly steps: StepLog[] = [];
  readonly evals: EvalLog[] = [];
  readonly samples: SampleLog[] = [];
  readonly starts: Array<RunStart['start']> = [];
  /** How the latest part ended (null while it runs, or when it was killed). */
  end: RunEnd['end'] | null = null;
  /** Lines added so far: changes whenever the history does (the dashboard's poll compares it). */
  version = 0;

  static fromLines(lines: readonly HistoryLine[]): RunHistory {
    const h = new RunHistory();
    for (const line of lines) h.add(line);
    return h;
  }

  /** Reads a metrics.jsonl file (or a --log JSONL file: its step and evaluation lines). */
  static read(file: string): RunHistory {
    return RunHistory.fromLines(parseLines(fs.readFileSync(file, 'utf8'), file));
  }

  add(line: HistoryLine): void {
    if ('start' in line) {
      this.starts.push(line.start);
      this.end = null;
    } else if ('end' in line) {
      this.end = line.end;
    } else if ('samples' in line) {
      this.samples.push(line);
    } else if ('val_loss' in line) {
      this.evals.push(line);
    } else {
      this.steps.push(line);
    }
    this.version++;
  }

  /** The latest evaluation's view of the best one so far (null before any evaluation). */
  get best(): { step: number; valLoss: number } | null {
    const last = this.evals[this.evals.length - 1];
    return last === undefined ? null : { step: last.best_step, valLoss: last.best_val_loss };
  }

  /** The last step logged (0 before any). */
  get step(): number {
    return Math.max(this.steps[this.steps.length - 1]?.step ?? 0, this.starts[this.starts.length - 1]?.step ?? 0);
  }
}

/**
 * Prepares `file` for a run resumed after `step`: lines of later steps (logged by the interrupted
 * run after its last checkpoint) are cut, so that the resumed run's lines follow on; returns the
 * lines kept. The file is rewritten atomically, and only when something is cut.
 */
export function continueHistoryFile(file: string, step: number): HistoryLine[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  const lines = parseLines(text, file);
  const kept = lines.filter((line) => lineStep(line) <= step);
  if (kept.length !== lines.length || !(text === '' || text.endsWith('\n'))) {
    writeFileAtomic(file, kept.map((line) => JSON.stringify(line) + '\n').join(''));
  }
  return kept;
}
