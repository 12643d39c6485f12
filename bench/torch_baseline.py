"""PyTorch baseline for gptune's training-step benchmark: forward + backward + AdamW of GPT-2 (the plain
torch model in scripts/torch_gpt2.py) on random tokens, float32, CPU.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_baseline.py \
        --n-layer 12 --n-head 12 --n-embd 768 --vocab 50257 --n-positions 1024 \
        --batch 4 --seq 256 --steps 3 --threads 2

(Debian's OpenBLAS misdetects this CPU without OPENBLAS_CORETYPE.) Prints one JSON line:
{tokens_per_s, ms_per_step, peak_rss_mb, torch_version, ...}; ms_per_step is the median of the timed
steps, which follow --warmup untimed steps (the first step pays for allocation and AdamW state).
The MLP uses torch's fused tanh-GELU (same function as gelu_new), as a speed-minded torch user would.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from reference_training import decay_groups  # noqa: E402
from torch_gpt2 import GPT2, GPT2Config  # noqa: E402


def loaded_blas() -> str:
    """Path of the BLAS library this process actually mapped. Debian's torch calls whatever
    libblas.so.3 resolves to: the netlib reference BLAS (~1 GFLOP/s) unless OpenBLAS is installed
    (apt-get install libopenblas0-pthread) or put first on LD_LIBRARY_PATH; a baseline timed on the
    reference BLAS is meaningless, so the result names it."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps
                     if "/" in line and "blas" in os.path.basename(line.split()[-1]).lower()}
    except OSError:
        return "unknown"
    return ",".join(sorted(os.path.realpath(p) for p in paths)) or "none mapped"


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def time_training_steps(step, tokens_per_step: int, warmup: int, steps: int) -> dict:
    """Runs step() (one training step returning its loss) `warmup` times untimed (the first pays for
    allocation and AdamW state), then `steps` times timed. ms_per_step is the median timed step."""
    for _ in range(warmup):
        step()
    times_ms, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        times_ms.append((time.perf_counter() - start) * 1000.0)
    ms = statistics.median(times_ms)
    return {"tokens_per_s": round(tokens_per_step / (ms / 1000.0), 2), "ms_per_step": round(ms, 2),
            "step_ms": [round(t, 2) for t in times_ms], "losses": [round(x, 4) for x in losses]}


def main():
    parser = argparse.ArgumentParser(description="PyTorch GPT-2 training-step baseline (CPU, float32)")
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--n-positions", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("n_layer", "n_head", "n_embd", "vocab", "n_positions", "batch", "seq", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer, received {getattr(args, name)}")
    if args.seq > args.n_positions:
        parser.error(f"--seq: expected at most --n-positions ({args.n_positions}), received {args.seq}")
    if args.n_embd % args.n_head:
        parser.error(f"--n-embd: expected a multiple of --n-head ({args.n_head}), received {args.n_embd}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=args.vocab, n_positions=args.n_positions, n_embd=args.n_embd,
                        n_layer=args.n_layer, n_head=args.n_head, fused_gelu=True)
    model = GPT2(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif ".ln_" in name or name.startswith("ln_f"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()
    optimizer = torch.optim.AdamW(decay_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    # a fresh random batch of T+1 tokens; targets are the next tokens
    rows = torch.randint(0, args.vocab, (args.batch, args.seq + 1))
    tokens, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def step():
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    timed = time_training_steps(step, args.batch * args.seq, args.warmup, args.steps)
    print(json.dumps({
        "tokens_per_s": timed["tokens_per_s"],
        "ms_per_step": timed["ms_per_step"],
        "step_ms": timed["step_ms"],
        "peak_rss_mb": peak_rss_mb(),
        "torch_version": torch.__version__,
        "blas": loaded_blas(),
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "config": {"n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd, "vocab": args.vocab,
                   "n_positions": args.n_positions, "batch": args.batch, "seq": args.seq},
        "losses": timed["losses"],
    }))


if __name__ == "__main__":
    main()
