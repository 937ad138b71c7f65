"""Confidence intervals and paired significance tests over metric families (see metrics.py).

Bootstrap: resample the test examples with replacement (seeded), recompute every metric on each resample,
and take the percentile interval. Resamples are drawn as multinomial counts, so a metric on B resamples is
one (B x n) @ (n x k) product. Paired tests compare two arms on the *same* examples:
  - McNemar's test on per-example correctness for classification accuracy; exact binomial
    when discordant pairs are few (< 25), chi-square with continuity correction otherwise;
  - a paired bootstrap otherwise: both arms scored on the same resamples; the two-sided p-value is twice
    the share of resampled differences on the far side of zero, (count + 1) / (B + 1), capped at 1.
Equivalence is two one-sided tests (TOST) on the same paired bootstrap: the pair is equivalent within
±margin when both one-sided p-values are below alpha, i.e. the difference's 1 - 2 alpha (90%) interval lies
inside ±margin. "Not significant" alone is not "the same": without equivalence a pair is inconclusive.
Holm's step-down correction adjusts the p-values of a family of tests (the verdict's comparisons against the
best arm). Knows nothing about models or files.
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
    margin: float = 0.0
    equivalence_p: float = 1.0  # TOST: the larger of the two one-sided bootstrap p-values
    ci90_low: float = 0.0  # the difference's 1 - 2 alpha interval, the one TOST checks against ±margin
    ci90_high: float = 0.0
    equivalent: bool = False
    power: dict[str, Any] | None = None  # power.py: detectable difference now, examples needed for the margin

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_family(fams: Sequence[Family], metric: str) -> Family:
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


def tost(deltas: np.ndarray, margin: float, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TOST p-value, low, high of the 1 - 2 alpha interval) along the last axis of resampled differences.

    Each one-sided p-value is the bootstrap share at or beyond the margin, (count + 1) / (B + 1) as in
    `paired_bootstrap`, so a finite bootstrap never claims more than it saw; equivalent when p < alpha.
    Vectorised over leading axes so the simulation tests run the very function the verdict uses.
    """
    deltas = np.asarray(deltas, dtype=float)
    b = deltas.shape[-1]
    p_low = (np.sum(deltas <= -margin, axis=-1) + 1) / (b + 1)  # H0: difference <= -margin
    p_high = (np.sum(deltas >= margin, axis=-1) + 1) / (b + 1)  # H0: difference >= +margin
    low, high = np.percentile(deltas, [alpha * 100, 100 - alpha * 100], axis=-1)
    return np.maximum(p_low, p_high), low, high


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values along the last axis: the i-th smallest times (m - i), kept
    monotone, capped at 1. Rejecting where adjusted p < alpha keeps the family-wise error <= alpha under any
    dependence between the tests, and it never rejects less than Bonferroni."""
    p = np.asarray(p_values, dtype=float)
    m = p.shape[-1]
    if m == 0:
        return p
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def mcnemar_p(only_a: np.ndarray, only_b: np.ndarray) -> np.ndarray:
    """McNemar's two-sided p-value from the discordant counts (element-wise, so simulations run thousands at
    once): exact binomial below EXACT_BELOW discordant pairs, else chi-square with continuity correction;
    statsmodels' `mcnemar` gives the same figures (tests/test_stats.py checks)."""
    from scipy.stats import binom, chi2

    b, c = np.asarray(only_a, dtype=float), np.asarray(only_b, dtype=float)
    discordant = b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        chi_square = chi2.sf((np.abs(b - c) - 1) ** 2 / discordant, 1)
    exact = np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), discordant, 0.5))
    return np.where(discordant == 0, 1.0, np.where(discordant < EXACT_BELOW, exact, chi_square))


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[float, float, str]:
    """(p-value, statistic, name) of McNemar's test on paired correctness."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0, 0.0, "McNemar (no discordant pairs)"
    p_value = float(mcnemar_p(np.array(only_a), np.array(only_b)))
    if discordant < EXACT_BELOW:
        return p_value, float(min(only_a, only_b)), "McNemar exact"
    return p_value, (abs(only_a - only_b) - 1) ** 2 / discordant, "McNemar chi-square"


def compare(a: str, b: str, fams_a: Sequence[Family], fams_b: Sequence[Family], metric: str, weights: np.ndarray,
            alpha: float, correct: tuple[Sequence[bool], Sequence[bool]] | None = None,
            margin: float = 0.0) -> PairedTest:
    """Arm a against arm b on `metric`: McNemar when per-example correctness is given (accuracy), else the
    paired bootstrap; the difference's interval, the equivalence test (TOST within ±margin) and the power
    figures always come from the paired bootstrap, except accuracy's spread, which is the discordance."""
    from tunewise.evaluate.power import power_figures

    fa, fb = metric_family(fams_a, metric), metric_family(fams_b, metric)
    observed, deltas, p_value = paired_bootstrap(fa, fb, metric, weights)
    statistic = None
    test = "paired bootstrap"
    n = int(weights.shape[1])
    sd, source = float(np.std(deltas)) * np.sqrt(n), "paired bootstrap"
    if correct is not None:
        p_value, statistic, test = mcnemar_test(*correct)
        sd = float(np.sqrt(np.mean(np.asarray(correct[0], bool) != np.asarray(correct[1], bool))))
        source = "discordance"
    low, high = percentile_interval(deltas, 1 - alpha)
    equivalence_p, ci_low, ci_high = (float(x) for x in tost(deltas, margin, alpha))
    significant = p_value < alpha
    equivalent = margin > 0 and equivalence_p < alpha
    summary = _summary(a, b, metric, observed, p_value, significant, equivalent, margin)
    return PairedTest(a, b, metric, test, p_value, statistic, observed, low, high, significant, summary, margin,
                      equivalence_p, ci_low, ci_high, equivalent, power_figures(sd, n, margin, alpha, source))


def _summary(a: str, b: str, metric: str, observed: float, p_value: float, significant: bool, equivalent: bool,
             margin: float) -> str:
    """One sentence that never calls a non-significant difference "the same" unless TOST showed it."""
    figures = f"{observed:+.3f}, p={p_value:.3g}"
    if significant:
        better, worse = (a, b) if observed > 0 else (b, a)
        tail = f", though within the margin ±{margin:g}" if equivalent else ""
        return f"{better} is significantly better than {worse} on {metric} ({abs(observed):+.3f}, p={p_value:.3g}){tail}"
    if equivalent:
        return f"{a} and {b} are equivalent within ±{margin:g} on {metric} ({figures})"
    return (f"no significant difference between {a} and {b} on {metric} ({figures}), but not shown equivalent "
            f"within ±{margin:g}: inconclusive")
