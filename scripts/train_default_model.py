#!/usr/bin/env python3
"""Train the small built-in default model: a tiny Python-code Mamba-2.

Usage (from the repository root):

    python3 -m pip install -r scripts/requirements-train.txt
    python3 scripts/train_default_model.py            # 50 minutes on 2 CPU cores

writes Sources/DefaultModel/Resources/mamba2-pycode/ (model.safetensors, config.json,
generation_config.json, tokenizer.json, tokenizer_config.json, README.md).

A few million parameters trained for under an hour on CPU, "in the spirit of Codestral Mamba":
a Mamba-2 language model for Python source. It is a demo and test model for the Swift port, not
a useful code assistant.

1. Corpus: every ``.py`` file of the running interpreter's standard library, except the test
   suites (any ``test``/``tests`` directory, e.g. ``lib2to3/tests``, and ``idlelib/idle_test``),
   ``site-packages`` and ``encodings`` (large codec tables). Files are sorted
   by path; every 50th file is held out for validation. Each file is one document and each
   document is preceded by the ``<|endoftext|>`` token, so the token stream reads
   ``<|endoftext|> file1 <|endoftext|> file2 ...``.
2. Tokenizer: byte-level BPE (GPT-2 style pre-tokenization, no normalizer), 4096 tokens,
   ``<|endoftext|>`` = 0 and ``<|padding|>`` = 1, trained on the training files only.
3. Model: ``transformers.Mamba2ForCausalLM`` (hidden 256, 10 layers, 16 heads x 32, state 32,
   one group, tied embeddings), transformers' default initialization.
4. Training: random contiguous 256-token windows of the training stream, batch 16, AdamW
   (peak lr 3e-3, betas (0.9, 0.95), weight decay 0.1 on matrices only), 200 warm-up steps then
   cosine decay to 10 % of the peak, gradient clipping at 1.0, float32, 2 threads. Training
   runs for a fixed wall-clock budget (``--minutes``); the length of the cosine schedule is a
   planned step count estimated from the measured speed (first after ~20 steps, then refined at
   every evaluation), so that the learning rate reaches its floor near the end of the budget.
   Because the plan depends on the machine's speed, runs on different machines take different
   numbers of steps; everything else (corpus, tokenizer, init, data order) is seeded.
5. Every ``--eval-minutes`` the held-out loss (mean over 20 fixed validation windows) is
   logged; every ``--ckpt-minutes`` a usable checkpoint is written to the output folder; at
   the end the final model, the tokenizer, ``generation_config.json`` and a model card with
   sample continuations are written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, Mamba2Config, Mamba2ForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "Sources" / "DefaultModel" / "Resources" / "mamba2-pycode"
DEFAULT_LOG = Path("/tmp/train_default_model.log")

EOT = "<|endoftext|>"
PAD = "<|padding|>"
EOT_ID = 0
PAD_ID = 1

VOCAB_SIZE = 4096
SEQ_LEN = 256
BATCH_SIZE = 16
PEAK_LR = 3e-3
MIN_LR_RATIO = 0.1
WARMUP_STEPS = 200
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
VAL_EVERY = 50  # every 50th file (sorted order) is held out
VAL_WINDOWS = 20
SKIP_TIMING_STEPS = 5  # first steps are slow (allocator warm-up); not used for the speed estimate
PLAN_AFTER_STEPS = 20  # steps measured (after the skipped ones) for the first plan
FINAL_RESERVE_SECONDS = 0.0  # the budget covers the training loop only

SEED = 1234  # model init
DATA_SEED = 4321  # training-window order
SAMPLE_SEED = 0  # sampled continuation in the model card
PROMPT = "def fibonacci(n):"

MODEL_CONFIG = dict(
    hidden_size=256,
    num_hidden_layers=10,
    state_size=32,
    head_dim=32,
    num_heads=16,
    expand=2,
    n_groups=1,
    conv_kernel=4,
    chunk_size=32,
    vocab_size=VOCAB_SIZE,
    tie_word_embeddings=True,
    use_bias=False,
    use_conv_bias=True,
    residual_in_fp32=True,
    layer_norm_epsilon=1e-5,
    pad_token_id=PAD_ID,
    bos_token_id=EOT_ID,
    eos_token_id=EOT_ID,
)

GENERATION_CONFIG = dict(
    do_sample=True,
    temperature=0.7,
    top_k=50,
    top_p=0.95,
    repetition_penalty=1.1,
    max_new_tokens=128,
    bos_token_id=EOT_ID,
    eos_token_id=EOT_ID,
    pad_token_id=PAD_ID,
)

EXCLUDED_DIRS = ("test", "tests", "idle_test", "site-packages", "encodings")


# Logging ----------------------------------------------------------------------------------


class Log:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, msg: str = "") -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        line = f"[{stamp}] {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


# Corpus -----------------------------------------------------------------------------------


def collect_corpus(stdlib: Path) -> list[tuple[str, str]]:
    """(relative path, text) of every included stdlib .py file, sorted by path."""
    files = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if any(part in EXCLUDED_DIRS or part == "__pycache__" for part in rel.parts[:-1]):
            continue
        files.append(rel)
    files.sort(key=lambda p: p.as_posix())
    docs = []
    for rel in files:
        text = (stdlib / rel).read_bytes().decode("utf-8")
        if EOT in text or PAD in text:
            raise SystemExit(f"{rel} contains a special token literally")
        docs.append((rel.as_posix(), text))
    return docs


# Tokenizer --------------------------------------------------------------------------------


def train_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOT, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    assert tok.token_to_id(EOT) == EOT_ID and tok.token_to_id(PAD) == PAD_ID
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=PAD,
        padding_side="left",
        model_max_length=1_048_576,
        clean_up_tokenization_spaces=False,
    )


def token_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids.append(EOT_ID)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


# Training helpers -------------------------------------------------------------------------


def lr_at(step: int, planned_steps: int) -> float:
    """Linear warm-up over WARMUP_STEPS, then cosine from PEAK_LR to MIN_LR_RATIO * PEAK_LR at
    `planned_steps`, constant afterwards. `step` counts from 0."""
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    span = max(1, planned_steps - WARMUP_STEPS)
    progress = min(1.0, (step - WARMUP_STEPS) / span)
    return PEAK_LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied lm_head / embeddings
            continue
        seen.add(id(p))
        # Matrices (linear, embedding, conv) get weight decay; vectors (norm weights, biases,
        # A_log, D, dt_bias) do not.
        (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LR,
        betas=BETAS,
        eps=1e-8,
    )


@torch.no_grad()
def evaluate(model: Mamba2ForCausalLM, windows: torch.Tensor) -> float:
    model.eval()
    losses = []
    for i in range(0, windows.shape[0], 10):
        batch = windows[i : i + 10]
        losses.append(model(input_ids=batch, labels=batch).loss.item() * batch.shape[0])
    model.train()
    return sum(losses) / windows.shape[0]


def human(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m{seconds % 60:02d}s"


# Saving -----------------------------------------------------------------------------------


def save_all(
    model: Mamba2ForCausalLM,
    hf_tok: PreTrainedTokenizerFast,
    out_dir: Path,
    readme: str,
) -> list[str]:
    """Write model + tokenizer + generation config + README into `out_dir`. Files are written to
    a temporary directory first and then moved in one by one with os.replace, so an interrupted
    run never leaves a half-written file behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mamba2-pycode-") as tmp:
        tmp = Path(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        hf_tok.save_pretrained(tmp)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        names = sorted(p.name for p in tmp.iterdir() if p.is_file())
        for name in names:
            partial = out_dir / f".{name}.partial"
            shutil.copyfile(tmp / name, partial)
            os.replace(partial, out_dir / name)
    return names


def generate_samples(model: Mamba2ForCausalLM, hf_tok: PreTrainedTokenizerFast) -> dict:
    model.eval()
    enc = hf_tok(PROMPT, return_tensors="pt")
    greedy_kwargs = dict(do_sample=False, max_new_tokens=128, repetition_penalty=1.0)
    with torch.no_grad():
        greedy = model.generate(**enc, **greedy_kwargs)
        torch.manual_seed(SAMPLE_SEED)
        sampled = model.generate(**enc)  # uses model.generation_config (the shipped defaults)
    model.train()
    n = enc["input_ids"].shape[1]
    return {
        "prompt_ids": enc["input_ids"][0].tolist(),
        "greedy_kwargs": greedy_kwargs,
        "greedy": hf_tok.decode(greedy[0], skip_special_tokens=False),
        "greedy_new_ids": greedy[0, n:].tolist(),
        "sampled": hf_tok.decode(sampled[0], skip_special_tokens=False),
    }


def model_card(info: dict, final: bool) -> str:
    cfg = info["model_config"]
    status = (
        "Final model."
        if final
        else f"**Intermediate checkpoint** (step {info['step']}, written while training was still "
        "running; the final model card replaces this one)."
    )
    gen_cfg = json.dumps(GENERATION_CONFIG, indent=2)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [mamba2, code, python, tiny]",
        "---",
        "",
        "# mamba2-pycode",
        "",
        "A tiny Mamba-2 language model for Python source code, in the spirit of Codestral Mamba but "
        f"about {info['params'] / 1e6:.1f} M parameters, trained for {info['minutes']:g} minutes on "
        "2 CPU cores. It is the built-in default model of swift-mamba2, meant for demos and tests "
        "of the Swift port; it produces Python-looking text, not working programs.",
        "",
        status,
        "",
        "## Corpus",
        "",
        f"- The Python {info['python_version']} standard library: every `.py` file under "
        f"`lib/python{sys.version_info.major}.{sys.version_info.minor}/`, sorted by path, excluding "
        "any `test/` or `tests/` directory (e.g. `lib2to3/tests`), `idlelib/idle_test/`, "
        "`site-packages/` and `encodings/` (large codec tables).",
        f"- {info['n_files']} files, {info['corpus_bytes'] / 1e6:.2f} MB of UTF-8 text, "
        f"{info['train_tokens'] + info['val_tokens']:,} tokens.",
        f"- Validation: every {VAL_EVERY}th file in sorted order ({info['n_val_files']} files, "
        f"{info['val_tokens']:,} tokens); training: the other {info['n_train_files']} files "
        f"({info['train_tokens']:,} tokens).",
        "- Each file is one document; every document is preceded by `<|endoftext|>` (id 0).",
        "- License of the corpus: the Python Software Foundation License Version 2 (PSF License), "
        "see the `LICENSE.txt` of the CPython distribution.",
        "",
        "## Tokenizer",
        "",
        "Byte-level BPE trained with Hugging Face `tokenizers` on the training files: "
        f"vocabulary {VOCAB_SIZE}, min frequency 2, GPT-2 style byte-level pre-tokenization without "
        "prefix space, no normalizer, byte-level decoder and post-processor (`trim_offsets=False`). "
        "Special tokens: `<|endoftext|>` = 0 (bos/eos/unk), `<|padding|>` = 1 (pad, left padding). "
        "No special token is added when encoding.",
        "",
        "## Model",
        "",
        f"`Mamba2ForCausalLM`, {info['params']:,} parameters (embeddings tied with the LM head):",
        "",
        "```json",
        json.dumps(cfg, indent=2),
        "```",
        "",
        "## Training",
        "",
        f"- Random contiguous windows of {SEQ_LEN} tokens from the training token stream, batch "
        f"{BATCH_SIZE}, next-token cross-entropy.",
        f"- AdamW, peak lr {PEAK_LR:g}, betas {BETAS}, weight decay {WEIGHT_DECAY:g} on matrices "
        f"(none on norms, biases, `A_log`, `D`, `dt_bias`), linear warm-up {WARMUP_STEPS} steps, "
        f"cosine decay to {MIN_LR_RATIO:g} x peak at the planned step count, gradient clipping "
        f"{GRAD_CLIP:g}, float32, `torch.set_num_threads(2)`, transformers' PyTorch (non-CUDA) "
        "Mamba-2 path.",
        f"- Wall-clock budget {info['minutes']:g} min; planned steps (from the measured speed) "
        f"{info['planned_steps']:,}; steps done {info['step']:,}; tokens seen "
        f"{info['step'] * BATCH_SIZE * SEQ_LEN:,}; training time {human(info['train_seconds'])}; "
        f"mean speed {info['tokens_per_s']:,.0f} tokens/s.",
        f"- Final train loss (mean of the last {info['train_loss_window']} steps): "
        f"{info['train_loss']:.4f}; held-out loss (mean over {VAL_WINDOWS} fixed validation "
        f"windows of {SEQ_LEN} tokens): {info['val_loss']:.4f} "
        f"(perplexity {math.exp(info['val_loss']):.2f}).",
        f"- Seeds: model init {SEED} (`transformers.set_seed`), training windows {DATA_SEED} "
        f"(`torch.Generator`), sampled continuation {SAMPLE_SEED} (`torch.manual_seed`).",
        f"- Started {info['started']}; machine: {info['machine']}.",
        f"- Versions: Python {info['python_version']}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, tokenizers {tokenizers.__version__}, safetensors "
        f"{safetensors.__version__}.",
        "- Command (from the repository root, after "
        "`python3 -m pip install -r scripts/requirements-train.txt`):",
        "",
        "```sh",
        info["command"],
        "```",
        "",
        "The learning-rate schedule depends on the measured speed, so a run on another machine "
        "takes a different number of steps and gives slightly different weights.",
        "",
        "## Generation defaults (`generation_config.json`)",
        "",
        "```json",
        gen_cfg,
        "```",
        "",
    ]
    samples = info.get("samples")
    if samples:
        lines += [
            "## Sample continuations",
            "",
            f"Prompt `{PROMPT}` (token ids {samples['prompt_ids']}, no `<|endoftext|>` prepended), "
            "generated with transformers `model.generate`, for illustration.",
            "",
            f"Greedy (`{', '.join(f'{k}={v}' for k, v in samples['greedy_kwargs'].items())}`); new "
            f"token ids: {samples['greedy_new_ids']}",
            "",
            "````python",
            samples["greedy"],
            "````",
            "",
            f"Sampled with the defaults above after `torch.manual_seed({SAMPLE_SEED})`:",
            "",
            "````python",
            samples["sampled"],
            "````",
            "",
        ]
    return "\n".join(lines)


# Main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=50.0, help="wall-clock training budget")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--log", type=Path, default=DEFAULT_LOG, help="log file (appended)")
    ap.add_argument("--eval-minutes", type=float, default=5.0, help="evaluation/log interval")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0, help="checkpoint interval")
    ap.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    args = ap.parse_args()

    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    log = Log(args.log)
    started = dt.datetime.now(dt.timezone.utc)
    command = " ".join(["python3", "scripts/train_default_model.py"] + [shlex.quote(a) for a in sys.argv[1:]])
    log(f"=== {command}")
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, tokenizers {tokenizers.__version__}, safetensors "
        f"{safetensors.__version__}; out {args.out}; budget {args.minutes:g} min"
    )

    # 1. Corpus
    docs = collect_corpus(args.stdlib)
    val_docs = [d for i, d in enumerate(docs) if i % VAL_EVERY == VAL_EVERY - 1]
    train_docs = [d for i, d in enumerate(docs) if i % VAL_EVERY != VAL_EVERY - 1]
    corpus_bytes = sum(len(t.encode("utf-8")) for _, t in docs)
    log(
        f"corpus: {args.stdlib}: {len(docs)} files, {corpus_bytes / 1e6:.2f} MB "
        f"({len(train_docs)} train / {len(val_docs)} validation files)"
    )

    # 2. Tokenizer
    t0 = time.time()
    tok = train_tokenizer([t for _, t in train_docs])
    hf_tok = wrap_tokenizer(tok)
    train_ids = token_stream(tok, [t for _, t in train_docs])
    val_ids = token_stream(tok, [t for _, t in val_docs])
    log(
        f"tokenizer trained and corpus encoded in {time.time() - t0:.1f}s: {len(train_ids):,} train "
        f"tokens, {len(val_ids):,} validation tokens ({corpus_bytes / (len(train_ids) + len(val_ids)):.2f} "
        "bytes/token)"
    )
    roundtrip = tok.decode(tok.encode(train_docs[0][1]).ids)
    assert roundtrip == train_docs[0][1], "tokenizer round trip failed"

    starts = torch.linspace(0, len(val_ids) - SEQ_LEN - 1, VAL_WINDOWS).long()
    val_windows = torch.stack([val_ids[s : s + SEQ_LEN] for s in starts.tolist()])

    # 3. Model
    transformers.set_seed(SEED)
    config = Mamba2Config(**MODEL_CONFIG)
    model = Mamba2ForCausalLM(config)
    model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    log(f"model: Mamba2ForCausalLM, {n_params:,} parameters")
    model_config = json.loads(config.to_json_string(use_diff=True))

    info = dict(
        python_version=platform.python_version(),
        n_files=len(docs),
        n_train_files=len(train_docs),
        n_val_files=len(val_docs),
        corpus_bytes=corpus_bytes,
        train_tokens=len(train_ids),
        val_tokens=len(val_ids),
        params=n_params,
        model_config=model_config,
        minutes=args.minutes,
        command=command,
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
    )

    # 4. Training
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(DATA_SEED)
    budget = args.minutes * 60.0 - FINAL_RESERVE_SECONDS
    planned_steps = 10**9  # until the first speed measurement
    losses: list[float] = []
    last_log_losses: list[float] = []
    val_loss = float("nan")

    def save_checkpoint(step: int, final: bool, train_seconds: float) -> None:
        window = min(50, len(losses))
        info.update(
            step=step,
            planned_steps=planned_steps if planned_steps < 10**9 else step,
            train_seconds=train_seconds,
            tokens_per_s=step * BATCH_SIZE * SEQ_LEN / max(train_seconds, 1e-9),
            train_loss=sum(losses[-window:]) / max(window, 1),
            train_loss_window=window,
            val_loss=val_loss,
        )
        names = save_all(model, hf_tok, args.out, model_card(info, final))
        log(f"{'saved' if final else 'checkpoint'} step {step} -> {args.out} ({', '.join(names)})")

    log(f"training: batch {BATCH_SIZE} x {SEQ_LEN} tokens, budget {args.minutes:g} min")
    t_start = time.time()
    t_skip = None  # time after SKIP_TIMING_STEPS steps
    t_last_eval = t_start
    t_last_ckpt = t_start
    replan_ref = None  # (time, step) of the last plan
    step = 0
    while True:
        now = time.time()
        elapsed = now - t_start
        if elapsed >= budget:
            break

        # Plan the schedule from the measured speed (first after PLAN_AFTER_STEPS timed steps,
        # or after 30 % of a very short budget), then refine at every evaluation below.
        if replan_ref is None and t_skip is not None:
            timed = step - SKIP_TIMING_STEPS
            if timed >= PLAN_AFTER_STEPS or (timed > 0 and elapsed > 0.3 * budget):
                sec_per_step = (now - t_skip) / timed
                planned_steps = step + int((budget - elapsed) / sec_per_step)
                replan_ref = (now, step)
                log(
                    f"plan: {sec_per_step:.2f} s/step ({BATCH_SIZE * SEQ_LEN / sec_per_step:,.0f} "
                    f"tokens/s) -> {planned_steps} planned steps"
                )

        lr = lr_at(step, planned_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        starts_b = torch.randint(0, len(train_ids) - SEQ_LEN, (BATCH_SIZE,), generator=gen)
        batch = torch.stack([train_ids[s : s + SEQ_LEN] for s in starts_b.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        losses.append(loss.item())
        last_log_losses.append(losses[-1])
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"non-finite loss at step {step}")
        if step == SKIP_TIMING_STEPS:
            t_skip = time.time()
        if step <= 3 or step % 100 == 0:
            log(f"step {step}: loss {losses[-1]:.4f}, lr {lr:.2e}, grad norm {grad_norm:.3f}")

        now = time.time()
        if now - t_last_eval >= args.eval_minutes * 60:
            val_loss = evaluate(model, val_windows)
            elapsed = now - t_start
            tps = step * BATCH_SIZE * SEQ_LEN / elapsed
            if replan_ref is not None:
                t_ref, s_ref = replan_ref
                if step > s_ref:
                    sec_per_step = (time.time() - t_ref) / (step - s_ref)  # includes eval/ckpt overhead
                    planned_steps = step + int(max(0.0, budget - (time.time() - t_start)) / sec_per_step)
                    replan_ref = (time.time(), step)
            log(
                f"step {step}/{planned_steps} ({human(elapsed)}): {tps:,.0f} tokens/s, train loss "
                f"{sum(last_log_losses) / len(last_log_losses):.4f} (mean of last "
                f"{len(last_log_losses)}), held-out loss {val_loss:.4f}, lr {lr:.2e}"
            )
            last_log_losses = []
            t_last_eval = time.time()
        if time.time() - t_last_ckpt >= args.ckpt_minutes * 60:
            if not math.isfinite(val_loss) or now - t_last_eval > 60:
                val_loss = evaluate(model, val_windows)
            save_checkpoint(step, final=False, train_seconds=time.time() - t_start)
            t_last_ckpt = time.time()

    train_seconds = time.time() - t_start
    val_loss = evaluate(model, val_windows)
    log(
        f"done: {step} steps in {human(train_seconds)} "
        f"({step * BATCH_SIZE * SEQ_LEN / train_seconds:,.0f} tokens/s), "
        f"final train loss {sum(losses[-50:]) / len(losses[-50:]):.4f} (last {len(losses[-50:])} steps), "
        f"held-out loss {val_loss:.4f}"
    )

    # 5. Samples and final save
    info["samples"] = generate_samples(model, hf_tok)
    log("greedy sample:\n" + info["samples"]["greedy"])
    log("sampled sample:\n" + info["samples"]["sampled"])
    save_checkpoint(step, final=True, train_seconds=train_seconds)
    log(f"total wall time {human(time.time() - started.timestamp())}")


if __name__ == "__main__":
    main()
