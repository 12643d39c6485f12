/**
 * Human-readable training progress on stderr: on a terminal, one bar redrawn in place with the ETA;
 * otherwise (a pipe, a CI log) one plain line per step and per evaluation. The JSON log is separate
 * (log_file) and never goes through here.
 */
export interface ProgressStream {
  write(text: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class ProgressReporter {
  private readonly tty: boolean;
  private barShown = false;
  /** Steps done and seconds spent in this process, for the ETA (a resumed run starts counting again). */
  private firstStep: number | null = null;
  private readonly started = Date.now();
  private lastVal = '';

  constructor(private readonly stream: ProgressStream, private readonly totalSteps: number) {
    this.tty = Boolean(stream.isTTY);
  }

  step(s: { step: number; loss: number; lr: number; ms: number; tokens_per_s: number; 'rewards/accuracies'?: number; 'rewards/margins'?: number }): void {
    if (this.firstStep === null) this.firstStep = s.step - 1;
    const done = s.step - this.firstStep;
    const perStep = (Date.now() - this.started) / 1000 / done;
    const eta = formatDuration(perStep * (this.totalSteps - s.step));
    const rewards = s['rewards/accuracies'] === undefined ? '' : `  reward acc ${s['rewards/accuracies'].toFixed(2)} margin ${s['rewards/margins']!.toFixed(4)}`;
    const figures = `loss ${s.loss.toFixed(4)}${rewards}${this.lastVal}  lr ${s.lr.toExponential(2)}  ${s.tokens_per_s.toFixed(0)} tok/s`;
    if (!this.tty) {
      this.stream.write(`step ${s.step}/${this.totalSteps}  ${figures}  ${s.ms.toFixed(0)} ms  eta ${eta}\n`);
      return;
    }
    const width = 24;
    const filled = Math.round((width * s.step) / this.totalSteps);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const pct = ((100 * s.step) / this.totalSteps).toFixed(0).padStart(3);
    let line = `[${bar}] ${pct}% ${s.step}/${this.totalSteps}  ${figures}  ETA ${eta}`;
    if (this.stream.columns && line.length >= this.stream.columns) line = line.slice(0, this.stream.columns - 1);
    // \r + erase-to-end-of-line redraws the bar in place.
    this.stream.write(`\r${line}\x1b[K`);
    this.barShown = true;
  }

  eval(e: { step: number; val_loss: number; val_perplexity: number; val_token_accuracy: number; improved: boolean; 'val_rewards/accuracies'?: number; 'val_rewards/margins'?: number }): void {
    this.lastVal = `  val ${e.val_loss.toFixed(4)}`;
    const figures = e['val_rewards/accuracies'] === undefined
      ? `perplexity ${e.val_perplexity.toFixed(2)}  token accuracy ${(100 * e.val_token_accuracy).toFixed(2)}%`
      : `reward accuracy ${(100 * e['val_rewards/accuracies']).toFixed(2)}%  reward margin ${e['val_rewards/margins']!.toFixed(4)}`;
    this.message(`eval at step ${e.step}: val_loss ${e.val_loss.toFixed(4)}  ${figures}${e.improved ? '  (best)' : ''}`);
  }

  /** A line that stays (the bar is redrawn below it). */
  message(text: string): void {
    if (this.barShown) {
      this.stream.write('\r\x1b[K');
      this.barShown = false;
    }
    this.stream.write(text + '\n');
  }

  finish(): void {
    if (this.barShown) this.stream.write('\n');
    this.barShown = false;
  }
}
