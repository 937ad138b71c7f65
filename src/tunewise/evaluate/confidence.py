"""Verdict confidence: how often the whole decision rule (verdict.py RULE) picks each arm when the test set is
resampled.

Every arm is scored on the same bootstrap resamples (the shared B x n resample counts of stats.py), so a
resample is one plausible test set for all arms at once. On each, the rule is re-applied in full: the best
arm, each arm's status against it (significantly worse with Holm's correction over all pairs, equivalent
within the margin, or inconclusive), the qualifying set (or the quality bar), then the cost step with its tie-breaks. A
bootstrap inside each bootstrap would cost B^2 metric evaluations, so within a resample the tests use the
normal approximation with each pair's paired-bootstrap standard error (the spread of that pair's differences
over the B resamples). Costs and latencies are held at their measured values: only the test examples vary.
Everything is B x k arrays, so 1,000 resamples of 8 arms take milliseconds. Knows nothing about models,
files or how the qualities were measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from tunewise.evaluate.stats import holm
from tunewise.evaluate.verdict import COST_TOLERANCE, Candidate


def statuses(quality: np.ndarray, se: np.ndarray, alpha: float, margin: float) -> tuple[np.ndarray, ...]:
    """(best index per resample, equivalent mask, worse mask), each row one resample of `quality` (B x k);
    `se` is the k x k standard error of each pair's difference. As in verdict.py, p-values are
    Holm-adjusted over all k(k-1)/2 pairs of each resample."""
    resamples, k = quality.shape
    rows = np.arange(resamples)
    first, second = np.triu_indices(k, 1)
    diff, spread = quality[:, first] - quality[:, second], se[first, second]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, np.abs(diff) / spread, np.where(diff == 0, 0.0, np.inf))
    adjusted = np.ones((resamples, k, k))
    pair_adjusted = holm(2 * ndtr(-z)) if first.size else np.ones((resamples, 0))
    adjusted[:, first, second] = adjusted[:, second, first] = pair_adjusted
    best = np.argmax(quality, axis=1)
    delta = quality - quality[rows, best][:, None]
    reach = ndtri(1 - alpha) * se[best]  # half-width of each arm's 1 - 2 alpha interval against the best
    equivalent = (delta - reach > -margin) & (delta + reach < margin)
    equivalent[rows, best] = False
    worse = (adjusted[rows, best] < alpha) & (delta < 0) & ~equivalent
    return best, equivalent, worse


def choose(quality: np.ndarray, qualifying: np.ndarray, arms: Sequence[Candidate]) -> np.ndarray:
    """verdict.pick on every row at once: the cheapest qualifying arm (within COST_TOLERANCE, unknown cost
    never beating a known one), then no training, then p50 latency, then quality; -1 where none qualifies."""
    cost = np.array([np.nan if a.cost_per_1k_usd is None else a.cost_per_1k_usd for a in arms], dtype=float)
    known = qualifying & ~np.isnan(cost)
    floor = np.where(known, np.nan_to_num(cost, nan=np.inf), np.inf).min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        cheap = known & (np.nan_to_num(cost, nan=np.inf) <= floor * (1 + COST_TOLERANCE) + 1e-12)
    pool = np.where(known.any(axis=1, keepdims=True), cheap, qualifying)
    ties = sorted({(a.needs_training, a.latency_p50_s) for a in arms})
    rank = np.array([ties.index((a.needs_training, a.latency_p50_s)) for a in arms], dtype=float)
    span = np.ptp(quality) + 1.0 if quality.size else 1.0  # quality only breaks ties within one rank
    key = np.where(pool, rank * span - quality, np.inf)
    return np.where(pool.any(axis=1), np.argmin(key, axis=1), -1)


def _percent(share: float) -> str:
    """Whole percents, except near 0 and 100 where rounding would hide that it was not always (or never)."""
    return f"{share:.0%}" if share in (0.0, 1.0) or 0.01 <= share <= 0.99 else f"{share:.1%}"


def verdict_confidence(arms: Sequence[Candidate], quality: np.ndarray, *, alpha: float, margin: float,
                       quality_bar: float | None, seed: int) -> dict[str, Any]:
    """{"resamples", "seed", "recommended": {arm: share, best first}, "none": share, "summary"} for the
    eligible `arms`, whose primary metric on each shared resample is a column of `quality` (B x k)."""
    quality = np.asarray(quality, dtype=float)
    resamples, k = quality.shape
    se = np.std(quality[:, :, None] - quality[:, None, :], axis=0)
    if quality_bar is not None:
        qualifying = quality >= quality_bar
    else:
        best, equivalent, _ = statuses(quality, se, alpha, margin)
        qualifying = equivalent.copy()
        qualifying[np.arange(resamples), best] = True
    chosen = choose(quality, qualifying, arms)
    counts = np.bincount(chosen + 1, minlength=k + 1)
    shares = {arms[i].name: float(counts[i + 1] / resamples) for i in np.argsort(-counts[1:], kind="stable")
              if counts[i + 1]}
    none = float(counts[0] / resamples)
    parts = [f"{name} in {_percent(share)}" for name, share in shares.items()]
    if none:
        parts.append(f"no arm in {_percent(none)}")
    summary = (f"Verdict confidence: {parts[0]} of {resamples:,} bootstrap resamples of the test set"
               + (f", {', '.join(parts[1:])}" if len(parts) > 1 else "") + ".")
    return {"resamples": resamples, "seed": seed, "recommended": shares, "none": none, "summary": summary,
            "method": "the whole rule re-applied on paired bootstrap resamples (normal-approximation tests "
                      "with each pair's bootstrap standard error; costs and latencies held fixed)"}
