"""OpenAI conformance of what the server implements, and reproducible fine-tuning jobs.

- Every answer parses with the official `openai` client's typed models, validated strictly (pydantic
  `model_validate`, which refuses a missing required field), not only through the client's lenient parsing:
  chat (whole and streamed), completions, models, files, jobs, events and checkpoints.
- The files list takes OpenAI's `order`, `limit` up to 10,000 and an empty `after`; `integrations=[]` is
  accepted and a non-empty list refused naming the parameter; pause and resume map onto the engine's
  checkpointing, and checkpoints are listed.
- Two jobs with the same file, seed and hyperparameters give bitwise-identical adapters, although the first
  trains while the server samples answers (which reseeds torch's global generator) and the second is paused
  mid-training and resumed.

A real server on loopback over conftest's 2-layer random Llama, fp32.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai.types import Completion, FileDeleted, FileObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from test_finetune_api import chats, jsonl
from test_serve import client, server

from tunewise.serve.models import Loader, build_models

HI = [{"role": "user", "content": "hi there"}]
HYPER = {"n_epochs": 6, "batch_size": 4, "learning_rate_multiplier": 20}  # 3 steps an epoch, 18 in all


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


def wait(http: httpx.Client, job_id: str, done: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] not in done:
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.02)
    return job


def events(http: httpx.Client, job_id: str) -> list[dict]:
    return http.get(f"/v1/fine_tuning/jobs/{job_id}/events?limit=1000").json()["data"]


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def sse_chunks(text: str) -> list[dict]:
    blocks = [b.removeprefix("data: ") for b in text.split("\n\n") if b]
    assert blocks[-1] == "[DONE]"
    return [json.loads(b) for b in blocks[:-1]]


def test_the_openai_clients_typed_models_parse_every_answer_strictly(base, tiny_model_dir, tmp_path):
    name = tiny_model_dir.name
    with server(base, state_dir=tmp_path / "state", precision="fp32") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as http:
        chat = http.post("/v1/chat/completions", json={"model": name, "messages": HI, "max_tokens": 4}).json()
        parsed = ChatCompletion.model_validate(chat)
        assert chat["choices"][0]["message"]["refusal"] is None and parsed.choices[0].message.refusal is None
        streamed = http.post("/v1/chat/completions", json={"model": name, "messages": HI, "max_tokens": 4,
                                                           "stream": True, "stream_options": {"include_usage": True}})
        for chunk in sse_chunks(streamed.text):
            ChatCompletionChunk.model_validate(chunk)
        Completion.model_validate(http.post("/v1/completions", json={"model": name, "prompt": ["a", ""],
                                                                      "max_tokens": 3}).json())
        for model in http.get("/v1/models").json()["data"]:
            Model.model_validate(model)

        uploaded = FileObject.model_validate(http.post("/v1/files", data={"purpose": "fine-tune"},
                                                       files={"file": ("c.jsonl", jsonl(chats()))}).json())
        for listed in http.get("/v1/files").json()["data"]:
            FileObject.model_validate(listed)
        job = FineTuningJob.model_validate(http.post("/v1/fine_tuning/jobs", json={
            "model": name, "training_file": uploaded.id, "hyperparameters": {"n_epochs": 1, "batch_size": 4},
            "integrations": []}).json())
        done = FineTuningJob.model_validate(wait(http, job.id, {"succeeded", "failed"}))
        assert done.status == "succeeded", done.error
        for listed in http.get("/v1/fine_tuning/jobs").json()["data"]:
            FineTuningJob.model_validate(listed)
        assert all(FineTuningJobEvent.model_validate(e) for e in events(http, job.id))
        checkpoints = http.get(f"/v1/fine_tuning/jobs/{job.id}/checkpoints").json()
        assert [FineTuningJobCheckpoint.model_validate(c).step_number for c in checkpoints["data"]] == [3]
        assert checkpoints["data"][0]["fine_tuned_model_checkpoint"] == f"{done.fine_tuned_model}:ckpt-step-3"
        FileDeleted.model_validate(http.delete(f"/v1/files/{uploaded.id}").json())
        # and through the client's own calls, the methods OpenAI's SDK has for them
        api = client(url)
        assert [c.step_number for c in api.fine_tuning.jobs.checkpoints.list(job.id)] == [3]
        with pytest.raises(openai.BadRequestError, match="only a paused job"):
            api.fine_tuning.jobs.resume(job.id)


def test_files_list_order_limit_and_empty_after_as_openai_documents(base, tmp_path):
    with server(base, state_dir=tmp_path / "state") as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        ids = []
        for index in range(3):
            ids.append(http.post("/v1/files", data={"purpose": "fine-tune"},
                                 files={"file": (f"{index}.jsonl", jsonl(chats()))}).json()["id"])
        newest_first = [f["id"] for f in http.get("/v1/files").json()["data"]]
        assert sorted(newest_first) == sorted(ids)
        assert [f["id"] for f in http.get("/v1/files?order=asc").json()["data"]] == newest_first[::-1]
        assert [f["id"] for f in http.get("/v1/files?order=desc&after=").json()["data"]] == newest_first
        page = http.get(f"/v1/files?order=asc&limit=1&after={newest_first[-1]}").json()
        assert [f["id"] for f in page["data"]] == [newest_first[-2]] and page["has_more"]
        assert http.get("/v1/files?limit=10000").status_code == 200
        for query, param in (("limit=10001", "limit"), ("order=up", "order"), ("after=file-x", "after")):
            error = http.get(f"/v1/files?{query}").json()["error"]
            assert error["param"] == param, (query, error)


def test_integrations_are_accepted_empty_and_refused_otherwise(base, tiny_model_dir, tmp_path):
    with server(base, state_dir=tmp_path / "state") as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        file_id = http.post("/v1/files", data={"purpose": "fine-tune"},
                            files={"file": ("c.jsonl", jsonl(chats()))}).json()["id"]
        body = {"model": tiny_model_dir.name, "training_file": file_id, "hyperparameters": {"n_epochs": 1}}
        refused = http.post("/v1/fine_tuning/jobs", json={**body, "integrations": [{"type": "wandb", "wandb": {
            "project": "p"}}]})
        error = refused.json()["error"]
        assert refused.status_code == 400 and error["param"] == "integrations" and "send []" in error["message"]
        accepted = http.post("/v1/fine_tuning/jobs", json={**body, "integrations": []}).json()
        assert accepted["integrations"] == []
        wait(http, accepted["id"], {"succeeded", "failed"})


def sample_while(stop: threading.Event, url: str, name: str) -> None:
    """Sampled chat answers until `stop`: each batch reseeds torch's global generator on the batcher thread."""
    with httpx.Client(base_url=url, timeout=60) as http:
        seed = 0
        while not stop.is_set():
            seed += 1
            http.post("/v1/chat/completions", json={"model": name, "messages": HI, "max_tokens": 6,
                                                    "temperature": 1.0, "seed": seed})


def test_same_file_seed_and_hyperparameters_give_identical_adapters_paused_or_not(base, tiny_model_dir, tmp_path):
    name = tiny_model_dir.name
    state_dir = tmp_path / "state"
    with server(base, state_dir=state_dir, precision="fp32") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as http:
        file_id = http.post("/v1/files", data={"purpose": "fine-tune"},
                            files={"file": ("c.jsonl", jsonl(chats()))}).json()["id"]
        body = {"model": name, "training_file": file_id, "seed": 7, "hyperparameters": HYPER}
        stop = threading.Event()
        traffic = threading.Thread(target=sample_while, args=(stop, url, name), daemon=True)
        traffic.start()
        try:
            first = wait(http, http.post("/v1/fine_tuning/jobs", json=body).json()["id"], {"succeeded", "failed"})
        finally:
            stop.set()
            traffic.join(60)
        assert first["status"] == "succeeded", first["error"]

        second = http.post("/v1/fine_tuning/jobs", json=body).json()
        while (http.get(f"/v1/fine_tuning/jobs/{second['id']}").json().get("tunewise") or {}).get("step", 0) < 2:
            time.sleep(0.01)
        paused = http.post(f"/v1/fine_tuning/jobs/{second['id']}/pause").json()
        assert paused["status"] == "paused", paused
        deadline = time.monotonic() + 60
        while not any("Training paused at step" in e["message"] for e in events(http, second["id"])):
            assert time.monotonic() < deadline, "training did not stop"
            time.sleep(0.02)
        step = http.get(f"/v1/fine_tuning/jobs/{second['id']}").json()["tunewise"]["step"]
        assert 2 <= step < 18
        assert http.post(f"/v1/fine_tuning/jobs/{second['id']}/pause").status_code == 400  # already paused
        time.sleep(0.5)
        assert http.get(f"/v1/fine_tuning/jobs/{second['id']}").json()["status"] == "paused"  # it stays paused
        assert http.post(f"/v1/fine_tuning/jobs/{second['id']}/resume").json()["status"] == "queued"
        second = wait(http, second["id"], {"succeeded", "failed"})
        assert second["status"] == "succeeded", second["error"]
        messages = [e["message"] for e in events(http, second["id"])]
        assert f"Training: 18 step(s), resuming at step {step}" in messages, messages
        steps = [c["step_number"] for c in http.get(f"/v1/fine_tuning/jobs/{second['id']}/checkpoints").json()["data"]]
        assert step in steps and steps[0] == 18, steps

    a, b = (adapter_tensors(state_dir / "models" / job["id"]) for job in (first, second))
    assert sorted(a) == sorted(b) and a
    different = [key for key in a if not (a[key] == b[key]).all()]
    assert not different, f"{len(different)} of {len(a)} adapter tensors differ, e.g. {different[:3]}"
