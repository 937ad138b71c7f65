"""A toy arm that lives outside the package: the most common training label for every input.

It exists to show (tests/test_arm_plugin.py) that an arm is one module plus one registration: nothing else in
tunewise is edited for it to run in an experiment, be costed and judged by the evidence, and be served.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Literal

from tunewise.schema import Example, Prediction
from tunewise.settings import ArmConfig


class MajorityClassArm(ArmConfig):
    """Always answers the training split's most common label."""

    type: Literal["majority_class"]


Config = MajorityClassArm


class Majority:
    """Scores 1.0 for the majority label, 0.0 for the others (ties: the first label in sorted order)."""

    def __init__(self, train: list[Example]) -> None:
        counts = Counter(e.label for e in train)
        self.labels = sorted(counts)
        self.label = max(self.labels, key=lambda label: counts[label])

    def predict_scores(self, examples: list[Example]) -> list[dict[str, float]]:
        return [{label: float(label == self.label) for label in self.labels} for _ in examples]


def run(arm: MajorityClassArm, ctx: Any) -> list[Prediction]:
    start = time.perf_counter()
    model = Majority(ctx.train)
    each = (time.perf_counter() - start) / max(len(ctx.test), 1)
    predictions = [Prediction(id=e.id, arm=arm.name, input=e.input, reference=e.output.strip(),
                              prediction=model.label, raw=model.label, latency_s=each,
                              scores=model.predict_scores([e])[0]) for e in ctx.test]
    store = ctx.store(arm.name)
    store.path.unlink(missing_ok=True)
    ctx.store(arm.name).append(predictions)
    return predictions


def serve(arm: MajorityClassArm, run: Any) -> Any:
    model = Majority(run.train)
    return run.scorer(arm, model, {"majority": model.label}, f"majority class {model.label!r}")
