"""Few-shot: the same k training exemplars (label-balanced for classification) in front of every test input."""

from __future__ import annotations

from tunewise.arms.context import ArmContext
from tunewise.arms.exemplars import ExemplarPool
from tunewise.arms.prompted import local_backend, run_prompted
from tunewise.config import FewShotArm
from tunewise.schema import Prediction


def run(arm: FewShotArm, ctx: ArmContext, max_new_tokens: int) -> list[Prediction]:
    shots = ExemplarPool(ctx.train, ctx.test).balanced(arm.k, ctx.seed, labelled=bool(ctx.task.labels))
    backend = local_backend(arm, ctx, max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots, arm.prompt), backend)
