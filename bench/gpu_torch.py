"""PyTorch side of the GPU benchmark (bench/gpu.ts): the same matmul shapes, attention at the same
size, and one GPT-2 124M training step (B=16, T=1024, bf16 autocast), on the GPU machine's own
PyTorch (2.x, cuBLAS/cuBLASLt, flash SDPA), and one SmolLM2-135M-shaped training step (30 layers,
width 576, 9 heads on 3 KV heads, FFN 1536, vocab 49152, tied; B=16, T=1024, bf16 autocast) on the
independent Llama of scripts/torch_llama.py with its SDPA attention (K/V heads repeated, then flash, as
transformers' sdpa path; checked against its eager attention once in fp32 first). --sections picks
parts. Run it first, then pass its output to bench/gpu.ts:

    python3 bench/gpu_torch.py --json $OUT/torch.json      # ~1-2 minutes on an H100
    node dist/bench/gpu.js --torch $OUT/torch.json

Timing: CUDA events around batches of calls after warm-up, median of the batches. Inputs are
random (never zeros). The training step is what a speed-minded PyTorch user writes without
torch.compile: nn.Linear, F.scaled_dot_product_attention (flash), fused tanh-GELU, bf16 autocast,
fused AdamW; --compile adds torch.compile (slow to start: it costs device time).
Prints a table and one JSON line {"bench": "gpu_torch", "results": {...}}, whose keys bench/gpu.ts
looks up (matmul_bf16_8192, linear_bf16_mlp.c_fc_fwd, sdpa_fwd_ms, ...).
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from torch_llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

SECTIONS = ("kernels", "gpt2", "llama")
# SmolLM2-135M's shape (its config.json; rope_theta changes no FLOP), gptune's `new:smollm2-135m`.
SMOLLM2_135M = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                           num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                           rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
                           attn_implementation="sdpa")


def time_ms(fn, per_batch=10, batches=5, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(per_batch):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / per_batch)
    return statistics.median(samples)


# ---- a GPT-2 for the GPU (nn.Linear weights are (out, in), like gptune's) ----
class Attention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        shape = (B, T, self.n_head, C // self.n_head)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.c_fc, self.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, n_layer=12, n_head=12, n_embd=768, vocab=50257, n_positions=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(n_positions, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied lm head
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def time_train_step(args, model, loss_of, vocab, batch, label, suffix, record_step, betas):
    """One training step (forward, backward, clip_grad_norm_(1.0), fused AdamW; bf16 autocast) on random
    (batch, 1024) tokens, timed as time_ms times kernels; loss_of(tokens, targets) is the mean cross-entropy."""
    dev = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=betas, eps=1e-8, fused=True)
    step_loss = torch.compile(loss_of) if args.compile else loss_of
    tokens = torch.randint(0, vocab, (batch, 1024), device=dev)
    targets = torch.randint(0, vocab, (batch, 1024), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_loss(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    ms = time_ms(step, per_batch=max(1, args.steps // 2), batches=3, warmup=3)
    record_step(label, suffix, ms, batch * 1024, torch.cuda.max_memory_allocated() / 2 ** 30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="also write the JSON line to this file")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (same as bench/gpu.ts --quick)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training model")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset of kernels (ceilings, GPT-2 linears, SDPA), gpt2 (GPT-2 124M/350M "
                         "training steps), llama (SmolLM2-135M training step)")
    args = ap.parse_args()
    sections = args.sections.split(",")
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        ap.error(f"--sections: expected names from {','.join(SECTIONS)}, received {','.join(unknown)}")
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_torch", "skipped": "no CUDA device"}))
        return
    dev = torch.device("cuda")
    torch.manual_seed(0)
    results, rows = {}, []

    def record(key, name, ms, rate, unit):
        results[key] = rate if unit != "ms" else ms
        rows.append((name, ms, rate, unit))

    def record_step(label, suffix, ms, tokens_per_step, peak_gib):
        results["train_step_ms" + suffix] = ms
        results["train_tokens_per_s" + suffix] = tokens_per_step / ms * 1e3
        results["peak_memory_gib" + suffix] = peak_gib
        rows.append((f"{label} train step B={tokens_per_step // 1024} T=1024 bf16{' compiled' if args.compile else ''}",
                     ms, tokens_per_step / ms * 1e3, "tok/s"))

    if "kernels" in sections:
        # Ceilings: device copy (bytes read + written) and a large matmul.
        n = 256 << 20
        src, dst = torch.randn(n, device=dev), torch.empty(n, device=dev)
        ms = time_ms(lambda: dst.copy_(src), 5, 5)
        record("copy_gbs", "device copy 1 GiB", ms, 2 * n * 4 / ms / 1e6, "GB/s")
        del src, dst
        size = 4096 if args.quick else 8192
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as gptune's fp32 path
            a, b = torch.randn(size, size, device=dev, dtype=dtype), torch.randn(size, size, device=dev, dtype=dtype)
            ms = time_ms(lambda: a @ b.t(), 5 if precision == "bf16" else 2, 3)
            record(f"matmul_{precision}_{size}", f"matmul {precision} {size}^3", ms, 2 * size ** 3 / ms / 1e9, "TFLOP/s")
            del a, b

        # GPT-2 linear layers, N = B*T rows; backward = dinp and dweight (2x the forward's FLOPs).
        N = 4096 if args.quick else 16384
        shapes = [("attn.c_attn", 768, 2304), ("attn.c_proj", 768, 768), ("mlp.c_fc", 768, 3072),
                  ("mlp.c_proj", 3072, 768), ("lm_head", 768, 50257)]
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            for name, C, OC in shapes:
                x = torch.randn(N, C, device=dev, dtype=dtype)
                w, bias = torch.randn(OC, C, device=dev, dtype=dtype) * 0.02, torch.randn(OC, device=dev, dtype=dtype)
                dout = torch.randn(N, OC, device=dev, dtype=dtype)
                flops = 2 * N * C * OC
                per = 10 if precision == "bf16" else 3
                ms = time_ms(lambda: F.linear(x, w, bias), per)
                record(f"linear_{precision}_{name}_fwd", f"{precision} {name} fwd {N}x{C}->{OC}", ms, flops / ms / 1e9, "TFLOP/s")
                ms = time_ms(lambda: (dout @ w, dout.t() @ x, dout.sum(0)), per)
                record(f"linear_{precision}_{name}_bwd", f"{precision} {name} bwd", ms, 2 * flops / ms / 1e9, "TFLOP/s")
                del x, w, bias, dout

        # Attention (flash SDPA, bf16; and fp32, whatever backend torch picks) at B=16, T=1024, NH=12, hs=64.
        B, T, NH, hs = (4 if args.quick else 16), 1024, 12, 64
        fwd_flops = 2 * 2 * B * NH * T * T * hs / 2
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            q, k, v = (torch.randn(B, NH, T, hs, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            def forward_only():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)

            ms = time_ms(forward_only, 5)
            key = "sdpa_fwd_ms" if precision == "bf16" else "sdpa_fp32_fwd_ms"
            record(key, f"sdpa {precision} forward B={B} T={T} NH={NH}", ms, fwd_flops / ms / 1e9, "ms")
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            grad = torch.randn_like(out)
            ms_bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), 3)
            key = "sdpa_bwd_ms" if precision == "bf16" else "sdpa_fp32_bwd_ms"
            record(key, f"sdpa {precision} backward", ms_bwd, 2.5 * fwd_flops / ms_bwd / 1e9, "ms")
            del q, k, v, out, grad

        # Grouped-query attention at SmolLM2-135M's shape (NH=9 on NKV=3, hs 64), bf16: K/V heads repeated,
        # then flash SDPA, as transformers' sdpa path (bench/gpu.ts's "GQA attention" rows).
        NH, NKV = 9, 3
        gqa_flops = 2 * 2 * B * NH * T * T * hs / 2
        q = torch.randn(B, NH, T, hs, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k, v = (torch.randn(B, NKV, T, hs, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))

        def gqa():
            return F.scaled_dot_product_attention(q, k.repeat_interleave(NH // NKV, dim=1),
                                                  v.repeat_interleave(NH // NKV, dim=1), is_causal=True)

        with torch.no_grad():
            ms = time_ms(gqa, 5)
        record("llama_sdpa_fwd_ms", f"sdpa GQA bf16 forward B={B} T={T} NH={NH} NKV={NKV}", ms, gqa_flops / ms / 1e9, "ms")
        out = gqa()
        grad = torch.randn_like(out)
        ms_bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), 3)
        record("llama_sdpa_bwd_ms", "sdpa GQA bf16 backward", ms_bwd, 2.5 * gqa_flops / ms_bwd / 1e9, "ms")
        del q, k, v, out, grad

    Bt = 4 if args.quick else 16
    if "gpt2" in sections:
        # GPT-2 training steps: forward + backward + clip + AdamW, bf16 autocast; 124M and 350M.
        for size, (n_layer, n_head, n_embd) in (("124M", (12, 12, 768)), ("350M", (24, 16, 1024))):
            model = GPT(n_layer=n_layer, n_head=n_head, n_embd=n_embd).to(dev)
            suffix = "" if size == "124M" else "_350m"
            time_train_step(args, model, lambda tokens, targets: model(tokens, targets), 50257, Bt,
                            f"GPT-2 {size}", suffix, record_step, betas=(0.9, 0.95))
            del model
            torch.cuda.empty_cache()
    if "llama" in sections:
        # The Llama family: SmolLM2-135M's shape on scripts/torch_llama.py's model with SDPA (flash) attention.
        config = dataclasses.replace(SMOLLM2_135M)
        model = LlamaForCausalLM(config).to(dev)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, std=0.02)
            # The SDPA path must compute what the eager path (the fixtures' one) computes: once, in fp32.
            sample = torch.randint(0, config.vocab_size, (2, 128), device=dev)
            losses = {}
            for impl in ("eager", "sdpa"):
                config.attn_implementation = impl
                losses[impl] = model(sample, sample)[1].item()
            results["llama_sdpa_vs_eager_rel"] = abs(losses["sdpa"] - losses["eager"]) / abs(losses["eager"])
            print(f"SmolLM2-135M fp32 loss, sdpa vs eager attention: {losses['sdpa']:.7f} vs {losses['eager']:.7f}")
        time_train_step(args, model, lambda tokens, targets: model(tokens, targets)[1], config.vocab_size, Bt,
                        "SmolLM2-135M", "_llama", record_step, betas=(0.9, 0.999))
        del model
        torch.cuda.empty_cache()

    name = torch.cuda.get_device_name()
    print(f"\nPyTorch {torch.__version__} on {name}")
    for label, ms, rate, unit in rows:
        print(f"{label:58s} {ms:9.3f} ms {rate:10.1f} {unit if unit != 'ms' else 'TFLOP/s'}")
    line = json.dumps({"bench": "gpu_torch", "device": name, "torch": torch.__version__, "results": results})
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
