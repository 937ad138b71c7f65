"""Confidence intervals and paired significance tests over metric families (see metrics.py).

Bootstrap: resample the test examples with replacement (seeded), recompute every metric on each resample,
and take the percentile interval. Resamples are drawn as multinomial counts, so a metric on B resamples is
one (B x n) @ (n x k) product. Paired tests compare two arms on the *same* examples:
  - McNemar's test (statsmodels) on per-example correctness for classification accuracy; exact binomial
    when discordant pairs are few (< 25), chi-square with continuity correction otherwise;
  - a paired bootstrap otherwise: both arms scored on the same resamples; the two-sided p-value is twice
    the share of resampled differences on the far side of zero, (count + 1) / (B + 1), capped at 1.
Results say "no significant difference" in plain words when p >= alpha. Knows nothing about models or files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tunewise.evaluate.metrics import Family

EXACT_BELOW = 25  # discordant pairs under which McNemar uses the exact binomial test


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """B x n counts: how often each example is drawn in each resample (a bootstrap sample of size n)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def intervals(fams: Sequence[Family], weights: np.ndarray, confidence: float) -> dict[str, dict[str, float]]:
    """{metric: {value, low, high}} for every metric of every family, on the given resamples."""
    out = {}
    for fam in fams:
        point = fam.values()
        boot = fam.values(weights)
        for name, value in point.items():
            low, high = percentile_interval(boot[name], confidence)
            out[name] = {"value": float(value[0]), "low": low, "high": high}
    return out


@dataclass(frozen=True)
class PairedTest:
    """One arm against another on one metric; `delta` is a - b with its bootstrap interval."""

    a: str
    b: str
    metric: str
    test: str
    p_value: float
    statistic: float | None
    delta: float
    delta_low: float
    delta_high: float
    significant: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric_family(fams: Sequence[Family], metric: str) -> Family:
    for fam in fams:
        if metric in fam.values():
            return fam
    raise KeyError(f"no metric {metric!r}; known: {sorted(k for f in fams for k in f.values())}")


def paired_bootstrap(fa: Family, fb: Family, metric: str, weights: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(observed a - b, resampled differences, two-sided p-value) with both arms on the same resamples."""
    observed = float(fa.values()[metric][0] - fb.values()[metric][0])
    deltas = fa.values(weights)[metric] - fb.values(weights)[metric]
    if np.all(deltas == 0):
        return observed, deltas, 1.0
    # (count + 1) / (B + 1): a finite bootstrap never shows p = 0, only p below 1 / B
    tail = min(int(np.sum(deltas <= 0)), int(np.sum(deltas >= 0)))
    return observed, deltas, min(1.0, 2 * (tail + 1) / (len(deltas) + 1))


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[float, float, str]:
    """(p-value, statistic, name) of McNemar's test on paired correctness."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    discordant = table[0][1] + table[1][0]
    if discordant == 0:
        return 1.0, 0.0, "McNemar (no discordant pairs)"
    exact = discordant < EXACT_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return float(result.pvalue), float(result.statistic), "McNemar exact" if exact else "McNemar chi-square"


def compare(a: str, b: str, fams_a: Sequence[Family], fams_b: Sequence[Family], metric: str, weights: np.ndarray,
            alpha: float, correct: tuple[Sequence[bool], Sequence[bool]] | None = None) -> PairedTest:
    """Arm a against arm b on `metric`: McNemar when per-example correctness is given (accuracy), else the
    paired bootstrap; the difference's interval is always the paired bootstrap's."""
    fa, fb = _metric_family(fams_a, metric), _metric_family(fams_b, metric)
    observed, deltas, p_value = paired_bootstrap(fa, fb, metric, weights)
    statistic = None
    test = "paired bootstrap"
    if correct is not None:
        p_value, statistic, test = mcnemar_test(*correct)
    low, high = percentile_interval(deltas, 1 - alpha)
    significant = p_value < alpha
    if significant:
        better, worse = (a, b) if observed > 0 else (b, a)
        summary = f"{better} is significantly better than {worse} on {metric} ({abs(observed):+.3f}, p={p_value:.3g})"
    else:
        summary = f"no significant difference between {a} and {b} on {metric} ({observed:+.3f}, p={p_value:.3g})"
    return PairedTest(a, b, metric, test, p_value, statistic, observed, low, high, significant, summary)
