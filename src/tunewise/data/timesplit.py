"""Splits that are not a random draw: by time (the newest rows are the test), and around a test (and validation)
file the user brings.

Data that changes over time (reviews, tickets) should be judged on what comes after the training data, as it
will be in use; a random split lets a model learn next month's topics from their neighbours. `split_by_time`
orders examples by a date column, holds out the newest as the test split and the next newest as validation.
Dates are parsed by values.parse_date (ISO, "12 Mar 2023", "May 20, 2012", "03/12/2023" month first, epoch
seconds); a value it cannot read is reported with its line and left out of every split, since it cannot be placed
in time. Examples with the same normalised input stay together (the group takes its newest date), as in the random
split.

`split_around` keeps the user's own test/validation files as they are and splits the rest. Knows nothing about
files or runs: it takes `Example`s and returns a `Split`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tunewise.data.split import Split, SplitError, group_examples, split_examples
from tunewise.data.values import day_first, parse_date
from tunewise.schema import Example


@dataclass(frozen=True, slots=True)
class TimeSplit:
    split: Split
    unparseable: list[tuple[int, str]]  # (line, value) of dates that could not be read
    ranges: dict[str, tuple[str, str]]  # part -> (oldest, newest) date, ISO


def split_by_time(examples: Sequence[Example], column: str, *, val_fraction: float,
                  test_fraction: float) -> TimeSplit:
    """Newest `test_fraction` of the dated examples as test, the next `val_fraction` as validation."""
    present = [e for e in examples if column in e.metadata]
    if not present:
        keys = sorted({key for e in examples[:100] for key in e.metadata})
        raise SplitError(f"split.by {column!r}: no example has a {column!r} column; the metadata columns are "
                         f"{keys or 'none'}. Fix: name a date column, or remove split.by for a random split")
    dated: list[tuple[datetime, Example]] = []
    unparseable: list[tuple[int, str]] = []
    dayfirst = day_first([e.metadata.get(column) for e in examples])
    for e in examples:
        moment = parse_date(e.metadata.get(column), dayfirst)
        if moment is None:
            unparseable.append((e.line, str(e.metadata.get(column, ""))))
        else:
            dated.append((moment, e))
    if len(dated) < 3:
        raise SplitError(f"split.by {column!r}: only {len(dated)} example(s) have a date that can be read "
                         f"(first unreadable: {unparseable[:3]}). Fix: write dates as YYYY-MM-DD")
    members = [e for _, e in dated]
    when = [moment for moment, _ in dated]
    groups = sorted(group_examples(members), key=lambda g: (max(when[i] for i in g), g[0]))
    total = len(members)
    parts: list[list[int]] = [[], [], []]  # train, val, test; filled from the newest group backwards
    for group in reversed(groups):
        if len(parts[2]) < round(test_fraction * total):
            parts[2] += group
        elif len(parts[1]) < round(val_fraction * total):
            parts[1] += group
        else:
            parts[0] += group
    if not parts[0] or not parts[2]:
        raise SplitError(f"split.by {column!r}: {total} dated example(s) are too few for a train and a test split; "
                         "add examples or lower split.test_fraction")
    chosen = [tuple(members[i] for i in sorted(part)) for part in parts]
    ranges = {name: (min(when[i] for i in part).date().isoformat(), max(when[i] for i in part).date().isoformat())
              for name, part in zip(("train", "val", "test"), parts) if part}
    split = Split(train=chosen[0], val=chosen[1], test=chosen[2], seed=0, val_fraction=len(chosen[1]) / total,
                  test_fraction=len(chosen[2]) / total, stratify=False, **_group_counts(chosen))
    return TimeSplit(split, unparseable, ranges)


def _group_counts(parts: Sequence[Sequence[Example]]) -> dict[str, int]:
    return {f"{name}_groups": len(group_examples(part)) for name, part in zip(("train", "val", "test"), parts)}


def split_around(examples: Sequence[Example], test: Sequence[Example] | None, val: Sequence[Example] | None, *,
                 seed: int, val_fraction: float, test_fraction: float, stratify: bool) -> Split:
    """The user's own test and/or validation examples as they are; a part no file gives is drawn from `examples`
    (its configured fraction of them), as a random split would."""
    want_val = 0.0 if val is not None else val_fraction
    want_test = 0.0 if test is not None else test_fraction
    train, drawn_val, drawn_test = tuple(examples), (), ()
    if want_val or want_test:
        drawn = split_examples(examples, seed=seed, val_fraction=want_val, test_fraction=want_test, stratify=stratify)
        train, drawn_val, drawn_test = drawn.train, drawn.val, drawn.test
    held_val = tuple(val) if val is not None else drawn_val
    held_test = tuple(test) if test is not None else drawn_test
    total = len(train) + len(held_val) + len(held_test)
    return Split(train=train, val=held_val, test=held_test, seed=seed, val_fraction=len(held_val) / total,
                 test_fraction=len(held_test) / total, stratify=stratify,
                 **_group_counts((train, held_val, held_test)))
