"""The decision rule: which arm to use, and whether fine-tuning earned its keep, in plain words.

RULE (also printed in every report):
  1. Arms that failed, or whose share of failed requests is above evaluation.max_failure_rate, are out; so are
     arms that do not meet a gate of evaluation.gates (evaluate/gates.py), with the figure and the limit, and,
     in a run extended with --extend, arms settled at an earlier look (evaluate/sequential.py).
  2. Every other arm is compared with the best arm (highest primary metric) on the same test examples and
     called one of: *equivalent* within evaluation.margin (the paired difference's 90% interval lies inside
     ±margin: two one-sided tests at alpha; this wins over a significant difference smaller than the
     margin); *significantly worse* (the paired test's p-value, Holm-adjusted over all pairwise tests among
     these arms, since the best is itself picked from the data, is below alpha); or *inconclusive* (neither: the test set cannot tell them apart, which is not the same as
     "no difference").
  3. Qualifying: with evaluation.quality_bar, the arms whose primary metric reaches it; otherwise the best
     arm and the arms equivalent to it. An inconclusive arm does not qualify: a cheaper arm is preferred
     only when it is shown to be as good.
  4. Among those, the cheapest per request, with training cost amortised over the stated volume
     (cost.requests_per_day x cost.horizon_days). Costs within 5% of the cheapest count as equal (timed
     compute is noisy); among equals an arm that needs no training wins, then the fastest (p50 latency).
  5. The headline says "Fine-tune: ..." when the chosen arm is fine-tuned, "Don't fine-tune: use X" when
     fine-tuned arms were compared and lost on quality, or tied and cost more, and "Use X" when no
     fine-tuned arm was run. When an inconclusive arm would have been chosen had it been shown equivalent
     (without a quality bar), the recommendation rests on that pair and the headline says so: "Probably X,
     but the test set cannot yet tell B from Y: ...", with the difference it could detect now and the test
     examples a difference of the margin needs.
Knows nothing about models, files or how the numbers were measured: it reads the arm summaries and the
paired tests (evaluate/stats.py), and applies Holm's correction itself because only it knows which arms
are in the running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunewise.evaluate import money

RULE = ("Arms with failures, arms that do not meet a gate of evaluation.gates and, in an extended run, arms "
        "settled at an earlier look are out. Each other arm is compared with the best arm: equivalent (the paired "
        "difference's 90% interval lies inside ±evaluation.margin), significantly worse (p < alpha after "
        "Holm's correction over all pairs) or inconclusive. Only the best arm and the arms equivalent to it qualify (or, with "
        "evaluation.quality_bar, those reaching the bar); of those the cheapest per request wins (training "
        "amortised over the stated volume; costs within 5% are equal), then one that needs no training, then "
        "the fastest. When an inconclusive arm would have won had it been shown equivalent, the headline says "
        "\"Probably X, but the test set cannot yet tell ...\".")
COST_TOLERANCE = 0.05
STATUSES = ("equivalent", "worse", "inconclusive")


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
    gate: str | None = None  # the arm works but does not meet a gate of evaluation.gates: the figure and the limit
    settled: str | None = None  # an extended run settled it at an earlier look (evaluate/sequential.py), and how
    cost_per_1k_usd: float | None = None  # amortised, training included
    latency_p50_s: float = 0.0
    needs_training: bool = False


@dataclass(frozen=True)
class Comparison:
    """One arm against the best arm, oriented arm - best: the figures the rule relied on."""

    arm: str
    best: str
    delta: float
    p_value: float  # the paired test's, raw
    p_adjusted: float  # Holm over every pair of eligible arms
    equivalence_p: float  # TOST
    ci_low: float | None  # the difference's 90% (1 - 2 alpha) interval
    ci_high: float | None
    status: str  # one of STATUSES
    power: dict[str, Any] | None = None  # detectable difference now, examples needed for the margin


@dataclass
class Verdict:
    recommended: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    qualifying: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)  # the part of `excluded` that is out by a gate
    best: str | None = None
    margin: float | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    confidence: dict[str, Any] | None = None  # confidence.py: how often each arm wins on bootstrap resamples
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return {"recommended": self.recommended, "headline": self.headline, "reasons": self.reasons,
                "qualifying": self.qualifying, "excluded": self.excluded, "gated": self.gated, "best": self.best, "margin": self.margin,
                "comparisons": [asdict(c) for c in self.comparisons], "confidence": self.confidence,
                "rule": self.rule}


def _test(tests: Sequence[Mapping[str, Any]], a: str, b: str) -> Mapping[str, Any] | None:
    return next((t for t in tests if {t["a"], t["b"]} == {a, b}), None)


def _money(usd: float | None) -> str:
    return "unknown cost (no price given)" if usd is None else f"{money.usd(usd)} per 1,000 requests"


def holm_family(tests: Sequence[Mapping[str, Any]], names: set[str]) -> dict[frozenset[str], float]:
    """Holm-adjusted p-value of every paired test between two of `names`, keyed by the pair."""
    from tunewise.evaluate.stats import holm  # numpy, imported only when a verdict is made

    family = [t for t in tests if t["a"] in names and t["b"] in names]
    adjusted = holm([float(t.get("p_value", 1.0)) for t in family])
    return {frozenset((t["a"], t["b"])): float(p) for t, p in zip(family, adjusted)}


def compare_to_best(eligible: Sequence[Candidate], best: Candidate, tests: Sequence[Mapping[str, Any]],
                    alpha: float) -> list[Comparison]:
    """Every eligible arm against the best; a missing test is no evidence either way: inconclusive.

    p-values are Holm-adjusted over every paired test among the eligible arms, not only the k - 1 with the
    best: the best arm is picked from the same data, so any pair could have become a comparison with it
    (with 8 equal arms, adjusting only the k - 1 let the family-wise error reach about 10%; see
    tests/test_evidence_simulation.py)."""
    adjusted_by_pair = holm_family(tests, {a.name for a in eligible})
    others = [a for a in eligible if a is not best]
    found = [_test(tests, arm.name, best.name) or {} for arm in others]
    adjusted = [adjusted_by_pair.get(frozenset((arm.name, best.name)), 1.0) for arm in others]
    out = []
    for arm, test, p_adj in zip(others, found, adjusted):
        sign = 1.0 if test.get("a", arm.name) == arm.name else -1.0
        bounds = (test.get("ci90_low"), test.get("ci90_high"))
        low, high = sorted(sign * b for b in bounds) if None not in bounds else (None, None)
        delta = (arm.quality or 0.0) - (best.quality or 0.0)
        equivalence_p = float(test.get("equivalence_p", 1.0))
        status = ("equivalent" if equivalence_p < alpha else
                  "worse" if p_adj < alpha and delta < 0 else "inconclusive")
        out.append(Comparison(arm.name, best.name, delta, float(test.get("p_value", 1.0)), p_adj, equivalence_p,
                              low, high, status, test.get("power")))
    return out


def _interval(c: Comparison) -> str:
    return f"; 90% CI {c.ci_low:+.3f} to {c.ci_high:+.3f}" if c.ci_low is not None else ""


def _data_needed(c: Comparison, margin: float) -> str:
    """What would settle an inconclusive pair, from the power figures; empty when there are none."""
    power = c.power or {}
    if power.get("detectable_difference") is None:
        return ""
    need = power.get("examples_for_margin")
    tail = f"; about {need:,} would resolve a difference of {margin:g}" if need else ""
    return (f" At {power['test_examples']:,} test examples only a difference of {power['detectable_difference']:.3f}"
            f" or more is detected with {power['power']:.0%} power{tail}.")


def _comparison_reason(c: Comparison, margin: float) -> str:
    p = f"p={c.p_value:.3g}, Holm-adjusted p={c.p_adjusted:.3g}"
    if c.status == "equivalent":
        return f"{c.arm} is equivalent to {c.best} within ±{margin:g} ({c.delta:+.3f}{_interval(c)}, {p})."
    if c.status == "worse":
        return f"{c.arm} is significantly worse than {c.best} ({c.delta:+.3f}, {p})."
    return (f"{c.arm} vs {c.best} is inconclusive ({c.delta:+.3f}{_interval(c)}, {p}): not significantly worse, "
            f"not shown within ±{margin:g}." + _data_needed(c, margin))


def _eligible(candidates: Sequence[Candidate], max_failure_rate: float, verdict: Verdict) -> list[Candidate]:
    eligible = []
    for arm in candidates:
        if arm.settled is not None:
            verdict.excluded[arm.name] = arm.settled
        elif arm.failure is not None or arm.quality is None:
            verdict.excluded[arm.name] = f"it failed: {arm.failure or 'no predictions'}"
        elif arm.n and arm.failed / arm.n > max_failure_rate:
            verdict.excluded[arm.name] = f"{arm.failed} of {arm.n} requests failed"
        elif arm.gate is not None:
            verdict.excluded[arm.name] = verdict.gated[arm.name] = arm.gate
        else:
            eligible.append(arm)
    verdict.reasons += [f"{name} is out: {why}." for name, why in verdict.excluded.items()]
    return eligible


def decide(candidates: Sequence[Candidate], tests: Sequence[Mapping[str, Any]], *, metric: str, alpha: float,
           margin: float = 0.02, quality_bar: float | None = None, max_failure_rate: float = 0.0,
           volume: float | None = None) -> Verdict:
    """Apply RULE; `tests` are paired tests on `metric` (dicts with a, b, p_value and, from stats.compare,
    equivalence_p, ci90_low, ci90_high and power)."""
    verdict = Verdict(recommended=None, headline="", margin=margin)
    eligible = _eligible(candidates, max_failure_rate, verdict)
    if not eligible:
        verdict.headline = _nothing_left(verdict)
        return verdict
    best = max(eligible, key=lambda a: a.quality)
    verdict.best = best.name
    verdict.reasons.append(f"Best {metric}: {best.name} at {best.quality:.3f}"
                           + (f" (95% CI {best.low:.3f}-{best.high:.3f})." if best.low is not None else "."))
    verdict.comparisons = compare_to_best(eligible, best, tests, alpha)
    status = {c.arm: c.status for c in verdict.comparisons}
    verdict.reasons += [_comparison_reason(c, margin) for c in verdict.comparisons]
    if quality_bar is not None:
        qualifying = [a for a in eligible if a.quality >= quality_bar]
        verdict.reasons.append(f"{len(qualifying)} arm(s) reach the quality bar {metric} >= {quality_bar:g}"
                               + (f": {', '.join(a.name for a in qualifying)}." if qualifying else "."))
    else:
        qualifying = [a for a in eligible if a is best or status[a.name] == "equivalent"]
    verdict.qualifying = [a.name for a in qualifying]
    if not qualifying:
        verdict.headline = (f"No arm reaches the quality bar ({metric} >= {quality_bar:g}); the best, {best.name}, "
                            f"scores {best.quality:.3f}.")
        return verdict
    chosen = _cheapest(qualifying, verdict.reasons, volume)
    verdict.recommended = chosen.name
    contenders = [] if quality_bar is not None else [
        a for a in eligible if status.get(a.name) == "inconclusive" and pick(list(qualifying) + [a])[0] is a]
    if contenders:
        verdict.headline = _probably(chosen, best, contenders, verdict.comparisons, metric, margin)
    else:
        verdict.headline = _headline(chosen, best, eligible, status, verdict.comparisons, metric, margin,
                                     quality_bar, _tuned_out(candidates, verdict))
    return verdict


def _nothing_left(verdict: Verdict) -> str:
    """The headline when no arm is in the running: failures and gates are told apart."""
    if not verdict.gated:
        return "No verdict: every arm failed."
    failed = len(verdict.excluded) - len(verdict.gated)
    tail = f"; {failed} failed" if failed else ""
    return (f"No verdict: no arm meets the gates of evaluation.gates ({len(verdict.gated)} out by a gate{tail}). "
            "Loosen a gate only if the product can accept it.")


def _tuned_out(candidates: Sequence[Candidate], verdict: Verdict) -> str:
    """Why each fine-tuned arm that ran is out (a gate, a failure): when none is left, the headline says so
    rather than "no fine-tuned arm was run"."""
    out = [a.name for a in candidates if a.type == "finetune" and a.name in verdict.excluded]
    return " ".join(f"The fine-tuned {name} is out: {verdict.excluded[name]}." for name in out)


def pick(qualifying: Sequence[Candidate]) -> tuple[Candidate, list[Candidate]]:
    """(the chosen arm, the arms whose cost equals the cheapest within COST_TOLERANCE): cost, then no
    training, then p50 latency, then quality. An unknown cost never beats a known one."""
    known = [a.cost_per_1k_usd for a in qualifying if a.cost_per_1k_usd is not None]
    if not known:
        pool = list(qualifying)
    else:
        floor = min(known)
        pool = [a for a in qualifying if a.cost_per_1k_usd is not None
                and a.cost_per_1k_usd <= floor * (1 + COST_TOLERANCE) + 1e-12]
    return min(pool, key=lambda a: (a.needs_training, a.latency_p50_s, -a.quality)), pool


def _cheapest(qualifying: Sequence[Candidate], reasons: list[str], volume: float | None) -> Candidate:
    chosen, pool = pick(qualifying)
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


def _probably(chosen: Candidate, best: Candidate, contenders: Sequence[Candidate],
              comparisons: Sequence[Comparison], metric: str, margin: float) -> str:
    """The headline when the choice rests on a pair the test set cannot yet tell apart."""
    by_arm = {c.arm: c for c in comparisons}
    parts = []
    for arm in contenders:
        c = by_arm[arm.name]
        power = c.power or {}
        need = power.get("examples_for_margin")
        settle = (f", about {need:,} test examples would resolve a difference of {margin:g}" if need else "")
        parts.append(f"{arm.name} ({metric} {arm.quality:.3f} vs {best.quality:.3f}{_interval(c)}{settle})")
    names = " or ".join(a.name for a in contenders)
    return (f"Probably {chosen.name}, but the test set cannot yet tell {best.name} from {names}: "
            f"{'; '.join(parts)}. {names} would be chosen if shown equivalent within ±{margin:g}, being cheaper "
            "or faster.")


def _headline(chosen: Candidate, best: Candidate, eligible: Sequence[Candidate], status: Mapping[str, str],
              comparisons: Sequence[Comparison], metric: str, margin: float, quality_bar: float | None,
              tuned_out: str = "") -> str:
    adjusted = {c.arm: c.p_adjusted for c in comparisons}
    tuned = [a for a in eligible if a.type == "finetune"]
    if chosen.type == "finetune":
        return _fine_tune(chosen, best, eligible, status, adjusted, metric, margin)
    if not tuned:
        standing = ("reaches the quality bar" if quality_bar is not None else
                    "has the best quality" if chosen is best else f"is equivalent to the best, {best.name}, within "
                                                                  f"±{margin:g}")
        ending = f"no fine-tuned arm is left in the running. {tuned_out}" if tuned_out else "no fine-tuned arm was run."
        return f"Use {chosen.name}: it {standing} ({metric} {chosen.quality:.3f}) at the lowest cost; {ending}"
    top = max(tuned, key=lambda a: a.quality)
    p = f", adjusted p={adjusted[top.name]:.3g}" if top.name in adjusted else ""
    figures = f"{metric} {chosen.quality:.3f} vs {top.quality:.3f}{p}"
    if quality_bar is not None:
        if top.quality >= quality_bar:
            return (f"Don't fine-tune: use {chosen.name}. Like the fine-tuned {top.name} it reaches the quality bar "
                    f"({figures}), and it costs less to run.")
        return f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} does not reach the quality bar ({figures})."
    if top is best:
        return (f"Don't fine-tune: use {chosen.name}. It is equivalent to the fine-tuned {top.name} within ±{margin:g} "
                f"({figures}) and costs less to run.")
    if status[top.name] == "equivalent":
        return (f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} is equivalent to "
                f"{'it' if chosen is best else best.name} within ±{margin:g} ({figures}) but costs more to run.")
    if status[top.name] == "worse":
        return (f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} is significantly worse than "
                f"{best.name} ({figures}).")
    return (f"Don't fine-tune: use {chosen.name}. The fine-tuned {top.name} scores lower ({figures}; not significant, "
            f"not shown equivalent) and would not win the cost step even if it were (it costs more, needs training "
            f"or is slower).")


def _fine_tune(chosen: Candidate, best: Candidate, eligible: Sequence[Candidate], status: Mapping[str, str],
               adjusted: Mapping[str, float], metric: str, margin: float) -> str:
    others = [a for a in eligible if a.type != "finetune"]
    if not others:
        return (f"Fine-tune: {chosen.name} ({metric} {chosen.quality:.3f}); only fine-tuned arms finished, so "
                "nothing untrained was compared.")
    rival = max(others, key=lambda a: a.quality)
    figures = f"{metric} {chosen.quality:.3f} vs {rival.quality:.3f}"
    if chosen is best and status[rival.name] == "worse":
        return (f"Fine-tune: {chosen.name} is significantly better than the best alternative, {rival.name} "
                f"({figures}, adjusted p={adjusted[rival.name]:.3g}).")
    if chosen is best and status[rival.name] == "inconclusive":
        return (f"Fine-tune: {chosen.name} has the best {metric} ({figures} for the best alternative, {rival.name}; "
                f"not yet significant), and {rival.name} would not win the cost step even if shown equivalent.")
    if chosen is not best and rival is not best:
        return (f"Fine-tune: {chosen.name} is equivalent to the best arm, the fine-tuned {best.name}, within "
                f"±{margin:g} on {metric} ({chosen.quality:.3f} vs {best.quality:.3f}) and is cheaper or faster to serve.")
    return (f"Fine-tune: {chosen.name} matches the best alternative, {rival.name}, within ±{margin:g} on {metric} "
            f"({chosen.quality:.3f} vs {rival.quality:.3f}) and is cheaper or faster to serve.")
