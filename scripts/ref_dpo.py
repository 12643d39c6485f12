"""Generates the preference-tuning (DPO / ORPO) reference fixtures under test/fixtures/ (see scripts/README.md).

    /usr/bin/python3 scripts/ref_dpo.py [--out test/fixtures]

An independent float64 DPO and ORPO, written from the papers' formulas (DPO: Rafailov et al. 2023, eq. 7;
cDPO: Mitchell 2023, eq. 3; IPO: Azar et al. 2023, eq. 17; hinge: SLiC, Zhao et al. 2023; ORPO: Hong et al.
2024, eqs. 4-7) with the conventions of TRL's DPOTrainer / ORPOTrainer (sum of the answer's token
log-probabilities; their mean for IPO and ORPO; ORPO's nll the mean over the chosen answers' tokens; rewards
beta * (logp - ref_logp), ORPO's lambda * mean logp), on the decoders of scripts/torch_gpt2.py and
scripts/torch_llama.py (and scripts/torch_lora.py for LoRA). It does not call gptune.

For each case: one fixed batch of P = 2 pairs laid out as gptune lays them out (rows c0, c1, r0, r1 of T tokens:
prompt, answer, EOS, then padding; targets -100 outside the answers), 5 AdamW steps on it (ADAMW of
scripts/reference_training.py, no clipping) with the loss, rewards and log-probabilities before each step, the
final trainable tensors (with the elements whose first gradient is below 1e-5, which Adam's first step
makes sensitive to rounding), and for the beta -> 0 case the gradient of the mean DPO logit. The reference model
is the starting model (LoRA: the base without the adapter). Writes dpo-ref.json and dpo-ref.safetensors.
"""
import argparse
import copy
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_lora_fixtures import load_base  # noqa: E402
from reference_training import ADAMW, decay_groups, f17  # noqa: E402
from safetensors_io import load_safetensors, save_safetensors  # noqa: E402
from torch_llama import IGNORE_INDEX  # noqa: E402
from torch_lora import PEFT_PREFIX, LoraModel, LoraSettings  # noqa: E402

P = 2
T = 12
STEPS = 5

CASES = [
    dict(name="gpt2-sigmoid", base="tiny-gpt2", method="dpo", loss_type="sigmoid", beta=0.1, seed=1501),
    dict(name="gpt2-ipo", base="tiny-gpt2", method="dpo", loss_type="ipo", beta=0.1, seed=1502),
    dict(name="gpt2-hinge", base="tiny-gpt2", method="dpo", loss_type="hinge", beta=0.1, seed=1503),
    dict(name="gpt2-cdpo", base="tiny-gpt2", method="dpo", loss_type="sigmoid", beta=0.5, label_smoothing=0.2, seed=1504),
    dict(name="gpt2-orpo", base="tiny-gpt2", method="orpo", lam=0.5, seed=1505),
    dict(name="llama-sigmoid", base="tiny-llama", method="dpo", loss_type="sigmoid", beta=0.1, seed=1506),
    dict(name="llama-orpo", base="tiny-llama", method="orpo", lam=0.1, seed=1507),
    # LoRA: the committed lora-gpt2 adapter (scripts/make_lora_fixtures.py) as the start, the base as the reference.
    dict(name="gpt2-lora-sigmoid", base="tiny-gpt2", adapter="lora-gpt2", method="dpo", loss_type="sigmoid",
         beta=0.1, seed=1508),
    # beta -> 0: the loss tends to log 2 and its gradient to -beta/2 * d(mean logit).
    dict(name="gpt2-small-beta", base="tiny-gpt2", method="dpo", loss_type="sigmoid", beta=1e-4, seed=1509,
         logit_grad=True),
]


def make_pairs(vocab: int, eos: int, seed: int):
    """P pairs with prompts of different lengths and answers of different lengths; rows c0..c(P-1), r0..r(P-1)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()  # noqa: E731
    layout = [(3, 4, 2), (5, 2, 4)]  # (prompt, chosen answer, rejected answer) lengths; +EOS each
    rows, answer_starts = [], []
    chosen, rejected = [], []
    for prompt_len, chosen_len, rejected_len in layout:
        prompt = rand(prompt_len)
        chosen.append((prompt, rand(chosen_len) + [eos]))
        rejected.append((prompt, rand(rejected_len) + [eos]))
    tokens = torch.full((2 * P, T), eos, dtype=torch.long)
    targets = torch.full((2 * P, T), IGNORE_INDEX, dtype=torch.long)
    for row, (prompt, answer) in enumerate(chosen + rejected):
        seq = prompt + answer
        assert len(seq) <= T
        tokens[row, :len(seq)] = torch.tensor(seq)
        # position i predicts token i+1; only answer tokens (and the EOS) are scored
        for i in range(len(prompt) - 1, len(seq) - 1):
            targets[row, i] = seq[i + 1]
    return tokens, targets


def sequence_logps(model, tokens, targets):
    """(sum of log-probs over scored tokens, count of scored tokens) per row."""
    logits, _ = model(tokens)
    logp = torch.log_softmax(logits, dim=-1)
    mask = targets != IGNORE_INDEX
    picked = torch.gather(logp, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1).to(logits.dtype)


def index_ranges(indices):
    """Sorted flat indices as [start, end) ranges."""
    ranges = []
    for i in indices:
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def uses_mean(case):
    return case["method"] == "orpo" or case.get("loss_type") == "ipo"


def objective(case, model, ref_sums, tokens, targets):
    """The batch's loss (a tensor with its graph) and the metrics TRL logs."""
    sums, counts = sequence_logps(model, tokens, targets)
    logps = sums / counts if uses_mean(case) else sums
    pc, pr = logps[:P], logps[P:]
    if case["method"] == "orpo":
        lam = case["lam"]
        # ORPO eq. 4-7: odds(y|x) = p / (1 - p) with p the mean-token probability exp(logp)
        log_odds = (pc - pr) - (torch.log1p(-torch.exp(pc)) - torch.log1p(-torch.exp(pr)))
        ratio = F.logsigmoid(log_odds)
        nll = -sums[:P].sum() / counts[:P].sum()
        loss = nll - lam * ratio.mean()
        rc, rr = lam * pc.detach(), lam * pr.detach()
        extra = {"nll_loss": nll.item(), "log_odds_ratio": ratio.mean().item(), "log_odds_chosen": log_odds.mean().item()}
    else:
        ref = ref_sums / counts if uses_mean(case) else ref_sums
        beta, ls = case["beta"], case.get("label_smoothing", 0.0)
        logit = (pc - pr) - (ref[:P] - ref[P:])
        if case["loss_type"] == "sigmoid":
            losses = -F.logsigmoid(beta * logit) * (1 - ls) - F.logsigmoid(-beta * logit) * ls
        elif case["loss_type"] == "ipo":
            losses = (logit - 1 / (2 * beta)) ** 2
        else:
            losses = torch.relu(1 - beta * logit)
        loss = losses.mean()
        rc, rr = beta * (pc - ref[:P]).detach(), beta * (pr - ref[P:]).detach()
        extra = {"logits": logit.detach().mean().item()}
    metrics = {
        "loss": loss.item(), "rewards/chosen": rc.mean().item(), "rewards/rejected": rr.mean().item(),
        "rewards/margins": (rc - rr).mean().item(), "rewards/accuracies": (rc > rr).double().mean().item(),
        "logps/chosen": pc.detach().mean().item(), "logps/rejected": pr.detach().mean().item(), **extra,
    }
    return loss, metrics


def trainable_tensors(model):
    """name -> parameter: PEFT keys for a LoraModel, else the checkpoint names (GPT-2 without 'transformer.')."""
    if isinstance(model, LoraModel):
        return dict(model.peft_tensors())
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def build_case(case: dict, out: str):
    base, config_json = load_base(os.path.join(out, case["base"]))
    eos = config_json["eos_token_id"]
    tokens, targets = make_pairs(config_json["vocab_size"], eos, case["seed"])
    with torch.no_grad():
        ref_sums, _ = sequence_logps(base, tokens, targets)
    if "adapter" in case:
        folder = os.path.join(out, case["adapter"])
        with open(os.path.join(folder, "adapter_config.json")) as f:
            c = json.load(f)
        settings = LoraSettings(r=c["r"], lora_alpha=c["lora_alpha"], use_rslora=c["use_rslora"],
                                target_modules=[t.split(".")[-1] for t in c["target_modules"]], lora_dropout=0.0)
        model = LoraModel(copy.deepcopy(base), settings)
        model.load_peft_state(load_safetensors(os.path.join(folder, "adapter_model.safetensors")))
        model = model.double()
    else:
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(True)
    tensors = {}
    if case.get("logit_grad"):
        model.zero_grad(set_to_none=True)
        sums, _ = sequence_logps(model, tokens, targets)
        mean_logit = ((sums[:P] - sums[P:]) - (ref_sums[:P] - ref_sums[P:])).mean()
        mean_logit.backward()
        for name, p in trainable_tensors(model).items():
            tensors[f"{case['name']}.logit_grad.{name}"] = p.grad.detach().float()
        model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(decay_groups(model, ADAMW["weight_decay"]), lr=ADAMW["lr"], betas=ADAMW["betas"],
                            eps=ADAMW["eps"])
    steps = []
    ill_conditioned = {}
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss, metrics = objective(case, model, ref_sums, tokens, targets)
        loss.backward()
        if step == 0:
            # Adam's first update is lr * g / (|g| + eps): where |g| is near eps its sensitivity to rounding is
            # of order lr (GPT-2's key biases, whose true gradient is exactly 0, and the odd element near 0), so
            # the tests hold those elements only to the bound lr (1 + wd) a step.
            for name, p in trainable_tensors(model).items():
                small = (p.grad.reshape(-1).abs() < 1e-5).nonzero().reshape(-1).tolist()
                if small:
                    ill_conditioned[name] = index_ranges(small)
        opt.step()
        steps.append({k: f17(v) for k, v in metrics.items()})
    if not case.get("logit_grad"):  # the small-beta case checks the limit, not training
        for name, p in trainable_tensors(model).items():
            tensors[f"{case['name']}.final.{name}"] = p.detach().float()
    else:
        ill_conditioned = {}
    # the fixture must test something: the loss moves and (DPO) the rewards leave 0
    assert steps[-1]["loss"] != steps[0]["loss"]
    if case["method"] == "dpo" and "adapter" not in case:
        assert steps[0]["rewards/chosen"] == 0.0 and abs(steps[-1]["rewards/margins"]) > 0
    entry = {k: v for k, v in case.items() if k not in ("seed",)}
    entry.update({"tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
                  "ref_logps": [f17(x) for x in ref_sums.tolist()], "steps": steps,
                  "ill_conditioned": ill_conditioned})
    return entry, tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures"))
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cases, tensors = {}, {}
    for case in CASES:
        entry, t = build_case(case, out)
        cases[case["name"]] = entry
        tensors.update(t)
    ref = {
        "_comment": "independent float64 DPO/ORPO reference (scripts/ref_dpo.py); see scripts/README.md",
        "P": P, "T": T, "steps": STEPS, "peft_prefix": PEFT_PREFIX,
        "adamw": {"lr": ADAMW["lr"], "beta1": ADAMW["betas"][0], "beta2": ADAMW["betas"][1], "eps": ADAMW["eps"],
                  "weight_decay": ADAMW["weight_decay"]},
        "cases": cases,
    }
    with open(os.path.join(out, "dpo-ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    save_safetensors(os.path.join(out, "dpo-ref.safetensors"), tensors, {"format": "pt"})
    print(json.dumps({name: [s["loss"] for s in c["steps"]] for name, c in cases.items()}, indent=1))


if __name__ == "__main__":
    main()
