/**
 * Learning-rate schedules as Hugging Face's get_scheduler defines them: linear warmup from 0 over
 * `warmup` steps, then constant, linear decay, or cosine decay to minLr at totalSteps.
 * `step` is the 0-based index of the update about to be applied.
 */
export type ScheduleName = 'constant' | 'linear' | 'cosine';
export const SCHEDULES: readonly ScheduleName[] = ['constant', 'linear', 'cosine'];

export interface ScheduleOptions {
  lr: number;
  schedule: ScheduleName;
  warmup: number;
  totalSteps: number;
  minLr?: number;
}

export function learningRate(step: number, o: ScheduleOptions): number {
  const minLr = o.minLr ?? 0;
  if (o.warmup > 0 && step < o.warmup) return (o.lr * step) / o.warmup;
  if (o.schedule === 'constant') return o.lr;
  const decaySteps = Math.max(1, o.totalSteps - o.warmup);
  const progress = Math.min(1, Math.max(0, (step - o.warmup) / decaySteps));
  if (o.schedule === 'linear') return minLr + (o.lr - minLr) * (1 - progress);
  return minLr + (o.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
