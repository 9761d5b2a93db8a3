#!/usr/bin/env python3
"""Write the extended tokenizer goldens: Tests/Fixtures/tokenizers/extended-encodings.jsonl.

Usage (from the repository root):

    python3 -m pip install tokenizers==0.23.3
    python3 scripts/make_tokenizer_goldens.py

Only the Python `tokenizers` package is used (`Tokenizer.from_file`), so the goldens are
what the Rust library itself produces. For each tokenizer folder under
Tests/Fixtures/tokenizers/ and for each string of a large, hand-curated plus generated
list, one JSON line is written per (tokenizer, string, add_special_tokens):

    {"tokenizer", "text", "add_special_tokens", "ids", "tokens",
     "decoded" (skip_special_tokens=False), "decoded_skip_special" (True)}

Lines are `json.dumps(obj, ensure_ascii=True)`, the same format as
reference-encodings.jsonl. The script is deterministic: every string is fixed or drawn
from `random.Random(1234)`, so running it twice gives identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
TOK_DIR = ROOT / "Tests" / "Fixtures" / "tokenizers"
OUT = TOK_DIR / "extended-encodings.jsonl"
TOKENIZERS = ["gpt-neox-20b", "gpt2", "mistral-v3", "mistral-v3-legacy"]
SEED = 1234
N_RANDOM = 100

# ---------------------------------------------------------------------------------------
# Hand-curated strings
# ---------------------------------------------------------------------------------------

CODE = [
    # Python, 4-space indentation
    'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n'
    "    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    # Python, tab indentation, blank lines, trailing whitespace
    "class Stack:\n\tdef __init__(self):\n\t\tself.items = []   \n\n\tdef push(self, x):\n"
    "\t\tself.items.append(x)\t\n\n\n\tdef pop(self):\n\t\treturn self.items.pop()\n",
    # Python, CRLF line endings
    "import os\r\nimport sys\r\n\r\nif __name__ == '__main__':\r\n    print(os.getcwd(), sys.argv[1:])\r\n",
    # Python decorators, comprehension, f-strings, lambda
    "@functools.lru_cache(maxsize=None)\ndef squares(n):\n    return {k: k ** 2 for k in range(n) if k % 3 != 0}\n\n"
    "print(f\"{squares(10)!r:>40}\")\nf = lambda x, *a, **kw: (x, a, kw)\n",
    # Python async + try/except, mixed tabs/spaces (bad style, but real)
    "async def main():\n    try:\n\tawait asyncio.sleep(0.5)\n    except (ValueError, KeyError) as e:\n"
    "    \t    raise RuntimeError('boom') from e\n    finally:\n        pass\n",
    # Swift
    "import Foundation\n\nstruct Point: Equatable {\n    var x: Double\n    var y: Double\n\n"
    "    func distance(to other: Point) -> Double {\n        let dx = x - other.x, dy = y - other.y\n"
    "        return (dx * dx + dy * dy).squareRoot()\n    }\n}\n",
    "guard let url = URL(string: \"https://example.com\") else { fatalError(\"bad url\") }\n"
    "let task = Task { @MainActor in\n    try await Task.sleep(nanoseconds: 1_000_000)\n}\n",
    # Rust
    "use std::collections::HashMap;\n\nfn main() {\n    let mut counts: HashMap<&str, usize> = HashMap::new();\n"
    "    for w in \"a b a c\".split_whitespace() {\n        *counts.entry(w).or_insert(0) += 1;\n    }\n"
    "    println!(\"{:?}\", counts);\n}\n",
    "impl<'a, T: Clone + 'a> Iterator for Windows<'a, T> {\n    type Item = &'a [T];\n"
    "    fn next(&mut self) -> Option<Self::Item> { None }\n}\n#[derive(Debug, Clone, PartialEq)]\n",
    # C
    "#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv) {\n\tint *p = malloc(sizeof(int) * 16);\n"
    "\tif (!p) return 1;\n\tfor (int i = 0; i < 16; ++i) p[i] = i << 2;\n\tprintf(\"%d %s\\n\", p[3], argv[0]);\n"
    "\tfree(p);\n\treturn 0;\n}\n",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))\r\n/* block\r\n * comment */\r\nstatic const char *s = \"tab\\there\";\r\n",
    # JavaScript
    "const add = (a, b) => a + b;\nexport default async function handler(req, res) {\n"
    "  const { id } = req.query ?? {};\n  if (id === undefined) return res.status(400).json({ error: 'missing id' });\n"
    "  res.send(`id=${id}`);\n}\n",
    "document.querySelectorAll('.item').forEach((el, i) => {\n\tel.style.opacity = i / 10;\n});\n// TODO: fix\n",
    # Go
    "package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() {\n\tch := make(chan int, 3)\n"
    "\tgo func() { ch <- 42 }()\n\tfmt.Println(strings.ToUpper(\"go\"), <-ch)\n}\n",
    # Haskell
    "module Main where\n\nimport Data.List (sortBy)\n\nquicksort :: Ord a => [a] -> [a]\nquicksort [] = []\n"
    "quicksort (p:xs) = quicksort [x | x <- xs, x < p] ++ [p] ++ quicksort [x | x <- xs, x >= p]\n\n"
    "main = print . quicksort $ [3,1,2]\n",
    # SQL
    "SELECT u.id,\n       u.name,\n       COUNT(o.id) AS orders\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id\n"
    "WHERE u.created_at >= '2024-01-01'\nGROUP BY u.id, u.name\nHAVING COUNT(o.id) > 5\nORDER BY orders DESC;\n",
    "CREATE TABLE t (\n\tid INTEGER PRIMARY KEY,\n\tname TEXT NOT NULL DEFAULT '',\n\tprice NUMERIC(10,2)\n);\n"
    "INSERT INTO t VALUES (1, 'O''Reilly', 19.99);\n",
    # shell
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  echo \"$f\" | tr '[:lower:]' '[:upper:]' >> out.log 2>&1\n"
    "done\n[[ -z \"${HOME:-}\" ]] && exit 1\nls -la | grep -v '^d' | awk '{print $9}'\n",
    # JSON (pretty with 2 spaces, and with tabs)
    '{\n  "name": "swift-mamba2",\n  "version": "0.1.0",\n  "dependencies": {\n    "numpy": ">=1.26",\n'
    '    "list": [1, 2.5, -3e10, true, false, null]\n  }\n}\n',
    '{\n\t"a": "\\u00e9\\n\\t",\n\t"b": [\n\t\t{"c": {}}\n\t]\n}',
    # HTML
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n    <meta charset=\"utf-8\">\n    <title>Test &amp; page</title>\n"
    "</head>\n<body>\n\t<p class=\"x\">Hello&nbsp;world &lt;3</p>\n\t<!-- comment -->\n</body>\n</html>\n",
    # Makefile / YAML / diff
    "all: build\n\nbuild:\n\t$(CC) -O2 -o app main.c\n\nclean:\n\trm -f app *.o\n",
    "jobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: swift test\n",
    "--- a/file.py\n+++ b/file.py\n@@ -1,3 +1,4 @@\n import os\n-import sys\n+import sys, re\n+\n def f():\n",
    # deep indentation / trailing whitespace / blank lines with spaces
    "if a:\n    if b:\n        if c:\n            if d:\n                if e:\n                    if f:\n"
    "                        if g:\n                            return 'deep'\n",
    "line with trailing spaces   \nline with trailing tab\t\n   \n\t\n  \t  \nend",
    "x = 1  # comment\n\n\n\n\ny = 2\n",
]

# Runs of 1..40 spaces in context, plus a few bare runs.
SPACE_RUNS = [f"a{' ' * n}b" for n in range(1, 41)]
SPACE_RUNS += [" " * n for n in (1, 2, 3, 7, 23, 24, 25, 40)]
SPACE_RUNS += [
    "\n" + " " * 12 + "return x",
    "x" + " " * 30 + "\n" + " " * 30 + "y",
    "\t \t \t" + "  mixed",
    " \t\t  \t   \t\t\t    end",
    "\n\n\n\n",
    "\r\n\r\n\r\n",
    "a\r\rb\n\rc",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "1000000", "007", "0000000000",
    "3.14159", "-0.5", "+1.0e-9", "6.02214076e23", "1,234,567.89", "1.234.567,89", "12 345 678",
    "0xDEADBEEF", "0x7fff_ffff", "0b1010_1010", "0o755", "#ff00aa",
    "2024-02-29", "31/12/1999", "2024-06-01T12:34:56.789Z", "12:00:00 PM", "v1.2.3-beta.4+build.567",
    "192.168.0.1", "::1", "fe80::1ff:fe23:4567:890a",
    "3141592653589793238462643383279502884197169399375105820974944592",
    "phone: +44 20 7946 0958, ext. 1234",
    "1st 2nd 3rd 4th 21st 100th",
    "½ ¼ ¾ ⅓ ⅞",
    "١٢٣٤٥٦٧٨٩٠ ۱۲۳ ०१२३४५६७८९ ๑๒๓",
]

EMOJI = [
    "😀", "😀😃😄😁", "I ❤️ NY", "❤", "❤️", "☺︎ vs ☺️",
    "👨\u200d👩\u200d👧\u200d👦", "👩\u200d💻 👨\u200d🚀 👩🏾\u200d🔬 🧑\u200d🍳",
    "👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿", "🇺🇸 🇯🇵 🇫🇷 🇩🇪 🇧🇷", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "1️⃣ 2️⃣ #️⃣ *️⃣ 🔟", "🏳️\u200d⚧️ 🏳️\u200d🌈", "👁️\u200d🗨️", "🤷\u200d♀️🤦🏼\u200d♂️",
    "emoji at end 🎉", "🎉 emoji at start", "text🙂text🙃text", "💩" * 7,
    "🧬🧪🔬🧫 science", "👋🏽Hello👋🏽",
]

SCRIPTS = [
    "我爱自然语言处理。今天天气很好，我们去公园散步吧！",
    "機械学習は人工知能の一分野です。ひらがなとカタカナ、そして漢字。",
    "ｶﾀｶﾅ 半角カナ ﾃｽﾄ",
    "대한민국의 수도는 서울입니다. 안녕하세요!",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af",  # decomposed jamo (각 한글)
    "العربية لغة جميلة، وعدد المتحدثين بها ٤٠٠ مليون تقريباً.",
    "في عام 2023 زار 1500 شخص المتحف",
    "עברית: המחיר הוא 120 ₪ ליום, כולל מע\"מ 17%.",
    "שָׁלוֹם עֲלֵיכֶם",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "हिन्दी भारत की एक भाषा है। क्षत्रिय ज्ञान",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    "Ἀρχιμήδης ᾧ ᾅ ῷ",
    "Tiếng Việt có dấu: Đường phố Hà Nội",
    "Türkçe: İstanbul ığdır ŞĞÜÇÖ",
    "Polski: Zażółć gęślą jaźń",
    "ᚠᛇᚻ᛫ᛒᛦᚦ ጤና ይስጥልኝ ⴰⵣⵓⵍ",
    "Ꭰ Ꭱ Ꭲ 𐌰𐌱𐌲 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙",
    "mixed: English, 中文, 日本語, 한국어, العربية, עברית, русский 123",
    "RTL with numbers: אני בן 25 ונולדתי ב-1999 <-> مرحبا 2024",
]

UNICODE_NORM = [
    "e\u0301", "\u00e9", "cafe\u0301 vs caf\u00e9",
    "a\u0301\u0302\u0303\u0304\u0305\u0306\u0307",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u0334\u0335\u031c\u0330\u0354\u036bL\u0337\u0307\u036fG\u0338O\u0489!",
    "o\u0308\u0304 \u1e7b u\u0308\u0304",
    "\ufb01nance \ufb02ow \ufb00 \ufb03 \ufb04",
    "\uff21\uff22\uff23 \uff41\uff42\uff43 \uff10\uff11\uff12 \uff01\uff1f",
    "x\u00b2 + y\u00b3 = z\u2074, H\u2082O, 10\u207b\u00b3",
    "\u216b \u2162 \u2173 chapter \u2160",
    "\u212b vs \u00c5 vs A\u030a",
    "\u2126 vs \u03a9, \u212a vs K",
    "\u2460\u2461\u2462 \u2474 \u249c",
    "\u3392 \u33a1 \u2103 \u2109 \u2116 \u2122",
    "\u1e9b\u0323",
    "\u0071\u0307\u0323 vs \u0071\u0323\u0307",
    "\uac00 vs \u1100\u1161",
    "\u0130 \u0131 \u00df \u1e9e \u01c4 \u01c5 \u01c6",
]

INVISIBLES = [
    "zero\u200bwidth", "a\u200cb\u200dc\u2060d", "\ufeffBOM at start", "BOM\ufeffin middle", "\ufeff",
    "\ufffd", "bad bytes \ufffd\ufffd here",
    "nbsp\u00a0\u00a0two", "\u00a0leading nbsp", "narrow\u202fnbsp",
    "spaces:" + "".join(chr(c) + "|" for c in range(0x2000, 0x200B)),
    "ideographic\u3000space\u3000\u3000", "ogham\u1680space", "next\u0085line", "line\u2028sep\u2029para",
    "soft\u00adhyphen", "left\u200eright\u200fmark", "\u202eright-to-left override\u202c", "word\u2063joiner\u2064",
    "variation \u2764\ufe0e \u2764\ufe0f", "tag \U000e0041\U000e0042",
    "private use \ue000\uf8ff \U000f0000",
    "noncharacter \ufdd0 \uffff",
]

CONTROL = [
    "".join(chr(c) for c in range(0x00, 0x20)) + "\x7f",
    "null\x00byte", "\x00", "bell\x07 backspace\x08 escape\x1b[31mred\x1b[0m",
    "form\x0cfeed vertical\x0btab", "del\x7fete", "\x01\x02\x03abc\x1e\x1f",
    "c1 controls \x80\x81\x9f end",
]

SPECIAL = [
    "<|endoftext|>", "<|endoftext|>hello", "hello<|endoftext|>", "hello <|endoftext|> world",
    "<|endoftext|><|endoftext|>", "<|endoftext|> <|endoftext|>", " <|endoftext|> ",
    "<|padding|>", "a<|padding|><|endoftext|>b", "<|endoftext|>\n<|padding|>\n",
    "<s>", "</s>", "<unk>", "<s></s>", "<s> </s>", " <s>hello</s> ",
    "<s>[INST] Hello [/INST]", "[INST]Hello[/INST]answer</s>", "<s>[INST]  two spaces  [/INST]  </s>",
    "[INST]", "[/INST]", "text[INST]text", "[control_8]", "a [control_8] b[control_9]c",
    "[control_12]", "a[control_12] [control_748]b", "[IMG][PREFIX]code[SUFFIX]x[MIDDLE]",
    "<0x41>", "byte token <0x41><0x0A> text", "[TOOL_CALLS][AVAILABLE_TOOLS]", "[REFERENCE_DOC_0] doc",
    "<|endoftext|><s>[INST]</s><unk><|padding|>",
    "almost special: <|endoftext| <s <|endoftext|>> [INST [INST]]",
    "\n<s>\n", "\t[INST]\t", "  <unk>  ",
]

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's, it'S, IT'S, it's. He'll, HE'LL, we've, WE'VE, I'd, I'D, they're, THEY'RE, I'm, I'M.",
    "don't DON'T Don't doN'T won't can't shouldn't've y'all 'tis o'clock",
    "'s 'S 'll 'LL 've 'VE 're 'RE 'm 'M 'd 'D 't 'T",
    "rock 'n' roll",
    "\u2019s \u2019ll curly apostrophes don\u2019t",
    "\"Quoted,\" she said. 'Single-quoted,' he replied\u2014\u201csmart quotes\u201d and \u2018these\u2019\u2026",
    "Mr. Smith paid $3.50 for 2 apples & 1 orange @ 9:30am (roughly).",
    "https://www.example.org/a/b?c=d&e=f#g mailto:someone@example.com",
    "snake_case camelCase PascalCase kebab-case SCREAMING_SNAKE_CASE",
    "ALL CAPS SHOUTING TEXT!!!",
    "   leading spaces", "trailing spaces   ", "\nleading newline", "trailing newline\n",
    "\n\n both \n\n", " ", "\n", "\t", "\r\n", " \n ", "a", "A", "?", "..." , "a\n", "\na",
    "Hello\u00a0world", "Hello  world", "Hello\tworld", "Hello\r\nworld",
]

# ---------------------------------------------------------------------------------------
# Long strings
# ---------------------------------------------------------------------------------------


def long_strings() -> list[str]:
    rng = random.Random(SEED + 1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    word500 = "".join(rng.choice(letters) for _ in range(500))
    digits300 = "".join(rng.choice("0123456789") for _ in range(300))
    emoji1000 = "\U0001F600" * 1000
    pieces = [
        "The", "tokenizer", "handles", "mixed", "text:", "中文", "日本語", "한국어", "émigré", "naïve",
        "Привет", "مرحبا", "🙂", "👩\u200d💻", "12345", "3.14", "x=y+1;", "(a,b)", "don't", "IT'S",
        "\t", "  ", "  ", "\u00a0", "—", "...",
    ]
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < 2000:
        parts.append(rng.choice(pieces))
    mixed2000 = " ".join(parts)[:2000]
    return [
        word500,
        "A" * 500,
        digits300,
        emoji1000,
        mixed2000,
        "ab" * 300,
        " " * 200,
        "\n" * 100,
        "-" * 120 + "\n" + "=" * 120,
        "ｗ" * 300,
    ]


# ---------------------------------------------------------------------------------------
# Random strings from a mixed alphabet
# ---------------------------------------------------------------------------------------

ALPHABET_GROUPS = [
    [chr(c) for c in range(0x20, 0x7F)] * 3,  # printable ASCII, weighted
    [chr(c) for c in range(0xA0, 0x100)],  # Latin-1 supplement
    list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年"),  # CJK
    list("あいうえおかきくけこアイウエオカキクケコ漢字"),
    list("가나다라마바사아자차카타파하"),
    list("😀😂🥲👍🏽❤️🇺🇸🎉🤖🧠👩\u200d💻"),  # emoji incl. modifiers, VS16, ZWJ
    ["\u0300", "\u0301", "\u0302", "\u0308", "\u0323", "\u0327", "\u0338", "\u20dd"],  # combining marks
    [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\u0085"],
    list("абвгдежзийΑΒΓΔαβγδ"),
    list("ابتثجحעבריתกขคงअआइई"),
    ["<s>", "</s>", "<|endoftext|>", "[INST]", "'s", "'ll", "\u2019"],
]


def random_strings() -> list[str]:
    rng = random.Random(SEED)
    out: list[str] = []
    for _ in range(N_RANDOM):
        length = rng.randint(1, 80)
        # each string draws from a random subset of groups, so some are mostly one script
        k = rng.randint(1, len(ALPHABET_GROUPS))
        groups = rng.sample(range(len(ALPHABET_GROUPS)), k)
        alphabet = [ch for g in sorted(groups) for ch in ALPHABET_GROUPS[g]]
        s = "".join(rng.choice(alphabet) for _ in range(length))
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------


def all_strings() -> list[str]:
    seen: set[str] = set()
    out: list[str] = [""]
    seen.add("")
    for group in (CODE, SPACE_RUNS, NUMBERS, EMOJI, SCRIPTS, UNICODE_NORM, INVISIBLES, CONTROL,
                  SPECIAL, PROSE, long_strings(), random_strings()):
        for s in group:
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def with_special(strings: list[str]) -> list[str]:
    """The subset that is also encoded with add_special_tokens=True (~30 strings)."""
    picks = [
        "", " ", "\n", "a", "Hello  world", "   leading spaces", "trailing spaces   ",
        "The quick brown fox jumps over the lazy dog.",
        "<s>", "</s>", "<unk>", "<|endoftext|>", "<|endoftext|>hello", " <s>hello</s> ",
        "<s>[INST] Hello [/INST]", "[INST]Hello[/INST]answer</s>", "a [control_8] b[control_9]c",
        "a[control_12] [control_748]b", "byte token <0x41><0x0A> text", "\ufeffBOM at start", "\u00a0leading nbsp",
        "e\u0301", "\u212b vs \u00c5 vs A\u030a", "\uff21\uff22\uff23 \uff41\uff42\uff43 \uff10\uff11\uff12 \uff01\uff1f",
        "我爱自然语言处理。今天天气很好，我们去公园散步吧！", "👨\u200d👩\u200d👧\u200d👦",
        "don't DON'T Don't doN'T won't can't shouldn't've y'all 'tis o'clock",
    ]
    picks.append(CODE[0])
    picks.append(CODE[2])
    picks.append(CONTROL[0])
    picks.append(random_strings()[0])
    picks.append(random_strings()[1])
    s = set(strings)
    missing = [p for p in picks if p not in s]
    assert not missing, missing
    return picks


def record(name: str, tok: Tokenizer, text: str, add_special: bool) -> str:
    enc = tok.encode(text, add_special_tokens=add_special)
    ids = list(enc.ids)
    obj = {
        "tokenizer": name,
        "text": text,
        "add_special_tokens": add_special,
        "ids": ids,
        "tokens": list(enc.tokens),
        "decoded": tok.decode(ids, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
    }
    return json.dumps(obj, ensure_ascii=True)


def main() -> int:
    strings = all_strings()
    specials = with_special(strings)
    lines: list[str] = []
    counts: dict[str, tuple[int, int]] = {}
    for name in TOKENIZERS:
        tok = Tokenizer.from_file(str(TOK_DIR / name / "tokenizer.json"))
        n0 = len(lines)
        for text in strings:
            lines.append(record(name, tok, text, False))
        n1 = len(lines)
        for text in specials:
            lines.append(record(name, tok, text, True))
        counts[name] = (n1 - n0, len(lines) - n1)
    data = ("\n".join(lines) + "\n").encode("ascii")
    OUT.write_bytes(data)
    print(f"tokenizers {tokenizers.__version__}: {len(strings)} distinct strings, "
          f"{len(specials)} also with add_special_tokens=True")
    for name, (a, b) in counts.items():
        print(f"  {name:18s} {a + b:4d} lines ({a} add_special_tokens=False, {b} True)")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(lines)} lines, {len(data):,} bytes, "
          f"sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
