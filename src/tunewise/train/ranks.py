"""Which process this is under `torchrun` / `accelerate launch`, and how the processes agree on one value.

`tunewise train` launched with N processes must behave like one run: one run folder, one frozen split, one
export. Process 0 decides (creates the run folder, draws the split, checks whether an arm is already
trained) and hands the result to the others, which only train. When process 0 fails while deciding, the
others receive the error instead of a value and stop too, rather than waiting forever for a broadcast that
never comes. Without a launcher (no WORLD_SIZE, or 1) every function here is a plain call.

The process group is opened through accelerate's `PartialState`, exactly as transformers' Trainer opens it,
so the Trainer later finds it ready (gloo on CPUs, nccl on GPUs). Knows nothing about runs or training.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")
COLLECTIVE_TIMEOUT = timedelta(hours=12)


class RankError(RuntimeError):
    """Process 0 failed while deciding something every process needed; the message is process 0's error."""


@dataclass(frozen=True, slots=True)
class Ranks:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched() -> Ranks:
    """This process's rank and the number of processes, as the launcher's environment says."""
    return Ranks(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def start() -> Ranks:
    """Join the launcher's process group (once); a single process does nothing."""
    ranks = launched()
    if ranks.distributed:
        from accelerate import PartialState

        from tunewise.models.precision import resolve_device

        # the same device choice train_sft's Trainer makes. The timeout is long because with several arms the
        # other processes wait at the next arm's first decision while process 0 evaluates the last one.
        PartialState(cpu=resolve_device("auto").type == "cpu", timeout=COLLECTIVE_TIMEOUT)
    return ranks


def decided_by_main(ranks: Ranks, decide: Callable[[], T]) -> T:
    """Process 0 computes `decide()`; every process returns its value. Process 0's exception is raised on
    process 0 as it is and on the others as RankError with its message."""
    if not ranks.distributed:
        return decide()
    from accelerate.utils import broadcast_object_list

    outcome: list[object] = [None]
    error: BaseException | None = None
    if ranks.main:
        try:
            outcome[0] = ("ok", decide())
        except BaseException as exc:  # every kind must reach the other processes, or they wait forever
            error = exc
            outcome[0] = ("error", f"{type(exc).__name__}: {exc}")
    broadcast_object_list(outcome, from_process=0)
    if error is not None:
        raise error
    kind, value = outcome[0]  # type: ignore[misc]
    if kind == "error":
        raise RankError(f"process 0 failed: {value}")
    return value  # type: ignore[return-value]
