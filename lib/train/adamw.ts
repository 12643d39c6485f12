/**
 * AdamW with PyTorch's semantics (torch.optim.AdamW): decoupled weight decay, bias correction,
 * moments in float32 laid out like what the model trains (Decoder.trainableSpecs(): the parameters,
 * or a LoRA adapter). Weight decay applies to tensors with 2+ dimensions only (embeddings, linear
 * weights, every LoRA matrix), which come first in that layout, so an update is two kernel calls:
 * the decayed region and the rest.
 *
 * With a `range` (ZeRO-1, lib/train/distributed.ts) the optimizer owns the moments of that part of the
 * layout only and updates only those parameters, from the gradients at the same place.
 */
import { addon, kernels } from '../native';

import { Decoder } from '../model/decoder';
import { arenaLayout, TensorArena } from '../tensor';
import { checkInstance, checkNumber, checkOptions } from '../util/check';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

/** A part [offset, offset + numel) of the trained layout. */
export interface ParameterRange {
  offset: number;
  numel: number;
}

export class AdamW {
  readonly m: TensorArena;
  readonly v: TensorArena;
  /** Number of updates applied so far (bias correction uses step + 1 on the next update). */
  step = 0;
  private readonly decayEnd: number;
  /** The part of the layout this optimizer updates (the whole layout unless a range was given). */
  readonly range: ParameterRange;

  constructor(readonly model: Decoder, readonly options: AdamWOptions = ADAMW_DEFAULTS, range?: ParameterRange) {
    checkInstance('AdamW', 'model', model, Decoder, 'a Decoder model');
    checkOptions('AdamW', 'options', options);
    // Checked here, not by the kernel at the first update after a whole forward and backward pass.
    const { beta1, beta2, eps, weightDecay } = options;
    checkNumber('AdamW', 'options.beta1', beta1, { min: 0, below: 1 });
    checkNumber('AdamW', 'options.beta2', beta2, { min: 0, below: 1 });
    checkNumber('AdamW', 'options.eps', eps, { above: 0 });
    checkNumber('AdamW', 'options.weightDecay', weightDecay, { min: 0 });
    const { specs, decayCount } = model.trainableSpecs();
    const layout = arenaLayout(specs);
    this.decayEnd = decayCount < specs.length ? layout.offsets[decayCount] : layout.numel;
    if (range !== undefined) {
      if (!Number.isInteger(range.offset) || !Number.isInteger(range.numel) || range.offset < 0 || range.numel < 0 || range.offset + range.numel > layout.numel) {
        throw new RangeError(`AdamW: range [${range.offset}, ${range.offset + range.numel}) is not inside the ${layout.numel} trained elements`);
      }
    }
    this.range = range ?? { offset: 0, numel: layout.numel };
    const moments = range === undefined ? specs : [{ name: 'shard', shape: [Math.max(1, range.numel)] }];
    this.m = new TensorArena(model.device, moments);
    this.v = new TensorArena(model.device, moments);
  }

  /** Applies one update with learning rate lr; gradients are multiplied by gradScale first. */
  update(lr: number, gradScale = 1): void {
    checkNumber('AdamW.update', 'lr', lr, { min: 0 });
    checkNumber('AdamW.update', 'gradScale', gradScale, { min: 0 });
    const grads = this.model.grads;
    if (!grads) throw new Error('AdamW.update: the model has no gradients');
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const trainable = this.model.trainable;
    const whole = this.range.offset === 0 && this.range.numel === trainable.numel;
    if (whole ? trainable.numel !== this.m.numel : this.range.offset + this.range.numel > trainable.numel) {
      throw new Error('AdamW.update: the model trains other tensors than this optimizer was made for');
    }
    const p = trainable.arena, n = trainable.numel, d = this.decayEnd;
    // The decayed region [0, d) and the rest [d, n), each cut to the range; the moments start at the range.
    const lo = this.range.offset, hi = lo + this.range.numel;
    const regions = [[0, d, weightDecay], [d, n, 0]].map(([start, end, wd]) => ({ start: Math.max(start, lo), numel: Math.min(end, hi) - Math.max(start, lo), wd }))
      .filter((r) => r.numel > 0);
    const view = (arena: TensorArena['arena'], offset: number, numel: number) => ({ arena, offset, numel });
    const cuda = addon.cuda;
    if (this.model.device === 'cuda' && cuda.adamwUpdateMulti) {
      // One launch for both regions on the GPU.
      cuda.adamwUpdateMulti(regions.map((r) => ({
        params: view(p, r.start, r.numel), m: view(this.m.arena, r.start - lo, r.numel), v: view(this.v.arena, r.start - lo, r.numel),
        grads: view(grads.arena, r.start, r.numel), weightDecay: r.wd,
      })), lr, beta1, beta2, eps, gradScale, this.step);
      return;
    }
    // (A LoRA adapter is all matrices: its second region is empty.)
    for (const r of regions) {
      kernels.adamw_update(view(p, r.start, r.numel), view(this.m.arena, r.start - lo, r.numel), view(this.v.arena, r.start - lo, r.numel),
        view(grads.arena, r.start, r.numel), r.numel, lr, beta1, beta2, eps, r.wd, gradScale, this.step);
    }
  }

  free(): void {
    this.m.free();
    this.v.free();
  }
}

/** Global-norm clipping factor, as torch.nn.utils.clip_grad_norm_ computes it (0 = no clipping). */
export function clipScale(gradNorm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  const coef = maxNorm / (gradNorm + 1e-6);
  return coef < 1 ? coef : 1;
}
