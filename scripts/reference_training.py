"""What the GPT-2 and Llama-family fixtures share: the AdamW hyperparameters, the loss/gradient capture and the
fixed-batch training loop (scripts/make_fixtures.py, scripts/make_llama_fixtures.py). `model` is any module
whose forward(tokens, targets) returns (logits, loss)."""
import copy

import torch
import torch.nn as nn

ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)


def f17(x: float) -> float:
    # json writes Python floats with repr (shortest round-trip, up to 17 significant digits): exact
    return float(x)


def decay_groups(model: nn.Module, weight_decay: float):
    """nanoGPT/gptune rule: decay tensors with 2+ dims (matrices, embeddings, a tied lm_head counted once as
    its embedding), never biases or norm weights. Frozen tensors (requires_grad False: a LoRA base) are left
    out, so the optimizer holds state for the trainable ones only."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def loss_and_grads(model: nn.Module, tokens, targets):
    model.zero_grad(set_to_none=True)
    logits, loss = model(tokens, targets)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), loss.item(), grads


def train(model: nn.Module, tokens, targets, steps: int, clip: float = None, micro_batches: int = 1,
          adamw: dict = ADAMW):
    """AdamW (hyperparameters as in ADAMW) on one fixed batch, over the trainable tensors. Returns per step:
    loss before the update (for micro_batches > 1 the mean of the micro-batch losses), the global gradient
    norm before clipping (over the tensors that have a gradient), the micro losses, and the trained copy."""
    model = copy.deepcopy(model)
    opt = torch.optim.AdamW(decay_groups(model, adamw["weight_decay"]), lr=adamw["lr"], betas=adamw["betas"],
                            eps=adamw["eps"])
    losses, norms, micro = [], [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        step_losses = []
        for chunk_tokens, chunk_targets in zip(tokens.chunk(micro_batches), targets.chunk(micro_batches)):
            _, loss = model(chunk_tokens, chunk_targets)
            (loss / micro_batches).backward()
            step_losses.append(loss.item())
        with_grad = [p for p in model.parameters() if p.grad is not None]
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in with_grad)).item()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(with_grad, clip)
        opt.step()
        losses.append(sum(step_losses) / micro_batches)
        norms.append(norm)
        micro.append(step_losses)
    return losses, norms, micro, model
