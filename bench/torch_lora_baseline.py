"""PyTorch baseline for gptune's LoRA training-step benchmark: one step (forward, backward, clip_grad_norm_(1.0)
over the adapters, AdamW over the adapters only) of LoRA (scripts/torch_lora.py) on a frozen base decoder of a
given shape (scripts/torch_gpt2.py or scripts/torch_llama.py), random weights, CPU.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_lora_baseline.py --shape qwen2.5-0.5b \\
        --r 16 --alpha 32 --targets all-linear --base-dtype bfloat16 --batch 1 --seq 512 --steps 3 --threads 2

Shapes: gpt2-124m, smollm2-135m, qwen2.5-0.5b (24 layers, 896 wide, 14 heads of 64, 2 KV heads, FFN 4864, vocab
151936, q/k/v biases, tied), qwen2.5-1.5b; --layers overrides the layer count (for a quick run). --targets is
"all-linear" (every Linear/Conv1D but the head) or a comma list matched as PEFT matches (c_attn, q_proj, ...).
--base-dtype bfloat16 stores the whole base (and so its activations) in bfloat16, as a model loaded with
torch_dtype=bfloat16; the adapters stay float32 and their path runs in float32 (PEFT's autocast_adapter_dtype).
The base is built without initialising float32 copies (its peak RSS is that of the dtype asked for): weights
N(0, 0.02), biases 0, norms 1. AdamW lr 3e-4, betas (0.9, 0.999), eps 1e-8, decay 0.1 on the adapter matrices.

--full trains every parameter of a float32 base instead (full fine-tuning: AdamW over all of them, decay on the
matrices only), the counterpart of gptune's full fine-tuning of the same shape (bench/lora.ts).

Measured as bench/torch_baseline.py measures: ms_per_step is the median of --steps timed steps after --warmup
untimed ones, tokens_per_s = B*T / that, peak_rss_mb = the process's ru_maxrss. Prints one JSON line.
"""
import argparse
import contextlib
import json
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from reference_training import decay_groups  # noqa: E402
from torch_baseline import loaded_blas, peak_rss_mb, time_training_steps  # noqa: E402
from torch_gpt2 import GPT2, GPT2Config  # noqa: E402
from torch_llama import LlamaConfig, LlamaForCausalLM  # noqa: E402
from torch_lora import ALL_LINEAR, LoraModel, LoraSettings  # noqa: E402

# The shapes of the published configs (config.json of each model); rope_theta changes no FLOP.
SHAPES = {
    "gpt2-124m": lambda: GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                    fused_gelu=True),
    "smollm2-135m": lambda: LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                        max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                                        tie_word_embeddings=True),
    "qwen2.5-0.5b": lambda: LlamaConfig(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                        head_dim=64, max_position_embeddings=32768, rms_norm_eps=1e-6,
                                        rope_theta=1000000.0, qkv_bias=True, tie_word_embeddings=True),
    "qwen2.5-1.5b": lambda: LlamaConfig(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                        num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                                        head_dim=128, max_position_embeddings=32768, rms_norm_eps=1e-6,
                                        rope_theta=1000000.0, qkv_bias=True, tie_word_embeddings=True),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@contextlib.contextmanager
def no_default_init():
    """nn.Linear/nn.Embedding skip their random init while the model is built: the float32 storage torch.empty
    hands out is then never touched (never resident) before random_weights replaces it."""
    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters = saved


def random_weights(model: nn.Module, dtype: torch.dtype, seed: int) -> None:
    """Every parameter replaced by one of dtype: matrices N(0, 0.02), biases 0, norm weights 1. Random values are
    drawn in float32 one row block at a time, so no full float32 copy of a large matrix exists at once."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        data = torch.empty(p.shape, dtype=dtype)
        if p.dim() >= 2:
            for start in range(0, p.shape[0], 4096):
                data[start:start + 4096] = torch.randn(data[start:start + 4096].shape, generator=g) * 0.02
        elif name.endswith("bias"):
            data.zero_()
        else:
            data.fill_(1.0)
        p.data = data
    for buffer_owner in model.modules():
        for key, b in list(buffer_owner._buffers.items()):
            if b is not None and b.is_floating_point():
                buffer_owner._buffers[key] = b.to(dtype)


def build_base(shape: str, layers: int, dtype: torch.dtype, seed: int) -> nn.Module:
    config = SHAPES[shape]()
    if layers:
        if isinstance(config, GPT2Config):
            config.n_layer = layers
        else:
            config.num_hidden_layers = layers
    with no_default_init():
        model = GPT2(config) if isinstance(config, GPT2Config) else LlamaForCausalLM(config)
    random_weights(model, dtype, seed)
    return model


def main():
    parser = argparse.ArgumentParser(description="PyTorch LoRA training-step baseline (CPU)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--layers", type=int, default=0, help="override the shape's layer count (0: keep it)")
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--targets", default=ALL_LINEAR, help='"all-linear" or a comma list of module names')
    parser.add_argument("--rslora", action="store_true", help="scaling alpha / sqrt(r) instead of alpha / r")
    parser.add_argument("--base-dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--full", action="store_true", help="full fine-tuning of a float32 base (no adapter)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps before timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("r", "batch", "seq", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, received {getattr(args, name)}")
    if args.layers < 0 or args.warmup < 0:
        parser.error(f"--layers and --warmup: expected integers >= 0, received {args.layers} and {args.warmup}")
    targets = ALL_LINEAR if args.targets == ALL_LINEAR else [t for t in args.targets.split(",") if t]
    if args.full and args.base_dtype != "float32":
        parser.error(f"--full: trains a float32 base, received --base-dtype {args.base_dtype}")
    if not targets:
        parser.error(f'--targets: expected "all-linear" or a comma list of module names, received {args.targets!r}')

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = build_base(args.shape, args.layers, DTYPES[args.base_dtype], args.seed)
    max_positions = base.config.n_positions if isinstance(base, GPT2) else base.config.max_position_embeddings
    if args.seq > max_positions:
        parser.error(f"--seq: expected at most {max_positions} for {args.shape}, received {args.seq}")
    settings = LoraSettings(r=args.r, lora_alpha=args.alpha, target_modules=targets, use_rslora=args.rslora)
    g = torch.Generator().manual_seed(args.seed + 1)
    if args.full:
        model, lora_modules = base, 0
    else:
        try:
            model = LoraModel(base, settings, adapter_dtype=torch.float32)
        except ValueError as e:
            parser.error(f"--targets: {e}")
        lora_modules = len(model.lora_layers)
        with torch.no_grad():
            for key, p in model.peft_tensors().items():
                # PEFT's init: A kaiming-uniform(a=sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), B = 0
                if key.endswith("lora_A.weight"):
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / p.shape[1] ** 0.5)
                else:
                    p.zero_()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(decay_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
    vocab = base.config.vocab_size
    rows = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=g)
    tokens, targets_batch = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets_batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return loss.item()

    timed = time_training_steps(step, args.batch * args.seq, args.warmup, args.steps)
    print(json.dumps({
        "impl": "pytorch", "mode": "full" if args.full else "lora", **timed, "peak_rss_mb": peak_rss_mb(),
        "shape": args.shape, "base_dtype": args.base_dtype, "batch": args.batch, "seq": args.seq,
        "lora": {"r": args.r, "alpha": args.alpha, "rslora": args.rslora, "scaling": settings.scaling,
                 "targets": targets, "modules": lora_modules} if not args.full else None,
        "params": sum(p.numel() for p in model.parameters()), "trainable_params": sum(p.numel() for p in trainable),
        "torch_version": torch.__version__, "blas": loaded_blas(), "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
