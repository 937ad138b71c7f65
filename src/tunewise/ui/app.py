"""Build the `tunewise ui` FastAPI app: state, security, static files, error pages and the page routers.

Each page lives in its own `routes_*.py` module exposing `router`; `ROUTER_MODULES` lists them, so a new page
is one module plus one line here. `NAV` is the top navigation, also one line per page.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment
from starlette.exceptions import HTTPException

from tunewise.ui.pages import STATIC, make_environment, render
from tunewise.ui.run_data import RunCache, RunDataError
from tunewise.ui.security import Guard, csrf_protect

# One line per page module (each exposes `router`); the review/live/start pages add theirs here.
ROUTER_MODULES: list[str] = [
    "tunewise.ui.routes_runs",
    "tunewise.ui.routes_login",
    "tunewise.ui.routes_run",
    "tunewise.ui.routes_predictions",
    "tunewise.ui.routes_compare",
    "tunewise.ui.routes_review",
    "tunewise.ui.routes_live",
    "tunewise.ui.routes_start",
]
# Top navigation: (path, label). Run-scoped pages are linked from the run page instead.
NAV: list[tuple[str, str]] = [
    ("/", "Runs"),
    ("/live", "Live"),
    ("/start", "Start"),
]
# Tabs of a run's pages: (suffix after /runs/<id>, label); the review page adds its tab here.
RUN_TABS: list[tuple[str, str]] = [
    ("", "Overview"),
    ("/predictions", "Predictions"),
    ("/compare", "Compare"),
    ("/review", "Review"),
    ("/live", "Live"),
]
# Paths open without a key: the login form and the stylesheet it uses.
_OPEN_PREFIXES = ("/login", "/static/")
# Inline SVG plots carry <style> elements, hence 'unsafe-inline' for styles only; no script runs from elsewhere.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class UiState:
    """What every route reads from `request.app.state.ui`."""

    runs_dir: Path
    guard: Guard
    env: Environment
    cache: RunCache
    nav: list[tuple[str, str]] = field(default_factory=lambda: list(NAV))
    run_tabs: list[tuple[str, str]] = field(default_factory=lambda: list(RUN_TABS))
    extra: dict[str, Any] = field(default_factory=dict)  # room for other pages' state (e.g. live jobs)


def create_app(runs_dir: Path, keys: list[str] | None = None, *, secret: bytes | None = None) -> FastAPI:
    """The app over `runs_dir`; `keys` (from `tunewise.serve.auth.load_keys`) turn on the login page."""
    app = FastAPI(title="tunewise ui", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(csrf_protect)])
    app.state.ui = UiState(runs_dir=Path(runs_dir), guard=Guard(list(keys or []), secret), env=make_environment(),
                           cache=RunCache())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    _install_middleware(app)
    _install_error_pages(app)
    return app


def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def _keys_and_headers(request: Request, call_next: Any) -> Response:
        guard: Guard = request.app.state.ui.guard
        if not guard.allows(request) and not request.url.path.startswith(_OPEN_PREFIXES):
            if request.method == "GET":
                return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
            return JSONResponse({"detail": "an API key is required: log in at /login"}, status_code=401)
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def _install_error_pages(app: FastAPI) -> None:
    """Friendly pages instead of tracebacks: what went wrong and what to do."""

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> HTMLResponse:
        titles = {403: "Refused", 404: "Not found", 401: "Log in first", 405: "Not allowed"}
        message = str(exc.detail)
        if message in {"Not Found", "Method Not Allowed"}:  # Starlette's own wording for unknown addresses
            message = f"There is no page at {request.url.path}. The Runs page lists every run."
        return render(request, "error.html", {"title": titles.get(exc.status_code, "Error"), "message": message},
                      status=exc.status_code)

    @app.exception_handler(RunDataError)
    async def _run_data(request: Request, exc: RunDataError) -> HTMLResponse:
        return render(request, "error.html", {"title": "This run cannot be shown", "message": str(exc)},
                      status=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return render(request, "error.html", {"title": "Bad request", "message": problems}, status=422)
