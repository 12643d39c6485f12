"""Reference losses and gradients of training with dropout, for test/model/dropout_fixtures.test.ts.

    /usr/bin/python3 scripts/make_dropout_fixtures.py [--out test/fixtures]

gptune draws every dropout mask from (seed, element index) (native/include/gptune/dropout_mask.h); this
script draws the same masks with its own numpy implementation of that definition (uint64 arithmetic,
nothing from gptune) and applies them where transformers' nn.Dropout layers sit in train mode, through
the hooks of scripts/torch_gpt2.py and scripts/torch_llama.py, in float64:
  GPT-2 (test/fixtures/tiny-gpt2)   embd_pdrop, attn_pdrop, resid_pdrop = 0.1
  Llama (test/fixtures/tiny-llama)  attention_dropout = 0.1
For each: STEPS AdamW steps (reference_training.ADAMW) on the fixed batch of the model's -ref.json, the
step k forward drawing its masks from STEP_SEEDS[k]; written: the losses and gradient norms of every
step and every parameter's gradient at step 0 (dropout-<name>-ref.json / .safetensors).

The mask definition (all arithmetic modulo 2^64):
  mix64(z) = SplitMix64's output function; GOLDEN = 0x9e3779b97f4a7c15
  key = mix64(seed + GOLDEN); bits(i) = mix64(key + (i + 1) GOLDEN)
  keep(i) = (bits(i) >> 40) >= ceil(p 2^24); kept values times float32(1 / (1 - p))
Seeds (lib/model/dropout.ts): site seed = bits(stream) >> 11 of the step's seed, streams 2^32 (embedding)
and 2^32 + 1 + 3 l + {0 attention probabilities, 1 attention output, 2 MLP output} for layer l.
Element indices: (B,T,C) activations row-major; attention probability (b, h, query i, key j) at
((b NH + h) T + j) T + i.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_training import ADAMW, decay_groups, f17  # noqa: E402
from safetensors_io import load_safetensors, save_safetensors  # noqa: E402
from torch_gpt2 import GPT2, GPT2Config  # noqa: E402
from torch_llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 3
P = 0.1
# The seeds gptune's Trainer gives steps 0, 1, 2 of a run with seed 1337 (micro-batch 0):
# (seed mod 2^20) 2^32 + step 1024.
STEP_SEEDS = [(1337 % 2**20) * 2**32 + k * 1024 for k in range(STEPS)]

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MODEL_STREAMS = 2**32


def mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix64_np(z: np.ndarray) -> np.ndarray:
    # numpy uint64 multiplication wraps modulo 2^64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_seed(seed: int, stream: int) -> int:
    key = mix64_int((seed + GOLDEN) & M64)
    return mix64_int((key + (stream + 1) * GOLDEN) & M64) >> 11


def multipliers(seed: int, p: float, n: int) -> np.ndarray:
    """The float64 multiplier (0 or float32(1/(1-p))) of elements 0..n-1."""
    p32 = np.float32(p)
    threshold = math.ceil(float(p32) * 2**24)
    key = np.uint64(mix64_int((seed + GOLDEN) & M64))
    with np.errstate(over="ignore"):
        index = np.arange(n, dtype=np.uint64)
        bits = mix64_np(key + (index + np.uint64(1)) * np.uint64(GOLDEN))
    keep = (bits >> np.uint64(40)) >= np.uint64(threshold)
    scale = float(np.float32(1) / (np.float32(1) - p32))
    return np.where(keep, scale, 0.0)


def activation_dropout(seed: int, p: float):
    """x (B,T,C) -> x * mask, index = position in the row-major tensor."""
    def apply(x: torch.Tensor) -> torch.Tensor:
        m = torch.from_numpy(multipliers(seed, p, x.numel())).view(x.shape).to(x.dtype)
        return x * m
    return apply


def probability_dropout(seed: int, p: float):
    """att (B,NH,Tq,Tk) -> att * mask, index ((b NH + h) T + key) T + query: drawn (B,NH,key,query), transposed."""
    def apply(att: torch.Tensor) -> torch.Tensor:
        B, NH, T, _ = att.shape
        m = torch.from_numpy(multipliers(seed, p, att.numel())).view(B, NH, T, T).transpose(-1, -2)
        return att * m.to(att.dtype)
    return apply


def set_gpt2_dropout(model: GPT2, seed: int, p: float) -> None:
    model.embd_dropout = activation_dropout(stream_seed(seed, MODEL_STREAMS), p)
    for l, block in enumerate(model.h):
        base = MODEL_STREAMS + 1 + 3 * l
        block.attn.prob_dropout = probability_dropout(stream_seed(seed, base), p)
        block.attn_out_dropout = activation_dropout(stream_seed(seed, base + 1), p)
        block.mlp_out_dropout = activation_dropout(stream_seed(seed, base + 2), p)


def set_llama_dropout(model: LlamaForCausalLM, seed: int, p: float) -> None:
    for l, layer in enumerate(model.model.layers):
        layer.self_attn.prob_dropout = probability_dropout(stream_seed(seed, MODEL_STREAMS + 1 + 3 * l), p)


def train_with_dropout(model, set_dropout, tokens, targets):
    """STEPS AdamW steps on one batch, step k's masks from STEP_SEEDS[k]: losses, gradient norms, step-0 grads."""
    opt = torch.optim.AdamW(decay_groups(model, ADAMW["weight_decay"]), lr=ADAMW["lr"], betas=ADAMW["betas"],
                            eps=ADAMW["eps"])
    losses, norms, grads0 = [], [], None
    for k in range(STEPS):
        set_dropout(model, STEP_SEEDS[k], P)
        opt.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()
        if k == 0:
            grads0 = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        opt.step()
        losses.append(f17(loss.item()))
        norms.append(f17(norm))
    return losses, norms, grads0


def load(module_class, config_class, folder: str):
    """The float64 model of a fixture folder (config.json + model.safetensors)."""
    model = module_class(config_class.from_hf_dict(json.load(open(os.path.join(folder, "config.json")))))
    model.load_hf_state(load_safetensors(os.path.join(folder, "model.safetensors")))
    return model.double()


def write_reference(out: str, name: str, model_class, config_class, set_dropout, rates: dict) -> None:
    """Trains tiny-<name> with dropout on its -ref.json batch; writes dropout-<name>-ref.{json,safetensors}."""
    folder = os.path.join(out, f"tiny-{name}")
    ref = json.load(open(os.path.join(out, f"tiny-{name}-ref.json")))
    tokens, targets = torch.tensor(ref["tokens"]), torch.tensor(ref["targets"])
    losses, norms, grads = train_with_dropout(load(model_class, config_class, folder), set_dropout, tokens, targets)
    # Without the masks the first loss differs: the fixture really exercises dropout.
    plain_loss = load(model_class, config_class, folder)(tokens, targets)[1].item()
    save_safetensors(os.path.join(out, f"dropout-{name}-ref.safetensors"), grads, {"format": "pt"})
    with open(os.path.join(out, f"dropout-{name}-ref.json"), "w") as f:
        json.dump({
            "generator": "scripts/make_dropout_fixtures.py", "torch_version": torch.__version__,
            "model": f"tiny-{name}", "batch": f"tiny-{name}-ref.json tokens/targets", "rates": rates,
            "steps": STEPS, "p": P, "step_seeds": STEP_SEEDS,
            "adamw": {"lr": ADAMW["lr"], "betas": list(ADAMW["betas"]), "eps": ADAMW["eps"],
                      "weight_decay": ADAMW["weight_decay"]},
            "conventions": "float64 reference; losses[k] is step k's mean loss before its update, grad_norms[k] "
                           "the global gradient norm; the .safetensors holds every parameter's step-0 gradient "
                           "under the checkpoint's names and layouts (GPT-2's Conv1D weights (in, out)).",
            "losses": losses, "grad_norms": norms, "loss_without_dropout": f17(plain_loss)}, f, indent=1)
        f.write("\n")
    print(name, losses, "without dropout", plain_loss)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(HERE, "..", "test", "fixtures"))
    args = parser.parse_args()
    write_reference(args.out, "gpt2", GPT2, GPT2Config, set_gpt2_dropout,
                    {"embd_pdrop": P, "attn_pdrop": P, "resid_pdrop": P})
    write_reference(args.out, "llama", LlamaForCausalLM, LlamaConfig, set_llama_dropout, {"attention_dropout": P})


if __name__ == "__main__":
    main()
