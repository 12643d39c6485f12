"""Checks, where Hugging Face transformers is installed (the GPU machine has it), that
GPT2LMHeadModel.from_pretrained loads what gptune saves and computes the logits gptune computed.

    python3 scripts/hf_compat_check.py DIR    # DIR from `node dist/bench/prepare_hf_check.js DIR`

DIR holds saved/ (a checkpoint written by gptune's saveModel after a few training steps),
original/ (the fixture with the original gpt2 tensor names), and expected.json /
expected-original.json (token ids and gptune's logits for each). Prints one
JSON line with the largest logit differences; exits 1 when they exceed 1e-4.
"""
import json
import os
import sys

import torch
from transformers import GPT2LMHeadModel


def main() -> int:
    root = sys.argv[1]
    report = {"transformers": __import__("transformers").__version__, "torch": torch.__version__}
    ok = True
    for name, expected_file in (("saved", "expected.json"), ("original", "expected-original.json")):
        expected = json.load(open(os.path.join(root, expected_file)))
        tokens = torch.tensor([expected["tokens"]])
        want = torch.tensor(expected["logits"], dtype=torch.float64).reshape(1, len(expected["tokens"]), -1)
        model = GPT2LMHeadModel.from_pretrained(os.path.join(root, name)).eval()
        with torch.no_grad():
            logits = model(tokens).logits.double()
        diff = (logits - want).abs().max().item()
        report[f"{name}_max_abs_logit_diff"] = diff
        report[f"{name}_tied"] = bool(model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr())
        ok = ok and diff < 1e-4
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
