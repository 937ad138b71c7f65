"""Deterministic, stratified, group-aware train/val/test split, and leakage detection between files.

Every arm is compared on one frozen split, so the split must never let the same prompt sit on both sides:
examples whose normalised input is equal (exact duplicates, near duplicates differing only in case,
punctuation or whitespace, and same-input-different-label conflicts) form one group, as do examples sharing
a user-declared `metadata["group"]`, and a group is placed whole into one split.

Why hand-written: scikit-learn's `StratifiedGroupKFold` only makes k equal folds and `GroupShuffleSplit` does
not stratify; neither yields arbitrary train/val/test fractions with groups and labels both respected.
The rule here is small: shuffle groups within each label stratum, then put each group into the split with
the largest remaining deficit against its target size.

Determinism: the same examples *in the same order* with the same seed give the identical split (input order
fixes group order before shuffling). Reordering the input may give a different, equally valid split.

This module knows nothing about file formats (it takes `Example`s) or tasks (the label is just
`Example.label`; free-text labels degrade gracefully to an unstratified group split).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunewise.data.textnorm import normalise
from tunewise.schema import Example
from tunewise.store.atomic import atomic_open, atomic_write_text

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
# Past this many distinct labels the "labels" are free text (generation): counting them says nothing.
MAX_LABELS_IN_SUMMARY = 100


class SplitError(ValueError):
    """Bad split parameters or data that cannot be split as asked; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Split:
    """A frozen train/val/test split plus what made it. Each part keeps the input order of its examples."""

    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    seed: int
    val_fraction: float
    test_fraction: float
    stratify: bool
    train_groups: int
    val_groups: int
    test_groups: int

    @property
    def train_fraction(self) -> float:
        return 1.0 - self.val_fraction - self.test_fraction

    @property
    def parts(self) -> dict[str, tuple[Example, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def group_counts(self) -> dict[str, int]:
        return {"train": self.train_groups, "val": self.val_groups, "test": self.test_groups}


@dataclass(frozen=True, slots=True)
class Leak:
    """An example of `b` whose normalised input equals that of an example of `a`.

    `kind` is "exact" when the raw input texts are identical, "near" when they differ only in case,
    punctuation, whitespace or Unicode form.
    """

    kind: Literal["exact", "near"]
    a_id: str
    a_line: int
    b_id: str
    b_line: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "a_id": self.a_id, "a_line": self.a_line, "b_id": self.b_id, "b_line": self.b_line}


def group_examples(examples: Sequence[Example]) -> list[tuple[int, ...]]:
    """Indices of examples that must stay together, ordered by first member; members in input order.

    Union-find over two keys, so groups chain: A and B share an input, B and C share a metadata group,
    hence A, B and C are one group.
    """
    parent = list(range(len(examples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key: dict[tuple[str, str], int] = {}
    for index, example in enumerate(examples):
        keys = [("input", normalise(example.input))]
        declared = example.metadata.get("group")
        if declared is not None:
            # str() so a group read as 7 from JSON and "7" from CSV is the same group.
            keys.append(("group", str(declared)))
        for key in keys:
            other = first_with_key.setdefault(key, index)
            root_a, root_b = find(index), find(other)
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)

    members: dict[int, list[int]] = {}
    for index in range(len(examples)):
        members.setdefault(find(index), []).append(index)
    return [tuple(group) for group in members.values()]


def _majority_label(examples: Sequence[Example], group: tuple[int, ...]) -> str:
    counts = Counter(examples[i].label for i in group)
    return min(counts, key=lambda label: (-counts[label], label))


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SplitError(f"{name} must be a number in [0, 1), got {value!r}; pass e.g. {name}=0.1")
    if not 0.0 <= value < 1.0:
        raise SplitError(f"{name} must be in [0, 1), got {value}; pass e.g. {name}=0.1, or 0 for no {name[:-9]} split")


def _validate(seed: int, val_fraction: float, test_fraction: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SplitError(f"seed must be an integer, got {seed!r}; pass e.g. seed=13")
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise SplitError(
            f"val_fraction + test_fraction must be < 1 so train is not empty, got {val_fraction} + {test_fraction}"
            f" = {val_fraction + test_fraction}; lower one of them"
        )


def split_examples(
    examples: Sequence[Example],
    *,
    seed: int = 13,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    stratify: bool = True,
) -> Split:
    """Split `examples` into train/val/test with no group crossing splits and label proportions kept.

    Raises `SplitError` for fractions outside [0, 1) or summing to 1 or more, and when there are fewer
    groups than non-empty splits requested.
    """
    _validate(seed, val_fraction, test_fraction)
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    wanted = [s for s, f in enumerate(fractions) if f > 0]
    groups = group_examples(examples)
    if len(groups) < len(wanted):
        names = " and ".join(SPLIT_NAMES[s] for s in wanted)
        raise SplitError(
            f"need at least {len(wanted)} distinct groups to make non-empty {names} splits, got {len(groups)} from "
            f"{len(examples)} examples (examples with the same normalised input or metadata['group'] stay "
            "together); add examples, or set val_fraction=0 / test_fraction=0"
        )

    strata: dict[str, list[tuple[int, ...]]] = {}
    for group in groups:
        strata.setdefault(_majority_label(examples, group) if stratify else "", []).append(group)

    rng = random.Random(seed)
    # Shuffled stratum order too: with free-text labels every stratum is one group, and a sorted order
    # would make the split independent of the seed.
    order = sorted(strata)
    rng.shuffle(order)
    assigned: list[list[tuple[int, ...]]] = [[], [], []]
    sizes = [0, 0, 0]
    seen = 0
    for label in order:
        stratum = list(strata[label])
        rng.shuffle(stratum)
        for group in stratum:
            # Targets are cumulative over all strata placed so far, so one stratum's rounding is made up by
            # the next: totals land within a group of target and each stratum within about two.
            seen += len(group)
            deficits = [seen * fractions[s] - sizes[s] for s in range(3)]
            best = max(range(3), key=lambda s: deficits[s])
            assigned[best].append(group)
            sizes[best] += len(group)

    _fill_empty(assigned, sizes, fractions, wanted, len(examples))
    parts = [tuple(examples[i] for i in sorted(i for group in part for i in group)) for part in assigned]
    return Split(
        train=parts[0],
        val=parts[1],
        test=parts[2],
        seed=seed,
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        stratify=stratify,
        train_groups=len(assigned[0]),
        val_groups=len(assigned[1]),
        test_groups=len(assigned[2]),
    )


def _fill_empty(
    assigned: list[list[tuple[int, ...]]], sizes: list[int], fractions: tuple[float, ...], wanted: list[int], total: int
) -> None:
    """On tiny or lumpy data a requested split can end up empty; move it the smallest group of the split
    most over its target that can spare one. Enough groups exist (checked before), so a donor always exists."""
    for s in wanted:
        if assigned[s]:
            continue
        donors = [d for d in range(3) if len(assigned[d]) > 1]
        donor = max(donors, key=lambda d: sizes[d] - fractions[d] * total)
        smallest = min(range(len(assigned[donor])), key=lambda k: (len(assigned[donor][k]), -k))
        group = assigned[donor].pop(smallest)
        sizes[donor] -= len(group)
        assigned[s].append(group)
        sizes[s] += len(group)


def _label_counts(examples: Sequence[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.label for e in examples).items()))


def write_splits(split: Split, out_dir: Path) -> dict[str, Any]:
    """Write `train/val/test.jsonl` (one chat record per line) and then `split.json`; return the summary.

    Each file is written atomically. `split.json` is written last and holds every file's sha256, so a
    folder whose `split.json` matches its files is a complete split; a crash leaves no `split.json` for
    the new split (or the old one, which then no longer matches).
    """
    out_dir = Path(out_dir)
    digests: dict[str, str] = {}
    for name, part in split.parts.items():
        filename = f"{name}.jsonl"
        digest = hashlib.sha256()
        with atomic_open(out_dir / filename, "w") as handle:
            for example in part:
                try:
                    line = json.dumps(example.to_chat_record(), ensure_ascii=False, allow_nan=False) + "\n"
                except (TypeError, ValueError) as exc:
                    raise SplitError(
                        f"example {example.id!r} (line {example.line}) cannot be written as JSON: {exc}; "
                        "make its metadata plain strings, numbers, lists and dicts"
                    ) from exc
                handle.write(line)
                digest.update(line.encode("utf-8"))
        digests[filename] = digest.hexdigest()

    distinct = {e.label for part in split.parts.values() for e in part}
    summary: dict[str, Any] = {
        "seed": split.seed,
        "stratify": split.stratify,
        "fractions": {"train": split.train_fraction, "val": split.val_fraction, "test": split.test_fraction},
        "counts": {name: len(part) for name, part in split.parts.items()},
        "groups": split.group_counts,
        "distinct_labels": len(distinct),
        "label_counts": (
            {name: _label_counts(part) for name, part in split.parts.items()}
            if len(distinct) <= MAX_LABELS_IN_SUMMARY
            else None
        ),
        "sha256": digests,
    }
    atomic_write_text(out_dir / "split.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return summary


def find_leakage(a: Sequence[Example], b: Sequence[Example]) -> list[Leak]:
    """Every pair (example of `a`, example of `b`) with equal normalised input, in `b` order then `a` order."""
    by_key: dict[str, list[Example]] = {}
    for example in a:
        by_key.setdefault(normalise(example.input), []).append(example)
    leaks = []
    for other in b:
        text = other.input
        for match in by_key.get(normalise(text), ()):
            kind: Literal["exact", "near"] = "exact" if match.input == text else "near"
            leaks.append(Leak(kind, match.id, match.line, other.id, other.line))
    return leaks


def stratified_subset(examples: list[Example], limit: int | None, seed: int, labelled: bool) -> list[Example]:
    """A seeded subset of `limit` examples, proportional per label, in their original order. The same call
    gives the same subset: every arm is scored on the same examples examples, trained on the same capped
    training set."""
    if limit is None or limit >= len(examples):
        return examples
    rng = random.Random(seed)
    if not labelled:
        keep = set(rng.sample(range(len(examples)), limit))
        return [e for i, e in enumerate(examples) if i in keep]
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_label[example.label].append(i)
    quotas = {label: max(1, round(limit * len(items) / len(examples))) for label, items in sorted(by_label.items())}
    keep = set()
    for label, items in sorted(by_label.items()):
        keep.update(rng.sample(items, min(quotas[label], len(items))))
    return [e for i, e in enumerate(examples) if i in keep]
