"""How far the LLM judge agrees with the reference-based metrics: per example and per arm ranking.

A judge is only worth trusting where it is checked: if its scores rank examples and arms much as ROUGE-L and
chrF (generate) or exact match and field F1 (extract) do, it adds a second opinion on the same scale; if it
disagrees, the report says so instead of letting the judge overrule the references silently. Per example:
Spearman's rho and Kendall's tau-b between the judge's score and the metric's sentence-level value, pooled
over every judged (arm, example). Per arm: Kendall's tau between the arms' order by judge score and by the
metric. scipy computes the correlations; knows nothing about models or files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.evaluate.metrics import Family

REFERENCE_METRICS = {"generate": ("rouge_l", "chrf"), "extract": ("exact_match", "field_f1")}


def per_example(fams: Sequence[Family], metric: str) -> np.ndarray | None:
    """The metric on each example alone (its own row of statistics reduced, so chrF is the sentence chrF)."""
    for fam in fams:
        if metric in fam.values():
            return np.array([fam.reduce(fam.stats[i:i + 1], 1)[metric][0] for i in range(fam.stats.shape[0])])
    return None


def _correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    from scipy.stats import kendalltau, spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant column has no rank order to agree with
        return {"spearman": None, "spearman_p": None, "kendall": None, "kendall_p": None}
    rho, rho_p = spearmanr(x, y)
    tau, tau_p = kendalltau(x, y)
    return {"spearman": float(rho), "spearman_p": float(rho_p), "kendall": float(tau), "kendall_p": float(tau_p)}


def agreement(task_kind: str, judge: Mapping[str, np.ndarray], fams: Mapping[str, Sequence[Family]],
              judge_means: Mapping[str, float]) -> dict[str, Any]:
    """{per_example: [...], ranking: [...]} for each reference metric of the task kind."""
    rows, ranking = [], []
    arms = [a for a in judge if a in fams]
    for metric in REFERENCE_METRICS.get(task_kind, ()):
        values = {a: per_example(fams[a], metric) for a in arms}
        present = [a for a in arms if values[a] is not None]
        if not present:
            continue
        x = np.concatenate([judge[a] for a in present])
        y = np.concatenate([values[a] for a in present])  # type: ignore[misc]
        rows.append({"metric": metric, "n": int(len(x)), **_correlations(x, y)})
        if len(present) >= 2:
            from scipy.stats import kendalltau

            metric_means = {a: float(np.mean(values[a])) for a in present}  # type: ignore[arg-type]
            tau = kendalltau([judge_means[a] for a in present], [metric_means[a] for a in present])[0]
            ranking.append({"metric": metric, "kendall": None if np.isnan(tau) else float(tau),
                            "by_judge": sorted(present, key=lambda a: -judge_means[a]),
                            "by_metric": sorted(present, key=lambda a: -metric_means[a]),
                            "same_best": _same_best(present, judge_means, metric_means)})
    return {"per_example": rows, "ranking": ranking}


def _same_best(arms: Sequence[str], judge: Mapping[str, float], metric: Mapping[str, float]) -> bool | None:
    """Whether the judge's best arm is the metric's best; None when the judge ties several arms for best."""
    top = max(judge[a] for a in arms)
    best = [a for a in arms if judge[a] == top]
    return None if len(best) > 1 else best[0] == max(arms, key=lambda a: metric[a])
