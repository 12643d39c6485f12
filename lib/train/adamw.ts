/**
 * AdamW with PyTorch's semantics (torch.optim.AdamW): decoupled weight decay, bias correction,
 * moments in float32 laid out like what the model trains (Decoder.trainableSpecs(): the parameters,
 * or a LoRA adapter). Weight decay applies to tensors with 2+ dimensions only (embeddings, linear
 * weights, every LoRA matrix), which come first in that layout, so an update is two kernel calls:
 * the decayed region and the rest.
 */
import { addon, kernels } from '../native';

import { Decoder } from '../model/decoder';
import { TensorArena } from '../tensor';
import { checkInstance, checkNumber, checkOptions } from '../util/check';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export class AdamW {
  readonly m: TensorArena;
  readonly v: TensorArena;
  /** Number of updates applied so far (bias correction uses step + 1 on the next update). */
  step = 0;
  private readonly decayEnd: number;

  constructor(readonly model: Decoder, readonly options: AdamWOptions = ADAMW_DEFAULTS) {
    checkInstance('AdamW', 'model', model, Decoder, 'a Decoder model');
    checkOptions('AdamW', 'options', options);
    // Checked here, not by the kernel at the first update after a whole forward and backward pass.
    const { beta1, beta2, eps, weightDecay } = options;
    checkNumber('AdamW', 'options.beta1', beta1, { min: 0, below: 1 });
    checkNumber('AdamW', 'options.beta2', beta2, { min: 0, below: 1 });
    checkNumber('AdamW', 'options.eps', eps, { above: 0 });
    checkNumber('AdamW', 'options.weightDecay', weightDecay, { min: 0 });
    const { specs, decayCount } = model.trainableSpecs();
    this.m = new TensorArena(model.device, specs);
    this.v = new TensorArena(model.device, specs);
    this.decayEnd = decayCount < specs.length ? this.m.get(specs[decayCount].name).offset : this.m.numel;
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
    if (trainable.numel !== this.m.numel) throw new Error('AdamW.update: the model trains other tensors than this optimizer was made for');
    const p = trainable.arena, n = trainable.numel, d = this.decayEnd;
    const view = (arena: TensorArena['arena'], offset: number, numel: number) => ({ arena, offset, numel });
    const cuda = addon.cuda;
    if (this.model.device === 'cuda' && cuda.adamwUpdateMulti) {
      // One launch for both regions on the GPU.
      const region = (offset: number, numel: number, weightDecay: number) => ({
        params: view(p, offset, numel), m: view(this.m.arena, offset, numel), v: view(this.v.arena, offset, numel),
        grads: view(grads.arena, offset, numel), weightDecay,
      });
      cuda.adamwUpdateMulti([region(0, d, weightDecay), region(d, n - d, 0)].filter((r) => r.params.numel > 0), lr, beta1, beta2, eps, gradScale, this.step);
      return;
    }
    // A LoRA adapter is all matrices: its second region is empty.
    if (d > 0) {
      kernels.adamw_update(view(p, 0, d), view(this.m.arena, 0, d), view(this.v.arena, 0, d), view(grads.arena, 0, d),
        d, lr, beta1, beta2, eps, weightDecay, gradScale, this.step);
    }
    if (n > d) {
      kernels.adamw_update(view(p, d, n - d), view(this.m.arena, d, n - d), view(this.v.arena, d, n - d), view(grads.arena, d, n - d),
        n - d, lr, beta1, beta2, eps, 0, gradScale, this.step);
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
