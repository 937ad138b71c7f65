"""Few-shot: the same k training exemplars (label-balanced for classification) in front of every test input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.settings import LocalArmConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction


class FewShotArm(LocalArmConfig):
    """k training examples as exemplars (label-balanced for classification; fixed for every test input)."""

    type: Literal["few_shot"]
    k: int = Field(4, ge=1, le=64, description="Number of exemplars.")


Config = FewShotArm


def train_examples(arm: FewShotArm, available: int) -> int:
    return min(arm.k, available)  # the same k exemplars in every prompt


def run(arm: FewShotArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.arms.exemplars import ExemplarPool
    from tunewise.arms.prompted import local_backend, run_prompted

    pool = ExemplarPool(ctx.train, ctx.test, drop_leaked=ctx.allow_leakage)
    shots = pool.balanced(arm.k, ctx.seed, labelled=bool(ctx.task.labels))
    backend = local_backend(arm, ctx, ctx.max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots, arm.prompt), backend)


def serve(arm: FewShotArm, run: Any) -> Any:
    """The same seeded, label-balanced exemplars as in evaluation (the pool already passed the leakage check)."""
    from tunewise.arms.exemplars import ExemplarPool

    shots = ExemplarPool(run.train, []).balanced(arm.k, run.seed, labelled=bool(run.task.labels))
    return run.prompted(arm, lambda text: run.task.messages(run.request(text), shots, arm.prompt))
