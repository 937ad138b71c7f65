"""Zero-shot: the model with the task's instructions and nothing else. The baseline every other arm must beat."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tunewise.settings import LocalArmConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction


class ZeroShotArm(LocalArmConfig):
    """The model with instructions only."""

    type: Literal["zero_shot"]


Config = ZeroShotArm


def train_examples(arm: ZeroShotArm, available: int) -> int:
    return 0


def run(arm: ZeroShotArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.arms.prompted import local_backend, run_prompted

    backend = local_backend(arm, ctx, ctx.max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, (), arm.prompt), backend)


def serve(arm: ZeroShotArm, run: Any) -> Any:
    return run.prompted(arm, lambda text: run.task.messages(run.request(text), (), arm.prompt))
