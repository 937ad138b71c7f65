"""The arm interface: what an arm module provides, and the defaults arms share.

An arm is one way of doing the task. Its module in `arms/` (registered in `arms/registry.py`) provides:

- `Config`: its pydantic config class, a subclass of `settings.ArmConfig` with `type: Literal["<type>"]`; the
  experiment's `arms` list is a discriminated union on `type` built from the registry.
- `run(arm, ctx) -> list[Prediction]`: one prediction per `ctx.test` example, written through `ctx.store`.

and, where the default does not fit:

- `cost_per_1k(arm, predictions, cost, known) -> float | None`: USD per 1,000 requests (default:
  `local_cost_per_1k`, measured seconds x the machine's hourly price). `known` holds the arms costed so far.
- `check(arm, experiment) -> None`: raise ValueError when the arm does not fit the experiment (default: fits).
- `resolve_paths(arm, folder) -> list[tuple[list[str], str]]`: make relative paths absolute against the
  experiment file's folder; return (location under the arm, message) for each missing file (default: none).
- `data_files(arm) -> list[Path]`: extra data files recorded, with hashes, in the run manifest (default: none).
- `launch_problem(arm) -> str | None`: why the arm cannot run under torchrun (default: it runs in one process).
- `serve(arm, run) -> ServedModel`: how `tunewise serve RUN` answers with the arm exactly as it was evaluated
  (`run` is serve.models.RunServing); without it the arm is not served and `not_served(arm)` says why.
- `RUNS_LAST = True`: the arm reads other arms' predictions (`ctx.finished`), so it runs after them.
- `TRAINS = True`: `tunewise train` trains it.

Knows nothing about any particular arm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunewise.schema import Prediction
    from tunewise.settings import ArmConfig, CostConfig


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM after writing a checkpoint; `tunewise run --resume` continues from it."""

    run_path = None


def local_cost_per_1k(arm: ArmConfig, predictions: Sequence[Prediction], cost: CostConfig,
                      known: Mapping[str, float | None]) -> float | None:
    """An arm answered on this machine: its measured seconds per request x the machine's hourly price."""
    from tunewise.evaluate.cost import cost_per_1k_requests
    from tunewise.evaluate.hardware_price import resolve_hourly

    return cost_per_1k_requests(predictions, hourly_usd=resolve_hourly(cost).usd_per_hour)


def priced_cost_per_1k(model: str, predictions: Sequence[Prediction], cost: CostConfig) -> float | None:
    """An arm answered by an endpoint: its token usage x the dated price of `model` (None: no price given)."""
    from tunewise.evaluate.cost import cost_per_1k_requests

    price = cost.remote_prices.get(model)
    return None if price is None else cost_per_1k_requests(predictions, price=price)
