"""The majority-class floor is in every classification table, and imbalanced labels are called out."""

from __future__ import annotations

import json
from pathlib import Path

from evidence_cases import classify_run, experiment, predictions

from tunewise.evaluate.evidence import build_results
from tunewise.report.html import render_html, render_markdown
from tunewise.schema import Example, Message
from tunewise.tasks import make_task


def _write_train(run_dir: Path, labels: list[str]) -> None:
    (run_dir / "splits").mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"train {i}"}, {"role": "assistant", "content": label}]}
            for i, label in enumerate(labels)]
    (run_dir / "splits" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_balanced_labels_get_the_floor_but_no_warning(tmp_path: Path) -> None:
    exp, task, test, done = classify_run(tmp_path)
    _write_train(tmp_path, ["sports"] * 5 + ["business"] * 3 + ["tech"] * 3)
    results = build_results(exp, tmp_path, "r1", task, test, done, {})
    floor = results["majority_baseline"]
    assert floor["label"] == "sports" and not floor["imbalanced"] and floor["warning"] is None
    assert abs(floor["metrics"]["accuracy"]["value"] - 1 / 3) < 0.01  # the test set cycles through three labels
    assert floor["metrics"]["accuracy"]["low"] < floor["metrics"]["accuracy"]["value"] < floor["metrics"]["accuracy"]["high"]
    assert floor["not_clearly_better"] == []
    assert "Majority-class baseline (always “sports”" in render_html(results)
    # how much training data each arm used: zero-shot none, few-shot its k exemplars (of 11), classical its record
    assert [results["arms"][n]["train_examples"] for n in ("zs", "few", "clf")] == [0, 4, None]


def test_imbalanced_labels_warn_that_accuracy_is_weak(tmp_path: Path) -> None:
    labels = ["positive", "negative"]
    test = [Example(id=f"e{i}", messages=(Message("user", f"review {i}"),
                                          Message("assistant", "negative" if i % 5 == 0 else "positive")), line=i + 1)
            for i in range(200)]
    exp = experiment([{"name": "zs", "type": "zero_shot"}, {"name": "clf", "type": "classical"}])
    done = {"zs": predictions("zs", test, 0.78, 0.2, seed=1, labels=labels),
            "clf": predictions("clf", test, 0.97, 0.01, seed=2, labels=labels)}
    _write_train(tmp_path, ["positive"] * 8 + ["negative"] * 2)
    results = build_results(exp, tmp_path, "r1", make_task(exp.task, test), test, done, {})
    floor = results["majority_baseline"]
    assert floor["label"] == "positive" and floor["imbalanced"] and floor["class_ratio"] == 4.0
    assert floor["metrics"]["accuracy"]["value"] == 0.8 and floor["metrics"]["macro_f1"]["value"] < 0.5
    assert floor["not_clearly_better"] == ["zs"]  # 0.78 cannot be told from always-positive's 0.80
    assert "set evaluation.primary_metric: macro_f1" in floor["warning"] and floor["warning"] in results["notes"]
    assert "always answering &#39;positive&#39;" in render_html(results)
    assert "**Warning:** labels are imbalanced" in render_markdown(results)


def test_without_a_frozen_training_split_there_is_no_floor_to_show(tmp_path: Path) -> None:
    exp, task, test, done = classify_run(tmp_path)
    assert build_results(exp, tmp_path, "r1", task, test, done, {})["majority_baseline"] is None
