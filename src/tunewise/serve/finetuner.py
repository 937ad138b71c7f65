"""The training side of the fine-tuning API: one job at a time, on a background thread, with the real engine.

A job is LoRA supervised fine-tuning (`train/sft.py`, assistant tokens only) of a base model this server
serves, on an uploaded chat file. Training runs on its own thread while the server keeps answering; a
Trainer callback turns the job's progress into events (steps, losses) and stops training at the next step
when the job is cancelled (nothing is exported or registered) or the server shuts down (a checkpoint is
written first). On success the adapter is exported as safetensors under `STATE/models/<job id>/` and attached
to the base model's engine on the batcher thread (the only thread that touches an engine), so the returned
`fine_tuned_model` name answers on /v1/chat/completions before the job says `succeeded`.

Pause and resume use the engine's SIGTERM-safe stop: a paused running job writes a checkpoint at the end of
its current step and stops; resume queues it again and the engine continues from that checkpoint. Each sealed
checkpoint is recorded (GET .../checkpoints).

Restart policy: the job store is on disk. Jobs that were validating or queued are taken up again; a job that
was running resumes from its last complete checkpoint (the engine's resume gives the weights an uninterrupted
run would have), and says so in its events; a paused job stays paused. Succeeded jobs' models are served
again, if their base model is.

Reproducibility: the same file, seed and hyperparameters give bitwise-identical adapters on CPU, paused and
resumed or not. Training here shares the process with the batcher thread, whose every generate call reseeds
torch's global generator; so jobs train without LoRA dropout (`LORA_DROPOUT`: then no training step draws from
that generator) and the engine draws the adapters' initial weights from a generator of their own.
Knows nothing about HTTP.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunewise.serve.files import FileStore
from tunewise.serve.jobs import TERMINAL, JobStore
from tunewise.serve.models import ServedModel

log = logging.getLogger("tunewise.serve.finetune")
BASE_LEARNING_RATE = 2e-4  # the engine's LoRA default; learning_rate_multiplier scales it
AUTO_EPOCHS = 3
AUTO_BATCH = 8
LORA_DROPOUT = 0.0  # see the module docstring: dropout would draw from the generator the batcher reseeds

EngineCall = Callable[[Callable[[], Any]], Any]


class JobConflict(ValueError):
    """The job cannot do what was asked in its current state (e.g. cancel a finished job)."""


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """`ft:<base>:<suffix>:<id tail>`, OpenAI's shape without the organisation part."""
    return ":".join(["ft", base, *([suffix] if suffix else []), job_id[-8:]])


def trainable(served: ServedModel | None) -> str | None:
    """Why `served` cannot be the base of a job (None when it can): only plain served causal LMs can."""
    if served is None:
        return "is not served here"
    if served.engine is None or served.kind != "lm":
        return "is not a causal language model"
    if served.adapter is not None or served.prompt is not None or served.labels is not None:
        base = served.extra.get("base_model") or Path(served.engine.lm.name).name
        return f"is an adapter or an evaluated arm, not a base model; fine-tune its base model ({base}) instead"
    return None


def resolve_hyperparameters(given: dict[str, Any], examples: int) -> dict[str, Any]:
    """OpenAI's `auto` values made concrete for `examples` training examples."""
    n_epochs = given.get("n_epochs", "auto")
    batch_size = given.get("batch_size", "auto")
    multiplier = given.get("learning_rate_multiplier", "auto")
    return {"n_epochs": AUTO_EPOCHS if n_epochs == "auto" else int(n_epochs),
            "batch_size": max(1, min(AUTO_BATCH, examples)) if batch_size == "auto" else int(batch_size),
            "learning_rate_multiplier": 1.0 if multiplier == "auto" else float(multiplier)}


class _Stop:
    """Why training should stop at the next step, if it should: set by cancel, pause and shutdown."""

    def __init__(self) -> None:
        self.cancel: set[str] = set()
        self.shutdown = threading.Event()
        self.halt: dict[str, threading.Event] = {}  # per job: checkpoint at the end of this step, then stop
        self.halted: set[str] = set()  # jobs whose training a halt stopped before its last step

    def halt_event(self, job_id: str) -> threading.Event:
        event = self.halt.setdefault(job_id, threading.Event())
        if self.shutdown.is_set():
            event.set()
        return event


class FineTuner:
    """Validates, queues and trains jobs; registers what they produce as served models."""

    def __init__(self, state_dir: Path, files: FileStore, jobs: JobStore, models: dict[str, ServedModel],
                 on_engine: EngineCall, precision: str = "auto") -> None:
        self.files = files
        self.jobs = jobs
        self.models = models
        self.models_root = Path(state_dir) / "models"
        self.models_root.mkdir(parents=True, exist_ok=True)
        self.on_engine = on_engine
        self.precision = precision
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = _Stop()
        self._lock = threading.Lock()
        self._committing: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="tunewise-finetune", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Serve what earlier jobs trained, take up unfinished jobs (oldest first), start the worker."""
        for job in reversed(self.jobs.all()):
            if job["status"] == "succeeded" and job.get("fine_tuned_model"):
                try:
                    self._register(job)
                except Exception as error:  # noqa: BLE001 - one unusable model must not stop the server
                    log.warning("not serving %s of job %s: %s", job["fine_tuned_model"], job["id"], error)
            elif job["status"] not in TERMINAL and job["status"] != "paused":
                if job["status"] == "running":
                    self.jobs.transition(job["id"], "queued", "The server restarted while this job was training; "
                                         "it resumes from its last complete checkpoint")
                self.submit(job["id"])
        self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Stop training at the next step (checkpoint written; the job resumes on restart) and end the worker."""
        self._stop.shutdown.set()
        for event in list(self._stop.halt.values()):
            event.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job that has not finished; a running one stops training at its next step."""
        with self._lock:
            job = self.jobs.get(job_id)
            assert job is not None  # the route looked it up
            if job["status"] in TERMINAL or job_id in self._committing:
                raise JobConflict(f"job {job_id} has already {'finished' if job_id in self._committing else job['status']};"
                                  " only a job that is validating, queued, running or paused can be cancelled")
            self._stop.cancel.add(job_id)
            self.jobs.transition(job_id, "cancelled", "Job cancelled"
                                 + (": training stops at the next step" if job["status"] == "running" else ""))
        if job["status"] == "paused":
            self.submit(job_id)  # the worker removes its checkpoints (after any training of it has stopped)
        return self.jobs.get(job_id) or job

    def pause(self, job_id: str) -> dict[str, Any]:
        """Pause a queued or running job; a running one checkpoints at the end of its step and stops."""
        with self._lock:
            job = self.jobs.get(job_id)
            assert job is not None  # the route looked it up
            if job["status"] not in ("queued", "running") or job_id in self._committing:
                state = "finishing" if job_id in self._committing else job["status"]
                raise JobConflict(f"job {job_id} is {state}; only a queued or running job can be paused")
            self._stop.halt_event(job_id).set()
            self.jobs.transition(job_id, "paused", "Job paused" + (": training stops at the end of this step with "
                                                                   "a checkpoint" if job["status"] == "running"
                                                                   else ""))
        return self.jobs.get(job_id) or job

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a paused job again; its training continues from its last checkpoint."""
        with self._lock:
            job = self.jobs.get(job_id)
            assert job is not None  # the route looked it up
            if job["status"] != "paused":
                raise JobConflict(f"job {job_id} is {job['status']}; only a paused job can be resumed")
            self._stop.halt.pop(job_id, None)
            self.jobs.transition(job_id, "queued", "Job resumed: training continues from its last checkpoint")
        self.submit(job_id)
        return self.jobs.get(job_id) or job

    # ------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None:
            if self._stop.shutdown.is_set():
                return
            try:
                self._process(job_id)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one job
                log.exception("fine-tuning job %s failed", job_id)
                self.jobs.transition(job_id, "failed", f"Job failed: {type(error).__name__}: {error}", level="error",
                                     error={"code": "training_failed", "param": None,
                                            "message": f"{type(error).__name__}: {error}"})

    def _fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        self.jobs.transition(job_id, "failed", f"Job failed: {message}", level="error",
                             error={"code": code, "message": message, "param": param})

    def _process(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job["status"] == "cancelled":
            shutil.rmtree(self.jobs.folder(job_id) / "work", ignore_errors=True)
        if job is None or job["status"] in TERMINAL or job["status"] == "paused":
            return
        examples = self._validate(job)
        if examples is None:
            return
        train, val = examples
        if job["status"] == "validating_files":
            hyper = resolve_hyperparameters(job["hyperparameters"], len(train))
            job = self.jobs.update(job_id, hyperparameters=hyper,
                                   method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
            if not self.jobs.transition(job_id, "queued", f"Files validated: {len(train)} training and {len(val)} "
                                        "validation example(s). Job queued"):
                return  # cancelled meanwhile
        self._train(self.jobs.get(job_id) or job, train, val)

    def _validate(self, job: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        """The job's examples, or None after failing the job with the reason."""
        from tunewise.data.formats import read_examples

        problem = trainable(self.models.get(job["model"]))
        if problem is not None:
            self._fail(job["id"], "model_not_found", f"the base model {job['model']!r} {problem}", "model")
            return None
        parts = []
        for param in ("training_file", "validation_file"):
            file_id = job.get(param)
            if file_id is None:
                parts.append([])
                continue
            if self.files.get(file_id) is None:
                self._fail(job["id"], "invalid_file", f"{param} {file_id} no longer exists on this server", param)
                return None
            data = read_examples(self.files.data_path(file_id), fmt="jsonl")
            if data.error_lines:  # checked at upload, so only a file changed on disk gets here
                self._fail(job["id"], "invalid_file", f"{param} {file_id} has {len(data.error_lines)} line(s) with "
                           "errors; upload it again", param)
                return None
            parts.append(list(data.examples))
        return parts[0], parts[1]

    def _settings(self, job: dict[str, Any], context_length: int) -> Any:
        from tunewise.train.settings import SFTSettings

        hyper = job["hyperparameters"]
        return SFTSettings(method="lora", epochs=hyper["n_epochs"], batch_size=hyper["batch_size"],
                           learning_rate=BASE_LEARNING_RATE * hyper["learning_rate_multiplier"],
                           seed=job["seed"], precision=self.precision, max_length=min(512, context_length),
                           lora_dropout=LORA_DROPOUT)

    def _train(self, job: dict[str, Any], train: list[Any], val: list[Any]) -> None:
        from tunewise.train.sft import SFTError, train_sft, write_info

        job_id = job["id"]
        base = self.models[job["model"]]
        assert base.engine is not None  # checked by _validate
        if not self.jobs.transition(job_id, "running", "Fine-tuning started"):
            return
        work = self.jobs.folder(job_id) / "work"
        halt = self._stop.halt_event(job_id)
        try:
            result = train_sft(train, val, self._settings(job, base.engine.context_length), base.engine.lm.name,
                               work, callbacks=[*self._callbacks(job_id, halt)],
                               log=lambda message: self.jobs.event(job_id, message))
        except SFTError as error:
            self._fail(job_id, "invalid_training_data", str(error), "training_file")
            return
        if self._stopped(job_id, f"step {result.info.steps}", work):
            return
        with self._lock:
            if job_id in self._stop.cancel:  # cancelled between the last step and here
                shutil.rmtree(work, ignore_errors=True)
                return
            if (self.jobs.get(job_id) or {}).get("status") == "paused":  # paused after its last step
                self.jobs.event(job_id, "Training paused after its last step; resume finishes the job")
                return
            self._committing.add(job_id)
        try:
            folder = self.models_root / job_id
            result.export(folder, merged=False, extra={"job": job_id, "base_served_name": job["model"]})
            write_info(result.info, self.jobs.folder(job_id) / "training.json")
            name = fine_tuned_name(job["model"], job.get("user_provided_suffix"), job_id)
            job = self.jobs.update(job_id, fine_tuned_model=name,
                                   trained_tokens=round(result.info.tokens * max(result.info.epochs_run, 1)))
            self._register(job)
            last = next((p for p in reversed(result.info.history) if p.train_loss is not None), None)
            self.jobs.transition(job_id, "succeeded", f"Fine-tuning succeeded after {result.info.steps} step(s) in "
                                 f"{result.info.seconds:.1f} s ({result.info.precision})"
                                 + (f", final training loss {last.train_loss:.4f}" if last else "")
                                 + f". New model: {name}")
        finally:
            with self._lock:
                self._committing.discard(job_id)
        shutil.rmtree(work, ignore_errors=True)

    def _stopped(self, job_id: str, steps: str, work: Path) -> bool:
        """Whether training ended early (cancel, pause, shutdown), each said in the job's events."""
        if job_id in self._stop.cancel:
            self.jobs.event(job_id, f"Training stopped at {steps} after cancellation; nothing was kept")
            shutil.rmtree(work, ignore_errors=True)
            return True
        if job_id not in self._stop.halted:
            return False
        self._stop.halted.discard(job_id)
        if self._stop.shutdown.is_set():
            self.jobs.event(job_id, f"The server is stopping: training paused at {steps} with a checkpoint; the job "
                                    "resumes when the server starts again")
        else:
            self.jobs.event(job_id, f"Training paused at {steps} with a checkpoint; resume continues from it")
        return True

    def _callbacks(self, job_id: str, halt: threading.Event) -> list[Any]:
        """The engine's SIGTERM-safe stop driven by `halt` (it also keeps a stop from adding an epoch's
        evaluation and save), then this job's events."""
        from tunewise.train.scaffold import stop_on_sigterm

        return [stop_on_sigterm(halt), self._callback(job_id, halt)]

    def _callback(self, job_id: str, halt: threading.Event) -> Any:
        from transformers import TrainerCallback

        jobs, stop = self.jobs, self._stop

        class JobEvents(TrainerCallback):
            """Losses as metrics events; a cancel or shutdown stops training at the end of the current step."""

            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                jobs.update(job_id, tunewise={"step": state.global_step, "total_steps": state.max_steps})
                jobs.event(job_id, f"Training: {state.max_steps} step(s)"
                           + (f", resuming at step {state.global_step}" if state.global_step else ""),
                           data={"step": state.global_step, "total_steps": state.max_steps})

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                jobs.update(job_id, tunewise={"step": state.global_step, "total_steps": state.max_steps})
                if job_id in stop.cancel:
                    control.should_training_stop = True
                elif halt.is_set() and state.global_step < state.max_steps:
                    stop.halted.add(job_id)  # stop_on_sigterm(halt) saves the checkpoint to resume from

            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                losses = {"train_loss": "loss", "valid_loss": "eval_loss"}
                metrics = {name: float(line[key]) for line in state.log_history for name, key in losses.items()
                           if key in line}  # the last logged value of each
                jobs.checkpoint(job_id, state.global_step, metrics)

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
                logs = logs or {}
                data = {"step": state.global_step, "total_steps": state.max_steps}
                if "loss" in logs:
                    data["train_loss"] = float(logs["loss"])
                if "eval_loss" in logs:
                    data["valid_loss"] = float(logs["eval_loss"])
                if len(data) > 2:
                    losses = ", ".join(f"{k.replace('_', ' ')}={v:.4f}" for k, v in data.items() if "loss" in k)
                    jobs.event(job_id, f"Step {state.global_step}/{state.max_steps}: {losses}", kind="metrics",
                               data=data)

        return JobEvents()

    # ------------------------------------------------------------------ serving the result

    def _register(self, job: dict[str, Any]) -> None:
        """Attach the job's adapter to its base model's engine (on the batcher thread) and serve it by name."""
        from tunewise.serve.adapters import read_adapter

        base = self.models.get(job["model"])
        problem = trainable(base)
        if problem is not None:
            raise JobConflict(f"base model {job['model']!r} {problem}")
        assert base is not None and base.engine is not None
        engine = base.engine
        spec = replace(read_adapter(self.models_root, self.models_root / job["id"]), arm=None)  # a plain chat model
        if spec.name not in engine.adapters:  # a second server in one process shares the engine
            self.on_engine(lambda: engine.attach(spec))
        identity = {"base": engine.fingerprint, "precision": engine.lm.precision.name, "adapter": spec.name,
                    "adapter_sha256": spec.content_sha256}
        name = job["fine_tuned_model"]
        self.models[name] = ServedModel(name, "lm", identity, "fine-tuning-job", engine=engine, adapter=spec.name,
                                        description=f"LoRA adapter of fine-tuning job {job['id']} on {job['model']}",
                                        extra={"job": job["id"], "base_model": job["model"]})
