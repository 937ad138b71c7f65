"""The decision rule on constructed cases: an arm equivalent to the best within the margin goes to the cheaper
arm, an inconclusive cheaper arm makes the headline say "Probably ...", Holm's correction decides
"significantly worse", a significantly better fine-tuned arm wins, failing arms never win, the quality bar is
absolute, and the headline says it plainly."""

from __future__ import annotations

import pytest
from evidence_cases import TRAINING, classify_run

from tunewise.evaluate.evidence import build_results
from tunewise.evaluate.verdict import Candidate, decide


def pair(a: str, b: str, significant: bool, p: float = 0.5, *, equivalent: bool = False,
         ci: tuple[float, float] | None = None, power: dict | None = None) -> dict:
    """A paired test as stats.compare writes it (a - b); `equivalent` sets the TOST p-value either side of alpha."""
    low, high = ci if ci is not None else (None, None)
    return {"a": a, "b": b, "significant": significant, "p_value": p, "equivalence_p": 0.01 if equivalent else 0.4,
            "ci90_low": low, "ci90_high": high, "power": power}


def test_a_tie_never_recommends_the_costlier_fine_tuned_arm():
    arms = [Candidate("zs", "zero_shot", 0.89, n=200, cost_per_1k_usd=0.10, latency_p50_s=0.2),
            Candidate("ft", "finetune", 0.90, n=200, cost_per_1k_usd=0.50, latency_p50_s=0.05, needs_training=True)]
    verdict = decide(arms, [pair("zs", "ft", False, 0.62, equivalent=True, ci=(-0.015, -0.004))],
                     metric="accuracy", alpha=0.05)
    assert verdict.recommended == "zs" and verdict.best == "ft"
    assert verdict.headline.startswith("Don't fine-tune: use zs.")
    assert "equivalent to the fine-tuned ft within ±0.02" in verdict.headline
    assert verdict.comparisons[0].status == "equivalent" and verdict.comparisons[0].delta == pytest.approx(-0.01)
    assert any("90% CI -0.015 to -0.004" in r for r in verdict.reasons)
    assert any("cheapest" in r for r in verdict.reasons)


def test_at_equal_cost_the_arm_that_needs_no_training_wins_the_tie():
    arms = [Candidate("ft", "finetune", 0.91, n=100, cost_per_1k_usd=0.0, latency_p50_s=0.01, needs_training=True),
            Candidate("rag", "retrieval", 0.90, n=100, cost_per_1k_usd=0.0, latency_p50_s=1.0)]
    verdict = decide(arms, [pair("ft", "rag", False, equivalent=True)], metric="accuracy", alpha=0.05)
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
    assert "adjusted p=0.0002" in verdict.headline  # Holm over the 3 pairs: 1e-4 is the 2nd smallest, x2
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
    tests = [pair(x, y, False, equivalent=True) for x, y in (("remote", "a"), ("remote", "b"), ("a", "b"))]
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
    # few (0.883) and clf (0.875) are close, but 120 examples cannot show them equivalent within ±0.02: clf is
    # inconclusive, so it does not qualify, and because clf is cheaper the headline says the choice is provisional
    verdict = results["verdict"]
    assert verdict["recommended"] == "few" and verdict["qualifying"] == ["few"]
    assert verdict["headline"].startswith("Probably few, but the test set cannot yet tell few from clf")
    status = {c["arm"]: c["status"] for c in verdict["comparisons"]}
    assert status == {"zs": "worse", "clf": "inconclusive"}
    clf = next(c for c in verdict["comparisons"] if c["arm"] == "clf")
    assert clf["power"]["source"] == "discordance" and clf["power"]["examples_for_margin"] > 120
    assert f"about {clf['power']['examples_for_margin']:,} test examples" in verdict["headline"]
    confidence = verdict["confidence"]
    assert confidence["resamples"] == 1000 and sum(confidence["recommended"].values()) == pytest.approx(1)
    assert set(confidence["recommended"]) == {"few", "clf"}


POWER = {"power": 0.8, "test_examples": 150, "detectable_difference": 0.081, "examples_for_margin": 2461,
         "per_example_sd": 0.35, "source": "discordance"}


def test_an_inconclusive_cheaper_arm_does_not_qualify_and_the_headline_says_probably():
    arms = [Candidate("clf", "classical", 0.88, n=150, cost_per_1k_usd=0.01),
            Candidate("ft", "finetune", 0.90, n=150, cost_per_1k_usd=0.50, needs_training=True)]
    verdict = decide(arms, [pair("clf", "ft", False, 0.4, ci=(-0.06, 0.02), power=POWER)], metric="accuracy",
                     alpha=0.05)
    assert verdict.recommended == "ft" and verdict.qualifying == ["ft"]
    assert verdict.headline.startswith("Probably ft, but the test set cannot yet tell ft from clf: clf (accuracy "
                                       "0.880 vs 0.900; 90% CI -0.060 to +0.020, about 2,461 test examples")
    inconclusive = next(r for r in verdict.reasons if "inconclusive" in r)
    assert "only a difference of 0.081 or more is detected with 80% power" in inconclusive
    assert "indistinguishable" not in " ".join([verdict.headline, *verdict.reasons])


def test_an_inconclusive_arm_that_costs_more_leaves_the_headline_firm():
    arms = [Candidate("ft", "finetune", 0.90, n=150, cost_per_1k_usd=0.01, needs_training=True),
            Candidate("remote", "remote", 0.88, n=150, cost_per_1k_usd=2.0)]
    verdict = decide(arms, [pair("ft", "remote", False, 0.4)], metric="accuracy", alpha=0.05)
    assert verdict.recommended == "ft"
    assert verdict.headline.startswith("Fine-tune: ft has the best accuracy") and "not yet significant" in verdict.headline


def test_holm_adjusts_the_comparisons_with_the_best_so_a_lone_p_of_003_among_three_is_not_significant():
    arms = [Candidate("best", "few_shot", 0.90, n=300, cost_per_1k_usd=1.0),
            Candidate("a", "zero_shot", 0.85, n=300, cost_per_1k_usd=0.1),
            Candidate("b", "retrieval", 0.80, n=300, cost_per_1k_usd=0.1),
            Candidate("c", "classical", 0.70, n=300, cost_per_1k_usd=0.1)]
    tests = [pair("a", "best", True, 0.03), pair("b", "best", True, 0.02), pair("best", "c", True, 0.001)]
    verdict = decide(arms, tests, metric="accuracy", alpha=0.05)
    by_arm = {c.arm: c for c in verdict.comparisons}
    # sorted raw p 0.001, 0.02, 0.03 -> x3, x2, x1 -> 0.003, 0.04, 0.04 (monotone)
    assert [by_arm[x].p_adjusted for x in "cba"] == pytest.approx([0.003, 0.04, 0.04])
    assert {x: by_arm[x].status for x in "abc"} == {"a": "worse", "b": "worse", "c": "worse"}
    tests[1] = pair("b", "best", True, 0.04)  # now 0.001, 0.03, 0.04 -> 0.003, 0.06, 0.06
    verdict = decide(arms, tests, metric="accuracy", alpha=0.05)
    assert {c.arm: c.status for c in verdict.comparisons} == {"a": "inconclusive", "b": "inconclusive", "c": "worse"}
    assert any("p=0.03, Holm-adjusted p=0.06" in r for r in verdict.reasons)


def test_equivalence_wins_over_a_significant_difference_smaller_than_the_margin():
    arms = [Candidate("ft", "finetune", 0.905, n=5000, cost_per_1k_usd=0.4, needs_training=True),
            Candidate("zs", "zero_shot", 0.897, n=5000, cost_per_1k_usd=0.1)]
    verdict = decide(arms, [pair("ft", "zs", True, 0.001, equivalent=True, ci=(0.004, 0.012))], metric="accuracy",
                     alpha=0.05)
    assert verdict.comparisons[0].status == "equivalent" and verdict.comparisons[0].ci_low == pytest.approx(-0.012)
    assert verdict.recommended == "zs" and verdict.headline.startswith("Don't fine-tune: use zs. It is equivalent")


def test_a_quality_bar_lets_an_inconclusive_arm_qualify_without_a_probably():
    arms = [Candidate("clf", "classical", 0.88, n=150, cost_per_1k_usd=0.01),
            Candidate("ft", "finetune", 0.90, n=150, cost_per_1k_usd=0.50, needs_training=True)]
    verdict = decide(arms, [pair("clf", "ft", False, 0.4)], metric="accuracy", alpha=0.05, quality_bar=0.85)
    assert verdict.recommended == "clf" and verdict.headline.startswith("Don't fine-tune: use clf. Like the fine-tuned")


def test_the_margin_is_validated_and_the_error_names_the_field(tmp_path):
    from tunewise.config import ConfigError, load_experiment

    path = tmp_path / "exp.yaml"
    base = "name: x\ndata: {path: d.jsonl}\ntask: {type: classify}\narms: [{name: zs, type: zero_shot}]\n"
    path.write_text(base)
    assert load_experiment(path).evaluation.margin == 0.02
    path.write_text(base + "evaluation: {margin: 0}\n")
    with pytest.raises(ConfigError, match=r"evaluation\.margin"):
        load_experiment(path)


def test_the_cli_verdict_panel_prints_the_inconclusive_pair_and_the_verdict_confidence(tmp_path):
    from rich.console import Console

    from tunewise.cli.experiment_view import render_verdict

    exp, task, test, done = classify_run(tmp_path, training=TRAINING)
    verdict = build_results(exp, tmp_path, "r", task, test, done, {})["verdict"]
    console = Console(record=True, width=400)
    render_verdict(verdict, tmp_path, console)
    text = console.export_text()
    assert text.count("Probably few") == 1 and "clf vs few is inconclusive" in text
    assert "only a difference of" in text and "would resolve a difference of 0.02" in text
    shares = verdict["confidence"]["recommended"]
    assert f"Verdict confidence: few in {shares['few']:.0%} of 1,000 bootstrap resamples" in text
    assert f"clf in {shares['clf']:.0%}" in text
