"""The ASGI gate around the whole app: API keys, draining, in-flight counting and request metrics.

It is plain ASGI (not a FastAPI middleware) so a streamed response counts as in flight, and is timed, until
its last byte. Every path needs a key but /health and /ready (and /metrics with `public_metrics`); while
draining, everything but the probes and /metrics gets 503 with Retry-After. /openapi.json and /docs need the key
too unless `public_docs`. Route labels are the known paths
only, so random 404 paths cannot grow the metric series. Knows nothing about routes' work, bodies or models.

It is also the last resort: every request gets an id (`x-request-id`), and an exception that escapes the app
(or a cancellation at shutdown) before the response started is answered here with the 500 (or 503) envelope,
logged under that id; uvicorn never gets to answer with its plain-text "Internal Server Error".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tunewise.serve.errors import APIError, error_response, internal_error, new_request_id
from tunewise.serve.openapi import DOCS_PATHS
from tunewise.serve.state import ServerState

log = logging.getLogger("tunewise.serve")

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/classify", "/health", "/ready", "/metrics",
          "/v1/files", "/v1/fine_tuning/jobs", "/openapi.json", "/docs")
_PREFIXES = ("/v1/models", "/v1/files", "/v1/fine_tuning/jobs")  # metrics label an id-bearing path by its prefix
_OPEN = ("/health", "/ready")
_UNTRACKED = ("/health", "/ready", "/metrics")  # neither counted in flight nor refused while draining


def route_label(path: str) -> str:
    """The metrics label of a request path: a known route, an id-bearing route's prefix, or "other"."""
    return path if path in ROUTES else next((p for p in _PREFIXES if path.startswith(p + "/")), "other")


class Gate:
    """Auth, drain and metrics around every request; streamed responses count until their last byte."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.open = (set(_OPEN) | ({"/metrics"} if state.config.public_metrics else set())
                     | (set(DOCS_PATHS) if state.config.public_docs else set()))

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = route_label(path)
        started = time.perf_counter()
        status = [0]
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        state = self.state
        tracked = path not in _UNTRACKED
        if tracked:
            state.in_flight += 1
        try:
            rejection = self._reject(scope, path)
            if rejection is not None:
                await self._answer(rejection, scope, receive, watched)
            else:
                await self.app(scope, receive, watched)
        except asyncio.CancelledError:  # uvicorn gave up on the request (shutdown): say so if nothing was sent
            if not status[0]:
                await self._answer(APIError(503, "the server stopped before this request finished; send it again "
                                                 "(to another replica)", code="shutting_down",
                                            headers={"Retry-After": "1"}), scope, receive, watched)
            raise
        except Exception as error:  # noqa: BLE001 - the last resort: an envelope, never uvicorn's plain text
            if not scope["state"].get("logged"):
                log.error("request %s: unexpected error on %s %s", request_id, scope.get("method"), path,
                          exc_info=error)
            if not status[0]:
                await self._answer(internal_error(error, request_id), scope, receive, watched)
        finally:
            status[0] = status[0] or 500
            if tracked:
                state.in_flight -= 1
            state.metrics.requests.labels(route, str(status[0])).inc()
            state.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _answer(self, error: APIError, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.state.metrics.errors.labels(str(error.status), error.code or "").inc()
        await error_response(error)(scope, receive, send)

    def _reject(self, scope: MutableMapping[str, Any], path: str) -> APIError | None:
        if path not in self.open:
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not self.state.keys.allows(authorization):
                return APIError(401, "Missing or incorrect API key. Send `Authorization: Bearer <key>`.",
                                code="invalid_api_key")
        if self.state.draining and path not in _UNTRACKED:
            return APIError(503, "the server is shutting down; send this request to another replica",
                            code="shutting_down", headers={"Retry-After": "1"})
        return None
