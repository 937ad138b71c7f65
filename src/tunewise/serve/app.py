"""The OpenAI-compatible app, composed: the server state, the routers, the error envelopes and the gate.

Request path: the gate (auth, drain, metrics; gate.py) -> a route (routes_*.py) that reads its body itself
(bodies.py, or python-multipart for uploads) -> answering.py (model lookup, caches, context checks, the
micro-batcher) -> the answer as JSON or as server-sent events (sse.py, event_stream.py). Every failure,
whoever raises it, leaves as the OpenAI error envelope and is counted in `tunewise_errors`.

This module only wires those pieces together; it knows nothing about any route's work.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunewise.serve import (
    routes_chat,
    routes_classify,
    routes_files,
    routes_finetune,
    routes_health,
    routes_models,
)
from tunewise.serve.errors import APIError, error_response, from_validation, internal_error, new_request_id
from tunewise.serve.gate import ROUTES, Gate
from tunewise.serve.state import FineTuning, ServerState, build_state

__all__ = ["ROUTES", "FineTuning", "ServerState", "build_state", "create_app", "install_error_handlers"]

log = logging.getLogger("tunewise.serve")


def create_app(state: ServerState) -> Gate:
    """The FastAPI app wrapped in the gate; `app.state.tunewise` is `state`."""
    app = FastAPI(title="tunewise", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tunewise = state
    install_error_handlers(app, state)
    for router in (routes_health.router, routes_models.router, routes_chat.router, routes_classify.router):
        app.include_router(router)
    if state.finetune is not None:
        app.include_router(routes_files.router)
        app.include_router(routes_finetune.router)
    else:  # a 404 that says how to turn the files and fine-tuning API on
        app.include_router(routes_finetune.disabled_router)
    return Gate(app, state)


def install_error_handlers(app: FastAPI, state: ServerState) -> None:
    """Every error as the OpenAI envelope, counted by status and code (also for an app holding one router)."""
    def failed(error: APIError) -> JSONResponse:
        state.metrics.errors.labels(str(error.status), error.code or "").inc()
        return error_response(error)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return failed(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {error.detail}"
        return failed(APIError(error.status_code, message, code=code, headers=getattr(error, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI places a form field under "body"; the envelope names the field as the client sent it
        errors = [{**e, "loc": tuple(e["loc"])[1:] if tuple(e["loc"])[:1] == ("body",) else e["loc"]}
                  for e in error.errors()]
        return failed(from_validation(errors))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # the gate set the id (an app without the gate makes one); Starlette re-raises after this answer,
        # and `logged` tells the gate this failure is already in the log
        request_id = getattr(request.state, "request_id", None) or new_request_id()
        request.state.logged = True
        log.error("request %s: unexpected error on %s %s", request_id, request.method, request.url.path,
                  exc_info=error)
        return failed(internal_error(error, request_id))
