"""Zero-shot: the model with the task's instructions and nothing else. The baseline every other arm must beat."""

from __future__ import annotations

from tunewise.arms.context import ArmContext
from tunewise.arms.prompted import local_backend, run_prompted
from tunewise.config import ZeroShotArm
from tunewise.schema import Prediction


def run(arm: ZeroShotArm, ctx: ArmContext, max_new_tokens: int) -> list[Prediction]:
    backend = local_backend(arm, ctx, max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, (), arm.prompt), backend)
