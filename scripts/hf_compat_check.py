"""Checks, where Hugging Face transformers is installed (the GPU machine has it), that
AutoModelForCausalLM.from_pretrained loads what gptune saves and computes the logits gptune computed,
for GPT-2 and for each Llama-family architecture (llama, qwen2, qwen3, mistral; a sharded save too).

    python3 scripts/hf_compat_check.py DIR    # DIR from `node dist/bench/prepare_hf_check.js DIR`

DIR/cases.json lists the models: each a folder written by gptune (or, for GPT-2, the fixture with the
original tensor names) and a JSON file with token ids and gptune's logits for them. Prints one JSON
line with the largest logit difference per model and whether the LM head came out tied as the config
says; exits 1 when a difference exceeds 1e-4 or a model does not load.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM


def main() -> int:
    root = sys.argv[1]
    report = {"transformers": __import__("transformers").__version__, "torch": torch.__version__, "models": {}}
    ok = True
    for case in json.load(open(os.path.join(root, "cases.json"))):
        expected = json.load(open(os.path.join(root, case["expected"])))
        tokens = torch.tensor([expected["tokens"]])
        want = torch.tensor(expected["logits"], dtype=torch.float64).reshape(1, len(expected["tokens"]), -1)
        entry = {}
        try:
            model = AutoModelForCausalLM.from_pretrained(os.path.join(root, case["dir"]), torch_dtype=torch.float32).eval()
            with torch.no_grad():
                logits = model(tokens).logits.double()
            entry["max_abs_logit_diff"] = (logits - want).abs().max().item()
            head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
            entry["tied"] = bool(head.data_ptr() == embed.data_ptr())
            entry["ok"] = entry["max_abs_logit_diff"] < 1e-4 and entry["tied"] == case["tied"]
        except Exception as e:  # a model that does not load is a failure of the check, reported per model
            entry = {"error": f"{type(e).__name__}: {e}".splitlines()[0], "ok": False}
        report["models"][case["name"]] = entry
        ok = ok and entry["ok"]
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
