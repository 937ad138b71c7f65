"""Ensemble: a majority vote over other arms' predictions for the same test example.

Ties go to the member listed first, so the result is deterministic; a member's failed prediction (empty)
does not vote.
"""

from __future__ import annotations

from collections import Counter

from tunewise.arms.context import ArmContext
from tunewise.config import EnsembleArm
from tunewise.schema import Prediction


def run(arm: EnsembleArm, ctx: ArmContext, members: dict[str, list[Prediction]]) -> list[Prediction]:
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
    return out
