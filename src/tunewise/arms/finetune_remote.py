"""A fine-tuned arm trained by an OpenAI-compatible fine-tuning endpoint (`provider: openai`).

The arm sends the same conversations a local fine-tune would learn (the task's prompt, then the reference as
the assistant reply; `finetune.training_examples`) as chat JSONL through the official `openai` client: it
uploads the training and validation splits, creates a supervised job, follows it (events into the log, steps
into the progress bar), then scores the test split by chatting with the job's model through the remote
backend, exactly as a `remote` arm scores an API model.

Completed work is never redone: the job id is written to `training/<arm>.json` as soon as the job exists, so
an interrupted run follows the same job on `--resume` instead of paying for a second one, and a finished job's
model is reused. Endpoint failures end the arm with a message that names the endpoint, the call and the fix.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tunewise.arms.context import ArmContext
from tunewise.arms.remote import RemoteArm
from tunewise.schema import Example, Prediction
from tunewise.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from tunewise.arms.finetune import FinetuneArm

TERMINAL = ("succeeded", "failed", "cancelled")


class RemoteFinetuneError(RuntimeError):
    """The endpoint refused or failed the upload, the job or the wait; the message says which and why."""


def chat_jsonl(examples: list[Example]) -> bytes:
    """OpenAI's fine-tuning format: one {"messages": [...]} per line, nothing else (ids stay here)."""
    return "".join(json.dumps({"messages": [m.to_dict() for m in e.messages]}, ensure_ascii=False) + "\n"
                   for e in examples).encode("utf-8")


def _client(arm: FinetuneArm) -> Any:
    import openai

    remote = arm.remote
    assert remote is not None  # the config requires it for provider openai
    key = "no-key"  # local servers ignore the key, but the client refuses to start without one
    if remote.api_key_env is not None:
        key = os.environ.get(remote.api_key_env, "")
        if not key:
            raise RemoteFinetuneError(f"arm {arm.name}: the API key variable ${remote.api_key_env} is not set. Fix: "
                                      "export it, or set remote.api_key_env: null for an endpoint without keys")
    return openai.OpenAI(base_url=remote.base_url, api_key=key, timeout=remote.request_timeout_s, max_retries=2)


def _call(arm: FinetuneArm, what: str, call: Callable[[], Any]) -> Any:
    """One endpoint call, its failure turned into a RemoteFinetuneError that names the call and the endpoint."""
    import openai

    where = arm.remote.base_url if arm.remote else "?"
    try:
        return call()
    except openai.AuthenticationError:
        raise RemoteFinetuneError(f"arm {arm.name}: {where} refused the API key while trying to {what}. Fix: check "
                                  f"${arm.remote.api_key_env if arm.remote else ''}") from None
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or (body.get("error") or {}).get("message") or error.message
        raise RemoteFinetuneError(f"arm {arm.name}: {where} answered {error.status_code} to {what}: {message}") from None
    except openai.APIConnectionError as error:
        raise RemoteFinetuneError(f"arm {arm.name}: cannot reach {where} to {what} ({error.__cause__ or error}). "
                                  "Fix: check remote.base_url and that the server is up") from None


def _write(ctx: ArmContext, arm: FinetuneArm, record: dict[str, Any]) -> None:
    atomic_write_text(ctx.run_dir / "training" / f"{arm.name}.json", json.dumps(record, indent=2) + "\n")


def _start(arm: FinetuneArm, ctx: ArmContext, client: Any, train: list[Example], val: list[Example]) -> dict[str, Any]:
    """Upload the splits and create the job; the record is on disk before anything else can fail."""
    remote = arm.remote
    assert remote is not None
    files = {}
    for split, examples in (("train", train), ("validation", val)):
        if examples:
            content = (f"{arm.name}-{split}.jsonl", chat_jsonl(examples))
            uploaded = _call(arm, f"upload the {split} split",
                             lambda content=content: client.files.create(file=content, purpose="fine-tune"))
            files[split] = uploaded.id
            ctx.log(f"{arm.name}: uploaded {len(examples)} {split} examples as {uploaded.id}")
    hyper: dict[str, Any] = {"n_epochs": arm.training.epochs, "batch_size": arm.training.batch_size,
                             "learning_rate_multiplier": remote.learning_rate_multiplier or "auto"}
    job = _call(arm, "create the fine-tuning job", lambda: client.fine_tuning.jobs.create(
        model=arm.model, training_file=files["train"], validation_file=files.get("validation"),
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        suffix=remote.suffix or arm.name.replace(".", "-").replace("@", "-")[:40], seed=arm.training.seed))
    record = {"provider": "openai", "method": "remote", "base_url": remote.base_url, "model": arm.model, "job_id": job.id,
              "status": job.status, "files": files, "hyperparameters": hyper, "train_examples": len(train),
              "val_examples": len(val), "started": time.time()}
    _write(ctx, arm, record)
    ctx.log(f"{arm.name}: fine-tuning job {job.id} created at {remote.base_url} on {arm.model}")
    return record


def _follow(arm: FinetuneArm, ctx: ArmContext, client: Any, record: dict[str, Any]) -> Any:
    """Poll the job until it ends: new events go to the log, metric events move the progress bar."""
    remote = arm.remote
    assert remote is not None
    job_id = record["job_id"]
    seen: set[str] = set()
    estimate = arm.training.epochs * math.ceil(record["train_examples"] / arm.training.batch_size)
    deadline = time.monotonic() + remote.job_timeout_s
    done = 0
    with ctx.progress(f"{arm.name} (remote train)", estimate) as advance:
        while True:
            job = _call(arm, f"read job {job_id}", lambda: client.fine_tuning.jobs.retrieve(job_id))
            page = _call(arm, f"read the events of job {job_id}",
                         lambda: client.fine_tuning.jobs.list_events(job_id, limit=100))
            for event in reversed(page.data):  # the endpoint lists newest first
                if event.id in seen:
                    continue
                seen.add(event.id)
                step = (event.data or {}).get("step") if event.type == "metrics" else None
                if isinstance(step, int) and step > done:
                    advance(min(step, estimate) - min(done, estimate))
                    done = step
                else:
                    ctx.log(f"{arm.name}: {event.message}")
            if job.status in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise RemoteFinetuneError(f"arm {arm.name}: job {job_id} is still {job.status} after "
                                          f"{remote.job_timeout_s:g} s (remote.job_timeout_s); it keeps running at "
                                          f"{remote.base_url}. Fix: re-run with --resume to follow it again")
            time.sleep(remote.poll_interval_s)


def _trained_model(arm: FinetuneArm, ctx: ArmContext, train: list[Example], val: list[Example]) -> str:
    path = ctx.run_dir / "training" / f"{arm.name}.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if record.get("status") == "succeeded" and record.get("fine_tuned_model"):
        return str(record["fine_tuned_model"])
    client = _client(arm)
    if not record.get("job_id") or record.get("status") in ("failed", "cancelled") \
            or record.get("base_url") != arm.remote.base_url:  # type: ignore[union-attr]
        record = _start(arm, ctx, client, train, val)
    else:
        ctx.log(f"{arm.name}: following fine-tuning job {record['job_id']} started earlier")
    job = _follow(arm, ctx, client, record)
    record |= {"status": job.status, "fine_tuned_model": job.fine_tuned_model, "trained_tokens": job.trained_tokens,
               # wall time only: the endpoint bills training by tokens, so no local machine cost is implied
               "wall_seconds": round(time.time() - record.get("started", time.time()), 3),
               "error": job.error.model_dump() if job.error else None}
    _write(ctx, arm, record)
    if job.status != "succeeded" or not job.fine_tuned_model:
        reason = f": {job.error.message} ({job.error.code})" if job.error else ""
        raise RemoteFinetuneError(f"arm {arm.name}: fine-tuning job {job.id} at {arm.remote.base_url} ended "  # type: ignore[union-attr]
                                  f"{job.status}{reason}")
    ctx.log(f"{arm.name}: job {job.id} succeeded; scoring {job.fine_tuned_model}")
    return str(job.fine_tuned_model)


def run(arm: FinetuneArm, ctx: ArmContext, max_new_tokens: int, train: list[Example],
        val: list[Example]) -> list[Prediction]:
    """Train remotely on `train`/`val` (already rendered as conversations), then score the test split there."""
    from tunewise.arms.prompted import run_prompted
    from tunewise.arms.remote import RemoteChat
    from tunewise.models.remote import RemoteLM

    model = _trained_model(arm, ctx, train, val)
    remote = arm.remote
    assert remote is not None
    scoring = RemoteArm(name=arm.name, type="remote", base_url=remote.base_url, model=model,
                        api_key_env=remote.api_key_env, concurrency=remote.concurrency,
                        timeout_s=remote.request_timeout_s, retries=remote.retries, max_tokens=max_new_tokens)
    lm = RemoteLM(remote.base_url, model, api_key_env=remote.api_key_env, concurrency=remote.concurrency,
                  timeout_s=remote.request_timeout_s, retries=remote.retries)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, (), arm.prompt), RemoteChat(lm, scoring),
                        chunk=max(64, remote.concurrency * 8))
