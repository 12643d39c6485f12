/**
 * Telling a diverging run from a noisy one, step by step:
 *   - a non-finite loss or gradient norm skips the step's update (parameters and AdamW moments stay
 *     as they were); max_skipped_steps such steps in a row mean the run diverged;
 *   - a finite loss more than divergence_zscore standard deviations above the mean of the previous
 *     LOSS_WINDOW losses means the run diverged (llm.c's outlier detector: z-scores over a sliding
 *     window, none until the window is full); above SPIKE_WARN_ZSCORE it is a warning;
 *   - a loss above HIGH_LOSS_FACTOR times ln(vocab_size), the loss of guessing uniformly, is a
 *     warning even without history (once per run of such steps).
 */
export const LOSS_WINDOW = 100;
export const SPIKE_WARN_ZSCORE = 6;
export const HIGH_LOSS_FACTOR = 3;
/** The standard deviation is taken at least this fraction of the window's mean loss. */
const MIN_RELATIVE_STD = 0.01;

export type AnomalyKind = 'nonfinite' | 'loss_spike' | 'high_loss';

export interface StepVerdict {
  /** update: apply the step; skip: a non-finite value, no update; stop: the run diverged. */
  action: 'update' | 'skip' | 'stop';
  /** The loss's z-score against the window, null until the window is full (or for non-finite losses). */
  zscore: number | null;
  warning: { kind: AnomalyKind; message: string } | null;
  /** Why the run diverged (action 'stop'). */
  stopMessage: string | null;
}

export interface DivergenceOptions {
  maxSkippedSteps: number;
  /** 0 = never stop on a spike. */
  divergenceZscore: number;
  vocabSize: number;
}

function show(x: number): string {
  return Number.isFinite(x) ? (Math.abs(x) >= 1e6 ? x.toExponential(3) : x.toFixed(4)) : String(x);
}

export class DivergenceMonitor {
  private readonly window: number[] = [];
  private next = 0;
  private skippedInRow = 0;
  private highLossStreak = false;

  constructor(private readonly o: DivergenceOptions) {}

  private zscore(loss: number): number | null {
    if (this.window.length < LOSS_WINDOW) return null;
    const mean = this.window.reduce((a, b) => a + b, 0) / LOSS_WINDOW;
    const variance = this.window.reduce((a, b) => a + (b - mean) ** 2, 0) / LOSS_WINDOW;
    const std = Math.max(Math.sqrt(variance), MIN_RELATIVE_STD * Math.abs(mean), 1e-12);
    return (loss - mean) / std;
  }

  private remember(loss: number): void {
    if (this.window.length < LOSS_WINDOW) this.window.push(loss);
    else this.window[this.next] = loss;
    this.next = (this.next + 1) % LOSS_WINDOW;
  }

  /** Judges step `step` from its mean loss (null when it scored no tokens) and its gradient norm, before the update. */
  check(step: number, loss: number | null, gradNorm: number): StepVerdict {
    const lossOk = loss === null || Number.isFinite(loss);
    if (!lossOk || !Number.isFinite(gradNorm)) {
      this.skippedInRow++;
      const what = !lossOk ? `loss ${show(loss!)}` : `gradient norm ${show(gradNorm)}`;
      if (this.skippedInRow >= this.o.maxSkippedSteps) {
        return {
          action: 'stop', zscore: null, warning: null,
          stopMessage: `${this.skippedInRow} consecutive steps had a non-finite loss or gradient norm (step ${step}: ${what}; max_skipped_steps ${this.o.maxSkippedSteps})`,
        };
      }
      return {
        action: 'skip', zscore: null, stopMessage: null,
        warning: { kind: 'nonfinite', message: `step ${step}: ${what}; update skipped (${this.skippedInRow} in a row, the run stops at ${this.o.maxSkippedSteps})` },
      };
    }
    this.skippedInRow = 0;
    if (loss === null) return { action: 'update', zscore: null, warning: null, stopMessage: null };
    const z = this.zscore(loss);
    const mean = () => this.window.reduce((a, b) => a + b, 0) / this.window.length;
    if (z !== null && this.o.divergenceZscore > 0 && z > this.o.divergenceZscore) {
      return {
        action: 'stop', zscore: z, warning: null,
        stopMessage: `step ${step}: loss ${show(loss)} is ${show(z)} standard deviations above the mean ${show(mean())} of the last ${LOSS_WINDOW} steps (divergence_zscore ${this.o.divergenceZscore})`,
      };
    }
    this.remember(loss);
    let warning: StepVerdict['warning'] = null;
    const uniform = Math.log(this.o.vocabSize);
    const high = loss > HIGH_LOSS_FACTOR * uniform;
    if (z !== null && z > SPIKE_WARN_ZSCORE) {
      warning = { kind: 'loss_spike', message: `step ${step}: loss spike ${show(loss)}, ${z.toFixed(1)} standard deviations above the last ${LOSS_WINDOW} steps` };
    } else if (high && !this.highLossStreak) {
      warning = {
        kind: 'high_loss',
        message: `step ${step}: loss ${show(loss)} is more than ${HIGH_LOSS_FACTOR} times ln(vocab_size) = ${uniform.toFixed(2)}, the loss of uniform guessing; the run may be diverging (lower the learning rate)`,
      };
    }
    this.highLossStreak = high;
    return { action: 'update', zscore: z, warning, stopMessage: null };
  }
}
