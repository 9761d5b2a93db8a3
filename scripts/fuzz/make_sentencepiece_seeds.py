"""Small SentencePiece BPE models as extra fuzzing seeds (pip install sentencepiece).

The only SentencePiece fixture is Mistral's 587 KB v3 model, which the fuzzer reads a few
times a second; these two (under 6 KB: no normalizer table, one with byte fallback) let it try
thousands of inputs a second. They go into the corpus scripts/fuzz/run.sh grows:
    python3 scripts/fuzz/make_sentencepiece_seeds.py && scripts/fuzz/run.sh sentencepiece 600
"""
import pathlib
import random
import tempfile

import sentencepiece

root = pathlib.Path(__file__).resolve().parents[2]
corpus = root / ".build-fuzz" / "corpus" / "sentencepiece"
corpus.mkdir(parents=True, exist_ok=True)
random.seed(0)
words = "def return class import from self print range len if else elif for while try except with as lambda yield None True False".split()
with tempfile.TemporaryDirectory() as work:
    text = pathlib.Path(work) / "text.txt"
    text.write_text("\n".join(" ".join(random.choice(words) for _ in range(12)) for _ in range(400)))
    for vocab, byte_fallback in [(60, False), (320, True)]:
        prefix = pathlib.Path(work) / f"bpe-{vocab}"
        sentencepiece.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(prefix), vocab_size=vocab, model_type="bpe", byte_fallback=byte_fallback,
            character_coverage=1.0, normalization_rule_name="identity", minloglevel=2)
        target = corpus / f"seed-small-bpe-{vocab}.model"
        target.write_bytes(prefix.with_suffix(".model").read_bytes())
        print(target, target.stat().st_size, "bytes")
