"""Rendering a page: the shared Jinja2 environment (autoescape on), the context every page gets (nav, CSRF
token) and the CSRF cookie that goes with it. Routes call `render`; they never build HTML by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tunewise.ui.security import CSRF_COOKIE, Guard

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def num(value: Any, digits: int = 3) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.{digits}f}"


def signed(value: Any, digits: int = 3) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:+.{digits}f}"


def count(value: Any) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:,.0f}"


def pvalue(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.3g}"


def make_environment() -> Environment:
    """Autoescape for every template: arm names, labels, inputs and answers are user data."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, signed=signed, pvalue=pvalue, count=count)
    return env


def query(params: Mapping[str, Any], **changes: Any) -> str:
    """The query string of the current filters with `changes` applied (None drops a key): for pager links."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "", False)}
    return "?" + urlencode(merged) if merged else ""


def render(request: Request, template: str, context: Mapping[str, Any] | None = None,
           status: int = 200) -> HTMLResponse:
    """The page with the shared context; sets the CSRF cookie on first visit so forms on it can be posted."""
    ui = request.app.state.ui
    guard: Guard = ui.guard
    cookie = request.cookies.get(CSRF_COOKIE)
    fresh = cookie is None
    if fresh:
        cookie = guard.new_csrf_cookie()
    page = ui.env.get_template(template).render(
        request=request, nav=ui.nav, csrf_token=guard.csrf_token(cookie), query=query, **(context or {}))
    response = HTMLResponse(page, status_code=status)
    if fresh:
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/")
    return response
