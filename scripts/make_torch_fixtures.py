#!/usr/bin/env python3
"""Checkpoint-format fixtures: model folders in the original mamba_ssm layout (pytorch_model.bin)
and in Mistral's native layout (params.json + consolidated.safetensors), and malformed or
malicious torch files for the safe reader's error tests.

Writes
  Tests/Fixtures/models/g1-mamba-ssm-bin/  config.json (mamba_ssm form) + pytorch_model.bin: the
      g1-tied weights as state-spaces/mamba2-* publish them (torch.save, key backbone.embedding.weight),
      stored in fp16 except A_log, D and dt_bias (fp32), so both storage types are read;
      expected.json holds transformers' logits for those (rounded) weights.
  Tests/Fixtures/models/g1-mistral/  params.json + consolidated.safetensors ("model." + mamba_ssm
      names, an explicit lm_head.weight), the g1-tied weights; expected.json is g1-tied's.
  Tests/Fixtures/torch/*.bin  small torch.save files, some valid, some corrupted on purpose.

Usage (repository root): python3 scripts/make_torch_fixtures.py
Requires: torch==2.13.0+cpu, transformers==5.24.0, safetensors (scripts/requirements-fixtures.txt).
"""
import collections
import io
import json
import os
import shutil
import zipfile

import torch
from safetensors.torch import load_file, save_file
from transformers import Mamba2Config, Mamba2ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "models")
TORCH = os.path.join(ROOT, "Tests", "Fixtures", "torch")


def model_folder():
    source = os.path.join(MODELS, "g1-mamba-ssm")
    target = os.path.join(MODELS, "g1-mamba-ssm-bin")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    shutil.copy(os.path.join(source, "config.json"), target)
    state = load_file(os.path.join(source, "model.safetensors"))
    state = collections.OrderedDict(
        (name, tensor if name.split(".")[-1] in ("A_log", "D", "dt_bias") else tensor.half()) for name, tensor in sorted(state.items()))
    torch.save(state, os.path.join(target, "pytorch_model.bin"))

    # Expected logits: transformers in fp32 on the same (fp16-rounded) weights.
    hf = Mamba2ForCausalLM.from_pretrained(os.path.join(MODELS, "g1-tied"), dtype=torch.float32).eval()
    hf_state = {name.replace("backbone.embedding.", "backbone.embeddings."): tensor.float() for name, tensor in state.items()}
    hf_state["lm_head.weight"] = hf_state["backbone.embeddings.weight"]
    hf.load_state_dict(hf_state)
    cases = json.load(open(os.path.join(MODELS, "g1-tied", "expected.json")))["cases"]
    out = []
    with torch.no_grad():
        for case in cases:
            if case.get("attention_mask") is not None or case.get("logits") is None:
                continue
            logits = hf(torch.tensor(case["input_ids"])).logits
            out.append(dict(name=case["name"], input_ids=case["input_ids"], attention_mask=None,
                            logits=[[[float(v) for v in row] for row in batch] for batch in logits.tolist()]))
    json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__, "cases": out},
              open(os.path.join(target, "expected.json"), "w"))


def mistral_folder():
    source = os.path.join(MODELS, "g1-mamba-ssm")
    target = os.path.join(MODELS, "g1-mistral")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    state = {"model." + name: tensor for name, tensor in load_file(os.path.join(source, "model.safetensors")).items()}
    state["model.lm_head.weight"] = state["model.backbone.embedding.weight"].clone()
    save_file(state, os.path.join(target, "consolidated.safetensors"), metadata={"format": "pt"})
    params = {"dim": 15, "n_layers": 2, "vocab_size": 50, "n_groups": 1, "rms_norm": True, "residual_in_fp32": True,
              "fused_add_norm": True, "pad_vocab_size_multiple": 1, "tie_embeddings": False,
              "head_dim": 5, "state_size": 7, "conv_kernel": 4, "chunk_size": 5, "expand": 2}
    json.dump(params, open(os.path.join(target, "params.json"), "w"), indent=1)
    shutil.copy(os.path.join(MODELS, "g1-tied", "expected.json"), target)


def rewrite(source, target, change):
    """Copies a torch zip, passing each entry's bytes through change(name, data)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)


def torch_files():
    shutil.rmtree(TORCH, ignore_errors=True)
    os.makedirs(TORCH)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    valid = collections.OrderedDict(
        weight=x, half=torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16), bf16=torch.tensor([3.0, 0.25], dtype=torch.bfloat16),
        row=x[1], parameter=torch.nn.Parameter(torch.ones(2)))
    torch.save(valid, os.path.join(TORCH, "valid.bin"))
    torch.save(collections.OrderedDict(t=x.t()), os.path.join(TORCH, "non-contiguous.bin"))
    torch.save(collections.OrderedDict(ids=torch.arange(3)), os.path.join(TORCH, "int64.bin"))
    torch.save([x], os.path.join(TORCH, "not-a-dict.bin"))

    valid_path = os.path.join(TORCH, "valid.bin")
    rewrite(valid_path, os.path.join(TORCH, "evil-global.bin"),
            lambda name, data: data.replace(b"ctorch._utils\n_rebuild_tensor_v2\n", b"cos\nsystem\n".ljust(len(b"ctorch._utils\n_rebuild_tensor_v2\n"), b"\n"))
            if name.endswith("data.pkl") else data)
    rewrite(valid_path, os.path.join(TORCH, "short-storage.bin"), lambda name, data: data[:-4] if name.endswith("data/0") else data)
    rewrite(valid_path, os.path.join(TORCH, "bad-opcode.bin"), lambda name, data: data[:2] + b"\xff" + data[3:] if name.endswith("data.pkl") else data)
    rewrite(valid_path, os.path.join(TORCH, "missing-storage.bin"), lambda name, data: None if name.endswith("data/1") else data)
    with open(valid_path, "rb") as f:
        blob = f.read()
    with open(os.path.join(TORCH, "truncated.bin"), "wb") as f:
        f.write(blob[: len(blob) // 2])
    with zipfile.ZipFile(os.path.join(TORCH, "deflated.bin"), "w", zipfile.ZIP_DEFLATED) as z:
        with zipfile.ZipFile(valid_path) as zin:
            for info in zin.infolist():
                entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(entry, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)


if __name__ == "__main__":
    model_folder()
    mistral_folder()
    torch_files()
    print(sorted(os.listdir(TORCH)))
