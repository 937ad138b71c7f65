"""A test arm with a chosen accuracy and no model: right on a seeded share of examples, else a wrong label.

It resumes like a real arm (finished predictions are kept, only new test examples are answered) and counts
what it answered in `ANSWERED`, so tests of `--extend` can see which arms scored which extra examples.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field

from tunewise.schema import Prediction
from tunewise.settings import ArmConfig

ANSWERED: dict[str, list[str]] = {}


class OracleArm(ArmConfig):
    type: Literal["oracle"]
    accuracy: float = Field(0.8, ge=0, le=1)
    seconds: float = Field(0.01, ge=0)


Config = OracleArm


def run(arm: OracleArm, ctx: Any) -> list[Prediction]:
    store = ctx.store(arm.name)
    done = store.done
    labels = ctx.task.labels
    new = []
    for example in ctx.test:
        if example.id in done:
            continue
        rng = random.Random(f"{arm.name}/{example.id}")
        answer = example.label if rng.random() < arm.accuracy else rng.choice([x for x in labels if x != example.label])
        new.append(Prediction(id=example.id, arm=arm.name, input=example.input, reference=example.label,
                              prediction=answer, raw=answer, latency_s=arm.seconds))
    store.append(new)
    ANSWERED.setdefault(arm.name, []).extend(p.id for p in new)
    return store.ordered([e.id for e in ctx.test])
