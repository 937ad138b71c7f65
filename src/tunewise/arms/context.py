"""What every arm's `run(arm, ctx)` gets: the task, the frozen train, validation and test examples, the answer
cache, a place to write predictions, progress reporting, the predictions of arms that already ran, and shared
model instances (a model is loaded once per run, however many arms use it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.schema import Example, Prediction
from tunewise.store.answer_cache import PredictionCache
from tunewise.store.predictions import PredictionStore
from tunewise.tasks import Task
from tunewise.train.ranks import Ranks

# progress(total, description) -> context manager yielding advance(n)
ProgressFactory = Callable[[str, int], Any]


@contextmanager
def no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass
class ArmContext:
    task: Task
    train: list[Example]
    test: list[Example]
    seed: int
    run_dir: Path
    cache: PredictionCache
    threads: int | None = None
    val: list[Example] = field(default_factory=list)
    progress: ProgressFactory = no_progress
    log: Callable[[str], None] = print
    _models: dict[tuple[str, str], Any] = field(default_factory=dict)
    # the task's generation budget and its settings as saved in the manifest (fine-tuned arms record them)
    max_new_tokens: int = 64
    task_config: dict[str, Any] = field(default_factory=dict)
    # predictions of the arms that have run so far, by arm name (an ensemble votes over them)
    finished: dict[str, list[Prediction]] = field(default_factory=dict)
    # the experiment's evaluation settings, for arms that score more than the head-to-head (multi-task)
    bootstrap_resamples: int = 1000
    # data.allow_leakage: exemplar pools leave out training examples shared with the test set instead of failing
    allow_leakage: bool = False
    alpha: float = 0.05
    # "~typos-0.05" when the arms run on a perturbed copy of the test subset: their predictions go to
    # predictions/<arm>~typos-0.05.jsonl, beside (never over) the clean ones, and resume like them.
    store_suffix: str = ""
    # under torchrun / accelerate launch: process 0 writes and evaluates, every process trains
    ranks: Ranks = Ranks(0, 1)
    # evaluation.latency_probe: single requests timed per arm (0: none; contexts built outside a run probe nothing)
    latency_probe: int = 0
    # every arm's configuration by name, for arms that run another (a distilled student runs its teacher)
    configs: dict[str, Any] = field(default_factory=dict)
    run_arm: Callable[[Any, ArmContext], list[Prediction]] | None = None  # the registry's run, set by the pipeline
    # evaluation.primary_metric, for arms that choose between options themselves (the prompt search)
    primary_metric: str | None = None
    latency_probe_seconds: float | None = None

    def probe(self, arm_name: str, one: Callable[[Example], Any]) -> None:
        """Time single requests through `one` (see arms/latency_probe.py), on the clean test set only."""
        if self.store_suffix or not self.ranks.main:
            return
        from tunewise.arms.latency_probe import run_probe

        run_probe(self.run_dir, arm_name, one, self.test, self.latency_probe, self.log, self.latency_probe_seconds)

    def store(self, arm_name: str) -> PredictionStore:
        metadata = {e.id: e.metadata for e in self.test if e.metadata}
        return PredictionStore(self.run_dir / "predictions" / f"{arm_name}{self.store_suffix}.jsonl", metadata)

    def local_model(self, model: str, precision: str) -> Any:
        """A LocalLM shared across arms, loaded on first use."""
        key = (model, precision)
        if key not in self._models:
            from tunewise.assets import resolve_model
            from tunewise.models.local import LocalLM

            self._models[key] = LocalLM(resolve_model(model), precision=precision, threads=self.threads)
            self.log(f"loaded {model}: {self._models[key].precision.reason}")
        return self._models[key]

    def model_id(self, model: str) -> str:
        from tunewise.assets import resolve_model
        from tunewise.models.identity import model_fingerprint

        return model_fingerprint(resolve_model(model))
