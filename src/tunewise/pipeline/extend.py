"""`tunewise run --resume RUN --extend`: plan the next look of a run whose verdict is not yet resolved.

Glue only. From the run's results.json (its latest look) read at that look's spent level (evaluate/sequential.py),
the arms still in contention are found; if any is inconclusive against the best and the frozen test split has
examples left, the next look is written to extend.json: a seeded, stratified batch of the unused test
examples, as many as evaluation.budget allows (examples, or minutes estimated from the arms' measured compute
seconds per example), the arms to score on them (cheapest first), and the look's level. `run_experiment` then
scores those arms on the extra examples (finished predictions are kept) and writes the look's evidence. When
the decision is resolved, the split is used up or the budget allows nothing, nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.config import Experiment
from tunewise.data.split import stratified_subset
from tunewise.evaluate.sequential import contention, extended_test, look_levels, read_looks, spent, write_looks
from tunewise.pipeline.inputs import ExperimentError
from tunewise.schema import Example


@dataclass(frozen=True)
class Plan:
    """What one --extend call decided: a new look (`look` set), or why there is none."""

    look: int | None
    message: str


def _read(run_dir: Path, name: str, fix: str) -> Any:
    path = run_dir / name
    if not path.is_file():
        raise ExperimentError(f"--extend {run_dir}: no {name}; {fix}")
    return json.loads(path.read_text(encoding="utf-8"))


def _split(run_dir: Path) -> list[Example]:
    from tunewise.data.formats import read_examples

    path = run_dir / "splits" / "test.jsonl"
    if not path.is_file():
        raise ExperimentError(f"--extend {run_dir}: no frozen test split; run `tunewise run` first")
    return read_examples(path).examples


def _batch(experiment: Experiment, evaluated: int, left: int, results: dict[str, Any], contenders: list[str]) -> int:
    """How many extra examples the budget allows: evaluation.budget.examples (default: as many as evaluated
    now), fewer when the contenders' measured seconds per example would overrun evaluation.budget.minutes."""
    budget = experiment.evaluation.budget
    size = min(budget.examples or evaluated, left)
    if budget.minutes is not None:
        per_example = sum(results["arms"][n]["latency"].get("compute_s_per_1k") or 0.0 for n in contenders) / 1000
        if per_example > 0:
            size = min(size, int(budget.minutes * 60 / per_example))
    return max(size, 0)


def _cheapest_first(results: dict[str, Any], names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: results["arms"][n]["latency"].get("compute_s_per_1k") or 0.0)


def plan_extension(experiment: Experiment, run_dir: Path) -> Plan:
    """Write the next look into extend.json, or say why there is none (nothing is written then)."""
    from tunewise.pipeline.experiment import same_config
    from tunewise.store.runs import open_run

    run = open_run(run_dir)
    if not same_config(run.manifest.get("config"), experiment.model_dump(mode="json")):
        raise ExperimentError(f"--resume {run_dir}: that run used a different configuration; extend it with the same "
                              "experiment file and --set overrides (only evaluation.budget may differ)")
    results = _read(run_dir, "results.json", "run `tunewise run --resume` to finish it first")
    split = _split(run_dir)
    base = stratified_subset(split, experiment.split.max_test, experiment.split.seed,
                             experiment.task.type == "classify")
    looks = read_looks(run_dir)
    current = extended_test(base, split, looks)
    alpha = experiment.evaluation.alpha
    if looks is None:
        looks = {"split_size": len(split), "looks": [
            {"look": 1, "test_examples": len(current), "alpha": spent(alpha, len(current) / len(split)),
             "spent": spent(alpha, len(current) / len(split)), "contenders": list(results["arms"]), "settled": {}}]}
    last = looks["looks"][-1]
    contenders, settled_now, resolved = contention(results, last["alpha"], last["look"])
    if resolved:
        return Plan(None, f"Nothing to extend: at look {last['look']} ({len(current):,} test examples, level "
                          f"{last['alpha']:.3g}) no arm in contention is inconclusive against the best.")
    evaluated = {e.id for e in current}
    left = [e for e in split if e.id not in evaluated]
    if not left:
        return Plan(None, f"Nothing to extend: all {len(split):,} examples of the frozen test split are scored; "
                          "what is still inconclusive stays so at this test size.")
    size = _batch(experiment, len(current), len(left), results, contenders)
    if size == 0:
        return Plan(None, "Nothing to extend: evaluation.budget.minutes does not cover one more example for the "
                          f"arms in contention ({', '.join(contenders)}). Fix: raise it")
    extra = stratified_subset(left, size, experiment.split.seed + last["look"], experiment.task.type == "classify")
    total = len(current) + len(extra)
    sizes = [look["test_examples"] for look in looks["looks"]] + [total]
    settled = dict(last["settled"]) | {name: {"reason": why, "record": results["arms"][name]}
                                       for name, why in settled_now.items() if name not in last["settled"]}
    looks["looks"].append({"look": last["look"] + 1, "test_examples": total,
                           "alpha": look_levels(alpha, sizes, len(split))[-1], "spent": spent(alpha, total / len(split)),
                           "contenders": _cheapest_first(results, contenders), "settled": settled,
                           "extra_ids": [e.id for e in extra]})
    write_looks(run_dir, looks)
    return Plan(last["look"] + 1, f"Look {last['look'] + 1}: {len(extra):,} more test examples ({total:,} of "
                                  f"{len(split):,}) for {', '.join(_cheapest_first(results, contenders))}.")
