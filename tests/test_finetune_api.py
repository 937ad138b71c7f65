"""The fine-tuning API (files and jobs) with the official `openai` client against a real server on loopback.

The base model is the 2-layer random Llama of conftest; a job trains a real LoRA adapter on it in a few steps
(fp32, so answers compare exactly), the adapter is attached to the served base model, and the client chats
with it by the `fine_tuned_model` name the job returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from test_serve import client, server

from tunewise.serve.models import Loader, build_models

QUESTIONS = ["what colour is the sky", "name a colour", "pick one", "say something", "tell me a colour",
             "favourite colour?", "which colour", "one word please", "a colour now", "the answer?", "go on",
             "colour of the day"]
REPLY = "blue"


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def chats(reply: str = REPLY) -> list[dict]:
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": reply}]}
            for q in QUESTIONS]


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


def wait_for(api: openai.OpenAI, job_id: str, statuses: set[str], timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while True:
        job = api.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job.status} after {timeout} s"
        time.sleep(0.1)


def test_upload_train_and_chat_with_the_fine_tuned_model(base, tiny_model_dir, tmp_path):
    name = tiny_model_dir.name
    with server(base, state_dir=tmp_path / "state", precision="fp32") as (url, state):
        api = client(url)
        # the server answers while it trains: chat, streamed and not, and the model list
        before = api.chat.completions.create(model=name, messages=[{"role": "user", "content": QUESTIONS[0]}],
                                             max_tokens=4, temperature=0).choices[0].message.content
        uploaded = api.files.create(file=("colours.jsonl", jsonl(chats())), purpose="fine-tune")
        assert uploaded.id.startswith("file-") and uploaded.bytes == len(jsonl(chats()))
        assert (uploaded.filename, uploaded.purpose, uploaded.object) == ("colours.jsonl", "fine-tune", "file")
        assert api.files.retrieve(uploaded.id).bytes == uploaded.bytes
        assert api.files.content(uploaded.id).read() == jsonl(chats())
        assert [f.id for f in api.files.list()] == [uploaded.id]

        job = api.fine_tuning.jobs.create(model=name, training_file=uploaded.id, suffix="colours", seed=3,
                                          hyperparameters={"n_epochs": 4, "batch_size": 4,
                                                           "learning_rate_multiplier": 150})
        assert job.status == "validating_files" and job.fine_tuned_model is None
        hi = [{"role": "user", "content": "hi"}]
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in api.chat.completions.create(
            model=name, messages=hi, max_tokens=4, temperature=0, stream=True) if chunk.choices)
        # the stream carries the reply a plain request gets; a seed (ignored by greedy decoding) keeps that
        # request off the answer cache the stream has just filled, so it is generated afresh
        plain = api.chat.completions.create(model=name, messages=hi, max_tokens=4, temperature=0,
                                            extra_body={"seed": 2})
        assert not (getattr(plain, "tunewise", None) or {}).get("cached")
        assert streamed and streamed == plain.choices[0].message.content, (streamed, plain.choices[0].message.content)
        done = wait_for(api, job.id, {"succeeded", "failed", "cancelled"})
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model == f"ft:{name}:colours:{job.id[-8:]}"
        assert done.hyperparameters.n_epochs == 4 and done.trained_tokens > 0 and done.finished_at
        assert [j.id for j in api.fine_tuning.jobs.list()] == [job.id]

        events = list(api.fine_tuning.jobs.list_events(job.id, limit=100))
        statuses = [e.data["status"] for e in reversed(events) if e.data and "status" in e.data]
        assert statuses == ["queued", "running", "succeeded"]
        assert "Validating training file" in " ".join(e.message for e in events)
        losses = [e.data["train_loss"] for e in reversed(events) if e.type == "metrics" and "train_loss" in e.data]
        assert len(losses) >= 2 and losses[-1] < losses[0], losses
        assert len(api.fine_tuning.jobs.list_events(job.id, limit=2).data) == 2

        assert done.fine_tuned_model in [m.id for m in api.models.list().data]
        tuned = api.chat.completions.create(model=done.fine_tuned_model, max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": QUESTIONS[0]}])
        assert tuned.choices[0].message.content == REPLY, (before, tuned.choices[0].message.content)
        assert before != REPLY
        # the base model is unchanged by its new adapter (a seed, ignored by greedy decoding, misses the cache)
        again = api.chat.completions.create(model=name, messages=[{"role": "user", "content": QUESTIONS[0]}],
                                            max_tokens=4, temperature=0, extra_body={"seed": 1})
        assert again.choices[0].message.content == before
        adapter = tmp_path / "state" / "models" / job.id
        assert (adapter / "adapter_model.safetensors").is_file() and not list(adapter.rglob("*.bin"))
        assert not (tmp_path / "state" / "jobs" / job.id / "work").exists()  # checkpoints cleaned up
        with pytest.raises(openai.BadRequestError, match="already succeeded"):
            api.fine_tuning.jobs.cancel(job.id)


def test_bad_uploads_and_bad_jobs_are_refused_with_the_field_named(base, tiny_model_dir, tmp_path):
    name = tiny_model_dir.name
    rows = chats()
    rows[2] = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": ""}]}
    rows[6] = {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}
    with server(base, state_dir=tmp_path / "state", max_upload_bytes=4096) as (url, _):
        api = client(url)
        with pytest.raises(openai.BadRequestError) as bad:
            api.files.create(file=("bad.jsonl", jsonl(rows)), purpose="fine-tune")
        error = bad.value.body
        assert (error["param"], error["code"]) == ("file", "invalid_training_file")
        assert "line 3, field messages[1].content" in error["message"] and "Fix:" in error["message"]
        assert "line 7, field messages[0].role" in error["message"]
        assert api.files.list().data == []  # nothing kept
        with pytest.raises(openai.BadRequestError, match="purpose"):
            api.files.create(file=("a.jsonl", jsonl(chats())), purpose="assistants")
        few = api.files.create(file=("few.jsonl", jsonl(chats()[:3])), purpose="fine-tune")  # fine as validation
        with pytest.raises(openai.APIStatusError) as big:
            api.files.create(file=("big.jsonl", b"x" * 80_000), purpose="fine-tune")
        assert big.value.status_code == 413 and big.value.body["code"] == "file_too_large"
        good = api.files.create(file=("ok.jsonl", jsonl(chats())), purpose="fine-tune")

        cases = [  # (job parameters, status, param)
            ({"model": "nope", "training_file": good.id}, 404, "model"),
            ({"model": name, "training_file": "file-000000000000000000000000"}, 404, "training_file"),
            ({"model": name, "training_file": good.id, "validation_file": "x"}, 404, "validation_file"),
            ({"model": name, "training_file": good.id, "hyperparameters": {"n_epochs": 0}}, 400,
             "hyperparameters.n_epochs"),
            ({"model": name, "training_file": good.id, "hyperparameters": {"n_epoch": 2}}, 400,
             "hyperparameters.n_epoch"),
            ({"model": name, "training_file": good.id, "hyperparameters": {"learning_rate_multiplier": "2"}}, 400,
             "hyperparameters.learning_rate_multiplier"),
            ({"model": name, "training_file": good.id, "suffix": "no spaces"}, 400, "suffix"),
            ({"model": name, "training_file": good.id, "method": {"type": "dpo"}}, 400, "method.type"),
            ({"model": name}, 400, "training_file"),
            ({"model": name, "training_file": few.id}, 400, "training_file"),  # at least 10 examples to train
        ]
        with httpx.Client(base_url=url, timeout=30) as http:
            for body, status, param in cases:
                response = http.post("/v1/fine_tuning/jobs", json=body)
                assert (response.status_code, response.json()["error"]["param"]) == (status, param), (body, response.text)
            assert http.get("/v1/fine_tuning/jobs/ftjob-nothing").json()["error"]["code"] == \
                "fine_tuning_job_not_found"
            assert http.get("/v1/files/../../etc/passwd").status_code == 404
            assert http.get("/v1/fine_tuning/jobs?limit=0").json()["error"]["param"] == "limit"
            assert http.post("/v1/files", content=b"not a form",
                             headers={"content-type": "text/plain"}).json()["error"]["param"] == "file"
        assert api.fine_tuning.jobs.list().data == []
        assert api.files.delete(good.id).deleted and [f.id for f in api.files.list()] == [few.id]


def test_cancel_stops_training_and_registers_no_model(base, tiny_model_dir, tmp_path):
    with server(base, state_dir=tmp_path / "state", precision="fp32") as (url, state):
        api = client(url)
        uploaded = api.files.create(file=("colours.jsonl", jsonl(chats())), purpose="fine-tune")
        job = api.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=uploaded.id,
                                          method={"type": "supervised", "supervised": {"hyperparameters": {
                                              "n_epochs": 50, "batch_size": 1}}})
        running = wait_for(api, job.id, {"running", "failed"})
        assert running.status == "running"
        while not any(e.type == "metrics" for e in api.fine_tuning.jobs.list_events(job.id, limit=100)):
            time.sleep(0.1)  # a step trained
        cancelled = api.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
        deadline = time.monotonic() + 60
        while not any("stopped at step" in e.message for e in api.fine_tuning.jobs.list_events(job.id, limit=100)):
            assert time.monotonic() < deadline, "training did not stop"
            time.sleep(0.1)
        stopped = next(e for e in api.fine_tuning.jobs.list_events(job.id) if "stopped at step" in e.message)
        step = int(stopped.message.split("stopped at step ")[1].split()[0])
        assert 0 < step < 50 * len(QUESTIONS)
        assert api.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
        assert [m.id for m in api.models.list().data] == [tiny_model_dir.name]
        assert not (tmp_path / "state" / "models" / job.id).exists()


SLOW_EPOCHS = 20


@pytest.mark.slow  # two servers in turn and a 60-step job
def test_jobs_survive_a_restart_and_an_interrupted_one_resumes(base, tiny_model_dir, tmp_path):
    """The first server stops mid-training (its worker pauses the job with a checkpoint, as a crash would leave
    it `running` on disk); a second server on the same state folder resumes the job to success and serves the
    model, and still serves the model of a job that had finished before."""
    state_dir = tmp_path / "state"
    hyper = {"n_epochs": 1, "batch_size": 4}  # 3 steps an epoch
    with server(base, state_dir=state_dir, precision="fp32") as (url, _):
        api = client(url)
        uploaded = api.files.create(file=("colours.jsonl", jsonl(chats())), purpose="fine-tune")
        first = api.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=uploaded.id, hyperparameters=hyper)
        first = wait_for(api, first.id, {"succeeded", "failed"})
        assert first.status == "succeeded"
        # enough steps that the job cannot finish between the poll below and the server's shutdown, even on
        # an idle machine where a tiny-model step takes ~0.2 s
        slow = api.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=uploaded.id, suffix="slow",
                                           hyperparameters={**hyper, "n_epochs": SLOW_EPOCHS})
        while (getattr(api.fine_tuning.jobs.retrieve(slow.id), "tunewise", None) or {}).get("step", 0) < 2:
            time.sleep(0.1)
    on_disk = json.loads((state_dir / "jobs" / slow.id / "job.json").read_text())
    assert on_disk["status"] == "running"
    paused_at = on_disk["tunewise"]["step"]
    assert 2 <= paused_at < SLOW_EPOCHS * 3
    with server(base, state_dir=state_dir, precision="fp32") as (url, _):
        api = client(url)
        assert api.files.retrieve(uploaded.id).bytes == len(jsonl(chats()))
        assert {first.fine_tuned_model, tiny_model_dir.name} <= {m.id for m in api.models.list().data}
        done = wait_for(api, slow.id, {"succeeded", "failed"})
        assert done.status == "succeeded", done.error
        messages = [e.message for e in api.fine_tuning.jobs.list_events(slow.id, limit=100)]
        assert any("paused at step" in m for m in messages) and any("restarted" in m for m in messages)
        assert f"Training: {SLOW_EPOCHS * 3} step(s), resuming at step {paused_at}" in messages
        assert done.fine_tuned_model in {m.id for m in api.models.list().data}
        reply = api.chat.completions.create(model=done.fine_tuned_model, max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": QUESTIONS[1]}])
        assert reply.choices[0].finish_reason in ("stop", "length")


def test_the_api_is_off_without_a_state_folder(base):
    with server(base) as (url, _):
        response = httpx.get(f"{url}/v1/fine_tuning/jobs")
        assert response.status_code == 404 and "--state-dir" in response.json()["error"]["message"]
        assert httpx.post(f"{url}/v1/files").json()["error"]["code"] == "finetuning_disabled"


def start_cli_server(model_dir: Path, state_dir: Path) -> tuple[subprocess.Popen, str]:
    """`tunewise serve` in its own process (so it can be killed for real); returns it and its root URL."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "TUNEWISE_API_KEYS": ""}
    process = subprocess.Popen([sys.executable, "-m", "tunewise.cli", "serve", "--model", str(model_dir), "--port", "0",
                                "--precision", "fp32", "--state-dir", str(state_dir)],
                               stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        assert line or process.poll() is None, "the server exited before listening"
        if "listening on" in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # keep the pipe drained
            return process, line.split("listening on", 1)[1].strip().removesuffix("/v1")
    process.kill()
    raise AssertionError("the server did not start")


@pytest.mark.subprocess
def test_a_job_killed_mid_training_resumes_from_its_checkpoint_in_a_new_process(tiny_model_dir, tmp_path):
    state_dir = tmp_path / "state"
    process, url = start_cli_server(tiny_model_dir, state_dir)
    try:
        api = client(url)
        uploaded = api.files.create(file=("colours.jsonl", jsonl(chats())), purpose="fine-tune")
        job = api.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=uploaded.id, hyperparameters={
            "n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 150})  # 3 steps an epoch, a checkpoint each
        deadline = time.monotonic() + 120
        while (getattr(api.fine_tuning.jobs.retrieve(job.id), "tunewise", None) or {}).get("step", 0) < 4:
            assert time.monotonic() < deadline, "training did not pass its first checkpoint"
            time.sleep(0.05)
        process.kill()  # SIGKILL: no chance to pause or save anything
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.loads((state_dir / "jobs" / job.id / "job.json").read_text())["status"] == "running"
    process, url = start_cli_server(tiny_model_dir, state_dir)
    try:
        api = client(url)
        done = wait_for(api, job.id, {"succeeded", "failed", "cancelled"})
        assert done.status == "succeeded", done.error
        messages = [e.message for e in api.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any("restarted" in m for m in messages)
        resumed = next(m for m in messages if "resuming at step" in m)
        assert int(resumed.rsplit(" ", 1)[1]) >= 3, resumed
        reply = api.chat.completions.create(model=done.fine_tuned_model, max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": QUESTIONS[2]}])
        assert reply.choices[0].message.content == REPLY
    finally:
        process.terminate()
        process.wait(timeout=60)
