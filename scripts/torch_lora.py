"""LoRA in plain PyTorch over the float64-capable decoders of scripts/torch_gpt2.py and scripts/torch_llama.py,
written from PEFT's formulas (no `peft`, no `transformers`; the facts are in ../shared/specs/lora-gguf-ddp.md §1):

    y = base(x) + scaling * lora_B(lora_A(dropout(x)))      scaling = alpha / r, or alpha / sqrt(r) (rsLoRA)
    lora_A: nn.Linear(in, r) weight (r, in);  lora_B: nn.Linear(r, out) weight (out, r)   (also for GPT-2's Conv1D)
    merge:  W_linear (out, in) += scaling * B @ A;   Conv1D W (in, out) += scaling * (B @ A)^T

Module keys are Hugging Face's module paths (transformer.h.0.attn.c_attn for GPT2LMHeadModel,
model.layers.0.self_attn.q_proj for the Llama family). A target entry matches a key equal to it or ending in
"." + entry; "all-linear" takes every Linear/Conv1D but the LM head. The base is frozen. modules_to_save:
"lm_head" becomes a trainable copy of the output projection (for a tied head too: PEFT's ModulesToSaveWrapper
deep-copies lm_head, so the copy trains and the embedding stays frozen); any other entry makes a trainable
copy of the matching modules. Tensors are named as PEFT's save_pretrained names them:
base_model.model.<key>.lora_A.weight / .lora_B.weight and base_model.model.<key>.<param> for the copies.

Used by scripts/make_lora_fixtures.py and bench/torch_lora_baseline.py.
"""
import copy
import math
import types
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn

from torch_gpt2 import GPT2, Conv1D

PEFT_PREFIX = "base_model.model."
ALL_LINEAR = "all-linear"
HEAD = "lm_head"


@dataclass
class LoraSettings:
    r: int
    lora_alpha: float
    target_modules: Union[str, List[str]]      # a list of names, or "all-linear"
    use_rslora: bool = False
    lora_dropout: float = 0.0                  # on the adapter's input only
    modules_to_save: Optional[List[str]] = None

    @property
    def scaling(self) -> float:
        return self.lora_alpha / math.sqrt(self.r) if self.use_rslora else self.lora_alpha / self.r


def target_matches(key: str, entries: List[str]) -> bool:
    """PEFT's rule for a list of names: the key equals an entry or ends with "." + entry."""
    return any(key == e or key.endswith("." + e) for e in entries)


def hf_module_prefix(model: nn.Module) -> str:
    """What Hugging Face's *ForCausalLM puts before this model's own module names: GPT2LMHeadModel keeps the
    decoder under `transformer.`; torch_llama already uses the HF names (model.layers..., lm_head)."""
    return "transformer." if isinstance(model, GPT2) else ""


def is_conv1d(module: nn.Module) -> bool:
    return isinstance(module, Conv1D)


def linear_layers(model: nn.Module) -> Dict[str, str]:
    """HF module key -> own module name of every Linear/Conv1D but the LM head (the "all-linear" set)."""
    prefix = hf_module_prefix(model)
    return {prefix + name: name for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, Conv1D)) and name != HEAD}


class LoraLayer(nn.Module):
    """A frozen base Linear/Conv1D plus scaling * B(A(dropout(x))). in/out come from the base weight:
    Conv1D stores (in, out), nn.Linear (out, in); A and B are nn.Linear weights either way, of adapter_dtype
    (the base's by default). As PEFT does for a bf16 base with float32 adapters, the adapter path runs in its
    own dtype and its output is cast to the base output's."""

    def __init__(self, base_layer: nn.Module, r: int, scaling: float, dropout: float,
                 adapter_dtype: Optional[torch.dtype] = None):
        super().__init__()
        w = base_layer.weight
        n_in, n_out = (w.shape[0], w.shape[1]) if is_conv1d(base_layer) else (w.shape[1], w.shape[0])
        dtype = adapter_dtype or w.dtype
        self.base_layer = base_layer
        self.lora_A = nn.Linear(n_in, r, bias=False, dtype=dtype)       # weight (r, in)
        self.lora_B = nn.Linear(r, n_out, bias=False, dtype=dtype)      # weight (out, r)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        delta = self.lora_B(self.lora_A(self.dropout(x.to(self.lora_A.weight.dtype)))) * self.scaling
        return result + delta.to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A in the base weight's own layout ((in, out) for Conv1D: fan_in_fan_out)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling           # (out, in)
        return delta.t() if is_conv1d(self.base_layer) else delta


class SavedHead(nn.Module):
    """modules_to_save's trainable copy of the output projection, weight (V, C)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())


def _saved_head_weight(model: nn.Module) -> torch.Tensor:
    return model.saved_head.weight


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class LoraModel(nn.Module):
    """The base decoder (torch_gpt2.GPT2 or torch_llama.LlamaForCausalLM) with LoRA layers installed in place
    and every base tensor frozen. forward(tokens, targets) is the base model's. Adapter weights start as
    nn.Linear's defaults; load_peft_state sets them. adapter_dtype: the adapters' dtype (default the base's; the
    saved head copy keeps the base head's)."""

    def __init__(self, base: nn.Module, settings: LoraSettings, adapter_dtype: Optional[torch.dtype] = None):
        super().__init__()
        if settings.r <= 0:
            raise ValueError(f"r: expected a positive integer, received {settings.r}")
        self.base = base
        self.settings = settings
        for p in base.parameters():
            p.requires_grad_(False)
        prefix = hf_module_prefix(base)
        linear = linear_layers(base)
        if settings.target_modules == ALL_LINEAR:
            targets = list(linear)
        else:
            entries = list(settings.target_modules)
            targets = [key for key in linear if target_matches(key, entries)]
            unknown = [e for e in entries if not any(target_matches(key, [e]) for key in linear)]
            if unknown:
                raise ValueError(f"target_modules: {unknown} match no module; the linear modules are {sorted(linear)}")
        self.lora_layers: Dict[str, LoraLayer] = {}
        for key in targets:
            layer = LoraLayer(base.get_submodule(linear[key]), settings.r, settings.scaling, settings.lora_dropout,
                              adapter_dtype)
            _set_submodule(base, linear[key], layer)
            self.lora_layers[key] = layer
        # modules_to_save: the head through head_weight() (a bound method, so copy.deepcopy of the whole model
        # rebinds it to the copy), any other matching module as a trainable deep copy in its place.
        self.saved_modules: Dict[str, nn.Module] = {}
        for entry in settings.modules_to_save or []:
            if entry == HEAD:
                base.saved_head = SavedHead(base.head_weight())
                base.head_weight = types.MethodType(_saved_head_weight, base)
                self.saved_modules[HEAD] = base.saved_head
                continue
            names = [n for n, _ in base.named_modules() if n and target_matches(prefix + n, [entry])]
            if not names:
                raise ValueError(f"modules_to_save: {entry!r} matches no module")
            for name in names:
                clone = copy.deepcopy(base.get_submodule(name))
                for p in clone.parameters():
                    p.requires_grad_(True)
                _set_submodule(base, name, clone)
                self.saved_modules[prefix + name] = clone

    def forward(self, tokens: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return self.base(tokens, targets)

    def peft_tensors(self) -> Dict[str, nn.Parameter]:
        """PEFT save_pretrained key -> the trainable parameter itself."""
        out = {}
        for key, layer in self.lora_layers.items():
            out[f"{PEFT_PREFIX}{key}.lora_A.weight"] = layer.lora_A.weight
            out[f"{PEFT_PREFIX}{key}.lora_B.weight"] = layer.lora_B.weight
        for key, module in self.saved_modules.items():
            for pname, p in module.named_parameters():
                out[f"{PEFT_PREFIX}{key}.{pname}"] = p
        return out

    def load_peft_state(self, state: Dict[str, torch.Tensor]) -> None:
        own = self.peft_tensors()
        if set(state) != set(own):
            raise KeyError(f"adapter tensors: missing {sorted(set(own) - set(state))}, "
                           f"unexpected {sorted(set(state) - set(own))}")
        with torch.no_grad():
            for key, p in own.items():
                if tuple(state[key].shape) != tuple(p.shape):
                    raise ValueError(f"{key}: expected shape {tuple(p.shape)}, got {tuple(state[key].shape)}")
                p.copy_(state[key].to(p.dtype))

    def checkpoint_name(self, key: str) -> str:
        """The base checkpoint's tensor-name prefix for an HF module key (GPT-2's original checkpoint has no
        `transformer.` prefix)."""
        prefix = hf_module_prefix(self.base)
        return key[len(prefix):] if key.startswith(prefix) else key

    def merged_tensors(self) -> Dict[str, torch.Tensor]:
        """Base checkpoint name -> value after merging, for every tensor the merge changes: W + delta for each
        LoRA layer (in the checkpoint's layout), and the saved copies (lm_head.weight for the head, which
        then no longer equals the embedding: a merged tied model gets an untied head)."""
        out = {}
        with torch.no_grad():
            for key, layer in self.lora_layers.items():
                out[self.checkpoint_name(key) + ".weight"] = layer.base_layer.weight + layer.delta_weight()
            for key, module in self.saved_modules.items():
                for pname, p in module.named_parameters():
                    out[f"{self.checkpoint_name(key)}.{pname}"] = p.detach().clone()
        return out

    def config_target_modules(self) -> List[str]:
        """target_modules as PEFT saves them: the entries given (a set, written as a list), or for
        "all-linear" the full keys it expanded to; sorted here so the file is reproducible."""
        if self.settings.target_modules == ALL_LINEAR:
            return sorted(self.lora_layers)
        return sorted(set(self.settings.target_modules))
