"""The pre-token shortcut for token counts gives exactly the tokenizer's counts, on text chosen to break it.

`tunewise check` counts most texts without tokenizing them (src/tunewise/data/bytelevel.py); any difference
from the real tokenizer would shift context-length warnings and the length statistics, so every test here
compares against `tokenizers` itself.
"""

from __future__ import annotations

import json
import random
import string

import pytest

from tunewise import assets
from tunewise.data.bytelevel import PretokenCounter
from tunewise.data.tokens import load_counter

# Pieces that stress the GPT-2 split: contractions, runs of spaces and line breaks, digits, punctuation, an added
# token, controls and non-ASCII (the last three must go to the real tokenizer).
PIECES = [*string.ascii_letters[:12], "the", " model", "'s", "'ll", "'re", "'ve", "'d", "'m", "'t", "'", "''", "  ",
          "   ", "\n", "\n\n", " \n", "\t", "\r\n", "123", "4.5", "-", "...", "<|im_end|>", "<", "|", "é", "\x0b",
          "\x0c", "\x1c", "\x00", "\x7f", "_x", "!?", " ", " ", "S", "'S"]


@pytest.fixture(scope="module")
def counter():
    found, fallback = load_counter(None)
    assert fallback is None, fallback
    return found


def _exact(counter, texts: list[str]) -> list[int]:
    encoded = counter.tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [len(e.ids) for e in encoded]


def test_the_bundled_tokenizer_takes_the_shortcut(counter):
    assert PretokenCounter.applies_to(counter.tokenizer.backend_tokenizer)
    assert counter._pretokens() is not None


def test_random_text_counts_exactly(counter):
    rng = random.Random(7)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    texts += [" ".join(rng.choice(["alpha", "b'd", "x1", "9", "?!", "'s", "Don't", "it's", "I'm", "a_b", "--"])
                       for _ in range(rng.randint(1, 15))) for _ in range(10_000)]
    texts += ["", " ", "  lead", "trail  ", "x"]
    assert counter.count_texts(texts) == _exact(counter, texts)
    # and again from warm caches, in another order
    texts.reverse()
    assert counter.count_texts(texts) == _exact(counter, texts)


def test_real_articles_count_exactly(counter):
    rows = [json.loads(line) for line in assets.bundled_dataset_path().read_text(encoding="utf-8").splitlines()]
    texts = [value for row in rows[:400] for value in row.values() if isinstance(value, str)]
    sentences = [s for text in texts for s in text.split(". ")]
    assert any(t.isascii() and "\n" in t for t in texts)  # multi-line text takes the regex path
    assert counter.count_texts(texts + sentences) == _exact(counter, texts + sentences)


def test_which_texts_are_counted_for_real(counter):
    shortcut = counter._pretokens()
    assert all(shortcut.eligible(t) for t in ["plain words here", "two\nlines", "a\tb", " lead", ""])
    assert not any(shortcut.eligible(t) for t in ["café", "ends <|im_end|>", "bell\x07", "vt\x0bx", "\x7f"])
    assert shortcut.eligible("a < b") and shortcut.eligible("<|im_start")  # a "<" alone is no added token


def test_other_tokenizers_are_tokenized_for_real(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tunewise.data.tokens import TokenCounter

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    wordlevel = TokenCounter(PreTrainedTokenizerFast(tokenizer_object=backend), None, "tiny")
    assert not PretokenCounter.applies_to(backend)
    assert wordlevel.count_texts(["a b c", "a"]) == [3, 1]
    assert wordlevel._pretokens() is None
