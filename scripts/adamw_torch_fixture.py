"""Prints the torch.optim.AdamW values that test/kernels/adamw.test.ts checks adamw_update against.

Run with the system Python that has PyTorch (1.13 here):  /usr/bin/python3 scripts/adamw_torch_fixture.py
Every input is a multiple of 1/64, so it is exact in float32 and in JavaScript; the outputs are
float32 values printed with enough digits to round-trip.
"""
import json

import torch

torch.set_default_dtype(torch.float32)

params0 = [0.5, -1.25, 2.0, -0.75, 0.125, 3.0, -2.5]
grads = [
    [0.25, -0.5, 1.5, 0.0625, -2.0, 0.75, -0.375],
    [-0.125, 0.625, 1.25, -1.0, 0.5, -0.25, 0.875],
]
config = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def run(grad_scale):
    p = torch.nn.Parameter(torch.tensor(params0))
    opt = torch.optim.AdamW([p], foreach=False, **config)
    steps = []
    for g in grads:
        # grad_scale plays the role of global-norm clipping, which scales .grad in place.
        p.grad = torch.tensor(g) * grad_scale
        opt.step()
        state = opt.state[p]
        steps.append({
            "params": [float(x) for x in p.detach()],
            "exp_avg": [float(x) for x in state["exp_avg"]],
            "exp_avg_sq": [float(x) for x in state["exp_avg_sq"]],
        })
    return steps


print(json.dumps({
    "torch": torch.__version__,
    "config": {**config, "betas": list(config["betas"])},
    "params0": params0,
    "grads": grads,
    "grad_scale_1": run(1.0),
    "grad_scale_0.5": run(0.5),
}, indent=1))
