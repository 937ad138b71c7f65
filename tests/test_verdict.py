"""The decision rule on constructed cases: ties go to the cheaper arm, a significantly better fine-tuned arm
wins, failing arms never win, the quality bar is absolute, and the headline says it plainly."""

from __future__ import annotations

import pytest
from evidence_cases import TRAINING, classify_run

from tunewise.evaluate.evidence import build_results
from tunewise.evaluate.verdict import Candidate, decide


def pair(a: str, b: str, significant: bool, p: float = 0.5) -> dict:
    return {"a": a, "b": b, "significant": significant, "p_value": p}


def test_a_tie_never_recommends_the_costlier_fine_tuned_arm():
    arms = [Candidate("zs", "zero_shot", 0.89, n=200, cost_per_1k_usd=0.10, latency_p50_s=0.2),
            Candidate("ft", "finetune", 0.90, n=200, cost_per_1k_usd=0.50, latency_p50_s=0.05, needs_training=True)]
    verdict = decide(arms, [pair("zs", "ft", False, 0.62)], metric="accuracy", alpha=0.05)
    assert verdict.recommended == "zs" and verdict.best == "ft"
    assert verdict.headline.startswith("Don't fine-tune: use zs.")
    assert "statistically indistinguishable from the fine-tuned ft" in verdict.headline
    assert any("cheapest" in r for r in verdict.reasons)


def test_at_equal_cost_the_arm_that_needs_no_training_wins_the_tie():
    arms = [Candidate("ft", "finetune", 0.91, n=100, cost_per_1k_usd=0.0, latency_p50_s=0.01, needs_training=True),
            Candidate("rag", "retrieval", 0.90, n=100, cost_per_1k_usd=0.0, latency_p50_s=1.0)]
    verdict = decide(arms, [pair("ft", "rag", False)], metric="accuracy", alpha=0.05)
    assert verdict.recommended == "rag" and verdict.headline.startswith("Don't fine-tune: use rag")
    assert any("needs no training" in r for r in verdict.reasons)


def test_a_significantly_better_fine_tuned_arm_is_recommended():
    arms = [Candidate("zs", "zero_shot", 0.60, n=200, cost_per_1k_usd=0.01),
            Candidate("few", "few_shot", 0.70, n=200, cost_per_1k_usd=0.05),
            Candidate("ft", "finetune", 0.92, n=200, cost_per_1k_usd=0.30, needs_training=True)]
    tests = [pair("zs", "ft", True, 1e-6), pair("few", "ft", True, 1e-4), pair("zs", "few", True, 0.01)]
    verdict = decide(arms, tests, metric="accuracy", alpha=0.05)
    assert verdict.recommended == "ft" and verdict.qualifying == ["ft"]
    assert verdict.headline.startswith("Fine-tune: ft is significantly better than the best alternative, few")
    assert "p=0.0001" in verdict.headline
    assert any("few is significantly worse than ft" in r for r in verdict.reasons)


def test_an_arm_with_failures_is_not_recommended():
    arms = [Candidate("remote", "remote", 0.95, n=100, failed=3, cost_per_1k_usd=0.0),
            Candidate("dead", "remote", None, failure="APIConnectionError: refused"),
            Candidate("clf", "classical", 0.80, n=100, cost_per_1k_usd=0.0)]
    verdict = decide(arms, [pair("remote", "clf", True, 1e-3)], metric="accuracy", alpha=0.05)
    assert verdict.recommended == "clf"
    assert verdict.excluded == {"remote": "3 of 100 requests failed", "dead": "it failed: APIConnectionError: refused"}
    assert verdict.headline.startswith("Use clf") and "no fine-tuned arm was run" in verdict.headline
    relaxed = decide(arms, [pair("remote", "clf", True, 1e-3)], metric="accuracy", alpha=0.05, max_failure_rate=0.05)
    assert relaxed.recommended == "remote"


def test_quality_bar_is_absolute_and_can_leave_no_arm():
    arms = [Candidate("zs", "zero_shot", 0.62, n=50, cost_per_1k_usd=0.0),
            Candidate("ft", "finetune", 0.71, n=50, cost_per_1k_usd=1.0, needs_training=True)]
    none = decide(arms, [pair("zs", "ft", True, 0.01)], metric="accuracy", alpha=0.05, quality_bar=0.8)
    assert none.recommended is None and none.headline.startswith("No arm reaches the quality bar")
    both = decide(arms, [pair("zs", "ft", True, 0.01)], metric="accuracy", alpha=0.05, quality_bar=0.6)
    assert both.recommended == "zs" and "reaches the quality bar" in both.headline
    assert both.headline.startswith("Don't fine-tune: use zs")


def test_unknown_cost_never_beats_a_known_one_and_costs_within_five_percent_are_equal():
    arms = [Candidate("remote", "remote", 0.90, n=10, cost_per_1k_usd=None, latency_p50_s=0.01),
            Candidate("a", "few_shot", 0.90, n=10, cost_per_1k_usd=1.00, latency_p50_s=0.9),
            Candidate("b", "retrieval", 0.90, n=10, cost_per_1k_usd=1.04, latency_p50_s=0.3)]
    tests = [pair(x, y, False) for x, y in (("remote", "a"), ("remote", "b"), ("a", "b"))]
    verdict = decide(arms, tests, metric="accuracy", alpha=0.05)
    assert verdict.recommended == "b"  # a and b cost the same within 5%; b is faster


def test_build_results_verdict_and_roi_with_a_training_record(tmp_path):
    exp, task, test, done = classify_run(tmp_path, training=TRAINING)
    results = build_results(exp, tmp_path, "r", task, test, done, {})
    clf = results["arms"]["clf"]
    assert clf["needs_training"] and clf["cost"]["training"]["usd"] == pytest.approx(1.0)  # 1800 s at $2/h
    amortised = clf["cost"]["per_1k_usd"] + 1000 * 1.0 / (1000 * 365)
    assert clf["cost"]["amortised_per_1k_usd"] == pytest.approx(amortised)
    roi = results["roi"]["clf"]
    assert results["baseline"] == "zs" and roi["quality_change"] > 0.2
    saving = -roi["cost_per_1k_change_usd"] / 1000
    assert roi["break_even_requests"] == pytest.approx(1.0 / saving)
    assert roi["payback_days"] == pytest.approx(roi["break_even_requests"] / 1000)
    # clf and few tie on quality; clf is cheaper per request even with its training amortised
    assert results["verdict"]["recommended"] == "clf"
    assert set(results["verdict"]["qualifying"]) == {"clf", "few"}
