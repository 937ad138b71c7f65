"""Which module implements each arm `type`, and dispatch to the interface every arm module provides
(see arms/base.py). Adding an arm = one new file in arms/ and one entry in `BUILT_IN` here.

The experiment's config (config.py) builds its `arms` union from `config_classes()` and rebuilds it when an
arm is registered later (a plug-in, or a test's toy arm). Knows nothing about what any arm does.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tunewise.arms import classical, ensemble, few_shot, finetune, prompt_search, remote, retrieval, zero_shot
from tunewise.arms.base import local_cost_per_1k

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction
    from tunewise.settings import ArmConfig, CostConfig

BUILT_IN: tuple[ModuleType, ...] = (zero_shot, few_shot, retrieval, prompt_search, classical, remote, ensemble,
                                     finetune)

_modules: dict[str, ModuleType] = {}
_on_change: list[Callable[[], None]] = []


def type_of(module: ModuleType) -> str:
    """The `type` literal of a module's config class."""
    (name,) = typing.get_args(module.Config.model_fields["type"].annotation)
    return name


def register(module: ModuleType) -> None:
    """Make `module` the arm of its config's `type` (replacing any earlier one) and rebuild the config union."""
    for needed in ("Config", "run"):
        if not hasattr(module, needed):
            raise TypeError(f"arm module {module.__name__} has no `{needed}`; see tunewise.arms.base")
    _modules[type_of(module)] = module
    for listener in _on_change:
        listener()


def unregister(type_name: str) -> None:
    """Remove an arm registered at run time (built-in arms stay)."""
    if type_name in {type_of(m) for m in BUILT_IN}:
        raise ValueError(f"{type_name!r} is a built-in arm")
    _modules.pop(type_name, None)
    for listener in _on_change:
        listener()


def on_change(listener: Callable[[], None]) -> None:
    _on_change.append(listener)


def types() -> list[str]:
    return list(_modules)


def config_classes() -> tuple[type, ...]:
    return tuple(module.Config for module in _modules.values())


def module_of(arm: ArmConfig | str) -> ModuleType:
    name = arm if isinstance(arm, str) else arm.type  # type: ignore[attr-defined]
    try:
        return _modules[name]
    except KeyError:
        raise ValueError(f"unknown arm type {name!r}; known: {', '.join(_modules)}") from None


# ---------------------------------------------------------------- the interface, with its defaults


def run(arm: ArmConfig, ctx: ArmContext) -> list[Prediction]:
    return module_of(arm).run(arm, ctx)


def cost_per_1k(arm: ArmConfig, predictions: Sequence[Prediction], cost: CostConfig,
                known: Mapping[str, float | None]) -> float | None:
    return getattr(module_of(arm), "cost_per_1k", local_cost_per_1k)(arm, predictions, cost, known)


def train_examples(arm: ArmConfig, available: int) -> int | None:
    """Training examples an arm that records no training used (exemplars, an index), out of `available`;
    None when it does not say. Arms that train record their own count in training/<arm>.json."""
    hook = getattr(module_of(arm), "train_examples", None)
    return hook(arm, available) if hook is not None else None


def check(arm: ArmConfig, experiment: Any) -> None:
    hook = getattr(module_of(arm), "check", None)
    if hook is not None:
        hook(arm, experiment)


def resolve_paths(arm: ArmConfig, folder: Path) -> list[tuple[list[str], str]]:
    hook = getattr(module_of(arm), "resolve_paths", None)
    return hook(arm, folder) if hook is not None else []


def data_files(arm: ArmConfig) -> list[Path]:
    hook = getattr(module_of(arm), "data_files", None)
    return hook(arm) if hook is not None else []


def launch_problem(arm: ArmConfig) -> str | None:
    hook = getattr(module_of(arm), "launch_problem", None)
    return hook(arm) if hook is not None else f"a {arm.type} arm runs in one process"  # type: ignore[attr-defined]


def runs_last(arm: ArmConfig) -> bool:
    return bool(getattr(module_of(arm), "RUNS_LAST", False))


def trains(arm: ArmConfig) -> bool:
    return bool(getattr(module_of(arm), "TRAINS", False))


def serve(arm: ArmConfig, run: Any) -> Any | None:
    """The arm's served model, or None when tunewise does not serve it (`not_served` says why)."""
    hook = getattr(module_of(arm), "serve", None)
    return hook(arm, run) if hook is not None else None


def servable(arm: ArmConfig) -> bool:
    return hasattr(module_of(arm), "serve")


def not_served(arm: ArmConfig) -> str:
    hook = getattr(module_of(arm), "not_served", None)
    return hook(arm) if hook is not None else f"a {arm.type} arm is not served by tunewise"  # type: ignore[attr-defined]


for _module in BUILT_IN:
    register(_module)
