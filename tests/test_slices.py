"""The fairness check: per-slice quality by a metadata field, the largest gap flagged, tiny slices ignored."""

from __future__ import annotations

import pytest

from tunewise.evaluate.metrics import mean_family
from tunewise.evaluate.slices import slice_report
from tunewise.schema import Example, Message


def test_largest_gap_is_flagged_and_small_or_missing_slices_are_handled():
    regions = ["EU"] * 10 + ["US"] * 10 + ["APAC"] * 2
    test = [Example(id=str(i), messages=(Message("user", "x"), Message("assistant", "y")), line=i,
                    metadata={"region": r}) for i, r in enumerate(regions)]
    fair = mean_family("accuracy", [1.0] * 22)
    biased = mean_family("accuracy", [1.0] * 10 + [0.0, 1.0] * 5 + [0.0, 0.0])
    report = slice_report(test, {"fair": [fair], "biased": [biased]}, ["region", "tier"], "accuracy", warn_gap=0.3)
    table = report["fields"]["region"]
    assert table["US"] == {"n": 10, "arms": {"fair": 1.0, "biased": 0.5}} and table["APAC"]["n"] == 2
    flagged = report["flagged"]
    # APAC (0.0, 2 examples) is shown but too small to count: the gap is EU vs US
    assert (flagged["arm"], flagged["high_slice"], flagged["low_slice"]) == ("biased", "EU", "US")
    assert flagged["gap"] == pytest.approx(0.5) and flagged["warning"]
    assert "at or above the 0.3 warning level" in flagged["summary"]
    assert report["notes"] == ["no test example has metadata field 'tier'; nothing to slice by"]


def test_several_tiny_slices_are_pooled_into_one_row_that_never_makes_the_gap():
    drugs = ["a"] * 8 + ["b"] * 8 + [f"rare{i}" for i in range(6)] + ["rarest"] * 2
    test = [Example(id=str(i), messages=(Message("user", "x"), Message("assistant", "y")), line=i,
                    metadata={"drug": d}) for i, d in enumerate(drugs)]
    scores = [1.0] * 8 + [1.0, 0.0] * 4 + [0.0] * 8  # every rare example wrong
    report = slice_report(test, {"arm": [mean_family("accuracy", scores)]}, ["drug"], "accuracy", warn_gap=0.3)
    table = report["fields"]["drug"]
    pooled = "(other: 7 values with under 5 examples each)"
    assert set(table) == {"a", "b", pooled} and table[pooled] == {"n": 8, "arms": {"arm": 0.0}}
    flagged = report["flagged"]  # the mixture (0.0 on 8 examples) is shown but the gap is a vs b
    assert (flagged["high_slice"], flagged["low_slice"]) == ("a", "b") and flagged["gap"] == pytest.approx(0.5)
