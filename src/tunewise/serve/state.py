"""The state every route shares, how a route gets it, and how it is wired at start-up.

`ServerState` holds the served models, the key checker, the micro-batcher, metrics, caches, capture and (with
a state folder) the fine-tuning stores and worker. The app keeps it as `app.state.tunewise`; routes receive it
through the `State` dependency, never through closures, so a router can be mounted on any app that carries a
state. Knows nothing about routes, request bodies or response shapes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from tunewise.serve.auth import KeyChecker
from tunewise.serve.batching import DecodeSpeed, MicroBatcher, QueueFull
from tunewise.serve.cache import LRUCache, SemanticCache
from tunewise.serve.capture import Capture
from tunewise.serve.config import ServeConfig
from tunewise.serve.files import FileStore
from tunewise.serve.finetuner import FineTuner
from tunewise.serve.jobs import JobStore
from tunewise.serve.metrics import ServeMetrics
from tunewise.serve.models import ServedModel


@dataclass
class FineTuning:
    """The fine-tuning API's stores and its training worker."""

    files: FileStore
    jobs: JobStore
    tuner: FineTuner


@dataclass
class ServerState:
    """Everything the routes share. `draining` flips once, on SIGTERM; `in_flight` counts model routes."""

    config: ServeConfig
    models: dict[str, ServedModel]
    keys: KeyChecker
    batcher: MicroBatcher
    metrics: ServeMetrics
    cache: LRUCache
    semantic: SemanticCache | None = None
    capture: Capture | None = None
    finetune: FineTuning | None = None  # /v1/files and /v1/fine_tuning, when the server has a state folder
    speed: DecodeSpeed = field(default_factory=DecodeSpeed)  # measured by generation batches
    draining: bool = False
    in_flight: int = 0
    started: float = field(default_factory=time.time)

    def close(self) -> None:
        if self.finetune is not None:
            self.finetune.tuner.close()  # training pauses with a checkpoint before the engines stop
        self.batcher.close()
        if self.capture is not None:
            self.capture.close()


def current_state(request: Request) -> ServerState:
    """The state of the app serving `request` (set by `create_app`)."""
    return request.app.state.tunewise


State = Annotated[ServerState, Depends(current_state)]
"""A route parameter typed `State` receives the server's state."""


def build_state(models: list[ServedModel], config: ServeConfig) -> ServerState:
    """Wire the shared pieces: keys, batcher, caches, capture, metrics (and the fine-tuning API's stores)."""
    from tunewise.serve.answering import run_batch
    from tunewise.serve.auth import load_keys
    from tunewise.serve.cache import minilm_embedder

    by_name = {m.name: m for m in models}
    holder: dict[str, ServerState] = {}
    aborting, speed = threading.Event(), DecodeSpeed()
    batcher = MicroBatcher(lambda key, payloads: run_batch(by_name, key, payloads, aborting, speed),
                           max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000,
                           max_queue=config.max_queue, aborting=aborting,
                           on_batch=lambda key, n: holder["state"].metrics.batch_size.labels(key[0]).observe(n))
    metrics = ServeMetrics(queue_depth=batcher.depth, in_flight=lambda: holder["state"].in_flight)
    state = ServerState(
        config=config, models=by_name, keys=KeyChecker(load_keys(config.api_keys_env, config.api_key_file)),
        batcher=batcher, metrics=metrics, cache=LRUCache(config.cache_size),
        semantic=SemanticCache(minilm_embedder(), config.semantic_threshold) if config.semantic_cache else None,
        capture=Capture(config.capture_path, config.capture_pii) if config.capture_path else None, speed=speed)
    holder["state"] = state
    if config.state_dir is not None:
        state.finetune = _finetuning(config, by_name, batcher)
    return state


def _finetuning(config: ServeConfig, models: dict[str, ServedModel], batcher: MicroBatcher) -> FineTuning:
    """Open the stores under the state folder and start the training worker (which takes up unfinished jobs)."""
    def on_engine(call: Any) -> Any:
        while True:  # a full queue only delays attaching a finished model; it must not lose it
            try:
                return batcher.submit(("call", ""), call).result()
            except QueueFull:
                time.sleep(0.1)

    root = Path(config.state_dir)  # type: ignore[arg-type]
    files, jobs = FileStore(root / "files"), JobStore(root / "jobs")
    tuner = FineTuner(root, files, jobs, models, on_engine, config.precision)
    tuner.start()
    return FineTuning(files, jobs, tuner)
