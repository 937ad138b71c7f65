"""The tokenization cache: a second call reads exactly what the first computed; anything that changes the
tokens (max_length, chat template, examples, end-of-turn ids) misses; a damaged file is rebuilt."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tunewise.schema import Example, Message
from tunewise.train.sft_data import tokenize_examples
from tunewise.train.token_cache import SUFFIX, TokenCache


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tunewise.assets import bundled_tokenizer_path

    return AutoTokenizer.from_pretrained(bundled_tokenizer_path())


def examples(n: int = 12) -> list[Example]:
    """Varied lengths, a multi-turn conversation with an untrained turn, a reply truncation cuts short, and a
    prompt so long that truncation leaves nothing to train."""
    rows = [Example(id=f"e{i}", line=i + 1, messages=(
        Message("system", "Classify the text."), Message("user", f"item {i} " + "word " * (3 * i)),
        Message("assistant", ("sport", "tech", "politics")[i % 3]))) for i in range(n)]
    rows.append(Example(id="multi", line=n + 1, messages=(
        Message("user", "Capital of Spain?"), Message("assistant", "Lisbon.", 0), Message("user", "Wrong. France?"),
        Message("assistant", "Paris."))))
    rows.append(Example(id="long-reply", line=n + 2, messages=(
        Message("user", "Say it at length."), Message("assistant", "a long answer " * 30))))
    rows.append(Example(id="long-prompt", line=n + 3, messages=(
        Message("user", "very " * 80 + "long question"), Message("assistant", "yes"))))
    return rows


def test_second_call_hits_and_equals_the_uncached_result(tokenizer, tmp_path: Path) -> None:
    data = examples()
    direct = tokenize_examples(data, tokenizer, 64)
    assert direct[1] == ["long-prompt"] and direct[2] > 0  # the set exercises dropping and truncation

    first = TokenCache(tmp_path, tokenizer, 64)
    assert first.tokenize(data) == direct and (first.hits, first.misses) == (0, 1)
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1

    second = TokenCache(tmp_path, tokenizer, 64)  # a new process would build a new cache object too
    assert second.tokenize(data) == direct and (second.hits, second.misses) == (1, 0)


@pytest.mark.parametrize("change", ["max_length", "template", "example", "end_of_turn"])
def test_what_changes_the_tokens_misses(tokenizer, tmp_path: Path, change: str) -> None:
    data = examples()
    TokenCache(tmp_path, tokenizer, 64).tokenize(data)
    other_tokenizer, max_length, other_data, ends = tokenizer, 64, data, None
    if change == "max_length":
        max_length = 80
    elif change == "template":
        other_tokenizer = copy.deepcopy(tokenizer)
        other_tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    elif change == "example":
        other_data = data[:-1] + [Example(id="long-prompt", line=99, messages=(
            Message("user", "short now"), Message("assistant", "yes")))]
    else:
        ends = [tokenizer.convert_tokens_to_ids("\n")]
    cache = TokenCache(tmp_path, other_tokenizer, max_length, ends)
    result = cache.tokenize(other_data)
    assert (cache.hits, cache.misses) == (0, 1)
    assert result == tokenize_examples(other_data, other_tokenizer, max_length, ends)
    assert result != tokenize_examples(data, tokenizer, 64)  # the change really changes the tokens
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip_payload_byte", "garbage", "empty", "other_key"])
def test_a_damaged_file_is_rebuilt_without_error(tokenizer, tmp_path: Path, damage: str) -> None:
    data = examples()
    TokenCache(tmp_path, tokenizer, 64).tokenize(data)
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_payload_byte":
        path.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid file copied under another example set's name
        other = TokenCache(tmp_path, tokenizer, 64)
        other.tokenize(data[:3])
        (other_path,) = set(tmp_path.glob(f"*{SUFFIX}")) - {path}
        path.write_bytes(other_path.read_bytes())
    cache = TokenCache(tmp_path, tokenizer, 64)
    assert cache.tokenize(data) == tokenize_examples(data, tokenizer, 64)
    assert (cache.hits, cache.misses) == (0, 1)
    again = TokenCache(tmp_path, tokenizer, 64)
    assert again.tokenize(data) == tokenize_examples(data, tokenizer, 64) and again.hits == 1  # rewritten whole


def test_an_unwritable_cache_still_tokenizes(tokenizer, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    cache = TokenCache(blocked / "tokenized", tokenizer, 64)
    assert cache.tokenize(examples()) == tokenize_examples(examples(), tokenizer, 64)
    assert cache.tokenize(examples()) == tokenize_examples(examples(), tokenizer, 64) and cache.hits == 0


def test_only_the_newest_files_are_kept(tokenizer, tmp_path: Path) -> None:
    cache = TokenCache(tmp_path, tokenizer, 64, keep=3)
    data = examples()
    for size in range(2, 8):
        cache.tokenize(data[:size])
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 3
    later = TokenCache(tmp_path, tokenizer, 64)
    assert later.tokenize(data[:7]) == tokenize_examples(data[:7], tokenizer, 64) and later.hits == 1
    assert later.tokenize(data[:2]) == tokenize_examples(data[:2], tokenizer, 64) and later.misses == 1


def test_train_sft_reads_the_cache_on_its_second_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tunewise.train.settings import SFTSettings
    from tunewise.train.sft import train_sft

    data = examples(8)[:8]
    settings = SFTSettings(method="lora", max_steps=1, batch_size=4, lora_r=2, lora_alpha=4, precision="fp32")
    runs = [train_sft(data, data[:2], settings, str(tiny_model_dir), tmp_path / f"run{i}", resume=False,
                      token_cache=tmp_path / "tokens") for i in range(2)]
    assert [r.info.tokenized_from_cache for r in runs] == [False, True]
    assert runs[0].info.tokens == runs[1].info.tokens and runs[0].info.trained_tokens == runs[1].info.trained_tokens
    record = json.loads(json.dumps(runs[1].info.to_dict()))
    assert record["tokenized_from_cache"] is True
