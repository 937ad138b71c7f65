"""Gates: hard limits (evaluation.gates) an arm must meet before the decision rule considers it at all.

A gate is a requirement, not a preference: an arm over the p95 latency a product can tolerate, or one that
forgot too much of its general capability, is not a candidate however good or cheap it is. So each gate is
checked apart from the rule, and an arm failing one is handed to verdict.decide as `Candidate.gate`: it is
"out" with the figure, the limit and the field that set it ("lora is out: p95 latency 1.9 s is above the gate
evaluation.gates.max_p95_latency_s = 0.5 s"), never worded as a failure of the arm. A figure the gate needs
but the run does not have (an unknown cost, no robustness figures) fails the gate, with that reason: a limit
that cannot be checked is not met.

Reads the per-arm figures of results.json (evaluate/evidence.py builds them); knows nothing about models,
files or how the figures were measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tunewise.evaluate import money

FIELD = "evaluation.gates"


@dataclass(frozen=True)
class Check:
    """One gate on one arm: the figure (None when unknown), the limit, and the sentence when it does not pass."""

    gate: str
    value: float | None
    limit: float
    passed: bool
    reason: str | None = None


def _seconds(value: float) -> str:
    return f"{value:.3g} s"


def _plain(value: float) -> str:
    return f"{value:.3g}"


def _percent(value: float) -> str:
    """92.5%, 90% (no trailing .0): a limit is shown as it was meant."""
    return f"{value:.1%}".replace(".0%", "%")


def _limit(gate: str, limit: float, show: Callable[[float], str]) -> str:
    return f"the gate {FIELD}.{gate} = {show(limit)}"


def _at_most(gate: str, what: str, value: float | None, limit: float, show: Callable[[float], str],
             detail: str = "", unknown: str = "") -> Check:
    """value <= limit passes; an unknown value fails with `unknown` as its reason."""
    if value is None:
        return Check(gate, None, limit, False, f"{unknown}, so {_limit(gate, limit, show)} cannot be checked")
    if value <= limit:
        return Check(gate, value, limit, True)
    return Check(gate, value, limit, False, f"{what} {show(value)}{detail} is above {_limit(gate, limit, show)}")


def _retention(arm: Mapping[str, Any], limit: float) -> Check:
    """Forgetting retention from the training record; an arm that was not probed (not fine-tuned) passes."""
    forgetting = (arm.get("training") or {}).get("forgetting") or {}
    value = forgetting.get("retention")
    if value is None:
        return Check("min_retention", None, limit, True)
    value = float(value)
    if value >= limit:
        return Check("min_retention", value, limit, True)
    return Check("min_retention", value, limit, False, f"general-capability retention {value:.1%} (forgetting probe) "
                                                       f"is below {_limit('min_retention', limit, _percent)}")


def _robustness(arm: Mapping[str, Any], limit: float) -> Check:
    """The largest drop over the arm's perturbations (clean minus perturbed, primary metric)."""
    cells = arm.get("robustness") or {}
    if not cells:
        return _at_most("max_robustness_drop", "", None, limit, _plain,
                        unknown="it has no robustness figures (its perturbed runs did not finish)")
    worst = max(cells, key=lambda name: cells[name]["drop"])
    return _at_most("max_robustness_drop", "the robustness drop", float(cells[worst]["drop"]), limit, _plain,
                    detail=f" (on {worst})")


def _invalid(arm: Mapping[str, Any], limit: float) -> Check:
    valid = (arm.get("metrics") or {}).get("json_valid")
    value = None if valid is None else 1.0 - float(valid["value"])
    n = (arm.get("summary") or {}).get("n") or 0
    detail = f" ({round(value * n):,} of {n:,} answers are not a JSON object)" if value is not None and n else ""
    return _at_most("max_invalid_rate", "the invalid-output rate", value, limit, lambda v: f"{v:.1%}", detail,
                    unknown="its invalid-output rate is unknown")


def _latency(arm: Mapping[str, Any], limit: float) -> Check:
    latency = arm.get("latency") or {}
    source = " (single-request probe)" if latency.get("source") == "probe" else " (batch time split over its examples)"
    return _at_most("max_p95_latency_s", "p95 latency", latency.get("latency_p95_s"), limit, _seconds, source,
                    unknown="its p95 latency is unknown")


def _cost(arm: Mapping[str, Any], limit: float) -> Check:
    value = (arm.get("cost") or {}).get("amortised_per_1k_usd")
    return _at_most("max_cost_per_1k_usd", "the cost per 1,000 requests", value, limit, money.usd,
                    " (training amortised)", unknown="its cost per 1,000 requests is unknown (no price given)")


CHECKS: dict[str, Callable[[Mapping[str, Any], float], Check]] = {
    "min_retention": _retention, "max_robustness_drop": _robustness, "max_invalid_rate": _invalid,
    "max_p95_latency_s": _latency, "max_cost_per_1k_usd": _cost}


def check_arm(arm: Mapping[str, Any], limits: Mapping[str, float]) -> list[Check]:
    """Every set gate on one arm's results.json figures, in the order of CHECKS."""
    return [CHECKS[gate](arm, limits[gate]) for gate in CHECKS if limits.get(gate) is not None]


def out_reason(checks: list[Check]) -> str | None:
    """The sentence an arm is out with ("p95 latency ... is above the gate ..."), or None when it passes."""
    failed = [c.reason for c in checks if not c.passed and c.reason]
    return "; ".join(failed) if failed else None


def check_gates(limits: Mapping[str, float | None], arms: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """results.json's "gates": the limits set, every arm's checks and the arms that are out with their reason;
    None when no gate is set (nothing was checked, which is not the same as everything passing)."""
    active = {gate: float(limit) for gate, limit in limits.items() if limit is not None and gate in CHECKS}
    if not active:
        return None
    per_arm = {name: check_arm(arm, active) for name, arm in arms.items()}
    out = {name: reason for name, checks in per_arm.items() if (reason := out_reason(checks)) is not None}
    return {"limits": active, "arms": {name: {"passed": name not in out, "checks": [asdict(c) for c in checks]}
                                       for name, checks in per_arm.items()},
            "out": out}
