"""A small finished run whose arms disagree, for the review, export and web UI tests: two classical arms
(logistic regression and a random forest) on noisy keyword data. No model weights; a few seconds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

WORDS = {"sports": ["goal", "match", "team"], "business": ["shares", "market", "profit"],
         "tech": ["software", "chip", "app"]}
FILLER = ["today", "report", "people", "city", "year", "plan", "news", "week"]


def noisy_rows(n: int = 150, seed: int = 5) -> list[dict[str, str]]:
    """Texts with one or two topic words and filler; some labels follow the second topic word, so arms that
    learn differently disagree on part of the test split."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(WORDS))
        other = rng.choice(sorted(WORDS))
        words = [rng.choice(WORDS[label]), *rng.sample(FILLER, 3)]
        if rng.random() < 0.4:
            words.append(rng.choice(WORDS[other]))
        rng.shuffle(words)
        rows.append({"id": f"ex{i:03d}", "text": f"item {i}: " + " ".join(words), "label": label})
    return rows


def experiment_yaml(folder: Path, runs_dir: Path, max_test: int = 30) -> Path:
    """Write data.jsonl and exp.yaml into `folder`; returns the experiment file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in noisy_rows()))
    config = {"name": "review-me", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 2, "max_test": max_test}, "runs_dir": str(runs_dir),
              "evaluation": {"latency_probe": 0, "bootstrap_resamples": 200},
              "arms": [{"name": "logreg", "type": "classical", "settings": {"model": "logreg", "cv": 2}},
                       {"name": "forest", "type": "classical", "settings": {"model": "random_forest", "cv": 2}}]}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def finished_run(folder: Path) -> Path:
    """Run the experiment in-process with its own cache under `folder` (no answer reused from another test's
    run); returns the run folder."""
    import os

    from tunewise.config import load_experiment
    from tunewise.pipeline.experiment import run_experiment

    previous = os.environ.get("TUNEWISE_CACHE")
    os.environ["TUNEWISE_CACHE"] = str(folder / "cache")
    try:
        result = run_experiment(load_experiment(experiment_yaml(folder, folder / "runs")), log=lambda m: None)
    finally:
        if previous is None:
            del os.environ["TUNEWISE_CACHE"]
        else:
            os.environ["TUNEWISE_CACHE"] = previous
    assert not result.failures, result.failures
    return result.run.path
