"""Ensemble: a majority vote over other arms' predictions for the same test example.

Ties go to the member listed first, so the result is deterministic; a member's failed prediction (empty)
does not vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.settings import ArmConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction
    from tunewise.settings import CostConfig

RUNS_LAST = True


class EnsembleArm(ArmConfig):
    """Majority vote of other arms' predictions (ties go to the first member listed)."""

    type: Literal["ensemble"]
    members: list[str] = Field(min_length=2, description="Names of the arms to combine.")


Config = EnsembleArm


def check(arm: EnsembleArm, experiment: Any) -> None:
    names = [a.name for a in experiment.arms]
    unknown = [m for m in arm.members if m not in names or m == arm.name]
    if unknown:
        raise ValueError(f"ensemble {arm.name!r} names unknown arms {unknown}; known: {names}")


def cost_per_1k(arm: EnsembleArm, predictions: Sequence[Prediction], cost: CostConfig,
                known: Mapping[str, float | None]) -> float | None:
    """Every member answers every request: the members' costs added (unknown if any member's is)."""
    members = [known.get(m) for m in arm.members]
    return None if any(c is None for c in members) else sum(members)


def not_served(arm: EnsembleArm) -> str:
    return "an ensemble arm is not served by tunewise"


def run(arm: EnsembleArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.schema import Prediction

    members = ctx.finished
    missing = [m for m in arm.members if m not in members]
    if missing:
        raise ValueError(f"ensemble {arm.name!r}: member(s) {missing} produced no predictions")
    by_member = {name: {p.id: p for p in members[name]} for name in arm.members}
    store = ctx.store(arm.name)
    out = []
    for example in ctx.test:
        votes = [by_member[name][example.id].prediction for name in arm.members
                 if example.id in by_member[name] and by_member[name][example.id].prediction]
        counts = Counter(votes)
        winner = max(votes, key=lambda v: (counts[v], -votes.index(v))) if votes else ""
        first = next(by_member[name][example.id] for name in arm.members if example.id in by_member[name])
        out.append(Prediction(id=example.id, arm=arm.name, input=example.input, reference=first.reference,
                              prediction=winner, raw=" | ".join(votes),
                              latency_s=sum(by_member[n][example.id].latency_s for n in arm.members
                                            if example.id in by_member[n]),
                              scores={v: c / len(votes) for v, c in counts.items()} if votes else None))
    store.path.unlink(missing_ok=True)  # derived from members each time: cheap, and never stale
    store = ctx.store(arm.name)
    store.append(out)
    if not ctx.store_suffix and ctx.ranks.main:
        from tunewise.arms.latency_probe import combine_probes

        combine_probes(ctx.run_dir, arm.name, arm.members)  # it asks every member, one after the other
    return out
