"""Descriptive statistics of a dataset: size, token lengths, labels, vocabulary and diversity.

Pure functions over examples and token counts; nothing here decides whether data is good.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunewise.data.textnorm import words_of
from tunewise.data.textviews import TextViews
from tunewise.data.tokens import Lengths
from tunewise.schema import Example

PERCENTILES = (50, 90, 95, 99)


def length_summary(values: Sequence[int]) -> dict[str, float | int]:
    if not values:
        return {}
    array = np.asarray(values)
    summary: dict[str, float | int] = {"min": int(array.min()), "mean": round(float(array.mean()), 1)}
    summary |= {f"p{p}": int(np.percentile(array, p, method="higher")) for p in PERCENTILES}
    summary["max"] = int(array.max())
    summary["sum"] = int(array.sum())
    return summary


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams (Li et al., 2016): 1.0 means no phrase repeats."""
    return _distinct([words_of(text) for text in texts], n)


def _distinct(tokenised: Sequence[list[str]], n: int) -> float:
    """`distinct_n` over texts already split into words: the n-grams go into the set by C-level zips, not a
    Python loop per n-gram (the loop was most of `check`'s statistics time on 100k lines)."""
    total, seen = 0, set()
    for words in tokenised:
        if len(words) >= n:
            total += len(words) - n + 1
            seen.update(zip(*(words[i:] for i in range(n))) if n > 1 else words)
    return round(len(seen) / total, 4) if total else 0.0


def _distinct_1_2(tokenised: Sequence[list[str]]) -> tuple[float, float]:
    """`_distinct` for n = 1 and 2 in one pass over the texts (the two passes were a tenth of `check`)."""
    words_total, pairs_total, words_seen, pairs_seen = 0, 0, set(), set()
    for words in tokenised:
        if words:
            words_total += len(words)
            pairs_total += len(words) - 1
            words_seen.update(words)
            pairs_seen.update(zip(words, words[1:]))
    return (round(len(words_seen) / words_total, 4) if words_total else 0.0,
            round(len(pairs_seen) / pairs_total, 4) if pairs_total else 0.0)


def text_stats(examples: Sequence[Example], task: str, views: TextViews | None = None) -> dict[str, Any]:
    """Everything but the token counts: `check` computes it while the tokenizer still runs in another thread.
    `views` (built once per check and shared with the checks) holds each distinct text's words."""
    words = (views or TextViews(examples)).words
    # an input is one message's own text unless the prompt has several non-system turns
    inputs = [words[text] if (text := e.input) in words else words_of(text) for e in examples]
    outputs = [words[text] if (text := e.output) in words else words_of(text) for e in examples]
    stats: dict[str, Any] = {
        "examples": len(examples),
        "messages_per_example": round(sum(len(e.messages) for e in examples) / len(examples), 2) if examples else 0,
        "with_system_prompt": sum(any(m.role == "system" for m in e.messages) for e in examples),
        "vocabulary_size": len(set().union(*words.values())),
        "diversity": dict(zip(("input_distinct_1", "input_distinct_2"), _distinct_1_2(inputs)))
        | dict(zip(("output_distinct_1", "output_distinct_2"), _distinct_1_2(outputs))),
    }
    if task == "classify":
        stats["labels"] = dict(Counter(e.label for e in examples).most_common())
    return stats


def dataset_stats(examples: Sequence[Example], lengths: Lengths, task: str,
                  text: dict[str, Any] | None = None) -> dict[str, Any]:
    """`text_stats` (or `text`, computed before) with the token length summaries, in the report's order."""
    text = text_stats(examples, task) if text is None else text
    tokens = {"prompt": length_summary(lengths.prompt), "output": length_summary(lengths.output),
              "total": length_summary(lengths.total)}
    head = {key: text[key] for key in ("examples", "messages_per_example", "with_system_prompt")}
    return head | {"tokens": tokens} | {key: value for key, value in text.items() if key not in head}
