"""Per-slice quality: the primary metric broken down by a metadata field (region, source, customer tier ...).

A model that is good on average can be bad for one group; the largest gap between two slices of one arm
is flagged so the report can say so. Slices with fewer than MIN_SLICE examples are not used for the gap
(one example is all noise); when there are several they are pooled into one row. Knows nothing about models
or files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tunewise.evaluate.metrics import Family
from tunewise.schema import Example

MIN_SLICE = 5
MISSING = "(missing)"


def _pool_small(groups: dict[str, list[int]]) -> tuple[dict[str, list[int]], str | None]:
    """Slices under MIN_SLICE examples pooled into one row when there are several: dozens of one-example rows
    bury the slices that can be read. The pooled row is shown but never used for the gap (it is a mixture)."""
    small = [value for value, index in groups.items() if len(index) < MIN_SLICE]
    if len(small) < 2:
        return groups, None
    name = f"(other: {len(small)} values with under {MIN_SLICE} examples each)"
    kept = {value: index for value, index in groups.items() if value not in small}
    kept[name] = sorted(i for value in small for i in groups[value])
    return kept, name


def slice_groups(examples: Sequence[Example], field: str) -> dict[str, list[int]]:
    """Example positions by the field's value (as text); examples without the field form `(missing)`."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        value = example.metadata.get(field)
        groups[MISSING if value is None else str(value)].append(i)
    return dict(sorted(groups.items()))


def slice_report(examples: Sequence[Example], arms: Mapping[str, Sequence[Family]], fields: Sequence[str],
                 metric: str, warn_gap: float) -> dict[str, Any]:
    """{fields: {field: {slice: {n, arms: {arm: value}}}}, gaps: [...], flagged: largest gap or None, notes}."""
    out: dict[str, Any] = {"metric": metric, "fields": {}, "gaps": [], "flagged": None, "notes": []}
    for field in fields:
        groups = slice_groups(examples, field)
        if set(groups) == {MISSING}:
            out["notes"].append(f"no test example has metadata field {field!r}; nothing to slice by")
            continue
        groups, pooled = _pool_small(groups)
        table = {}
        for value, index in groups.items():
            table[value] = {"n": len(index), "arms": {}}
            for arm, fams in arms.items():
                fam = next(f for f in fams if metric in f.values())
                table[value]["arms"][arm] = float(fam.subset(index).values()[metric][0])
        out["fields"][field] = table
        sized = {value: row for value, row in table.items() if row["n"] >= MIN_SLICE and value != pooled}
        for arm in arms:
            if len(sized) < 2:
                break
            high = max(sized, key=lambda v: sized[v]["arms"][arm])
            low = min(sized, key=lambda v: sized[v]["arms"][arm])
            gap = sized[high]["arms"][arm] - sized[low]["arms"][arm]
            out["gaps"].append({"arm": arm, "field": field, "high_slice": high, "low_slice": low,
                                "high": sized[high]["arms"][arm], "low": sized[low]["arms"][arm], "gap": gap,
                                "warning": gap >= warn_gap})
    if out["gaps"]:
        top = max(out["gaps"], key=lambda g: g["gap"])
        out["flagged"] = {**top, "summary": (
            f"largest gap: {top['arm']} scores {top['high']:.3f} on {top['field']}={top['high_slice']} but "
            f"{top['low']:.3f} on {top['field']}={top['low_slice']} (gap {top['gap']:.3f}"
            + (f", at or above the {warn_gap:g} warning level)" if top["warning"] else ")"))}
    return out
