"""An arm registered from outside the package runs end to end: config validation, `run_experiment`, the
evidence (metrics, cost, verdict) and `tunewise serve`'s app, with no other module edited."""

from __future__ import annotations

import json
from collections import Counter

import openai
import pytest
import toy_arm
import yaml

from tunewise.arms import registry
from tunewise.config import ConfigError, load_experiment
from tunewise.pipeline.experiment import run_experiment
from tunewise.serve.app import build_state, create_app
from tunewise.serve.config import ServeConfig
from tunewise.serve.models import Loader, ServeSetupError, build_models
from tunewise.serve.server import serve_in_thread


@pytest.fixture
def majority_arm():
    registry.register(toy_arm)
    yield toy_arm
    registry.unregister("majority_class")


def write_experiment(tmp_path, arms: list[dict]) -> object:
    topics = {"goal": "sports", "shares": "business", "software": "tech"}
    # sports is the most common label: 3 of every 5 rows
    rows = [{"text": f"story {i} about the {word} today", "label": label}
            for i in range(20) for word, label in [*topics.items(), ("match", "sports"), ("team", "sports")]]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "plugin", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "test_fraction": 0.3}, "runs_dir": str(tmp_path / "runs"), "arms": arms}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "exp.yaml"


def test_an_unregistered_arm_type_is_refused_with_the_known_types(tmp_path):
    path = write_experiment(tmp_path, [{"name": "majority", "type": "majority_class"}])
    with pytest.raises(ConfigError, match="majority_class") as caught:
        load_experiment(path)
    assert "zero_shot" in str(caught.value)


def test_a_registered_toy_arm_runs_is_judged_and_served(tmp_path, monkeypatch, majority_arm):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    path = write_experiment(tmp_path, [{"name": "majority", "type": "majority_class"},
                                       {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}])
    experiment = load_experiment(path)
    assert [type(a).__name__ for a in experiment.arms] == ["MajorityClassArm", "ClassicalArm"]
    result = run_experiment(experiment, log=lambda m: None)
    assert result.failures == {}
    run = result.run.path
    test = [json.loads(line) for line in (run / "splits" / "test.jsonl").read_text().splitlines()]
    share = Counter(row["messages"][-1]["content"] for row in test)["sports"] / len(test)
    results = json.loads((run / "results.json").read_text())
    majority = results["arms"]["majority"]
    assert majority["metrics"]["accuracy"]["value"] == pytest.approx(share)
    assert majority["cost"]["per_1k_usd"] is not None and majority["needs_training"] is False
    assert results["verdict"]["recommended"] == "tfidf"  # keywords beat always-sports
    assert "majority" in (run / "report.html").read_text()

    models = build_models(Loader("fp32", None), run=run, arms=["majority"])
    state = build_state(models, ServeConfig())
    with serve_in_thread(create_app(state), state) as (url, _):
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in api.models.list().data] == ["majority"]
        reply = api.chat.completions.create(model="majority", messages=[{"role": "user", "content": "shares fell"}])
        assert reply.choices[0].message.content == "sports"
        scored = api.post("/classify", cast_to=object, body={"model": "majority", "input": "a new laptop"})
        assert scored["data"][0]["probabilities"] == {"business": 0.0, "sports": 1.0, "tech": 0.0}

    # the best arm by the metric (tfidf) cannot be read back: serving refuses, never the runner-up in its place
    manifest = json.loads((run / "manifest.json").read_text())
    next(a for a in manifest["config"]["arms"] if a["name"] == "tfidf")["k"] = 3
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ServeSetupError, match="tfidf"):
        build_models(Loader("fp32", None), run=run)
