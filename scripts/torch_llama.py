"""The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM2) in plain PyTorch, written from the
definitions (no `transformers`), computing what Hugging Face's *ForCausalLM models compute without dropout.
Parameters carry Hugging Face's names and nn.Linear layout (weight (out, in)):

    model.embed_tokens.weight                            (V, C)
    model.layers.{l}.input_layernorm.weight              (C)
    model.layers.{l}.self_attn.q_proj.{weight, bias}     (NH*HS, C), (NH*HS)     bias: attention_bias / Qwen2
    model.layers.{l}.self_attn.k_proj.{weight, bias}     (NKV*HS, C), (NKV*HS)
    model.layers.{l}.self_attn.v_proj.{weight, bias}     (NKV*HS, C), (NKV*HS)
    model.layers.{l}.self_attn.o_proj.{weight, bias}     (C, NH*HS), (C)         bias: Llama's attention_bias only
    model.layers.{l}.self_attn.{q_norm, k_norm}.weight   (HS)                    Qwen3 only
    model.layers.{l}.post_attention_layernorm.weight     (C)
    model.layers.{l}.mlp.{gate, up}_proj.{weight, bias}  (F, C), (F)             bias: mlp_bias
    model.layers.{l}.mlp.down_proj.{weight, bias}        (C, F), (C)
    model.norm.weight                                    (C)
    lm_head.weight                                       (V, C)                  absent when tie_word_embeddings

Block: x += o_proj(attn(rope(qk_norm(qkv(rmsnorm(x)))))); x += down(silu(gate(h)) * up(h)), h = rmsnorm(x).
Used by scripts/make_llama_fixtures.py (reference outputs for gptune's tests) and bench/torch_llama_baseline.py.
Attention.prob_dropout (None: none, as in eval mode) is a callable applied to the attention probabilities
(softmax output, before @ v) in the eager path, where transformers applies attention_dropout in train
mode; scripts/make_dropout_fixtures.py sets it to draw gptune's masks.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass
class LlamaConfig:
    vocab_size: int = 49152                # V
    hidden_size: int = 576                 # C, the residual stream width
    intermediate_size: int = 1536          # F, the SwiGLU hidden width
    num_hidden_layers: int = 30
    num_attention_heads: int = 9           # NH
    num_key_value_heads: int = 3           # NKV; query head h reads kv head h // (NH / NKV)
    head_dim: Optional[int] = None         # HS; None means C / NH
    max_position_embeddings: int = 2048   # longest position the rotary tables cover
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None    # None, {"rope_type"|"type": "linear", "factor"} or llama3's dict
    qkv_bias: bool = False                 # q/k/v_proj biases: Llama's attention_bias, always on for Qwen2
    o_bias: bool = False                   # o_proj bias: Llama's and Qwen3's attention_bias (never Qwen2's)
    mlp_bias: bool = False                 # gate/up/down biases (Llama's mlp_bias)
    qk_norm: bool = False                  # Qwen3: RMSNorm over HS on every q and k head before RoPE
    tie_word_embeddings: bool = True       # lm_head shares embed_tokens.weight
    sliding_window: Optional[int] = None   # Mistral: key j is visible from query i when 0 <= i - j < window
    # "eager": the explicit masked softmax (the fixtures); "sdpa": F.scaled_dot_product_attention on the
    # repeated K/V heads, as transformers' sdpa path, for the GPU benchmark (bench/gpu_torch.py). Without a
    # cache only, and only where the window does not bind; elsewhere the eager path runs.
    attn_implementation: str = "eager"

    @property
    def hs(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads

    @staticmethod
    def from_hf_dict(d: dict) -> "LlamaConfig":
        """A config.json as transformers writes it for model_type llama, mistral, qwen2 or qwen3."""
        model_type = d["model_type"]
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type: expected one of {SUPPORTED_MODEL_TYPES}, got {model_type!r}")
        attention_bias = bool(d.get("attention_bias", False))
        sliding_window = d.get("sliding_window")
        if model_type in ("qwen2", "qwen3") and not d.get("use_sliding_window", False):
            sliding_window = None  # Qwen writes a window it does not use unless use_sliding_window
        return LlamaConfig(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"], num_attention_heads=d["num_attention_heads"],
            num_key_value_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
            head_dim=d.get("head_dim"), max_position_embeddings=d["max_position_embeddings"],
            rms_norm_eps=d["rms_norm_eps"], rope_theta=float(d.get("rope_theta", 10000.0)),
            rope_scaling=d.get("rope_scaling"),
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=attention_bias if model_type in ("llama", "qwen3") else False,
            mlp_bias=bool(d.get("mlp_bias", False)) if model_type == "llama" else False,
            qk_norm=model_type == "qwen3",
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),  # all four classes default to False
            sliding_window=sliding_window)


def rope_inv_freq(config: LlamaConfig) -> torch.Tensor:
    """Rotary frequencies (HS/2,) in float64: theta^(-2i/HS), then rope_scaling applied.
    linear: every frequency divided by factor (positions stretched by factor).
    llama3: with wavelength w = 2 pi / f, L = original_max_position_embeddings,
      w > L / low_freq_factor  (long waves):   f / factor
      w < L / high_freq_factor (short waves):  f unchanged
      otherwise: (1 - s) f / factor + s f with s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor)."""
    hs = config.hs
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_len / wavelen - low) / (high - low)
        medium = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        out = torch.where(wavelen > old_len / low, inv_freq / factor, medium)
        return torch.where(wavelen < old_len / high, inv_freq, out)
    raise ValueError(f"rope_scaling.rope_type: expected linear or llama3, got {kind!r}")


def rope_cos_sin(config: LlamaConfig, positions: torch.Tensor, dtype: torch.dtype):
    """cos, sin (T, HS) for integer positions (T,): angles in float64 then rounded to dtype; both halves of
    a head use the same angle table (Hugging Face's rotate-half layout)."""
    angles = positions.cpu().to(torch.float64)[:, None] * rope_inv_freq(config)[None, :]   # (T, HS/2)
    angles = torch.cat([angles, angles], dim=-1)                                              # (T, HS)
    return (angles.cos().to(device=positions.device, dtype=dtype),
            angles.sin().to(device=positions.device, dtype=dtype))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, T, HS): x[i] pairs with x[i + HS/2]; rotate by the position's angle."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class KVCache:
    """Keys and values of every layer seen so far: per layer (B, NKV, past, HS) after RoPE."""

    def __init__(self, n_layers: int):
        self.keys: List[Optional[torch.Tensor]] = [None] * n_layers
        self.values: List[Optional[torch.Tensor]] = [None] * n_layers
        self.length = 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        C, NH, NKV, HS = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.hs
        if NH % NKV:
            raise ValueError(f"num_attention_heads {NH} is not a multiple of num_key_value_heads {NKV}")
        self.config, self.layer = config, layer
        # registration order = Hugging Face's state-dict order (it decides how a checkpoint is sharded)
        self.q_proj = nn.Linear(C, NH * HS, bias=config.qkv_bias)
        self.k_proj = nn.Linear(C, NKV * HS, bias=config.qkv_bias)
        self.v_proj = nn.Linear(C, NKV * HS, bias=config.qkv_bias)
        self.o_proj = nn.Linear(NH * HS, C, bias=config.o_bias)
        if config.qk_norm:
            self.q_norm = RMSNorm(HS, config.rms_norm_eps)
            self.k_norm = RMSNorm(HS, config.rms_norm_eps)
        self.prob_dropout = None

    def forward(self, x: torch.Tensor, cos, sin, cache: Optional[KVCache]) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.config
        NH, NKV, HS = c.num_attention_heads, c.num_key_value_heads, c.hs
        q = self.q_proj(x).view(B, T, NH, HS)
        k = self.k_proj(x).view(B, T, NKV, HS)
        v = self.v_proj(x).view(B, T, NKV, HS).transpose(1, 2)                # (B,NKV,T,HS)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q.transpose(1, 2), cos, sin)                            # (B,NH,T,HS)
        k = apply_rope(k.transpose(1, 2), cos, sin)                            # (B,NKV,T,HS)
        past = cache.length if cache is not None else 0
        if cache is not None:
            k, v = cache.extend(self.layer, k, v)                              # (B,NKV,past+T,HS)
        group = NH // NKV
        k = k.repeat_interleave(group, dim=1)                                  # (B,NH,past+T,HS)
        v = v.repeat_interleave(group, dim=1)
        window_binds = c.sliding_window is not None and c.sliding_window < past + T
        if c.attn_implementation == "sdpa" and cache is None and not window_binds:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)          # (B,NH,T,HS)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, NH * HS))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(HS)                     # (B,NH,T,past+T)
        query_pos = torch.arange(past, past + T, device=x.device)[:, None]
        key_pos = torch.arange(past + T, device=x.device)[None, :]
        visible = key_pos <= query_pos
        if c.sliding_window is not None:
            visible = visible & (query_pos - key_pos < c.sliding_window)
        att = F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        if self.prob_dropout is not None:
            att = self.prob_dropout(att)
        y = (att @ v).transpose(1, 2).reshape(B, T, NH * HS)                   # heads side by side
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        C, Fw = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(C, Fw, bias=config.mlp_bias)
        self.up_proj = nn.Linear(C, Fw, bias=config.mlp_bias)
        self.down_proj = nn.Linear(Fw, C, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.self_attn = Attention(config, layer)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Hugging Face's `model.` submodule: embeddings, layers, final norm."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(config, l) for l in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = Decoder(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def head_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight

    def forward(self, tokens: torch.Tensor, targets: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None):
        """tokens (B,T) int64 at positions cache.length + t (0 + t without a cache). targets (B,T) int64,
        ALREADY SHIFTED: targets[b,t] is the token position t should predict; -100 = not scored.
        Returns (logits (B,T,V), mean cross-entropy over scored positions or None); with a cache, the
        keys/values of these tokens are appended to it."""
        B, T = tokens.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_position_embeddings:
            raise ValueError(f"position {past + T - 1} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        x = self.model.embed_tokens(tokens)                                    # (B,T,C)
        cos, sin = rope_cos_sin(self.config, torch.arange(past, past + T, device=tokens.device), x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin, cache)
        if cache is not None:
            cache.length += T
        logits = self.model.norm(x) @ self.head_weight().t()                  # (B,T,V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=IGNORE_INDEX)
        return logits, loss

    def hf_state(self) -> "dict[str, torch.Tensor]":
        """Tensors exactly as a transformers safetensors checkpoint holds them, in its state-dict order (no
        lm_head.weight when tied: save_pretrained drops the shared copy)."""
        return {name: p.detach() for name, p in self.named_parameters()}

    def load_hf_state(self, state: "dict[str, torch.Tensor]") -> None:
        own = dict(self.named_parameters())
        unexpected = [n for n in state if n not in own and not (n == "lm_head.weight" and self.config.tie_word_embeddings)]
        if unexpected:
            raise KeyError(f"unexpected tensors: {unexpected}")
        missing = [n for n in own if n not in state]
        if missing:
            raise KeyError(f"missing tensors: {missing}")
        with torch.no_grad():
            for name, p in own.items():
                if tuple(p.shape) != tuple(state[name].shape):
                    raise ValueError(f"{name}: expected shape {tuple(p.shape)}, got {tuple(state[name].shape)}")
                p.copy_(state[name].to(p.dtype))


@torch.no_grad()
def generate_greedy(model: LlamaForCausalLM, prompt: List[int], n_new: int, use_cache: bool):
    """Batch-1 greedy argmax for n_new tokens, no EOS stop. With use_cache: one prefill of the prompt, then
    one token per step against the KV cache; without: a full forward over the whole sequence each step.
    Returns (new token ids, the smallest top-2 logit gap over the steps)."""
    ids = list(prompt)
    cache = KVCache(model.config.num_hidden_layers) if use_cache else None
    step_input = ids
    margins = []
    for _ in range(n_new):
        logits, _ = model(torch.tensor([step_input if use_cache else ids]), None, cache)
        last = logits[0, -1]
        top2 = torch.topk(last, 2).values
        margins.append((top2[0] - top2[1]).item())
        ids.append(int(torch.argmax(last)))
        step_input = ids[-1:]
    return ids[len(prompt):], min(margins)
