"""Constructed runs for the evidence tests: test examples and arms' Prediction objects with chosen accuracy,
latency and failures, so metrics, tests, verdict and report are checked without running any model."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tunewise.config import Experiment
from tunewise.schema import Example, Message, Prediction
from tunewise.tasks import make_task

LABELS = ["business", "sports", "tech"]


def examples(n: int = 120, labels: list[str] = LABELS) -> list[Example]:
    return [Example(id=f"e{i}", messages=(Message("user", f"article {i} <b>about</b> things"),
                                          Message("assistant", labels[i % len(labels)])), line=i + 1,
                    metadata={"region": "EU" if i % 2 else "US"}) for i in range(n)]


def predictions(arm: str, test: list[Example], accuracy: float, latency_s: float, seed: int,
                failed: int = 0, labels: list[str] = LABELS) -> list[Prediction]:
    """Right with probability `accuracy` (else a random other label); the first `failed` are failed calls."""
    rng = random.Random(seed)
    out = []
    for i, example in enumerate(test):
        if i < failed:
            out.append(Prediction(id=example.id, arm=arm, input=example.input, reference=example.label,
                                  prediction="", raw="", latency_s=0.0, error="Timeout: no answer"))
            continue
        right = rng.random() < accuracy
        answer = example.label if right else rng.choice([x for x in labels if x != example.label])
        out.append(Prediction(id=example.id, arm=arm, input=example.input, reference=example.label,
                              prediction=answer, raw=answer, latency_s=latency_s * (0.5 + rng.random()),
                              prompt_tokens=100, completion_tokens=1))
    return out


def experiment(arms: list[dict[str, Any]], task: str = "classify", **sections: Any) -> Experiment:
    return Experiment.model_validate({"name": "constructed", "data": {"path": "unused.jsonl"}, "task": {"type": task},
                                      "arms": arms, **sections})


def classify_run(tmp_path: Path, *, training: dict | None = None, robustness: dict | None = None,
                 **sections: Any) -> tuple[Experiment, Any, list[Example], dict[str, list[Prediction]]]:
    """Three arms: a poor zero-shot, a good classical model (fast), a good few-shot (slow)."""
    test = examples()
    exp = experiment([{"name": "zs", "type": "zero_shot"}, {"name": "clf", "type": "classical"},
                      {"name": "few", "type": "few_shot"}],
                     evaluation={"slice_by": ["region"], **sections.pop("evaluation", {})},
                     cost={"hardware_usd_per_hour": 2.0, **sections.pop("cost", {})}, **sections)
    done = {"zs": predictions("zs", test, 0.5, 0.2, seed=1), "clf": predictions("clf", test, 0.9, 0.001, seed=2),
            "few": predictions("few", test, 0.88, 1.0, seed=3)}
    if training is not None:
        (tmp_path / "training").mkdir(parents=True, exist_ok=True)
        (tmp_path / "training" / "clf.json").write_text(json.dumps(training))
    if robustness is not None:
        (tmp_path / "robustness.json").write_text(json.dumps(robustness))
    return exp, make_task(exp.task, test), test, done


TRAINING = {"seconds": 1800.0, "method": "lora", "precision": "bf16",
            "history": [{"epoch": 1, "step": 10, "train_loss": 1.2, "val_loss": 1.3},
                        {"epoch": 2, "step": 20, "train_loss": 0.7, "val_loss": 0.9},
                        {"epoch": 3, "step": 30, "train_loss": 0.4, "val_loss": None}],
            "gap_warning": "validation loss is rising while training loss falls: overfitting",
            "learning_curve": [{"fraction": 0.25, "train_examples": 50, "metric": "accuracy", "value": 0.6},
                               {"fraction": 1.0, "train_examples": 200, "metric": "accuracy", "value": 0.9}]}
ROBUSTNESS = {"clf": {"typos": {"score": 0.85, "drop": 0.067}, "case": {"score": 0.9, "drop": 0.017}},
              "few": {"typos": {"score": 0.8, "drop": 0.142}}}
