"""Dynamic micro-batching: concurrent requests with compatible settings share one batched model call.

Requests are submitted with a group key (the model, the kind of call and the sampling settings that must be
equal within a batch). One worker thread takes the oldest waiting request, waits up to `max_wait_s` for others
with the same key (or until `max_batch` of them are there), and runs them in one call; while it runs, new
requests accumulate, so under load batches fill without waiting at all.

A burst of clients arriving at an idle server reaches the batcher one by one, as the event loop reads each
body and renders its prompt (tens of ms for 32 of them on two busy cores). A window fixed at the first arrival
cuts such a burst into a small batch and a large one that waits for it, paying a batch's fixed cost twice; so
the window stays open while same-key requests keep arriving: it ends `max_wait_s` after the latest one, and
never later than `BURST_CAP` windows after the first (a steady trickle cannot hold a batch back forever). The admission bound
(`max_queue`, counting waiting and running requests) turns overload into an immediate `QueueFull` (HTTP 429)
rather than an ever-growing wait.

Model calls run on this one thread only, so a model is never used by two batches at once (and an adapter
switched on for a batch stays on until it ends). `abort` (the end of a drain that ran out of time) fails every
admitted request with `Stopping`: waiting ones at once, the running batch at its next decoding step (the runner
checks `aborting` between steps), so the thread is idle before the process exits. `DecodeSpeed` keeps the
measured seconds per decoding step, from which a drain estimates how long the admitted work needs.
Knows nothing about models or HTTP: `run(key, payloads)` returns one result per payload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

Runner = Callable[[Hashable, list[Any]], list[Any]]
BURST_CAP = 10


class QueueFull(Exception):
    """Admitting the request would exceed `max_queue`."""


class Stopping(Exception):
    """The server is stopping and gave up on this request before its batch finished."""


class DecodeSpeed:
    """Seconds per decoding step of generation batches, as measured (a moving average; None until one ran)."""

    def __init__(self) -> None:
        self.seconds_per_step: float | None = None
        self._lock = threading.Lock()

    def record(self, seconds: float, steps: int) -> None:
        if steps <= 0:
            return
        with self._lock:
            measured = seconds / steps
            previous = self.seconds_per_step
            self.seconds_per_step = measured if previous is None else 0.8 * previous + 0.2 * measured


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(self, run: Runner, *, max_batch: int, max_wait_s: float, max_queue: int,
                 on_batch: Callable[[Hashable, int], None] | None = None,
                 aborting: threading.Event | None = None) -> None:
        self._run = run
        self.aborting = aborting or threading.Event()
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._waiting: list[_Item] = []
        self._admitted = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="tunewise-batcher", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        """Requests admitted and not yet answered (waiting or in the running batch)."""
        return self._admitted

    def submit(self, key: Hashable, payload: Any) -> Future:
        with self._cond:
            if self.aborting.is_set():
                raise Stopping
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._admitted >= self.max_queue:
                raise QueueFull
            item = _Item(key, payload)
            self._waiting.append(item)
            self._admitted += 1
            self._cond.notify()
        return item.future

    def close(self, timeout: float = 30.0) -> None:
        """Answer what is waiting, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def abort(self) -> int:
        """Fail every admitted request with `Stopping` (see the module docstring); how many were waiting."""
        self.aborting.set()
        with self._cond:
            waiting, self._waiting = self._waiting, []
            self._admitted -= len(waiting)
            self._cond.notify()
        for item in waiting:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(Stopping("the server stopped before this request's batch ran"))
        return len(waiting)

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if not self._waiting:
                return None
            first = self._waiting[0]
            cap = first.arrived + BURST_CAP * self.max_wait_s
            while True:
                same = [item for item in self._waiting if item.key == first.key]
                if not same:  # abort() failed every waiting request while this window was open: nothing to run
                    return []
                remaining = min(cap, same[-1].arrived + self.max_wait_s) - time.monotonic()
                if len(same) >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            batch = same[:self.max_batch]
            chosen = {id(item) for item in batch}
            self._waiting = [item for item in self._waiting if id(item) not in chosen]
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            # a request whose caller timed out while it waited is dropped here, unanswered
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            try:
                if live:
                    if self._on_batch is not None:
                        self._on_batch(live[0].key, len(live))
                    results = self._run(live[0].key, [item.payload for item in live])
                    for item, result in zip(live, results, strict=True):
                        item.future.set_result(result)
            except BaseException as error:  # noqa: BLE001 - every waiting caller must hear about it
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(error)
            finally:
                with self._cond:
                    self._admitted -= len(batch)
