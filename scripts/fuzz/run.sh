#!/usr/bin/env bash
# Fuzzes one parser of untrusted files with libFuzzer and AddressSanitizer (Linux):
#   scripts/fuzz/run.sh TARGET [seconds] [libFuzzer flags…]
# TARGET: safetensors, torch, config (config.json, params.json), tokenizer (tokenizer.json),
# sentencepiece, generation (generation_config.json), tokenizer-config (tokenizer_config.json),
# index (model.safetensors.index.json, beside the g1-sharded fixture's shards) or state (state
# files of the g1-tied fixture, seeded with two that `mamba2 generate --save-state` writes, so this
# one also builds the release CLI).
# The corpus starts from the test fixtures and grows in .build-fuzz/corpus/TARGET; a crash (a
# Swift trap included), a hang or an out-of-memory input is kept as .build-fuzz/crash-TARGET-*,
# and the run fails. Optimized, but with the standard library's debug checks (-assert-config
# Debug): buffer pointers' subscripts stay bounds-checked. make_sentencepiece_seeds.py adds two
# small SentencePiece models to its corpus (with -max_len=8192 the fuzzer then runs fast).
set -euo pipefail
here="$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)"
root="$(CDPATH= cd -- "$here/../.." && pwd)"
usage="usage: run.sh safetensors|torch|config|tokenizer|sentencepiece|generation|tokenizer-config|index|state [seconds] [libFuzzer flags]"
target="${1:?$usage}"
seconds="${2:-300}"
case "$seconds" in '' | *[!0-9]*) echo "seconds must be a whole number, got $seconds; $usage" >&2; exit 2 ;; esac
shift $(( $# > 1 ? 2 : 1 ))
work="$root/.build-fuzz"
mkdir -p "$work/corpus/$target"
fixtures="$root/Tests/Fixtures"
case "$target" in
    safetensors) seeds=$(find "$fixtures" -name '*.safetensors' -size -200k); max=65536 ;;
    torch) seeds=$(find "$fixtures" -name '*.bin' -size -400k); max=131072 ;;
    config) seeds=$(find "$fixtures" \( -name 'config.json' -o -name 'params.json' \)); max=4096 ;;
    tokenizer) seeds=$(find "$fixtures/tokenizers/components" -name '*.json'); max=80000 ;;
    sentencepiece) seeds=$(find "$fixtures/tokenizers" -name 'tokenizer.model*'); max=600000 ;;
    generation) seeds=$(find "$fixtures" -name 'generation_config.json'); max=4096 ;;
    tokenizer-config) seeds=$(find "$fixtures/tokenizers" \( -name 'tokenizer_config.json' -o -name 'special_tokens_map.json' \)); max=150000 ;;
    index) seeds=$(find "$fixtures" -name 'model.safetensors.index.json'); max=8192 ;;
    state)
        mkdir -p "$work/state-seeds"
        for dtype in float32 bfloat16; do
            swift run --package-path "$root" -c release mamba2 generate --model "$fixtures/models/g1-tied" --prompt-ids 1,2,3 \
                --max-new-tokens 2 --greedy --state-dtype "$dtype" --save-state "$work/state-seeds/$dtype.state" > /dev/null
        done
        seeds=$(find "$work/state-seeds" -name '*.state'); max=65536 ;;
    *) echo "unknown target $target; $usage" >&2; exit 2 ;;
esac
for seed in $seeds; do cp "$seed" "$work/corpus/$target/seed-$(printf '%s' "$seed" | cksum | cut -d' ' -f1)"; done
# SwiftPM links with gold, which fails on the sanitized objects; lld (beside swift) does not.
lld="$(dirname "$(readlink -f "$(command -v swift)")")/ld.lld"
[ -x "$lld" ] || { echo "no ld.lld beside swift ($lld)" >&2; exit 2; }
printf '{"schemaVersion": "1.0", "linker": {"path": "%s"}}\n' "$lld" > "$work/toolset.json"
swift build --package-path "$here" --scratch-path "$work/build" -c release \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -assert-config -Xswiftc Debug --toolset "$work/toolset.json"
# libFuzzer's handlers keep the input of a Swift trap (SIGILL on x86-64; SIGTRAP on arm64, which
# AddressSanitizer leaves alone unless told): Swift's own crash reporter stays out of the way.
export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_sigtrap=1"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/lsan.supp" FUZZ_FIXTURES="$fixtures"
FUZZ_TARGET="$target" "$work/build/release/Fuzz" "$work/corpus/$target" -max_total_time="$seconds" \
    -max_len="$max" -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$work/crash-$target-" "$@"
