"""A minimal OpenAI-compatible chat server on loopback, for tests of anything that talks to an endpoint.

Real FastAPI and uvicorn over real HTTP on 127.0.0.1, so the official `openai` client is exercised end to end
(request shapes, error envelopes, headers, timeouts) without reaching the internet. Faults are injected on
demand: fail the first N requests with 429 (with Retry-After) or 500, delay answers, check an API key, reject
unknown models; `ServerStats` counts requests and the most that were in flight at once.

It knows nothing about tunewise: a responder maps the request's messages to the reply text.

    with serve(lambda messages: "sport", stats=stats, fail_first=2) as base_url:
        RemoteLM(base_url, MODEL, api_key_env=None).chat(prompts)
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

MODEL = "loopback-model"

Responder = Callable[[list[dict]], str]
Delay = float | Callable[[list[dict]], float]

_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                429: "requests", 500: "server_error"}


class LoopbackError(Exception):
    """Raised by a responder to answer one request with an OpenAI error envelope (e.g. a 400 for a bad prompt)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class ServerStats:
    """What the server saw. Written on the server's thread; read it after the calls under test return."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict] = field(default_factory=list)


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    envelope = {"message": message, "type": _ERROR_TYPES.get(status, "api_error"), "param": None, "code": code}
    return JSONResponse({"error": envelope}, status_code=status, headers=headers)


def _words(text: str) -> int:
    """Token counts by whitespace: deterministic, so tests can predict the usage the server reports."""
    return len(text.split())


def build_app(
    responder: Responder,
    *,
    stats: ServerStats,
    api_key: str | None = None,
    models: tuple[str, ...] = (MODEL,),
    fail_first: int = 0,
    fail_status: int = 429,
    retry_after: float | None = None,
    delay: Delay = 0.0,
    usage: bool = True,
) -> FastAPI:
    """The app behind `serve`; see there for what each fault does."""
    app = FastAPI()

    def unauthorized(request: Request) -> JSONResponse | None:
        if api_key is None or request.headers.get("authorization") == f"Bearer {api_key}":
            return None
        return _error(401, "Incorrect API key provided.", "invalid_api_key")

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        if (denied := unauthorized(request)) is not None:
            return denied
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "loopback"} for name in models]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        stats.requests += 1
        number = stats.requests
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            try:
                body = await request.json()
            except ClientDisconnect:  # the client gave up (a cancelled call): nobody reads the answer
                return Response(status_code=499)
            stats.bodies.append(body)
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
                return _error(400, "'messages' must be a list of {role, content} objects.")
            wait = delay(messages) if callable(delay) else delay
            if wait:
                await asyncio.sleep(wait)
            if (denied := unauthorized(request)) is not None:
                return denied
            if number <= fail_first:
                headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
                message = "Rate limit reached." if fail_status == 429 else "The server had an error."
                return _error(fail_status, message, headers=headers)
            if body.get("model") not in models:
                return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
            try:
                reply = responder(messages)
            except LoopbackError as error:
                return _error(error.status, error.message, error.code)
            words = reply.split()
            max_tokens = body.get("max_tokens")
            finish = "stop"
            if max_tokens is not None and len(words) > max_tokens:
                reply, finish = " ".join(words[:max_tokens]), "length"
            response: dict[str, Any] = {
                "id": f"chatcmpl-loopback-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": finish}
                ],
            }
            if usage:
                prompt_tokens = sum(_words(str(m.get("content") or "")) for m in messages)
                completion_tokens = _words(reply)
                response["usage"] = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
            return response
        finally:
            stats.in_flight -= 1

    return app


@contextmanager
def serve(
    responder: Responder,
    *,
    stats: ServerStats | None = None,
    api_key: str | None = None,
    models: tuple[str, ...] = (MODEL,),
    fail_first: int = 0,
    fail_status: int = 429,
    retry_after: float | None = None,
    delay: Delay = 0.0,
    usage: bool = True,
) -> Iterator[str]:
    """Serve on a free loopback port for the duration of the block; yields the base_url (`http://127.0.0.1:P/v1`).

    api_key: require `Authorization: Bearer <api_key>` (401 otherwise); None accepts any or no key.
    models: the model names served; others get 404 `model_not_found`.
    fail_first, fail_status, retry_after: answer the first N chat requests with this status (429 or 500),
        with a `Retry-After` header of `retry_after` seconds when given.
    delay: seconds to wait before answering, or a function of the messages (to slow down chosen prompts).
    usage: include the `usage` block (token counts are whitespace words).
    """
    app = build_app(
        responder, stats=stats if stats is not None else ServerStats(), api_key=api_key, models=models,
        fail_first=fail_first, fail_status=fail_status, retry_after=retry_after, delay=delay, usage=usage,
    )
    # Binding the socket here (port 0) means the port is ours before the server starts: no race for it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A handler still sleeping when the block ends (a delayed answer the client gave up on) is cancelled
    # after this long rather than holding the test.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, loop="asyncio", lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"loopback-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the loopback OpenAI server on port {port} did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"the loopback OpenAI server on port {port} did not shut down within 10 s")
