#!/usr/bin/env python3
"""Greedy `generate` outputs of transformers for the fixture models (and the built-in model).

Writes Tests/Fixtures/generation/<model>.json:
  {"transformers": ..., "torch": ..., "cases": [{"name", "input_ids" [b][l], "attention_mask" or null,
    "max_new_tokens", "eos_token_id" (int or null), "pad_token_id", "repetition_penalty",
    "new_tokens" [b][≤ max_new_tokens]  (each row cut after its first EOS)}]}

Cases run with use_cache=False, so every step is a full forward: the exact math our cached
decoding must reproduce. (transformers' cached step skips the time_step_limit clamp, so on the
g3 fixture, whose limit is finite, its cached generations drift; the script prints where.)
Left-padded batches are recorded only for fixtures without in_proj bias: with use_bias,
transformers' padding leaks the bias into the first real tokens (docs/architecture.md).

Usage (repository root): python3 scripts/make_generation_goldens.py [--default-model]
"""
import argparse
import json
import os

import torch
import transformers
from transformers import Mamba2ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "models")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generation")
DEFAULT = os.path.join(ROOT, "Sources", "DefaultModel", "Resources", "mamba2-pycode")


def cut(row, eos):
    row = list(row)
    if eos is not None and eos in row:
        return row[: row.index(eos) + 1]
    return row


def generate(model, ids, mask, new, eos, pad, penalty=1.0, use_cache=False):
    kwargs = dict(max_new_tokens=new, do_sample=False, eos_token_id=eos, pad_token_id=pad, use_cache=use_cache,
                  repetition_penalty=penalty, min_new_tokens=0)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask), **kwargs)
    return [cut(row[len(ids[0]):].tolist(), eos) for row in out]


def fixture_cases(name, model):
    config = model.config
    vocab = config.vocab_size
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    g = torch.Generator().manual_seed(77)
    rand = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()
    cases = []
    for index, length in enumerate([1, 3, 8]):
        ids = [rand(length)]
        cases.append(dict(name=f"solo-len{length}", input_ids=ids, attention_mask=None, max_new_tokens=12, eos_token_id=None, pad_token_id=pad, repetition_penalty=1.0))
    prompt = [rand(5)]
    cases.append(dict(name="repetition-penalty", input_ids=prompt, attention_mask=None, max_new_tokens=12, eos_token_id=None, pad_token_id=pad, repetition_penalty=1.3))
    # An EOS that greedy decoding actually reaches: the 4th token of a free run.
    free = generate(model, prompt, None, 10, None, pad)[0]
    eos = free[3]
    cases.append(dict(name="eos-stop", input_ids=prompt, attention_mask=None, max_new_tokens=10, eos_token_id=eos, pad_token_id=pad, repetition_penalty=1.0))
    if not config.use_bias:
        rows = [rand(7), rand(4), rand(2)]
        width = max(map(len, rows))
        ids = [[pad] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        batch_eos = generate(model, [rows[1]], None, 10, None, pad)[0][2]
        cases.append(dict(name="padded-batch", input_ids=ids, attention_mask=mask, max_new_tokens=10, eos_token_id=batch_eos, pad_token_id=pad, repetition_penalty=1.0))
    for case in cases:
        case["new_tokens"] = generate(model, case["input_ids"], case["attention_mask"], case["max_new_tokens"], case["eos_token_id"], case["pad_token_id"], case["repetition_penalty"])
        cached = generate(model, case["input_ids"], case["attention_mask"], case["max_new_tokens"], case["eos_token_id"], case["pad_token_id"], case["repetition_penalty"], use_cache=True)
        if cached != case["new_tokens"]:
            print(f"  {name} {case['name']}: transformers' cached generate differs from the full-forward one: {cached} vs {case['new_tokens']}")
    return cases


def write(name, cases):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, indent=1)
    print(f"{name}: {len(cases)} cases")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--default-model", action="store_true", help="only the built-in model's continuations")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if not args.default_model:
        for name in ["g1-tied", "g3-untied-bias", "g2-fp32", "g2-bf16"]:
            model = Mamba2ForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32).eval()
            write(name, fixture_cases(name, model))
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT)
    model = Mamba2ForCausalLM.from_pretrained(DEFAULT, dtype=torch.float32).eval()
    prompts = ["def fibonacci(n):", "import os\n", "class Stack:\n    def __init__(self):", "for i in range(10):"]
    cases = []
    for index, prompt in enumerate(prompts):
        ids = [tokenizer(prompt)["input_ids"]]
        cases.append(dict(name=f"prompt-{index}", prompt=prompt, input_ids=ids, attention_mask=None, max_new_tokens=24,
                          eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id, repetition_penalty=1.0,
                          new_tokens=generate(model, ids, None, 24, model.config.eos_token_id, model.config.pad_token_id)))
        cases[-1]["text"] = tokenizer.decode(cases[-1]["new_tokens"][0], skip_special_tokens=True)
    write("mamba2-pycode", cases)


if __name__ == "__main__":
    main()
