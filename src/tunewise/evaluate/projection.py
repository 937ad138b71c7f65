"""Would more labelled data change the answer? A fine-tuned arm's learning curve, fitted and projected.

A learning curve (training/<arm>.json "learning_curve": the arm retrained on fractions of its training
examples, each scored on the test split) is fitted with an inverse power law, value = a - b * n^(-c): the
usual shape of a learning curve, rising and flattening towards a ceiling `a`. The fit is projected to twice
and four times the labelled data and compared with the recommended arm: is collecting more data projected to
make this arm overtake it?

How: for each exponent c on a grid, a and b are an ordinary least-squares line in n^(-c), with the constraints
that make it a learning curve (b >= 0: more data never hurts on average; a <= 1: the metric's own ceiling);
the c with the smallest squared error wins. Profiling c on a grid instead of a nonlinear optimiser means no
starting point, no convergence failures and one vectorised pass over all resamples. With 3 points and 3
parameters the fit goes through every point, so its interval cannot come from residuals; it comes from the
points' own measurement noise: each point is a proportion over the same test examples, with standard error
sqrt(v(1 - v) / n_test) (or the residual spread, when more points make it larger). A parametric bootstrap
redraws every point from that noise and refits; the 2.5th and 97.5th percentiles of the projections are the
95% interval. Fewer than 3 points cannot be fitted, and the record says so. Knows nothing about models or files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

EXPONENTS = np.linspace(0.05, 3.0, 120)  # c: 0.05 is nearly logarithmic growth, 3 a curve already flat
FACTORS = (2, 4)
WORDS = {2: "doubling", 4: "quadrupling"}
MIN_POINTS = 3
MAX_RESAMPLES = 2000  # R x grid x points floats: 2,000 keeps it a few MB; more would not change 95% bounds much


def fit_power_law(n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(a, b, c) of value = a - b * n^(-c) for every row of `y` (R x m, one curve a row) at sizes `n` (m),
    least squares with b >= 0 and a <= 1; returns an R x 3 array."""
    y = np.atleast_2d(np.asarray(y, dtype=float))
    x = np.asarray(n, dtype=float)[None, :] ** -EXPONENTS[:, None]  # C x m
    xm, ym = x.mean(axis=1), y.mean(axis=1)  # C, R
    xc, yc = x - xm[:, None], y - ym[:, None]
    sxx = (xc ** 2).sum(axis=1)  # C
    slope = np.minimum((yc @ xc.T) / np.where(sxx > 0, sxx, 1.0), 0.0)  # R x C; b = -slope >= 0
    a = ym[:, None] - slope * xm[None, :]
    over = a > 1.0  # the ceiling above the metric's maximum: refit with a = 1, b through the origin
    b_capped = np.maximum(((1.0 - y) @ x.T) / (x ** 2).sum(axis=1)[None, :], 0.0)
    b = np.where(over, b_capped, -slope)
    a = np.where(over, 1.0, a)
    fitted = a[:, :, None] - b[:, :, None] * x[None, :, :]  # R x C x m
    best = np.argmin(((fitted - y[:, None, :]) ** 2).sum(axis=2), axis=1)
    rows = np.arange(y.shape[0])
    return np.stack([a[rows, best], b[rows, best], EXPONENTS[best]], axis=1)


def predict(params: np.ndarray, n: float) -> np.ndarray:
    """The fitted curves (R x 3 params) at size n, kept inside the metric's range [0, 1]."""
    a, b, c = params[:, 0], params[:, 1], params[:, 2]
    return np.clip(a - b * float(n) ** -c, 0.0, 1.0)


def _noise(y: np.ndarray, fitted: np.ndarray, test_examples: int) -> np.ndarray:
    """Each point's standard error: binomial over the test examples, or the residual spread when larger."""
    binomial = np.sqrt(np.clip(y * (1 - y), 1e-4, None) / max(test_examples, 1))
    dof = len(y) - 3
    residual = np.sqrt(((y - fitted) ** 2).sum() / dof) if dof > 0 else 0.0
    return np.maximum(binomial, residual)


def _status(low: float, high: float, target: float) -> str:
    return "overtakes" if low > target else "not" if high < target else "might"


def project(curve: Sequence[Mapping[str, Any]], *, test_examples: int, target: float | None = None,
            target_arm: str | None = None, resamples: int = 1000, seed: int = 13) -> dict[str, Any]:
    """The projection record of one learning curve: fit, 2x and 4x projections with 95% intervals and, when
    `target` (the recommended arm's value on the curve's metric) is given, whether each overtakes it."""
    points = sorted((p for p in curve if p.get("value") is not None), key=lambda p: p["train_examples"])
    metric = points[0]["metric"] if points else None
    sizes = sorted({int(p["train_examples"]) for p in points})
    base = {"metric": metric, "points": len(points), "target_arm": target_arm, "target": target}
    if len(sizes) < MIN_POINTS:
        return base | {"fitted": False, "reason": f"{len(sizes)} distinct training size(s); at least {MIN_POINTS} are "
                                                  "needed to fit a learning curve"}
    n = np.array([p["train_examples"] for p in points], dtype=float)
    y = np.array([p["value"] for p in points], dtype=float)
    params = fit_power_law(n, y)
    sigma = _noise(y, params[0, 0] - params[0, 1] * n ** -params[0, 2], test_examples)
    rng = np.random.default_rng(seed)
    resamples = min(resamples, MAX_RESAMPLES)
    draws = fit_power_law(n, np.clip(y + rng.standard_normal((resamples, len(y))) * sigma, 0.0, 1.0))
    full = int(n.max())
    projections = []
    for factor in FACTORS:
        spread = predict(draws, factor * full)
        low, high = (float(v) for v in np.percentile(spread, [2.5, 97.5]))
        row = {"factor": factor, "train_examples": factor * full, "value": float(predict(params, factor * full)[0]),
               "low": low, "high": high}
        if target is not None:
            row["status"] = _status(low, high, target)
        projections.append(row)
    a, b, c = (float(v) for v in params[0])
    return base | {"fitted": True, "train_examples": full, "params": {"a": a, "b": b, "c": c},
                   "ceiling": a, "projections": projections, "resamples": resamples, "seed": seed,
                   "method": "inverse power law a - b n^-c (least squares, c profiled on a grid, b >= 0, a <= 1); "
                             "95% interval from a parametric bootstrap of each point's binomial noise"}


def sentence(arm: str, record: Mapping[str, Any]) -> str:
    """The projection in one sentence for the verdict's reasons."""
    metric = record["metric"]
    if not record["fitted"]:
        return (f"The learning curve of {arm} cannot be projected: {record['reason']} (give the arm more fractions, "
                "e.g. learning_curve: [0.25, 0.5]).")
    parts = [f"{p['value']:.3f} (95% interval {p['low']:.3f}-{p['high']:.3f}) with {p['factor']}x the labelled data "
             f"({p['train_examples']:,} examples)" if i == 0 else
             f"{p['value']:.3f} ({p['low']:.3f}-{p['high']:.3f}) with {p['factor']}x ({p['train_examples']:,})"
             for i, p in enumerate(record["projections"])]
    head = (f"The learning curve of {arm} ({record['points']} points up to {record['train_examples']:,} training examples) "
            f"projects {metric} {' and '.join(parts)}")
    target, rival = record.get("target"), record.get("target_arm")
    if target is None or rival is None:
        return head + "."
    if rival == arm:
        return head + f"; it is already the recommended arm ({metric} {target:.3f} now)."
    verdicts = {"overtakes": "is projected to overtake it", "not": "is not projected to overtake it",
                "might": f"might overtake it (the interval reaches {target:.3f}; the curve cannot tell)"}
    said = "; ".join(f"{WORDS[p['factor']]} the labelled data {verdicts[p['status']]}" for p in record["projections"])
    return head + f", against {metric} {target:.3f} for the recommended {rival}: {said}."
