#!/usr/bin/env python3
"""Compare encoding throughput: HF `tokenizers` (Python binding, one thread) vs `mamba2 bench-tokenizer`.

Usage (from the repository root, after `swift build -c release`):

    python3 scripts/bench_tokenizers.py                      # gpt-neox-20b and mistral-v3
    python3 scripts/bench_tokenizers.py --gpt2 --json        # also gpt2; machine-readable output
    python3 scripts/bench_tokenizers.py --binary .build/debug/mamba2 --runs 1   # plumbing check

Both sides encode the SAME ~1 MB UTF-8 corpus as one string, without special tokens:

* HF: `Tokenizer.from_file(...)`, one warm-up `encode`, then `--runs` timed runs; median.
  `TOKENIZERS_PARALLELISM=false` and `RAYON_NUM_THREADS=1` are set before the import.
* Ours: `<binary> bench-tokenizer --tokenizer DIR --file CORPUS --runs N --ids-output IDS.txt`,
  which also warms up once and prints one JSON line (bytes, tokens, runs, load_seconds,
  median_seconds, megabytes_per_second, tokens_per_second).

The ids written by our binary are compared with HF's ids, token by token (correctness check).

The corpus is built deterministically (identical bytes on every run with the same Python
installation; its sha256 is printed): ~70% Python stdlib source, ~15% English prose (the
Python licence text and the pydoc reference topics), ~15% multilingual text generated from
built-in paragraphs with a seeded RNG. `--corpus PATH` reuses a file instead (`--write-corpus
PATH` saves the generated one).

Exit status: 0 if every compared tokenizer gave identical ids, 1 otherwise (or if the binary failed).
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import ast  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOK_DIR = ROOT / "Tests" / "Fixtures" / "tokenizers"
SEED = 20240601
TARGET_BYTES = 1_000_000
SHARES = {"python_source": 0.70, "english_prose": 0.15, "multilingual": 0.15}
PER_FILE_CAP = 24_000  # bytes of one stdlib file at most, so the source part covers many modules

# ---------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------

MULTILINGUAL_PARAGRAPHS = [
    # Chinese
    "自然语言处理是计算机科学和人工智能的一个分支。它研究如何让计算机理解、生成和处理人类语言。"
    "近年来，基于深度学习的模型在机器翻译、问答系统和文本摘要等任务上取得了显著进展。"
    "然而，分词仍然是中文处理中的一个基本问题，因为中文句子中的词语之间没有空格。",
    # Japanese
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
    "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。"
    "東京の天気は晴れ、最高気温は２８度の予報です。カタカナとひらがな、そして漢字を混ぜて書きます。",
    # Korean
    "한국어는 한글이라는 고유한 문자를 사용합니다. 세종대왕이 1443년에 훈민정음을 창제하였습니다. "
    "오늘 날씨가 정말 좋네요! 우리 같이 공원에 산책하러 갈까요? 서울은 대한민국의 수도입니다.",
    # Arabic
    "اللغة العربية هي إحدى أكثر اللغات انتشاراً في العالم، ويتحدث بها أكثر من ٤٠٠ مليون شخص. "
    "تكتب العربية من اليمين إلى اليسار، وتستخدم أبجدية مكونة من ٢٨ حرفاً. "
    "في عام 2023 زار المتحف الوطني أكثر من 1500 زائر يومياً.",
    # Russian
    "Съешь же ещё этих мягких французских булок, да выпей чаю. "
    "Москва — столица России, крупнейший по численности населения город страны. "
    "В 1961 году Юрий Гагарин стал первым человеком, совершившим полёт в космическое пространство.",
    # Greek
    "Η ελληνική γλώσσα είναι μία από τις αρχαιότερες γλώσσες της Ευρώπης. "
    "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    # Hindi
    "हिन्दी भारत की राजभाषा है और इसे देवनागरी लिपि में लिखा जाता है। "
    "आज मौसम बहुत अच्छा है, चलो बाहर घूमने चलते हैं।",
    # Hebrew
    "עברית היא שפה שמית הנכתבת מימין לשמאל. המחיר הוא 120 ₪ ליום, כולל מע\"מ 17%.",
    # Thai
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย และไม่มีการเว้นวรรคระหว่างคำ",
    # Accented Latin
    "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ? "
    "Ça coûte 12,50 € — déjà payé. Über den Wolken muss die Freiheit wohl grenzenlos sein; "
    "die Straße ist nass. Zażółć gęślą jaźń. Tiếng Việt có dấu: Đường phố Hà Nội rất đông. "
    "São Paulo é a maior cidade do Brasil. ¿Dónde está el baño? ¡Qué día tan bonito! İstanbul'da ığdır.",
    # Emoji-heavy
    "Great job team 🎉🎉🎉 We shipped it! 🚀 Thanks 🙏🏽 to everyone 👩\u200d💻👨\u200d💻. "
    "Weather today: ☀️ then 🌧️, 22°C. Family: 👨\u200d👩\u200d👧\u200d👦 Flags: 🇯🇵 🇫🇷 🇧🇷 🇺🇸. "
    "Reactions: 👍🏻 👍🏿 ❤️ 😂😂 🤔 #️⃣1️⃣",
]


def _sentences(paragraph: str) -> list[str]:
    out, cur = [], ""
    for ch in paragraph:
        cur += ch
        if ch in "。！？.!?؟।":
            out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def _cut(text: str, max_bytes: int) -> str:
    """Longest prefix of text with at most max_bytes UTF-8 bytes, preferring a line end."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    cut = data[:max_bytes].decode("utf-8", errors="ignore")
    nl = cut.rfind("\n")
    return cut[: nl + 1] if nl > max_bytes // 2 else cut


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def python_source(budget: int, rng: random.Random) -> tuple[str, list[str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "__pycache__", "pydoc_data", "encodings"}
    files = sorted(
        p for p in stdlib.rglob("*.py")
        if not skip.intersection(p.relative_to(stdlib).parts[:-1])
    )
    rng.shuffle(files)  # deterministic order, spread over the whole stdlib
    parts, used, total = [], [], 0
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue  # empty __init__.py and the like
        text = _cut(text, min(PER_FILE_CAP, budget - total))
        if not text:
            break
        parts.append(text)
        used.append(str(p.relative_to(stdlib)))
        total += _nbytes(text)
        if total >= budget - 200:
            break
    return "".join(parts), used


def english_prose(budget: int) -> tuple[str, list[str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, used = [], []
    lic = stdlib / "LICENSE.txt"
    if lic.exists():
        parts.append(lic.read_text(encoding="utf-8"))
        used.append("LICENSE.txt")
    topics_py = stdlib / "pydoc_data" / "topics.py"
    if topics_py.exists():
        tree = ast.parse(topics_py.read_text(encoding="utf-8"))
        topics = {}
        for node in tree.body:
            if isinstance(node, ast.Assign):
                topics = ast.literal_eval(node.value)
        for key in sorted(topics):
            parts.append(topics[key])
            used.append(f"pydoc_data/topics.py[{key}]")
            if sum(map(_nbytes, parts)) >= budget:
                break
    else:  # fallback: docstrings of stdlib modules
        for p in sorted(stdlib.glob("*.py")):
            doc = ast.get_docstring(ast.parse(p.read_text(encoding="utf-8", errors="replace")))
            if doc:
                parts.append(doc + "\n\n")
                used.append(f"{p.name} docstring")
            if sum(map(_nbytes, parts)) >= budget:
                break
    return _cut("\n\n".join(parts), budget), used


def multilingual(budget: int, rng: random.Random) -> str:
    sents = [s for p in MULTILINGUAL_PARAGRAPHS for s in _sentences(p)]
    paras, total = [], 0
    while total < budget:
        k = rng.randint(2, 7)
        para = " ".join(rng.choice(sents) for _ in range(k)) + "\n\n"
        paras.append(para)
        total += _nbytes(para)
    return _cut("".join(paras), budget)


def build_corpus(target: int = TARGET_BYTES) -> tuple[str, dict]:
    rng = random.Random(SEED)
    src_budget = int(target * SHARES["python_source"])
    src, files = python_source(src_budget, rng)
    prose_budget = int(target * SHARES["english_prose"])
    prose, prose_parts = english_prose(prose_budget)
    multi = multilingual(target - _nbytes(src) - _nbytes(prose) - 4, rng)
    text = src + "\n\n" + prose + "\n\n" + multi
    info = {
        "python_source_bytes": _nbytes(src),
        "python_source_files": len(files),
        "english_prose_bytes": _nbytes(prose),
        "english_prose_parts": len(prose_parts),
        "multilingual_bytes": _nbytes(multi),
        "separator_bytes": 4,
    }
    return text, info


# ---------------------------------------------------------------------------------------
# Machine info
# ---------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu": cpu, "os": platform.platform()}


def git_rev() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "Sources"],
                               capture_output=True, text=True).stdout.strip()
        return r.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------


def bench_hf(tok_json: Path, text: str, runs: int) -> tuple[dict, object]:
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(str(tok_json))
    load = time.perf_counter() - t0
    enc = tok.encode(text, add_special_tokens=False)  # warm-up
    secs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    nbytes = _nbytes(text)
    res = {
        "bytes": nbytes, "tokens": len(enc.ids), "runs": runs, "load_seconds": load,
        "median_seconds": med, "all_seconds": secs,
        "megabytes_per_second": nbytes / 1e6 / med, "tokens_per_second": len(enc.ids) / med,
    }
    return res, (tok, enc)


def bench_ours(binary: Path, tok_dir: Path, corpus: Path, runs: int, ids_path: Path,
               timeout: float | None) -> tuple[dict | None, list[int] | None, str | None]:
    cmd = [str(binary), "bench-tokenizer", "--tokenizer", str(tok_dir), "--file", str(corpus),
           "--runs", str(runs), "--ids-output", str(ids_path)]
    try:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {timeout} s: {' '.join(cmd)}"
    except OSError as e:
        return None, None, f"cannot run {binary}: {e}"
    if p.returncode != 0:
        return None, None, f"exit {p.returncode}: {p.stderr.strip()[-2000:]}"
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.strip().startswith("{")), None)
    if line is None:
        return None, None, f"no JSON line in output: {p.stdout[-2000:]!r}"
    res = json.loads(line)
    res["wall_seconds"] = wall
    raw = ids_path.read_text().strip()
    ids = [int(x) for x in raw.split(",")] if raw else []
    return res, ids, None


def compare_ids(hf_ids: list[int], our_ids: list[int], tok, enc, text: str) -> dict:
    n = min(len(hf_ids), len(our_ids))
    diff_positions = [i for i in range(n) if hf_ids[i] != our_ids[i]]
    first = diff_positions[0] if diff_positions else (n if len(hf_ids) != len(our_ids) else None)
    out = {
        "identical": first is None,
        "hf_tokens": len(hf_ids),
        "our_tokens": len(our_ids),
        "mismatch_count": len(diff_positions) + abs(len(hf_ids) - len(our_ids)),
        "first_mismatch": first,
    }
    if first is None:
        return out
    lo, hi = max(0, first - 5), first + 6
    out["hf_ids_around"] = hf_ids[lo:hi]
    out["our_ids_around"] = our_ids[lo:hi]
    out["hf_tokens_around"] = [tok.id_to_token(i) for i in hf_ids[lo:hi]]
    out["our_tokens_around"] = [tok.id_to_token(i) for i in our_ids[lo:hi]]
    # Character offset of the first mismatch, from HF's offsets (into the original text).
    if first < len(enc.offsets):
        start = enc.offsets[first][0]
    else:
        start = enc.offsets[-1][1] if enc.offsets else 0
    out["first_mismatch_char_offset"] = start
    out["first_mismatch_byte_offset"] = _nbytes(text[:start])
    out["text_around"] = text[max(0, start - 80): start + 80]
    out["text_at"] = text[start: start + 20]
    # Where do the two sequences line up again? (cheap: decode both prefixes)
    return out


# ---------------------------------------------------------------------------------------


def fmt_table(rows: list[dict]) -> str:
    head = f"{'tokenizer':<14} {'HF MB/s':>9} {'ours MB/s':>10} {'ours/HF':>8} {'HF tok/s':>11} " \
           f"{'ours tok/s':>11} {'ids identical':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        hf, ours, cmp_ = r["hf"], r.get("ours"), r.get("ids")
        o_mb = f"{ours['megabytes_per_second']:.2f}" if ours else "-"
        o_tk = f"{ours['tokens_per_second']:,.0f}" if ours else "-"
        ratio = f"{r['ratio_ours_over_hf']:.3f}" if r.get("ratio_ours_over_hf") else "-"
        ident = "-" if cmp_ is None else ("YES" if cmp_["identical"] else "NO")
        lines.append(f"{r['tokenizer']:<14} {hf['megabytes_per_second']:>9.2f} {o_mb:>10} {ratio:>8} "
                     f"{hf['tokens_per_second']:>11,.0f} {o_tk:>11} {ident:>14}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "mamba2"))
    ap.add_argument("--corpus", help="reuse this UTF-8 file instead of building the corpus")
    ap.add_argument("--write-corpus", help="save the generated corpus here")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side (median reported)")
    ap.add_argument("--tokenizers", nargs="+", default=["gpt-neox-20b", "mistral-v3"],
                    help="folders under Tests/Fixtures/tokenizers (or paths)")
    ap.add_argument("--gpt2", action="store_true", help="also benchmark gpt2")
    ap.add_argument("--hf-only", action="store_true", help="do not run our binary")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run of our binary")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout (table to stderr)")
    args = ap.parse_args()

    report_out = sys.stderr if args.json else sys.stdout

    def say(msg: str = "") -> None:
        print(msg, file=report_out, flush=True)

    names = list(args.tokenizers) + (["gpt2"] if args.gpt2 and "gpt2" not in args.tokenizers else [])
    binary = Path(args.binary)
    if not args.hf_only and not binary.exists():
        say(f"error: {binary} not found (build it with `swift build -c release`, or pass --binary / --hf-only)")
        return 1

    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        tmpdir = Path(tmp)
        if args.corpus:
            corpus_path = Path(args.corpus)
            text = corpus_path.read_bytes().decode("utf-8")
            composition = {"source": str(corpus_path)}
        else:
            text, composition = build_corpus()
            corpus_path = Path(args.write_corpus) if args.write_corpus else tmpdir / "corpus.txt"
            corpus_path.write_bytes(text.encode("utf-8"))
        data = text.encode("utf-8")
        corpus = {"bytes": len(data), "chars": len(text), "sha256": hashlib.sha256(data).hexdigest(),
                  "composition": composition}

        machine = machine_info()
        versions = {"python": platform.python_version(), "tokenizers": tokenizers.__version__,
                    "binary": str(binary), "git": git_rev(),
                    "TOKENIZERS_PARALLELISM": os.environ["TOKENIZERS_PARALLELISM"],
                    "RAYON_NUM_THREADS": os.environ["RAYON_NUM_THREADS"]}
        say(f"machine: nproc={machine['nproc']}, cpu={machine['cpu']}, {machine['os']}")
        say(f"versions: python {versions['python']}, tokenizers {versions['tokenizers']}, "
            f"repo {versions['git']}, binary {binary}")
        say(f"corpus: {corpus['bytes']:,} bytes, {corpus['chars']:,} chars, sha256 {corpus['sha256'][:16]}…  "
            f"{json.dumps(composition)}")
        say(f"runs: {args.runs} timed (+1 warm-up) per side, median reported")
        say()

        rows, all_ok = [], True
        for name in names:
            tok_dir = Path(name) if Path(name).exists() else TOK_DIR / name
            tok_json = tok_dir / "tokenizer.json" if tok_dir.is_dir() else tok_dir
            say(f"[{name}] HF tokenizers …")
            hf, (tok, enc) = bench_hf(tok_json, text, args.runs)
            say(f"[{name}]   HF: {hf['megabytes_per_second']:.2f} MB/s, {hf['tokens']:,} tokens, "
                f"median {hf['median_seconds']:.3f} s")
            row = {"tokenizer": name, "hf": hf}
            if not args.hf_only:
                say(f"[{name}] ours ({binary.name}) …")
                ours, our_ids, err = bench_ours(binary, tok_dir, corpus_path, args.runs,
                                                tmpdir / f"ids-{Path(name).name}.txt", args.timeout)
                if err:
                    say(f"[{name}]   ours FAILED: {err}")
                    row["ours_error"] = err
                    all_ok = False
                else:
                    if ours.get("bytes") != hf["bytes"]:
                        say(f"[{name}]   WARNING: our binary read {ours.get('bytes')} bytes, HF {hf['bytes']}")
                    row["ours"] = ours
                    row["ratio_ours_over_hf"] = ours["megabytes_per_second"] / hf["megabytes_per_second"]
                    cmp_ = compare_ids(list(enc.ids), our_ids, tok, enc, text)
                    row["ids"] = cmp_
                    say(f"[{name}]   ours: {ours['megabytes_per_second']:.2f} MB/s, {ours['tokens']:,} tokens, "
                        f"median {ours['median_seconds']:.3f} s, load {ours['load_seconds']:.3f} s")
                    if cmp_["identical"]:
                        say(f"[{name}]   *** IDS IDENTICAL: all {cmp_['hf_tokens']:,} ids match HF ***")
                    else:
                        all_ok = False
                        say(f"[{name}]   !!! IDS DIFFER: {cmp_['mismatch_count']:,} mismatching positions "
                            f"(HF {cmp_['hf_tokens']:,} ids, ours {cmp_['our_tokens']:,}); first mismatch at "
                            f"token {cmp_['first_mismatch']:,}, char {cmp_['first_mismatch_char_offset']:,} "
                            f"(byte {cmp_['first_mismatch_byte_offset']:,}) !!!")
                        say(f"[{name}]   text at mismatch: {cmp_['text_at']!r}")
                        say(f"[{name}]   text around:      {cmp_['text_around']!r}")
                        say(f"[{name}]   HF   ids/tokens: {cmp_['hf_ids_around']} {cmp_['hf_tokens_around']}")
                        say(f"[{name}]   ours ids/tokens: {cmp_['our_ids_around']} {cmp_['our_tokens_around']}")
            rows.append(row)
            say()

        say(fmt_table(rows))
        if not args.hf_only:
            say("ids identical: " + ("YES for all tokenizers" if all_ok else "NO (see above)"))
        if args.json:
            print(json.dumps({"machine": machine, "versions": versions, "corpus": corpus,
                              "runs": args.runs, "results": rows, "all_ids_identical": all_ok}, indent=1))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
