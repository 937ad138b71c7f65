"""Fine-tuning jobs as OpenAI describes them, kept on disk so a restart loses none.

A job moves validating_files -> queued -> running -> succeeded | failed | cancelled; `transition` refuses any
other move (so a job cancelled while its last step ran cannot turn into `succeeded` afterwards), and each move
is an event. A running job may also go back to queued: that is how a job interrupted by a restart resumes. A
queued or running job may be paused (status `paused`, as OpenAI's API says) and a paused one resumed (queued).
Each job is `STATE/jobs/<id>/job.json`, rewritten by temp file and rename on every change, `events.jsonl`,
appended line by line and fsynced (a line torn by a crash is skipped when read), and `checkpoints.jsonl`, one
line per checkpoint the engine sealed.
Knows nothing about HTTP or training.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from tunewise.store.atomic import atomic_write_text

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
NEXT: dict[str, frozenset[str]] = {
    "validating_files": frozenset({"queued", "failed", "cancelled"}),
    "queued": frozenset({"running", "failed", "cancelled", "paused"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "queued", "paused"}),
    "paused": frozenset({"queued", "failed", "cancelled"}),
}
JOB_ID = re.compile(r"^ftjob-[0-9a-f]{24}$")


class JobStore:
    """Every job under `root`; thread-safe (the routes and the training worker both write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        for path in sorted(self.root.glob("ftjob-*/job.json")):
            try:
                job = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # unreadable: left on disk for a person, not offered
            if isinstance(job, dict) and JOB_ID.fullmatch(str(job.get("id"))):
                self._jobs[job["id"]] = job

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def _save(self, job: dict[str, Any]) -> None:
        atomic_write_text(self.folder(job["id"]) / "job.json", json.dumps(job, indent=1) + "\n")

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        job_id = f"ftjob-{secrets.token_hex(12)}"
        job = {"id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "finished_at": None,
               "status": "validating_files", "fine_tuned_model": None, "error": None, "trained_tokens": None,
               "result_files": [], "organization_id": "tunewise", "estimated_finish": None, "integrations": [],
               **fields}
        with self._lock:
            self._save(job)
            self._jobs[job_id] = job
        self.event(job_id, f"Created fine-tuning job {job_id} on {job['model']}")
        self.event(job_id, "Validating training file: " + job["training_file"]
                   + (f" and validation file: {job['validation_file']}" if job.get("validation_file") else ""))
        return copy.deepcopy(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return copy.deepcopy(job) if job is not None else None

    def all(self) -> list[dict[str, Any]]:
        """Newest first; ties by id so pages are stable."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (-j["created_at"], j["id"]))
            return copy.deepcopy(jobs)

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields other than status (hyperparameters resolved, progress, the `tunewise` block)."""
        with self._lock:
            job = self._jobs[job_id]
            job.update(fields)
            self._save(job)
            return copy.deepcopy(job)

    def transition(self, job_id: str, status: str, message: str | None = None, *, level: str = "info",
                   **fields: Any) -> bool:
        """Move the job to `status` (with `fields`) if that move is allowed from where it is; False if not."""
        with self._lock:
            job = self._jobs[job_id]
            if status not in NEXT.get(job["status"], frozenset()):
                return False
            job.update(fields, status=status)
            if status in TERMINAL:
                job["finished_at"] = int(time.time())
            self._save(job)
        self.event(job_id, message or f"Job status: {status}", level=level, data={"status": status})
        return True

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def _read(self, path: Path) -> list[dict[str, Any]]:
        """The records of a JSONL file, oldest first (a line torn by a crash is skipped)."""
        with self._lock:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                return []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def checkpoint(self, job_id: str, step: int, metrics: dict[str, float]) -> None:
        """Record a checkpoint the engine sealed at `step`, with the losses logged up to it."""
        self._append(self.folder(job_id) / "checkpoints.jsonl", {
            "id": f"ftckpt-{secrets.token_hex(12)}", "created_at": int(time.time()), "step": step,
            "metrics": {"step": float(step), **metrics}})

    def checkpoints(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """OpenAI's checkpoint objects, newest first; a step written twice (a resume after kill -9 redoes the
        steps after the last sealed checkpoint) is listed once, as written last."""
        by_step = {r["step"]: r for r in self._read(self.folder(job["id"]) / "checkpoints.jsonl")}
        name = job.get("fine_tuned_model") or f"ft:{job['model']}:{job['id'][-8:]}"
        return [{"id": r["id"], "object": "fine_tuning.job.checkpoint", "created_at": r["created_at"],
                 "fine_tuned_model_checkpoint": f"{name}:ckpt-step-{step}", "fine_tuning_job_id": job["id"],
                 "metrics": r["metrics"], "step_number": step} for step, r in sorted(by_step.items(), reverse=True)]

    def event(self, job_id: str, message: str, *, level: str = "info", kind: str = "message",
              data: dict[str, Any] | None = None) -> dict[str, Any]:
        event = {"id": f"ftevent-{secrets.token_hex(12)}", "object": "fine_tuning.job.event",
                 "created_at": int(time.time()), "level": level, "message": message, "type": kind, "data": data}
        self._append(self.folder(job_id) / "events.jsonl", event)
        return event

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them."""
        return self._read(self.folder(job_id) / "events.jsonl")[::-1]


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """OpenAI cursor paging: the `limit` items that follow the one whose id is `after` (from the start if None)."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise KeyError(after)
        start = ids.index(after) + 1
    chosen = items[start:start + limit]
    return chosen, start + limit < len(items)
