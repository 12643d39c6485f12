"""PyTorch baseline for gptune's Llama-family benchmark, on the independent model of scripts/torch_llama.py,
float32, CPU. Defaults are SmolLM2-135M's shape (30 layers, width 576, 9 heads of 64, 3 KV heads, FFN 1536,
vocab 49152, tied, rms eps 1e-5, rope_theta 100000 as in its config.json; theta changes no FLOP).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_llama_baseline.py --mode train \
        --batch 4 --seq 256 --steps 3 --threads 2
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_llama_baseline.py --mode generate \
        --prompt 16 --new 128 --threads 2

train: one step = forward, backward, clip_grad_norm_(1.0), AdamW (lr 3e-4, betas (0.9, 0.999), eps 1e-8,
weight decay 0.1 on 2+-dim tensors): the step bench/train_step.ts times for gptune. Measured as
bench/torch_baseline.py measures GPT-2: ms_per_step is the median of --steps timed steps after --warmup
untimed ones, tokens_per_s = B*T / that, peak_rss_mb = the process's ru_maxrss. Also reports the model
FLOPs a token, 6N + 12*L*T*(NH*HS) with N every parameter (the tied embedding once: it is the head's matmul),
and the FLOP rate that gives.

generate: batch 1, greedy, KV cache (scripts/torch_llama.generate's cache: one prefill of the prompt,
then one token a step), under torch.no_grad, after a 4-token warm-up, timed as bench/generate_speed.ts times
gptune: prefill_ms = time to the first new token, decode_tokens_per_s = (new - 1) / the time after it.
Each mode prints one JSON line; run them as separate processes so the training peak RSS is its own.
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from reference_training import decay_groups  # noqa: E402
from torch_baseline import loaded_blas, peak_rss_mb, time_training_steps  # noqa: E402
from torch_llama import KVCache, LlamaConfig, LlamaForCausalLM  # noqa: E402


def build_model(args) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=args.max_positions,
                         rms_norm_eps=1e-5, rope_theta=args.rope_theta, tie_word_embeddings=True)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            else:
                p.fill_(1.0)  # RMSNorm weights (the model has no biases)
    return model


def bench_train(args, model: LlamaForCausalLM) -> dict:
    c = model.config
    optimizer = torch.optim.AdamW(decay_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
    rows = torch.randint(0, c.vocab_size, (args.batch, args.seq + 1))
    tokens, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    timed = time_training_steps(step, args.batch * args.seq, args.warmup, args.steps)
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 12 * c.num_hidden_layers * args.seq * c.num_attention_heads * c.hs
    return {
        **timed, "peak_rss_mb": peak_rss_mb(), "model_flops_per_token": flops_per_token,
        "model_gflops_per_s": round(timed["tokens_per_s"] * flops_per_token / 1e9, 2),
        "batch": args.batch, "seq": args.seq,
    }


@torch.no_grad()
def bench_generate(args, model: LlamaForCausalLM) -> dict:
    prompt = [(i * 7919) % model.config.vocab_size for i in range(args.prompt)]  # bench/generate_speed.ts's prompt

    def run(n_new: int, on_token=None):
        cache = KVCache(model.config.num_hidden_layers)
        step_input, out = prompt, []
        for _ in range(n_new):
            logits, _ = model(torch.tensor([step_input]), None, cache)
            out.append(int(torch.argmax(logits[0, -1])))
            if on_token:
                on_token()
            step_input = out[-1:]
        return out

    run(4)  # warm-up
    first = []
    start = time.perf_counter()
    tokens = run(args.new, lambda: first.append(time.perf_counter()) if not first else None)
    total = time.perf_counter() - start
    prefill = first[0] - start
    return {"prompt_tokens": args.prompt, "new_tokens": len(tokens), "prefill_ms": round(prefill * 1000.0, 2),
            "decode_tokens_per_s": round((len(tokens) - 1) / (total - prefill), 2),
            "total_ms": round(total * 1000.0, 2), "peak_rss_mb": peak_rss_mb()}


def main():
    parser = argparse.ArgumentParser(description="PyTorch Llama-family baseline (CPU, float32)")
    parser.add_argument("--mode", choices=("train", "generate"), default="train")
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--ffn", type=int, default=1536)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--max-positions", type=int, default=8192)
    parser.add_argument("--rope-theta", type=float, default=100000.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps before timing")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens (generate)")
    parser.add_argument("--new", type=int, default=128, help="new tokens (generate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "max_positions", "batch", "seq", "steps",
                 "prompt", "new", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer, received {getattr(args, name)}")
    if args.hidden % args.heads:
        parser.error(f"--hidden: expected a multiple of --heads ({args.heads}), received {args.hidden}")
    if args.heads % args.kv_heads:
        parser.error(f"--heads: expected a multiple of --kv-heads ({args.kv_heads}), received {args.heads}")
    longest = args.seq if args.mode == "train" else args.prompt + args.new
    if longest > args.max_positions:
        parser.error(f"--max-positions: expected at least {longest} (the longest sequence), received {args.max_positions}")

    torch.set_num_threads(args.threads)
    model = build_model(args)
    result = bench_train(args, model) if args.mode == "train" else bench_generate(args, model)
    c = model.config
    print(json.dumps({
        "impl": "pytorch", "mode": args.mode, **result,
        "torch_version": torch.__version__, "blas": loaded_blas(), "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "config": {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "heads": c.num_attention_heads,
                   "kv_heads": c.num_key_value_heads, "head_dim": c.hs, "ffn": c.intermediate_size,
                   "vocab": c.vocab_size, "tied": c.tie_word_embeddings, "rope_theta": c.rope_theta},
    }))


if __name__ == "__main__":
    main()
