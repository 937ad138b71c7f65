"""The OpenAI-compatible app, composed: the server state, the routers, the error envelopes and the gate.

Request path: the gate (auth, drain, metrics; gate.py) -> a route (routes_*.py) that reads its body itself
(bodies.py, or python-multipart for uploads) -> answering.py (model lookup, caches, context checks, the
micro-batcher) -> the answer as JSON or as server-sent events (sse.py, event_stream.py). Every failure,
whoever raises it, leaves as the OpenAI error envelope and is counted in `tunewise_errors`.

This module only wires those pieces together; it knows nothing about any route's work.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tunewise.serve import (
    routes_chat,
    routes_classify,
    routes_files,
    routes_finetune,
    routes_health,
    routes_models,
)
from tunewise.serve.docs_page import docs_html
from tunewise.serve.errors import APIError, error_response, from_validation, internal_error, new_request_id
from tunewise.serve.gate import ROUTES, Gate
from tunewise.serve.openapi import builder
from tunewise.serve.state import FineTuning, ServerState, build_state

__all__ = ["ROUTES", "FineTuning", "ServerState", "build_state", "create_app", "install_error_handlers"]

log = logging.getLogger("tunewise.serve")


def create_app(state: ServerState) -> Gate:
    """The FastAPI app wrapped in the gate; `app.state.tunewise` is `state`."""
    app = FastAPI(title="tunewise", version=_version(), description=_DESCRIPTION, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json")
    app.state.tunewise = state
    gate = Gate(app, state)
    app.openapi = builder(app, state.config, gate.open)  # type: ignore[method-assign]
    install_error_handlers(app, state)
    for router in (routes_health.router, routes_models.router, routes_chat.router, routes_classify.router):
        app.include_router(router)
    if state.finetune is not None:
        app.include_router(routes_files.router)
        app.include_router(routes_finetune.router)
    else:  # a 404 that says how to turn the files and fine-tuning API on
        app.include_router(routes_finetune.disabled_router)
    app.add_api_route("/docs", _docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.add_api_route("/{path:path}", options, methods=["OPTIONS"], include_in_schema=False)
    return gate


async def _docs(request: Request) -> HTMLResponse:
    """The schema as a page that needs no internet (see docs_page.py)."""
    return HTMLResponse(docs_html(request.app.openapi()))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route serves at `path` (OPTIONS included), for `Allow` headers: each method is tried
    against the app's routes with Starlette's own matching (`route.matches`), so included routers count too.

    Starlette's own 405 names only the first route whose path matched, so a path served by a GET route and a
    POST route answered `Allow: POST`."""
    found = [method for method in _METHODS
             if any(route.matches({"type": "http", "path": path, "root_path": "", "method": method})[0] == Match.FULL
                    for route in app.routes)]
    return [*found, "OPTIONS"] if found else []


async def options(request: Request) -> Response:
    """OPTIONS on any path: 204 with `Allow` listing what the path serves, or the 404 envelope."""
    allowed = allowed_methods(request.app, request.url.path)
    if not allowed:
        raise APIError(404, f"OPTIONS {request.url.path}: no route here", code="not_found")
    return Response(status_code=204, headers={"Allow": ", ".join(allowed)})


_DESCRIPTION = ("OpenAI-compatible serving of tunewise models (chat, completions, models, files, fine-tuning jobs) "
                "and tunewise's own /v1/classify. Every error is OpenAI's envelope {\"error\": {message, type, "
                "param, code}}; every response carries an x-request-id header.")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tunewise")
    except PackageNotFoundError:  # run from a source checkout without installing
        return "0+source"


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
        status, detail = error.status_code, error.detail
        headers = dict(getattr(error, "headers", None) or {})
        if status == 405:
            allowed = allowed_methods(request.app, request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{detail}; this path serves {headers['Allow']}"
            else:  # only the catch-all OPTIONS route matched: there is nothing at this path
                status, detail = 404, "Not Found"
                headers.pop("Allow", None)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = f"{request.method} {request.url.path}: {detail}"
        return failed(APIError(status, message, code=code, headers=headers or None))

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
