#!/usr/bin/env python3
"""transformers' logits processors, for the generation_config settings beyond the sampling basics.

Writes Tests/Fixtures/generation/processors.json:
  {"transformers": ..., "torch": ...,
   "generate": [{"name", "fixture", "input_ids" [b][l], "attention_mask" or null, "settings" {generation_config keys},
                 "new_tokens" [b][≤ max_new_tokens] (each row cut after its first EOS),
                 "unconstrained_settings", "unconstrained" [b][...] (the same without the case's processors: the case must differ)}],
   "warpers": [{"name", "scores" [v] (null for −∞), "cases": [{"name", "settings", "kept" [indices left finite]}]}],
   "processors": [{"name", "settings", "prompt" [b][l] (left-padded), "attention_mask", "new" [b][k] (tokens generated so far),
                   "scores" [b][v], "expected" [b][v] (the processed scores; "nan", "inf", "-inf" as strings)}]}

The generate cases are greedy, with use_cache=False (every step a full forward, as
make_generation_goldens.py), on fixtures without in_proj bias. The warper cases run the
processor list transformers builds for the settings (`_get_logits_processor`) on one row of
scores, so their order is transformers' too; so do the processor cases, on a padded batch
part-way through its generation, for each processor's exact arithmetic and its boundaries.

Usage (repository root): python3 scripts/make_processor_goldens.py
"""
import json
import math
import os

import torch
import transformers
from transformers import GenerationConfig, Mamba2ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "models")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generation", "processors.json")


def cut(row, eos):
    eos = [] if eos is None else (eos if isinstance(eos, list) else [eos])
    row = list(row)
    for index, token in enumerate(row):
        if token in eos:
            return row[: index + 1]
    return row


def generate(model, ids, mask, settings):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                             do_sample=False, use_cache=False, **settings)
    return [cut(row[len(ids[0]):].tolist(), settings.get("eos_token_id")) for row in out]


def generate_cases(fixture, model):
    vocab, pad = model.config.vocab_size, model.config.pad_token_id
    g = torch.Generator().manual_seed(5)
    rand = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()
    prompt = [rand(6)]
    base = dict(max_new_tokens=16, eos_token_id=None, pad_token_id=pad)
    free = generate(model, prompt, None, base)[0]
    eos = free[3]
    # The first pair and triple of the free run that are not one token repeated.
    start = next(i for i in range(len(free) - 1) if free[i] != free[i + 1])
    bigram, triple = free[start:start + 2], free[max(0, start - 1):max(0, start - 1) + 3]
    absent = next(t for t in range(3, vocab) if t not in free)
    forced = generate(model, [prompt[0][:1]], None, dict(base, forced_bos_token_id=free[2]))[0]
    rows = [rand(7), rand(3)]
    width = max(map(len, rows))
    padded = [[pad] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    cases = [
        ("min-new-tokens", prompt, None, dict(base, eos_token_id=eos, min_new_tokens=8), dict(base, eos_token_id=eos)),
        ("min-length", prompt, None, dict(base, eos_token_id=eos, min_length=len(prompt[0]) + 6), dict(base, eos_token_id=eos)),
        ("no-repeat-2", prompt, None, dict(base, no_repeat_ngram_size=2), base),
        ("no-repeat-3-batch", padded, mask, dict(base, max_new_tokens=20, no_repeat_ngram_size=3), dict(base, max_new_tokens=20)),
        ("bad-words", prompt, None, dict(base, bad_words_ids=[[free[0]], bigram, [eos]], eos_token_id=eos), dict(base, eos_token_id=eos)),
        ("suppress", prompt, None, dict(base, suppress_tokens=[free[1], free[2]], begin_suppress_tokens=[free[0]]), base),
        ("sequence-bias", prompt, None, dict(base, sequence_bias=[[[free[0]], -4.0], [bigram, 5.0], [triple, -3.0]]), base),
        ("forced-eos", prompt, None, dict(base, max_new_tokens=7, forced_eos_token_id=absent, eos_token_id=absent),
         dict(base, max_new_tokens=7, eos_token_id=absent)),
        ("forced-bos", [prompt[0][:1]], None, dict(base, forced_bos_token_id=free[2]), base),
        ("begin-suppress", prompt, None, dict(base, begin_suppress_tokens=[free[0]]), base),
        # After a forced BOS on a one-token prompt, the suppression moves to the second new token.
        ("forced-bos-begin-suppress", [prompt[0][:1]], None, dict(base, forced_bos_token_id=free[2], begin_suppress_tokens=[forced[1]]),
         dict(base, forced_bos_token_id=free[2])),
        ("decay-penalty", prompt, None, dict(base, max_new_tokens=24, eos_token_id=absent, exponential_decay_length_penalty=[2, 1.6]),
         dict(base, max_new_tokens=24, eos_token_id=absent)),
        ("combined", padded, mask, dict(base, max_new_tokens=20, repetition_penalty=1.3, no_repeat_ngram_size=2, bad_words_ids=[bigram],
                                        min_new_tokens=10, eos_token_id=free[9], suppress_tokens=[free[4]]),
         dict(base, max_new_tokens=20, eos_token_id=free[9])),
    ]
    out = []
    for name, ids, m, settings, plain in cases:
        new = generate(model, ids, m, settings)
        unconstrained = generate(model, ids, m, plain)
        assert new != unconstrained, f"{fixture} {name}: the setting does not change the greedy output"
        out.append(dict(name=name, fixture=fixture, input_ids=ids, attention_mask=m, settings=settings, new_tokens=new,
                        unconstrained_settings=plain, unconstrained=unconstrained))
    return out


def warper_cases(model):
    g = torch.Generator().manual_seed(11)
    cases = []
    settings_list = (
        [("typical", dict(typical_p=p)) for p in (0.2, 0.5, 0.9, 0.99)]
        + [("epsilon", dict(epsilon_cutoff=e)) for e in (1e-4, 3e-3, 0.02, 0.2)]
        + [("eta", dict(eta_cutoff=e)) for e in (1e-4, 3e-3, 0.02, 0.2)]
        + [("combined", dict(temperature=0.8, top_k=20, top_p=0.9, typical_p=0.9, epsilon_cutoff=1e-3)),
           ("combined-eta", dict(temperature=1.3, top_k=0, min_p=0.01, eta_cutoff=2e-3))]
    )
    for vocab in (64, 1000, 2000):
        for spread in (1.0, 4.0):
            scores = torch.randn(vocab, generator=g) * spread
            scores[torch.randperm(vocab, generator=g)[: vocab // 8]] = -math.inf
            row = dict(name=f"v{vocab}-s{spread:g}", scores=[None if math.isinf(s) else s for s in scores.tolist()], cases=[])
            for name, settings in settings_list:
                settings = dict(settings)
                config = GenerationConfig(do_sample=True, top_k=settings.pop("top_k", 0), **settings)
                config._eos_token_tensor = None
                processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=1)
                processed = processors(torch.zeros(1, 1, dtype=torch.long), scores[None].clone())[0]
                kept = torch.isfinite(processed).nonzero().flatten().tolist()
                settings = {k: v for k, v in config.to_diff_dict().items() if not k.startswith("_") and k != "transformers_version"}
                row["cases"].append(dict(name=name, settings=settings, kept=kept))
            cases.append(row)
    return cases


def encode(values):
    return [v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) for v in values]


def processor_cases(model):
    """One step of the processor list transformers builds for `settings`, on rows of scores.

    `input_ids` is the padded prompt followed by `new` tokens per row, as `generate` holds it; the
    lengths are set as `_prepare_generated_length` sets them (max_length = prompt + budget;
    min_new_tokens replaces min_length), the prompt is the encoder input, the mask gives the
    repetition penalty its padding lengths.
    """
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(23)
    prompt = [[0, 0, 3, 9, 5, 12], [4, 8, 3, 9, 0, 7]]
    mask = [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    width, budget = len(prompt[0]), 8
    cases = []

    def case(name, settings, new, scores=None):
        ids = [p + n for p, n in zip(prompt, new)]
        if scores is None:
            scores = torch.randn(len(prompt), vocab, generator=g) * 3
        config = GenerationConfig(**{k: v for k, v in settings.items()})
        config.max_length = width + budget
        if config.min_new_tokens is not None:
            config.min_length = config.min_new_tokens + width
        eos = settings.get("eos_token_id")
        config._eos_token_tensor = None if eos is None else torch.tensor(eos if isinstance(eos, list) else [eos])
        processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=width,
                                                 encoder_input_ids=torch.tensor(prompt),
                                                 model_kwargs={"attention_mask": torch.tensor(mask)})
        out = processors(torch.tensor(ids), scores.clone())
        cases.append(dict(name=name, settings=dict(settings, max_new_tokens=budget), prompt=prompt, attention_mask=mask, new=new,
                          scores=[encode(r) for r in scores.tolist()], expected=[encode(r) for r in out.tolist()]))

    eos = [2, 7]
    for n in (2, 3):
        case(f"min-new-tokens-at-{n}", dict(eos_token_id=eos, min_new_tokens=3), [[10] * n, [11] * n])
    for n in (1, 2):
        case(f"min-length-at-{n}", dict(eos_token_id=eos, min_length=width + 2), [[10] * n, [11] * n])
    bias = [[[5], 1.5], [[9, 5], 2.0], [[3, 9, 5], -0.45], [[5], 0.1], [[9, 5], 0.7], [[7], -2.0], [[1, 3], 1.0], [[0, 0, 6], 4.0]]
    case("sequence-bias", dict(sequence_bias=bias), [[3, 9], [1, 0]])
    case("sequence-bias-at-prompt-end", dict(sequence_bias=bias), [[], []])
    case("encoder-repetition-penalty", dict(encoder_repetition_penalty=1.7), [[13], [14]])
    for n in (1, 2, 3):
        case(f"encoder-no-repeat-{n}", dict(encoder_no_repeat_ngram_size=n), [[3, 9], [9, 0]])
    case("no-repeat-1-padding", dict(no_repeat_ngram_size=1), [[20], [21]])
    case("no-repeat-2", dict(no_repeat_ngram_size=2), [[3, 9, 5, 3], [9, 0, 7, 7]])
    case("bad-words-padding", dict(bad_words_ids=[[0, 6], [9, 5, 8], [2], [7]], eos_token_id=[2]), [[5, 0], [9, 5]])
    case("repetition-penalty-padding", dict(repetition_penalty=1.4), [[30], [31]])
    case("forced-eos-list", dict(forced_eos_token_id=[2, 7]), [[1] * (budget - 1), [1] * (budget - 1)])
    case("forced-eos-early", dict(forced_eos_token_id=[2, 7]), [[1] * (budget - 2), [1] * (budget - 2)])
    special = torch.randn(2, vocab, generator=g) * 3
    special[0, 2], special[0, 7], special[1, 2], special[1, 7] = -math.inf, -3.0, math.nan, 4.0
    case("decay-penalty", dict(exponential_decay_length_penalty=[1, 1.6], eos_token_id=eos), [[1, 1, 1], [1, 1, 1]], special)
    case("decay-penalty-negative-start", dict(exponential_decay_length_penalty=[-2, 1.3], eos_token_id=eos), [[1], [1]])
    invalid = torch.randn(2, vocab, generator=g) * 3
    invalid[0, 4], invalid[0, 9], invalid[1, 13], invalid[1, 1] = math.nan, math.inf, -math.inf, math.inf
    case("remove-invalid-values", dict(remove_invalid_values=True), [[1], [1]], invalid)
    case("begin-suppress-at-start", dict(begin_suppress_tokens=[4, 6]), [[], []])
    case("begin-suppress-later", dict(begin_suppress_tokens=[4, 6]), [[1], [1]])
    case("everything", dict(sequence_bias=bias[:3], encoder_repetition_penalty=0.8, repetition_penalty=1.2, no_repeat_ngram_size=2,
                            encoder_no_repeat_ngram_size=2, bad_words_ids=[[9, 5]], min_new_tokens=4, eos_token_id=eos,
                            exponential_decay_length_penalty=[0, 1.1], suppress_tokens=[17], begin_suppress_tokens=[18]),
         [[3, 9], [9, 5]])
    return cases


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cases = []
    for fixture in ["g1-tied", "g2-fp32"]:
        model = Mamba2ForCausalLM.from_pretrained(os.path.join(MODELS, fixture), dtype=torch.float32).eval()
        cases += generate_cases(fixture, model)
    warpers = warper_cases(model)
    model = Mamba2ForCausalLM.from_pretrained(os.path.join(MODELS, "g1-tied"), dtype=torch.float32).eval()
    processors = processor_cases(model)
    with open(OUT, "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "generate": cases, "warpers": warpers,
                   "processors": processors}, f)
    print(f"{len(cases)} generate cases, {len(warpers)} warper cases, {len(processors)} processor cases -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
