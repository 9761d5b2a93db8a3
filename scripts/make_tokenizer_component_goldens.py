#!/usr/bin/env python3
"""Small tokenizer.json files that exercise every component type the Swift port implements,
with their encodings computed by HF `tokenizers`.

Each variant trains a tiny BPE on a fixed corpus with one combination of normalizer,
pre-tokenizer, post-processor, decoder and added-token options, saves it as
Tests/Fixtures/tokenizers/components/<name>.json, and writes the expected encodings of a fixed
list of strings to components/expected.jsonl (same line format as reference-encodings.jsonl,
with "tokenizer" = <name>).

Usage (from the repository root): python3 scripts/make_tokenizer_component_goldens.py
Requires: tokenizers==0.23.3 (see scripts/requirements-fixtures.txt).
"""
import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "tokenizers", "components")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 1234567890 numbers: 3.14159, 2,718.",
    "Hello, World! HELLO world? hello-world; it's don't we'll they've I'm",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Ünïcödé tëxt: café, naïve, Æsir, ﬁne, ＡＢＣ, x², Ⅻ, Å; 日本語のテキスト, 中文文本, 한국어 텍스트.",
    "Tabs\tand  double  spaces,   triple   spaces.\r\nWindows line endings\r\n",
    "email me: someone@example.com or visit https://example.com/path?query=1&b=2 #hashtag @user",
    "Emoji 🙂👍🏽👨‍👩‍👧 and symbols ©®™ — “quotes” ‘single’ «guillemets» … ellipsis",
]

STRINGS = [
    "",
    " ",
    "Hello, World!",
    "  Hello   world  ",
    "HELLO world? it's DON'T",
    "café naïve Ünïcödé",
    "e\u0301 vs \u00e9",
    "ﬁne ＡＢＣ x² Ⅻ Å",
    "1234567890 and 3.14159",
    "def f(x):\n\treturn x * 2\r\n",
    "日本語のテキスト 中文 한국어",
    "🙂👍🏽👨‍👩‍👧",
    "someone@example.com https://example.com/a?b=1",
    "<special> in the middle <special>",
    "word<special>word",
    "  <special>  spaced  ",
    "[MASK] masked [MASK]word",
    "unknownchars ∑∫√ and ☃",
    "a\u00a0b\u2003c\u3000d",
    "<b> bold</b>",
]


def train(tokenizer, vocab_size=300, special=()):
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=list(special), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 3, trainer=trainer)
    return tokenizer


def variants():
    # 1. BERT-like: NFD + Lowercase + Strip, BertPreTokenizer, Bert post-processor, unknown token.
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.Strip()])
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    train(t, special=["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.Strip(" ", 0, 1)])
    t.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False, single_word=True, normalized=False, special=True)])
    yield "bert-like", t

    # 2. NFKC + Whitespace + Digits(individual) + Punctuation, end_of_word_suffix, fuse_unk.
    t = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>", fuse_unk=True))
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation(behavior="isolated")])
    train(t, special=["<unk>"])
    t.decoder = decoders.Sequence([decoders.Replace("</w>", " "), decoders.Strip(" ", 0, 1)])
    t.add_tokens([AddedToken("<special>", lstrip=False, rstrip=True, normalized=True, special=False)])
    yield "nfkc-whitespace-digits", t

    # 3. NFKD + WhitespaceSplit + Split regex (MergedWithPrevious, Contiguous, Removed, inverted).
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Replace(Regex(r"\s+"), " ")])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="contiguous"),
        pre_tokenizers.Split("@", behavior="removed"),
        pre_tokenizers.Split(Regex(r"[.,!?]"), behavior="isolated", invert=True),
    ])
    train(t, special=["<unk>"])
    t.add_tokens([AddedToken("<special>", lstrip=True, rstrip=True, normalized=False)])
    yield "split-behaviours", t

    # 4. Metaspace (prepend always, split) + Digits contiguous, Metaspace decoder, template with BOS/EOS.
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Strip(left=False, right=True)])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True), pre_tokenizers.Digits(individual_digits=False)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    train(t, vocab_size=600, special=specials)
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", t.token_to_id("<s>")), ("</s>", t.token_to_id("</s>"))])
    t.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    t.add_special_tokens([AddedToken("<special>", normalized=False, special=True)])
    yield "metaspace-always", t

    # 5. Metaspace never + merged tokens with an ignore_merges BPE, Fuse decoder, Prepend/Replace.
    t = Tokenizer(models.BPE(unk_token="<unk>", ignore_merges=True))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    train(t, special=["<unk>"])
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    t.add_tokens([AddedToken("<b>", single_word=False, normalized=True), AddedToken("</b>", normalized=True)])
    yield "prepend-replace", t

    # 6. Byte-level with add_prefix_space, use_regex false after a Split, ByteLevel everything.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+"), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|eot|>"], show_progress=False)
    t.train_from_iterator(CORPUS * 3, trainer=trainer)
    t.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(single="$A <|eot|>", special_tokens=[("<|eot|>", t.token_to_id("<|eot|>"))])])
    t.decoder = decoders.ByteLevel()
    t.add_tokens([AddedToken("<special>", normalized=False, lstrip=True)])
    yield "bytelevel-prefix-split", t


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for name, tokenizer in variants():
        tokenizer.save(os.path.join(OUT, f"{name}.json"))
        reloaded = Tokenizer.from_file(os.path.join(OUT, f"{name}.json"))
        for text in STRINGS:
            for add in (False, True):
                encoding = reloaded.encode(text, add_special_tokens=add)
                lines.append(json.dumps({
                    "tokenizer": name, "text": text, "add_special_tokens": add,
                    "ids": encoding.ids, "tokens": encoding.tokens,
                    "decoded": reloaded.decode(encoding.ids, skip_special_tokens=False),
                    "decoded_skip_special": reloaded.decode(encoding.ids, skip_special_tokens=True),
                }, ensure_ascii=True))
    with open(os.path.join(OUT, "expected.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} lines")


if __name__ == "__main__":
    main()
