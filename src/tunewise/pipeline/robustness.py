"""The robustness stage of `tunewise run`: every arm again on perturbed copies of (part of) the test subset.

Glue only. The perturbed examples keep their ids, so each arm runs through its usual code path (the same
dispatch, the answer cache, resumable prediction files) with predictions in `predictions/<arm>~<name>.jsonl`.
Ensembles are recomputed from their members' predictions on the same perturbed copy. For each arm and
perturbation, robustness.json holds the primary metric on the perturbed copy (`score`), the same metric on
the same examples unperturbed (`clean_score`), their difference (`drop` = clean - perturbed) and `n`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunewise.arms.context import ArmContext, ProgressFactory
from tunewise.evaluate.metrics import arm_metrics
from tunewise.evaluate.robustness import Perturbation, perturb
from tunewise.schema import Example, Prediction
from tunewise.settings import PerturbationConfig, RobustnessConfig
from tunewise.store.atomic import atomic_write_text

RunArm = Callable[[Any, ArmContext, dict[str, list[Prediction]]], list[Prediction]]
FILE = "robustness.json"


def perturbation(config: PerturbationConfig) -> Perturbation:
    return Perturbation(config.kind, config.rate, config.mode, config.keep, config.name)


def run_robustness(config: RobustnessConfig, arms: list[Any], ctx: ArmContext, subset: list[Example],
                   clean: dict[str, list[Prediction]], metric: str, run_arm: RunArm,
                   log: Callable[[str], None]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Run `arms` (in order, ensembles after their members) on each perturbed copy of `subset`; only arms
    with clean predictions take part. Writes robustness.json atomically and returns what it holds."""
    ids = {e.id for e in subset}
    clean_scores = {name: _metric([p for p in predictions if p.id in ids], ctx, metric)
                    for name, predictions in clean.items()}
    result: dict[str, dict[str, dict[str, float | int]]] = {name: {} for name in clean}
    for spec in config.perturbations:
        damage = perturbation(spec)
        # arms' informational lines (the classical fit, ...) were printed on the clean run; failures are logged below
        copy = replace(ctx, test=perturb(subset, damage, ctx.seed), store_suffix=f"~{damage.name}",
                       progress=_labelled(ctx.progress, f"~{damage.name}"), log=lambda message: None)
        done: dict[str, list[Prediction]] = {}
        for arm in arms:
            if arm.name not in clean:
                continue
            try:
                done[arm.name] = run_arm(arm, copy, done)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # the clean run of this arm worked; one perturbation failing is reported
                log(f"robustness: arm {arm.name} on {damage.name} failed: {type(exc).__name__}: {exc}")
                continue
            score = _metric(done[arm.name], ctx, metric)
            result[arm.name][damage.name] = {"score": score, "clean_score": clean_scores[arm.name],
                                             "drop": clean_scores[arm.name] - score, "n": len(done[arm.name])}
    write(ctx.run_dir, result)
    return result


def _labelled(progress: ProgressFactory, suffix: str) -> ProgressFactory:
    return lambda description, total: progress(f"{description}{suffix}", total)


def _metric(predictions: list[Prediction], ctx: ArmContext, metric: str) -> float:
    return float(arm_metrics(predictions, ctx.task).get(metric, 0.0)) if predictions else 0.0


def write(run_dir: Path, result: dict[str, Any]) -> Path:
    path = run_dir / FILE
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path
