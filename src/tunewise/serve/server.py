"""Running the app under uvicorn, with a graceful drain on SIGTERM.

uvicorn's own shutdown stops listening at once, so a request arriving during shutdown gets a refused
connection and a load balancer still probing /ready sees nothing useful. Here the first SIGTERM (or Ctrl-C)
only starts a drain: /ready answers 503 immediately, new requests get 503 (with Retry-After), requests in
flight run to completion, and only when none is left does uvicorn stop. A second signal stops at once.

The drain's limit (`--drain-timeout`) defaults to the request timeout plus `DRAIN_GRACE_S`: every request
ends within --timeout (with a 504 envelope if its answer is late), so that default never cuts one off. With a
shorter limit (a scheduler's grace period), what is still unanswered when it passes is failed on purpose:
the batcher is aborted, so waiting requests get the 503 envelope and a running generation stops at its next
step (a stream ends with the error event and [DONE]). Either way no model work is left running when the
process exits (a thread inside torch at interpreter exit aborts the process: "terminate called without an
active exception"), and the exit code is 0. The drain logs what it waits for, with the time a full batch of
max_tokens needs at the decode speed measured while serving.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn

from tunewise.serve.state import ServerState

log = logging.getLogger("tunewise.serve")

DRAIN_GRACE_S = 5.0
"""Added to --timeout for the default drain limit: time for the last answers to be written."""
ABORT_GRACE_S = 5.0
"""After an abort, how long the failed requests get to send their envelopes."""
ASSUMED_STEP_S = 0.05
"""Seconds per decoding step assumed for the drain's estimate before any batch was measured (a 135M model
on two busy CPU cores)."""


def drain_limit(state: ServerState) -> float:
    """The drain's limit: --drain-timeout, or --timeout plus DRAIN_GRACE_S."""
    config = state.config
    return config.drain_timeout_s if config.drain_timeout_s is not None else config.timeout_s + DRAIN_GRACE_S


def full_batch_seconds(state: ServerState) -> tuple[float, bool]:
    """Seconds a full batch of max_tokens needs at the measured decode speed (and whether it was measured)."""
    step = state.speed.seconds_per_step
    return (step or ASSUMED_STEP_S) * state.config.max_tokens_limit, step is not None


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self.state.draining = True
        threading.Thread(target=self._drain, name="tunewise-drain", daemon=True).start()

    def _busy(self) -> bool:
        return self.state.in_flight > 0 or self.state.batcher.depth() > 0

    def _drain(self) -> None:
        state, limit = self.state, drain_limit(self.state)
        deadline = time.monotonic() + limit
        if self._busy():
            need, measured = full_batch_seconds(state)
            batches = math.ceil(state.batcher.depth() / state.config.max_batch)
            log.warning("draining: %d request(s) in flight, %d admitted to the model (%d batch(es)); a full batch "
                        "of max_tokens %d takes ~%.0f s at %s %.0f ms per decoding step; waiting up to %g s",
                        state.in_flight, state.batcher.depth(), batches, state.config.max_tokens_limit, need,
                        "the measured" if measured else "an assumed", 1000 * need / state.config.max_tokens_limit,
                        limit)
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._busy():
            waiting = state.batcher.abort()
            log.warning("drain limit of %g s passed: %d request(s) still in flight get a 503 envelope (%d had not "
                        "reached the model); raise --drain-timeout to let them finish", limit, state.in_flight,
                        waiting)
            grace = time.monotonic() + ABORT_GRACE_S
            while self.state.in_flight > 0 and time.monotonic() < grace:
                time.sleep(0.02)
        self.should_exit = True


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts, so port 0 resolves to a known free port.

    It listens at once: a client that connects between our "listening on" line and uvicorn's start waits in
    the backlog instead of being refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _uvicorn_config(app: Any) -> uvicorn.Config:
    from tunewise.serve.protocol import EnvelopeH11Protocol

    return uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio", lifespan="off",
                          http=EnvelopeH11Protocol, timeout_graceful_shutdown=5)


def serve_forever(app: Any, state: ServerState, sock: socket.socket) -> None:
    """Serve until drained; must run on the main thread for the signal handlers."""
    server = DrainingServer(_uvicorn_config(app), state)
    try:
        server.run(sockets=[sock])
    finally:
        state.close()
        sock.close()


@contextmanager
def serve_in_thread(app: Any, state: ServerState, host: str = "127.0.0.1") -> Iterator[tuple[str, DrainingServer]]:
    """Serve on a free loopback port in a background thread for the block; yields (root URL, server).

    For tests and benchmarks: no signal handling (signals belong to the main thread); `server.handle_exit`
    can be called to start a drain by hand.
    """
    sock = bind(host, 0)
    port = sock.getsockname()[1]
    server = DrainingServer(_uvicorn_config(app), state)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"tunewise-serve-{port}",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the tunewise server on port {port} did not start")
            time.sleep(0.005)
        yield f"http://{host}:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        state.close()
        sock.close()


def run_server(config: Any, *, run: Any = None, arms: list[str] | None = None, model: str | None = None,
               adapters: Any = None, log: Any = print) -> None:
    """`tunewise serve`: load what is served, bind, print the address, serve until drained."""
    from tunewise.serve.app import create_app
    from tunewise.serve.auth import load_keys, refuse_open_network
    from tunewise.serve.models import Loader, build_models
    from tunewise.serve.state import build_state

    # before loading any model: a refused bind should cost the user seconds, not a model load
    refuse_open_network(config.host, load_keys(config.api_keys_env, config.api_key_file), config.open_network)
    models = build_models(Loader(config.precision, config.threads), run=run, arms=arms, model=model,
                          adapters=adapters, log=log)
    state = build_state(models, config)
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    for served in models:
        log(f"serving {served.name}: {served.description}")
    log(f"auth: {'API key required' if state.keys.required else 'open (no API key configured)'}; "
        f"batches of up to {config.max_batch} within {config.max_wait_ms:g} ms; queue {config.max_queue}")
    if state.finetune is not None:
        jobs = state.finetune.jobs.all()
        tuned = [name for name, m in state.models.items() if m.owned_by == "fine-tuning-job"]
        log(f"fine-tuning API on (/v1/files, /v1/fine_tuning/jobs): state in {config.state_dir}; {len(jobs)} job(s), "
            f"{len(tuned)} fine-tuned model(s) served again")
    log(f"listening on http://{host}:{port}/v1")
    serve_forever(create_app(state), state, sock)
