"""Descriptive statistics of a dataset: size, token lengths, labels, vocabulary and diversity.

Pure functions over examples and token counts; nothing here decides whether data is good.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunewise.data.tokens import Lengths
from tunewise.schema import Example

_WORD = re.compile(r"\w+", re.UNICODE)
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
    total, seen = 0, set()
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = zip(*(words[i:] for i in range(n)))
        for gram in grams:
            total += 1
            seen.add(gram)
    return round(len(seen) / total, 4) if total else 0.0


def dataset_stats(examples: Sequence[Example], lengths: Lengths, task: str) -> dict[str, Any]:
    vocabulary: set[str] = set()
    for e in examples:
        for m in e.messages:
            vocabulary.update(_WORD.findall(m.content.lower()))
    inputs = [e.input for e in examples]
    outputs = [e.output for e in examples]
    stats: dict[str, Any] = {
        "examples": len(examples),
        "messages_per_example": round(sum(len(e.messages) for e in examples) / len(examples), 2) if examples else 0,
        "with_system_prompt": sum(any(m.role == "system" for m in e.messages) for e in examples),
        "tokens": {
            "prompt": length_summary(lengths.prompt),
            "output": length_summary(lengths.output),
            "total": length_summary(lengths.total),
        },
        "vocabulary_size": len(vocabulary),
        "diversity": {
            "input_distinct_1": distinct_n(inputs, 1),
            "input_distinct_2": distinct_n(inputs, 2),
            "output_distinct_1": distinct_n(outputs, 1),
            "output_distinct_2": distinct_n(outputs, 2),
        },
    }
    if task == "classify":
        stats["labels"] = dict(Counter(e.label for e in examples).most_common())
    return stats
