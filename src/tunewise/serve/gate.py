"""The ASGI gate around the whole app: API keys, draining, in-flight counting and request metrics.

It is plain ASGI (not a FastAPI middleware) so a streamed response counts as in flight, and is timed, until
its last byte. Every path needs a key but /health and /ready (and /metrics with `public_metrics`); while
draining, everything but the probes and /metrics gets 503 with Retry-After. Route labels are the known paths
only, so random 404 paths cannot grow the metric series. Knows nothing about routes' work, bodies or models.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tunewise.serve.errors import APIError, error_response
from tunewise.serve.state import ServerState

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/classify", "/health", "/ready", "/metrics")
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
        self.open = set(_OPEN) | ({"/metrics"} if state.config.public_metrics else set())

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = route_label(path)
        started = time.perf_counter()
        status = [500]

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        state = self.state
        tracked = path not in _UNTRACKED
        if tracked:
            state.in_flight += 1
        try:
            rejection = self._reject(scope, path)
            if rejection is not None:
                state.metrics.errors.labels(str(rejection.status), rejection.code or "").inc()
                await error_response(rejection)(scope, receive, watched)
            else:
                await self.app(scope, receive, watched)
        finally:
            if tracked:
                state.in_flight -= 1
            state.metrics.requests.labels(route, str(status[0])).inc()
            state.metrics.latency.labels(route).observe(time.perf_counter() - started)

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
