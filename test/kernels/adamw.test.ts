/**
 * adamw_update against a float64 reference of torch.optim.AdamW's formula over several steps, and
 * against values produced by PyTorch 1.13 itself (scripts/adamw_torch_fixture.py).
 */
import { addon } from '../../lib/native';
import { adamwStep, AdamWConfig } from '../reference/adamw';
import { expectClose } from '../reference/compare';
import { SeededRandom } from '../reference/random';

const { kernels } = addon;
const initialThreads = addon.numThreads();
afterAll(() => addon.setNumThreads(initialThreads));

describe.each([1, 2])('with %i thread(s)', (threads) => {
  beforeAll(() => addon.setNumThreads(threads));

  // 20001 is large enough for the update to be split between threads.
  test.each([
    [1, 0.1, 1],
    [37, 0.1, 0.5],
    [1001, 0, 1],
    [20001, 0.01, 0.25],
  ])('five steps match the float64 reference, n=%i weight_decay=%f grad_scale=%f', (n, weightDecay, gradScale) => {
    const cfg: AdamWConfig = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay };
    const rng = new SeededRandom(n);
    const params = rng.floats(n, -1, 1), m = new Float32Array(n), v = new Float32Array(n);
    const refP = Float64Array.from(params), refM = new Float64Array(n), refV = new Float64Array(n);
    // The kernel receives float32 hyperparameters; the reference uses those same values.
    const cfg32: AdamWConfig = {
      lr: Math.fround(cfg.lr), beta1: Math.fround(cfg.beta1), beta2: Math.fround(cfg.beta2),
      eps: Math.fround(cfg.eps), weightDecay: Math.fround(cfg.weightDecay),
    };
    for (let step = 1; step <= 5; step++) {
      const grads = rng.floats(n, -2, 2);
      kernels.adamw_update(params, m, v, grads, n, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weightDecay, gradScale, step);
      adamwStep(refP, refM, refV, grads, cfg32, Math.fround(gradScale), step);
    }
    // Per step the decay multiply rounds p (u |p| <= 6e-8, u = 2^-24) and the update adds a few
    // roundings of lr * m / denom (~lr u): below 1e-6 over five steps. m is a running sum of signed
    // terms up to |g| = 2 gradScale that can cancel, so its error is absolute: two roundings of
    // u |g| per step. v sums positive terms only: a few ulps relative.
    const U = 2 ** -24;
    expectClose('params', params, refP, { rel: 0, abs: 1e-6 });
    expectClose('m', m, refM, { rel: 0, abs: 5 * 2 * U * 2 * gradScale });
    expectClose('v', v, refV, { rel: 1e-6, abs: 0 });
  });
});

// Produced by `/usr/bin/python3 scripts/adamw_torch_fixture.py` (torch 1.13.0a0, foreach=False):
// torch.optim.AdamW(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1), two steps on a
// 7-element parameter; grad_scale 0.5 is applied by scaling .grad before the step, as clipping does.
const TORCH = {
  params0: [0.5, -1.25, 2.0, -0.75, 0.125, 3.0, -2.5],
  grads: [
    [0.25, -0.5, 1.5, 0.0625, -2.0, 0.75, -0.375],
    [-0.125, 0.625, 1.25, -1.0, 0.5, -0.25, 0.875],
  ],
  gradScale1: [
    {
      params: [0.4895000159740448, -1.2387499809265137, 1.9880000352859497, -0.7592499852180481, 0.13487499952316284, 2.986999988555908, -2.487499952316284],
      exp_avg: [0.02500000037252903, -0.05000000074505806, 0.15000000596046448, 0.0062500000931322575, -0.20000000298023224, 0.07500000298023224, -0.03750000149011612],
      exp_avg_sq: [0.0031250000465661287, 0.012500000186264515, 0.11250000447034836, 0.00019531250291038305, 0.20000000298023224, 0.02812500111758709, 0.007031250279396772],
    },
    {
      params: [0.48632681369781494, -1.2391340732574463, 1.9760777950286865, -0.7515673637390137, 0.13948778808116913, 2.9799699783325195, -2.489178419113159],
      exp_avg: [0.009999998845160007, 0.017500001937150955, 0.2600000202655792, -0.09437499940395355, -0.12999999523162842, 0.042500004172325134, 0.05375000089406967],
      exp_avg_sq: [0.0037499999161809683, 0.03140624985098839, 0.1850000023841858, 0.05018554627895355, 0.20250000059604645, 0.029843751341104507, 0.04496093839406967],
    },
  ],
  gradScaleHalf: [
    {
      params: [0.4895000159740448, -1.2387499809265137, 1.9880000352859497, -0.7592499852180481, 0.13487499952316284, 2.986999988555908, -2.487499952316284],
      exp_avg: [0.012500000186264515, -0.02500000037252903, 0.07500000298023224, 0.0031250000465661287, -0.10000000149011612, 0.03750000149011612, -0.01875000074505806],
      exp_avg_sq: [0.0007812500116415322, 0.0031250000465661287, 0.02812500111758709, 4.882812572759576e-5, 0.05000000074505806, 0.007031250279396772, 0.001757812569849193],
    },
    {
      params: [0.48632681369781494, -1.2391340732574463, 1.9760777950286865, -0.7515673637390137, 0.13948778808116913, 2.9799699783325195, -2.489178419113159],
      exp_avg: [0.004999999422580004, 0.008750000968575478, 0.1300000101327896, -0.047187499701976776, -0.06499999761581421, 0.021250002086162567, 0.026875000447034836],
      exp_avg_sq: [0.0009374999790452421, 0.007851562462747097, 0.04625000059604645, 0.012546386569738388, 0.05062500014901161, 0.007460937835276127, 0.011240234598517418],
    },
  ],
};

test.each([
  ['1', 1, TORCH.gradScale1],
  ['0.5', 0.5, TORCH.gradScaleHalf],
])('two steps match torch.optim.AdamW, grad_scale %s', (_name, gradScale, expected) => {
  const n = TORCH.params0.length;
  const params = Float32Array.from(TORCH.params0), m = new Float32Array(n), v = new Float32Array(n);
  expected.forEach((want, i) => {
    kernels.adamw_update(params, m, v, Float32Array.from(TORCH.grads[i]), n, 0.01, 0.9, 0.95, 1e-8, 0.1, gradScale, i + 1);
    // torch keeps lr, betas and eps in float64 and rounds (1 - beta1) etc. to float at use; the
    // kernel gets them as float32, so 1 - beta1 and the bias corrections differ by ~2e-7
    // relative; with a few float roundings per step, 1e-6 relative.
    const tol = { rel: 1e-6, abs: 1e-9 };
    expectClose(`params after step ${i + 1}`, params, want.params, tol);
    expectClose(`exp_avg after step ${i + 1}`, m, want.exp_avg, tol);
    expectClose(`exp_avg_sq after step ${i + 1}`, v, want.exp_avg_sq, tol);
  });
});
