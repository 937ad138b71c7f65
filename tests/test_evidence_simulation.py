"""Seeded simulations: the statistics behind the verdict do what they claim, measured on thousands of simulated
test sets drawn from a known truth, through the same functions the verdict uses.

- 95% bootstrap intervals for accuracy and macro-F1 cover the true value in 92-98% of simulated test sets;
- the equivalence test (TOST within ±margin) declares equivalence in at most alpha of test sets whose true
  difference equals the margin, yet usually when the true difference is 0;
- Holm's correction over the verdict's family keeps the family-wise error at or below alpha under the null,
  where raw p-values, or Holm over only the comparisons with a best picked from the same data, do not;
- the minimum detectable difference and the examples needed for the margin give 80% power in simulation
  (within 10%), for McNemar on accuracy and for the paired bootstrap on a mean score.
Each check also shows that it can fail (a wrong method lands outside its bound). Everything is vectorised
numpy: thousands of test sets take a few seconds. The figures each test measures are in its comments.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from tunewise.evaluate.metrics import confusion_family, mean_family
from tunewise.evaluate.power import detectable_difference, examples_needed
from tunewise.evaluate.stats import compare, holm, intervals, mcnemar_p, paired_bootstrap, resample_weights, tost
from tunewise.evaluate.verdict import Candidate, decide

ALPHA, MARGIN, POWER_BAND = 0.05, 0.02, (0.72, 0.88)  # 80% power, within 10%


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrix products on a shared CPU run faster on one BLAS thread than fighting over several."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def paired_differences(rng: np.random.Generator, sims: int, n: int, discordance: float,
                       difference: float) -> np.ndarray:
    """sims x n per-example accuracy differences (arm a - arm b): +1 where only a is right, -1 where only b is."""
    only_a, only_b = (discordance + difference) / 2, (discordance - difference) / 2
    u = rng.random((sims, n))
    return np.where(u < only_a, 1.0, np.where(u < only_a + only_b, -1.0, 0.0))


# ---------------------------------------------------------------- interval coverage

LABELS = ["a", "b", "c"]
PRIOR = np.array([0.5, 0.3, 0.2])
RIGHT = 0.8  # each example is classified correctly with this probability, else as one of the other labels


def true_macro_f1() -> float:
    """Macro-F1 of the expected confusion matrix: the value corpus macro-F1 converges to."""
    wrong = (1 - RIGHT) / (len(LABELS) - 1)
    matrix = PRIOR[:, None] * np.where(np.eye(len(LABELS), dtype=bool), RIGHT, wrong)
    tp = np.diag(matrix)
    return float(np.mean(2 * tp / (matrix.sum(axis=0) + matrix.sum(axis=1))))


def test_95_percent_bootstrap_intervals_for_accuracy_and_macro_f1_cover_the_truth_92_to_98_percent():
    rng, sims, n = np.random.default_rng(7), 1000, 400
    weights = resample_weights(n, 1000, seed=8)  # the evaluation's own resampling, shared across test sets
    references = rng.choice(len(LABELS), size=(sims, n), p=PRIOR)
    shift = rng.integers(1, len(LABELS), size=(sims, n))
    predicted = np.where(rng.random((sims, n)) < RIGHT, references, (references + shift) % len(LABELS))
    hits = {"accuracy": 0, "macro_f1": 0}
    truth = {"accuracy": RIGHT, "macro_f1": true_macro_f1()}
    for ref, pred in zip(references, predicted):
        refs, preds = [LABELS[i] for i in ref], [LABELS[i] for i in pred]
        cis = intervals([mean_family("accuracy", (ref == pred).astype(float)), confusion_family(refs, preds, LABELS)],
                        weights, 0.95)
        for metric in hits:
            hits[metric] += cis[metric]["low"] <= truth[metric] <= cis[metric]["high"]
    coverage = {metric: count / sims for metric, count in hits.items()}
    # measured: accuracy 95.6%, macro-F1 94.9% (1,000 test sets of 400, 1,000 resamples each)
    assert 0.92 <= coverage["accuracy"] <= 0.98 and 0.92 <= coverage["macro_f1"] <= 0.98, coverage


# ---------------------------------------------------------------- equivalence (TOST)


def equivalence_rate(differences: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """Share of simulated test sets that stats.tost declares equivalent within ±MARGIN, each test set's paired
    bootstrap drawn with the evaluation's resample counts (B x n) exactly as paired_bootstrap draws it."""
    n = differences.shape[1]
    deltas = differences @ weights.T / n  # sims x B resampled mean differences
    p_value, _, _ = tost(deltas, MARGIN, alpha)
    return float(np.mean(p_value < alpha))


def test_equivalence_is_declared_in_at_most_alpha_of_test_sets_whose_true_difference_is_the_margin():
    rng, sims, n, discordance = np.random.default_rng(11), 2000, 2000, 0.08
    weights = resample_weights(n, 1000, seed=12)
    at_margin = paired_differences(rng, sims, n, discordance, MARGIN)
    # measured: 4.75% at the margin (nominal 5%); 83% when the arms are truly equal, so the test has teeth
    assert equivalence_rate(at_margin, weights, ALPHA) <= ALPHA
    assert equivalence_rate(paired_differences(rng, sims, n, discordance, 0.0), weights, ALPHA) >= 0.75
    # the check can fail: an 80% interval (TOST at 0.10) declares equivalence in 10.1% at the margin
    assert equivalence_rate(at_margin, weights, 0.10) > ALPHA


# ---------------------------------------------------------------- multiplicity (Holm)


def null_p_values(rng: np.random.Generator, sims: int, arms: int, n: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(accuracy per simulated arm, McNemar p-value of every pair, the pairs) for equally good arms."""
    correct = rng.random((sims, arms, n)) < 0.8
    pairs = list(combinations(range(arms), 2))
    only_a = np.stack([np.sum(correct[:, i] & ~correct[:, j], axis=1) for i, j in pairs], axis=1)
    only_b = np.stack([np.sum(~correct[:, i] & correct[:, j], axis=1) for i, j in pairs], axis=1)
    return correct.mean(axis=2), mcnemar_p(only_a, only_b), pairs


def test_holm_keeps_the_family_wise_error_at_or_below_alpha_under_the_null():
    rng, sims, arms, n = np.random.default_rng(21), 2000, 8, 300
    accuracy, p_values, pairs = null_p_values(rng, sims, arms, n)
    best = np.argmax(accuracy, axis=1)
    with_best = np.array([[best[s] in pair for pair in pairs] for s in range(sims)])
    # the verdict's family: every pair of arms in the running (the best is picked from the same data)
    verdict_fwer = np.mean(np.any((holm(p_values) < ALPHA) & with_best, axis=1))
    any_pair_fwer = np.mean(np.any(holm(p_values) < ALPHA, axis=1))
    # measured: 2.4% (claims against the best), 2.45% (any pair)
    assert verdict_fwer <= ALPHA and any_pair_fwer <= ALPHA
    # the check can fail: raw p-values (43.7%) and Holm over only the 7 comparisons with the best (10.3%) do not
    raw_fwer = np.mean(np.any((p_values < ALPHA) & with_best, axis=1))
    best_only = np.where(with_best, p_values, np.nan)[with_best].reshape(sims, arms - 1)
    best_only_fwer = np.mean(np.any(holm(best_only) < ALPHA, axis=1))
    assert raw_fwer > ALPHA and best_only_fwer > ALPHA


def test_the_verdict_itself_applies_that_family_and_calls_no_equal_arm_worse_more_than_alpha():
    """The rule end to end on simulated null runs: decide() with its own Holm family."""
    rng, sims, arms, n = np.random.default_rng(22), 300, 8, 300
    accuracy, p_values, pairs = null_p_values(rng, sims, arms, n)
    claims = 0
    for s in range(sims):
        candidates = [Candidate(f"arm{i}", "few_shot", float(accuracy[s, i]), n=n, cost_per_1k_usd=1.0)
                      for i in range(arms)]
        tests = [{"a": f"arm{i}", "b": f"arm{j}", "p_value": float(p_values[s, k])} for k, (i, j) in enumerate(pairs)]
        verdict = decide(candidates, tests, metric="accuracy", alpha=ALPHA)
        claims += any(c.status == "worse" for c in verdict.comparisons)
    expected = np.mean(np.any((holm(p_values) < ALPHA) & np.array(
        [[int(np.argmax(accuracy[s])) in pair for pair in pairs] for s in range(sims)]), axis=1))
    assert claims / sims == pytest.approx(expected) and claims / sims <= ALPHA


# ---------------------------------------------------------------- power and sample size


def mcnemar_power(rng: np.random.Generator, n: int, discordance: float, difference: float, sims: int = 4000) -> float:
    differences = paired_differences(rng, sims, n, discordance, difference)
    return float(np.mean(mcnemar_p(np.sum(differences > 0, axis=1), np.sum(differences < 0, axis=1)) < ALPHA))


def test_accuracy_power_figures_from_the_discordance_agree_with_simulated_mcnemar_power():
    rng = np.random.default_rng(31)
    # what compare() reports on a pilot test set: the spread is the square root of the observed discordance
    pilot = paired_differences(rng, 1, 150, 0.2, 0.0)[0]
    a, b = pilot >= 0, pilot <= 0  # a is right where only a is, b where only b is, both elsewhere
    power = compare("a", "b", [mean_family("accuracy", a.astype(float))], [mean_family("accuracy", b.astype(float))],
                    "accuracy", resample_weights(150, 500, seed=1), ALPHA, (list(a), list(b)), MARGIN).power
    assert power["source"] == "discordance" and power["per_example_sd"] == pytest.approx(np.sqrt(np.mean(pilot != 0)))
    # the figures at the true discordance, checked by simulating McNemar's test at them
    detectable = detectable_difference(np.sqrt(0.2), 150, ALPHA)
    needed = examples_needed(np.sqrt(0.1), MARGIN, ALPHA)
    at_detectable = mcnemar_power(rng, 150, 0.2, detectable)
    at_needed = mcnemar_power(rng, needed, 0.1, MARGIN)
    # measured: detectable 0.102 at n=150 -> power 76.3%; 1,963 examples for 0.02 -> power 79.4%
    assert POWER_BAND[0] <= at_detectable <= POWER_BAND[1] and POWER_BAND[0] <= at_needed <= POWER_BAND[1]
    # the check can fail: half the examples needed gives 48%
    assert mcnemar_power(rng, needed // 2, 0.1, MARGIN) < POWER_BAND[0]


def test_score_power_figures_from_the_paired_bootstrap_agree_with_simulated_bootstrap_power():
    rng, sd, n, sims = np.random.default_rng(41), 0.3, 200, 1000
    detectable = detectable_difference(sd, n, ALPHA)
    weights = resample_weights(n, 1000, seed=42)
    # compare() scales the bootstrap's standard error back to one example: close to the true sd
    pilot = rng.normal(0.0, sd, n)
    power = compare("a", "b", [mean_family("score", 0.5 + pilot)], [mean_family("score", np.full(n, 0.5))], "score",
                    weights, ALPHA, margin=MARGIN).power
    assert power["source"] == "paired bootstrap" and power["per_example_sd"] == pytest.approx(sd, rel=0.1)
    rejected = 0
    for _ in range(sims):
        a = 0.5 + rng.normal(detectable, sd, n)
        rejected += paired_bootstrap(mean_family("score", a), mean_family("score", np.full(n, 0.5)), "score",
                                     weights)[2] < ALPHA
    # measured: detectable 0.059 at n=200 -> power 79.1%
    assert POWER_BAND[0] <= rejected / sims <= POWER_BAND[1]
