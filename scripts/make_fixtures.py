#!/usr/bin/env python3
"""Generate the Mamba2 reference fixtures under Tests/Fixtures/models/.

Usage (from the repository root):

    python3 -m pip install -r scripts/requirements-fixtures.txt
    python3 scripts/make_fixtures.py

Builds tiny random-init `transformers.Mamba2ForCausalLM` models, re-draws every
parameter from a seeded generator (transformers' default init has D=1, all-ones
norms and zero conv bias, which would hide porting bugs), saves them in the
layouts the Swift port must read, and records transformers' outputs
(logits, loss, hidden states) in `expected.json` next to each model.

Everything runs on CPU in float32, single-threaded, with fixed seeds, so the
output is reproducible byte for byte with the pinned versions.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import struct
import sys
import time
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import Mamba2Config, Mamba2ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "models"

SINGLE_LENGTHS = [1, 2, 3, 7, 13]
HIDDEN_STATES_LENGTH = 13
PAD_BATCH_LENGTH = 9
PAD_LEADING = [0, 2, 5]  # leading pads per row of the padded batch
CACHE_DIFF = [0.0]  # max |logits(use_cache default) - logits(use_cache=False)| seen

# Shapes of the three model families -------------------------------------------------

G1 = dict(
    hidden_size=15, expand=2, num_heads=6, head_dim=5, n_groups=1, state_size=7,
    conv_kernel=4, chunk_size=5, num_hidden_layers=2, vocab_size=50,
    tie_word_embeddings=True, use_bias=False, use_conv_bias=True, residual_in_fp32=True,
    layer_norm_epsilon=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)  # time_step_limit: default (0.0, inf)

G3 = dict(
    hidden_size=18, expand=2, num_heads=6, head_dim=6, n_groups=3, state_size=5,
    conv_kernel=3, chunk_size=4, num_hidden_layers=3, vocab_size=61,
    tie_word_embeddings=False, use_bias=True, use_conv_bias=False, residual_in_fp32=False,
    time_step_limit=(0.01, 0.05), layer_norm_epsilon=1e-6,
)

G2 = dict(
    hidden_size=16, expand=2, num_heads=4, head_dim=8, n_groups=2, state_size=16,
    conv_kernel=4, chunk_size=16, num_hidden_layers=2, vocab_size=40,
    tie_word_embeddings=True, use_bias=False, use_conv_bias=True,
    time_step_limit=(0.0, 0.06),
)

SEEDS = {"g1": 1001, "g2": 2002, "g3": 3003}  # weights use seed, inputs use seed + 1


# Helpers ---------------------------------------------------------------------------

def log(msg: str = "") -> None:
    print(msg, flush=True)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build_model(shape: dict, seed: int) -> Mamba2ForCausalLM:
    config = Mamba2Config(**shape)
    torch.manual_seed(seed)
    model = Mamba2ForCausalLM(config)
    redraw_parameters(model, seed)
    model.eval()
    return model


@torch.no_grad()
def redraw_parameters(model: Mamba2ForCausalLM, seed: int) -> None:
    """Re-draw every parameter so that no value sits at a 'neutral' default."""
    g = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    touched = set()
    for name, p in model.named_parameters():  # tied lm_head is de-duplicated here
        shape = tuple(p.shape)
        if name == "backbone.embeddings.weight":
            new = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5
        elif name == "lm_head.weight":
            b = 2.0 / math.sqrt(hidden)
            new = uniform(shape, -b, b)
        elif name.endswith(("in_proj.weight", "out_proj.weight")):
            b = 1.0 / math.sqrt(shape[1])
            new = uniform(shape, -b, b)
        elif name.endswith(("in_proj.bias", "out_proj.bias")):
            new = uniform(shape, -0.2, 0.2)
        elif name.endswith("conv1d.weight"):
            b = 1.0 / math.sqrt(shape[-1])
            new = uniform(shape, -b, b)
        elif name.endswith("conv1d.bias"):
            new = uniform(shape, -0.3, 0.3)
        elif name.endswith(".A_log"):
            new = torch.log(uniform(shape, 1.0, 16.0))
        elif name.endswith(".dt_bias"):
            dt = torch.exp(uniform(shape, math.log(0.001), math.log(0.1))).clamp(min=1e-4)
            new = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif name.endswith(".D"):
            new = uniform(shape, 0.5, 1.5)
        elif name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            new = uniform(shape, 0.5, 1.5)
        else:
            raise RuntimeError(f"no re-draw rule for parameter {name} {shape}")
        p.copy_(new.to(p.dtype))
        touched.add(p.data_ptr())

    for name, p in model.named_parameters(remove_duplicate=False):
        if p.data_ptr() not in touched:
            raise RuntimeError(f"parameter {name} was not re-drawn")
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        raise RuntimeError(f"unexpected buffers: {buffers}")
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
    else:
        assert model.lm_head.weight.data_ptr() != model.backbone.embeddings.weight.data_ptr()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())  # de-duplicated (tied counted once)


def safetensors_dtypes(path: Path) -> set[str]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def load_hf(folder: Path) -> Mamba2ForCausalLM:
    model = Mamba2ForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return model


def assert_same_weights(a, b, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), what
    for k in sa:
        if not torch.equal(sa[k], sb[k]):
            raise RuntimeError(f"{what}: weight {k} differs")


@torch.no_grad()
def run(model, ids, mask=None, labels=None, hidden=False):
    out = model(input_ids=ids, attention_mask=mask, labels=labels,
                output_hidden_states=hidden, use_cache=False)
    # The default call (use_cache defaults to True: fresh cache, chunked prefill path)
    # must give the very same logits.
    if mask is None:
        default = model(ids, labels=labels)
    else:
        default = model(ids, attention_mask=mask, labels=labels)
    # It is not always bit-identical: with a cache, length-1 inputs run the conv over the
    # cache's zero-filled window (a different conv1d input length), a float32 rounding
    # difference of ~1e-6. The recorded values are the use_cache=False forward.
    diff = (out.logits - default.logits).abs().max().item()
    assert diff <= 1e-5, diff
    CACHE_DIFF[0] = max(CACHE_DIFF[0], diff)
    return out


def tolist3(t: torch.Tensor):
    return t.detach().to(torch.float32).tolist()


# Inputs ----------------------------------------------------------------------------

def make_inputs(vocab: int, pad_id: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    singles = {L: torch.randint(0, vocab, (1, L), generator=g) for L in SINGLE_LENGTHS}
    rows = [torch.randint(0, vocab, (PAD_BATCH_LENGTH - p,), generator=g) for p in PAD_LEADING]
    ids = torch.full((len(rows), PAD_BATCH_LENGTH), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), PAD_BATCH_LENGTH), dtype=torch.long)
    for i, (p, r) in enumerate(zip(PAD_LEADING, rows)):
        ids[i, p:] = r
        mask[i, p:] = 1
    label_ids = torch.randint(0, vocab, (2, 8), generator=g)
    labels = label_ids.clone()
    labels[0, :2] = -100
    labels[1, 3] = -100
    labels[1, 6:] = -100
    return dict(singles=singles, rows=rows, pad_ids=ids, pad_mask=mask,
                label_ids=label_ids, labels=labels)


def build_cases(model, inputs, *, padded: str, with_labels: bool, reference=None) -> tuple[list, dict]:
    """padded: 'batch' (record transformers' padded batch) or 'alone' (g3 style).
    reference: optional second model whose logits are stored as logits_fp32_weights."""
    stats = {}
    cases = []

    def case(name, ids, mask=None, labels=None, hidden=False):
        out = run(model, ids, mask, labels, hidden)
        c = {"name": name, "input_ids": ids.tolist(),
             "attention_mask": None if mask is None else mask.tolist(),
             "logits": tolist3(out.logits)}
        if labels is not None:
            c["labels"] = labels.tolist()
            c["loss"] = float(out.loss)
        if hidden:
            hs = out.hidden_states
            n_layers = model.config.num_hidden_layers
            assert len(hs) == n_layers + 1, len(hs)
            # Convention check: hs[0] is the output of block 0 (NOT the embeddings),
            # hs[-1] is norm_f(...) i.e. the lm_head input.
            emb = model.backbone.embeddings(ids)
            stats["hs0_is_embeddings"] = bool(torch.equal(hs[0], emb))
            assert torch.allclose(model.lm_head(hs[-1]), out.logits, atol=1e-6, rtol=0)
            stats["hidden_states_count"] = len(hs)
            c["hidden_states"] = [tolist3(h) for h in hs]
        if reference is not None:
            ref = run(reference, ids, mask, labels)
            c["logits_fp32_weights"] = tolist3(ref.logits)
            d = (ref.logits - out.logits).abs().max().item()
            stats["rounding_max_diff"] = max(stats.get("rounding_max_diff", 0.0), d)
        cases.append(c)
        return out

    for L, ids in inputs["singles"].items():
        case(f"single-len{L}", ids, hidden=(L == HIDDEN_STATES_LENGTH))

    rows, pad_ids, pad_mask = inputs["rows"], inputs["pad_ids"], inputs["pad_mask"]
    alone = [run(model, r[None]).logits[0] for r in rows]
    with torch.no_grad():
        batch_out = model(input_ids=pad_ids, attention_mask=pad_mask, use_cache=False).logits
    stats["pad_vs_alone_max_diff"] = max(
        (batch_out[i, p:] - alone[i]).abs().max().item() for i, p in enumerate(PAD_LEADING))
    if padded == "batch":
        case("padded-batch", pad_ids, pad_mask)
    else:
        names = []
        for i, r in enumerate(rows):
            names.append(f"pad-row{i}-alone")
            case(names[-1], r[None])
        cases.append({"name": "padded-batch-inputs", "input_ids": pad_ids.tolist(),
                      "attention_mask": pad_mask.tolist(), "logits": None, "rows_alone": names})

    if with_labels:
        case("labels-batch2-len8", inputs["label_ids"], labels=inputs["labels"])
    return cases, stats


@torch.no_grad()
def dt_clamp_stats(model, ids) -> str:
    """Fraction of dt values that hit each end of time_step_limit (documentation only)."""
    lo, hi = model.config.time_step_limit
    captured = []
    hooks = [layer.mixer.in_proj.register_forward_hook(
        lambda mod, inp, out, layer=layer: captured.append(
            torch.nn.functional.softplus(out[..., -layer.mixer.num_heads:] + layer.mixer.dt_bias)))
        for layer in model.backbone.layers]
    model(ids, use_cache=False)
    for h in hooks:
        h.remove()
    dt = torch.cat([c.flatten() for c in captured])
    return (f"dt range [{dt.min().item():.4g}, {dt.max().item():.4g}], limit ({lo}, {hi}): "
            f"{(dt < lo).float().mean().item():.0%} below, {(dt > hi).float().mean().item():.0%} above")


def write_expected(folder: Path, cases: list) -> None:
    doc = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}
    with open(folder / "expected.json", "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")


def check_logits_against(model, cases: list, what: str) -> None:
    """Re-run every case with `model` (same weights, another copy) and compare logits.

    Not required to be bit-identical: weights read from a safetensors file are not
    64-byte aligned, which can switch CPU kernels and move the last float32 bit."""
    worst = 0.0
    for c in cases:
        if c["logits"] is None:
            continue
        ids = torch.tensor(c["input_ids"])
        mask = None if c["attention_mask"] is None else torch.tensor(c["attention_mask"])
        got = run(model, ids, mask).logits
        worst = max(worst, (got - torch.tensor(c["logits"], dtype=torch.float32)).abs().max().item())
    if worst > 1e-5:
        raise RuntimeError(f"{what}: logits differ by {worst}")
    log(f"  check {what}: max|diff| = {worst:.3g}")


# Fixtures --------------------------------------------------------------------------

def main() -> None:
    t0 = time.time()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}")
    OUT.mkdir(parents=True, exist_ok=True)
    summary = []  # (fixture, params, note)

    # ---- g1-tied ---------------------------------------------------------------------
    m1 = build_model(G1, SEEDS["g1"])
    d = fresh_dir(OUT / "g1-tied")
    m1.save_pretrained(d)
    m1r = load_hf(d)
    assert_same_weights(m1, m1r, "g1-tied reload")
    in1 = make_inputs(G1["vocab_size"], m1.config.pad_token_id, SEEDS["g1"] + 1)
    cases1, st1 = build_cases(m1r, in1, padded="batch", with_labels=True)
    check_logits_against(m1, cases1, "g1-tied in-memory vs reloaded")
    write_expected(d, cases1)
    log(f"g1-tied: padded batch vs rows alone (real positions) max|diff| = {st1['pad_vs_alone_max_diff']:.3g}")
    log(f"g1-tied: hidden_states count = {st1['hidden_states_count']} "
        f"(num_hidden_layers + 1); hidden_states[0] == embeddings? {st1['hs0_is_embeddings']}")
    summary.append(("g1-tied", n_params(m1)))

    # ---- g1-sharded --------------------------------------------------------------------
    d = fresh_dir(OUT / "g1-sharded")
    m1.save_pretrained(d, max_shard_size=6000)  # bytes; ~18.5 kB of weights
    shards = sorted(d.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3 and (d / "model.safetensors.index.json").exists(), shards
    assert not (d / "model.safetensors").exists()
    m1s = load_hf(d)
    assert_same_weights(m1, m1s, "g1-sharded reload")
    check_logits_against(m1s, cases1, "g1-sharded")
    shutil.copyfile(OUT / "g1-tied" / "expected.json", d / "expected.json")
    log(f"g1-sharded: {len(shards)} shards")
    summary.append(("g1-sharded", n_params(m1s)))

    # ---- g1-mamba-ssm (original state-spaces/mamba layout) ----------------------------
    d = fresh_dir(OUT / "g1-mamba-ssm")
    ssm_config = {
        "d_model": G1["hidden_size"], "d_intermediate": 0, "n_layer": G1["num_hidden_layers"],
        "vocab_size": 47, "pad_vocab_size_multiple": 10,
        "ssm_cfg": {"layer": "Mamba2", "d_state": G1["state_size"], "d_conv": G1["conv_kernel"],
                    "expand": G1["expand"], "headdim": G1["head_dim"], "ngroups": G1["n_groups"],
                    "chunk_size": G1["chunk_size"]},
        "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
        "fused_add_norm": True, "tie_embeddings": True,
    }
    assert math.ceil(47 / 10) * 10 == G1["vocab_size"]
    with open(d / "config.json", "w") as f:
        json.dump(ssm_config, f, indent=2)
        f.write("\n")
    sd = {}
    for k, v in m1.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied
        sd[k.replace("backbone.embeddings.", "backbone.embedding.")] = v.detach().clone().contiguous()
    assert "backbone.embedding.weight" in sd and "lm_head.weight" not in sd
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    # Verify: the renamed file loads back into the HF model and reproduces the logits.
    back = load_file(d / "model.safetensors")
    back = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in back.items()}
    mchk = Mamba2ForCausalLM(Mamba2Config(**G1)).eval()
    missing, unexpected = mchk.load_state_dict(back, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    mchk.tie_weights()
    assert_same_weights(m1, mchk, "g1-mamba-ssm reload")
    check_logits_against(mchk, cases1, "g1-mamba-ssm")
    shutil.copyfile(OUT / "g1-tied" / "expected.json", d / "expected.json")
    summary.append(("g1-mamba-ssm", n_params(mchk)))

    # ---- g3-untied-bias ----------------------------------------------------------------
    m3 = build_model(G3, SEEDS["g3"])
    d = fresh_dir(OUT / "g3-untied-bias")
    m3.save_pretrained(d)
    m3r = load_hf(d)
    assert_same_weights(m3, m3r, "g3 reload")
    pad3 = m3.config.pad_token_id if m3.config.pad_token_id is not None else 0
    in3 = make_inputs(G3["vocab_size"], pad3, SEEDS["g3"] + 1)
    cases3, st3 = build_cases(m3r, in3, padded="alone", with_labels=True)
    check_logits_against(m3, cases3, "g3 in-memory vs reloaded")
    write_expected(d, cases3)
    log(f"g3-untied-bias: transformers' LEFT-PADDED batch vs rows alone (real positions) "
        f"max|diff| = {st3['pad_vs_alone_max_diff']:.4g}  (in_proj bias leaks through padding; not recorded)")
    log(f"g3-untied-bias: {dt_clamp_stats(m3, in3['singles'][13])}")
    summary.append(("g3-untied-bias", n_params(m3)))

    # ---- g2-fp32 / g2-bf16 / g2-fp16 -----------------------------------------------------
    m2 = build_model(G2, SEEDS["g2"])
    pad2 = m2.config.pad_token_id if m2.config.pad_token_id is not None else 0
    in2 = make_inputs(G2["vocab_size"], pad2, SEEDS["g2"] + 1)
    d = fresh_dir(OUT / "g2-fp32")
    m2.save_pretrained(d)
    assert safetensors_dtypes(d / "model.safetensors") == {"F32"}
    m2r = load_hf(d)
    assert_same_weights(m2, m2r, "g2-fp32 reload")
    cases2, st2 = build_cases(m2r, in2, padded="batch", with_labels=False)
    write_expected(d, cases2)
    log(f"g2-fp32: padded batch vs rows alone max|diff| = {st2['pad_vs_alone_max_diff']:.3g}; "
        f"{dt_clamp_stats(m2, in2['singles'][13])}")
    summary.append(("g2-fp32", n_params(m2)))

    for name, dtype, tag in [("g2-bf16", torch.bfloat16, "BF16"), ("g2-fp16", torch.float16, "F16")]:
        d = fresh_dir(OUT / name)
        half = copy.deepcopy(m2).to(dtype)
        half.save_pretrained(d)
        got = safetensors_dtypes(d / "model.safetensors")
        assert got == {tag}, (name, got)
        widened = load_hf(d)  # half weights read back and widened to float32
        rounded = copy.deepcopy(m2)
        with torch.no_grad():
            for p in rounded.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
        assert_same_weights(rounded, widened, f"{name} widened reload")
        cases, st = build_cases(widened, in2, padded="batch", with_labels=False, reference=m2)
        write_expected(d, cases)
        log(f"{name}: safetensors dtype {tag}; max|logits(rounded weights) - logits(fp32 weights)| "
            f"= {st['rounding_max_diff']:.4g}")
        summary.append((name, n_params(widened)))

    # ---- summary -------------------------------------------------------------------------
    log()
    log(f"{'fixture':<16} {'params':>7}  files")
    total = 0
    for name, params in summary:
        files = sorted((OUT / name).iterdir())
        sizes = ", ".join(f"{f.name} {f.stat().st_size:,}B" for f in files)
        total += sum(f.stat().st_size for f in files)
        log(f"{name:<16} {params:>7}  {sizes}")
    log(f"max |logits(default use_cache=True call) - logits(use_cache=False)| over all cases: {CACHE_DIFF[0]:.3g}")
    log(f"total {total:,} bytes under {OUT.relative_to(ROOT)}; {time.time() - t0:.1f}s")
    assert total < 3_000_000


if __name__ == "__main__":
    main()
