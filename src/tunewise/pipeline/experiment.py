"""`tunewise run`: one frozen split, every arm on it, predictions and metrics in the run folder.

Glue only. The order is fixed: read the data (refusing files with errors), freeze or reload the split,
build the task, run each arm (ensembles last), then the evidence (evaluate/evidence.py: metrics with
intervals, paired tests, cost, verdict) into results.json, metrics.json and the report. A resumed run (`--resume RUN`) reloads the
frozen split and skips finished predictions; the answer cache makes even a brand-new run of the same
experiment do no repeated model work. One arm failing (an endpoint down) is recorded and the others go on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunewise.arms import registry
from tunewise.arms.base import TrainingInterrupted
from tunewise.arms.context import ArmContext, ProgressFactory, no_progress
from tunewise.config import Experiment
from tunewise.data.split import stratified_subset
from tunewise.evaluate.evidence import metrics_summary, run_evidence
from tunewise.evaluate.sequential import extended_test, read_looks
from tunewise.pipeline.inputs import (
    ExperimentError,
    check_label_names,
    frozen_split,
    read_data,
    read_held_out,
    resolve_data_path,
)
from tunewise.report import write_report
from tunewise.schema import Prediction
from tunewise.store.answer_cache import PredictionCache
from tunewise.store.events import EVENTS_FILE, EventLog
from tunewise.store.process import this_process
from tunewise.store.runs import Run, create_run, open_run
from tunewise.tasks import make_task
from tunewise.train.ranks import RankError, Ranks, decided_by_main, launched


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


def _order(arms: list[Any]) -> list[Any]:
    """Arms that read other arms' predictions (ensembles) run after every other arm."""
    return [a for a in arms if not registry.runs_last(a)] + [a for a in arms if registry.runs_last(a)]


def start_or_resume(experiment: Experiment, resume: Path | None, command: list[str] | None = None) -> Run:
    config = experiment.model_dump(mode="json")
    if resume is None:
        held = [p for p in (experiment.data.test, experiment.data.val) if p is not None]
        return create_run(experiment.runs_dir, command=command or sys.argv, config=config,
                          data_files=[data_path(experiment), *held, *task_data_paths(experiment)])
    run = open_run(resume)
    if not same_config(run.manifest.get("config"), config):
        raise ExperimentError(f"--resume {resume}: that run used a different configuration; start a new run, or "
                              "resume with the same experiment file and --set overrides")
    return run


def same_config(recorded: Any, config: dict[str, Any]) -> bool:
    """The run's configuration equals this one, except evaluation.budget, which only says how much a later
    --extend may add and changes no figure of the run."""
    def strip(c: Any) -> Any:
        if not isinstance(c, dict):
            return c
        return c | {"evaluation": {k: v for k, v in (c.get("evaluation") or {}).items() if k != "budget"}}

    return strip(recorded) == strip(config)


def task_data_paths(experiment: Experiment) -> list[Path]:
    """Data files arms read beyond the experiment's own (a multi-task arm's extra tasks), recorded with their
    hashes in the manifest."""
    return list(dict.fromkeys(path for arm in experiment.arms for path in registry.data_files(arm)))


def check_launchable(experiment: Experiment, ranks: Ranks) -> None:
    """Under torchrun / accelerate launch only lora/full training splits across processes; say so up front."""
    if not ranks.distributed:
        return
    problems = [f"arm {arm.name!r}: {problem}" for arm in experiment.arms
                if (problem := registry.launch_problem(arm)) is not None]
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
    data = read_data(path, experiment.data, task=experiment.task.type)
    held_out = read_held_out(experiment.data, data, experiment.task.type, log)

    def open_running() -> Run:
        run = start_or_resume(experiment, resume)
        run.update(status="running", process=this_process())  # a reader can tell a killed run (store/process.py)
        return run

    run = decided_by_main(ranks, open_running)
    events = EventLog(run.path / EVENTS_FILE if ranks.main else None)
    events.emit("run_started", run_id=run.id, arms=[a.name for a in experiment.arms])
    from tunewise.assets import cache_dir

    cache = PredictionCache(cache_dir() / "predictions.sqlite" if use_cache and ranks.main else None)
    failures: dict[str, str] = {}
    try:
        parts = decided_by_main(ranks, lambda: frozen_split(run.path / "splits", data.examples, experiment.split,
                                                            held_out, log))
        check_label_names(experiment.task.labels, parts["train"])
        task = make_task(experiment.task, parts["train"])
        test = stratified_subset(parts["test"], experiment.split.max_test, experiment.split.seed, bool(task.labels))
        looks = read_looks(run.path)  # an extended run (--extend): its latest look's examples and arms
        test = extended_test(test, parts["test"], looks)
        done: dict[str, list[Prediction]] = {}
        ctx = _context(experiment, task, parts, test, run, cache, events.progress(progress), log, ranks, done)
        for arm in _arms_to_run(experiment.arms, looks):
            try:
                with events.arm_running(arm.name):
                    done[arm.name] = registry.run(arm, ctx)
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
        # before the evidence, which reads robustness.json; an extension keeps the first look's
        robustness = _robustness(experiment, ctx, done, log) if looks is None else {}
        if experiment.evaluation.judge is not None and done:  # judge.json, read by the evidence; cached calls
            from tunewise.pipeline.judging import run_judge

            run_judge(experiment.evaluation.judge, ctx, done, log)
        # the evidence: metrics with intervals, paired tests, cost, verdict; results.json, report.md/.html
        results = run_evidence(experiment, run.path, run.id, task, test, done, failures)
        summary = metrics_summary(results, failures)
        write_report(run.path, results, summary)
        metrics = summary["arms"]
        run.update(status="completed" if not failures else "failed", arms=sorted(done), failures=failures,
                   test_examples=len(test))
        _emit_end(events, failures)
    except BaseException as exc:
        if isinstance(exc, TrainingInterrupted):
            exc.run_path = run.path
        if ranks.main:
            run.update(status="interrupted" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)) else "failed",
                       error=f"{type(exc).__name__}: {exc}")
        events.emit("run_failed", status="interrupted" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted))
                    else "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        cache.close()
        events.close()
    return ExperimentResult(run, metrics, failures, experiment.evaluation.primary_metric, cache.hits, cache.misses,
                            time.perf_counter() - started, results["verdict"], robustness)


def _context(experiment: Experiment, task: Any, parts: dict[str, list[Any]], test: list[Any], run: Run,
             cache: PredictionCache, progress: ProgressFactory, log: Callable[[str], None], ranks: Ranks,
             done: dict[str, list[Prediction]]) -> ArmContext:
    """What every arm is given: the task, the frozen split, the run folder, caches, progress and settings."""
    return ArmContext(task=task, train=parts["train"], test=test, seed=experiment.split.seed, run_dir=run.path,
                      cache=cache, threads=experiment.threads, progress=progress, log=log, val=parts["val"],
                      ranks=ranks, max_new_tokens=experiment.task.max_new_tokens,
                      task_config=experiment.task.model_dump(mode="json"), finished=done,
                      bootstrap_resamples=experiment.evaluation.bootstrap_resamples,
                      alpha=experiment.evaluation.alpha, allow_leakage=experiment.data.allow_leakage,
                      latency_probe=experiment.evaluation.latency_probe,
                      primary_metric=experiment.evaluation.primary_metric,
                      configs={arm.name: arm for arm in experiment.arms}, run_arm=registry.run,
                      latency_probe_seconds=experiment.evaluation.latency_probe_seconds)


def _emit_end(events: EventLog, failures: dict[str, str]) -> None:
    """The last event: completed, or failed naming the arms that failed (the run's status says the same)."""
    if failures:
        events.emit("run_failed", status="failed", error="; ".join(f"arm {k} failed: {v}" for k, v in failures.items()))
    else:
        events.emit("run_completed", status="completed")


def _arms_to_run(arms: list[Any], looks: dict[str, Any] | None) -> list[Any]:
    """Every arm, ensembles last; in an extended run only the latest look's arms in contention, in its order
    (cheapest first): the settled ones keep the figures of the look that settled them."""
    if looks is None:
        return _order(arms)
    by_name = {a.name: a for a in arms}
    chosen = [by_name[name] for name in looks["looks"][-1]["contenders"] if name in by_name]
    # an ensemble in contention reads its members' answers on the extra examples too, settled or not
    members = [by_name[m] for arm in chosen for m in getattr(arm, "members", []) if m in by_name]
    return _order(list({a.name: a for a in members + chosen}.values()))


def _robustness(experiment: Experiment, ctx: ArmContext, done: dict[str, list[Prediction]],
                log: Callable[[str], None]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Every arm that ran, again on perturbed copies of a seeded subset of the test examples (if configured)."""
    config = experiment.evaluation.robustness
    if not config.perturbations or not done:
        return {}
    from tunewise.pipeline.robustness import run_robustness

    subset = stratified_subset(ctx.test, config.max_examples, experiment.split.seed, bool(ctx.task.labels))
    return run_robustness(config, _order(experiment.arms), ctx, subset, done, experiment.evaluation.primary_metric,
                          lambda arm, copy, members: registry.run(arm, replace(copy, finished=members)), log)


@contextmanager
def rich_progress(console: Any) -> Iterator[ProgressFactory]:
    """One Rich progress bar per arm with count and ETA on a terminal; plain timed lines elsewhere (a log file
    would otherwise get every bar only at the end)."""
    if not console.is_terminal:
        from tunewise.pipeline.progress import plain_progress

        with plain_progress(lambda line: console.print(line, highlight=False, markup=False)) as factory:
            yield factory
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        @contextmanager
        def factory(description: str, total: int) -> Iterator[Callable[[int], None]]:
            task_id = bars.add_task(description, total=total)
            yield lambda n: bars.advance(task_id, n)

        yield factory
