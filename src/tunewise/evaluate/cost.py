"""What each arm costs: latency, throughput, USD per 1,000 requests, training cost and ROI against a baseline.

Local arms cost their measured compute seconds x the hourly price of the machine; remote arms their token
usage x the dated price table; an ensemble the sum of its members (it runs them all). Training cost (arms
that were fine-tuned) is the training seconds recorded in `training/<arm>.json` x the hourly price; it is
amortised over the stated volume (requests a day x horizon days) when arms are compared per request.
Knows nothing about models; reads no files (the caller passes the training record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.schema import Prediction


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


def latency_profile(predictions: Sequence[Prediction], probe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """p50/p95 seconds per request, throughput (examples per compute second, as measured, batching included) and
    compute seconds per 1,000 requests: the figure a dollar cost is made of, shown even when no price is known.

    With a single-request probe (arms/latency_probe.py), p50/p95 are the probe's: a batch's time split over its
    examples gives every example the same figure and no tail. Without one they fall back to that split, and
    `source` says which it is; the probe's machine load travels with it.
    """
    latencies = np.asarray([p.latency_s for p in predictions], dtype=float)
    total = float(latencies.sum())
    out: dict[str, Any] = {
        "latency_p50_s": float(np.percentile(latencies, 50)), "latency_p95_s": float(np.percentile(latencies, 95)),
        "source": "batch", "compute_s_total": total, "compute_s_per_1k": 1000 * total / max(len(latencies), 1),
        "throughput_per_s": len(latencies) / total if total > 0 else None}
    if probe and probe.get("requests"):
        out.update(latency_p50_s=float(probe["p50_s"]), latency_p95_s=float(probe["p95_s"]), source="probe",
                   probe_requests=int(probe["requests"]), probe_load=probe.get("load_before"),
                   probe_cpus=probe.get("cpus"), batched_p50_s=float(np.percentile(latencies, 50)))
    return out


def training_cost(training: Mapping[str, Any] | None, hourly_usd: float) -> dict[str, Any] | None:
    if not training:
        return None
    seconds = float(training.get("seconds") or 0.0)
    return {"seconds": seconds, "usd": seconds * hourly_usd / 3600, "method": training.get("method"),
            "precision": training.get("precision")}


def amortised_per_1k(cost_per_1k: float | None, training_usd: float, volume: float) -> float | None:
    """USD per 1,000 requests including training cost spread over `volume` requests."""
    if cost_per_1k is None:
        return None
    return cost_per_1k + 1000 * training_usd / volume


def roi(arm: Mapping[str, Any], baseline: Mapping[str, Any], requests_per_day: float) -> dict[str, Any]:
    """Quality, latency and cost-per-request change against the baseline arm, and when training pays back.

    Break-even volume = training cost / per-request saving (only when the arm is cheaper per request);
    payback days = that volume / requests a day.
    """
    out: dict[str, Any] = {
        "quality_change": arm["quality"] - baseline["quality"],
        "latency_change_s": arm["latency_p50_s"] - baseline["latency_p50_s"],
        "cost_per_1k_change_usd": None, "break_even_requests": None, "payback_days": None,
    }
    if arm["cost_per_1k_usd"] is None or baseline["cost_per_1k_usd"] is None:
        return out
    out["cost_per_1k_change_usd"] = arm["cost_per_1k_usd"] - baseline["cost_per_1k_usd"]
    saving = -out["cost_per_1k_change_usd"] / 1000
    training_usd = arm.get("training_usd") or 0.0
    if training_usd > 0 and saving > 0:
        out["break_even_requests"] = training_usd / saving
        out["payback_days"] = out["break_even_requests"] / requests_per_day
    return out
