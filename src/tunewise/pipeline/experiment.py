"""`tunewise run`: one frozen split, every arm on it, predictions and metrics in the run folder.

Glue only. The order is fixed: read the data (refusing files with errors), freeze or reload the split,
build the task, run each arm (ensembles last), then the evidence (evaluate/evidence.py: metrics with
intervals, paired tests, cost, verdict) into results.json, metrics.json and the report. A resumed run (`--resume RUN`) reloads the
frozen split and skips finished predictions; the answer cache makes even a brand-new run of the same
experiment do no repeated model work. One arm failing (an endpoint down) is recorded and the others go on.
"""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.arms.context import ArmContext, ProgressFactory, no_progress
from tunewise.arms.finetune import TrainingInterrupted
from tunewise.config import (ClassicalArm, DataConfig, EnsembleArm, Experiment, FewShotArm, FinetuneArm, RemoteArm,
                             RetrievalArm, SplitConfig, ZeroShotArm)
from tunewise.data.formats import Dataset, read_examples
from tunewise.data.shapes import ColumnMapping
from tunewise.data.split import split_examples, write_splits
from tunewise.evaluate.evidence import build_results, metrics_summary
from tunewise.store.answer_cache import PredictionCache
from tunewise.train.ranks import RankError, Ranks, decided_by_main, launched
from tunewise.report import write_report
from tunewise.store.runs import Run, create_run, open_run
from tunewise.schema import Example, Prediction
from tunewise.tasks import make_task


class ExperimentError(ValueError):
    """The experiment cannot run as configured (bad data, a mismatched resume); the message says what to do."""


@dataclass
class ExperimentResult:
    run: Run
    metrics: dict[str, dict[str, Any]]
    failures: dict[str, str] = field(default_factory=dict)
    primary_metric: str = "accuracy"
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    verdict: dict[str, Any] | None = None
    robustness: dict[str, dict[str, dict[str, float | int]]] = field(default_factory=dict)


def data_path(experiment: Experiment) -> Path:
    return resolve_data_path(experiment.data.path)


def resolve_data_path(path: Path, field: str = "data.path") -> Path:
    """A data file's real path (`bundled:bbc-news` is the bundled dataset, converted once)."""
    raw = str(path)
    if raw == "bundled:bbc-news":
        from tunewise.assets import bundled_dataset_path

        return bundled_dataset_path()
    if raw.startswith("bundled:"):
        raise ExperimentError(f"{field} {raw!r}: the only bundled dataset is bundled:bbc-news")
    return path


def read_data(path: Path, config: DataConfig, field: str = "data.path") -> Dataset:
    """Every example of a data file, refusing a file with errors (`field` names the setting in messages)."""
    mapping = ColumnMapping.parse([f"{k}={v}" for k, v in config.mapping.items()]) if config.mapping else None
    if not path.exists():
        raise ExperimentError(f"{field} {path}: no such file")
    data = read_examples(path, fmt=config.format, mapping=mapping)
    if data.error_lines or data.truncated_at or not data.examples:
        first = sorted(data.error_lines)[:5]
        raise ExperimentError(f"{path}: {len(data.error_lines):,} line(s) with errors (first: {first}); run "
                              f"`tunewise check {path}` to see them, and `--fix clean.jsonl` to drop them")
    return data


def frozen_split(folder: Path, examples: list[Example], cfg: SplitConfig) -> dict[str, list[Example]]:
    """Reload the split in `folder` if it exists (a resume), else make it and write it before anything uses it."""
    if (folder / "split.json").exists():
        return {name: read_examples(folder / f"{name}.jsonl").examples for name in ("train", "val", "test")}
    split = split_examples(examples, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           stratify=cfg.stratify)
    write_splits(split, folder)
    return {"train": list(split.train), "val": list(split.val), "test": list(split.test)}


def evaluation_subset(test: list[Example], max_test: int | None, seed: int, labelled: bool) -> list[Example]:
    """A seeded subset of the test split, proportional per label, in the split's order: same for every arm."""
    if max_test is None or max_test >= len(test):
        return test
    rng = random.Random(seed)
    if not labelled:
        keep = set(rng.sample(range(len(test)), max_test))
        return [e for i, e in enumerate(test) if i in keep]
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(test):
        by_label[example.label].append(i)
    quotas = {label: max(1, round(max_test * len(items) / len(test))) for label, items in sorted(by_label.items())}
    keep = set()
    for label, items in sorted(by_label.items()):
        keep.update(rng.sample(items, min(quotas[label], len(items))))
    return [e for i, e in enumerate(test) if i in keep]


def _order(arms: list[Any]) -> list[Any]:
    return [a for a in arms if not isinstance(a, EnsembleArm)] + [a for a in arms if isinstance(a, EnsembleArm)]


def _run_arm(arm: Any, ctx: ArmContext, experiment: Experiment, done: dict[str, list[Prediction]]) -> list[Prediction]:
    from tunewise.arms import classical, ensemble, few_shot, remote, retrieval, zero_shot

    budget = experiment.task.max_new_tokens
    if isinstance(arm, ZeroShotArm):
        return zero_shot.run(arm, ctx, budget)
    if isinstance(arm, FewShotArm):
        return few_shot.run(arm, ctx, budget)
    if isinstance(arm, RetrievalArm):
        return retrieval.run(arm, ctx, budget)
    if isinstance(arm, ClassicalArm):
        return classical.run(arm, ctx)
    if isinstance(arm, RemoteArm):
        return remote.run(arm, ctx)
    if isinstance(arm, FinetuneArm):
        from tunewise.arms import finetune

        return finetune.run(arm, ctx, budget, experiment.task.model_dump(mode="json"))
    missing = [m for m in arm.members if m not in done]
    if missing:
        raise ExperimentError(f"ensemble {arm.name!r}: member(s) {missing} produced no predictions")
    return ensemble.run(arm, ctx, done)


def start_or_resume(experiment: Experiment, resume: Path | None, command: list[str] | None = None) -> Run:
    config = experiment.model_dump(mode="json")
    if resume is None:
        return create_run(experiment.runs_dir, command=command or sys.argv, config=config,
                          data_files=[data_path(experiment), *task_data_paths(experiment)])
    run = open_run(resume)
    if run.manifest.get("config") != config:
        raise ExperimentError(f"--resume {resume}: that run used a different configuration; start a new run, or "
                              "resume with the same experiment file and --set overrides")
    return run


def task_data_paths(experiment: Experiment) -> list[Path]:
    """The data files of multi-task arms' extra tasks, recorded (with their hashes) in the manifest."""
    from tunewise.arms.multitask import task_data_path

    paths = [task_data_path(extra) for arm in experiment.arms if isinstance(arm, FinetuneArm)
             for extra in arm.tasks or []]
    return list(dict.fromkeys(paths))


def check_launchable(experiment: Experiment, ranks: Ranks) -> None:
    """Under torchrun / accelerate launch only lora/full training splits across processes; say so up front."""
    if not ranks.distributed:
        return
    problems = []
    for arm in experiment.arms:
        if not isinstance(arm, FinetuneArm) or arm.method == "classifier":
            problems.append(f"arm {arm.name!r} ({arm.type}{f' {arm.method}' if isinstance(arm, FinetuneArm) else ''})"
                            " runs in one process")
        elif arm.search is not None or arm.stages or arm.learning_curve:
            problems.append(f"arm {arm.name!r}: search, stages and learning_curve train in one process")
    if problems:
        raise ExperimentError(f"{ranks.world} processes were launched, but " + "; ".join(problems) + ". Fix: launch "
                              "`tunewise train --arm NAME` for lora/full arms only, or run the rest without torchrun")


def run_experiment(experiment: Experiment, *, resume: Path | None = None, progress: ProgressFactory = no_progress,
                   log: Callable[[str], None] = print, use_cache: bool = True,
                   ranks: Ranks | None = None) -> ExperimentResult:
    """Every arm on the frozen split, then the evidence. Under a launcher (`ranks.distributed`) process 0 owns
    the run folder and everything written to it; the other processes join the training and return empty
    metrics."""
    ranks = ranks or launched()
    check_launchable(experiment, ranks)
    started = time.perf_counter()
    path = data_path(experiment)
    data = read_data(path, experiment.data)

    def open_running() -> Run:
        run = start_or_resume(experiment, resume)
        run.update(status="running")
        return run

    run = decided_by_main(ranks, open_running)
    from tunewise.assets import cache_dir

    cache = PredictionCache(cache_dir() / "predictions.sqlite" if use_cache and ranks.main else None)
    failures: dict[str, str] = {}
    try:
        parts = decided_by_main(ranks, lambda: frozen_split(run.path / "splits", data.examples, experiment.split))
        task = make_task(experiment.task, parts["train"])
        test = evaluation_subset(parts["test"], experiment.split.max_test, experiment.split.seed, bool(task.labels))
        ctx = ArmContext(task=task, train=parts["train"], test=test, seed=experiment.split.seed, run_dir=run.path,
                         cache=cache, threads=experiment.threads, progress=progress, log=log, val=parts["val"],
                         ranks=ranks)
        done: dict[str, list[Prediction]] = {}
        for arm in _order(experiment.arms):
            try:
                done[arm.name] = _run_arm(arm, ctx, experiment, done)
            except (KeyboardInterrupt, SystemExit, TrainingInterrupted):
                raise
            except Exception as exc:  # one arm's failure (endpoint down, bad model id) must not lose the others
                if isinstance(exc, RankError):
                    raise
                if ranks.distributed:  # the other processes are inside the same training: all stop, none goes on
                    raise ExperimentError(f"arm {arm.name} failed: {type(exc).__name__}: {exc}") from exc
                failures[arm.name] = f"{type(exc).__name__}: {exc}"
                log(f"arm {arm.name} failed: {failures[arm.name]}")
        if not ranks.main:  # process 0 evaluates, writes the evidence and the report
            return ExperimentResult(run, {}, seconds=time.perf_counter() - started)
        robustness = _robustness(experiment, ctx, done, log)  # before the evidence, which reads robustness.json
        # the evidence: metrics with intervals, paired tests, cost, verdict; results.json, report.md/.html
        results = build_results(experiment, run.path, run.id, task, test, done, failures)
        summary = metrics_summary(results, failures)
        write_report(run.path, results, summary)
        metrics = summary["arms"]
        run.update(status="completed" if not failures else "failed", arms=sorted(done), failures=failures,
                   test_examples=len(test))
    except BaseException as exc:
        if isinstance(exc, TrainingInterrupted):
            exc.run_path = run.path
        if ranks.main:
            run.update(status="interrupted" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)) else "failed",
                       error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        cache.close()
    return ExperimentResult(run, metrics, failures, experiment.evaluation.primary_metric, cache.hits, cache.misses,
                            time.perf_counter() - started, results["verdict"], robustness)


def _robustness(experiment: Experiment, ctx: ArmContext, done: dict[str, list[Prediction]],
                log: Callable[[str], None]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Every arm that ran, again on perturbed copies of a seeded subset of the test examples (if configured)."""
    config = experiment.evaluation.robustness
    if not config.perturbations or not done:
        return {}
    from tunewise.pipeline.robustness import run_robustness

    subset = evaluation_subset(ctx.test, config.max_examples, experiment.split.seed, bool(ctx.task.labels))
    return run_robustness(config, _order(experiment.arms), ctx, subset, done, experiment.evaluation.primary_metric,
                          lambda arm, copy, members: _run_arm(arm, copy, experiment, members), log)


@contextmanager
def rich_progress(console: Any) -> Iterator[ProgressFactory]:
    """One Rich progress bar per arm with count and ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        @contextmanager
        def factory(description: str, total: int) -> Iterator[Callable[[int], None]]:
            task_id = bars.add_task(description, total=total)
            yield lambda n: bars.advance(task_id, n)

        yield factory
