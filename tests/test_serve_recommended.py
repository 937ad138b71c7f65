"""`tunewise serve RUN` serves the arm the verdict recommends, not the arm with the best metric; when the
recommended arm cannot be served it says why and which arm it serves instead. The run is real (a toy
majority-class arm and a TF-IDF classical arm through `run_experiment`), no language model is needed."""

from __future__ import annotations

import json

import pytest
import toy_arm
import yaml

from tunewise.arms import registry
from tunewise.config import load_experiment
from tunewise.pipeline.experiment import run_experiment
from tunewise.serve.models import Loader, ServeSetupError, build_models


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run where tfidf has the best accuracy but the verdict recommends majority: with a quality bar of 0
    both qualify, both cost $0 and need no training, and majority answers faster."""
    registry.register(toy_arm)
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    topics = {"goal": "sports", "shares": "business", "software": "tech", "match": "sports", "team": "sports"}
    rows = [{"text": f"story {i} about the {word} today", "label": label}
            for i in range(20) for word, label in topics.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "serve-recommended", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "test_fraction": 0.3}, "runs_dir": str(tmp_path / "runs"),
              "evaluation": {"quality_bar": 0.0},
              "arms": [{"name": "majority", "type": "majority_class"},
                       {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}},
                       {"name": "vote", "type": "ensemble", "members": ["majority", "tfidf"]}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    result = run_experiment(load_experiment(tmp_path / "exp.yaml"), log=lambda m: None)
    assert result.failures == {}
    yield result.run.path
    registry.unregister("majority_class")


def test_serve_serves_the_recommended_arm_when_it_differs_from_the_best_metric(run):
    results = json.loads((run / "results.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = {name: arm["accuracy"] for name, arm in metrics["arms"].items()}
    assert max(accuracy, key=accuracy.get) == "tfidf" and accuracy["tfidf"] > accuracy["majority"]
    assert results["verdict"]["recommended"] == metrics["recommended"] == "majority"  # the premise of this test
    said: list[str] = []
    served = build_models(Loader("fp32", None), run=run, log=said.append)
    assert [m.name for m in served] == ["majority"] and said == []


def test_a_recommended_arm_that_cannot_be_served_is_replaced_by_the_best_servable_arm_and_says_why(run):
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["recommended"] = "vote"  # as a verdict would when the ensemble is the cheapest arm that qualifies
    (run / "metrics.json").write_text(json.dumps(metrics))
    said: list[str] = []
    served = build_models(Loader("fp32", None), run=run, log=said.append)
    assert [m.name for m in served] == ["tfidf"]
    assert said == ["the verdict recommends 'vote', which cannot be served (an ensemble arm is not served by "
                    "tunewise); serving 'tfidf', the best servable arm by accuracy, instead"]
    metrics.pop("recommended")  # a run whose verdict recommended nothing (or from before verdicts named one)
    (run / "metrics.json").write_text(json.dumps(metrics))
    said.clear()
    assert [m.name for m in build_models(Loader("fp32", None), run=run, log=said.append)] == ["tfidf"]
    assert len(said) == 1 and "names no recommended arm" in said[0]
    # a recommended arm whose saved settings cannot be read is refused, never silently replaced
    metrics["recommended"] = "majority"
    (run / "metrics.json").write_text(json.dumps(metrics))
    manifest = json.loads((run / "manifest.json").read_text())
    next(a for a in manifest["config"]["arms"] if a["name"] == "majority")["k"] = 3
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ServeSetupError, match="majority"):
        build_models(Loader("fp32", None), run=run)
