"""The decision rule: which arm to use, and whether fine-tuning earned its keep, in plain words.

RULE (also printed in every report):
  1. Arms that failed, or whose share of failed requests is above evaluation.max_failure_rate, are out.
  2. Quality bar: with evaluation.quality_bar, arms whose primary metric reaches it; otherwise the best arm
     and every arm *not significantly worse* than it by the paired test (p >= alpha): a difference the
     test cannot tell from noise is not a reason to pay more.
  3. Among those, the cheapest per request, with training cost amortised over the stated volume
     (cost.requests_per_day x cost.horizon_days). Costs within 5% of the cheapest count as equal (timed
     compute is noisy); among equals an arm that needs no training wins, then the fastest (p50 latency).
  4. The headline says "Fine-tune: ..." when the chosen arm is fine-tuned, "Don't fine-tune: use X" when
     fine-tuned arms were compared and lost on quality, or tied and cost more, and "Use X" when no
     fine-tuned arm was run.
Knows nothing about models, files or how the numbers were measured: it reads the arm summaries and the
paired tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise.evaluate import money

RULE = ("Arms with failures are out; the rest must reach the quality bar (default: not significantly worse than "
        "the best arm by a paired test); of those the cheapest per request wins (training amortised over the "
        "stated volume; costs within 5% are equal), then one that needs no training, then the fastest.")
COST_TOLERANCE = 0.05


@dataclass(frozen=True)
class Candidate:
    """What the rule needs to know about one arm."""

    name: str
    type: str
    quality: float | None  # primary metric point estimate; None when the arm produced nothing
    low: float | None = None
    high: float | None = None
    n: int = 0
    failed: int = 0
    failure: str | None = None  # the whole arm failed, and why
    cost_per_1k_usd: float | None = None  # amortised, training included
    latency_p50_s: float = 0.0
    needs_training: bool = False


@dataclass
class Verdict:
    recommended: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    qualifying: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    best: str | None = None
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return {"recommended": self.recommended, "headline": self.headline, "reasons": self.reasons,
                "qualifying": self.qualifying, "excluded": self.excluded, "best": self.best, "rule": self.rule}


def _test(tests: Sequence[Mapping[str, Any]], a: str, b: str) -> Mapping[str, Any] | None:
    return next((t for t in tests if {t["a"], t["b"]} == {a, b}), None)


def _worse(tests: Sequence[Mapping[str, Any]], arm: Candidate, best: Candidate) -> Mapping[str, Any] | None:
    """The paired test showing `arm` significantly worse than `best`, or None."""
    test = _test(tests, arm.name, best.name)
    if test is None or not test["significant"]:
        return None
    return test if (arm.quality or 0.0) < (best.quality or 0.0) else None


def _money(usd: float | None) -> str:
    return "unknown cost (no price given)" if usd is None else f"{money.usd(usd)} per 1,000 requests"


def decide(candidates: Sequence[Candidate], tests: Sequence[Mapping[str, Any]], *, metric: str, alpha: float,
           quality_bar: float | None = None, max_failure_rate: float = 0.0, volume: float | None = None) -> Verdict:
    """Apply RULE; `tests` are paired tests on `metric` (dicts with a, b, significant, p_value, delta)."""
    verdict = Verdict(recommended=None, headline="")
    eligible = []
    for arm in candidates:
        if arm.failure is not None or arm.quality is None:
            verdict.excluded[arm.name] = f"it failed: {arm.failure or 'no predictions'}"
        elif arm.n and arm.failed / arm.n > max_failure_rate:
            verdict.excluded[arm.name] = f"{arm.failed} of {arm.n} requests failed"
        else:
            eligible.append(arm)
    verdict.reasons += [f"{name} is out: {why}." for name, why in verdict.excluded.items()]
    if not eligible:
        verdict.headline = "No verdict: every arm failed."
        return verdict
    best = max(eligible, key=lambda a: a.quality)
    verdict.best = best.name
    verdict.reasons.append(f"Best {metric}: {best.name} at {best.quality:.3f}"
                           + (f" (95% CI {best.low:.3f}-{best.high:.3f})." if best.low is not None else "."))
    if quality_bar is not None:
        qualifying = [a for a in eligible if a.quality >= quality_bar]
        verdict.reasons.append(f"{len(qualifying)} arm(s) reach the quality bar {metric} >= {quality_bar:g}"
                               + (f": {', '.join(a.name for a in qualifying)}." if qualifying else "."))
    else:
        qualifying = [a for a in eligible if _worse(tests, a, best) is None]
        tied = [a.name for a in qualifying if a is not best]
        if tied:
            verdict.reasons.append(f"No significant difference from {best.name} (alpha {alpha:g}): {', '.join(tied)}.")
        for arm in eligible:
            worse = _worse(tests, arm, best)
            if worse is not None:
                verdict.reasons.append(f"{arm.name} is significantly worse than {best.name} "
                                       f"({arm.quality - best.quality:+.3f}, p={worse['p_value']:.3g}).")
    verdict.qualifying = [a.name for a in qualifying]
    if not qualifying:
        verdict.headline = (f"No arm reaches the quality bar ({metric} >= {quality_bar:g}); the best, {best.name}, "
                            f"scores {best.quality:.3f}.")
        return verdict
    chosen = _cheapest(qualifying, verdict.reasons, volume)
    verdict.recommended = chosen.name
    verdict.headline = _headline(chosen, best, eligible, qualifying, tests, metric, quality_bar)
    return verdict


def _cheapest(qualifying: Sequence[Candidate], reasons: list[str], volume: float | None) -> Candidate:
    known = [a.cost_per_1k_usd for a in qualifying if a.cost_per_1k_usd is not None]
    floor = min(known) if known else None
    if floor is None:
        pool = list(qualifying)
    else:
        pool = [a for a in qualifying if a.cost_per_1k_usd is not None
                and a.cost_per_1k_usd <= floor * (1 + COST_TOLERANCE) + 1e-12]
    chosen = min(pool, key=lambda a: (a.needs_training, a.latency_p50_s, -a.quality))
    amortised = f" (training amortised over {volume:,.0f} requests)" if volume else ""
    if len(qualifying) == 1:
        reasons.append(f"{chosen.name} is the only arm that qualifies: {_money(chosen.cost_per_1k_usd)}{amortised}.")
    elif len(pool) == 1:
        reasons.append(f"{chosen.name} is the cheapest of those: {_money(chosen.cost_per_1k_usd)}{amortised}.")
    else:
        how = "needs no training and is the fastest" if not chosen.needs_training else "is the fastest"
        reasons.append(f"{', '.join(a.name for a in pool)} cost the same within {COST_TOLERANCE:.0%} "
                       f"({_money(chosen.cost_per_1k_usd)}{amortised}); {chosen.name} {how} of them "
                       f"(p50 {chosen.latency_p50_s * 1000:,.0f} ms).")
    return chosen


def _headline(chosen: Candidate, best: Candidate, eligible: Sequence[Candidate], qualifying: Sequence[Candidate],
              tests: Sequence[Mapping[str, Any]], metric: str, quality_bar: float | None) -> str:
    tuned = [a for a in eligible if a.type == "finetune"]
    if chosen.type == "finetune":
        others = [a for a in eligible if a.type != "finetune"]
        if not others:
            return (f"Fine-tune: {chosen.name} ({metric} {chosen.quality:.3f}); only fine-tuned arms finished, so "
                    "nothing untrained was compared.")
        rival = max(others, key=lambda a: a.quality)
        test = _test(tests, chosen.name, rival.name)
        if test is not None and test["significant"] and chosen.quality > rival.quality:
            return (f"Fine-tune: {chosen.name} is significantly better than the best alternative, {rival.name} "
                    f"({metric} {chosen.quality:.3f} vs {rival.quality:.3f}, p={test['p_value']:.3g}).")
        return (f"Fine-tune: {chosen.name} matches the best alternative, {rival.name}, on {metric} "
                f"({chosen.quality:.3f} vs {rival.quality:.3f}) and is cheaper or faster to serve.")
    if not tuned:
        standing = ("reaches the quality bar" if quality_bar is not None else
                    "has the best quality" if chosen is best else "is not significantly worse than the best")
        return (f"Use {chosen.name}: it {standing} ({metric} {chosen.quality:.3f}) at the lowest cost; "
                "no fine-tuned arm was run.")
    top = max(tuned, key=lambda a: a.quality)
    test = _test(tests, chosen.name, top.name)
    p = f", p={test['p_value']:.3g}" if test is not None else ""
    figures = f"{metric} {chosen.quality:.3f} vs {top.quality:.3f}{p}"
    if top.name in {a.name for a in qualifying}:
        if quality_bar is not None:
            return (f"Don't fine-tune: use {chosen.name}. Like the fine-tuned {top.name} it reaches the quality bar "
                    f"({figures}), and it costs less to run.")
        return (f"Don't fine-tune: use {chosen.name}. It is statistically indistinguishable from the fine-tuned "
                f"{top.name} ({figures}) and costs less to run.")
    if quality_bar is not None:
        return f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} does not reach the quality bar ({figures})."
    return (f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} is significantly worse than "
            f"{best.name} ({figures}).")
