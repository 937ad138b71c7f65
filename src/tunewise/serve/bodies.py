"""Reading a JSON request body ourselves: size limit, strict JSON, strict schema, each failure a 4xx envelope.

FastAPI's own body handling is not used for the JSON endpoints: it would read an unbounded body, accept NaN
and answer schema errors in its own shape. Here the declared and the streamed size are both checked against
the limit, `NaN`/`Infinity` are refused, and a pydantic failure becomes one 400 naming the parameter.
Knows nothing about models, routes or the server state.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from tunewise.serve.errors import APIError, from_validation

Schema = TypeVar("Schema", bound=BaseModel)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or APIError 400 (unreadable) / 413 (over `limit` bytes)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, f"Content-Length {declared!r} is not a number", code="invalid_request")
        if int(declared) > limit:
            raise APIError(413, f"the body has {int(declared):,} bytes; the limit is {limit:,}",
                           code="request_too_large")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise APIError(413, f"the body exceeds the limit of {limit:,} bytes", code="request_too_large")
    if not raw:
        raise APIError(400, "the body is empty; send a JSON object", code="invalid_json")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(bytes(raw).decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError as err:
        raise APIError(400, f"the body is not UTF-8 ({err})", code="invalid_json") from None
    except ValueError as err:
        raise APIError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {type(body).__name__}", code="invalid_json")
    return body


def parse(schema: type[Schema], body: dict[str, Any]) -> Schema:
    """`body` validated by `schema`, or one APIError 400 naming the first bad parameter."""
    try:
        return schema.model_validate(body)
    except ValidationError as err:
        raise from_validation(list(err.errors())) from None


async def read_body(request: Request, schema: type[Schema], limit: int) -> Schema:
    """`read_json` then `parse`: what every JSON endpoint does first."""
    return parse(schema, await read_json(request, limit))
