"""Log in with an API key when the ui was started with keys: the key buys a signed session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tunewise.ui.pages import render
from tunewise.ui.security import SESSION_COOKIE

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a local path: never redirect to another site after logging in."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next), "problem": None})


@router.post("/login")
def login(request: Request, key: str = Form(""), next: str = Form("/")) -> Response:
    guard = request.app.state.ui.guard
    if not guard.keys.required or guard.keys.allows(f"Bearer {key}"):
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, guard.session_value(), httponly=True, samesite="strict", path="/")
        return response
    return render(request, "login.html", {"next": _safe_next(next), "problem": "That key is not accepted."},
                  status=401)
