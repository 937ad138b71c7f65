"""`tunewise run` end to end against a real OpenAI-compatible server on loopback (the remote arm), with
an ensemble on top: predictions, metrics, the answer cache, resume, and per-arm failure isolation.
"""

from __future__ import annotations

import json

import pytest
import yaml
from openai_loopback import MODEL, ServerStats, serve

from tunewise.config import load_experiment
from tunewise.pipeline.experiment import run_experiment
from tunewise.store.predictions import PredictionStore

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


def responder(messages: list[dict]) -> str:
    """A keyword classifier standing in for a remote model; says 'not sure' for one topic so scores differ."""
    text = messages[-1]["content"].lower()
    for word, label in TOPICS.items():
        if word in text:
            return "Answer: " + label if word != "film" else "not sure"
    return "no idea"


@pytest.fixture
def experiment_file(tmp_path):
    rows = [{"text": f"story {i} about the {word} of the day", "label": label}
            for i in range(40) for word, label in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def make(base_url: str, extra_arms: list[dict] | None = None, latency_probe: int = 0) -> str:
        config = {
            "name": "loopback", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
            "evaluation": {"latency_probe": latency_probe},  # off unless a test counts the probe's requests
            "split": {"seed": 1, "max_test": 24}, "runs_dir": str(tmp_path / "runs"),
            "arms": [
                {"name": "remote-zs", "type": "remote", "base_url": base_url, "model": MODEL, "api_key_env": None,
                 "concurrency": 4, "timeout_s": 5, "retries": 2},
                {"name": "remote-fs", "type": "remote", "base_url": base_url, "model": MODEL, "api_key_env": None,
                 "mode": "few_shot", "k": 4},
                {"name": "vote", "type": "ensemble", "members": ["remote-zs", "remote-fs"]},
            ] + (extra_arms or []),
        }
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    return make


def test_remote_arms_end_to_end_with_cache_and_resume(experiment_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    stats = ServerStats()
    with serve(responder, stats=stats) as base_url:
        experiment = load_experiment(experiment_file(base_url))
        first = run_experiment(experiment, log=lambda m: None)
        assert first.failures == {}
        metrics = first.metrics
        assert metrics["remote-zs"]["n"] == 24
        assert metrics["remote-zs"]["accuracy"] == pytest.approx(0.75)  # 'film' answers are unparseable
        assert metrics["remote-zs"]["unparsed"] == 6
        assert set(metrics) == {"remote-zs", "remote-fs", "vote"}
        requests_first = stats.requests
        assert requests_first == 48  # 24 test examples x 2 remote arms

        predictions = PredictionStore(first.run.path / "predictions" / "remote-zs.jsonl").done
        sample = next(iter(predictions.values()))
        assert sample.raw.startswith(("Answer:", "not sure", "no idea")) and sample.prompt_tokens > 0

        # a new run of the same experiment: served from the cache, no request reaches the server
        second = run_experiment(experiment, log=lambda m: None)
        assert stats.requests == requests_first
        assert second.cache_hits == 48 and second.metrics["remote-zs"] == {**metrics["remote-zs"], "cached": 24}

        # resume: drop half of one arm's predictions from the first run; only those are redone (from cache)
        path = first.run.path / "predictions" / "remote-fs.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:10]))
        resumed = run_experiment(experiment, resume=first.run.path, log=lambda m: None)
        assert resumed.cache_hits == 14 and len(path.read_text().splitlines()) == 24
        manifest = json.loads((first.run.path / "manifest.json").read_text())
        assert manifest["status"] == "completed"


def test_few_shot_prompts_carry_training_exemplars_only(experiment_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    stats = ServerStats()
    with serve(responder, stats=stats) as base_url:
        result = run_experiment(load_experiment(experiment_file(base_url)), log=lambda m: None)
    splits = result.run.path / "splits"
    test_texts = {json.loads(line)["messages"][0]["content"] for line in (splits / "test.jsonl").read_text().splitlines()}
    few_shot_bodies = [b for b in stats.bodies if len(b["messages"]) > 2]
    assert few_shot_bodies
    for body in few_shot_bodies:
        exemplar_inputs = [m["content"] for m in body["messages"][1:-1] if m["role"] == "user"]
        assert len(exemplar_inputs) == 4 and not set(exemplar_inputs) & test_texts


def test_one_failing_arm_does_not_lose_the_others(experiment_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    broken = {"name": "wrong-model", "type": "remote", "base_url": "PLACEHOLDER", "model": "no-such-model",
              "api_key_env": None}
    with serve(responder) as base_url:
        broken["base_url"] = base_url
        result = run_experiment(load_experiment(experiment_file(base_url, [broken])), log=lambda m: None)
    assert "no-such-model" in result.failures["wrong-model"]
    assert result.metrics["remote-zs"]["n"] == 24
    assert json.loads((result.run.path / "metrics.json").read_text())["failures"]


def test_cli_run_prints_per_arm_accuracy(experiment_file, tmp_path, monkeypatch):
    from test_cli import invoke

    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    with serve(responder) as base_url:
        code, out, err = invoke("run", experiment_file(base_url), "--set", "split.max_test=12")
    text = " ".join(out.split())
    assert code == 0, out + err
    assert "remote-zs" in text and "0.750" in text and "answer cache" in text


def test_data_with_errors_is_refused_before_any_work(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "a", "label": "x"}\n{oops\n')
    (tmp_path / "e.yaml").write_text("name: t\ndata: {path: data.jsonl}\ntask: {type: classify}\n"
                                     "arms: [{name: c, type: classical}]\n")
    from test_cli import invoke

    code, out, err = invoke("run", tmp_path / "e.yaml")
    assert code == 2 and "tunewise check" in " ".join((out + err).split())


def test_classical_arm_runs_saves_its_model_and_reuses_the_fit(experiment_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    classical = {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}
    with serve(responder) as base_url:
        experiment = load_experiment(experiment_file(base_url, [classical]))
        first = run_experiment(experiment, log=lambda m: None)
        second = run_experiment(experiment, log=lambda m: None)
    assert first.metrics["tfidf"]["accuracy"] == 1.0 and first.metrics["tfidf"]["cached"] == 0
    assert second.metrics["tfidf"]["cached"] == 24
    assert (first.run.path / "models" / "tfidf" / "pipeline.joblib").is_file()
    prediction = next(iter(PredictionStore(first.run.path / "predictions" / "tfidf.jsonl").done.values()))
    assert sum(prediction.scores.values()) == pytest.approx(1.0)
    for result in (first, second):  # the search is the arm's training cost, also when its fit came from the cache
        training = json.loads((result.run.path / "training" / "tfidf.json").read_text())
        assert training["seconds"] > 0 and training["best_model"] == "logreg"


@pytest.mark.parametrize("task,rows", [
    ("classify", [{"text": f"story {i} about the {w}", "label": lab} for i in range(12) for w, lab in TOPICS.items()]),
    ("extract", [{"input": f"invoice {i} total {i * 3} euros", "output": json.dumps({"total": i * 3})}
                 for i in range(40)]),
    ("generate", [{"input": f"say hello to person {i}", "output": f"hello person {i}"} for i in range(40)]),
])
def test_local_arms_run_every_task_with_a_tiny_model(tmp_path, monkeypatch, tiny_model_dir, task, rows):
    """Zero-shot, few-shot and BM25 retrieval on a 2-layer random Llama: label scoring for classify,
    schema-constrained generation for extract, batched generation for generate; then a cached re-run."""
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = {"model": str(tiny_model_dir), "precision": "fp32", "batch_size": 4}
    config = {
        "name": "tiny", "data": {"path": "data.jsonl"}, "runs_dir": str(tmp_path / "runs"),
        "task": {"type": task, "max_new_tokens": 6, **({"json_schema": {"type": "object", "properties": {
            "total": {"type": "integer"}}, "required": ["total"]}} if task == "extract" else {})},
        "split": {"seed": 2, "max_test": 6},
        "arms": [{"name": "zs", "type": "zero_shot", **local}, {"name": "fs", "type": "few_shot", "k": 2, **local},
                 {"name": "rag", "type": "retrieval", "k": 2, "retriever": "bm25", **local}],
    }
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(config))
    experiment = load_experiment(tmp_path / "e.yaml")
    first = run_experiment(experiment, log=lambda m: None)
    assert first.failures == {} and set(first.metrics) == {"zs", "fs", "rag"}
    for name in ("zs", "fs", "rag"):
        predictions = PredictionStore(first.run.path / "predictions" / f"{name}.jsonl").done
        assert len(predictions) == 6
        sample = next(iter(predictions.values()))
        if task == "classify":
            assert sample.prediction in TOPICS.values() and set(sample.scores) == set(TOPICS.values())
        else:
            assert sample.completion_tokens > 0 and sample.prompt_tokens > 0
        if task == "extract":
            assert all(json.loads(p.prediction).keys() == {"total"} for p in predictions.values() if p.prediction)
    second = run_experiment(experiment, log=lambda m: None)
    assert second.cache_misses == 0 and second.cache_hits == 18
    assert {k: v["score"] for k, v in second.metrics.items()} == {k: v["score"] for k, v in first.metrics.items()}


def test_each_arm_gets_a_single_request_latency_probe_once(experiment_file, tmp_path, monkeypatch):
    """The probe sends N uncached single requests (+1 warm-up) per arm, the ensemble's is the sum of its
    members', the report's p50/p95 come from it, and a resumed run does not probe again."""
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    classical = {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}
    stats = ServerStats()
    with serve(responder, stats=stats) as base_url:
        experiment = load_experiment(experiment_file(base_url, [classical], latency_probe=5))
        first = run_experiment(experiment, log=lambda m: None)
        assert stats.requests == 48 + 2 * (5 + 1)  # the test set, then 5 probes and a warm-up per remote arm
        run_experiment(experiment, resume=first.run.path, log=lambda m: None)
        assert stats.requests == 60  # answers cached, probes already recorded
    records = {n: json.loads((first.run.path / "latency" / f"{n}.json").read_text())
               for n in ("remote-zs", "remote-fs", "vote", "tfidf")}
    assert all(r["requests"] == 5 and r["batch_size"] == 1 and len(r["seconds"]) == 5 for r in records.values())
    summed = [a + b for a, b in zip(records["remote-zs"]["seconds"], records["remote-fs"]["seconds"])]
    assert records["vote"]["seconds"] == pytest.approx(summed, abs=2e-6) and records["vote"]["sum_of"] == ["remote-zs", "remote-fs"]
    results = json.loads((first.run.path / "results.json").read_text())
    for name, record in records.items():
        latency = results["arms"][name]["latency"]
        assert latency["source"] == "probe" and latency["latency_p95_s"] == pytest.approx(record["p95_s"])
        assert latency["latency_p50_s"] == pytest.approx(record["p50_s"]) and latency["probe_cpus"] == record["cpus"]
        metrics = json.loads((first.run.path / "metrics.json").read_text())["arms"][name]
        assert metrics["latency_p50_s"] == pytest.approx(record["p50_s"])  # the CLI table shows the probe too
    assert "probe, 5 requests" in (first.run.path / "report.html").read_text()
