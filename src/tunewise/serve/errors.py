"""The OpenAI error envelope, and the exception that carries one out of any handler.

Every rejected request gets `{"error": {"message", "type", "param", "code"}}` with a 4xx status that says whose
fault it was, and `param` naming the offending field, so clients built for OpenAI show a useful message. An
unexpected failure gets the same envelope with status 500 and the request's id (`x-request-id`, also in the log
line with the traceback), never a plain-text page. Knows nothing about models.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.responses import JSONResponse

_TYPES = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error",
          503: "service_unavailable_error", 504: "timeout_error"}


class APIError(Exception):
    """Raise from a handler to answer with `status` and the envelope (and extra headers such as Retry-After)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers


def new_request_id() -> str:
    """An id for one request, sent back as `x-request-id` (OpenAI's header) and written in its log lines."""
    return f"req_{secrets.token_hex(12)}"


def internal_error(error: BaseException, request_id: str) -> APIError:
    """The 500 envelope for an unexpected exception: what kind it was and the id to find it in the log."""
    return APIError(500, f"internal error ({type(error).__name__}); the server log has the details under request "
                         f"id {request_id}. This is a bug in the server, not in the request: please report it",
                    code="internal_error")


def envelope(error: APIError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(envelope(error), status_code=error.status, headers=error.headers)


def from_validation(errors: list[dict[str, Any]]) -> APIError:
    """A pydantic validation failure as one 400 naming the first bad parameter (and counting the rest)."""
    first = _best_branch(errors)
    # pydantic names the union member it tried (`stop.str`, `content.list[TextPart]`); the client named the field
    param = ".".join(str(part) for part in first["loc"] if not _union_tag(part)) or None
    given = first.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
    more = f"; and {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    return APIError(400, f"{param or 'body'}: {first['msg']}{shown}{more}", param=param, code=code)


def _union_tag(part: Any) -> bool:
    """A location part that is a union member's name (a type), not a field the client sent."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "none", "dict", "list"}
                                      or "[" in part or part.startswith(("function-", "literal[")))


def _best_branch(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the errors pydantic lists for a union, the one from the member the value is shaped like (a list for
    a list member, an object for a model): its message says what is really wrong."""
    first = errors[0]
    given = first.get("input")
    for error in errors:
        tags = [part for part in error["loc"] if _union_tag(part)]
        if tags and isinstance(given, list) and tags[-1].startswith("list["):
            return error
    return first
