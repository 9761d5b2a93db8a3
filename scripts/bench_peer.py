#!/usr/bin/env python3
"""transformers (torch, CPU) and `mamba2 bench` side by side on the same model shape, in one run.

Both run random weights of a published Mamba-2 shape (default: state-spaces/mamba2-130m's) with
the same thread count; speed does not depend on the weights' values. Prints a table of prefill
and decode tokens/s with the ratio ours / transformers, ours' prefill from 512 to 8192 tokens
(it must stay linear), ours' peak RSS after 64 and 512 decoded tokens (it must not grow), and the
bandwidth bound for decoding measured in the same run ("% bound": the median over the timed runs of
each run's decode rate against the bound from a bandwidth probe right after it), and ours'
decode at batch 1 and 8 in alternating runs with the median of the pairs' ratios.

Usage (repository root, after `swift build -c release`):
  python3 scripts/bench_peer.py [--threads 2] [--dtypes float32 bfloat16] [--json]
Requires: torch==2.13.0+cpu, transformers==5.24.0 (scripts/requirements-fixtures.txt).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = {
    "130m": dict(hidden_size=768, num_hidden_layers=24),
    "370m": dict(hidden_size=1024, num_hidden_layers=48),
}


def ours(binary, shape, threads, dtype, prompt_len, new_tokens, runs, batch=1):
    command = [binary, "bench", "--random-shape", shape, "--threads", str(threads), "--dtype", dtype,
               "--prompt-len", str(prompt_len), "--new-tokens", str(new_tokens), "--runs", str(runs), "--batch", str(batch)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def transformers_side(shape, threads, dtype, prompt_len, new_tokens, runs):
    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.set_num_threads(threads)
    size = SHAPES[shape]
    config = Mamba2Config(
        num_heads=2 * size["hidden_size"] // 64, head_dim=64, hidden_size=size["hidden_size"], num_hidden_layers=size["num_hidden_layers"],
        state_size=128, n_groups=1, vocab_size=50288, chunk_size=256, conv_kernel=4, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = Mamba2ForCausalLM(config).eval().to({"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype])
    ids = torch.randint(0, config.vocab_size, (1, prompt_len))
    prefill, decode = [], []
    with torch.no_grad():
        model.generate(ids[:, :16], max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            model(ids, use_cache=True, logits_to_keep=1)  # as generate's prefill: the last position's logits
            prefill.append(prompt_len / (time.perf_counter() - start))
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            total = time.perf_counter() - start
            decode.append(new_tokens / max(total - prompt_len / prefill[-1], 1e-9))
    return statistics.median(prefill), statistics.median(decode)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/mamba2")
    parser.add_argument("--shape", default="130m", choices=sorted(SHAPES))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch
    import transformers

    results = {"machine": {"cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()),
                           "nproc": os.cpu_count(), "threads": args.threads},
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__}, "rows": []}
    for dtype in args.dtypes:
        for prompt_len in (512, 2048):
            hf_prefill, hf_decode = transformers_side(args.shape, args.threads, dtype, prompt_len, args.new_tokens, args.runs)
            mine = ours(args.binary, args.shape, args.threads, dtype, prompt_len, args.new_tokens, args.runs)
            results["rows"].append(dict(dtype=dtype, prompt_len=prompt_len, hf_prefill=hf_prefill, hf_decode=hf_decode,
                                        ours_prefill=mine["prefill_tokens_per_second"], ours_decode=mine["decode_tokens_per_second"],
                                        bound=mine["decode_bandwidth_bound_tokens_per_second"], bandwidth=mine["memory_read_bytes_per_second"],
                                        fraction=mine["decode_fraction_of_bound"], isa=mine["isa"]))
    scaling = {length: ours(args.binary, args.shape, args.threads, "float32", length, 0, 1)["prefill_tokens_per_second"] for length in (512, 2048, 8192)}
    memory = {tokens: ours(args.binary, args.shape, args.threads, "float32", 64, tokens, 1)["peak_rss_bytes"] for tokens in (64, 512)}
    # Batch 1 and batch 8 alternate, one run each, so that each pair meets the same memory speed
    # (this machine's drifts between two for minutes at a time); the ratio is the pairs' median.
    # The order flips from pair to pair (1, 8, 8, 1, …), so a steady drift cancels out.
    pairs = []
    for index in range(max(3, args.runs)):
        rates = {b: ours(args.binary, args.shape, args.threads, "float32", 64, 32, 1, batch=b)["decode_tokens_per_second"]
                 for b in ((1, 8) if index % 2 == 0 else (8, 1))}
        pairs.append((rates[1], rates[8]))
    batch = {1: statistics.median(p[0] for p in pairs), 8: statistics.median(p[1] for p in pairs),
             "ratio": statistics.median(p[1] / p[0] for p in pairs), "pairs": pairs}
    results.update(scaling=scaling, memory=memory, batch_decode=batch)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"machine: {results['machine']}, versions: {results['versions']}, shape {args.shape}")
    print(f"{'dtype':9} {'prompt':>6} | {'HF prefill':>10} {'ours':>8} {'ratio':>6} | {'HF decode':>9} {'ours':>7} {'ratio':>6} {'bound':>7} {'% bound':>7}")
    for row in results["rows"]:
        print(f"{row['dtype']:9} {row['prompt_len']:6} | {row['hf_prefill']:10.1f} {row['ours_prefill']:8.1f} {row['ours_prefill'] / row['hf_prefill']:6.2f} | "
              f"{row['hf_decode']:9.1f} {row['ours_decode']:7.1f} {row['ours_decode'] / row['hf_decode']:6.2f} {row['bound']:7.1f} {100 * row['fraction']:6.0f}%")
    print("ours, prefill tokens/s by prompt length (fp32):", {k: round(v, 1) for k, v in scaling.items()},
          f"8192 vs 512: {scaling[8192] / scaling[512]:.2f}")
    print("ours, peak RSS after 64 and 512 decoded tokens:", {k: f"{v / 2**20:.0f} MiB" for k, v in memory.items()})
    print(f"ours, decode tokens/s at batch 1 and 8 (medians of {len(batch['pairs'])} alternating pairs): {batch[1]:.1f}, {batch[8]:.1f};",
          f"ratio (median of the pairs') {batch['ratio']:.2f}:", [f"{b / a:.2f}" for a, b in batch["pairs"]])


if __name__ == "__main__":
    sys.exit(main())
