"""What keeps `tunewise ui` safe to leave running: who may bind where, who may look, which POSTs are genuine and
which paths a request may reach.

- Bind: loopback by default; any other interface only with API keys (the same keys as `tunewise serve`,
  read by `tunewise.serve.auth`), since the pages show test data and model answers.
- Keys: a browser cannot send `Authorization: Bearer`, so `/login` trades an accepted key for a session cookie
  signed with the app's secret; API tooling may still send the header.
- CSRF: every POST must carry a token (form field `csrf_token` or header `X-CSRF-Token`) that is the HMAC of the
  random value in the `tunewise_csrf` cookie under the app's secret. A page from another origin can neither read
  the cookie nor compute the HMAC.
- Paths: a run id is one folder name under the runs folder and a file name a relative path inside that run;
  `..`, absolute paths, odd characters and symlinks that resolve outside are refused before anything is opened.

Knows nothing about pages; routes call `resolve_run` / `resolve_run_file` and the app installs the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path, PurePosixPath

from fastapi import HTTPException, Request

from tunewise.serve.auth import KeyChecker, is_loopback

CSRF_COOKIE = "tunewise_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "tunewise_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A run id is a single folder name: letters, digits, '.', '_', '-', '@', '~' (arm names use the last two).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@~+-]{0,199}$")


class BindError(ValueError):
    """A host the UI refuses to listen on as configured; the message says the fix."""


def check_bind(host: str, keys: list[str]) -> None:
    """Refuse a non-loopback interface without API keys: the pages would be open to the whole network."""
    if not is_loopback(host) and not keys:
        raise BindError(
            f"--host {host} is not a loopback address and no API key is configured, so anyone on the network could "
            "read every run. Fix: keep the default --host 127.0.0.1, or set keys with $TUNEWISE_API_KEYS or "
            "--api-key-file (the same keys as `tunewise serve`)."
        )


class Guard:
    """The app's secret and what it signs: CSRF tokens and login sessions. A new secret per process means a
    restart logs everyone out and invalidates open forms, which is acceptable for a local tool."""

    def __init__(self, keys: list[str], secret: bytes | None = None) -> None:
        self.keys = KeyChecker(keys)
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    # --- CSRF ---------------------------------------------------------------------------------------------
    def new_csrf_cookie(self) -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, cookie: str) -> str:
        return self._sign("csrf", cookie)

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.csrf_token(cookie), token)

    # --- sessions -----------------------------------------------------------------------------------------
    def session_value(self) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._sign('session', nonce)}"

    def session_ok(self, value: str | None) -> bool:
        nonce, _, signature = (value or "").partition(".")
        return bool(nonce) and hmac.compare_digest(self._sign("session", nonce), signature)

    def allows(self, request: Request) -> bool:
        """No keys: everyone (the bind check keeps that to loopback). Keys: a signed session or a Bearer key."""
        if not self.keys.required:
            return True
        if self.session_ok(request.cookies.get(SESSION_COOKIE)):
            return True
        return bool(request.headers.get("authorization")) and self.keys.allows(request.headers.get("authorization"))


async def csrf_protect(request: Request) -> None:
    """FastAPI dependency installed on the whole app: a POST (or other unsafe method) without a valid token is
    refused with 403 before its route runs. The form is parsed here and cached on the request for the route."""
    if request.method not in UNSAFE_METHODS:
        return
    guard: Guard = request.app.state.ui.guard
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    if not guard.csrf_ok(request.cookies.get(CSRF_COOKIE), token):
        raise HTTPException(403, "This form has expired or did not come from this app (missing or wrong CSRF "
                                 "token). Reload the page and submit it again.")


# --- paths ------------------------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def resolve_run(runs_dir: Path, run_id: str) -> Path:
    """The folder of run `run_id`, or 404: one plain name, a folder with a manifest, really inside `runs_dir`
    (a symlinked run folder is allowed only when its target is inside too)."""
    if not _NAME.fullmatch(run_id) or run_id in {".", ".."}:
        raise HTTPException(404, f"No run {run_id!r}: a run id is a folder name such as 20261202-183504-27ff3f.")
    root = runs_dir.resolve()
    folder = (runs_dir / run_id).resolve()
    if not _inside(folder, root) or folder == root or not (folder / "manifest.json").is_file():
        raise HTTPException(404, f"No run {run_id!r} under {runs_dir}. The Runs page lists the runs there.")
    return folder


def resolve_run_file(run_dir: Path, name: str) -> Path:
    """A regular file inside the run folder, or 404: relative, no `..`, no hidden parts, no symlink out."""
    pure = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or pure.is_absolute()
            or any(part in {"", ".", ".."} or part.startswith(".") for part in pure.parts)):
        raise HTTPException(404, f"No file {name!r} in this run: give a path inside the run folder, without '..'.")
    root = run_dir.resolve()
    target = (root / pure).resolve()
    if not _inside(target, root) or not target.is_file():
        raise HTTPException(404, f"No file {name!r} in this run.")
    return target
