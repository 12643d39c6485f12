"""Generates the LoRA reference fixtures under test/fixtures/ (see scripts/README.md, "LoRA fixtures").

    /usr/bin/python3 scripts/make_lora_fixtures.py [--out test/fixtures]

For every case in CASES, over an existing tiny base model (tiny-gpt2, tiny-llama, tiny-qwen2): an adapter folder
lora-<case>/ (adapter_config.json + adapter_model.safetensors, float32, as PEFT 0.20's save_pretrained writes
them) and its references lora-<case>-ref.json / lora-<case>-ref.safetensors (loss, every adapter gradient, 5
AdamW steps, the merged model's loss and weights), computed in float64 by scripts/torch_lora.py after checking
it against the merged-weights model. Everything is seeded; rerunning rewrites identical files.
"""
import argparse
import copy
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_training import ADAMW, f17, loss_and_grads, train  # noqa: E402
from safetensors_io import load_safetensors, save_safetensors  # noqa: E402
from torch_gpt2 import GPT2, GPT2Config  # noqa: E402
from torch_llama import IGNORE_INDEX, LlamaConfig, LlamaForCausalLM  # noqa: E402
from torch_lora import HEAD, PEFT_PREFIX, LoraModel, LoraSettings, is_conv1d  # noqa: E402

B = 2
TRAIN_STEPS = 5
PEFT_VERSION = "0.20.0"  # the release whose LoraConfig fields adapter_config.json lists
HEAD_NOISE = 0.02   # the saved head = the base's head + N(0, HEAD_NOISE), so it differs from the embedding
B_SPREAD = 0.1      # lora_B ~ N(0, B_SPREAD / scaling): the adapter moves each projection by ~10%

CASES = [
    # GPT-2 Conv1D layers, "all-linear" (every c_attn / attn.c_proj / c_fc / mlp.c_proj), fan_in_fan_out.
    dict(name="lora-gpt2", base="tiny-gpt2", T=8, seed=1201,
         settings=LoraSettings(r=4, lora_alpha=8, target_modules="all-linear")),
    # Llama with GQA and an untied head: all seven projections, rsLoRA (scaling 16 / sqrt 4 = 8).
    dict(name="lora-llama", base="tiny-llama", T=9, seed=1202,
         settings=LoraSettings(r=4, lora_alpha=16, use_rslora=True,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])),
    # Qwen2 (q/k/v biases, TIED head): q_proj and v_proj, plus the head as modules_to_save.
    dict(name="lora-qwen2", base="tiny-qwen2", T=7, seed=1203,
         settings=LoraSettings(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], modules_to_save=[HEAD])),
]


def load_base(folder: str):
    """The base model of a fixture folder, float64, and its config.json as a dict."""
    with open(os.path.join(folder, "config.json")) as f:
        config_json = json.load(f)
    if config_json["model_type"] == "gpt2":
        model = GPT2(GPT2Config.from_hf_dict(config_json))
    else:
        model = LlamaForCausalLM(LlamaConfig.from_hf_dict(config_json))
    model.load_hf_state(load_safetensors(os.path.join(folder, "model.safetensors")))
    return model.double(), config_json


def initial_adapter(model: LoraModel, seed: int) -> dict:
    """The adapter the fixtures start from, float32: A kaiming-uniform(a=sqrt 5) = U(-1/sqrt(in), 1/sqrt(in))
    as PEFT initialises it, B random (not PEFT's zeros: with B = 0 the gradient of A vanishes and the adapter
    changes nothing, so a wrong forward or A-gradient would go unnoticed), the saved head perturbed."""
    g = torch.Generator().manual_seed(seed)
    scaling = model.settings.scaling
    state = {}
    for key, p in model.peft_tensors().items():
        if key.endswith(".lora_A.weight"):
            bound = 1.0 / math.sqrt(p.shape[1])
            state[key] = (torch.rand(p.shape, generator=g, dtype=torch.float32) * 2 - 1) * bound
        elif key.endswith(".lora_B.weight"):
            state[key] = torch.randn(p.shape, generator=g, dtype=torch.float32) * (B_SPREAD / scaling)
        else:
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * HEAD_NOISE
            state[key] = p.detach().float() + noise
    return state


def adapter_config(model: LoraModel, base_path: str, fan_in_fan_out: bool) -> dict:
    """adapter_config.json as PEFT 0.20's save_pretrained writes it: asdict(LoraConfig) without runtime_config,
    every field with its value (defaults where the case sets nothing), inference_mode true."""
    s = model.settings
    return {
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
        "base_model_name_or_path": base_path, "bias": "none", "corda_config": None, "ensure_weight_tying": False,
        "eva_config": None, "exclude_modules": None, "fan_in_fan_out": fan_in_fan_out, "inference_mode": True,
        "init_lora_weights": True, "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": s.lora_alpha, "lora_bias": False, "lora_dropout": s.lora_dropout,
        "lora_ga_config": None, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": s.modules_to_save, "monteclora_config": None, "peft_type": "LORA",
        "peft_version": PEFT_VERSION, "qalora_group_size": 16, "r": s.r, "rank_pattern": {}, "revision": None,
        "target_modules": model.config_target_modules(), "target_parameters": None, "task_type": "CAUSAL_LM",
        "trainable_token_indices": None, "use_bdlora": None, "use_dora": False, "use_qalora": False,
        "use_rslora": s.use_rslora, "velora_config": None,
    }


def make_batch(vocab: int, T: int, seed: int):
    """B rows of T+1 seeded ids, targets the next tokens; 3 targets unscored (row 0 one inside, row 1 the
    last two, like padding)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, vocab, (B, T + 1), generator=g)
    tokens, targets = rows[:, :T].contiguous(), rows[:, 1:].contiguous()
    targets[0, 2] = IGNORE_INDEX
    targets[1, -2:] = IGNORE_INDEX
    return tokens, targets


def merged_model(base_folder: str, merged: dict):
    """A second, plain model: the base with the merged tensors written into its weights (no LoRA code); a
    saved head unties a tied model."""
    model, config_json = load_base(base_folder)
    if HEAD + ".weight" in merged and isinstance(model, LlamaForCausalLM) and model.config.tie_word_embeddings:
        untied = LlamaForCausalLM(LlamaConfig.from_hf_dict({**config_json, "tie_word_embeddings": False})).double()
        state = {**model.hf_state(), HEAD + ".weight": merged[HEAD + ".weight"]}
        untied.load_hf_state(state)
        model = untied
    if HEAD + ".weight" in merged and isinstance(model, GPT2):
        raise ValueError("a merged GPT-2 with a saved head needs an untied GPT-2, which torch_gpt2 has not")
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in merged.items():
            own[name].copy_(value)
    return model


def check_against_merged(lora: LoraModel, base_folder: str, tokens, targets, loss: float, grads: dict) -> dict:
    """The LoRA forward against the merged-weights forward (loss to 1e-12), and every adapter gradient against
    the one implied by the merged model's weight gradient G (Linear layout (out, in)): dA = s B^T G,
    dB = s G A^T; the saved head's gradient is the merged model's head gradient."""
    merged = lora.merged_tensors()
    plain = merged_model(base_folder, merged)
    for p in plain.parameters():
        p.requires_grad_(True)
    _, merged_loss, merged_grads = loss_and_grads(plain, tokens, targets)
    loss_gap = abs(merged_loss - loss)
    assert loss_gap < 1e-12, f"merged loss {merged_loss} != adapter loss {loss}"
    worst = 0.0
    peft = lora.peft_tensors()
    for key, layer in lora.lora_layers.items():
        G = merged_grads[lora.checkpoint_name(key) + ".weight"]
        G = G.t() if is_conv1d(layer.base_layer) else G                          # (out, in)
        A, Bw, s = layer.lora_A.weight.detach(), layer.lora_B.weight.detach(), layer.scaling
        implied = {f"{PEFT_PREFIX}{key}.lora_A.weight": s * Bw.t() @ G, f"{PEFT_PREFIX}{key}.lora_B.weight": s * G @ A.t()}
        for k, v in implied.items():
            worst = max(worst, float((grads[k] - v).abs().max() / v.abs().max()))
    for key in lora.saved_modules:
        for k in peft:
            if k.startswith(f"{PEFT_PREFIX}{key}."):
                v = merged_grads[lora.checkpoint_name(key) + k[len(PEFT_PREFIX) + len(key):]]
                worst = max(worst, float((grads[k] - v).abs().max() / v.abs().max()))
    assert worst < 1e-12, f"adapter gradients differ from the merged model's by {worst} (relative)"
    return {"merged_loss": merged_loss, "merged_minus_adapter_loss": loss_gap, "grad_vs_merged_max_rel": worst}


def build_case(case: dict, out: str) -> dict:
    base_folder = os.path.join(out, case["base"])
    base, config_json = load_base(base_folder)
    lora = LoraModel(base, case["settings"])
    fan_in_fan_out = isinstance(base, GPT2)  # PEFT sets it for Conv1D targets and saves the mutated config
    adapter = initial_adapter(lora, case["seed"])
    folder = os.path.join(out, case["name"])
    os.makedirs(folder, exist_ok=True)
    save_safetensors(os.path.join(folder, "adapter_model.safetensors"), adapter, {"format": "pt"})
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(adapter_config(lora, f"test/fixtures/{case['base']}", fan_in_fan_out), indent=2,
                           sort_keys=True))  # PEFT writes no trailing newline
    # the reference starts from what the file holds (float32 values, exactly representable in float64)
    back = load_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    assert set(back) == set(adapter) and all(torch.equal(back[k], adapter[k]) for k in adapter), "round trip"
    lora.load_peft_state(back)

    tokens, targets = make_batch(base.config.vocab_size, case["T"], case["seed"] + 1)
    logits, loss, all_grads = loss_and_grads(lora, tokens, targets)
    peft = lora.peft_tensors()
    param_key = {id(p): k for k, p in peft.items()}
    grads = {param_key[id(p)]: all_grads[n] for n, p in lora.named_parameters() if p.requires_grad}
    assert set(grads) == set(peft), "a trainable tensor is not an adapter tensor, or one has no gradient"
    assert set(all_grads) == {n for n, p in lora.named_parameters() if p.requires_grad}, "the base took gradients"
    tiny = [k for k, g in grads.items() if float(g.abs().max()) < 1e-6]
    assert not tiny, f"gradients too small to test: {tiny}"
    # AdamW moves an element by ~lr whatever its gradient's size, so an element whose gradient is at float32
    # noise level (~1e-7 of its tensor's largest) would make the 5-step reference fragile: report the smallest
    smallest = min(float(g.abs().min() / g.abs().max()) for g in grads.values())
    checks = check_against_merged(lora, base_folder, tokens, targets, loss, grads)
    base_only, _ = load_base(base_folder)
    _, base_loss = base_only(tokens, targets)
    assert abs(base_loss.item() - loss) > 1e-3, "the adapter barely changes the loss"
    checks["base_loss"] = base_loss.item()
    checks["min_grad_element_over_tensor_max"] = smallest

    losses, _, _, trained = train(lora, tokens, targets, TRAIN_STEPS)
    final = {k: p.detach().clone() for k, p in trained.peft_tensors().items()}
    assert all(not torch.equal(final[k], peft[k].detach()) for k in peft), "a tensor did not train"
    assert losses[-1] < losses[0], f"training did not lower the loss: {losses}"
    # what a float32 implementation can reach: the same 5 steps by torch in float32 (rounding the base)
    losses32, _, _, trained32 = train(copy.deepcopy(lora).float(), tokens, targets, TRAIN_STEPS)
    checks["float32_train_losses_max_abs_diff"] = max(abs(a - b) for a, b in zip(losses32, losses))
    checks["float32_final_max_abs_diff"] = max(float((p.double() - final[k]).abs().max())
                                               for k, p in trained32.peft_tensors().items())

    tensors = {f"grad.{k}": v for k, v in grads.items()}
    tensors.update({f"final.{k}": v for k, v in final.items()})
    # merged weights and logits stored F32 (rounded from float64; 6e-8 relative, far below the tests'
    # tolerances): they dominate the size, and a float32 merge is what a user's checkpoint holds
    tensors.update({f"merged.{k}": v.float() for k, v in lora.merged_tensors().items()})
    tensors["logits"] = logits.float()
    save_safetensors(os.path.join(out, f"{case['name']}-ref.safetensors"), tensors, {"format": "pt"})
    s = lora.settings
    ref = {
        "_comment": f"PyTorch LoRA reference for test/fixtures/{case['name']} over test/fixtures/{case['base']} "
                    "(scripts/make_lora_fixtures.py, scripts/torch_lora.py); see scripts/README.md",
        "base": f"test/fixtures/{case['base']}", "adapter": f"test/fixtures/{case['name']}",
        "r": s.r, "lora_alpha": s.lora_alpha, "use_rslora": s.use_rslora, "lora_dropout": s.lora_dropout,
        "B": B, "T": case["T"], "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "n_scored": int((targets != IGNORE_INDEX).sum()),
        "loss": f17(loss),
        "adamw": {"lr": ADAMW["lr"], "beta1": ADAMW["betas"][0], "beta2": ADAMW["betas"][1],
                  "eps": ADAMW["eps"], "weight_decay": ADAMW["weight_decay"],
                  "decayed": sorted(k for k, p in peft.items() if p.dim() >= 2)},
        "train_losses": [f17(x) for x in losses],
        "merged_loss": f17(checks["merged_loss"]),
        "scaling": {key: layer.scaling for key, layer in sorted(lora.lora_layers.items())},
        "checks": {k: f17(v) for k, v in checks.items()},
    }
    with open(os.path.join(out, f"{case['name']}-ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return {"loss": loss, "train_losses": losses, **checks, "adapter_tensors": len(peft)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures"))
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order -> reproducible bits
    summary = {case["name"]: build_case(case, out) for case in CASES}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
