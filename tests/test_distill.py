"""Distillation: a teacher arm labels half of the training split with its labels withheld, the student trains on
the teacher's labels (not the gold ones), and the run records labelling cost, agreement and break-even."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from openai_loopback import MODEL, ServerStats, serve

from tunewise.config import ConfigError, load_experiment
from tunewise.pipeline.experiment import run_experiment

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}
WRONG = {"goal": "business", "shares": "tech", "software": "arts", "film": "sports"}


def _config(tmp_path: Path, arms: list[dict]) -> Path:
    rows = [{"text": f"note {i}: the {word} again", "label": label} for i in range(24) for word, label in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "distill", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 5, "max_test": 16}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
              "evaluation": {"latency_probe": 0},
              "cost": {"hardware_usd_per_hour": 1.0,
                       "remote_prices": {MODEL: {"input_per_million": 5.0, "output_per_million": 15.0,
                                                 "as_of": "2026-12-01"}}},
              "arms": arms}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_student_learns_the_teachers_labels_not_the_gold_ones(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    import tunewise.train.classifier as classifier

    seen: list[tuple[str, str]] = []
    train = classifier.train_classifier

    def spy(examples, *args, **kwargs):
        seen.extend((e.input, e.output) for e in examples)
        return train(examples, *args, **kwargs)

    def swapped(messages: list[dict]) -> str:  # a teacher that is consistently wrong: each topic named as another
        word = next(w for w in TOPICS if w in messages[-1]["content"])
        return WRONG[word]

    monkeypatch.setattr(classifier, "train_classifier", spy)
    stats = ServerStats()
    with serve(swapped, stats=stats) as url:
        teacher = {"name": "api", "type": "remote", "base_url": url, "model": MODEL, "api_key_env": None}
        student = {"name": "student", "type": "finetune", "method": "classifier", "model": str(tiny_model_dir),
                   "teacher": "api", "max_train_examples": 30,
                   "head": {"epochs": 1, "batch_size": 8, "precision": "fp32", "max_length": 32}}
        result = run_experiment(load_experiment(_config(tmp_path, [teacher, student])), log=lambda m: None)
    assert result.failures == {}
    assert len(seen) == 30  # every training label is the teacher's, none the gold one
    assert all(label == WRONG[next(w for w in TOPICS if w in text)] != TOPICS[next(w for w in TOPICS if w in text)]
               for text, label in seen)
    run = result.run.path
    pool = [json.loads(line) for line in (run / "predictions" / "api~distill-student.jsonl").read_text().splitlines()]
    scored = (run / "predictions" / "api.jsonl").read_text().splitlines()
    assert len(pool) == 30 and stats.requests == len(scored) + 30  # the test split, then the pool
    train_ids = {json.loads(line)["id"] for line in (run / "splits" / "train.jsonl").read_text().splitlines()}
    test_ids = {json.loads(line)["id"] for line in (run / "splits" / "test.jsonl").read_text().splitlines()}
    assert {p["id"] for p in pool} <= train_ids and not {p["id"] for p in pool} & test_ids
    summary = json.loads((run / "results.json").read_text())["arms"]["student"]["distillation"]
    assert summary["teacher"] == "api" and summary["kept"] == 30 and summary["pool"] == 30
    assert summary["teacher_vs_withheld_gold"] == 0.0  # the teacher was always wrong, and it was measured
    assert summary["labelling_usd"] > 0 and summary["agreement_with_teacher"] is not None
    assert "distilled from <strong>api</strong>" in (run / "report.html").read_text()
    record = json.loads((run / "training" / "student.json").read_text())
    assert record["distillation"]["pool_source"] == "half of the training split, labels withheld"


@pytest.mark.parametrize("arms, message", [
    ([{"name": "s", "type": "finetune", "method": "classifier", "teacher": "nobody"}], "teacher 'nobody' is not an arm"),
    ([{"name": "s", "type": "finetune", "method": "classifier", "teacher": "zs"}, {"name": "zs", "type": "zero_shot"}],
     "must be listed before it"),
    ([{"name": "c", "type": "classical"}, {"name": "s", "type": "finetune", "method": "classifier", "teacher": "c"}],
     "is a classical arm, which trains"),
    ([{"name": "s", "type": "finetune", "method": "classifier", "teacher_min_confidence": 0.8}],
     "teacher_min_confidence needs a teacher"),
])
def test_a_teacher_that_cannot_work_is_refused_by_name(tmp_path, arms, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(_config(tmp_path, arms))
