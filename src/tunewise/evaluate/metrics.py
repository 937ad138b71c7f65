"""Per-arm quality from its predictions: accuracy and macro-F1 (scikit-learn) for classification, the
task's own score (exact match) otherwise, plus failure counts and latency. Knows nothing about models.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from tunewise.schema import Prediction
from tunewise.tasks import Task


def cost_per_1k_requests(predictions: Sequence[Prediction], *, hourly_usd: float = 0.0,
                         price: Any | None = None) -> float:
    """USD per 1,000 requests: remote arms by token usage x the dated price table, local arms by measured
    compute seconds x the hourly price of the machine."""
    n = max(len(predictions), 1)
    if price is not None:
        tokens_in = sum(p.prompt_tokens for p in predictions) / n
        tokens_out = sum(p.completion_tokens for p in predictions) / n
        return 1000 * (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / 1e6
    return 1000 * (sum(p.latency_s for p in predictions) / n) * hourly_usd / 3600


def arm_metrics(predictions: Sequence[Prediction], task: Task) -> dict[str, Any]:
    if not predictions:
        return {"n": 0}
    references = [p.reference for p in predictions]
    predicted = [p.prediction for p in predictions]
    scores = [task.score(p.prediction, p.reference) for p in predictions]
    latencies = [p.latency_s for p in predictions]
    out: dict[str, Any] = {
        "n": len(predictions),
        "score": sum(scores) / len(scores),
        "failed": sum(p.error is not None for p in predictions),
        "unparsed": sum(not p.prediction and p.error is None for p in predictions),
        "cached": sum(p.cached for p in predictions),
        "latency_p50_s": statistics.median(latencies),
        "prompt_tokens_mean": sum(p.prompt_tokens for p in predictions) / len(predictions),
    }
    if task.labels:
        from sklearn.metrics import accuracy_score, f1_score

        out["accuracy"] = float(accuracy_score(references, predicted))
        out["macro_f1"] = float(f1_score(references, predicted, labels=list(task.labels), average="macro",
                                         zero_division=0))
    else:
        out["exact_match"] = out["score"]
    return out
