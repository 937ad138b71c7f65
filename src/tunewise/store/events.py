"""`events.jsonl`: what a running experiment is doing, one JSON object per line, for anyone tailing the run folder.

`tunewise run` appends here as it goes (the web UI's Live page follows the file); the terminal's progress
bars are drawn as before and know nothing about it. Every line is `{"time": <unix seconds>, "kind": ...}`
plus the kind's fields:

  run_started {run_id, arms}            arm_started {arm}          arm_finished {arm, status, error?}
  progress {arm, stage, done, total}    train_loss {arm, step, loss}
  run_completed {status}                run_failed {status, error}

Lines are appended whole and flushed one by one, so a reader sees complete lines only (a torn last line from a
crash is skipped by `read_events`). Progress is throttled per (arm, stage): at most one line every
`PROGRESS_INTERVAL_S` seconds, plus the first and the last. It records; it knows nothing about arms, models or
HTTP.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"
PROGRESS_INTERVAL_S = 0.5
FINAL_KINDS = frozenset({"run_completed", "run_failed"})

ProgressFactory = Callable[[str, int], Any]


@dataclass
class EventLog:
    """An append-only events file; `path=None` writes nothing (another process than the main one, or tests)."""

    path: Path | None
    clock: Callable[[], float] = time.time
    interval: float = PROGRESS_INTERVAL_S
    arm: str | None = None
    _handle: TextIO | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, kind: str, **fields: Any) -> None:
        """Append one line and flush it; a value JSON cannot hold (NaN loss) becomes null."""
        if self.path is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()}
        line = json.dumps({"time": round(self.clock(), 3), "kind": kind, **clean}, ensure_ascii=False) + "\n"
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    @contextmanager
    def arm_running(self, name: str) -> Iterator[None]:
        """arm_started, then arm_finished with status completed or failed (the exception goes on); training
        losses reported meanwhile (`report_train_loss`) are this arm's."""
        self.arm = name
        token = _ACTIVE.set(self)
        self.emit("arm_started", arm=name)
        try:
            yield
        except BaseException as exc:
            self.emit("arm_finished", arm=name, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        else:
            self.emit("arm_finished", arm=name, status="completed")
        finally:
            _ACTIVE.reset(token)
            self.arm = None

    def progress(self, inner: ProgressFactory) -> ProgressFactory:
        """Wrap the run's progress factory (`ctx.progress`): the same bars or lines, and throttled progress
        events for the arm running now."""

        @contextmanager
        def factory(description: str, total: int) -> Iterator[Callable[[int], None]]:
            arm = self.arm or description
            done = 0
            last = self.clock()
            self.emit("progress", arm=arm, stage=description, done=0, total=total)
            with inner(description, total) as advance:
                def step(n: int) -> None:
                    nonlocal done, last
                    advance(n)
                    done += n
                    now = self.clock()
                    if now - last >= self.interval:
                        last = now
                        self.emit("progress", arm=arm, stage=description, done=done, total=total)

                yield step
            self.emit("progress", arm=arm, stage=description, done=done, total=total)

        return factory


_ACTIVE: ContextVar[EventLog | None] = ContextVar("tunewise_events", default=None)


def report_train_loss(step: int, loss: float) -> None:
    """A training loss logged by a trainer (train/scaffold.py), recorded for the arm running now, if a run is
    writing events; otherwise nothing."""
    log = _ACTIVE.get()
    if log is not None and log.arm is not None:
        log.emit("train_loss", arm=log.arm, step=int(step), loss=float(loss))


@dataclass(frozen=True)
class EventLines:
    """The complete lines of an events file from a byte offset, and where the next read starts."""

    events: list[dict[str, Any]]
    offset: int
    problems: list[str]


def read_events(path: Path, offset: int = 0) -> EventLines:
    """Events from byte `offset` on. An unfinished last line (a writer mid-append) is left for the next read;
    a line that is not a JSON object is reported by line number, not raised."""
    if not path.is_file():
        return EventLines([], offset, [])
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    events: list[dict[str, Any]] = []
    bad: list[int] = []  # indexes of lines in this chunk that are not events
    for index, raw in enumerate(data[:end].splitlines()):
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            event = None
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            events.append(event)
        elif raw.strip():
            bad.append(index)
    first_line = 1 + (_count_lines(path, offset) if offset and bad else 0)  # counted only when needed
    problems = [f"{path}:{first_line + i}: not an event (a JSON object with a 'kind'); line skipped" for i in bad]
    return EventLines(events, offset + end, problems)


def _count_lines(path: Path, offset: int) -> int:
    with path.open("rb") as handle:
        return handle.read(offset).count(b"\n")
