"""The judge's verdicts (judge.json, written by pipeline/judging.py) as evidence: a `judge` metric family per arm,
so its score gets bootstrap intervals and paired tests like every other metric (and can be the primary metric),
plus the judge's own section of results.json: pairwise win rates with intervals, the position-bias rate, how
often the judge gave no verdict, agreement with the reference metrics, and what the judge cost.

Per-example judge score: pointwise, the 0-1 score (no verdict counts as the midpoint, 0.5, and is reported);
pairwise, the arm's mean outcome against every other judged arm on that example (1 win, 0.5 tie, 0 loss),
so 0.5 is "as good as the others on average". Reads no files itself; knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.evaluate.judge_agreement import agreement
from tunewise.evaluate.metrics import Family, mean_family
from tunewise.evaluate.stats import intervals

NO_VERDICT = 0.5  # a reply without a recognisable verdict: neither credit nor blame, counted and shown


def judge_scores(record: Mapping[str, Any], ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-arm judge scores on `ids`, in order; an arm the judge did not cover on every id is left out."""
    if record.get("error"):
        return {}
    out: dict[str, np.ndarray] = {}
    if record.get("pointwise"):
        for arm, rows in record["pointwise"].items():
            if all(i in rows for i in ids):
                out[arm] = np.array([NO_VERDICT if rows[i]["score"] is None else rows[i]["score"] for i in ids])
        return out
    totals: dict[str, list[np.ndarray]] = {}
    for pair in (record.get("pairwise") or {}).values():
        rows = pair["examples"]
        if not all(i in rows for i in ids):
            continue
        outcome = np.array([rows[i]["outcome"] for i in ids], dtype=float)
        totals.setdefault(pair["a"], []).append(outcome)
        totals.setdefault(pair["b"], []).append(1 - outcome)
    return {arm: np.mean(parts, axis=0) for arm, parts in totals.items()}


def judge_family(scores: np.ndarray) -> Family:
    return mean_family("judge", scores.tolist())


def _no_verdicts(record: Mapping[str, Any], ids: Sequence[str]) -> dict[str, int]:
    if record.get("pointwise"):
        return {arm: sum(rows[i]["score"] is None for i in ids if i in rows)
                for arm, rows in record["pointwise"].items()}
    counts: dict[str, int] = {}
    for pair in (record.get("pairwise") or {}).values():
        missing = sum((r["first"] is None) + (r["second"] is None) for i, r in pair["examples"].items() if i in ids)
        for arm in (pair["a"], pair["b"]):
            counts[arm] = counts.get(arm, 0) + missing
    return counts


def win_rates(record: Mapping[str, Any], ids: Sequence[str], weights: np.ndarray | None,
              confidence: float) -> list[dict[str, Any]]:
    """Each pair: wins, losses, ties, the win rates with bootstrap intervals, and how often the orders disagreed."""
    out = []
    for pair in (record.get("pairwise") or {}).values():
        rows = [pair["examples"][i] for i in ids if i in pair["examples"]]
        if not rows:
            continue
        outcome = np.array([r["outcome"] for r in rows], dtype=float)
        fams = [mean_family("a_wins", (outcome == 1).astype(float).tolist()),
                mean_family("b_wins", (outcome == 0).astype(float).tolist())]
        cis = intervals(fams, weights, confidence) if weights is not None and len(rows) == len(ids) else {
            name: {"value": float(np.mean(col)), "low": None, "high": None}
            for name, col in (("a_wins", outcome == 1), ("b_wins", outcome == 0))}
        known = [r["disagreed"] for r in rows if r["disagreed"] is not None]
        out.append({"a": pair["a"], "b": pair["b"], "n": len(rows), "a_wins": int(np.sum(outcome == 1)),
                    "b_wins": int(np.sum(outcome == 0)), "ties": int(np.sum(outcome == 0.5)),
                    "a_win_rate": cis["a_wins"], "b_win_rate": cis["b_wins"],
                    "disagreements": int(sum(known)), "both_verdicts": len(known),
                    "position_bias_rate": float(np.mean(known)) if known else None})
    return out


def judge_cost(record: Mapping[str, Any], cost: Any, hourly_usd: float) -> dict[str, Any]:
    """The judge's cost like an arm's: tokens x the dated price for an endpoint, compute seconds x the machine's
    hourly price for a local model; None where an endpoint has no price in cost.remote_prices."""
    usage = record.get("usage") or {}
    calls = max(int(usage.get("calls", 0)), 1)
    if record.get("endpoint"):
        price = cost.remote_prices.get(record.get("model"))
        usd = None if price is None else (usage.get("prompt_tokens", 0) * price.input_per_million
                                          + usage.get("completion_tokens", 0) * price.output_per_million) / 1e6
        source = "tokens x cost.remote_prices" if price is not None else "unknown: no cost.remote_prices entry"
    else:
        usd = float(usage.get("compute_s", 0.0)) * hourly_usd / 3600
        source = "compute seconds x hardware price"
    return {"calls": usage.get("calls", 0), "cached": usage.get("cached", 0), "failed": usage.get("failed", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
            "compute_s": usage.get("compute_s", 0.0), "usd": usd,
            "per_1k_calls_usd": None if usd is None else 1000 * usd / calls, "source": source}


def judge_section(record: Mapping[str, Any], ids: Sequence[str], scores: Mapping[str, np.ndarray],
                  arms: Mapping[str, Any], fams: Mapping[str, Any], weights: np.ndarray | None, confidence: float,
                  task_kind: str, cost: Any, hourly_usd: float) -> dict[str, Any]:
    """results.json's `judge`: settings, per-arm scores with intervals, win rates, position bias, agreement, cost."""
    section = {k: record.get(k) for k in ("mode", "scale", "rubric", "rubric_source", "use_reference", "model",
                                          "endpoint", "error")}
    if record.get("error"):
        return section
    no_verdict = _no_verdicts(record, ids)
    section["arms"] = {name: dict(arms[name]["metrics"]["judge"], no_verdict=no_verdict.get(name, 0))
                       for name in scores if name in arms and "judge" in arms[name]["metrics"]}
    pairs = win_rates(record, ids, weights, confidence)
    section["pairwise"] = pairs
    disagreed = sum(p["disagreements"] for p in pairs)
    both = sum(p["both_verdicts"] for p in pairs)
    section["position_bias_rate"] = disagreed / both if both else None
    means = {name: float(np.mean(values)) for name, values in scores.items()}
    section["agreement"] = agreement(task_kind, scores, fams, means)
    section["cost"] = judge_cost(record, cost, hourly_usd)
    return section
