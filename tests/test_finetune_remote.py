"""`provider: openai` fine-tuning arms, trained by tunewise's own fine-tuning API over real HTTP on loopback.

The arm uploads its splits with the official client, the server trains a LoRA adapter on the 2-layer random
Llama, and the arm scores the test split by chatting with the job's model: every step crosses the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError
from test_finetune_arm import _rows
from test_serve import server

from tunewise.arms.finetune import FinetuneArm
from tunewise.config import load_experiment
from tunewise.pipeline.experiment import run_experiment
from tunewise.serve.models import Loader, build_models


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


def experiment(tmp_path: Path, arm: dict) -> Path:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    config = {"name": "remote-ft", "data": {"path": "data.jsonl"}, "task": {"type": "classify", "max_new_tokens": 4},
              "split": {"seed": 3, "max_test": 12}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
              "arms": [{"name": "remote-lora", "type": "finetune", "provider": "openai", "prompt": "terse",
                        "max_train_examples": 24, "max_val_examples": 8,
                        "training": {"epochs": 2, "batch_size": 8, "seed": 5}, **arm}]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_arm_trains_at_tunewise_s_own_endpoint_and_scores_the_result(base, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    with server(base, state_dir=tmp_path / "state", precision="fp32") as (url, _):
        remote = {"base_url": f"{url}/v1", "api_key_env": None, "poll_interval_s": 0.1,
                  "learning_rate_multiplier": 20}
        config = load_experiment(experiment(tmp_path, {"model": tiny_model_dir.name, "remote": remote}))
        logs: list[str] = []
        first = run_experiment(config, log=logs.append)
        assert first.failures == {}, first.failures
        record = json.loads((first.run.path / "training" / "remote-lora.json").read_text())
        assert record["status"] == "succeeded" and record["train_examples"] == 24 and record["val_examples"] == 8
        model = record["fine_tuned_model"]
        assert model.startswith(f"ft:{tiny_model_dir.name}:remote-lora:")
        jobs = httpx.get(f"{url}/v1/fine_tuning/jobs").json()["data"]
        assert [j["id"] for j in jobs] == [record["job_id"]]
        assert jobs[0]["hyperparameters"] == {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 20}
        assert jobs[0]["seed"] == 5 and jobs[0]["validation_file"] == record["files"]["validation"]
        assert any("succeeded" in line for line in logs)

        # the predictions are the fine-tuned model's answers, as the endpoint gives them
        predictions = [json.loads(line) for line in
                       (first.run.path / "predictions" / "remote-lora.jsonl").read_text().splitlines()]
        assert len(predictions) == first.metrics["remote-lora"]["n"] and not any(p["error"] for p in predictions)
        from tunewise.data.formats import read_examples
        from tunewise.tasks import make_task

        train = read_examples(first.run.path / "splits" / "train.jsonl").examples
        task = make_task(config.task, train)
        example = next(e for e in read_examples(first.run.path / "splits" / "test.jsonl").examples
                       if e.id == predictions[0]["id"])
        direct = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
            "model": model, "messages": task.messages(example, (), "terse"), "max_tokens": 4, "temperature": 0})
        assert direct.json()["choices"][0]["message"]["content"] == predictions[0]["raw"]

        # resuming reuses the finished job: no second upload, no second job
        again = run_experiment(config, resume=first.run.path, log=lambda m: None)
        assert again.failures == {} and again.cache_misses == 0
        assert len(httpx.get(f"{url}/v1/fine_tuning/jobs").json()["data"]) == 1
        assert len(httpx.get(f"{url}/v1/files").json()["data"]) == 2


def test_endpoint_failures_end_the_arm_with_a_clear_message(base, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    with server(base, state_dir=tmp_path / "state") as (url, _):
        live = {"base_url": f"{url}/v1", "api_key_env": None, "poll_interval_s": 0.1}
        unknown = run_experiment(load_experiment(experiment(tmp_path, {"model": "no-such-base", "remote": live})),
                                 log=lambda m: None)
        assert "answered 404 to create the fine-tuning job" in unknown.failures["remote-lora"]
        assert "no-such-base" in unknown.failures["remote-lora"]
    down = {"base_url": url + "/v1", "api_key_env": None}  # the server has stopped
    failed = run_experiment(load_experiment(experiment(tmp_path, {"model": "m", "remote": down})), log=lambda m: None)
    assert "cannot reach" in failed.failures["remote-lora"] and "base_url" in failed.failures["remote-lora"]
    monkeypatch.delenv("TUNEWISE_TEST_UNSET_KEY", raising=False)
    keyless = {**down, "api_key_env": "TUNEWISE_TEST_UNSET_KEY"}
    missing = run_experiment(load_experiment(experiment(tmp_path, {"model": "m", "remote": keyless})),
                             log=lambda m: None)
    assert "$TUNEWISE_TEST_UNSET_KEY is not set" in missing.failures["remote-lora"]


@pytest.mark.parametrize(("arm", "message"), [
    ({"provider": "openai", "model": "m"}, "needs `remote`"),
    ({"provider": "openai", "remote": {"base_url": "http://x/v1"}}, "set `model`"),
    ({"provider": "openai", "model": "m", "remote": {"base_url": "http://x/v1"}, "search": {"trials": 2}}, "search"),
    ({"provider": "openai", "model": "m", "remote": {"base_url": "http://x/v1"}, "training": {"lora_r": 4}},
     "training.lora_r"),
    ({"provider": "openai", "model": "m", "remote": {"base_url": "http://x/v1"}, "method": "classifier"},
     "decided by the endpoint"),
    ({"model": "m", "remote": {"base_url": "http://x/v1"}}, "provider openai"),
])
def test_remote_training_settings_are_checked(arm, message):
    with pytest.raises(ValidationError, match=message.replace("$", r"\$").replace("`", ".")):
        FinetuneArm.model_validate({"name": "ft", "type": "finetune", **arm})


def test_a_saved_manifest_with_a_remote_arm_validates_again():
    arm = FinetuneArm.model_validate({"name": "ft", "type": "finetune", "provider": "openai", "model": "m",
                                      "training": {"epochs": 3, "batch_size": 4, "seed": 1},
                                      "remote": {"base_url": "http://127.0.0.1:9/v1", "learning_rate_multiplier": 2}})
    dumped = arm.model_dump(mode="json")
    assert FinetuneArm.model_validate(dumped).model_dump(mode="json") == dumped
