"""Run folders for the ui tests and bench/ui_predictions.py, written by the project's own writers (create_run,
write_splits, PredictionStore, build_results, write_report), so they have exactly the files a real run has
without running any model: arms answer with chosen accuracies, as in evidence_cases.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from evidence_cases import TRAINING, experiment, predictions

from tunewise.data.split import Split, write_splits
from tunewise.evaluate.evidence import build_results, metrics_summary
from tunewise.report import write_report
from tunewise.schema import Example, Message
from tunewise.store.predictions import PredictionStore
from tunewise.store.runs import Run, create_run
from tunewise.tasks import make_task

LABELS = ["business", "sports", "tech"]
REPLIES = ["Thanks, the refund is on its way.", "Please restart the router.", "We have passed this to sales."]
WORDS = ("market shares profit bank growth match goal season player coach chip software phone network data "
         "price league final record launch users court deal report").split()
# name, type, accuracy, latency (s): a poor prompt, a strong classical model, a good but slow few-shot arm
ARMS = [("zero-shot", "zero_shot", 0.55, 0.2), ("classical", "classical", 0.9, 0.001), ("few-shot", "few_shot", 0.85, 1.0)]


def example_texts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(words)) for i in range(n)]


def build_run(root: Path, *, test_examples: int = 120, words: int = 30, seed: int = 7, name: str = "ui-demo",
              arms: list[tuple[str, str, float, float]] | None = None, resamples: int = 200,
              test: list[Example] | None = None, task: str = "classify") -> Run:
    """A completed run under `root` with a frozen split, predictions, training and robustness files, results.json
    and report.html. Pass another run's `test` to put a second run on the same split. `task="generate"` answers
    with short reply texts instead of labels."""
    arms = arms or ARMS
    answers = LABELS if task == "classify" else REPLIES
    if test is None:
        texts = example_texts(test_examples, words, seed)
        test = [Example(id=f"ex{i:05d}", messages=(Message("user", text), Message("assistant", answers[i % 3])),
                        line=i + 1) for i, text in enumerate(texts)]
    train = [Example(id=f"tr{i}", messages=(Message("user", f"training story {i}"),
                                            Message("assistant", answers[i % 3])), line=i + 1) for i in range(30)]
    exp = experiment([{"name": arm, "type": kind} for arm, kind, _, _ in arms], task=task, name=name,
                     evaluation={"bootstrap_resamples": resamples}, cost={"hardware_usd_per_hour": 1.0})
    run = create_run(root, command=["tunewise", "run", f"{name}.yaml"], config=exp.model_dump(mode="json"))
    write_splits(Split(train=tuple(train), val=(), test=tuple(test), seed=13, val_fraction=0.0,
                       test_fraction=0.5, stratify=True, train_groups=len(train), val_groups=0,
                       test_groups=len(test)), run.subdir("splits"))
    done = {}
    for offset, (arm, _, accuracy, latency) in enumerate(arms):
        done[arm] = predictions(arm, test, accuracy, latency, seed=seed + offset, labels=answers)
        PredictionStore(run.subdir("predictions") / f"{arm}.jsonl").append(done[arm])
    trained = next((arm for arm, kind, _, _ in arms if kind == "classical"), None)
    if trained:
        (run.subdir("training") / f"{trained}.json").write_text(json.dumps(TRAINING), encoding="utf-8")
        drop = {"typos-0.05": {"clean_score": 0.9, "score": 0.85, "drop": 0.05, "n": 20}}
        (run.path / "robustness.json").write_text(json.dumps({trained: drop}), encoding="utf-8")
    results = build_results(exp, run.path, run.id, make_task(exp.task, train), test, done, {})
    write_report(run.path, results, metrics_summary(results, {}))
    run.update(status="completed", arms=[arm for arm, *_ in arms], test_examples=len(test))
    return run


def frozen_test_split(run: Run) -> list[Example]:
    """The frozen test split of a built run, to build another run on the same split."""
    from tunewise.data.formats import read_examples

    return list(read_examples(run.path / "splits" / "test.jsonl").examples)


def results_of(run: Run) -> dict[str, Any]:
    return json.loads((run.path / "results.json").read_text(encoding="utf-8"))
