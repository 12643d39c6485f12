"""GPT-2 in plain PyTorch, written to compute exactly what Hugging Face's GPT2LMHeadModel computes
(in eval mode: no dropout, unless a script sets the dropout hooks below), with parameter names and
layouts of the original OpenAI/HF checkpoint:

    wte.weight (V,C)   wpe.weight (maxT,C)
    h.{l}.ln_1.{weight,bias} (C)
    h.{l}.attn.c_attn.{weight (C,3C), bias (3C)}    Conv1D: y = x @ W + b, W stored [in, out]
    h.{l}.attn.c_proj.{weight (C,C),  bias (C)}
    h.{l}.ln_2.{weight,bias} (C)
    h.{l}.mlp.c_fc.{weight (C,4C),   bias (4C)}
    h.{l}.mlp.c_proj.{weight (4C,C), bias (C)}
    ln_f.{weight,bias} (C)
    lm_head: tied to wte (logits = x @ wte^T), no separate tensor

Used by scripts/make_fixtures.py (reference outputs for gptune's tests) and bench/torch_baseline.py.
Dropout hooks (None: none, as in eval mode), set by scripts/make_dropout_fixtures.py to draw gptune's
masks where transformers' nn.Dropout layers sit in train mode: GPT2.embd_dropout (on wte + wpe),
CausalSelfAttention.prob_dropout (on the softmax output, before @ v), Block.attn_out_dropout and
Block.mlp_out_dropout (on each branch's output, before its residual add). Each is a callable x -> x.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPT2Config:
    vocab_size: int = 50257        # GPT-2's BPE vocabulary incl. <|endoftext|>
    n_positions: int = 1024        # longest sequence the position table covers
    n_embd: int = 768              # C, the residual stream width
    n_layer: int = 12
    n_head: int = 12               # NH; head size hs = C / NH
    n_inner: Optional[int] = None  # MLP hidden width; None means 4*C as in GPT-2
    layer_norm_epsilon: float = 1e-5
    # False: HF's explicit gelu_new formula (the fixtures). True: F.gelu(approximate="tanh"), the same
    # function in one fused kernel (max difference ~2e-7), for the speed baseline.
    fused_gelu: bool = False

    @property
    def inner(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @staticmethod
    def from_hf_dict(d: dict) -> "GPT2Config":
        return GPT2Config(vocab_size=d["vocab_size"], n_positions=d["n_positions"], n_embd=d["n_embd"],
                          n_layer=d["n_layer"], n_head=d["n_head"], n_inner=d.get("n_inner"),
                          layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5))


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    # HF 'gelu_new' = GPT-2's tanh approximation of GELU
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """GPT-2's 'Conv1D' is a linear layer whose weight is stored [in, out]: y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))  # (in, out)
        self.bias = nn.Parameter(torch.empty(n_out))          # (out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        # The original checkpoint carries these two buffers; they are constants, not parameters.
        n = config.n_positions
        self.register_buffer("bias", torch.tril(torch.ones(n, n)).view(1, 1, n, n), persistent=False)
        self.register_buffer("masked_bias", torch.tensor(-1e4), persistent=False)
        self.prob_dropout = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        qkv = self.c_attn(x)                                   # (B,T,3C), order q | k | v
        q, k, v = qkv.split(C, dim=2)                          # each (B,T,C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)      # (B,NH,T,hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)     # (B,NH,T,T)
        causal = self.bias[:, :, :T, :T].to(torch.bool)
        # HF fills with finfo.min (older versions -1e4); after softmax both give exactly 0 weight
        # in float32/float64 because every row keeps its diagonal, so -inf is equivalent here.
        scores = scores.masked_fill(~causal, float("-inf"))
        att = F.softmax(scores, dim=-1)
        if self.prob_dropout is not None:
            att = self.prob_dropout(att)
        y = att @ v                                            # (B,NH,T,hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)       # heads re-interleaved: (B,T,C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner)
        self.c_proj = Conv1D(config.inner, config.n_embd)
        self.fused_gelu = config.fused_gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)                                       # (B,T,inner)
        h = F.gelu(h, approximate="tanh") if self.fused_gelu else gelu_new(h)
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)
        self.attn_out_dropout = None
        self.mlp_out_dropout = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.ln_1(x))
        x = x + (a if self.attn_out_dropout is None else self.attn_out_dropout(a))
        m = self.mlp(self.ln_2(x))
        x = x + (m if self.mlp_out_dropout is None else self.mlp_out_dropout(m))
        return x


class GPT2(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.embd_dropout = None

    def head_weight(self) -> torch.Tensor:
        """The output projection (V,C): GPT-2 ties it to wte (scripts/torch_lora.py swaps in a trainable copy,
        as PEFT's modules_to_save does)."""
        return self.wte.weight

    def forward(self, tokens: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """tokens (B,T) int64. targets (B,T) int64, ALREADY SHIFTED: targets[b,t] is the token that
        position t should predict (normally tokens[b,t+1]); -100 means 'not scored'.
        Returns (logits (B,T,V), loss or None). Loss = mean cross-entropy over scored positions."""
        B, T = tokens.shape
        if T > self.config.n_positions:
            raise ValueError(f"sequence length {T} exceeds n_positions {self.config.n_positions}")
        positions = torch.arange(T, device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)             # (B,T,C)
        if self.embd_dropout is not None:
            x = self.embd_dropout(x)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.head_weight().t()                    # tied lm_head: (B,T,V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    def hf_state(self, with_buffers: bool = True) -> "dict[str, torch.Tensor]":
        """Parameters under the original gpt2 names ([in,out] Conv1D layout), optionally with the
        attn.bias / attn.masked_bias buffers the original checkpoint carries."""
        state = {name: p.detach() for name, p in self.named_parameters()}
        if with_buffers:
            for l, block in enumerate(self.h):
                state[f"h.{l}.attn.bias"] = block.attn.bias.detach()
                state[f"h.{l}.attn.masked_bias"] = block.attn.masked_bias.detach()
        return state

    def load_hf_state(self, state: "dict[str, torch.Tensor]") -> None:
        """Accepts original names or save_pretrained names ('transformer.' prefix, lm_head.weight)."""
        own = dict(self.named_parameters())
        seen = set()
        for name, tensor in state.items():
            key = name[len("transformer."):] if name.startswith("transformer.") else name
            if key == "lm_head.weight" or key.endswith(".attn.bias") or key.endswith(".attn.masked_bias"):
                continue
            if key not in own:
                raise KeyError(f"unexpected tensor {name}")
            if tuple(own[key].shape) != tuple(tensor.shape):
                raise ValueError(f"{name}: expected shape {tuple(own[key].shape)}, got {tuple(tensor.shape)}")
            with torch.no_grad():
                own[key].copy_(tensor.to(own[key].dtype))
            seen.add(key)
        missing = set(own) - seen
        if missing:
            raise KeyError(f"missing tensors: {sorted(missing)}")

